//! `replicator run`: the whole sidecar — the reader, the applier and `/metrics` — configured by
//! file, environment and flags (`replicator::config`); and the task supervision and metrics
//! start-up that `capture` and `apply` share with it.

use std::path::PathBuf;

use clap::Args;
use replicator::capture::reader;
use replicator::config::{self, Layer, MetricsConfig, Origin, Value};
use replicator::telemetry::{self, MetricsServer, ProbeConfig};
use replicator::{apply::applier, Error};
use tokio_util::sync::CancellationToken;

use super::{cancel_on_signal, Secret};

pub(crate) const RUN_EXAMPLES: &str = "\
Examples:
  # The sidecar of region us, configured by a file (see docs/configuration.md):
  replicator run --config /etc/replicator/replicator.toml

  # Or by environment and flags alone; flags win over the environment, which wins over the file:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' \\
  REPLICATOR_DATABASE_PASSWORD_FILE=/run/secrets/pg \\
      replicator run --region us --sources eu,ap --kafka-brokers kafka-1:9092

  # Check a configuration without starting anything (secrets redacted):
  replicator config check --config /etc/replicator/replicator.toml

Metrics are served on http://127.0.0.1:9464/metrics unless `metrics.listen` says otherwise.
On SIGTERM or SIGINT everything stops within the grace period; state is in the database and the
slot, so a restart resumes where it stopped.";

/// The flags of `run` (and `config check`): each one overrides its key of the configuration.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A TOML configuration file (docs/configuration.md) [env: REPLICATOR_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// `database.url`: a libpq `key=value` string or a `postgresql://` url [env: REPLICATOR_DATABASE_URL].
    #[arg(long, value_parser = Secret::parse)]
    database_url: Option<Secret>,

    /// `region`: this region's id, as given to `setup` [env: REPLICATOR_REGION].
    #[arg(long)]
    region: Option<String>,

    /// `applier.sources`: the regions to apply, comma-separated [env: REPLICATOR_SOURCES].
    #[arg(long, value_delimiter = ',')]
    sources: Vec<String>,

    /// `capture.slot` (default `replicator`) [env: REPLICATOR_SLOT].
    #[arg(long)]
    slot: Option<String>,

    /// `capture.publication` (default `replicator`) [env: REPLICATOR_PUBLICATION].
    #[arg(long)]
    publication: Option<String>,

    /// `capture.topic` (default `<topic prefix><region>`) [env: REPLICATOR_TOPIC].
    #[arg(long)]
    topic: Option<String>,

    /// `kafka.brokers`: bootstrap servers, comma-separated [env: REPLICATOR_KAFKA_BROKERS].
    #[arg(long)]
    kafka_brokers: Option<String>,

    /// `kafka.topic_prefix` (default `replicator.`) [env: REPLICATOR_TOPIC_PREFIX].
    #[arg(long)]
    topic_prefix: Option<String>,

    /// An extra librdkafka property `key=value`, over `kafka.properties`; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = Secret::parse)]
    kafka_properties: Vec<Secret>,

    /// `capture.heartbeat_interval` (default `1s`) [env: REPLICATOR_HEARTBEAT_INTERVAL].
    #[arg(long)]
    heartbeat_interval: Option<String>,

    /// `capture.shutdown_grace` (default `10s`) [env: REPLICATOR_SHUTDOWN_GRACE].
    #[arg(long)]
    shutdown_grace: Option<String>,

    /// `applier.local_columns_file` (see `apply --help`) [env: REPLICATOR_LOCAL_COLUMNS_FILE].
    #[arg(long)]
    local_columns_file: Option<String>,

    /// `metrics.listen`: where `/metrics` is served, or `off` (default `127.0.0.1:9464`)
    /// [env: REPLICATOR_METRICS_LISTEN].
    #[arg(long)]
    metrics_listen: Option<String>,
}

impl RunArgs {
    /// The flags as the configuration's top layer.
    pub(crate) fn layer(&self) -> Result<Layer, Error> {
        let mut layer = Layer::default();
        let texts: [(&str, &'static str, Option<&String>); 11] = [
            ("region", "--region", self.region.as_ref()),
            ("capture.slot", "--slot", self.slot.as_ref()),
            (
                "capture.publication",
                "--publication",
                self.publication.as_ref(),
            ),
            ("capture.topic", "--topic", self.topic.as_ref()),
            (
                "kafka.brokers",
                "--kafka-brokers",
                self.kafka_brokers.as_ref(),
            ),
            (
                "kafka.topic_prefix",
                "--topic-prefix",
                self.topic_prefix.as_ref(),
            ),
            (
                "capture.heartbeat_interval",
                "--heartbeat-interval",
                self.heartbeat_interval.as_ref(),
            ),
            (
                "capture.shutdown_grace",
                "--shutdown-grace",
                self.shutdown_grace.as_ref(),
            ),
            (
                "applier.local_columns_file",
                "--local-columns-file",
                self.local_columns_file.as_ref(),
            ),
            (
                "metrics.listen",
                "--metrics-listen",
                self.metrics_listen.as_ref(),
            ),
            (
                "database.url",
                "--database-url",
                self.database_url.as_ref().map(|s| &s.0),
            ),
        ];
        for (key, flag, value) in texts {
            if let Some(value) = value {
                layer.put_text(key, value, Origin::Flag(flag))?;
            }
        }
        if !self.sources.is_empty() {
            let sources = Value::List(self.sources.clone());
            layer.put("applier.sources", sources, Origin::Flag("--sources"))?;
        }
        if !self.kafka_properties.is_empty() {
            let mut table = std::collections::BTreeMap::new();
            for property in &self.kafka_properties {
                // Not echoed: a malformed argument may be a mistyped credential.
                let (key, value) = property.0.split_once('=').ok_or_else(|| Error::Setting {
                    key: "--kafka-property".into(),
                    problem: "expected `key=value`".into(),
                    fix: "e.g. `--kafka-property security.protocol=SASL_SSL`".into(),
                })?;
                table.insert(key.trim().to_owned(), value.to_owned());
            }
            layer.put(
                "kafka.properties",
                Value::Table(table),
                Origin::Flag("--kafka-property"),
            )?;
        }
        Ok(layer)
    }

    /// The configuration: these flags over the environment over the file.
    pub(crate) fn load(self) -> Result<config::RunConfig, Error> {
        let flags = self.layer()?;
        config::load(self.config, &flags, |name| std::env::var(name).ok())
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<(), Error> {
    let config = args.load()?;
    let (read, apply) = (config.reader.clone(), config.applier.clone());
    tracing::info!(
        region = %read.region,
        database = %read.database,
        topic = %read.publisher.topic,
        sources = ?apply.sources,
        metrics = ?config.metrics.listen,
        "replicator run"
    );
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let mut tasks = Tasks::new(cancel.clone());
    start_metrics(&mut tasks, &config.metrics, config.probes()).await?;
    let token = cancel.clone();
    tasks.spawn("reader", async move { reader::run(&read, token).await });
    let token = cancel.clone();
    tasks.spawn("applier", async move { applier::run(&apply, token).await });
    tasks.join().await
}

/// The tasks of one sidecar process, with one cancellation token: the first to end ends the
/// others (a sidecar runs all of its parts or none), and the first error is the outcome.
#[derive(Debug)]
pub(crate) struct Tasks {
    set: tokio::task::JoinSet<(&'static str, Result<(), Error>)>,
    cancel: CancellationToken,
}

impl Tasks {
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Tasks {
            set: tokio::task::JoinSet::new(),
            cancel,
        }
    }

    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        task: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        self.set.spawn(async move { (name, task.await) });
    }

    pub(crate) async fn join(mut self) -> Result<(), Error> {
        let mut outcome = Ok(());
        while let Some(joined) = self.set.join_next().await {
            self.cancel.cancel();
            match joined {
                Ok((task, Err(error))) => {
                    tracing::error!(task, error = %error, "task failed");
                    if outcome.is_ok() {
                        outcome = Err(error);
                    }
                }
                Ok((_, Ok(()))) => {}
                Err(join) => {
                    if outcome.is_ok() {
                        outcome = Err(Error::StreamShape {
                            problem: format!("a task panicked: {join}"),
                        });
                    }
                }
            }
        }
        outcome
    }
}

/// Binds `/metrics` and starts it and the probes among `tasks`. A port given explicitly that
/// cannot be bound is an error; the default one only a warning (the sidecar replicates anyway).
pub(crate) async fn start_metrics(
    tasks: &mut Tasks,
    metrics: &MetricsConfig,
    probes: ProbeConfig,
) -> Result<(), Error> {
    let Some(address) = metrics.listen else {
        return Ok(());
    };
    let server = match MetricsServer::bind(address).await {
        Ok(server) => server,
        Err(error) if !metrics.explicit => {
            tracing::warn!(error = %error, hint = %error.hint(), "metrics are not served");
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let cancel = tasks.cancel.clone();
    tasks.spawn("metrics", server.serve(cancel.clone()));
    tasks.spawn("probes", telemetry::probe::run(probes, cancel));
    Ok(())
}

/// How often `capture` and `apply` probe for their metrics (`run` reads `metrics.poll_interval`).
pub(crate) const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// `--metrics-listen` of `capture` and `apply`: off unless given.
pub(crate) fn metrics_flag(
    text: Option<&str>,
    poll_interval: std::time::Duration,
) -> Result<MetricsConfig, Error> {
    let listen = match text {
        None => None,
        Some(text) => config::parse_listen(text).map_err(|problem| Error::Setting {
            key: "--metrics-listen".into(),
            problem,
            fix: "write `127.0.0.1:9464`, `0.0.0.0:9464` or `off`".into(),
        })?,
    };
    Ok(MetricsConfig {
        listen,
        explicit: true,
        poll_interval,
    })
}

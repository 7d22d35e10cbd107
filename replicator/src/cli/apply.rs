//! `replicator apply` and `replicator run`: the applier, and the whole sidecar.

use std::time::Duration;

use clap::Args;
use replicator::apply::applier::{self, ApplierConfig};
use replicator::apply::local_config::LocalColumns;
use replicator::capture::publish::PublisherConfig;
use replicator::capture::reader::{self, ReaderConfig};
use replicator::{DatabaseUrl, Error, RegionId};
use tokio_util::sync::CancellationToken;

use super::capture::CaptureArgs;
use super::{cancel_on_signal, KafkaArgs, Secret};

pub(crate) const APPLY_EXAMPLES: &str = "\
Examples:
  # Region eu applies what us and ap publish:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.eu.internal/superset' PGPASSWORD=... \\
      replicator apply --region eu --sources us,ap --kafka-brokers kafka-1:9092

  # A database connection created in another region needs this region's URI before it can be
  # created here; until then its transaction waits, parked:
  replicator apply --region eu --sources us --kafka-brokers kafka:9092 \\
      --local-columns-file /etc/replicator/local-columns.json
  # local-columns.json: {\"dbs\": {\"<uuid or database_name>\": {\"sqlalchemy_uri\": \"postgresql://...\"}}}

Each source transaction is applied in one transaction of this database together with the
consumer position; after a crash the applier resumes from the database, not the broker. Exit
status: 0 after a clean shutdown, 78 when an operator must act, 70 on an internal error.";

pub(crate) const RUN_EXAMPLES: &str = "\
Examples:
  # The sidecar of region us: capture to replicator.us, apply eu and ap:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator run --region us --sources eu,ap --kafka-brokers kafka-1:9092

On SIGTERM or SIGINT both stop within the grace period; state is in the database and the slot,
so a restart resumes where they stopped.";

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    pub(crate) region: RegionId,

    /// The regions to apply, comma-separated (never this region).
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new, required = true)]
    pub(crate) sources: Vec<RegionId>,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    /// A JSON file with this region's local columns for new rows (a database connection's
    /// `sqlalchemy_uri`), by uuid or name; see the example.
    #[arg(long, env = "REPLICATOR_LOCAL_COLUMNS_FILE")]
    pub(crate) local_columns_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) capture: CaptureArgs,

    /// The regions to apply, comma-separated (never this region).
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new, required = true)]
    pub(crate) sources: Vec<RegionId>,

    /// A JSON file with this region's local columns for new rows (see `apply --help`).
    #[arg(long, env = "REPLICATOR_LOCAL_COLUMNS_FILE")]
    pub(crate) local_columns_file: Option<std::path::PathBuf>,
}

pub(crate) fn applier_config(
    database: DatabaseUrl,
    region: RegionId,
    sources: Vec<RegionId>,
    kafka: &KafkaArgs,
    local_columns_file: Option<&std::path::Path>,
) -> Result<ApplierConfig, Error> {
    let sources: Vec<(RegionId, String)> =
        sources.into_iter().map(|s| (s, kafka.topic(&s))).collect();
    if sources.iter().any(|(s, _)| *s == region) {
        return Err(Error::Config {
            problem: format!(
                "--sources names this region ({region}); a region never applies its own topic"
            ),
        });
    }
    let local_columns = match local_columns_file {
        Some(path) => LocalColumns::from_json_file(path)?,
        None => LocalColumns::new(),
    };
    Ok(ApplierConfig {
        kafka: kafka.settings(format!("replicator-{region}-apply"))?,
        region,
        database,
        sources,
        local_columns,
        max_backoff: Duration::from_secs(30),
    })
}

pub(crate) async fn run_apply(args: ApplyArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.database_url.0)?;
    let config = applier_config(
        database,
        args.region,
        args.sources,
        &args.kafka,
        args.local_columns_file.as_deref(),
    )?;
    tracing::info!(region = %config.region, database = %config.database, sources = ?config.sources, "replicator apply");
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    applier::run(&config, cancel).await
}

pub(crate) async fn run_both(args: RunArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.capture.database_url.0)?;
    let apply = applier_config(
        database.clone(),
        args.capture.region,
        args.sources,
        &args.capture.kafka,
        args.local_columns_file.as_deref(),
    )?;
    let capture = args.capture;
    let topic = capture
        .topic
        .unwrap_or_else(|| capture.kafka.topic(&capture.region));
    let read = ReaderConfig {
        region: capture.region,
        database,
        slot: capture.slot.to_string(),
        publication: capture.publication.to_string(),
        kafka: capture
            .kafka
            .settings(format!("replicator-{}", capture.region))?,
        publisher: PublisherConfig::new(topic),
        heartbeat_interval: capture.heartbeat_interval,
        max_backoff: Duration::from_secs(30),
        shutdown_grace: capture.shutdown_grace,
    };
    tracing::info!(region = %read.region, database = %read.database, topic = %read.publisher.topic, sources = ?apply.sources, "replicator run");
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { ("reader", reader::run(&read, cancel).await) });
    }
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { ("applier", applier::run(&apply, cancel).await) });
    }
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        // The first task to end ends the other: a sidecar runs both halves or neither.
        cancel.cancel();
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

//! `replicator apply`: the applier alone (`replicator run` is in `run`).

use std::time::Duration;

use clap::Args;
use replicator::apply::applier::{self, ApplierConfig};
use replicator::apply::local_config::LocalColumns;
use replicator::telemetry::ProbeConfig;
use replicator::{DatabaseUrl, Error, RegionId};
use tokio_util::sync::CancellationToken;

use super::run::{metrics_flag, start_metrics, Tasks, PROBE_INTERVAL};
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

    /// Serve Prometheus metrics on `ADDRESS/metrics` (e.g. `127.0.0.1:9464`); none without it.
    #[arg(long, env = "REPLICATOR_METRICS_LISTEN", value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<String>,
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
    let metrics = metrics_flag(args.metrics_listen.as_deref(), PROBE_INTERVAL)?;
    tracing::info!(region = %config.region, database = %config.database, sources = ?config.sources, metrics = ?metrics.listen, "replicator apply");
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let mut tasks = Tasks::new(cancel.clone());
    let probes = ProbeConfig {
        database: config.database.clone(),
        interval: PROBE_INTERVAL,
        slot: None,
        sources: config.sources.clone(),
        kafka: Some(config.kafka.clone()),
    };
    start_metrics(&mut tasks, &metrics, probes).await?;
    tasks.spawn(
        "applier",
        async move { applier::run(&config, cancel).await },
    );
    tasks.join().await
}

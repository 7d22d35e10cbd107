//! `replicator capture`, `snapshot` and `tail`: the reader side.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use replicator::capture::publish::PublisherConfig;
use replicator::capture::reader::{self, ReaderConfig};
use replicator::capture::snapshot::{
    self, SnapshotConfig, DEFAULT_TRANSACTION_SIZE, MAX_IN_FLIGHT,
};
use replicator::setup::{PublicationName, SlotName};
use replicator::telemetry::ProbeConfig;
use replicator::{DatabaseUrl, Error, RegionId};
use tokio_util::sync::CancellationToken;

use super::run::{metrics_flag, start_metrics, Tasks, PROBE_INTERVAL};
use super::{cancel_on_signal, duration, transaction_size, KafkaArgs, Secret};

pub(crate) const CAPTURE_EXAMPLES: &str = "\
Examples:
  # Publish region us's changes to topic replicator.us:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator capture --region us --kafka-brokers kafka-1:9092,kafka-2:9092

  # TLS and SASL settings go to the Kafka client as properties (values are never logged):
  replicator capture --region eu --kafka-brokers kafka:9093 \\
      --kafka-property security.protocol=SASL_SSL --kafka-property sasl.mechanism=SCRAM-SHA-512

The slot's confirmed position moves only to what the broker acknowledged; after a crash the
reader resumes there. Exit status: 0 after a clean shutdown, 75 when it gave up on a transient
failure, 78 when an operator must act (e.g. the slot is gone), 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct CaptureArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    pub(crate) region: RegionId,

    /// The slot `setup` created.
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    pub(crate) slot: SlotName,

    /// The publication `setup` created.
    #[arg(long, env = "REPLICATOR_PUBLICATION", default_value = "replicator", value_parser = PublicationName::new)]
    pub(crate) publication: PublicationName,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    /// The region's topic (default `replicator.<region>`).
    #[arg(long, env = "REPLICATOR_TOPIC")]
    pub(crate) topic: Option<String>,

    /// How often a heartbeat goes through the WAL (e.g. `1s`, `500ms`).
    #[arg(long, env = "REPLICATOR_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = duration)]
    pub(crate) heartbeat_interval: Duration,

    /// How long shutdown may wait for records in flight.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub(crate) shutdown_grace: Duration,

    /// Serve Prometheus metrics on `ADDRESS/metrics` (e.g. `127.0.0.1:9464`); none without it.
    #[arg(long, env = "REPLICATOR_METRICS_LISTEN", value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<String>,
}

pub(crate) const SNAPSHOT_EXAMPLES: &str = "\
Examples:
  # Publish region us's current state to topic replicator.us (while `replicator capture` runs):
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator snapshot --region us --kafka-brokers kafka-1:9092,kafka-2:9092

  # Smaller snapshot transactions, and more time for the broker to acknowledge the last records:
  replicator snapshot --region eu --kafka-brokers kafka:9092 \\
      --transaction-size 200 --flush-timeout 5min

One REPEATABLE READ, READ ONLY transaction reads every live entity (with its clock and every
field's version) and every tombstone, streamed through a cursor; they are published as ordinary
change records, in snapshot transactions closed by commit records. Merged with what `capture`
publishes after the slot's confirmed position, it gives the region's state whatever the
interleaving. The report on stdout says from which offset a new region consumes the topic.
Running it while Superset and `capture` run is safe; running it twice only publishes duplicates.
Exit status: 0 once the broker acknowledged every record, 75 on a transient failure (run it
again), 78 when an operator must act (e.g. setup never ran, the slot is gone), 70 on an internal
error.";

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    pub(crate) region: RegionId,

    /// The slot `setup` created (it must exist: it carries every change after the snapshot).
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    pub(crate) slot: SlotName,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    /// The region's topic (default `replicator.<region>`).
    #[arg(long, env = "REPLICATOR_TOPIC")]
    pub(crate) topic: Option<String>,

    /// Most entities per snapshot transaction.
    #[arg(long, default_value_t = DEFAULT_TRANSACTION_SIZE, value_parser = transaction_size)]
    pub(crate) transaction_size: usize,

    /// How long to wait at the end for the broker to acknowledge every record.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub(crate) flush_timeout: Duration,
}

pub(crate) const TAIL_EXAMPLES: &str = "\
Examples:
  # Everything region us published, then exit after 2 s without a new record:
  replicator tail --kafka-brokers kafka:9092 --topic replicator.us

  # Keep following, and pick out the dashboards with jq:
  replicator tail --kafka-brokers kafka:9092 --topic replicator.eu --follow \\
      | jq 'select(.body.change.table == \"dashboards\")'";

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    /// The topic to read (e.g. `replicator.us`).
    #[arg(long)]
    pub(crate) topic: String,

    /// Keep waiting for new records.
    #[arg(long)]
    pub(crate) follow: bool,

    /// Without --follow: stop after this long without a new record.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub(crate) idle: Duration,
}

pub(crate) async fn run_capture(args: CaptureArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.database_url.0)?;
    let kafka = args.kafka.settings(format!("replicator-{}", args.region))?;
    let topic = args.topic.unwrap_or_else(|| args.kafka.topic(&args.region));
    let config = ReaderConfig {
        region: args.region,
        database,
        slot: args.slot.to_string(),
        publication: args.publication.to_string(),
        kafka,
        publisher: PublisherConfig::new(topic),
        heartbeat_interval: args.heartbeat_interval,
        max_backoff: Duration::from_secs(30),
        shutdown_grace: args.shutdown_grace,
    };
    let metrics = metrics_flag(args.metrics_listen.as_deref(), PROBE_INTERVAL)?;
    tracing::info!(region = %config.region, database = %config.database, topic = %config.publisher.topic, metrics = ?metrics.listen, "replicator capture");
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let mut tasks = Tasks::new(cancel.clone());
    let probes = ProbeConfig {
        database: config.database.clone(),
        interval: PROBE_INTERVAL,
        slot: Some((config.region, config.slot.clone())),
        sources: Vec::new(),
        kafka: None,
    };
    start_metrics(&mut tasks, &metrics, probes).await?;
    tasks.spawn("reader", async move { reader::run(&config, cancel).await });
    tasks.join().await
}

pub(crate) async fn run_snapshot(args: SnapshotArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.database_url.0)?;
    let kafka = args
        .kafka
        .settings(format!("replicator-{}-snapshot", args.region))?;
    let topic = args.topic.unwrap_or_else(|| args.kafka.topic(&args.region));
    let mut publisher = PublisherConfig::new(topic);
    publisher.max_in_flight = MAX_IN_FLIGHT;
    let config = SnapshotConfig {
        region: args.region,
        database,
        slot: args.slot.to_string(),
        kafka,
        publisher,
        transaction_size: args.transaction_size,
        flush_timeout: args.flush_timeout,
    };
    tracing::info!(region = %config.region, database = %config.database, topic = %config.publisher.topic, "replicator snapshot");
    // No signal handler: a snapshot killed midway leaves only harmless records (see the module
    // docs of `capture::snapshot`); the database ends its transaction when the connection drops.
    let report = snapshot::run(&config).await?;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(report.to_string().as_bytes());
    Ok(())
}

pub(crate) async fn run_tail(args: TailArgs) -> Result<(), Error> {
    let kafka = args.kafka.settings("replicator-tail".into())?;
    let printed = replicator::tail::run(&kafka, &args.topic, args.follow, args.idle).await?;
    tracing::info!(records = printed, topic = %args.topic, "tail done");
    Ok(())
}

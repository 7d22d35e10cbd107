//! The `replicator` binary: parses the command line, sets up logging and calls the library. It
//! holds no logic of its own.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use replicator::apply::applier::{self, ApplierConfig};
use replicator::apply::local_config::LocalColumns;
use replicator::capture::publish::{KafkaSettings, PublisherConfig};
use replicator::capture::reader::{self, ReaderConfig};
use replicator::capture::snapshot::{
    self, SnapshotConfig, DEFAULT_TRANSACTION_SIZE, MAX_IN_FLIGHT,
};
use replicator::setup::{self, PublicationName, SetupOptions, SlotName};
use replicator::{Action, DatabaseUrl, Error, RegionId};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "replicator",
    version,
    about = "Replicates Apache Superset metadata between regions through Kafka."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install capture into this region's Superset metadata database (idempotent).
    #[command(after_help = SETUP_EXAMPLES)]
    Setup(SetupArgs),
    /// Stream this region's changes to its Kafka topic (the reader), until SIGTERM or SIGINT.
    #[command(after_help = CAPTURE_EXAMPLES)]
    Capture(CaptureArgs),
    /// Publish the current state of every replicated entity to the region's topic, consistently
    /// with the slot, so a new region can bootstrap from it.
    #[command(after_help = SNAPSHOT_EXAMPLES)]
    Snapshot(SnapshotArgs),
    /// Print a region topic's records, decoded, one JSON object per line (read-only).
    #[command(after_help = TAIL_EXAMPLES)]
    Tail(TailArgs),
    /// Apply the other regions' topics to this region's database (the applier), until SIGTERM
    /// or SIGINT.
    #[command(after_help = APPLY_EXAMPLES)]
    Apply(ApplyArgs),
    /// Run the reader and the applier together in one process, until SIGTERM or SIGINT.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
}

const APPLY_EXAMPLES: &str = "\
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

const RUN_EXAMPLES: &str = "\
Examples:
  # The sidecar of region us: capture to replicator.us, apply eu and ap:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator run --region us --sources eu,ap --kafka-brokers kafka-1:9092

On SIGTERM or SIGINT both stop within the grace period; state is in the database and the slot,
so a restart resumes where they stopped.";

#[derive(Debug, Args)]
struct ApplyArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    region: RegionId,

    /// The regions to apply, comma-separated (never this region).
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new, required = true)]
    sources: Vec<RegionId>,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// A JSON file with this region's local columns for new rows (a database connection's
    /// `sqlalchemy_uri`), by uuid or name; see the example.
    #[arg(long, env = "REPLICATOR_LOCAL_COLUMNS_FILE")]
    local_columns_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    capture: CaptureArgs,

    /// The regions to apply, comma-separated (never this region).
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new, required = true)]
    sources: Vec<RegionId>,

    /// A JSON file with this region's local columns for new rows (see `apply --help`).
    #[arg(long, env = "REPLICATOR_LOCAL_COLUMNS_FILE")]
    local_columns_file: Option<std::path::PathBuf>,
}

const TAIL_EXAMPLES: &str = "\
Examples:
  # Everything region us published, then exit after 2 s without a new record:
  replicator tail --kafka-brokers kafka:9092 --topic replicator.us

  # Keep following, and pick out the dashboards with jq:
  replicator tail --kafka-brokers kafka:9092 --topic replicator.eu --follow \\
      | jq 'select(.body.change.table == \"dashboards\")'";

#[derive(Debug, Args)]
struct TailArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// The topic to read (e.g. `replicator.us`).
    #[arg(long)]
    topic: String,

    /// Keep waiting for new records.
    #[arg(long)]
    follow: bool,

    /// Without --follow: stop after this long without a new record.
    #[arg(long, default_value = "2s", value_parser = duration)]
    idle: Duration,
}

const SNAPSHOT_EXAMPLES: &str = "\
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
struct SnapshotArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    region: RegionId,

    /// The slot `setup` created (it must exist: it carries every change after the snapshot).
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    slot: SlotName,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// The region's topic (default `replicator.<region>`).
    #[arg(long, env = "REPLICATOR_TOPIC")]
    topic: Option<String>,

    /// Most entities per snapshot transaction.
    #[arg(long, default_value_t = DEFAULT_TRANSACTION_SIZE, value_parser = transaction_size)]
    transaction_size: usize,

    /// How long to wait at the end for the broker to acknowledge every record.
    #[arg(long, default_value = "60s", value_parser = duration)]
    flush_timeout: Duration,
}

const CAPTURE_EXAMPLES: &str = "\
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
struct CaptureArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    database_url: Secret,

    /// This region's id, as given to `setup`.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    region: RegionId,

    /// The slot `setup` created.
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    slot: SlotName,

    /// The publication `setup` created.
    #[arg(long, env = "REPLICATOR_PUBLICATION", default_value = "replicator", value_parser = PublicationName::new)]
    publication: PublicationName,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// The region's topic (default `replicator.<region>`).
    #[arg(long, env = "REPLICATOR_TOPIC")]
    topic: Option<String>,

    /// How often a heartbeat goes through the WAL (e.g. `1s`, `500ms`).
    #[arg(long, env = "REPLICATOR_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = duration)]
    heartbeat_interval: Duration,

    /// How long shutdown may wait for records in flight.
    #[arg(long, default_value = "10s", value_parser = duration)]
    shutdown_grace: Duration,
}

fn transaction_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of entities from 1 to 1000000"
        )),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    match pgrepl::parse_duration_setting(text, Duration::from_secs(1)) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{text:?} is not a positive duration like `1s`, `500ms` or `2min`"
        )),
    }
}

const SETUP_EXAMPLES: &str = "\
Examples:
  # Set up region us (the password comes from the environment, never from the command line):
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator setup --region us

  # Print every statement setup would run, changing nothing:
  replicator setup --region us --dry-run \\
      --database-url 'host=db.us.internal dbname=superset user=replicator'

  # Custom slot and publication names:
  replicator setup --region eu --slot replicator_eu --publication replicator_eu

Running setup again is safe: it reports `nothing to do` when the database is already set up.";

#[derive(Debug, Args)]
struct SetupArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    database_url: Secret,

    /// This region's id (1-16 of a-z, 0-9, `_`, `-`); set once, it can never change.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    region: RegionId,

    /// The logical replication slot to create (pgoutput) if it does not exist.
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    slot: SlotName,

    /// The publication to create, or to make match the table policy.
    #[arg(long, env = "REPLICATOR_PUBLICATION", default_value = "replicator", value_parser = PublicationName::new)]
    publication: PublicationName,

    /// Print every statement setup would run, as a SQL script, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// How to reach Kafka: shared by every subcommand that talks to the broker.
#[derive(Debug, Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "REPLICATOR_KAFKA_BROKERS")]
    kafka_brokers: String,

    /// Region topics are named `<prefix><region>`.
    #[arg(long, env = "REPLICATOR_TOPIC_PREFIX", default_value = "replicator.")]
    topic_prefix: String,

    /// An extra librdkafka property `key=value` (TLS, SASL, ...); repeatable. Values of secret
    /// keys are never logged.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = Secret::parse)]
    kafka_properties: Vec<Secret>,
}

impl KafkaArgs {
    fn topic(&self, region: &RegionId) -> String {
        format!("{}{region}", self.topic_prefix)
    }

    fn settings(&self, client_id: String) -> Result<KafkaSettings, Error> {
        let mut settings = KafkaSettings::new(self.kafka_brokers.clone(), client_id);
        for property in &self.kafka_properties {
            settings.add_property_arg(&property.0)?;
        }
        Ok(settings)
    }
}

/// A command-line value that may hold a password: parsed later by the library, so that a bad
/// value is reported without echoing it (clap would print it), and never shown by `Debug`.
#[derive(Clone)]
struct Secret(String);

impl Secret {
    fn parse(text: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(70);
        }
    };
    let outcome = match cli.command {
        Command::Setup(args) => runtime.block_on(run_setup(args)),
        Command::Capture(args) => runtime.block_on(run_capture(args)),
        Command::Snapshot(args) => runtime.block_on(run_snapshot(args)),
        Command::Tail(args) => runtime.block_on(run_tail(args)),
        Command::Apply(args) => runtime.block_on(run_apply(args)),
        Command::Run(args) => runtime.block_on(run_both(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut chain = String::new();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            tracing::error!(action = ?error.action(), "{error}{chain}\n  hint: {}", error.hint());
            ExitCode::from(match error.action() {
                Action::Retry => 75,      // EX_TEMPFAIL
                Action::Operator => 78,   // EX_CONFIG
                Action::Fatal => 70,      // EX_SOFTWARE
                Action::Quarantine => 65, // EX_DATAERR
            })
        }
    }
}

async fn run_setup(args: SetupArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.database_url.0)?;
    let options = SetupOptions::new(args.region, args.slot, args.publication);
    tracing::info!(
        database = %database,
        region = %options.region,
        slot = %options.slot,
        publication = %options.publication,
        dry_run = args.dry_run,
        "replicator setup"
    );
    let mut client = database.connect().await?;
    let text = if args.dry_run {
        let plan = setup::plan(&mut client, &options).await?;
        format!("-- replicator setup --dry-run against {database}\n{plan}")
    } else {
        setup::run(&mut client, &options).await?.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (a pipe into `head`) is not a setup failure.
    let _ = stdout.write_all(text.as_bytes());
    Ok(())
}

async fn run_capture(args: CaptureArgs) -> Result<(), Error> {
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
    tracing::info!(region = %config.region, database = %config.database, topic = %config.publisher.topic, "replicator capture");
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    reader::run(&config, cancel).await
}

async fn run_snapshot(args: SnapshotArgs) -> Result<(), Error> {
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

/// Cancels on SIGTERM or SIGINT; a second signal is left to its default action (exit now).
async fn cancel_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

fn applier_config(
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

async fn run_apply(args: ApplyArgs) -> Result<(), Error> {
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

async fn run_both(args: RunArgs) -> Result<(), Error> {
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

async fn run_tail(args: TailArgs) -> Result<(), Error> {
    let kafka = args.kafka.settings("replicator-tail".into())?;
    let printed = replicator::tail::run(&kafka, &args.topic, args.follow, args.idle).await?;
    tracing::info!(records = printed, topic = %args.topic, "tail done");
    Ok(())
}

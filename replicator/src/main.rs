//! The `replicator` binary: parses the command line, sets up logging and calls the library. It
//! holds no logic of its own.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use replicator::Action;

use cli::apply::{ApplyArgs, APPLY_EXAMPLES};
use cli::capture::{
    CaptureArgs, SnapshotArgs, TailArgs, CAPTURE_EXAMPLES, SNAPSHOT_EXAMPLES, TAIL_EXAMPLES,
};
use cli::config::{ConfigArgs, CONFIG_EXAMPLES};
use cli::operator::logs::{ConflictsArgs, QuarantineArgs, CONFLICTS_EXAMPLES, QUARANTINE_EXAMPLES};
use cli::operator::{
    LagArgs, StatusArgs, TeardownArgs, VerifyArgs, LAG_EXAMPLES, STATUS_EXAMPLES,
    TEARDOWN_EXAMPLES, VERIFY_EXAMPLES,
};
use cli::run::{RunArgs, RUN_EXAMPLES};
use cli::setup::{SetupArgs, SETUP_EXAMPLES};

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
    /// Check the configuration of `run` and print it (secrets redacted), or its reference.
    #[command(after_help = CONFIG_EXAMPLES)]
    Config(ConfigArgs),
    /// This region's replication state: per source region the applied position, lag, parked and
    /// quarantined counts; the own slot's retained WAL.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// The lag of every source region applied here, in seconds.
    #[command(after_help = LAG_EXAMPLES)]
    Lag(LagArgs),
    /// Read and settle the conflict log: concurrent writes of one field, and who won.
    #[command(after_help = CONFLICTS_EXAMPLES)]
    Conflicts(ConflictsArgs),
    /// Read what the applier quarantined (records it could not decode or apply).
    #[command(after_help = QUARANTINE_EXAMPLES)]
    Quarantine(QuarantineArgs),
    /// Compare this region's replicated state with other regions'; exit 1 when they diverge.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Remove everything `setup` installed from this region's database (asks first).
    #[command(after_help = TEARDOWN_EXAMPLES)]
    Teardown(TeardownArgs),
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
        Command::Setup(args) => runtime.block_on(cli::setup::run_setup(args)),
        Command::Capture(args) => runtime.block_on(cli::capture::run_capture(args)),
        Command::Snapshot(args) => runtime.block_on(cli::capture::run_snapshot(args)),
        Command::Tail(args) => runtime.block_on(cli::capture::run_tail(args)),
        Command::Apply(args) => runtime.block_on(cli::apply::run_apply(args)),
        Command::Run(args) => runtime.block_on(cli::run::run(args)),
        Command::Config(args) => runtime.block_on(cli::config::run_config(args)),
        Command::Status(args) => runtime.block_on(cli::operator::run_status(args)),
        Command::Lag(args) => runtime.block_on(cli::operator::run_lag(args)),
        Command::Conflicts(args) => runtime.block_on(cli::operator::logs::run_conflicts(args)),
        Command::Quarantine(args) => runtime.block_on(cli::operator::logs::run_quarantine(args)),
        Command::Teardown(args) => runtime.block_on(cli::operator::run_teardown(args)),
        // Divergence is a finding, not an error: exit status 1, like diff(1).
        Command::Verify(args) => match runtime.block_on(cli::operator::run_verify(args)) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(error) => Err(error),
        },
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

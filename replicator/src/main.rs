//! The `replicator` binary: parses the command line, sets up logging and calls the library. It
//! holds no logic of its own.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use replicator::Action;

use cli::apply::{ApplyArgs, RunArgs, APPLY_EXAMPLES, RUN_EXAMPLES};
use cli::capture::{
    CaptureArgs, SnapshotArgs, TailArgs, CAPTURE_EXAMPLES, SNAPSHOT_EXAMPLES, TAIL_EXAMPLES,
};
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
        Command::Run(args) => runtime.block_on(cli::apply::run_both(args)),
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

//! `replicator-bench`: measures the replicator on the lab's real servers and prints what it
//! measured, as a table and as JSON. Run it through `dev/bench`, which brings up a durable lab.
//!
//! Measures so far:
//! - `big-txn`: peak RSS of `replicator capture` while it publishes one transaction of N rows
//!   (default 1 000 000), and the time from commit to the slot confirming it.

mod backlog;
mod big_txn;
mod rss;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "replicator-bench",
    about = "Benchmarks of the replicator on the lab's servers"
)]
struct Cli {
    #[command(subcommand)]
    measure: Measure,
    /// Write the results as JSON here too.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Measure {
    /// Peak RSS of the reader publishing one transaction of `--rows` rows.
    BigTxn {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// The region of the lab to run in.
        #[arg(long, default_value = "us")]
        region: String,
    },
    /// P1: drain a backlog of `--rows` single-row transactions, ours against a native
    /// subscription.
    Backlog {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.measure {
            Measure::BigTxn { rows, region } => big_txn::run(rows, &region).await,
            Measure::Backlog { rows } => backlog::run(rows).await,
        }
    });
    match outcome {
        Ok(result) => {
            let text = serde_json::to_string_pretty(&result).unwrap_or_default();
            if let Some(path) = cli.json {
                if let Err(e) = std::fs::write(&path, &text) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            #[allow(clippy::print_stdout)] // the benchmark's output
            {
                println!("{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

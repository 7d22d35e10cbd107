//! `replicator-bench`: measures the replicator on the lab's real servers, side by side with a
//! reference where there is one, and prints a table (measure, ours, reference, ratio, target,
//! met?) with every figure behind it as JSON. Run it through `dev/bench`, which brings up a
//! durable lab and builds release binaries. Methods: each module's docs and
//! `docs/benchmarks.md`.
//!
//! - `backlog` (P1): drain a backlog, ours against a native subscription.
//! - `capture` (P2): our reader against `pg_recvlogical` on the same backlog.
//! - `lag` (P3, and P5 steady): commit-to-applied latency at a fixed rate across three regions,
//!   and the sidecars' memory meanwhile.
//! - `big-txn` (P5): peak RSS of the reader publishing one N-row transaction.
//! - `rss` (P5): `lag` and `big-txn` together.
//! - `overhead` (P7): Superset-like writes with and without the triggers.
//! - `all`: all of them, sized to finish within 15 minutes on 2 cores.

mod all;
mod backlog;
mod big_txn;
mod capture;
mod lag;
mod overhead;
mod report;
mod rss;
mod slot;
mod stats;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

/// P1's default: 100,000 transactions took our applier 321 s to drain at the time of writing
/// (about 310 a second; 6½ minutes with building the backlog), which does not fit `all`'s
/// 15 minutes beside the other measures.
const BACKLOG_ROWS: u64 = 10_000;
/// `all`'s size for P5's big transaction (`big-txn` alone runs a million: 7 minutes).
const ALL_BIG_TXN_ROWS: u64 = 200_000;

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

/// P3's load.
#[derive(Debug, Clone, Args)]
struct LagArgs {
    /// Changes per second written in `us`.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// For how long.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// How long after the last write to wait for the targets to catch up.
    #[arg(long, default_value_t = 150)]
    drain_timeout: u64,
    /// One more argument for every sidecar, repeatable (e.g.
    /// `--sidecar-arg=--kafka-property=fetch.wait.max.ms=10`).
    #[arg(long = "sidecar-arg", allow_hyphen_values = true)]
    sidecar_args: Vec<String>,
}

impl From<LagArgs> for lag::Options {
    fn from(a: LagArgs) -> lag::Options {
        lag::Options {
            rate: a.rate,
            seconds: a.seconds,
            drain_timeout: a.drain_timeout,
            sidecar_args: a.sidecar_args,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Measure {
    /// P5: peak RSS of the reader publishing one transaction of `--rows` rows.
    BigTxn {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// The region of the lab to run in.
        #[arg(long, default_value = "us")]
        region: String,
    },
    /// P1: drain a backlog of `--rows` single-row transactions, ours against a native
    /// subscription (default 10,000: see `docs/benchmarks.md`).
    Backlog {
        #[arg(long, default_value_t = BACKLOG_ROWS)]
        rows: u64,
    },
    /// P2: our reader against pg_recvlogical, on a backlog of `--rows` transactions.
    Capture {
        #[arg(long, default_value_t = 50_000)]
        rows: u64,
    },
    /// P3: commit-to-applied latency across three regions at a fixed rate (and P5 steady).
    Lag(LagArgs),
    /// P5: the sidecars' memory during P3, and the reader's during one `--rows`-row transaction.
    Rss {
        #[arg(long, default_value_t = ALL_BIG_TXN_ROWS)]
        rows: u64,
        #[command(flatten)]
        lag: LagArgs,
    },
    /// P7: Superset-like transactions with and without the triggers, and a bulk insert.
    Overhead {
        #[arg(long, default_value_t = 2000)]
        transactions: u64,
        #[arg(long, default_value_t = 100_000)]
        bulk_rows: u64,
    },
    /// Every measure, one after the other, sized for 15 minutes on 2 cores.
    All {
        #[arg(long, default_value_t = BACKLOG_ROWS)]
        backlog_rows: u64,
        #[arg(long, default_value_t = 50_000)]
        capture_rows: u64,
        #[command(flatten)]
        lag: LagArgs,
        /// A second P3 run, 10 s at this rate (0: none), within the applier's capacity.
        #[arg(long, default_value_t = 100)]
        lag_low_rate: u64,
        #[arg(long, default_value_t = ALL_BIG_TXN_ROWS)]
        big_txn_rows: u64,
        #[arg(long, default_value_t = 2000)]
        transactions: u64,
        #[arg(long, default_value_t = 100_000)]
        bulk_rows: u64,
    },
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn measure(measure: Measure) -> Result<report::Report> {
    match measure {
        Measure::BigTxn { rows, region } => big_txn::run(rows, &region).await,
        Measure::Backlog { rows } => backlog::run(rows).await,
        Measure::Capture { rows } => capture::run(rows).await,
        Measure::Lag(lag) => lag::run(lag.into()).await,
        Measure::Rss { rows, lag } => {
            let steady = lag::run(lag.into()).await?;
            let big = big_txn::run(rows, "us").await?;
            let mut lines = steady.lines.clone();
            lines.extend(big.lines.iter().cloned());
            let json =
                json!({"measure": "rss", "steady": steady.into_json(), "big_txn": big.into_json()});
            Ok(report::Report { json, lines })
        }
        Measure::Overhead {
            transactions,
            bulk_rows,
        } => overhead::run(transactions, bulk_rows).await,
        Measure::All {
            backlog_rows,
            capture_rows,
            lag,
            lag_low_rate,
            big_txn_rows,
            transactions,
            bulk_rows,
        } => {
            all::run(all::Plan {
                backlog_rows,
                capture_rows,
                lag: lag.into(),
                lag_low_rate,
                big_txn_rows,
                overhead_transactions: transactions,
                bulk_rows,
            })
            .await
        }
    }
}

/// What the sizes of this run leave out, said next to the table.
fn notes(measure: &Measure) -> Vec<String> {
    let mut notes = Vec::new();
    let backlog = match measure {
        Measure::Backlog { rows }
        | Measure::All {
            backlog_rows: rows, ..
        } => Some(*rows),
        _ => None,
    };
    if backlog.is_some_and(|rows| rows < 100_000) {
        notes.push(
            "P1 drains a smaller backlog than the issue's 100k transactions: at our applier's \
             current rate (about 450 a second) 100k takes nearly 4 minutes to drain alone \
             (`dev/bench backlog --rows 100000`)."
                .into(),
        );
    }
    let big = match measure {
        Measure::Rss { rows, .. }
        | Measure::All {
            big_txn_rows: rows, ..
        } => Some(*rows),
        _ => None,
    };
    if big.is_some_and(|rows| rows < 1_000_000) {
        notes.push(
            "P5's big transaction is smaller than 1M rows to fit the time budget (the insert \
             alone takes about 5 minutes per million rows with the triggers); \
             `dev/bench big-txn` runs 1M."
                .into(),
        );
    }
    notes
}

/// An error with its causes (`db error: ERROR: …`).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
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
    let notes = notes(&cli.measure);
    let machine = report::machine();
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(measure(cli.measure));
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("benchmark failed: {}", chain(e.as_ref()));
            return std::process::ExitCode::FAILURE;
        }
    };
    let table = report::table(&report.lines);
    let mut json = report.into_json();
    if let Value::Object(map) = &mut json {
        map.insert("machine".into(), machine);
        map.insert(
            "load_average_after".into(),
            report::machine()
                .get("load_average")
                .cloned()
                .unwrap_or_default(),
        );
        map.insert("run_seconds".into(), json!(started.elapsed().as_secs_f64()));
        map.insert("notes".into(), json!(notes));
    }
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    #[allow(clippy::print_stdout)] // the benchmark's output
    {
        match &cli.json {
            Some(path) => {
                if let Err(e) = std::fs::write(path, &text) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
                println!("(every figure: {})\n", path.display());
            }
            None => println!("{text}\n"),
        }
        println!("{table}");
        for note in &notes {
            println!("note: {note}");
        }
        println!("run time: {:.0} s", started.elapsed().as_secs_f64());
    }
    std::process::ExitCode::SUCCESS
}

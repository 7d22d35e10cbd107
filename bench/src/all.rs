//! `all`: every measure, one after the other in one run on the same lab, and one table.
//!
//! Why sequential: the machine has two cores, and each measure is a throughput or latency figure
//! of its own, so running them side by side would measure their contention instead. The order
//! puts the short ones first; a measure that fails is reported as failed (with the start of its
//! error) and the run goes on, so one broken measure does not hide the others. Sizes default to
//! what fits the 15-minute budget on 2 cores (see `main.rs` and `docs/benchmarks.md`).

use std::future::Future;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::report::{Line, Report};
use crate::{backlog, big_txn, capture, lag, overhead};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The size of each measure in this run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) backlog_rows: u64,
    pub(crate) capture_rows: u64,
    pub(crate) lag: lag::Options,
    /// A second, short P3 run at this rate (0: none), within the applier's capacity, which
    /// separates the latency floor from falling behind.
    pub(crate) lag_low_rate: u64,
    pub(crate) big_txn_rows: u64,
    pub(crate) overhead_transactions: u64,
    pub(crate) bulk_rows: u64,
}

/// Runs one measure into `lines` and `measures`, timing it.
async fn step(
    name: &str,
    measure: impl Future<Output = Result<Report>>,
    lines: &mut Vec<Line>,
    measures: &mut Map<String, Value>,
) {
    eprintln!("== {name}");
    let started = Instant::now();
    let outcome = measure.await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("== {name}: {seconds:.0} s");
    match outcome {
        Ok(report) => {
            lines.extend(report.lines.iter().cloned());
            let mut json = report.into_json();
            if let Value::Object(map) = &mut json {
                map.insert("wall_seconds".into(), json!(seconds));
            }
            measures.insert(name.into(), json);
        }
        Err(e) => {
            let text = crate::chain(e.as_ref());
            eprintln!("{name} failed: {text}");
            let first: String = text.lines().next().unwrap_or("").chars().take(90).collect();
            lines.push(Line::new(name, format!("FAILED: {first}")));
            measures.insert(name.into(), json!({"error": text, "wall_seconds": seconds}));
        }
    }
}

pub(crate) async fn run(plan: Plan) -> Result<Report> {
    let started = Instant::now();
    let (mut lines, mut measures) = (Vec::new(), Map::new());
    step(
        "overhead",
        overhead::run(plan.overhead_transactions, plan.bulk_rows),
        &mut lines,
        &mut measures,
    )
    .await;
    step(
        "capture",
        capture::run(plan.capture_rows),
        &mut lines,
        &mut measures,
    )
    .await;
    step(
        "backlog",
        backlog::run(plan.backlog_rows),
        &mut lines,
        &mut measures,
    )
    .await;
    step("lag", lag::run(plan.lag.clone()), &mut lines, &mut measures).await;
    if plan.lag_low_rate > 0 {
        let low = lag::Options {
            rate: plan.lag_low_rate,
            seconds: 10,
            drain_timeout: 60,
            ..plan.lag.clone()
        };
        let mut low_lines = Vec::new();
        step("lag-low-rate", lag::run(low), &mut low_lines, &mut measures).await;
        // Its sidecars' memory is not another P5 figure: the full-rate run's is.
        lines.extend(
            low_lines
                .into_iter()
                .filter(|l| !l.measure.starts_with("P5")),
        );
    }
    step(
        "big-txn",
        big_txn::run(plan.big_txn_rows, "us"),
        &mut lines,
        &mut measures,
    )
    .await;
    let json = json!({
        "measure": "all",
        "plan": {
            "backlog_rows": plan.backlog_rows,
            "capture_rows": plan.capture_rows,
            "lag_rate": plan.lag.rate,
            "lag_seconds": plan.lag.seconds,
            "lag_drain_timeout_seconds": plan.lag.drain_timeout,
            "lag_low_rate": plan.lag_low_rate,
            "big_txn_rows": plan.big_txn_rows,
            "overhead_transactions": plan.overhead_transactions,
            "bulk_rows": plan.bulk_rows,
        },
        "measures": measures,
        "measures_seconds": started.elapsed().as_secs_f64(),
    });
    Ok(Report { json, lines })
}

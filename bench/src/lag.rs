//! P3, steady lag, and P5's steady memory: three regions with their sidecars running, region `us`
//! written at a fixed rate, and for every change the time from its commit in `us` to its first
//! visibility in `eu` and in `ap`; meanwhile the resident memory of the three sidecars.
//!
//! Method. `Mesh::new(["us","eu","ap"])` gives fresh Superset databases set up for capture, and
//! `replicator run` runs beside each (`--metrics-listen off`). One warm-up change must reach both
//! targets first (so the consumer-group joins are not counted). Then `WRITERS` (10) tasks, each
//! on its own connection and paced by its own tokio interval, insert one dashboard per tick in
//! its own transaction — together `rate` changes per second (default 1,000: 10 every 10 ms)
//! for `seconds`. The title carries the change's number and the server's `clock_timestamp()`
//! in Unix microseconds at the insert (`lag <n> <micros>`): the commit follows within the same
//! statement, so the commit's own flush is counted in the lag. We may not add triggers to
//! Superset's tables in the target regions, so each target is polled every 5 ms on a connection
//! of its own for new rows (`id >` the largest seen, titles `lag %`); a row's first-seen time is
//! the wall clock just *before* the poll that returned it (its snapshot is taken after that, so
//! the row was committed by then) — an upper bound at most one poll period plus the query late.
//! Commit and poll times both come from this machine's realtime clock.
//!
//! The run waits for every change to arrive, at most `drain_timeout` after the last write; a
//! change still missing then counts with the latency it had at that deadline (so percentiles
//! are lower bounds, and `censored` says how many). Reported: p50/p90/p99/max per target, a
//! per-second series (whether lag grows: the applier falling behind), the rate really written
//! and really applied, and each sidecar's peak RSS (VmHWM) and largest sampled VmRSS, with the
//! CPU seconds each used.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Mesh, TestDb};
use serde_json::{json, Value};

use crate::report::{mib, Line, Report};
use crate::rss;
use crate::stats::{self, Sample};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const WRITERS: u64 = 10;
const POLL: Duration = Duration::from_millis(5);
const REGIONS: [&str; 3] = ["us", "eu", "ap"];

/// How hard and how long to write.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) rate: u64,
    pub(crate) seconds: u64,
    pub(crate) drain_timeout: u64,
    /// More arguments for every `replicator run` (e.g. `--kafka-property=fetch.wait.max.ms=10`).
    pub(crate) sidecar_args: Vec<String>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the writers did.
#[derive(Debug, Default)]
struct Written {
    count: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn writer(db: &TestDb, index: u64, per_writer: u64, period: Duration) -> Result<Written> {
    let client = db.connect().await?;
    let insert = client
        .prepare(
            "INSERT INTO dashboards (dashboard_title, uuid, created_on, changed_on, published)
             VALUES ('lag ' || $1::bigint || ' ' ||
                     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
                     gen_random_uuid(), now(), now(), false)",
        )
        .await?;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = Written::default();
    for k in 0..per_writer {
        ticks.tick().await;
        let n = i64::try_from(k * WRITERS + index)?;
        match client.execute(&insert, &[&n]).await {
            Ok(_) => written.count += 1,
            Err(e) => {
                written.errors += 1;
                written.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Ok(written)
}

/// Polls a target region until it has seen `expected` changes (once the writers are done) or
/// the deadline; returns the samples and how many were still missing.
async fn poller(
    db: &TestDb,
    done: Arc<AtomicBool>,
    expected: Arc<AtomicU64>,
    deadline: Arc<AtomicU64>,
) -> Result<(Vec<Sample>, i64)> {
    let client = db.connect().await?;
    let query = client
        .prepare(
            "SELECT id, dashboard_title FROM dashboards
             WHERE id > $1 AND dashboard_title LIKE 'lag %' ORDER BY id",
        )
        .await?;
    let (mut last_id, mut seen, mut samples) = (0i32, HashSet::new(), Vec::new());
    loop {
        let before = now_micros();
        for row in client.query(&query, &[&last_id]).await? {
            last_id = last_id.max(row.get(0));
            let title: String = row.get(1);
            let mut parts = title.split(' ').skip(1);
            let (Some(n), Some(at)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (n, at): (u64, i64) = (n.parse()?, at.parse()?);
            if seen.insert(n) {
                samples.push(Sample {
                    committed_micros: at,
                    latency_micros: (before - at).max(0),
                });
            }
        }
        let finished = done.load(Ordering::Acquire);
        if finished && seen.len() as u64 >= expected.load(Ordering::Acquire) {
            return Ok((samples, before));
        }
        let limit = deadline.load(Ordering::Acquire);
        if finished && before >= i64::try_from(limit).unwrap_or(i64::MAX) {
            return Ok((samples, before));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn warm_up(mesh: &Mesh) -> Result<f64> {
    let started = Instant::now();
    mesh.client("us")
        .batch_execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('warm-up', gen_random_uuid())",
        )
        .await?;
    for region in ["eu", "ap"] {
        let client = mesh.client(region);
        loop {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM dashboards WHERE dashboard_title = 'warm-up'",
                    &[],
                )
                .await?
                .get(0);
            if n > 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(180) {
                return Err(
                    format!("the warm-up change never reached {region}\n{}", mesh.logs()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

pub(crate) async fn run(options: Options) -> Result<Report> {
    let (rate, seconds, drain_timeout) = (options.rate, options.seconds, options.drain_timeout);
    let mut mesh = Mesh::new(&REGIONS, "bench_p3").await?;
    for member in &mut mesh.members {
        member.extra_args = vec!["--metrics-listen".into(), "off".into()];
        member
            .extra_args
            .extend(options.sidecar_args.iter().cloned());
    }
    mesh.start_all()?;
    let warm_up_seconds = warm_up(&mesh).await?;
    let pids: Vec<u32> = REGIONS
        .iter()
        .filter_map(|r| mesh.member(r).sidecar.as_ref().map(harness::Sidecar::pid))
        .collect();
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| rss::cpu_seconds(*p)).collect();
    let sampler = rss::Sampler::start(pids.clone(), Duration::from_millis(100));

    eprintln!("P3 lag: {rate} changes/s in us for {seconds} s");
    let (done, expected, deadline) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(u64::MAX)),
        Arc::new(AtomicU64::new(u64::MAX)),
    );
    let pollers = ["eu", "ap"].map(|region| {
        poller(
            &mesh.member(region).db,
            done.clone(),
            expected.clone(),
            deadline.clone(),
        )
    });
    let per_writer = rate * seconds / WRITERS;
    let period = Duration::from_secs_f64(WRITERS as f64 / rate.max(1) as f64);
    let us = &mesh.member("us").db;
    let write_start = now_micros();
    let writers = async {
        let runs = (0..WRITERS).map(|i| writer(us, i, per_writer, period));
        let outcomes = futures_util::future::join_all(runs).await;
        let write_end = now_micros();
        let mut total = Written::default();
        for outcome in outcomes {
            let w = outcome?;
            total.count += w.count;
            total.errors += w.errors;
            total.first_error = total.first_error.or(w.first_error);
        }
        expected.store(total.count, Ordering::Release);
        let limit = write_end + i64::try_from(drain_timeout)? * 1_000_000;
        deadline.store(u64::try_from(limit)?, Ordering::Release);
        done.store(true, Ordering::Release);
        Ok::<_, Box<dyn std::error::Error>>((total, write_end))
    };
    let [eu, ap] = pollers;
    let (written, eu, ap) = tokio::join!(writers, eu, ap);
    let ((written, write_end), eu, ap) = (written?, eu?, ap?);
    let max_sampled = sampler.stop().await;

    let mut sidecars = serde_json::Map::new();
    let mut peak = 0u64;
    for (i, region) in REGIONS.iter().enumerate() {
        let pid = pids.get(i).copied().unwrap_or(0);
        let hwm = rss::of(pid).map(|(_, hwm)| hwm);
        peak = peak.max(hwm.unwrap_or(0));
        let cpu = rss::cpu_seconds(pid);
        let before = cpu_before.get(i).copied().flatten();
        sidecars.insert(
            (*region).into(),
            json!({
                "peak_rss_mib": hwm.map(mib),
                "max_sampled_rss_mib": max_sampled.get(i).copied().map(mib),
                "cpu_seconds_during_run": cpu.zip(before).map(|(a, b)| a - b),
            }),
        );
    }
    let write_seconds = (write_end - write_start) as f64 / 1e6;
    let written_rate = written.count as f64 / write_seconds;
    let target = |name: &str, (samples, at): &(Vec<Sample>, i64)| {
        let missing = written.count.saturating_sub(samples.len() as u64);
        let last_seen = samples
            .iter()
            .map(|s| s.committed_micros + s.latency_micros)
            .max()
            .unwrap_or(*at);
        let mut all = samples.clone();
        // A change never seen counts with the latency it had at the deadline (a lower bound).
        all.extend(std::iter::repeat_n(
            Sample {
                committed_micros: write_end,
                latency_micros: at - write_end,
            },
            usize::try_from(missing).unwrap_or(0),
        ));
        let applied_rate = samples.len() as f64 / ((last_seen - write_start) as f64 / 1e6);
        (
            name.to_owned(),
            json!({
                "latency": stats::summary(&all),
                "censored": missing,
                "applied_per_second": applied_rate,
                "last_seen_after_last_write_seconds": (last_seen - write_end) as f64 / 1e6,
                "per_second": stats::per_second(samples, write_start),
            }),
        )
    };
    let targets: Vec<(String, Value)> = vec![target("eu", &eu), target("ap", &ap)];
    Ok(report(
        &options,
        &written,
        written_rate,
        warm_up_seconds,
        targets,
        sidecars,
        peak,
    ))
}

fn report(
    options: &Options,
    written: &Written,
    written_rate: f64,
    warm_up_seconds: f64,
    targets: Vec<(String, Value)>,
    sidecars: serde_json::Map<String, Value>,
    peak: u64,
) -> Report {
    let mut lines = Vec::new();
    let mut per_target = serde_json::Map::new();
    let mut applied = Vec::new();
    for (region, figures) in targets {
        let ms = |key: &str| {
            let path = format!("/latency/{key}");
            figures
                .pointer(&path)
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        let censored = figures.get("censored").and_then(Value::as_u64).unwrap_or(0);
        let bound = if censored > 0 { "≥ " } else { "" };
        lines.push(
            Line::new(
                format!(
                    "P3 lag us→{region}, {}/s × {} s",
                    options.rate, options.seconds
                ),
                format!(
                    "p50 {bound}{:.0} ms, p99 {bound}{:.0} ms, max {bound}{:.0} ms",
                    ms("p50_ms"),
                    ms("p99_ms"),
                    ms("max_ms")
                ),
            )
            .target("p99 < 500 ms", censored == 0 && ms("p99_ms") < 500.0),
        );
        applied.push(format!(
            "{region} {:.0}/s",
            figures
                .get("applied_per_second")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        ));
        per_target.insert(region, figures);
    }
    let slowest = per_target
        .values()
        .filter_map(|f| f.get("applied_per_second").and_then(Value::as_f64))
        .fold(f64::INFINITY, f64::min);
    lines.push(
        Line::new("P3 (context) rate applied", applied.join(", "))
            .reference(format!(
                "written {written_rate:.0}/s (offered {}/s)",
                options.rate
            ))
            .ratio(slowest / written_rate)
            .target("keeps up (≥ 0.95)", slowest >= 0.95 * written_rate),
    );
    let sampled: Vec<String> = sidecars
        .iter()
        .map(|(r, s)| {
            format!(
                "{r} {:.1}",
                s.get("peak_rss_mib")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN)
            )
        })
        .collect();
    lines.push(
        Line::new(
            "P5 peak RSS, steady (P3's sidecars)",
            format!("{:.1} MiB (MiB: {})", mib(peak), sampled.join(", ")),
        )
        .target("< 128 MiB", peak > 0 && peak < 128 * 1_048_576),
    );
    let json = json!({
        "measure": "lag",
        "offered_per_second": options.rate,
        "seconds": options.seconds,
        "writers": WRITERS,
        "poll_ms": POLL.as_millis() as u64,
        "drain_timeout_seconds": options.drain_timeout,
        "sidecar_args": options.sidecar_args,
        "warm_up_seconds": warm_up_seconds,
        "written": written.count,
        "write_errors": written.errors,
        "first_write_error": written.first_error,
        "written_per_second": written_rate,
        "targets": per_target,
        "sidecars": sidecars,
        "steady_peak_rss_mib": mib(peak),
        "target": "p99 < 500 ms; peak RSS < 128 MiB",
    });
    Report { json, lines }
}

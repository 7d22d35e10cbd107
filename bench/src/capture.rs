//! P2, capture: how fast our reader (`replicator capture`: decode, canonicalize, encode, produce
//! to the broker, confirm) drains a backlog of N single-row transactions from its slot, against
//! PostgreSQL's own `pg_recvlogical` decoding the same changes with pgoutput to `/dev/null`.
//!
//! Method: one fresh database set up for capture (`replicator setup`: triggers, publication, our
//! slot), and two more pgoutput slots created before any commit — one for `pg_recvlogical` on
//! **our** publication (the same changes: the `dashboards` rows and the versioning rows our
//! triggers write beside them), one on a publication of `dashboards` alone (what a plain logical
//! replication setup would stream). Then N transactions, each inserting one dashboard, are
//! committed while nothing reads (`synchronous_commit = off` for speed; the WAL is flushed before
//! timing starts). Each reader then runs alone, one after the other on the same WAL
//! (`pg_recvlogical` on our publication before and after ours, the reference being the mean of
//! the two; then on `dashboards` alone):
//! `pg_recvlogical --endpos` is timed from spawn to exit; ours from spawn until the slot confirms
//! the backlog's end, which it does only after the broker acknowledged every record — so ours
//! includes connecting, creating the topic and up to one status interval (about 1 s) before the
//! confirmation is visible. The walsender's CPU seconds are sampled for each, which tells whether
//! the server's decoding or our process is the bottleneck.
//!
//! The ratio is `pg_recvlogical` seconds (same publication) / our seconds: 1.0 means we capture
//! as fast as PostgreSQL's own client can merely receive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{unique_name, Lab, Sidecar, TestDb};
use serde_json::json;
use tokio_postgres::Client;

use crate::report::{count, secs, Line, Report};
use crate::{backlog, rss, slot};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Where Debian puts PostgreSQL 15's client programs (`PG_BIN` overrides).
fn pg_bin(program: &str) -> String {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{program}")
}

/// One reader's run: wall seconds and the walsender's CPU seconds.
#[derive(Debug, Clone, Copy)]
struct Timed {
    seconds: f64,
    walsender_cpu: f64,
    reader_cpu: Option<f64>,
}

pub(crate) async fn run(rows: u64) -> Result<Report> {
    let lab = Lab::get()?;
    let db = lab.region("us")?.fresh_db("bench_p2").await?;
    let client = db.connect().await?;
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    harness::run_setup(&db, &slot, &publication).await?;
    let (same_slot, again_slot, plain_slot, plain_pub) = (
        db.unique_name("ref"),
        db.unique_name("refagain"),
        db.unique_name("refplain"),
        db.unique_name("pubplain"),
    );
    // One statement each: a slot cannot be created in a transaction that has written.
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {plain_pub} FOR TABLE dashboards"
        ))
        .await?;
    for name in [&same_slot, &again_slot, &plain_slot] {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[name],
            )
            .await?;
    }

    eprintln!("P2 capture: committing {rows} single-row transactions");
    let commit_seconds = backlog::commit_rows(&client, rows, "capture").await?;
    let end = slot::current_lsn(&client).await?;
    slot::wait_flushed(&client, &end).await?;
    let wal_bytes: f64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff($2::text::pg_lsn, confirmed_flush_lsn)::float8
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &end],
        )
        .await?
        .get(0);
    let written = written_rows(&client).await?;

    eprintln!("P2 capture: pg_recvlogical, our publication");
    let same = recvlogical(&db, &same_slot, &publication, &end).await?;
    eprintln!("P2 capture: replicator capture");
    let ours = ours(lab, &db, &slot, &publication, &end).await?;
    eprintln!("P2 capture: pg_recvlogical, our publication, again");
    let again = recvlogical(&db, &again_slot, &publication, &end).await?;
    eprintln!("P2 capture: pg_recvlogical, dashboards only");
    let plain = recvlogical(&db, &plain_slot, &plain_pub, &end).await?;

    // The reference is the mean of the runs before and after ours, so that neither the first
    // read of the backlog's WAL nor the machine's drift favours one side.
    let reference = Timed {
        seconds: (same.seconds + again.seconds) / 2.0,
        walsender_cpu: (same.walsender_cpu + again.walsender_cpu) / 2.0,
        reader_cpu: None,
    };
    let ratio = reference.seconds / ours.seconds;
    let rate = |t: Timed| rows as f64 / t.seconds;
    let json = json!({
        "measure": "capture",
        "rows": rows,
        "commit_seconds_with_triggers": commit_seconds,
        "backlog_wal_bytes": wal_bytes,
        "rows_written_by_the_backlog": written,
        "ours": timed_json(ours, rows),
        "pg_recvlogical_same_publication": timed_json(reference, rows),
        "pg_recvlogical_same_publication_runs": [timed_json(same, rows), timed_json(again, rows)],
        "pg_recvlogical_dashboards_only": timed_json(plain, rows),
        "ratio_recvlogical_over_ours": ratio,
        "target": ">= 0.8",
    });
    let lines = vec![
        Line::new(
            format!("P2 capture, {} txns", count(rows)),
            format!("{} ({:.0} txn/s)", secs(ours.seconds), rate(ours)),
        )
        .reference(format!(
            "pg_recvlogical {} ({:.0} txn/s)",
            secs(reference.seconds),
            rate(reference)
        ))
        .ratio(ratio)
        .target("≥ 0.8", ratio >= 0.8),
        Line::new(
            "P2 (context) recvlogical, dashboards only",
            format!("{:.0} MiB WAL in the backlog", wal_bytes / 1_048_576.0),
        )
        .reference(format!(
            "pg_recvlogical {} ({:.0} txn/s)",
            secs(plain.seconds),
            rate(plain)
        )),
    ];
    Ok(Report { json, lines })
}

fn timed_json(t: Timed, rows: u64) -> serde_json::Value {
    json!({
        "seconds": t.seconds,
        "transactions_per_second": rows as f64 / t.seconds,
        "walsender_cpu_seconds": t.walsender_cpu,
        "reader_cpu_seconds": t.reader_cpu,
    })
}

/// Rows the backlog wrote per table (the data rows and what the triggers wrote beside them).
async fn written_rows(client: &Client) -> Result<serde_json::Value> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM dashboards), (SELECT count(*) FROM replicator.registry),
                    (SELECT count(*) FROM replicator.entity),
                    (SELECT count(*) FROM replicator.field_version)",
            &[],
        )
        .await?;
    Ok(json!({
        "dashboards": row.get::<_, i64>(0),
        "replicator.registry": row.get::<_, i64>(1),
        "replicator.entity": row.get::<_, i64>(2),
        "replicator.field_version": row.get::<_, i64>(3),
    }))
}

/// `pg_recvlogical` from `slot` to `/dev/null` until `end`.
async fn recvlogical(db: &TestDb, slot: &str, publication: &str, end: &str) -> Result<Timed> {
    // The password goes through the environment, not the command line.
    let full = db.conninfo();
    let conninfo: Vec<&str> = full
        .split_whitespace()
        .filter(|t| !t.starts_with("password="))
        .map(|t| {
            if t.starts_with("application_name=") {
                "application_name=bench"
            } else {
                t
            }
        })
        .collect();
    let conninfo = conninfo.join(" ");
    let walsender = WalsenderCpu::start(db, slot).await?;
    let started = Instant::now();
    let output = tokio::process::Command::new(pg_bin("pg_recvlogical"))
        .args(["-d", &conninfo, "--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .args(["-f", "/dev/null", "--endpos", end])
        .env("PGPASSWORD", db.region().password())
        .output()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let walsender_cpu = walsender.stop().await;
    if !output.status.success() {
        return Err(format!(
            "pg_recvlogical failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(Timed {
        seconds,
        walsender_cpu,
        reader_cpu: None,
    })
}

/// `replicator capture` from `slot` until the slot confirms `end`.
async fn ours(lab: &Lab, db: &TestDb, slot: &str, publication: &str, end: &str) -> Result<Timed> {
    let client = db.connect().await?;
    let topic = unique_name("bench_p2");
    let walsender = WalsenderCpu::start(db, slot).await?;
    let started = Instant::now();
    let mut reader = Sidecar::start(
        &[
            "capture",
            "--region",
            "us",
            "--slot",
            slot,
            "--publication",
            publication,
            "--topic",
            &topic,
            "--kafka-brokers",
            lab.broker(),
            "--heartbeat-interval",
            "200ms",
        ],
        &[("REPLICATOR_DATABASE_URL", &db.conninfo())],
    )?;
    let confirmed = slot::wait_confirmed(&client, slot, end, Duration::from_secs(3600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let reader_cpu = rss::cpu_seconds(reader.pid());
    let walsender_cpu = walsender.stop().await;
    if let Err(e) = confirmed {
        return Err(format!("{e}\n--- capture log ---\n{}", reader.log()).into());
    }
    reader.kill();
    Ok(Timed {
        seconds,
        walsender_cpu,
        reader_cpu,
    })
}

/// Samples the CPU seconds of the walsender serving a slot, every 50 ms, on a connection of its
/// own; the last sample before the walsender exits is its total.
struct WalsenderCpu {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl WalsenderCpu {
    async fn start(db: &TestDb, slot: &str) -> Result<WalsenderCpu> {
        let client = db.connect().await?;
        let (stop, slot) = (Arc::new(AtomicBool::new(false)), slot.to_owned());
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen: std::collections::BTreeMap<i32, f64> = Default::default();
            while !flag.load(Ordering::Relaxed) {
                let pid: Option<i32> = client
                    .query_opt(
                        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .ok()
                    .flatten()
                    .and_then(|row| row.get(0));
                let cpu = pid.and_then(|p| Some((p, rss::cpu_seconds(u32::try_from(p).ok()?)?)));
                if let Some((pid, cpu)) = cpu {
                    seen.insert(pid, cpu);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen.values().sum()
        });
        Ok(WalsenderCpu { stop, task })
    }

    async fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0.0)
    }
}

//! P1, backlog drain: N single-row transactions committed in region A while replication is
//! paused, then timed until region B has applied all of them — the replicator (reader in A,
//! applier in B, through the broker) against a native PostgreSQL subscription catching up the
//! same backlog, in the same run on the same machine.
//!
//! Method, for each path on fresh databases cloned from the Superset template: pause (ours: no
//! sidecar runs; native: the subscription is disabled), commit N transactions that each insert
//! one `dashboards` row (a server-side loop committing every row, `synchronous_commit = off` so
//! that building the backlog is quick; it is not what is timed), then resume (start both
//! sidecars / enable the subscription) and poll B's row count every 20 ms until it reaches N.
//! Ours is timed from starting the sidecars, so it includes their start and the consumer-group
//! join (about 5 s against the lab's broker). The native subscription publishes only
//! `dashboards` and copies no initial data; ours runs with its triggers and publishes every
//! replicated table. The ratio is native seconds / our seconds (≥ 1.0 means we drain at least
//! as fast). P2 (`capture`) times the reader alone on a backlog of the same shape, which splits
//! our drain time between capture and apply. The applier's peak RSS while it drains is a P5
//! figure of its own: what it buffers grows with the backlog it starts behind.

use std::time::{Duration, Instant};

use harness::{Lab, Mesh};
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::report::{count, secs, Line, Report};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Commits `rows` transactions of one dashboard each (titled `<tag> <i>`), server-side, with
/// `synchronous_commit = off` (the backlog's WAL is flushed by the WAL writer within 200 ms).
pub(crate) async fn commit_rows(client: &Client, rows: u64, tag: &str) -> Result<f64> {
    let started = Instant::now();
    // Separate statements: a DO block that commits cannot run inside the implicit transaction
    // of a multi-statement query.
    client.batch_execute("SET synchronous_commit = off").await?;
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               FOR i IN 1..{rows} LOOP
                 INSERT INTO dashboards (dashboard_title, uuid) VALUES ('{tag} ' || i, gen_random_uuid());
                 COMMIT;
               END LOOP;
             END $$"
        ))
        .await?;
    client.batch_execute("RESET synchronous_commit").await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Polls `client` every 20 ms until it holds `rows` dashboards titled `bench …`.
async fn wait_count(client: &Client, rows: u64, what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM dashboards WHERE dashboard_title LIKE 'bench %'",
                &[],
            )
            .await?
            .get(0);
        if u64::try_from(n).unwrap_or(0) >= rows {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(
                format!("timed out after {timeout:?} waiting for {what} ({n} of {rows})").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ours(rows: u64) -> Result<Value> {
    let mut mesh = Mesh::new(&["us", "eu"], "bench_p1").await?;
    for member in &mut mesh.members {
        member.extra_args = vec!["--metrics-listen".into(), "off".into()];
    }
    let commit_seconds = commit_rows(mesh.client("us"), rows, "bench").await?;
    let end = crate::slot::current_lsn(mesh.client("us")).await?;
    crate::slot::wait_flushed(mesh.client("us"), &end).await?;
    let started = Instant::now();
    mesh.start_all()?;
    let eu = mesh.member("eu").db.connect().await?;
    let drained = wait_count(
        &eu,
        rows,
        "eu to apply the backlog",
        Duration::from_secs(3600),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = drained {
        return Err(format!("{e}\n{}", mesh.logs()).into());
    }
    let cpu = |region: &str| {
        mesh.member(region)
            .sidecar
            .as_ref()
            .and_then(|s| crate::rss::cpu_seconds(s.pid()))
    };
    let peak = |region: &str| {
        mesh.member(region)
            .sidecar
            .as_ref()
            .and_then(|s| crate::rss::of(s.pid()))
            .map(|(_, hwm)| crate::report::mib(hwm))
    };
    Ok(json!({
        "commit_seconds_with_triggers": commit_seconds,
        "drain_seconds": seconds,
        "transactions_per_second": rows as f64 / seconds,
        "sidecar_cpu_seconds": {"us": cpu("us"), "eu": cpu("eu")},
        "sidecar_peak_rss_mib": {"us": peak("us"), "eu": peak("eu")},
    }))
}

async fn native(rows: u64) -> Result<Value> {
    let lab = Lab::get()?;
    let a = lab.region("us")?.fresh_db("bench_p1n").await?;
    let b = lab.region("eu")?.fresh_db("bench_p1n").await?;
    let (ac, bc) = (a.connect().await?, b.connect().await?);
    let name = a.unique_name("sub");
    ac.batch_execute(&format!("CREATE PUBLICATION {name} FOR TABLE dashboards"))
        .await?;
    let conninfo = a.conninfo();
    bc.batch_execute(&format!(
        "CREATE SUBSCRIPTION {name} CONNECTION '{}' PUBLICATION {name}
         WITH (copy_data = false, enabled = false)",
        conninfo.replace('\'', "''")
    ))
    .await?;
    let commit_seconds = commit_rows(&ac, rows, "bench").await?;
    let end = crate::slot::current_lsn(&ac).await?;
    crate::slot::wait_flushed(&ac, &end).await?;
    let started = Instant::now();
    bc.batch_execute(&format!("ALTER SUBSCRIPTION {name} ENABLE"))
        .await?;
    let waited = wait_count(
        &bc,
        rows,
        "the native subscription to catch up",
        Duration::from_secs(600),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    bc.batch_execute(&format!(
        "ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE);
         DROP SUBSCRIPTION {name}"
    ))
    .await?;
    ac.execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await
        .ok();
    waited?;
    Ok(json!({
        "commit_seconds": commit_seconds,
        "drain_seconds": seconds,
        "transactions_per_second": rows as f64 / seconds,
    }))
}

pub(crate) async fn run(rows: u64) -> Result<Report> {
    eprintln!("P1 backlog: native subscription, {rows} transactions");
    let native = native(rows).await?;
    eprintln!("P1 backlog: replicator us → eu, {rows} transactions");
    let ours = ours(rows).await?;
    let seconds = |v: &Value| {
        v.get("drain_seconds")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let (ours_s, native_s) = (seconds(&ours), seconds(&native));
    let ratio = native_s / ours_s;
    let json = json!({
        "measure": "backlog",
        "rows": rows,
        "native": native,
        "ours": ours,
        "ratio_native_over_ours": ratio,
        "target": ">= 1.0",
    });
    let applier_peak = ours
        .pointer("/sidecar_peak_rss_mib/eu")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let memory = Line::new(
        format!("P5 peak RSS, applier draining P1's {}", count(rows)),
        format!("{applier_peak:.1} MiB"),
    )
    .target("< 128 MiB", applier_peak < 128.0);
    let line = Line::new(
        format!("P1 backlog drain, {} txns", count(rows)),
        format!("{} ({:.0} txn/s)", secs(ours_s), rows as f64 / ours_s),
    )
    .reference(format!(
        "native sub {} ({:.0} txn/s)",
        secs(native_s),
        rows as f64 / native_s
    ))
    .ratio(ratio)
    .target("≥ 1.0", ratio >= 1.0);
    Ok(Report {
        json,
        lines: vec![line, memory],
    })
}

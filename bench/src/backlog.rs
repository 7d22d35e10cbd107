//! P1, backlog drain: N single-row transactions committed in region A while replication is
//! paused, then timed until region B has applied all of them — the replicator (reader in A,
//! applier in B, through the broker) against a native PostgreSQL subscription catching up the
//! same backlog, in the same run on the same machine.
//!
//! Method, for each path on fresh databases cloned from the Superset template: pause (ours: no
//! sidecar runs; native: the subscription is disabled), commit N transactions that each insert
//! one `dashboards` row (a server-side loop committing every row), then resume (start both
//! sidecars / enable the subscription) and poll B's row count until it reaches N. The native
//! subscription publishes only `dashboards` and copies no initial data; ours runs with its
//! triggers and publishes every replicated table. The ratio is native seconds / our seconds
//! (≥ 1.0 means we drain at least as fast).

use std::time::{Duration, Instant};

use harness::{wait_until, HarnessError, Lab, Mesh};
use serde_json::{json, Value};
use tokio_postgres::Client;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Commits `rows` transactions of one dashboard each, server-side.
async fn commit_rows(client: &Client, rows: u64, tag: &str) -> Result<f64> {
    let started = Instant::now();
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
    Ok(started.elapsed().as_secs_f64())
}

async fn wait_count(client: &Client, rows: u64, what: &str) -> Result<()> {
    wait_until(what, Duration::from_secs(3600), || async move {
        let n: i64 = client
            .query_one("SELECT count(*) FROM dashboards WHERE dashboard_title LIKE 'bench %'", &[])
            .await
            .map_err(HarnessError::pg("count"))?
            .get(0);
        Ok((u64::try_from(n).unwrap_or(0) >= rows).then_some(()))
    })
    .await?;
    Ok(())
}

async fn ours(rows: u64) -> Result<Value> {
    let mut mesh = Mesh::new(&["us", "eu"], "bench_p1").await?;
    for member in &mut mesh.members {
        member.extra_args = vec!["--metrics-listen".into(), "off".into()];
    }
    let commit_seconds = commit_rows(mesh.client("us"), rows, "bench").await?;
    let started = Instant::now();
    mesh.start_all()?;
    let eu = mesh.member("eu").db.connect().await?;
    wait_count(&eu, rows, "eu to apply the backlog").await?;
    let seconds = started.elapsed().as_secs_f64();

    // Where the time goes: the same backlog again, capture alone first, then apply alone.
    mesh.kill_all();
    mesh.client("us").batch_execute("DELETE FROM dashboards").await?;
    commit_rows(mesh.client("us"), rows, "bench").await?;
    let end: String = mesh
        .client("us")
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let i = mesh.members.iter().position(|m| m.region == "us").unwrap_or(0);
    let capture_started = Instant::now();
    mesh.start_sidecar(i)?;
    // The slot confirms a position only once the broker acknowledged everything before it.
    let slot = mesh.member("us").slot.clone();
    wait_until("capture to publish the backlog", Duration::from_secs(3600), || async {
        let done: bool = mesh
            .client("us")
            .query_one(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &end],
            )
            .await
            .map_err(HarnessError::pg("read the slot"))?
            .get(0);
        Ok(done.then_some(()))
    })
    .await?;
    let capture_seconds = capture_started.elapsed().as_secs_f64();
    Ok(json!({
        "commit_seconds_with_triggers": commit_seconds,
        "drain_seconds": seconds,
        "capture_alone_seconds": capture_seconds,
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
    let started = Instant::now();
    bc.batch_execute(&format!("ALTER SUBSCRIPTION {name} ENABLE")).await?;
    let waited = wait_count(&bc, rows, "the native subscription to catch up").await;
    let seconds = started.elapsed().as_secs_f64();
    bc.batch_execute(&format!(
        "ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE);
         DROP SUBSCRIPTION {name}"
    ))
    .await?;
    ac.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await.ok();
    waited?;
    Ok(json!({"commit_seconds": commit_seconds, "drain_seconds": seconds}))
}

pub(crate) async fn run(rows: u64) -> Result<Value> {
    let native = native(rows).await?;
    let ours = ours(rows).await?;
    let ratio = native["drain_seconds"].as_f64().unwrap_or(0.0)
        / ours["drain_seconds"].as_f64().unwrap_or(f64::INFINITY);
    Ok(json!({
        "measure": "backlog",
        "rows": rows,
        "native": native,
        "ours": ours,
        "ratio_native_over_ours": ratio,
        "target": ">= 1.0",
    }))
}

//! Positions in the WAL, and waiting for a slot to confirm one.
//!
//! Why a poll of its own instead of `harness::wait_until`: that one backs off to 250 ms between
//! probes, which is noise when the thing timed takes a few seconds. Here the probe runs every
//! 20 ms; what remains is the reader's own status interval (it reports its confirmed position
//! about once a second), which the measures that use this say.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The current WAL write position, as text (`0/16B3748`).
pub(crate) async fn current_lsn(client: &Client) -> Result<String> {
    Ok(client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

/// Waits until the WAL is flushed up to `lsn` (logical decoding only sees flushed WAL, and
/// backlogs are committed with `synchronous_commit = off`).
pub(crate) async fn wait_flushed(client: &Client, lsn: &str) -> Result<()> {
    poll(Duration::from_secs(60), "the WAL to be flushed", || async {
        let row = client
            .query_one(
                "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .await?;
        Ok(row.get::<_, bool>(0))
    })
    .await
}

/// Waits until `slot` confirmed `lsn`; returns when it saw it.
pub(crate) async fn wait_confirmed(
    client: &Client,
    slot: &str,
    lsn: &str,
    timeout: Duration,
) -> Result<Instant> {
    poll(timeout, "the slot to confirm the backlog", || async {
        let row = client
            .query_one(
                "SELECT coalesce(confirmed_flush_lsn >= $2::text::pg_lsn, false)
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &lsn],
            )
            .await?;
        Ok(row.get::<_, bool>(0))
    })
    .await?;
    Ok(Instant::now())
}

async fn poll<F, Fut>(timeout: Duration, what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if done().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Capture under faults, against real servers (the capture issue's "Done when"):
//!
//! - `replicator capture` SIGKILLed at random moments of a 20 000-transaction workload loses no
//!   committed write, publishes twice only the tail it had not confirmed (as exact repeats), and
//!   keeps source commit order;
//! - an unreachable broker (SIGSTOPped) holds the slot back while the reader retries, and
//!   everything flows once it answers again;
//! - a broker that is killed and restarts empty (in-memory storage) gets its topic back from the
//!   reader, with every change the slot had not confirmed.
//!
//! Each test runs its own broker ([`PrivateBroker`], the lab's broker program on a port of its
//! own): the lab's broker is shared with tests running in parallel and must not be stopped. The
//! SIGKILL test also stalls its broker before some kills, so that the reader dies holding
//! records it sent and the broker never acknowledged.

// Test code: a failed unwrap or an index out of range is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envelope::{Body, Codec, EntityChange, Envelope};
use harness::{
    end_offset, read_until, unique_name, wait_until, HarnessError, Lab, PrivateBroker, Sidecar,
    TestDb, TopicRecord,
};
use tokio_postgres::Client;
use uuid::Uuid;

type BoxError = Box<dyn Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// The log line of a reader session that failed and will be retried.
const RETRY_LINE: &str = "reader session failed; retrying";

// ---------------------------------------------------------------------------------------------
// A region database with capture set up.

/// A fresh region database, set up by `replicator setup`, with a slot, a publication and a topic
/// name of its own.
struct Source {
    db: TestDb,
    client: Client,
    slot: String,
    publication: String,
    topic: String,
}

impl Source {
    async fn set_up(region: &str, label: &str, topic: String) -> Result<Source, BoxError> {
        let db = Lab::get()?.region(region)?.fresh_db(label).await?;
        let client = db.connect().await?;
        let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
        harness::run_setup(&db, &slot, &publication).await?;
        Ok(Source {
            db,
            client,
            slot,
            publication,
            topic,
        })
    }

    /// Starts `replicator capture` publishing to `broker`.
    fn capture(&self, broker: &str, heartbeat: &str) -> Result<Sidecar, HarnessError> {
        Sidecar::start(
            &[
                "capture",
                "--region",
                self.db.region().name(),
                "--slot",
                &self.slot,
                "--publication",
                &self.publication,
                "--topic",
                &self.topic,
                "--kafka-brokers",
                broker,
                "--heartbeat-interval",
                heartbeat,
            ],
            &[("REPLICATOR_DATABASE_URL", &self.db.conninfo())],
        )
    }

    /// The slot's confirmed LSN and whether a walsender streams it.
    async fn slot(&self) -> Result<(u64, bool), BoxError> {
        let row = self
            .client
            .query_one(
                "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, active
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await?;
        Ok((u64::try_from(row.get::<_, i64>(0))?, row.get(1)))
    }

    /// The WAL insert position now: every transaction committed so far ends at or before it.
    async fn wal_lsn(&self) -> Result<u64, BoxError> {
        let row = self
            .client
            .query_one(
                "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
                &[],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0))?)
    }

    /// Waits until the slot confirmed `lsn` (heartbeats carry it past the last change).
    async fn wait_confirmed(&self, lsn: u64, timeout: Duration) -> Result<u64, HarnessError> {
        wait_until(
            &format!("the slot to confirm {}", fmt_lsn(lsn)),
            timeout,
            || async move {
                let (confirmed, _) = self
                    .slot()
                    .await
                    .map_err(|e| HarnessError::Other(e.to_string()))?;
                Ok((confirmed >= lsn).then_some(confirmed))
            },
        )
        .await
    }

    /// Inserts a dashboard titled `title` in a transaction of its own. Returns the WAL insert
    /// position right after the row was written: the transaction commits after it.
    async fn insert_dashboard(&self, title: &str) -> Result<u64, BoxError> {
        let row = self
            .client
            .query_one(
                "WITH ins AS (
                     INSERT INTO dashboards (dashboard_title, uuid)
                     VALUES ($1, gen_random_uuid()) RETURNING uuid)
                 SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint FROM ins",
                &[&title],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0))?)
    }
}

fn fmt_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// How many times `sidecars` logged a retried session.
fn retries(sidecars: &[Sidecar]) -> usize {
    sidecars
        .iter()
        .map(|s| s.log().matches(RETRY_LINE).count())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// What is on a topic.

/// A region's topic, read whole and checked against the publishing contract:
/// - every record decodes;
/// - a record whose `(commit_lsn, seq)` was seen before repeats it byte for byte (key and value);
/// - records never seen before come in strictly increasing `(commit_lsn, seq)`: in order of
///   first appearance, the topic is in source commit order;
/// - repeats come as replays: a run that starts at the first record of a transaction already
///   published and follows the earlier records one by one, without skipping any;
/// - every transaction is complete: seqs `0..n`, its changes then one commit record counting
///   them, or a single heartbeat.
#[derive(Debug)]
struct TopicView {
    /// Every distinct record, in order of first appearance.
    first: Vec<Envelope>,
    /// Records that repeat an earlier one.
    duplicates: usize,
    /// The `(commit_lsn, seq)` where each replay started, in topic order.
    replays: Vec<(u64, u64)>,
    /// Offsets read, gaps between them and the last records, for a failure's message.
    shape: String,
}

impl TopicView {
    fn check(records: &[TopicRecord], codec: &Codec) -> Result<TopicView, String> {
        let mut first: Vec<Envelope> = Vec::new();
        let mut raw: Vec<(&Option<Vec<u8>>, &Vec<u8>)> = Vec::new();
        let mut index: HashMap<(u64, u64), usize> = HashMap::new();
        let mut duplicates = 0;
        let mut replays = Vec::new();
        // Where the previous record is in `first`.
        let mut previous: Option<usize> = None;
        for (offset, key, payload) in records {
            let envelope = codec
                .decode(payload)
                .map_err(|e| format!("offset {offset} does not decode: {e}"))?;
            let at = (envelope.commit_lsn.0, envelope.seq.0);
            let shown = format!("{}#{}", fmt_lsn(at.0), at.1);
            if let Some(&i) = index.get(&at) {
                if raw[i] != (key, payload) {
                    return Err(format!(
                        "offset {offset}: {shown} repeats an earlier record with other content"
                    ));
                }
                duplicates += 1;
                if previous.map(|p| p + 1) != Some(i) {
                    if at.1 != 0 {
                        return Err(format!(
                            "offset {offset}: a replay starts in the middle of a transaction ({shown})"
                        ));
                    }
                    replays.push(at);
                }
                previous = Some(i);
            } else {
                if let Some(last) = first.last() {
                    if at <= (last.commit_lsn.0, last.seq.0) {
                        return Err(format!(
                            "offset {offset}: new record {shown} after {}#{}: not in commit order",
                            fmt_lsn(last.commit_lsn.0),
                            last.seq.0
                        ));
                    }
                }
                if let Some(p) = previous {
                    if p + 1 != first.len() {
                        return Err(format!(
                            "offset {offset}: new record {shown} while a replay had only reached \
                             record {p} of {}: the replay skipped records",
                            first.len()
                        ));
                    }
                }
                index.insert(at, first.len());
                previous = Some(first.len());
                first.push(envelope);
                raw.push((key, payload));
            }
        }
        check_transactions(&first)?;
        let shape = shape(records, &first);
        Ok(TopicView {
            first,
            duplicates,
            replays,
            shape,
        })
    }

    /// Every change, with its place in `first`.
    fn changes(&self) -> impl Iterator<Item = (usize, &EntityChange)> {
        self.first
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.body {
                Body::Change(c) => Some((i, c)),
                _ => None,
            })
    }

    /// The commit LSN of the first transaction on the topic that commits at or after `lsn`:
    /// where a session that starts from a slot confirmed at `lsn` begins publishing.
    fn first_transaction_from(&self, lsn: u64) -> Option<u64> {
        self.first
            .iter()
            .map(|e| e.commit_lsn.0)
            .find(|commit| *commit >= lsn)
    }

    /// Where each dashboard title appears, by title.
    fn titles(&self) -> Result<BTreeMap<String, usize>, String> {
        let mut titles = BTreeMap::new();
        for (i, change) in self.changes() {
            if let Some(serde_json::Value::String(title)) = field(change, "dashboard_title") {
                if titles.insert(title.clone(), i).is_some() {
                    return Err(format!("title {title} written by two transactions"));
                }
            }
        }
        Ok(titles)
    }
}

fn field<'a>(change: &'a EntityChange, path: &str) -> Option<&'a serde_json::Value> {
    change
        .fields
        .iter()
        .find(|f| f.path.as_str() == path)
        .map(|f| &f.value)
}

/// The offsets read, any gaps between consecutive ones, and the last few distinct records.
fn shape(records: &[TopicRecord], first: &[Envelope]) -> String {
    let gaps: Vec<String> = records
        .windows(2)
        .filter(|w| w[1].0 != w[0].0 + 1)
        .take(10)
        .map(|w| format!("{}..{}", w[0].0, w[1].0))
        .collect();
    let tail: Vec<String> = first
        .iter()
        .rev()
        .take(6)
        .map(|e| {
            let kind = match &e.body {
                Body::Change(c) => format!("{} {}", c.table, c.entity),
                Body::Commit { change_count } => format!("commit of {change_count}"),
                Body::Heartbeat { beat, .. } => format!("heartbeat {beat}"),
            };
            format!("{}#{} {kind}", fmt_lsn(e.commit_lsn.0), e.seq.0)
        })
        .collect();
    format!(
        "offsets {:?}..={:?}, gaps {gaps:?}, last distinct records (newest first) {tail:?}",
        records.first().map(|r| r.0),
        records.last().map(|r| r.0),
    )
}

/// Every transaction in `first` is whole: seqs from 0 without gaps; changes (and possibly a
/// heartbeat) closed by one commit record that counts the changes, or a lone heartbeat.
fn check_transactions(first: &[Envelope]) -> Result<(), String> {
    let mut start = 0;
    while start < first.len() {
        let lsn = first[start].commit_lsn;
        let end = first[start..]
            .iter()
            .position(|e| e.commit_lsn != lsn)
            .map_or(first.len(), |n| start + n);
        let txn = &first[start..end];
        let shown = fmt_lsn(lsn.0);
        if txn.iter().enumerate().any(|(i, e)| e.seq.0 != i as u64) {
            return Err(format!("transaction {shown} has a gap in its seqs"));
        }
        let changes = txn
            .iter()
            .filter(|e| matches!(e.body, Body::Change(_)))
            .count() as u64;
        let beats = txn
            .iter()
            .filter(|e| matches!(e.body, Body::Heartbeat { .. }))
            .count();
        match txn.last().map(|e| &e.body) {
            Some(Body::Commit { change_count }) if *change_count == changes && changes > 0 => {}
            Some(Body::Heartbeat { .. }) if txn.len() == 1 => {}
            other => {
                return Err(format!(
                    "transaction {shown} is incomplete: {changes} change(s), {beats} heartbeat(s), \
                     last record {other:?}"
                ))
            }
        }
        if txn[..txn.len() - 1]
            .iter()
            .any(|e| matches!(e.body, Body::Commit { .. }))
        {
            return Err(format!(
                "transaction {shown} has a commit record before its end"
            ));
        }
        start = end;
    }
    Ok(())
}

/// Reads `topic` on `broker` and checks it ([`TopicView::check`]): up to the first record of a
/// transaction committed at or after `after` (the reader's heartbeats bring one), so everything
/// published before it has been read.
async fn view(broker: &str, topic: &str, after: u64) -> Result<(TopicView, usize), BoxError> {
    let codec = Codec::new()?;
    let reader_codec = Codec::new()?;
    let records = read_until(
        broker,
        topic,
        Duration::from_secs(60),
        move |(_, _, payload)| {
            reader_codec
                .decode(payload)
                .is_ok_and(|envelope| envelope.commit_lsn.0 >= after)
        },
    )
    .await?;
    let view = TopicView::check(&records, &codec)?;
    Ok((view, records.len()))
}

// ---------------------------------------------------------------------------------------------
// A seeded random number generator (SplitMix64): enough for test choices, reproducible by seed.

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `CAPTURE_FAULTS_SEED`, or a new seed from the clock.
fn seed() -> u64 {
    std::env::var("CAPTURE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

// ---------------------------------------------------------------------------------------------
// The workload: single-row transactions on dashboards, charts and datasets.

/// The replicated tables the workload writes, with the column each write sets to its `w-<n>`.
const TABLES: [(&str, &str); 3] = [
    ("dashboards", "dashboard_title"),
    ("slices", "slice_name"),
    ("tables", "table_name"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Delete,
}

/// One committed transaction of the workload.
#[derive(Debug, Clone)]
struct Write {
    /// Unique over the workload: inserts and updates set the title column to `w-<n>`.
    n: u64,
    worker: usize,
    table: &'static str,
    entity: Uuid,
    op: Op,
}

/// Runs transactions `worker, worker + workers, ...` below `total` on `client`, each one row
/// (insert 45 %, update 35 %, delete 20 % of this worker's own live rows), counting commits in
/// `committed`. Workers never touch each other's rows, so they never wait on each other.
async fn worker(
    client: Client,
    worker: usize,
    workers: usize,
    total: u64,
    mut rng: Rng,
    database_id: i32,
    committed: Arc<AtomicU64>,
) -> Result<Vec<Write>, BoxError> {
    let mut insert = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();
    for (table, column) in TABLES {
        let extra = if table == "tables" {
            (", database_id", ", $2")
        } else {
            ("", "")
        };
        insert.push(
            client
                .prepare(&format!(
                    "INSERT INTO {table} ({column}, uuid{}) VALUES ($1, gen_random_uuid(){})
                     RETURNING id, uuid",
                    extra.0, extra.1
                ))
                .await?,
        );
        update.push(
            client
                .prepare(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
                .await?,
        );
        delete.push(
            client
                .prepare(&format!("DELETE FROM {table} WHERE id = $1"))
                .await?,
        );
    }
    let mut live: [Vec<(i32, Uuid)>; 3] = Default::default();
    let mut writes = Vec::new();
    let mut n = worker as u64;
    while n < total {
        let t = rng.below(3) as usize;
        let roll = rng.below(100);
        let op = match roll {
            _ if live[t].is_empty() => Op::Insert,
            0..45 => Op::Insert,
            45..80 => Op::Update,
            _ => Op::Delete,
        };
        let title = format!("w-{n}");
        let entity = match op {
            Op::Insert => {
                let row = if TABLES[t].0 == "tables" {
                    client
                        .query_one(&insert[t], &[&title, &database_id])
                        .await?
                } else {
                    client.query_one(&insert[t], &[&title]).await?
                };
                let (id, uuid): (i32, Uuid) = (row.get(0), row.get(1));
                live[t].push((id, uuid));
                uuid
            }
            Op::Update => {
                let (id, uuid) = live[t][rng.below(live[t].len() as u64) as usize];
                let updated = client.execute(&update[t], &[&title, &id]).await?;
                if updated != 1 {
                    return Err(
                        format!("update of {} {id} touched {updated} rows", TABLES[t].0).into(),
                    );
                }
                uuid
            }
            Op::Delete => {
                let (id, uuid) = live[t].swap_remove(rng.below(live[t].len() as u64) as usize);
                let deleted = client.execute(&delete[t], &[&id]).await?;
                if deleted != 1 {
                    return Err(
                        format!("delete of {} {id} touched {deleted} rows", TABLES[t].0).into(),
                    );
                }
                uuid
            }
        };
        committed.fetch_add(1, Ordering::Relaxed);
        writes.push(Write {
            n,
            worker,
            table: TABLES[t].0,
            entity,
            op,
        });
        n += workers as u64;
    }
    Ok(writes)
}

/// Checks that every write is on the topic once (in `view.first`), as the change it made, and
/// that each worker's writes appear in the order it committed them.
fn check_writes(view: &TopicView, writes: &[Write]) -> Result<(), String> {
    // What the topic says each transaction did: a `w-<n>` written, or an entity deleted.
    let mut by_title: HashMap<u64, (usize, &EntityChange)> = HashMap::new();
    let mut by_deleted: HashMap<Uuid, (usize, &EntityChange)> = HashMap::new();
    for (i, change) in view.changes() {
        let Some(column) = TABLES
            .iter()
            .find(|(t, _)| *t == change.table)
            .map(|(_, c)| *c)
        else {
            continue;
        };
        if field(change, "$exists") == Some(&serde_json::Value::Bool(false)) {
            if by_deleted.insert(change.entity, (i, change)).is_some() {
                return Err(format!("{} {} deleted twice", change.table, change.entity));
            }
        } else if let Some(serde_json::Value::String(title)) = field(change, column) {
            if let Some(n) = title.strip_prefix("w-").and_then(|n| n.parse().ok()) {
                if by_title.insert(n, (i, change)).is_some() {
                    return Err(format!("{title} published by two transactions"));
                }
            }
        }
    }
    let mut missing = Vec::new();
    let mut last_of_worker: HashMap<usize, (u64, usize)> = HashMap::new();
    for write in writes {
        let found = match write.op {
            Op::Insert | Op::Update => by_title.get(&write.n),
            Op::Delete => by_deleted.get(&write.entity),
        };
        let Some(&(at, change)) = found else {
            missing.push(write);
            continue;
        };
        if change.table != write.table || change.entity != write.entity {
            return Err(format!(
                "w-{} ({:?}) was written to {} {} but published as {} {}",
                write.n, write.op, write.table, write.entity, change.table, change.entity
            ));
        }
        if write.op == Op::Insert
            && field(change, "$exists") != Some(&serde_json::Value::Bool(true))
        {
            return Err(format!(
                "the insert w-{} is published without $exists",
                write.n
            ));
        }
        if let Some((before, before_at)) = last_of_worker.insert(write.worker, (write.n, at)) {
            if before_at >= at {
                return Err(format!(
                    "worker {} committed w-{before} before w-{}, but the topic has them the other \
                     way round",
                    write.worker, write.n
                ));
            }
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(10)
            .map(|w| format!("w-{} {:?} {} {}", w.n, w.op, w.table, w.entity))
            .collect();
        return Err(format!(
            "{} of {} committed writes are not on the topic, e.g. {shown:?}",
            missing.len(),
            writes.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL at random moments loses nothing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_faults_sigkill_at_random_moments_loses_nothing_and_repeats_only_the_unconfirmed_tail(
) {
    // The test's own broker, so that it can also stall it before a kill.
    let mut broker = PrivateBroker::start().await.unwrap();
    let mut sidecars = Vec::new();
    // Failing here, with the broker and the sidecars alive, prints their logs.
    killed_at_random(&mut broker, &mut sidecars).await.unwrap();
}

/// The SIGKILL scenario; every sidecar started goes to `sidecars`.
async fn killed_at_random(broker: &mut PrivateBroker, sidecars: &mut Vec<Sidecar>) -> TestResult {
    let started = Instant::now();
    let total: u64 = std::env::var("CAPTURE_FAULTS_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = seed();
    eprintln!(
        "capture_faults: seed {seed} (CAPTURE_FAULTS_SEED={seed} repeats the choices), \
         {total} transactions (CAPTURE_FAULTS_CHANGES)"
    );
    let mut rng = Rng(seed);
    let source = Source::set_up("us", "faults_kill", unique_name("it_topic")).await?;
    let database_id: i32 = source
        .client
        .query_one(
            "INSERT INTO dbs (database_name, sqlalchemy_uri, uuid)
             VALUES ('faults', 'sqlite://', gen_random_uuid()) RETURNING id",
            &[],
        )
        .await?
        .get(0);
    let (initial, _) = source.slot().await?;
    sidecars.push(source.capture(&broker.address(), "500ms")?);

    // The workload, in the background: 4 connections, bounded in time.
    const WORKERS: usize = 4;
    let committed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let client = source.db.connect().await?;
        let rng = Rng(rng.next());
        let committed = committed.clone();
        tasks.push(tokio::spawn(tokio::time::timeout(
            Duration::from_secs(240),
            async move {
                let writes = worker(client, w, WORKERS, total, rng, database_id, committed).await;
                writes.map(|writes| (writes, Instant::now()))
            },
        )));
    }

    // Kill points: after a random number of commits each, spread over the workload. Each kill
    // waits until the running reader has confirmed something (it streams and publishes), then
    // lands at a random moment; before half of them (at random) the broker stalls first, so
    // the reader dies holding records sent but not acknowledged, some not even on the wire.
    let kill_count = 5 + rng.below(6);
    let mut points: Vec<u64> = (0..kill_count)
        .map(|_| total / 20 + rng.below(total * 7 / 10))
        .collect();
    points.sort_unstable();
    let mut kills = Vec::new();
    for point in &points {
        wait_until(
            &format!("{point} commits"),
            Duration::from_secs(240),
            || {
                let done = committed.load(Ordering::Relaxed);
                async move { Ok((done >= *point).then_some(())) }
            },
        )
        .await?;
        let since = kills.last().map_or(initial, |k: &Kill| k.confirmed);
        let mut kill = kill_and_restart(&source, broker, sidecars, since, &mut rng).await?;
        kill.commits = committed.load(Ordering::Relaxed);
        kill.at = started.elapsed();
        kills.push(kill);
    }
    let mut writes = Vec::new();
    let mut workload_done = started;
    for task in tasks {
        let (done, at) = task
            .await?
            .map_err(|_| "the workload did not finish in 240 s")??;
        writes.extend(done);
        workload_done = workload_done.max(at);
    }
    let workload_done = workload_done - started;
    assert_eq!(writes.len() as u64, total);
    // The final restart, with whatever the last session had in flight.
    let since = kills.last().map_or(initial, |k| k.confirmed);
    let mut kill = kill_and_restart(&source, broker, sidecars, since, &mut rng).await?;
    kill.commits = total;
    kill.at = started.elapsed();
    kills.push(kill);

    // Everything committed is confirmed, hence acknowledged, hence on the topic.
    let end = source.wal_lsn().await?;
    source.wait_confirmed(end, Duration::from_secs(120)).await?;
    let caught_up = started.elapsed();
    let (view, records) = view(&broker.address(), &source.topic, end).await?;
    let retried = retries(sidecars);
    eprintln!(
        "capture_faults: {total} transactions, {} kills {kills:?}; workload done at \
         {workload_done:?}, caught up at {caught_up:?}; {records} records, {} distinct, \
         {} duplicates in {} replays, {retried} retried sessions",
        kills.len(),
        view.first.len(),
        view.duplicates,
        view.replays.len(),
    );
    if let Some(last) = sidecars.last_mut() {
        assert_eq!(last.exited(), None, "the last reader keeps running");
    }
    if let Err(missing) = check_writes(&view, &writes) {
        // Where the loss is: on the broker (offsets missing, a short high watermark) or in what
        // was published (the topic is whole and the transactions are simply not on it).
        let (again, count) = self::view(&broker.address(), &source.topic, end).await?;
        return Err(format!(
            "{missing}\n  read once: {records} records, {}; read again: {count} records, \
             {} distinct; ListOffsets says {}",
            view.shape,
            again.first.len(),
            end_offset(&broker.address(), &source.topic, Duration::from_secs(10)).await?,
        )
        .into());
    }
    // Duplicates only from replays after a restart, each starting exactly where the slot was
    // confirmed when the reader died: the unconfirmed tail, nothing earlier, nothing skipped.
    assert!(
        view.replays.len() <= kills.len() + retried,
        "{} replays for {} restarts and {retried} retried sessions",
        view.replays.len(),
        kills.len()
    );
    for (lsn, _) in &view.replays {
        let from_a_kill = kills
            .iter()
            .any(|k| view.first_transaction_from(k.confirmed) == Some(*lsn));
        assert!(
            from_a_kill,
            "a replay starts at {} but no restart was confirmed right before it: {kills:?}",
            fmt_lsn(*lsn),
        );
    }
    Ok(())
}

/// One SIGKILL of the reader.
struct Kill {
    /// Commits of the workload when it happened.
    commits: u64,
    /// When, since the test started.
    at: Duration,
    /// Whether the broker was stalled (SIGSTOP) before it, and for how long.
    stalled: Option<Duration>,
    /// Where the slot was confirmed when the reader died.
    confirmed: u64,
}

impl std::fmt::Debug for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{} commits, {:.1}s, confirmed {}",
            self.commits,
            self.at.as_secs_f64(),
            fmt_lsn(self.confirmed)
        )?;
        if let Some(stall) = self.stalled {
            write!(f, ", broker stalled {}ms before", stall.as_millis())?;
        }
        f.write_str("]")
    }
}

/// Once the running sidecar has confirmed past `since` (it streams and publishes), SIGKILLs it
/// at a random moment: within the next second (anywhere between two status updates), or (half
/// the time) after the broker stopped answering for 1–2 s, so that the reader holds an
/// unacknowledged tail. Then waits until its walsender is gone, reads where the slot was
/// confirmed, lets the broker answer again, and starts a new sidecar.
async fn kill_and_restart(
    source: &Source,
    broker: &mut PrivateBroker,
    sidecars: &mut Vec<Sidecar>,
    since: u64,
    rng: &mut Rng,
) -> Result<Kill, BoxError> {
    source
        .wait_confirmed(since + 1, Duration::from_secs(60))
        .await?;
    let stalled = (rng.below(2) == 0).then(|| Duration::from_millis(1000 + rng.below(1000)));
    let moment = stalled.unwrap_or_else(|| Duration::from_millis(rng.below(1000)));
    if stalled.is_some() {
        broker.pause()?;
    }
    // The kill's moment (a chosen delay, not a wait for a condition).
    tokio::time::sleep(moment).await;
    if let Some(running) = sidecars.last_mut() {
        if let Some(code) = running.exited() {
            return Err(
                format!("the sidecar exited on its own ({code}):\n{}", running.log()).into(),
            );
        }
        running.kill();
    }
    let confirmed = wait_until(
        "the killed reader's walsender to end",
        Duration::from_secs(30),
        || async move {
            let (confirmed, active) = source
                .slot()
                .await
                .map_err(|e| HarnessError::Other(e.to_string()))?;
            Ok((!active).then_some(confirmed))
        },
    )
    .await?;
    if stalled.is_some() {
        broker.resume()?;
        // The broker answers again (and has taken what the dead reader left in its socket)
        // before the next reader starts.
        end_offset(&broker.address(), &source.topic, Duration::from_secs(30)).await?;
    }
    sidecars.push(source.capture(&broker.address(), "500ms")?);
    Ok(Kill {
        commits: 0,
        at: Duration::ZERO,
        stalled,
        confirmed,
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Broker outages.

/// Inserts dashboards titled `<prefix>-0..count`, one transaction each; returns each title with
/// the WAL position its transaction commits after.
async fn insert_titles(
    source: &Source,
    prefix: &str,
    count: usize,
) -> Result<Vec<(String, u64)>, BoxError> {
    let mut written = Vec::new();
    for i in 0..count {
        let title = format!("{prefix}-{i}");
        let lsn = source.insert_dashboard(&title).await?;
        written.push((title, lsn));
    }
    Ok(written)
}

/// Checks that every title of `expected` is on `view` once, in the order written.
fn check_titles(view: &TopicView, expected: &[(String, u64)]) -> Result<(), String> {
    let titles = view.titles()?;
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(t, _)| !titles.contains_key(t))
        .map(|(t, _)| t.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} titles are not on the topic: {missing:?}",
            missing.len(),
            expected.len()
        ));
    }
    let at: Vec<usize> = expected.iter().map(|(t, _)| titles[t]).collect();
    if at.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "the titles are not in commit order on the topic: {at:?}"
        ));
    }
    Ok(())
}

#[tokio::test]
async fn capture_faults_an_unreachable_broker_holds_the_slot_and_everything_flows_when_it_answers()
{
    let mut broker = PrivateBroker::start().await.unwrap();
    let source = Source::set_up("eu", "faults_pause", unique_name("it_topic"))
        .await
        .unwrap();
    let mut sidecar = source.capture(&broker.address(), "200ms").unwrap();
    // Failing here, with the sidecar and the broker alive, prints their logs.
    unreachable_broker(&mut broker, &source, &mut sidecar)
        .await
        .unwrap();
}

/// Scenario A: the broker stops answering (SIGSTOP), then answers again (SIGCONT).
async fn unreachable_broker(
    broker: &mut PrivateBroker,
    source: &Source,
    sidecar: &mut Sidecar,
) -> TestResult {
    let started = Instant::now();
    let before = insert_titles(source, "before", 5).await?;
    let lsn = source.wal_lsn().await?;
    source.wait_confirmed(lsn, Duration::from_secs(60)).await?;

    // The broker stops answering (its port still accepts connections).
    broker.pause()?;
    let paused = Instant::now();
    // Every transaction from here on commits after `held`; none of them may be confirmed.
    let held = source.wal_lsn().await?;
    let during = insert_titles(source, "during", 20).await?;
    let written = source.wal_lsn().await?;
    // Hold the outage past librdkafka's message timeout (30 s), so the publisher fails, the
    // session ends and a new one starts against the unreachable broker; then a little longer.
    let mut retried_at = None;
    let mut max_confirmed = 0;
    loop {
        let (confirmed, _) = source.slot().await?;
        max_confirmed = max_confirmed.max(confirmed);
        assert!(
            confirmed <= held,
            "the slot confirmed {} during the outage, past {} (nothing after it was acknowledged)",
            fmt_lsn(confirmed),
            fmt_lsn(held)
        );
        if let Some(code) = sidecar.exited() {
            return Err(format!(
                "the reader gave up during the outage ({code}):\n{}",
                sidecar.log()
            )
            .into());
        }
        if retried_at.is_none() && sidecar.log().contains(RETRY_LINE) {
            retried_at = Some(paused.elapsed());
        }
        match retried_at {
            Some(at) if paused.elapsed() >= at + Duration::from_secs(4) => break,
            None if paused.elapsed() > Duration::from_secs(70) => {
                return Err(format!(
                    "no retried session after 70 s of outage:\n{}",
                    sidecar.log()
                )
                .into())
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let outage = paused.elapsed();
    broker.resume()?;

    let confirmed = source
        .wait_confirmed(written, Duration::from_secs(60))
        .await?;
    let recovered = paused.elapsed() - outage;
    let (view, records) = view(&broker.address(), &source.topic, written).await?;
    eprintln!(
        "capture_faults: outage {outage:?} (session retried after {:?}), slot held at <= {} \
         (max seen {}), recovered {recovered:?} after the broker answered (slot at {}); \
         {records} records, {} duplicates in {} replays; test took {:?}",
        retried_at.unwrap_or_default(),
        fmt_lsn(held),
        fmt_lsn(max_confirmed),
        fmt_lsn(confirmed),
        view.duplicates,
        view.replays.len(),
        started.elapsed()
    );
    let expected: Vec<(String, u64)> = before.into_iter().chain(during).collect();
    check_titles(&view, &expected)?;
    assert_eq!(sidecar.exited(), None, "the reader keeps running");
    Ok(())
}

#[tokio::test]
async fn capture_faults_a_broker_that_restarts_empty_gets_every_unconfirmed_change_again() {
    let mut broker = PrivateBroker::start().await.unwrap();
    let source = Source::set_up("eu", "faults_restart", unique_name("it_topic"))
        .await
        .unwrap();
    let mut sidecar = source.capture(&broker.address(), "200ms").unwrap();
    // Failing here, with the sidecar and the broker alive, prints their logs.
    restarted_broker(&mut broker, &source, &mut sidecar)
        .await
        .unwrap();
}

/// Scenario B: the broker is killed and restarts on the same port, without the topic.
async fn restarted_broker(
    broker: &mut PrivateBroker,
    source: &Source,
    sidecar: &mut Sidecar,
) -> TestResult {
    let started = Instant::now();
    insert_titles(source, "first", 20).await?;
    let lsn = source.wal_lsn().await?;
    source.wait_confirmed(lsn, Duration::from_secs(60)).await?;

    // A burst, with the broker killed in the middle of it: some of it acknowledged, some in
    // flight, the rest committed while the broker is gone.
    let mut burst = insert_titles(source, "burst-a", 150).await?;
    broker.kill();
    let killed = Instant::now();
    // Nothing committed after this can ever be acknowledged by the broker that died.
    let at_kill = source.wal_lsn().await?;
    burst.extend(insert_titles(source, "burst-b", 50).await?);
    // Where the slot stays now that nothing can be acknowledged: the reader reports what it
    // had acknowledged within a status interval (1 s); wait until it is stable for 3 s.
    let mut stable = (source.slot().await?.0, Instant::now());
    while stable.1.elapsed() < Duration::from_secs(3) {
        let (confirmed, _) = source.slot().await?;
        assert!(
            confirmed <= at_kill,
            "the slot confirmed {} with the broker dead, past {} (the WAL when it died)",
            fmt_lsn(confirmed),
            fmt_lsn(at_kill)
        );
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the slot kept moving with the broker dead"
        );
        if confirmed != stable.0 {
            stable = (confirmed, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = stable.0;
    let after = insert_titles(source, "after", 20).await?;
    let written = source.wal_lsn().await?;

    broker.restart().await?;
    let restarted = Instant::now();
    let confirmed = source
        .wait_confirmed(written, Duration::from_secs(75))
        .await?;
    let recovered = restarted.elapsed();
    let (view, records) = view(&broker.address(), &source.topic, written).await?;
    // Every change the slot had not confirmed when the broker came back is on the new topic.
    let expected: Vec<(String, u64)> = burst
        .iter()
        .filter(|(_, lsn)| *lsn >= kept)
        .cloned()
        .chain(after)
        .collect();
    let confirmed_burst = burst.len() + 20 - expected.len();
    eprintln!(
        "capture_faults: broker killed after {} burst commits; slot kept at {} (at most \
         {confirmed_burst} of the burst confirmed before); broker down {:?}; recovered {recovered:?} after the \
         restart (slot at {}); {records} records on the new topic, {} duplicates in {} replays, \
         {} retried sessions; test took {:?}",
        150,
        fmt_lsn(kept),
        restarted - killed,
        fmt_lsn(confirmed),
        view.duplicates,
        view.replays.len(),
        sidecar.log().matches(RETRY_LINE).count(),
        started.elapsed()
    );
    check_titles(&view, &expected)?;
    // The reader republished from the slot's confirmed position, not from the start: what was
    // confirmed before the broker died (the first batch) is not published again.
    let republished: Vec<String> = view
        .titles()?
        .into_keys()
        .filter(|t| t.starts_with("first-"))
        .collect();
    assert!(
        republished.is_empty(),
        "confirmed changes published again: {republished:?}"
    );
    assert_eq!(sidecar.exited(), None, "the reader keeps running");
    Ok(())
}

//! The bootstrap snapshot: the region's current state of every replicated entity, published to
//! its topic as ordinary change records, so a new region can start from it (`replicator
//! snapshot`).
//!
//! # What it publishes
//!
//! In **one** `REPEATABLE READ, READ ONLY` transaction (one MVCC snapshot for everything it
//! reads), for every replicated table of the policy, in policy order (parents first, so a target
//! region parks as little as possible):
//!
//! - every **live** entity (its `replicator.entity` row says alive and its Superset row is there):
//!   a [`CapturedChange`] with the row, the entity's clock, and **every** stamp
//!   `replicator.field_version` holds for it (its full state, `$exists` included), turned into an
//!   [`envelope::EntityChange`] by the same [`CanonicalForm`] the reader uses;
//! - every **deleted** entity (a tombstone): `$exists` = `false` with its stamp, its clock, no row
//!   (the values of a deleted row are gone; the stamp is what makes the delete win).
//!
//! The records are grouped into snapshot "transactions" of at most
//! [`SnapshotConfig::transaction_size`] entities (never spanning two tables), each numbered by
//! `seq` from 0 and closed by a [`Body::Commit`] record counting its changes, so an applier takes
//! them through its ordinary transaction logic. Every record carries the **snapshot's LSN** as
//! `commit_lsn`, and the transaction's start time as `commit_time`.
//!
//! The snapshot's LSN is `pg_current_wal_lsn() - 1`, read by the transaction's first statement
//! (after its MVCC snapshot was taken). `pg_current_wal_lsn()` is where the *next* WAL record
//! goes, so it can be exactly the commit LSN (a commit record's start) of a transaction capture
//! publishes; one byte before it is no record's start (WAL records start 8-byte aligned), so a
//! snapshot's transactions never share a `commit_lsn` with a captured one, and it still orders
//! after every commit the snapshot holds and before every commit from that point on.
//!
//! # Why this is consistent with the slot, without coordinating with it
//!
//! The merge is a join-semilattice (`conflict`): merging an entity's full state equals receiving
//! all the writes that produced it, and order, duplicates and replays change nothing. The
//! snapshot holds, for each entity, exactly the join of every write committed before it. The slot
//! must exist (checked: without it, later changes would be lost); its confirmed position is at or
//! before the snapshot's LSN (it only ever confirms flushed WAL; reported), and
//! `replicator capture` publishes every change committed after that position. So
//! `snapshot ⊔ (everything capture publishes from then on)` is the region's state, whatever the
//! interleaving: writes the snapshot already holds arrive twice and merge away.
//!
//! That argument needs every change the snapshot does not hold to reach the new region. Capture
//! publishes a change only after it commits, and a change the snapshot does not hold committed
//! after the snapshot began, which is after the snapshot read the topic's end offset. So every
//! such record is at or after that offset: **a region bootstraps by consuming the topic from
//! [`SnapshotReport::start_offset`]** (or earlier). Records before it may already be gone to
//! retention; that is what the snapshot is for.
//!
//! Capture keeps publishing to the same partition while a snapshot runs, so their records
//! interleave: a consumer assembles a transaction from the records sharing its `commit_lsn`
//! (each producer's records are in order), never from a contiguous run of the partition. All of a
//! snapshot's transactions share its LSN and come one after the other, each from `seq` 0.
//!
//! # Values: byte for byte what the reader would have published
//!
//! A snapshot re-publishes dots the region already published; the merge treats one dot with two
//! different values as an error (`conflict::Error::DotReused`). So a snapshot value must be the
//! canonical value the reader computed for that dot:
//!
//! - Rows are read in the **text format** (the simple query protocol) on a session with the
//!   server's default settings (the snapshot only turns its timeouts off), which is what
//!   pgoutput sends on the walsender's session: each column printed by its type's
//!   output function (`t`/`f` booleans, ISO dates, hex bytea). A `::text` cast would not do: it
//!   prints `true` for a boolean and trims a `char(n)`. The type oids come from `pg_attribute`,
//!   as in pgoutput's relation message.
//! - Only the columns the publication publishes are read: every column but the policy's local
//!   ones (`dbs.sqlalchemy_uri`, the encrypted columns, the `perm` strings, ...), which are never
//!   even selected.
//! - References and embedded ids are translated through a [`RegistryCache`] whose lookups run on
//!   the snapshot's own connection, **inside the same transaction**, so they see the registry as
//!   of the snapshot. That matters: a registry entry can be re-pointed to another uuid later (a
//!   row whose identity changed), and a later lookup would then translate a reference differently
//!   from the row it was read with.
//! - Known limit, shared with the reader's replays: a reference is canonicalised with the
//!   registry as it is when the value is *read*, not as it was when the field was *written*. If
//!   the referenced row's uuid changed in between (Superset's import taking over a row by its
//!   natural key rewrites its uuid, facts §5c), the snapshot publishes the referencing field's
//!   old dot with the new uuid, and a region that already holds that dot with the old uuid sees
//!   one dot with two values.
//!
//! # What is left out, and said so
//!
//! The report counts, per table, what could not be published faithfully, each also logged as a
//! warning: an entity alive without a row (a row removed without its versioning, e.g. by
//! `TRUNCATE`), a row without versioning (setup has not versioned it: run `replicator setup`),
//! and stamps of fields that are not published columns (a column dropped by an upgrade). A
//! published column with no stamp is simply not sent: no write of it was ever versioned.
//!
//! # Cost and failure
//!
//! Memory is bounded: each table is streamed through a server-side cursor, [`FETCH_ROWS`] rows at
//! a time, the registry cache is bounded, and so are the records in flight to the broker
//! ([`MAX_IN_FLIGHT`] is what `replicator snapshot` sets). The transaction is read only but long:
//! it holds back vacuum's horizon for its duration, and `pg_create_logical_replication_slot`
//! (setup) waits for it to end. A snapshot that fails or is killed leaves in the topic only
//! complete snapshot transactions (full states: harmless duplicates) and perhaps one without its
//! commit record (never applied); run it again. It succeeds only when the broker acknowledged
//! every record.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conflict::{Counter, Dot, Hlc, RegionId, VersionVector};
use envelope::{Body, Codec, EntityChange, Envelope, Seq, UnixMicros};
use pgoutput::{ColumnValue, Lsn, Oid};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};
use uuid::Uuid;

use super::canonical_form::CanonicalForm;
use super::publish::{ensure_topic, KafkaSettings, Publisher, PublisherConfig};
use super::registry::{PgRegistry, RegistryCache, RegistryLookup, DEFAULT_CAPACITY};
use super::{CapturedChange, Column, Row, Stamp};
use crate::database::DatabaseUrl;
use crate::policy::{self, Identity, TablePolicy};
use crate::{Error, Result};

/// Default of [`SnapshotConfig::transaction_size`].
pub const DEFAULT_TRANSACTION_SIZE: usize = 1000;
/// Rows fetched from the cursor at a time (memory is bounded by this many rows).
pub const FETCH_ROWS: usize = 100;
/// Records a snapshot lets in flight ([`PublisherConfig::max_in_flight`]): fewer than the
/// reader's default, because a snapshot's records are whole entities (a dashboard's layout and
/// metadata in full), not one transaction's changed fields.
pub const MAX_IN_FLIGHT: usize = 1000;
/// The name of the server-side cursor (one at a time).
const CURSOR: &str = "replicator_snapshot";
/// How long the broker gets to report the topic's end offset.
const OFFSET_TIMEOUT: Duration = Duration::from_secs(30);
/// `$exists`.
const EXISTS: &str = "$exists";

/// What one snapshot needs.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    pub region: RegionId,
    pub database: DatabaseUrl,
    /// The slot `setup` created: it must exist, or changes after the snapshot would be lost.
    pub slot: String,
    pub kafka: KafkaSettings,
    pub publisher: PublisherConfig,
    /// Most entities per snapshot transaction (at least 1).
    pub transaction_size: usize,
    /// How long to wait, at the end, for the broker to acknowledge every record.
    pub flush_timeout: Duration,
}

/// What one table contributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Live entities published.
    pub live: u64,
    /// Tombstones published.
    pub deleted: u64,
    /// Entities alive in the versioning without a row: not published.
    pub missing_rows: u64,
    /// Rows without versioning (no registry entry or entity): not published.
    pub unversioned_rows: u64,
    /// Stamps of fields that are not published columns: left out of their entity's record.
    pub stale_stamps: u64,
}

impl TableReport {
    /// Entities published.
    pub fn entities(&self) -> u64 {
        self.live + self.deleted
    }

    fn skipped(&self) -> bool {
        self.missing_rows + self.unversioned_rows + self.stale_stamps > 0
    }
}

/// What a snapshot published.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub region: RegionId,
    pub topic: String,
    /// The snapshot's LSN: every record's `commit_lsn`.
    pub lsn: Lsn,
    pub slot: String,
    /// The slot's confirmed position when the snapshot was taken (at or before [`Self::lsn`]).
    pub slot_confirmed: Lsn,
    /// The topic's end offset before the snapshot was taken: a region bootstrapping from this
    /// snapshot consumes the topic from here (module docs).
    pub start_offset: i64,
    /// Per table, in policy order.
    pub tables: Vec<TableReport>,
    /// Snapshot transactions (each closed by a commit record).
    pub transactions: u64,
    /// Records published (changes and commits).
    pub records: u64,
    /// Encoded bytes published (payloads and keys).
    pub bytes: u64,
    /// References and embedded ids published as dangling tokens.
    pub dangling: u64,
    pub elapsed: Duration,
}

impl SnapshotReport {
    /// Entities published (live and deleted).
    pub fn entities(&self) -> u64 {
        self.tables.iter().map(TableReport::entities).sum()
    }

    pub fn live(&self) -> u64 {
        self.tables.iter().map(|t| t.live).sum()
    }

    pub fn deleted(&self) -> u64 {
        self.tables.iter().map(|t| t.deleted).sum()
    }
}

impl fmt::Display for SnapshotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "snapshot of region {} at LSN {}: {} entities ({} live, {} deleted)",
            self.region,
            self.lsn,
            self.entities(),
            self.live(),
            self.deleted()
        )?;
        writeln!(
            f,
            "published to topic {}: {} records in {} transactions, {} bytes, in {:.1?}",
            self.topic, self.records, self.transactions, self.bytes, self.elapsed
        )?;
        writeln!(
            f,
            "to bootstrap a region from this snapshot, consume topic {} from offset {}",
            self.topic, self.start_offset
        )?;
        writeln!(
            f,
            "slot {} was confirmed at {}; `replicator capture` publishes every change after it",
            self.slot, self.slot_confirmed
        )?;
        writeln!(f, "{:<28} {:>10} {:>10}", "table", "live", "deleted")?;
        for table in &self.tables {
            writeln!(
                f,
                "{:<28} {:>10} {:>10}",
                table.table, table.live, table.deleted
            )?;
        }
        for table in self.tables.iter().filter(|t| t.skipped()) {
            writeln!(
                f,
                "not published from {}: {} entities alive without a row, {} rows never versioned (run `replicator setup`), {} stamps of unpublished columns",
                table.table, table.missing_rows, table.unversioned_rows, table.stale_stamps
            )?;
        }
        if self.dangling > 0 {
            writeln!(
                f,
                "{} references to rows that were never registered were published as dangling tokens",
                self.dangling
            )?;
        }
        Ok(())
    }
}

/// Takes the snapshot and publishes it (module docs).
pub async fn run(config: &SnapshotConfig) -> Result<SnapshotReport> {
    let started = Instant::now();
    if config.transaction_size == 0 {
        return Err(problem("the transaction size must be at least 1"));
    }
    let codec = Arc::new(Codec::new().map_err(|e| problem(&e.to_string()))?);
    let topic = config.publisher.topic.clone();
    ensure_topic(&config.kafka, &topic, None).await?;
    // Creating the publisher checks the settings (redacting credentials) before anything else
    // uses them; it does not contact the broker.
    let publisher = Publisher::new(&config.kafka, config.publisher.clone(), codec)?;
    // Before the snapshot is taken (module docs: where a new region starts consuming).
    let start_offset = end_offset(&config.kafka, &topic).await?;

    let client = Arc::new(config.database.connect().await?);
    let position = begin(&client, config).await?;
    tracing::info!(
        region = %config.region,
        lsn = %position.lsn,
        slot = %config.slot,
        slot_confirmed = %position.slot_confirmed,
        topic = %topic,
        start_offset,
        "snapshot taken; publishing"
    );

    let registry = RegistryCache::new(PgRegistry::shared(client.clone()), DEFAULT_CAPACITY);
    let mut canonical = CanonicalForm::new(config.region, registry);
    let mut out = Output {
        region: config.region,
        commit_lsn: position.lsn,
        commit_time: position.time,
        size: config.transaction_size as u64,
        publisher,
        open: None,
        transactions: 0,
    };
    let mut tables = Vec::new();
    for (table, policy) in policy::superset().replicated() {
        let report = snapshot_table(&client, table, policy, &mut canonical, &mut out).await?;
        tracing::debug!(
            table,
            live = report.live,
            deleted = report.deleted,
            "table published"
        );
        tables.push(report);
    }
    let Output {
        mut publisher,
        transactions,
        ..
    } = out;
    publisher.flush(config.flush_timeout).await?;
    let stats = publisher.stats();
    if stats.acked != stats.sent {
        return Err(problem(&format!(
            "{} records sent but {} acknowledged",
            stats.sent, stats.acked
        )));
    }
    // Everything is acknowledged: closing has nothing left to wait for.
    publisher.close(Duration::from_secs(5)).await?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(Error::pg("end the snapshot transaction"))?;
    Ok(SnapshotReport {
        region: config.region,
        topic,
        lsn: position.lsn,
        slot: config.slot.clone(),
        slot_confirmed: position.slot_confirmed,
        start_offset,
        tables,
        transactions,
        records: stats.acked,
        bytes: stats.bytes_acked,
        dangling: canonical.stats().dangling,
        elapsed: started.elapsed(),
    })
}

/// Where the snapshot stands.
#[derive(Debug, Clone, Copy)]
struct Position {
    lsn: Lsn,
    time: UnixMicros,
    slot_confirmed: Lsn,
}

/// Opens the snapshot transaction and checks the region and the slot inside it.
async fn begin(client: &Client, config: &SnapshotConfig) -> Result<Position> {
    // SET takes no snapshot: the first SELECT below does, and reads the LSN after it.
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
             SET LOCAL statement_timeout = 0;
             SET LOCAL idle_in_transaction_session_timeout = 0;",
        )
        .await
        .map_err(Error::pg("begin the snapshot transaction"))?;
    let first = simple_rows(
        client,
        "SELECT pg_current_wal_lsn()::text, (extract(epoch FROM now()) * 1000000)::bigint,
                to_regclass('replicator.local_region') IS NOT NULL
                AND to_regclass('replicator.entity') IS NOT NULL
                AND to_regclass('replicator.field_version') IS NOT NULL
                AND to_regclass('replicator.registry') IS NOT NULL",
        "take the snapshot",
    )
    .await?;
    let first = first
        .first()
        .ok_or_else(|| problem("the snapshot's first query returned no row"))?;
    let insert: Lsn = required(first, 0, "the WAL position")?
        .parse()
        .map_err(|_| problem("pg_current_wal_lsn() is not an LSN"))?;
    // No record starts there (module docs).
    let lsn = Lsn(insert.0.saturating_sub(1));
    let time = UnixMicros(
        required(first, 1, "the transaction time")?
            .parse()
            .map_err(|_| problem("the transaction time is not an integer"))?,
    );
    if required(first, 2, "whether the sidecar schema exists")? != "t" {
        return Err(Error::NotSetUp);
    }

    let region = client
        .query_opt("SELECT region FROM replicator.local_region", &[])
        .await
        .map_err(Error::pg("read the local region"))?;
    let stored: String = match region {
        Some(row) => row.try_get(0).map_err(Error::pg("read the local region"))?,
        None => return Err(Error::NotSetUp),
    };
    if stored != config.region.as_str() {
        return Err(Error::RegionMismatch {
            stored,
            requested: config.region.to_string(),
        });
    }

    let slot = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, wal_status, plugin::text, database::text, current_database()::text
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&config.slot],
        )
        .await
        .map_err(Error::pg("read the slot"))?;
    let Some(slot) = slot else {
        return Err(Error::SlotGone {
            slot: config.slot.clone(),
            lost_wal: false,
        });
    };
    let column = |index: usize| -> Result<Option<String>> {
        slot.try_get(index).map_err(Error::pg("read the slot"))
    };
    let (confirmed, wal_status, plugin, database, current) =
        (column(0)?, column(1)?, column(2)?, column(3)?, column(4)?);
    if wal_status.as_deref() == Some("lost") {
        return Err(Error::SlotGone {
            slot: config.slot.clone(),
            lost_wal: true,
        });
    }
    if plugin.as_deref() != Some("pgoutput") {
        return Err(Error::SlotPlugin {
            slot: config.slot.clone(),
            plugin: plugin.unwrap_or_default(),
        });
    }
    if database != current {
        return Err(Error::SlotElsewhere {
            slot: config.slot.clone(),
            database: database.unwrap_or_default(),
        });
    }
    let slot_confirmed = confirmed
        .as_deref()
        .unwrap_or("0/0")
        .parse()
        .map_err(|_| problem("the slot's confirmed_flush_lsn is not an LSN"))?;
    Ok(Position {
        lsn,
        time,
        slot_confirmed,
    })
}

/// The records being published and the snapshot transaction that is open.
struct Output {
    region: RegionId,
    commit_lsn: Lsn,
    commit_time: UnixMicros,
    size: u64,
    publisher: Publisher,
    /// Changes in the open snapshot transaction; `None` when none is open.
    open: Option<u64>,
    transactions: u64,
}

/// Where [`snapshot_table`] sends each entity: the topic (the snapshot) or a collection
/// ([`crate::verify`]).
pub(crate) trait EntitySink {
    /// One entity's full canonical state.
    fn change(&mut self, change: EntityChange) -> impl std::future::Future<Output = Result<()>>;
    /// The end of a table.
    fn commit(&mut self) -> impl std::future::Future<Output = Result<()>>;
}

impl EntitySink for Output {
    async fn change(&mut self, change: EntityChange) -> Result<()> {
        Output::change(self, change).await
    }

    async fn commit(&mut self) -> Result<()> {
        Output::commit(self).await
    }
}

impl Output {
    fn envelope(&self, seq: u64, body: Body) -> Envelope {
        Envelope {
            source: self.region,
            commit_lsn: self.commit_lsn,
            commit_time: self.commit_time,
            seq: Seq(seq),
            body,
        }
    }

    /// Publishes one entity, closing the transaction when it is full.
    async fn change(&mut self, change: EntityChange) -> Result<()> {
        let seq = self.open.unwrap_or(0);
        let envelope = self.envelope(seq, Body::Change(change));
        self.publisher.send(&envelope, None).await?;
        self.open = Some(seq + 1);
        if seq + 1 >= self.size {
            self.commit().await?;
        }
        Ok(())
    }

    /// Closes the open transaction, if any, with its commit record.
    async fn commit(&mut self) -> Result<()> {
        if let Some(changes) = self.open.take() {
            let envelope = self.envelope(
                changes,
                Body::Commit {
                    change_count: changes,
                },
            );
            self.publisher.send(&envelope, None).await?;
            self.transactions += 1;
        }
        Ok(())
    }
}

/// One column the snapshot reads: a published column of the table.
#[derive(Debug, Clone)]
struct ReadColumn {
    name: String,
    type_oid: Oid,
}

/// Streams one table through a cursor and publishes its entities.
pub(crate) async fn snapshot_table<L: RegistryLookup, S: EntitySink>(
    client: &Client,
    table: &'static str,
    policy: &TablePolicy,
    canonical: &mut CanonicalForm<L>,
    out: &mut S,
) -> Result<TableReport> {
    let columns = published_columns(client, table, policy).await?;
    client
        .batch_execute(&cursor_sql(table, policy, &columns))
        .await
        .map_err(Error::pg(format!("open a cursor over public.{table}")))?;
    let mut report = TableReport {
        table,
        ..TableReport::default()
    };
    let fetch = format!("FETCH {FETCH_ROWS} FROM {CURSOR}");
    loop {
        let rows = simple_rows(client, &fetch, "fetch snapshot rows").await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let Some(change) = entity(table, &columns, row, &mut report)? else {
                continue;
            };
            let change = canonical.entity_change(change).await?;
            out.change(change).await?;
        }
    }
    out.commit().await?;
    client
        .batch_execute(&format!("CLOSE {CURSOR}"))
        .await
        .map_err(Error::pg("close the snapshot cursor"))?;
    if report.skipped() {
        tracing::warn!(
            table,
            missing_rows = report.missing_rows,
            unversioned_rows = report.unversioned_rows,
            stale_stamps = report.stale_stamps,
            "some of the table's state could not be published (see the snapshot's module docs)"
        );
    }
    Ok(report)
}

/// The columns the publication publishes (every column but the local ones), in table order, with
/// their type oids, as pgoutput's relation message gives them.
async fn published_columns(
    client: &Client,
    table: &str,
    policy: &TablePolicy,
) -> Result<Vec<ReadColumn>> {
    let context = format!("read the columns of public.{table}");
    let exists = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("public.{}", ident(table))],
        )
        .await
        .map_err(Error::pg(context.clone()))?;
    if !exists
        .try_get::<_, bool>(0)
        .map_err(Error::pg(context.clone()))?
    {
        return Err(Error::MissingTable {
            table: table.to_owned(),
        });
    }
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid FROM pg_attribute AS a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = ''
             ORDER BY a.attnum",
            &[&format!("public.{}", ident(table))],
        )
        .await
        .map_err(Error::pg(context.clone()))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0).map_err(Error::pg(context.clone()))?;
        let type_oid: u32 = row.try_get(1).map_err(Error::pg(context.clone()))?;
        if policy.local.iter().any(|local| local.column == name) {
            continue; // never read (module docs)
        }
        columns.push(ReadColumn {
            name,
            type_oid: Oid(type_oid),
        });
    }
    Ok(columns)
}

/// `DECLARE` of the cursor over `table`: every entity of the table (from `replicator.entity`)
/// with its stamps, fully joined with every row (by the row's registered identity, or its uuid
/// column for a table without a local id), so that entities without a row and rows without an
/// entity both show.
///
/// Columns: 0 entity uuid, 1 clock, 2 alive, 3 stamps (JSON `[[field, region, counter, hlc], …]`),
/// 4 row present, then the published columns in order.
fn cursor_sql(table: &str, policy: &TablePolicy, columns: &[ReadColumn]) -> String {
    let name = literal(table);
    let (identity, join) = match (policy.local_id, policy.identity) {
        (Some(id), _) => (
            "r.uuid".to_owned(),
            format!(
                " LEFT JOIN replicator.registry AS r ON r.table_name = {name} AND r.local_id = t.{}",
                ident(id)
            ),
        ),
        (None, Identity::Uuid { column, .. }) => (format!("t.{}", ident(column)), String::new()),
        (None, _) => ("NULL::uuid".to_owned(), String::new()),
    };
    let mut inner = String::new();
    let mut outer = String::new();
    for (i, column) in columns.iter().enumerate() {
        inner.push_str(&format!(", t.{} AS c{i}", ident(&column.name)));
        outer.push_str(&format!(", l.c{i}"));
    }
    format!(
        "DECLARE {CURSOR} NO SCROLL CURSOR FOR
SELECT e.uuid, e.clock, e.alive,
       (SELECT jsonb_agg(jsonb_build_array(f.field, f.region, f.counter, f.hlc) ORDER BY f.field)
        FROM replicator.field_version AS f WHERE f.table_name = {name} AND f.uuid = e.uuid),
       l.present{outer}
FROM (SELECT uuid, clock, alive FROM replicator.entity WHERE table_name = {name}) AS e
FULL JOIN (SELECT true AS present, {identity} AS identity{inner}
           FROM public.{table_ident} AS t{join}) AS l
  ON l.identity = e.uuid",
        table_ident = ident(table),
    )
}

/// The captured change of one cursor row, or `None` (counted in `report`) when it is not
/// published.
fn entity(
    table: &str,
    columns: &[ReadColumn],
    row: &SimpleQueryRow,
    report: &mut TableReport,
) -> Result<Option<CapturedChange>> {
    let Some(uuid) = cell(row, 0)? else {
        report.unversioned_rows += 1;
        return Ok(None);
    };
    let entity = Uuid::try_parse(uuid).map_err(|_| problem("an entity uuid is not a uuid"))?;
    let clock = clock(required(row, 1, "an entity clock")?)?;
    let alive = required(row, 2, "an entity's existence")? == "t";
    let mut stamps = match cell(row, 3)? {
        Some(json) => stamps(json)?,
        None => Vec::new(),
    };
    let present = cell(row, 4)?.is_some();
    let row = match (alive, present) {
        (false, _) => {
            // A tombstone: the delete's stamp only (the other values are gone with the row).
            stamps.retain(|stamp| stamp.field == EXISTS);
            report.deleted += 1;
            None
        }
        (true, false) => {
            report.missing_rows += 1;
            tracing::debug!(table, %entity, "an entity alive without a row; not published");
            return Ok(None);
        }
        (true, true) => {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let value = match cell(row, 5 + i)? {
                    Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
                    None => ColumnValue::Null,
                };
                values.push(Column {
                    name: column.name.clone(),
                    type_oid: column.type_oid,
                    value,
                });
            }
            let row = Row { columns: values };
            let before = stamps.len();
            stamps.retain(|stamp| stamp.field == EXISTS || row.get(&stamp.field).is_some());
            report.stale_stamps += (before - stamps.len()) as u64;
            report.live += 1;
            Some(row)
        }
    };
    Ok(Some(CapturedChange {
        table: table.to_owned(),
        entity,
        clock,
        stamps,
        row,
    }))
}

/// A clock as `replicator.entity` stores it: `{"region": counter, …}`.
fn clock(text: &str) -> Result<VersionVector> {
    let entries: BTreeMap<String, u64> =
        serde_json::from_str(text).map_err(|e| problem(&format!("an entity clock: {e}")))?;
    let mut clock = VersionVector::new();
    for (name, counter) in entries {
        let region = RegionId::new(&name).map_err(|e| problem(&format!("a clock region: {e}")))?;
        clock.observe(&Dot::new(region, Counter(counter)));
    }
    Ok(clock)
}

/// The stamps of one entity, as the cursor aggregates them.
fn stamps(text: &str) -> Result<Vec<Stamp>> {
    let rows: Vec<(String, String, u64, i64)> =
        serde_json::from_str(text).map_err(|e| problem(&format!("field versions: {e}")))?;
    rows.into_iter()
        .map(|(field, region, counter, hlc)| {
            Ok(Stamp {
                field,
                dot: Dot::new(
                    RegionId::new(&region)
                        .map_err(|e| problem(&format!("a stamp's region: {e}")))?,
                    Counter(counter),
                ),
                hlc: Hlc::from_i64(hlc).map_err(|e| problem(&format!("a stamp's hlc: {e}")))?,
            })
        })
        .collect()
}

/// Runs `sql` with the simple query protocol (text format: what pgoutput sends) and returns its
/// rows.
async fn simple_rows(client: &Client, sql: &str, context: &str) -> Result<Vec<SimpleQueryRow>> {
    let messages = client.simple_query(sql).await.map_err(Error::pg(context))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect())
}

fn cell(row: &SimpleQueryRow, index: usize) -> Result<Option<&str>> {
    row.try_get(index)
        .map_err(|e| problem(&format!("column {index} of a snapshot row: {e}")))
}

fn required<'r>(row: &'r SimpleQueryRow, index: usize, what: &str) -> Result<&'r str> {
    cell(row, index)?.ok_or_else(|| problem(&format!("{what} is NULL")))
}

/// The topic's end offset (partition 0, the only one), from the broker.
async fn end_offset(settings: &KafkaSettings, topic: &str) -> Result<i64> {
    let config = settings.client_config()?;
    let name = topic.to_owned();
    let context = format!("read the end offset of topic {topic}");
    let fetched = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = config.create()?;
        let watermarks = producer.client().fetch_watermarks(&name, 0, OFFSET_TIMEOUT);
        drop(producer);
        watermarks.map(|(_, high)| high)
    })
    .await;
    match fetched {
        Ok(Ok(high)) => Ok(high),
        // A creation error can quote a property's value: name the key only (the publisher,
        // created first from the same settings, already reported bad values safely).
        Ok(Err(KafkaError::ClientConfig(_, _, key, _))) => Err(Error::KafkaSetting {
            key,
            problem: "refused by the Kafka client".into(),
        }),
        Ok(Err(source)) => Err(Error::Kafka { context, source }),
        Err(_) => Err(Error::Kafka {
            context,
            source: KafkaError::Canceled,
        }),
    }
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted literal (`standard_conforming_strings` is on: backslashes are plain).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn problem(problem: &str) -> Error {
    Error::Snapshot {
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Treatment;

    fn replicated(table: &str) -> &'static TablePolicy {
        match policy::superset().rule(table).map(|rule| &rule.treatment) {
            Some(Treatment::Replicated(policy)) => policy,
            _ => panic!("{table} is replicated"),
        }
    }

    fn columns(names: &[&str]) -> Vec<ReadColumn> {
        names
            .iter()
            .map(|name| ReadColumn {
                name: (*name).to_owned(),
                type_oid: Oid(25),
            })
            .collect()
    }

    #[test]
    fn the_cursor_joins_rows_by_their_registered_identity_and_reads_only_published_columns() {
        let sql = cursor_sql("dbs", replicated("dbs"), &columns(&["id", "database_name"]));
        assert!(
            sql.contains("r.table_name = 'dbs' AND r.local_id = t.\"id\""),
            "{sql}"
        );
        assert!(sql.contains("t.\"database_name\" AS c1"), "{sql}");
        assert!(sql.contains("FULL JOIN"), "{sql}");
        assert!(!sql.contains("sqlalchemy_uri"), "{sql}");
        let sql = cursor_sql(
            "embedded_dashboards",
            replicated("embedded_dashboards"),
            &columns(&["uuid"]),
        );
        assert!(sql.contains("t.\"uuid\" AS identity"), "{sql}");
        assert!(!sql.contains("replicator.registry"), "{sql}");
    }

    #[test]
    fn clocks_and_stamps_parse_as_the_sidecar_stores_them() {
        let clock = clock(r#"{"us": 3, "eu": 1}"#).unwrap();
        let us = RegionId::new("us").unwrap();
        assert_eq!(clock.get(us), Counter(3));
        let stamps =
            stamps(r#"[["$exists", "us", 1, 7000000000000000], ["title", "eu", 1, 9]]"#).unwrap();
        assert_eq!(stamps.len(), 2);
        assert_eq!(stamps[0].dot, Dot::new(us, Counter(1)));
        assert_eq!(stamps[1].hlc, Hlc::from_i64(9).unwrap());
        assert!(super::clock("[1]").is_err());
        assert!(super::stamps(r#"[["x", "NOT A REGION", 1, 1]]"#).is_err());
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn the_report_says_where_to_consume_from() {
        let report = SnapshotReport {
            region: RegionId::new("us").unwrap(),
            topic: "replicator.us".into(),
            lsn: Lsn(0x1_0000_0010),
            slot: "replicator".into(),
            slot_confirmed: Lsn(0x1_0000_0000),
            start_offset: 42,
            tables: vec![TableReport {
                table: "dashboards",
                live: 2,
                deleted: 1,
                missing_rows: 1,
                ..TableReport::default()
            }],
            transactions: 1,
            records: 4,
            bytes: 100,
            dangling: 0,
            elapsed: Duration::from_millis(5),
        };
        let text = report.to_string();
        assert!(text.contains("3 entities (2 live, 1 deleted)"), "{text}");
        assert!(text.contains("from offset 42"), "{text}");
        assert!(text.contains("1/10"), "{text}");
        assert!(text.contains("1 entities alive without a row"), "{text}");
    }
}

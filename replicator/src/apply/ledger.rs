//! The ledger: the applier's bookkeeping in schema `replicator` — positions, parked transactions,
//! quarantine, the conflict log and natural-key decisions (migration 0003).
//!
//! **Contract.** Every write here runs on the client it is given, which is the apply transaction
//! (DESIGN §2 step 4: rows, clocks, conflicts and the consumer position in **one** transaction).
//! So the position never moves past a record that is not applied, parked or quarantined in the
//! same commit, and a crash leaves all of a source transaction's effects or none.

use conflict::{Conflict, Side, VersionVector};
use pgoutput::Lsn;
use serde_json::{json, Value};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::{Error, Result};

use super::source_txn::{Offset, RawRecord};

/// Where a source's topic is applied up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub resume_offset: Offset,
}

/// The stored position of `source`, if any.
pub async fn position(client: &impl GenericClient, source: &str) -> Result<Option<Offset>> {
    let row = client
        .query_opt(
            "SELECT resume_offset FROM replicator.applied_position WHERE source = $1",
            &[&source],
        )
        .await
        .map_err(Error::pg("read the applied position"))?;
    row.map(|row| row.try_get(0).map(Offset))
        .transpose()
        .map_err(Error::pg("read the applied position"))
}

/// Stores where `source` resumes, and what the last applied transaction or heartbeat was.
pub async fn save_position(
    client: &impl GenericClient,
    source: &str,
    topic: &str,
    resume: Offset,
    commit: Option<(Lsn, i64)>,
    beat: Option<(u64, i64)>,
) -> Result<()> {
    let lsn = commit.map(|(lsn, _)| lsn.to_string());
    let commit_micros = commit.map(|(_, micros)| micros);
    let beat_seq = beat.and_then(|(b, _)| i64::try_from(b).ok());
    let beat_micros = beat.map(|(_, micros)| micros);
    client
        .execute(
            "INSERT INTO replicator.applied_position AS p
                 (source, topic, resume_offset, last_commit_lsn, last_commit_time, last_beat,
                  last_beat_time, applied_at)
             VALUES ($1, $2, $3, $4::text::pg_lsn,
                     to_timestamp($5::bigint / 1e6), $6, to_timestamp($7::bigint / 1e6), now())
             ON CONFLICT (source) DO UPDATE SET
                 topic = EXCLUDED.topic,
                 resume_offset = EXCLUDED.resume_offset,
                 last_commit_lsn = coalesce(EXCLUDED.last_commit_lsn, p.last_commit_lsn),
                 last_commit_time = coalesce(EXCLUDED.last_commit_time, p.last_commit_time),
                 last_beat = coalesce(EXCLUDED.last_beat, p.last_beat),
                 last_beat_time = coalesce(EXCLUDED.last_beat_time, p.last_beat_time),
                 applied_at = now()",
            &[
                &source,
                &topic,
                &resume.0,
                &lsn,
                &commit_micros,
                &beat_seq,
                &beat_micros,
            ],
        )
        .await
        .map_err(Error::pg("save the applied position"))?;
    Ok(())
}

fn bytes(records: &[RawRecord]) -> Vec<&[u8]> {
    records.iter().map(|r| r.bytes.as_slice()).collect()
}

/// What a parked transaction waits for: `(table, uuid)` pairs; a table `$config:<table>` waits
/// for this region's configuration.
pub fn waiting_json(waiting: &[(String, Uuid)]) -> Value {
    Value::Array(
        waiting
            .iter()
            .map(|(table, uuid)| json!({"table": table, "uuid": uuid.to_string()}))
            .collect(),
    )
}

/// Parks a source transaction (its raw records) until what it waits for arrives.
pub async fn park(
    client: &impl GenericClient,
    source: &str,
    commit_lsn: Lsn,
    commit_micros: i64,
    records: &[RawRecord],
    waiting: &[(String, Uuid)],
    reason: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO replicator.parked (source, commit_lsn, commit_time, records, waiting_for, reason)
             VALUES ($1, $2::text::pg_lsn, to_timestamp($3::bigint / 1e6), $4, $5, $6)",
            &[
                &source,
                &commit_lsn.to_string(),
                &commit_micros,
                &bytes(records),
                &waiting_json(waiting),
                &reason,
            ],
        )
        .await
        .map_err(Error::pg("park a transaction"))?;
    Ok(())
}

/// A parked transaction taken up again.
#[derive(Debug, Clone)]
pub struct Parked {
    pub id: i64,
    pub source: String,
    pub records: Vec<Vec<u8>>,
}

/// Parked transactions whose every awaited uuid is now here (or all of them, with `all`), oldest
/// first, locked for this transaction.
pub async fn ready_parked(
    client: &impl GenericClient,
    all: bool,
    limit: i64,
) -> Result<Vec<Parked>> {
    let rows = client
        .query(
            "SELECT p.id, p.source, p.records FROM replicator.parked AS p
             WHERE $1 OR NOT EXISTS (
                 SELECT 1 FROM jsonb_array_elements(p.waiting_for) AS w
                 WHERE NOT EXISTS (SELECT 1 FROM replicator.registry AS r
                                   WHERE r.table_name = w ->> 'table'
                                     AND r.uuid = (w ->> 'uuid')::uuid)
                   AND NOT EXISTS (SELECT 1 FROM replicator.entity AS e
                                   WHERE e.table_name = w ->> 'table'
                                     AND e.uuid = (w ->> 'uuid')::uuid))
             ORDER BY p.id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&all, &limit],
        )
        .await
        .map_err(Error::pg("find parked transactions that can go"))?;
    rows.iter()
        .map(|row| {
            Ok(Parked {
                id: row.try_get(0).map_err(Error::pg("read parked"))?,
                source: row.try_get(1).map_err(Error::pg("read parked"))?,
                records: row.try_get(2).map_err(Error::pg("read parked"))?,
            })
        })
        .collect()
}

/// Removes a parked transaction (it was applied, parked again under a new row, or quarantined).
pub async fn unpark(client: &impl GenericClient, id: i64) -> Result<()> {
    client
        .execute("DELETE FROM replicator.parked WHERE id = $1", &[&id])
        .await
        .map_err(Error::pg("remove a parked transaction"))?;
    Ok(())
}

/// Counts a failed retry of a parked transaction, with what it now waits for.
pub async fn repark(
    client: &impl GenericClient,
    id: i64,
    waiting: &[(String, Uuid)],
    reason: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE replicator.parked SET attempts = attempts + 1, retried_at = now(),
                 waiting_for = $2, reason = $3 WHERE id = $1",
            &[&id, &waiting_json(waiting), &reason],
        )
        .await
        .map_err(Error::pg("update a parked transaction"))?;
    Ok(())
}

/// Where quarantined records came from.
#[derive(Debug, Clone)]
pub struct QuarantineSite<'a> {
    pub source: &'a str,
    pub topic: &'a str,
    pub commit_lsn: Option<Lsn>,
}

/// Sends records to the quarantine with the reason (DESIGN §5).
pub async fn quarantine(
    client: &impl GenericClient,
    site: &QuarantineSite<'_>,
    records: &[RawRecord],
    reason: &str,
    detail: &str,
) -> Result<()> {
    let first = records.first().map_or(-1, |r| r.offset.0);
    let last = records.last().map_or(-1, |r| r.offset.0);
    client
        .execute(
            "INSERT INTO replicator.quarantine
                 (source, topic, first_offset, last_offset, commit_lsn, reason, detail, records)
             VALUES ($1, $2, $3, $4, $5::text::pg_lsn, $6, $7, $8)",
            &[
                &site.source,
                &site.topic,
                &first,
                &last,
                &site.commit_lsn.map(|l| l.to_string()),
                &reason,
                &detail,
                &bytes(records),
            ],
        )
        .await
        .map_err(Error::pg("quarantine records"))?;
    Ok(())
}

fn clock_json(clock: &VersionVector) -> Value {
    serde_json::to_value(clock).unwrap_or(Value::Null)
}

/// Logs one conflict (values in this region's terms, as PostgreSQL prints them).
pub async fn log_conflict(
    client: &impl GenericClient,
    table: &str,
    uuid: Uuid,
    source: &str,
    commit_lsn: Lsn,
    conflict: &Conflict<Option<String>>,
) -> Result<()> {
    let value = |cell: &conflict::Cell<Option<String>>| match cell {
        conflict::Cell::Value(v) => v.clone(),
        conflict::Cell::Existence(alive) => Some(if *alive { "exists" } else { "deleted" }.into()),
    };
    let counter = |c: conflict::Counter| i64::try_from(c.0).unwrap_or(i64::MAX);
    let hlc = |h: conflict::Hlc| h.to_i64().unwrap_or(i64::MAX);
    let kind = match conflict.kind {
        conflict::ConflictKind::Field => "field",
        conflict::ConflictKind::DeleteUpdate => "delete_update",
    };
    let winner = match conflict.winner {
        Side::Local => "local",
        Side::Incoming => "incoming",
    };
    let (l, i) = (&conflict.local, &conflict.incoming);
    client
        .execute(
            "INSERT INTO replicator.conflict
                 (table_name, uuid, field, kind, source,
                  local_value, local_region, local_counter, local_hlc, local_clock,
                  incoming_value, incoming_region, incoming_counter, incoming_hlc, incoming_clock,
                  winner, commit_lsn)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17::text::pg_lsn)",
            &[
                &table,
                &uuid,
                &conflict.field.as_str(),
                &kind,
                &source,
                &value(&l.value),
                &l.dot.region.as_str(),
                &counter(l.dot.counter),
                &hlc(l.hlc),
                &clock_json(&conflict.local_clock),
                &value(&i.value),
                &i.dot.region.as_str(),
                &counter(i.dot.counter),
                &hlc(i.hlc),
                &clock_json(&conflict.incoming_clock),
                &winner,
                &commit_lsn.to_string(),
            ],
        )
        .await
        .map_err(Error::pg("log a conflict"))?;
    Ok(())
}

/// Records a natural-key decision.
pub async fn log_key_collision(
    client: &impl GenericClient,
    table: &str,
    key: &str,
    winner: Uuid,
    loser: Uuid,
    outcome: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO replicator.key_collision (table_name, key, winner, loser, outcome)
             VALUES ($1, $2, $3, $4, $5)",
            &[&table, &key, &winner, &loser, &outcome],
        )
        .await
        .map_err(Error::pg("log a natural-key collision"))?;
    Ok(())
}

//! The assembler: decoded pgoutput messages in, [`Captured`] items out. Pure and synchronous.
//!
//! **Contract.**
//! - Input is one replication session's messages in stream order (protocol 1, no streaming of
//!   in-progress transactions: the server sends each transaction at its commit, so everything
//!   seen is committed and every transaction arrives whole, in commit order).
//! - Output follows the input: `Begin`, then per row write a [`Captured::Change`] (or
//!   [`Captured::Registered`] / [`Captured::Heartbeat`]), then `Commit`; a transaction carrying a
//!   replication origin (the applier's) yields only [`Captured::Skipped`], so its end can still be
//!   confirmed.
//! - The versioning triggers run before the row is written (`setup::capture`), so a row's
//!   `replicator.entity` and `replicator.field_version` rows precede it: they are held as
//!   *pending* and attached to the next data row of their table. Memory is therefore bounded by
//!   one row's versioning, never by a transaction's size.
//! - Every input is handled: a malformed message or row is an error naming what was wrong, never a
//!   panic. Versioning rows that no data row claims (a row dropped after our BEFORE trigger ran)
//!   are dropped at the next data row or at commit and counted in [`Assembler::orphans`].

use std::collections::BTreeMap;

use conflict::{Counter, Dot, Hlc, RegionId, VersionVector};
use pgoutput::{ColumnValue, LogicalMessage, Lsn, Oid, RelationCache, TupleData};
use uuid::Uuid;

use super::{Captured, CapturedChange, Column, Row, Stamp};
use crate::{Error, Result};

const SIDECAR_SCHEMA: &str = "replicator";
const SUPERSET_SCHEMA: &str = "public";
/// Marks a field as the existence of the entity (`conflict::FieldPath::existence`).
pub const EXISTS_FIELD: &str = "$exists";

/// One entity's versioning, waiting for its data row.
#[derive(Debug)]
struct Pending {
    table: String,
    entity: Uuid,
    clock: VersionVector,
    alive: bool,
    stamps: Vec<Stamp>,
}

/// The state of the transaction being read.
#[derive(Debug)]
struct Transaction {
    commit_lsn: Lsn,
    skipped: bool,
    pending: Vec<Pending>,
}

/// Turns a session's message stream into captured items.
#[derive(Debug, Default)]
pub struct Assembler {
    relations: RelationCache,
    transaction: Option<Transaction>,
    orphans: u64,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many versioning rows no data row claimed (see the module doc).
    pub fn orphans(&self) -> u64 {
        self.orphans
    }

    /// Feeds one message; appends what it completes to `out`.
    pub fn feed(&mut self, message: &LogicalMessage, out: &mut Vec<Captured>) -> Result<()> {
        self.relations.observe(message);
        match message {
            LogicalMessage::Begin(begin) => {
                if self.transaction.is_some() {
                    return Err(shape("Begin inside a transaction"));
                }
                self.transaction = Some(Transaction {
                    commit_lsn: begin.final_lsn,
                    skipped: false,
                    pending: Vec::new(),
                });
                out.push(Captured::Begin {
                    commit_lsn: begin.final_lsn,
                    commit_time_unix_micros: begin.commit_time.to_unix_micros().unwrap_or(0),
                });
            }
            LogicalMessage::Origin(_) => {
                let txn = self.open()?;
                txn.skipped = true;
                // Nothing of this transaction is published: take back its Begin.
                if let Some(Captured::Begin { .. }) = out.last() {
                    out.pop();
                }
            }
            LogicalMessage::Commit(commit) => {
                let txn = self
                    .transaction
                    .take()
                    .ok_or_else(|| shape("Commit outside a transaction"))?;
                self.orphans += txn.pending.len() as u64;
                if txn.skipped {
                    out.push(Captured::Skipped {
                        end_lsn: commit.end_lsn,
                    });
                } else {
                    out.push(Captured::Commit {
                        commit_lsn: txn.commit_lsn,
                        end_lsn: commit.end_lsn,
                    });
                }
            }
            LogicalMessage::Insert(insert) => {
                self.row(insert.relation, Some(&insert.new), Write::Insert, out)?
            }
            LogicalMessage::Update(update) => {
                self.row(update.relation, Some(&update.new), Write::Update, out)?
            }
            LogicalMessage::Delete(delete) => {
                self.row(delete.relation, None, Write::Delete, out)?
            }
            LogicalMessage::Truncate(_) => {
                return Err(shape(
                    "TRUNCATE of a published table: truncated rows are not versioned",
                ))
            }
            LogicalMessage::Relation(_) | LogicalMessage::Type(_) | LogicalMessage::Message(_) => {}
            other => return Err(shape(&format!("unexpected {:?} message", other.kind()))),
        }
        Ok(())
    }

    fn open(&mut self) -> Result<&mut Transaction> {
        self.transaction
            .as_mut()
            .ok_or_else(|| shape("row change outside a transaction"))
    }

    fn row(
        &mut self,
        relation: Oid,
        new: Option<&TupleData>,
        write: Write,
        out: &mut Vec<Captured>,
    ) -> Result<()> {
        let rel = self
            .relations
            .get(relation)
            .ok_or_else(|| shape("row of an unknown relation"))?;
        let (schema, table) = (rel.namespace.clone(), rel.name.clone());
        let row = match new {
            Some(tuple) => Some(owned_row(&self.relations, relation, tuple)?),
            None => None,
        };
        let txn = self.open()?;
        if txn.skipped {
            return Ok(());
        }
        match (schema.as_str(), table.as_str(), row) {
            (SIDECAR_SCHEMA, "entity", Some(row)) => {
                let entity = Pending {
                    table: text(&row, "table_name")?,
                    entity: uuid(&row, "uuid")?,
                    clock: clock(&row)?,
                    alive: text(&row, "alive")? == "t",
                    stamps: Vec::new(),
                };
                txn.pending
                    .retain(|p| !(p.table == entity.table && p.entity == entity.entity));
                txn.pending.push(entity);
            }
            (SIDECAR_SCHEMA, "field_version", Some(row)) => {
                let (table, entity) = (text(&row, "table_name")?, uuid(&row, "uuid")?);
                let stamp = Stamp {
                    field: text(&row, "field")?,
                    dot: Dot::new(region(&row)?, Counter(number(&row, "counter")? as u64)),
                    hlc: Hlc::from_i64(number(&row, "hlc")?)
                        .map_err(|e| shape(&format!("hlc: {e}")))?,
                };
                let pending = txn
                    .pending
                    .iter_mut()
                    .find(|p| p.table == table && p.entity == entity)
                    .ok_or_else(|| shape("a field version without its entity clock before it"))?;
                pending.stamps.retain(|s| s.field != stamp.field);
                pending.stamps.push(stamp);
            }
            (SIDECAR_SCHEMA, "registry", Some(row)) => out.push(Captured::Registered {
                table: text(&row, "table_name")?,
                local_id: number(&row, "local_id")?,
                uuid: uuid(&row, "uuid")?,
            }),
            (SIDECAR_SCHEMA, "heartbeat", Some(row)) => out.push(Captured::Heartbeat {
                beat: number(&row, "seq")?,
                beat_time_unix_micros: number(&row, "beat_unix_micros")?,
            }),
            // Deletes of sidecar rows (registry moves, collected tombstones) publish nothing.
            (SIDECAR_SCHEMA, _, _) => {}
            (SUPERSET_SCHEMA, _, row) => {
                // The pending versioning of this table belongs to this row; any other is orphaned.
                let (mine, others): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut txn.pending)
                    .into_iter()
                    .partition(|p| p.table == table);
                self.orphans += others.len() as u64;
                for pending in mine {
                    let row = match (pending.alive, write) {
                        (true, Write::Insert | Write::Update) => row.clone(),
                        _ => None,
                    };
                    out.push(Captured::Change(CapturedChange {
                        table: pending.table,
                        entity: pending.entity,
                        clock: pending.clock,
                        stamps: pending.stamps,
                        row,
                    }));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Insert,
    Update,
    Delete,
}

fn owned_row(relations: &RelationCache, relation: Oid, tuple: &TupleData) -> Result<Row> {
    let resolved = relations
        .resolve(relation, tuple)
        .map_err(|source| Error::Decode { source })?;
    Ok(Row {
        columns: resolved
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.to_owned(),
                type_oid: c.type_oid,
                value: c.value.clone(),
            })
            .collect(),
    })
}

fn shape(problem: &str) -> Error {
    Error::StreamShape {
        problem: problem.to_owned(),
    }
}

fn text(row: &Row, name: &str) -> Result<String> {
    match row.get(name).map(|c| &c.value) {
        Some(ColumnValue::Text(bytes)) => String::from_utf8(bytes.to_vec())
            .map_err(|_| shape(&format!("column {name} is not UTF-8"))),
        _ => Err(shape(&format!("column {name} is missing or not text"))),
    }
}

fn number(row: &Row, name: &str) -> Result<i64> {
    text(row, name)?
        .parse()
        .map_err(|_| shape(&format!("column {name} is not an integer")))
}

fn uuid(row: &Row, name: &str) -> Result<Uuid> {
    Uuid::try_parse(&text(row, name)?).map_err(|_| shape(&format!("column {name} is not a uuid")))
}

fn region(row: &Row) -> Result<RegionId> {
    RegionId::new(&text(row, "region")?).map_err(|e| shape(&format!("region: {e}")))
}

fn clock(row: &Row) -> Result<VersionVector> {
    let entries: BTreeMap<String, u64> =
        serde_json::from_str(&text(row, "clock")?).map_err(|e| shape(&format!("clock: {e}")))?;
    let mut clock = VersionVector::new();
    for (name, counter) in entries {
        let region = RegionId::new(&name).map_err(|e| shape(&format!("clock region: {e}")))?;
        clock.observe(&Dot::new(region, Counter(counter)));
    }
    Ok(clock)
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;

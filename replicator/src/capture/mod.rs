//! Capture: every local change to Superset's metadata, from the region's database to its topic
//! (DESIGN §2 steps 1–3).
//!
//! The path of one source transaction, stage by stage:
//!
//! 1. [`pgrepl`] streams the slot (pgoutput over the streaming replication protocol);
//!    [`pgoutput`] decodes each message.
//! 2. [`assemble`] (pure) turns the message stream into [`Captured`] items: a transaction's
//!    boundaries, each versioned row write as a [`CapturedChange`] (the row, the fields the
//!    triggers stamped with their dots and hlcs, the entity clock), registry entries, heartbeats.
//!    Transactions that carry a replication origin (the applier's) are skipped whole.
//!    The triggers run *before* the row is written, so a row's versioning rows precede it in the
//!    WAL and each change is complete when its row arrives: nothing is buffered per transaction,
//!    which keeps memory flat for a transaction of a million rows.
//! 3. [`canonical_form`] turns a [`CapturedChange`] into an [`envelope::EntityChange`]: only the
//!    stamped fields, each value canonical (references as uuids through the [`registry`] cache,
//!    JSON-embedded ids translated, local columns never present).
//! 4. [`publish`] sends envelopes to the region's topic with an idempotent producer, in source
//!    commit order, and reports the highest source LSN up to which every record is acknowledged.
//! 5. The slot's confirmed LSN moves to that acknowledged LSN only ([`reader`]).

pub mod assemble;
pub mod canonical_form;
pub mod publish;
pub mod reader;
pub mod registry;
pub mod snapshot;

use conflict::{Dot, Hlc, VersionVector};
use pgoutput::{ColumnValue, Lsn, Oid};
use uuid::Uuid;

/// One column of a captured row: its name, its type and its value as pgoutput sent it (text
/// format). `ColumnValue::UnchangedToast` means the value was not sent because it did not change.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: Oid,
    pub value: ColumnValue,
}

/// A row as the WAL carried it (all columns the publication includes, in table order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub columns: Vec<Column>,
}

impl Row {
    /// The column named `name`.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// One field the triggers stamped: a column name or `$exists`, with its write's dot and hlc.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub field: String,
    pub dot: Dot,
    pub hlc: Hlc,
}

/// One versioned write of one entity, as captured: complete, but still in local terms.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedChange {
    /// The Superset table (`public.<table>`), a replicated table of the policy.
    pub table: String,
    /// The entity's identity (its uuid column or its name-based uuid).
    pub entity: Uuid,
    /// The entity's clock after this write.
    pub clock: VersionVector,
    /// The stamped fields (`$exists` included when the write inserted or deleted the entity).
    pub stamps: Vec<Stamp>,
    /// The row after the write; `None` for a delete.
    pub row: Option<Row>,
}

/// What the assembler makes of the stream, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    /// A local transaction starts; all its items until [`Captured::Commit`] share `commit_lsn`.
    Begin {
        commit_lsn: Lsn,
        commit_time_unix_micros: i64,
    },
    /// A versioned write.
    Change(CapturedChange),
    /// The registry learned (or moved) `table`'s `local_id` ↔ `uuid`.
    Registered {
        table: String,
        local_id: i64,
        uuid: Uuid,
    },
    /// A heartbeat row written through the WAL.
    Heartbeat {
        beat: i64,
        beat_time_unix_micros: i64,
    },
    /// The transaction ends; `end_lsn` is what the slot may confirm once everything before is
    /// durable.
    Commit { commit_lsn: Lsn, end_lsn: Lsn },
    /// A transaction the applier wrote (it carried a replication origin): nothing of it is
    /// published, but its end may be confirmed.
    Skipped { end_lsn: Lsn },
}

//! The envelope as Rust types. Positions and times are types: [`pgoutput::Lsn`] for the source
//! commit (ordered like the source WAL), [`Seq`] within a transaction, [`UnixMicros`] for times.

use conflict::{Dot, FieldPath, Hlc, RegionId, VersionVector};
use pgoutput::Lsn;

/// Microseconds since the Unix epoch (UTC). Ordered like time; only comparable between clocks of
/// one machine, which is why lag is measured against heartbeats, not by subtracting two regions'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMicros(pub i64);

/// Position of a record within its source transaction, from 0. Ordered like the source's commit
/// order of the changes; `(commit_lsn, seq)` orders every record of one source region totally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// One record of a source region's topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The region whose local write this is.
    pub source: RegionId,
    /// The source transaction's commit position in the source WAL.
    pub commit_lsn: Lsn,
    /// The source transaction's commit time.
    pub commit_time: UnixMicros,
    /// This record's place in its transaction.
    pub seq: Seq,
    pub body: Body,
}

/// What a record carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The fields one transaction wrote to one entity.
    Change(EntityChange),
    /// The end of a source transaction, after `change_count` changes.
    Commit { change_count: u64 },
    /// A heartbeat that went through the source WAL.
    Heartbeat { beat: u64, beat_time: UnixMicros },
}

/// The fields one source transaction wrote to one entity: a partial entity state for
/// [`conflict::merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct EntityChange {
    /// The Superset table the entity lives in (`dashboards`, `slices`, ...).
    pub table: String,
    pub entity: uuid::Uuid,
    /// The entity's version vector after the source transaction.
    pub clock: VersionVector,
    /// Only the fields the transaction changed; an unchanged field is absent, never blank.
    pub fields: Vec<FieldWrite>,
}

/// One field written by a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldWrite {
    pub path: FieldPath,
    pub dot: Dot,
    pub hlc: Hlc,
    /// The canonical value (SQL NULL is `null`).
    pub value: serde_json::Value,
}

impl Envelope {
    /// The Kafka key: the entity uuid for a change (so one entity's records stay in order within
    /// a partition), the source region for commits and heartbeats.
    pub fn key(&self) -> String {
        match &self.body {
            Body::Change(change) => change.entity.to_string(),
            Body::Commit { .. } | Body::Heartbeat { .. } => self.source.to_string(),
        }
    }
}

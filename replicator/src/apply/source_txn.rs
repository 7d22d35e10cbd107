//! Source transactions, reassembled from one source region's topic.
//!
//! **Contract.** [`Assembler::push`] takes each record of a source topic in partition order, with
//! its offset and raw bytes, and yields what is ready to act on: a whole source transaction, a
//! heartbeat, or records that can never form a transaction (to quarantine). [`Assembler::resume_offset`]
//! is where a restarted applier must read from so that nothing not yet acted on is skipped.
//!
//! **Why by `commit_lsn`, not by runs.** A topic carries the reader's transactions and, while a
//! snapshot runs, the snapshot's, interleaved (`capture::snapshot`). A transaction is the set of
//! records sharing a `commit_lsn`, numbered by `seq` from 0 and closed by a `Commit` that counts
//! its changes; each producer's records are in order. A snapshot's transactions share one LSN but
//! come one after another, each from `seq` 0. A reader that crashed mid-transaction publishes the
//! transaction again from `seq` 0: a `seq` 0 restarts the open group of its LSN.
//!
//! **Heartbeats** take a `seq` in their transaction like a change. A heartbeat-only transaction
//! is a single record with no `Commit`.
//!
//! **What is broken.** A record from another region, a gap in `seq`, or a `Commit` whose count
//! disagrees with the changes held: the records involved are handed back as [`Assembled::Broken`]
//! with the reason, so the applier quarantines them and goes on (DESIGN §5).
//!
//! Pure: no I/O; memory is the open transactions' records.

use std::collections::BTreeMap;

use conflict::RegionId;
use envelope::{Body, EntityChange, Envelope, UnixMicros};
use pgoutput::Lsn;

/// A record's offset in its source topic's only partition (ADR 0002: one partition per region).
///
/// **Ordering.** Like the partition: a greater offset was appended later. Offsets of two topics
/// are never compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0.saturating_add(1))
    }
}

/// One record as read: where it was, its bytes, and what they decode to.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub offset: Offset,
    pub bytes: Vec<u8>,
}

/// A whole source transaction.
#[derive(Debug, Clone)]
pub struct SourceTxn {
    pub source: RegionId,
    pub commit_lsn: Lsn,
    pub commit_time: UnixMicros,
    /// The changes, in `seq` order.
    pub changes: Vec<EntityChange>,
    /// A heartbeat carried by the transaction, if any.
    pub heartbeat: Option<Heartbeat>,
    /// Every record of the transaction as it came, in `seq` order (to park or quarantine it).
    pub records: Vec<RawRecord>,
}

impl SourceTxn {
    /// The offset of the transaction's first record.
    pub fn first_offset(&self) -> Option<Offset> {
        self.records.first().map(|r| r.offset)
    }

    /// The offset of its last record.
    pub fn last_offset(&self) -> Option<Offset> {
        self.records.last().map(|r| r.offset)
    }
}

/// A heartbeat that travelled the source WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub beat: u64,
    pub beat_time: UnixMicros,
}

/// What [`Assembler::push`] yields.
#[derive(Debug, Clone)]
pub enum Assembled {
    /// A whole transaction (a heartbeat-only one has no changes and a heartbeat).
    Txn(SourceTxn),
    /// Records that can never be applied, and why.
    Broken {
        reason: BrokenReason,
        detail: String,
        commit_lsn: Option<Lsn>,
        records: Vec<RawRecord>,
    },
}

/// Why records were handed back as broken (the quarantine's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenReason {
    /// The bytes are not an envelope this binary can read.
    Undecodable,
    /// The envelope names another source region than the topic's.
    WrongSource,
    /// A `seq` was skipped, or a `Commit`'s count disagrees with the changes.
    Incomplete,
}

impl BrokenReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokenReason::Undecodable => "undecodable",
            BrokenReason::WrongSource => "wrong_source",
            BrokenReason::Incomplete => "incomplete_transaction",
        }
    }
}

/// A transaction being assembled.
#[derive(Debug)]
struct Open {
    commit_time: UnixMicros,
    next_seq: u64,
    changes: Vec<EntityChange>,
    heartbeat: Option<Heartbeat>,
    records: Vec<RawRecord>,
}

impl Open {
    fn first_offset(&self) -> Option<Offset> {
        self.records.first().map(|r| r.offset)
    }
}

/// Reassembles one source topic (module docs).
#[derive(Debug)]
pub struct Assembler {
    source: RegionId,
    open: BTreeMap<Lsn, Open>,
    next: Offset,
}

impl Assembler {
    /// An assembler for `source`'s topic, read from `start`.
    pub fn new(source: RegionId, start: Offset) -> Self {
        Assembler {
            source,
            open: BTreeMap::new(),
            next: start,
        }
    }

    pub fn source(&self) -> RegionId {
        self.source
    }

    /// Where to resume after everything yielded so far is durable: the first record of the
    /// oldest open transaction, else the record after the last one pushed.
    pub fn resume_offset(&self) -> Offset {
        self.open
            .values()
            .filter_map(Open::first_offset)
            .min()
            .unwrap_or(self.next)
    }

    /// Transactions still waiting for their commit.
    pub fn open_transactions(&self) -> usize {
        self.open.len()
    }

    /// A record whose bytes did not decode.
    pub fn push_undecodable(&mut self, record: RawRecord, detail: String) -> Assembled {
        self.advance(record.offset);
        Assembled::Broken {
            reason: BrokenReason::Undecodable,
            detail,
            commit_lsn: None,
            records: vec![record],
        }
    }

    /// The next record of the topic and what it decoded to.
    pub fn push(&mut self, record: RawRecord, envelope: Envelope) -> Option<Assembled> {
        self.advance(record.offset);
        if envelope.source != self.source {
            return Some(Assembled::Broken {
                reason: BrokenReason::WrongSource,
                detail: format!(
                    "a record of region {} on the topic of region {}",
                    envelope.source, self.source
                ),
                commit_lsn: Some(envelope.commit_lsn),
                records: vec![record],
            });
        }
        let lsn = envelope.commit_lsn;
        let seq = envelope.seq.0;
        if seq == 0 {
            // A new transaction, or the reader publishing a crashed one again from the start.
            self.open.insert(
                lsn,
                Open {
                    commit_time: envelope.commit_time,
                    next_seq: 0,
                    changes: Vec::new(),
                    heartbeat: None,
                    records: Vec::new(),
                },
            );
        }
        let Some(open) = self.open.get_mut(&lsn) else {
            return Some(Assembled::Broken {
                reason: BrokenReason::Incomplete,
                detail: format!("record seq {seq} of transaction {lsn}, whose start was not read"),
                commit_lsn: Some(lsn),
                records: vec![record],
            });
        };
        if seq < open.next_seq {
            return None; // a duplicate of a record already held
        }
        if seq > open.next_seq {
            let expected = open.next_seq;
            let mut records = self
                .open
                .remove(&lsn)
                .map(|o| o.records)
                .unwrap_or_default();
            records.push(record);
            return Some(Assembled::Broken {
                reason: BrokenReason::Incomplete,
                detail: format!("transaction {lsn}: record seq {seq} where seq {expected} was due"),
                commit_lsn: Some(lsn),
                records,
            });
        }
        open.next_seq += 1;
        open.records.push(record);
        match envelope.body {
            Body::Change(change) => {
                open.changes.push(change);
                None
            }
            Body::Heartbeat { beat, beat_time } => {
                open.heartbeat = Some(Heartbeat { beat, beat_time });
                if seq == 0 {
                    // A heartbeat-only transaction: one record, no commit.
                    return self.close(lsn);
                }
                None
            }
            Body::Commit { change_count } => {
                let held = open.changes.len() as u64;
                if held != change_count {
                    let records = self
                        .open
                        .remove(&lsn)
                        .map(|o| o.records)
                        .unwrap_or_default();
                    return Some(Assembled::Broken {
                        reason: BrokenReason::Incomplete,
                        detail: format!(
                            "transaction {lsn}: the commit counts {change_count} changes, {held} were read"
                        ),
                        commit_lsn: Some(lsn),
                        records,
                    });
                }
                self.close(lsn)
            }
        }
    }

    fn close(&mut self, lsn: Lsn) -> Option<Assembled> {
        let open = self.open.remove(&lsn)?;
        Some(Assembled::Txn(SourceTxn {
            source: self.source,
            commit_lsn: lsn,
            commit_time: open.commit_time,
            changes: open.changes,
            heartbeat: open.heartbeat,
            records: open.records,
        }))
    }

    fn advance(&mut self, offset: Offset) {
        if offset >= self.next {
            self.next = offset.next();
        }
    }
}

#[cfg(test)]
#[path = "source_txn_tests.rs"]
mod tests;

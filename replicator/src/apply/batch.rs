//! Batches: consecutive source transactions applied in one transaction of this database.
//!
//! **Contract.** [`Session::flush`] applies every item of a [`Batch`] — whole source
//! transactions and broken records — in **one** database transaction, each source transaction
//! inside a savepoint of its own, and saves each source's position once, at the end, in the same
//! transaction. So a source transaction is still all-or-nothing with its position (DESIGN §2 step
//! 4): a transaction that must park or be quarantined is rolled back to its savepoint and parked
//! or quarantined in the same commit; any other error aborts the whole batch, which is read again.
//!
//! **Why batches.** A backlog (a region coming back after a partition) is thousands of small
//! source transactions; one commit each would spend most of the time in commits. The applier
//! fills a batch only from records already fetched, so when records trickle in, a batch is one
//! transaction and latency is not traded for throughput.

use std::collections::BTreeMap;

use conflict::RegionId;
use envelope::Codec;
use pgoutput::Lsn;
use tokio_postgres::Client;

use crate::error::{Action, Error, Result};

use crate::telemetry::apply::{
    AfterCommit, HeartbeatApplied, RecordsQuarantined, TransactionApplied, TransactionParked,
};

use super::ledger::{self, QuarantineSite};
use super::source_txn::{Assembled, Assembler, Offset, RawRecord, SourceTxn};
use super::transaction::{Outcome, TxnApplier};

/// Most items per batch.
const MAX_ITEMS: usize = 256;
/// Most records per batch.
const MAX_RECORDS: usize = 8192;

/// One thing to make durable, with where its source resumes after it.
#[derive(Debug)]
struct Pending {
    source: String,
    topic: String,
    resume: Offset,
    item: Assembled,
}

/// Items waiting to be applied together (module docs).
#[derive(Debug, Default)]
pub(super) struct Batch {
    items: Vec<Pending>,
    records: usize,
}

impl Batch {
    pub(super) fn push(&mut self, source: &str, topic: &str, resume: Offset, item: Assembled) {
        self.records += match &item {
            Assembled::Txn(txn) => txn.records.len(),
            Assembled::Broken { records, .. } => records.len(),
        };
        self.items.push(Pending {
            source: source.to_owned(),
            topic: topic.to_owned(),
            resume,
            item,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.items.len() >= MAX_ITEMS || self.records >= MAX_RECORDS
    }
}

/// Where one source stands after a batch.
#[derive(Debug)]
struct Progress {
    topic: String,
    resume: Offset,
    commit: Option<(Lsn, i64)>,
    beat: Option<(u64, i64)>,
}

/// The database side of an applier session.
pub(super) struct Session<'a> {
    pub(super) client: Client,
    pub(super) applier: TxnApplier,
    pub(super) codec: &'a Codec,
    /// Whether `replicator.parked` may hold something: checked at start, set when parking.
    pub(super) parked: bool,
}

impl Session<'_> {
    /// Applies a batch (module docs) and empties it.
    pub(super) async fn flush(&mut self, batch: &mut Batch) -> Result<()> {
        let items = std::mem::take(&mut batch.items);
        batch.records = 0;
        if items.is_empty() {
            return Ok(());
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::pg("begin an apply transaction"))?;
        tx.batch_execute("SET LOCAL replicator.applying = 'on'")
            .await
            .map_err(Error::pg("mark the apply transaction"))?;
        let mut progress: BTreeMap<String, Progress> = BTreeMap::new();
        let mut applied = 0usize;
        let mut events = AfterCommit::default();
        let target = self.applier.region.to_string();
        // A source transaction's savepoint is released when the next one is set, in the same
        // message, or by the commit: one round trip per source transaction, not two.
        let mut savepoint_open = false;
        for pending in items {
            let Pending {
                source,
                topic,
                resume,
                item,
            } = pending;
            let entry = progress.entry(source.clone()).or_insert(Progress {
                topic: topic.clone(),
                resume,
                commit: None,
                beat: None,
            });
            entry.resume = resume;
            match item {
                Assembled::Txn(txn) => {
                    entry.commit = Some((txn.commit_lsn, txn.commit_time.0));
                    if let Some(h) = txn.heartbeat {
                        entry.beat = Some((h.beat, h.beat_time.0));
                    }
                    let set = if savepoint_open {
                        "RELEASE SAVEPOINT replicator_txn; SAVEPOINT replicator_txn"
                    } else {
                        "SAVEPOINT replicator_txn"
                    };
                    tx.batch_execute(set)
                        .await
                        .map_err(Error::pg("savepoint"))?;
                    // Still open after a rollback to it, as after a success.
                    savepoint_open = true;
                    match self.applier.apply(&tx, &txn).await {
                        Ok(Outcome::Applied(done)) => {
                            applied += 1;
                            events.applied(TransactionApplied {
                                source: source.clone(),
                                target: target.clone(),
                                commit_lsn: txn.commit_lsn,
                                commit_time: txn.commit_time.0,
                                applied: done,
                                was_parked: false,
                            });
                            if let Some(h) = txn.heartbeat {
                                events.heartbeat(HeartbeatApplied {
                                    source: source.clone(),
                                    target: target.clone(),
                                    beat: h.beat,
                                    beat_time: h.beat_time.0,
                                });
                            }
                        }
                        Ok(Outcome::Park { waiting, reason }) => {
                            tx.batch_execute("ROLLBACK TO SAVEPOINT replicator_txn")
                                .await
                                .map_err(Error::pg("rollback to savepoint"))?;
                            events.parked(TransactionParked {
                                source: source.clone(),
                                commit_lsn: txn.commit_lsn,
                                reason: reason.clone(),
                            });
                            ledger::park(
                                &tx,
                                &source,
                                txn.commit_lsn,
                                txn.commit_time.0,
                                &txn.records,
                                &waiting,
                                &reason,
                            )
                            .await?;
                            self.parked = true;
                        }
                        Err(error) if error.action() == Action::Quarantine => {
                            tx.batch_execute("ROLLBACK TO SAVEPOINT replicator_txn")
                                .await
                                .map_err(Error::pg("rollback to savepoint"))?;
                            let detail = chain(&error);
                            events.quarantined(RecordsQuarantined {
                                source: source.clone(),
                                reason: "unappliable",
                                commit_lsn: Some(txn.commit_lsn),
                                records: txn.records.len(),
                                detail: detail.clone(),
                            });
                            let site = QuarantineSite {
                                source: &source,
                                topic: &topic,
                                commit_lsn: Some(txn.commit_lsn),
                            };
                            ledger::quarantine(&tx, &site, &txn.records, "unappliable", &detail)
                                .await?;
                        }
                        Err(error) => return Err(error),
                    }
                }
                Assembled::Broken {
                    reason,
                    detail,
                    commit_lsn,
                    records,
                } => {
                    events.quarantined(RecordsQuarantined {
                        source: source.clone(),
                        reason: reason.as_str(),
                        commit_lsn,
                        records: records.len(),
                        detail: detail.clone(),
                    });
                    let site = QuarantineSite {
                        source: &source,
                        topic: &topic,
                        commit_lsn,
                    };
                    ledger::quarantine(&tx, &site, &records, reason.as_str(), &detail).await?;
                }
            }
        }
        for (source, p) in &progress {
            ledger::save_position(&tx, source, &p.topic, p.resume, p.commit, p.beat).await?;
        }
        tx.commit()
            .await
            .map_err(Error::pg("commit an apply transaction"))?;
        events.emit();
        if applied > 0 && self.parked {
            self.drain_parked(false).await?;
        }
        Ok(())
    }

    /// Applies parked transactions that can go now (all of them once, with `all`), until a round
    /// makes no progress.
    pub(super) async fn drain_parked(&mut self, all: bool) -> Result<()> {
        let mut all = all;
        loop {
            let tx = self
                .client
                .transaction()
                .await
                .map_err(Error::pg("begin"))?;
            tx.batch_execute("SET LOCAL replicator.applying = 'on'")
                .await
                .map_err(Error::pg("mark the apply transaction"))?;
            let ready = ledger::ready_parked(&tx, all, 64).await?;
            if ready.is_empty() {
                self.parked = tx
                    .query_one("SELECT EXISTS (SELECT 1 FROM replicator.parked)", &[])
                    .await
                    .map_err(Error::pg("look for parked transactions"))?
                    .try_get(0)
                    .map_err(Error::pg("look for parked transactions"))?;
                return tx.commit().await.map_err(Error::pg("commit"));
            }
            let mut progress = 0usize;
            let mut events = AfterCommit::default();
            for parked in &ready {
                tx.batch_execute("SAVEPOINT replicator_parked")
                    .await
                    .map_err(Error::pg("savepoint"))?;
                let Some(txn) = reassemble(self.codec, parked) else {
                    tx.batch_execute("RELEASE SAVEPOINT replicator_parked")
                        .await
                        .map_err(Error::pg("release"))?;
                    let site = QuarantineSite {
                        source: &parked.source,
                        topic: "",
                        commit_lsn: None,
                    };
                    let records = raw(parked);
                    ledger::quarantine(
                        &tx,
                        &site,
                        &records,
                        "unappliable",
                        "a parked transaction no longer decodes",
                    )
                    .await?;
                    ledger::unpark(&tx, parked.id).await?;
                    continue;
                };
                match self.applier.apply(&tx, &txn).await {
                    Ok(Outcome::Applied(done)) => {
                        tx.batch_execute("RELEASE SAVEPOINT replicator_parked")
                            .await
                            .map_err(Error::pg("release"))?;
                        ledger::unpark(&tx, parked.id).await?;
                        events.applied(TransactionApplied {
                            source: parked.source.clone(),
                            target: self.applier.region.to_string(),
                            commit_lsn: txn.commit_lsn,
                            commit_time: txn.commit_time.0,
                            applied: done,
                            was_parked: true,
                        });
                        progress += 1;
                    }
                    Ok(Outcome::Park { waiting, reason }) => {
                        tx.batch_execute("ROLLBACK TO SAVEPOINT replicator_parked")
                            .await
                            .map_err(Error::pg("rollback to savepoint"))?;
                        ledger::repark(&tx, parked.id, &waiting, &reason).await?;
                    }
                    Err(error) if error.action() == Action::Quarantine => {
                        tx.batch_execute("ROLLBACK TO SAVEPOINT replicator_parked")
                            .await
                            .map_err(Error::pg("rollback to savepoint"))?;
                        let site = QuarantineSite {
                            source: &parked.source,
                            topic: "",
                            commit_lsn: Some(txn.commit_lsn),
                        };
                        let detail = chain(&error);
                        ledger::quarantine(&tx, &site, &txn.records, "unappliable", &detail)
                            .await?;
                        ledger::unpark(&tx, parked.id).await?;
                        events.quarantined(RecordsQuarantined {
                            source: parked.source.clone(),
                            reason: "unappliable",
                            commit_lsn: Some(txn.commit_lsn),
                            records: txn.records.len(),
                            detail,
                        });
                        progress += 1;
                    }
                    Err(error) => return Err(error),
                }
            }
            tx.commit().await.map_err(Error::pg("commit parked"))?;
            events.emit();
            if progress == 0 || all {
                if all {
                    all = false;
                    continue;
                }
                return Ok(());
            }
        }
    }
}

/// A parked transaction's records, assembled again.
fn reassemble(codec: &Codec, parked: &ledger::Parked) -> Option<SourceTxn> {
    let source = RegionId::new(&parked.source).ok()?;
    let mut assembler = Assembler::new(source, Offset(0));
    let mut out = None;
    for record in raw(parked) {
        let envelope = codec.decode(&record.bytes).ok()?;
        out = assembler.push(record, envelope);
    }
    match out {
        Some(Assembled::Txn(txn)) => Some(txn),
        _ => None,
    }
}

fn raw(parked: &ledger::Parked) -> Vec<RawRecord> {
    parked
        .records
        .iter()
        .enumerate()
        .map(|(i, bytes)| RawRecord {
            offset: Offset(i as i64),
            bytes: bytes.clone(),
        })
        .collect()
}

/// An error with its sources, for the quarantine's `detail`.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

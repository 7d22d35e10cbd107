//! The applier: every other region's topic, applied here (DESIGN §2 step 4, §5).
//!
//! **Contract.** One session holds one database connection, under this region's replication
//! origin `replicator_apply` (so the reader skips every transaction it commits) and with
//! `TimeZone` UTC, and one [`Consumer`] of the source topics, started at the positions stored in
//! `replicator.applied_position`. Records are reassembled into source transactions
//! ([`Assembler`]); each one is applied in **one** transaction of this database together with its
//! consumer position ([`ledger::save_position`]). What it cannot apply yet is parked, what it can
//! never apply is quarantined — both durably, in the same kind of transaction as the position —
//! so after a crash the session resumes exactly where the database says, and what it reads again
//! merges away. After each applied transaction, parked transactions whose uuids have arrived are
//! applied; at the start of a session, every parked transaction is tried once.
//!
//! [`run`] retries what may pass (database or broker away, a deadlock) with backoff, each time
//! with a fresh session; what needs an operator ends it.
//!
//! **Why one session for all sources.** Apply writes serialise on the database anyway; one
//! connection keeps the origin (which only one session may hold) and avoids deadlocks between
//! sources writing the same entity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflict::RegionId;
use envelope::Codec;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::capture::publish::KafkaSettings;
use crate::database::DatabaseUrl;
use crate::error::{Action, Error, Result};
use crate::policy::{self, Policy};

use super::consumer::{Consumer, Delivery};
use super::ledger::{self, QuarantineSite};
use super::local_config::LocalColumns;
use super::local_form::ColumnTypes;
use super::rows::{Rows, SqlTypes};
use super::source_txn::{Assembled, Assembler, Offset, RawRecord, SourceTxn};
use super::transaction::{Outcome, TxnApplier};

/// The replication origin the applier's transactions carry.
pub const ORIGIN: &str = "replicator_apply";

/// What one applier needs.
#[derive(Debug, Clone)]
pub struct ApplierConfig {
    pub region: RegionId,
    pub database: DatabaseUrl,
    pub kafka: KafkaSettings,
    /// The regions whose topics this region applies (never itself), with their topics.
    pub sources: Vec<(RegionId, String)>,
    pub local_columns: LocalColumns,
    pub max_backoff: Duration,
}

/// Runs sessions until `cancel` fires or an error needs an operator.
pub async fn run(config: &ApplierConfig, cancel: CancellationToken) -> Result<()> {
    let codec = Arc::new(Codec::new().map_err(|e| Error::StreamShape {
        problem: e.to_string(),
    })?);
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match session(config, &codec, &cancel).await {
            Ok(()) => return Ok(()),
            Err(error) if error.action() == Action::Retry => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(250);
                }
                tracing::warn!(error = %error, hint = %error.hint(), retry_in = ?backoff, "applier session failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Err(error) => return Err(error),
        }
    }
}

/// One source's topic being applied.
#[derive(Debug)]
struct Source {
    topic: String,
    assembler: Assembler,
}

/// The database side of a session.
struct Session<'a> {
    client: Client,
    applier: TxnApplier,
    codec: &'a Codec,
}

async fn session(config: &ApplierConfig, codec: &Codec, cancel: &CancellationToken) -> Result<()> {
    let policy: &'static Policy = policy::superset();
    let client = config.database.connect().await?;
    prepare(&client, config.region).await?;
    let types = ColumnTypes::load(&client, policy).await?;
    let sql_types = SqlTypes::load(&client, policy).await?;
    let applier = TxnApplier::new(
        policy,
        config.region,
        types,
        Rows::new(sql_types),
        config.local_columns.clone(),
    );
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    let mut assignment = Vec::new();
    for (source, topic) in &config.sources {
        let start = ledger::position(&client, source.as_str())
            .await?
            .unwrap_or(Offset(0));
        assignment.push((topic.clone(), start));
        sources.insert(
            topic.clone(),
            Source {
                topic: topic.clone(),
                assembler: Assembler::new(*source, start),
            },
        );
    }
    let mut session = Session {
        client,
        applier,
        codec,
    };
    session.drain_parked(true).await?;
    let group = format!("replicator-apply-{}", config.region);
    let mut consumer = Consumer::start(&config.kafka, &group, &assignment)?;
    tracing::info!(region = %config.region, sources = ?config.sources, "applier started");
    loop {
        let delivery = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            delivery = consumer.next() => delivery,
        };
        let fetched = match delivery {
            Some(Delivery::Record(fetched)) => fetched,
            Some(Delivery::Failed(error)) => return Err(error),
            None => {
                return Err(Error::StreamShape {
                    problem: "the consumer thread ended".into(),
                })
            }
        };
        let Some(source) = sources.get_mut(&fetched.topic) else {
            continue;
        };
        let raw = RawRecord {
            offset: fetched.offset,
            bytes: fetched.payload,
        };
        let assembled = match session.codec.decode(&raw.bytes) {
            Ok(envelope) => source.assembler.push(raw, envelope),
            Err(error) => Some(source.assembler.push_undecodable(raw, error.to_string())),
        };
        if let Some(assembled) = assembled {
            let resume = source.assembler.resume_offset();
            let region = source.assembler.source();
            session
                .handle(region.as_str(), &source.topic, resume, assembled)
                .await?;
        }
    }
}

/// Checks the region, and takes the replication origin for this session.
async fn prepare(client: &Client, region: RegionId) -> Result<()> {
    client
        .batch_execute("SET TimeZone = 'UTC'; SET application_name = 'replicator-apply'")
        .await
        .map_err(Error::pg("set up the apply session"))?;
    let stored = client
        .query_opt(
            "SELECT region FROM replicator.local_region WHERE to_regclass('replicator.applied_position') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|_| Error::NotSetUp)?
        .map(|row| row.try_get::<_, String>(0))
        .transpose()
        .map_err(Error::pg("read the local region"))?
        .ok_or(Error::NotSetUp)?;
    if stored != region.as_str() {
        return Err(Error::RegionMismatch {
            stored,
            requested: region.to_string(),
        });
    }
    client
        .execute(
            "SELECT pg_replication_origin_create($1)
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
            &[&ORIGIN],
        )
        .await
        .map_err(Error::pg("create the applier's replication origin"))?;
    client
        .execute("SELECT pg_replication_origin_session_setup($1)", &[&ORIGIN])
        .await
        .map_err(Error::pg(
            "take the replication origin (is another applier running against this database?)",
        ))?;
    Ok(())
}

impl Session<'_> {
    async fn handle(
        &mut self,
        source: &str,
        topic: &str,
        resume: Offset,
        assembled: Assembled,
    ) -> Result<()> {
        match assembled {
            Assembled::Txn(txn) => {
                self.apply(topic, resume, &txn).await?;
                self.drain_parked(false).await
            }
            Assembled::Broken {
                reason,
                detail,
                commit_lsn,
                records,
            } => {
                tracing::warn!(
                    source,
                    reason = reason.as_str(),
                    detail,
                    "records quarantined"
                );
                let tx = self
                    .client
                    .transaction()
                    .await
                    .map_err(Error::pg("begin"))?;
                let site = QuarantineSite {
                    source,
                    topic,
                    commit_lsn,
                };
                ledger::quarantine(&tx, &site, &records, reason.as_str(), &detail).await?;
                ledger::save_position(&tx, source, topic, resume, None, None).await?;
                tx.commit().await.map_err(Error::pg("commit a quarantine"))
            }
        }
    }

    /// Applies one source transaction with its position (module docs).
    async fn apply(&mut self, topic: &str, resume: Offset, txn: &SourceTxn) -> Result<()> {
        let source = txn.source.as_str();
        let commit = Some((txn.commit_lsn, txn.commit_time.0));
        let beat = txn.heartbeat.map(|h| (h.beat, h.beat_time.0));
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::pg("begin an apply transaction"))?;
        tx.batch_execute("SET LOCAL replicator.applying = 'on'")
            .await
            .map_err(Error::pg("mark the apply transaction"))?;
        let outcome = self.applier.apply(&tx, txn).await;
        match outcome {
            Ok(Outcome::Applied(applied)) => {
                ledger::save_position(&tx, source, topic, resume, commit, beat).await?;
                tx.commit()
                    .await
                    .map_err(Error::pg("commit an apply transaction"))?;
                if !txn.changes.is_empty() {
                    tracing::debug!(source, commit_lsn = %txn.commit_lsn, ?applied, "applied");
                }
                Ok(())
            }
            Ok(Outcome::Park { waiting, reason }) => {
                tx.rollback().await.map_err(Error::pg("roll back"))?;
                tracing::info!(source, commit_lsn = %txn.commit_lsn, reason, "parked");
                let tx = self
                    .client
                    .transaction()
                    .await
                    .map_err(Error::pg("begin"))?;
                ledger::park(
                    &tx,
                    source,
                    txn.commit_lsn,
                    txn.commit_time.0,
                    &txn.records,
                    &waiting,
                    &reason,
                )
                .await?;
                ledger::save_position(&tx, source, topic, resume, commit, beat).await?;
                tx.commit().await.map_err(Error::pg("commit a park"))
            }
            Err(error) if error.action() == Action::Quarantine => {
                tx.rollback().await.map_err(Error::pg("roll back"))?;
                let detail = chain(&error);
                tracing::warn!(source, commit_lsn = %txn.commit_lsn, detail, "transaction quarantined");
                let tx = self
                    .client
                    .transaction()
                    .await
                    .map_err(Error::pg("begin"))?;
                let site = QuarantineSite {
                    source,
                    topic,
                    commit_lsn: Some(txn.commit_lsn),
                };
                ledger::quarantine(&tx, &site, &txn.records, "unappliable", &detail).await?;
                ledger::save_position(&tx, source, topic, resume, commit, beat).await?;
                tx.commit().await.map_err(Error::pg("commit a quarantine"))
            }
            Err(error) => Err(error),
        }
    }

    /// Applies parked transactions that can go now (all of them once, with `all`), until a round
    /// makes no progress.
    async fn drain_parked(&mut self, all: bool) -> Result<()> {
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
                return tx.commit().await.map_err(Error::pg("commit"));
            }
            let mut progress = 0usize;
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
                    Ok(Outcome::Applied(_)) => {
                        tx.batch_execute("RELEASE SAVEPOINT replicator_parked")
                            .await
                            .map_err(Error::pg("release"))?;
                        ledger::unpark(&tx, parked.id).await?;
                        tracing::info!(source = parked.source, commit_lsn = %txn.commit_lsn, "parked transaction applied");
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
                        ledger::quarantine(&tx, &site, &txn.records, "unappliable", &chain(&error))
                            .await?;
                        ledger::unpark(&tx, parked.id).await?;
                        progress += 1;
                    }
                    Err(error) => return Err(error),
                }
            }
            tx.commit().await.map_err(Error::pg("commit parked"))?;
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

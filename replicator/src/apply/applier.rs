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
use std::time::Duration;

use conflict::RegionId;
use envelope::Codec;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::capture::publish::KafkaSettings;
use crate::database::DatabaseUrl;
use crate::error::{Error, Result};
use crate::policy::{self, Policy};
use crate::telemetry::apply::ApplierStarted;

use super::batch::{Batch, Session};
use super::consumer::{Consumer, Delivery};
use super::ledger;
use super::local_config::LocalColumns;
use super::local_form::ColumnTypes;
use super::rows::{Rows, SqlTypes};
use super::source_txn::{Assembler, Offset, RawRecord};
use super::statements::Statements;
use super::transaction::TxnApplier;

/// The prefix of the replication origin the applier's transactions carry; the origin is
/// `replicator_apply_<database oid>` ([`origin_name`]): origins are cluster-wide, and a cluster
/// may hold several Superset databases, each with its own applier.
pub const ORIGIN: &str = "replicator_apply_";

/// The name of this database's applier origin.
pub async fn origin_name(client: &Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT oid::bigint FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(Error::pg("read this database's oid"))?;
    let oid: i64 = row
        .try_get(0)
        .map_err(Error::pg("read this database's oid"))?;
    Ok(format!("{ORIGIN}{oid}"))
}

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
    crate::backoff::run_sessions("applier", config.max_backoff, &cancel, || {
        session(config, &codec, &cancel)
    })
    .await
}

/// One source's topic being applied.
#[derive(Debug)]
struct Source {
    topic: String,
    assembler: Assembler,
}

async fn session(config: &ApplierConfig, codec: &Codec, cancel: &CancellationToken) -> Result<()> {
    let policy: &'static Policy = policy::superset();
    let client = config.database.connect().await?;
    prepare(&client, config.region).await?;
    let types = ColumnTypes::load(&client, policy).await?;
    let sql_types = SqlTypes::new(types.clone());
    let applier = TxnApplier::new(
        policy,
        config.region,
        types,
        Rows::new(sql_types),
        config.local_columns.clone(),
        Statements::prepare(&client).await?,
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
    let parked = client
        .query_one("SELECT EXISTS (SELECT 1 FROM replicator.parked)", &[])
        .await
        .map_err(Error::pg("look for parked transactions"))?
        .try_get(0)
        .map_err(Error::pg("look for parked transactions"))?;
    let mut session = Session {
        client,
        applier,
        codec,
        parked,
    };
    if session.parked {
        session.drain_parked(true).await?;
    }
    let mut batch = Batch::default();
    let group = format!("replicator-apply-{}", config.region);
    let mut consumer = Consumer::start(&config.kafka, &group, &assignment)?;
    ApplierStarted {
        region: config.region.as_str(),
        sources: &config.sources,
    }
    .emit();
    loop {
        // Fill the batch with what is already fetched; apply it once nothing more is at hand.
        let delivery = if batch.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                delivery = consumer.next() => delivery,
            }
        } else {
            match consumer.try_next() {
                Some(delivery) => Some(delivery),
                None => {
                    session.flush(&mut batch).await?;
                    continue;
                }
            }
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
            batch.push(region.as_str(), &source.topic, resume, assembled);
            if batch.is_full() {
                session.flush(&mut batch).await?;
            }
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
    let origin = origin_name(client).await?;
    client
        .execute(
            "SELECT pg_replication_origin_create($1)
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
            &[&origin],
        )
        .await
        .map_err(Error::pg("create the applier's replication origin"))?;
    client
        .execute("SELECT pg_replication_origin_session_setup($1)", &[&origin])
        .await
        .map_err(Error::pg(
            "take the replication origin (is another applier running against this database?)",
        ))?;
    Ok(())
}

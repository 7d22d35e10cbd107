//! The reader: one region's slot, streamed, published, confirmed (DESIGN §2 steps 2–3).
//!
//! **Contract.**
//! - One session streams the slot from its confirmed position (protocol 1, the region's
//!   publication), turns every local transaction into envelopes ([`super::assemble`],
//!   [`super::canonical_form`]) and publishes them in commit order ([`super::publish`]).
//! - The slot's confirmed LSN is only ever what the publisher reports durable: a transaction's end
//!   is confirmed once the broker acknowledged its commit record and everything before it. After
//!   a crash the slot replays from there, so nothing is lost and what is published twice is only
//!   the unacknowledged tail (appliers merge duplicates away).
//! - A transaction that wrote no versioned row (a local-columns-only update) and the applier's own
//!   transactions publish nothing; their end becomes confirmable once what precedes is durable.
//! - Heartbeats: every `heartbeat_interval` the reader writes `replicator.heartbeat` through an
//!   ordinary connection; the row travels the WAL like any change and is published as a
//!   heartbeat record, so an idle region still advances its slot and still reports lag.
//! - [`run`] retries what may pass (broker or database unreachable, a failed delivery) with
//!   exponential backoff, starting a fresh session each time; what needs an operator (the slot is
//!   gone or invalidated, bad settings) ends it with the error. A vanished slot is never
//!   recreated: that would silently skip every change it held.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflict::RegionId;
use envelope::{Body, Codec, Envelope, Seq, UnixMicros};
use pgoutput::{Lsn, ProtocolVersion, ServerCopyMessage, StreamDecoder};
use pgrepl::{ReplicationClient, ReplicationEvent};
use tokio_util::sync::CancellationToken;

use super::assemble::Assembler;
use super::canonical_form::CanonicalForm;
use super::publish::{ensure_topic, KafkaSettings, Publisher, PublisherConfig};
use super::registry::RegistryCache;
use super::Captured;
use crate::database::DatabaseUrl;
use crate::telemetry::capture::{EventsPublished, ReaderSessionEnded, ReaderStreaming};
use crate::{Error, Result};

/// What one reader needs.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub region: RegionId,
    pub database: DatabaseUrl,
    pub slot: String,
    pub publication: String,
    pub kafka: KafkaSettings,
    pub publisher: PublisherConfig,
    pub heartbeat_interval: Duration,
    /// Longest pause between two sessions after a retryable failure.
    pub max_backoff: Duration,
    /// How long shutdown may wait for in-flight records.
    pub shutdown_grace: Duration,
}

/// Runs sessions until `cancel` fires or an error needs an operator.
pub async fn run(config: &ReaderConfig, cancel: CancellationToken) -> Result<()> {
    let codec = Arc::new(Codec::new().map_err(|e| Error::StreamShape {
        problem: e.to_string(),
    })?);
    crate::backoff::run_sessions("reader", config.max_backoff, &cancel, || {
        session(config, codec.clone(), &cancel)
    })
    .await
}

/// The transaction being published.
#[derive(Debug)]
struct Open {
    commit_lsn: Lsn,
    commit_time: UnixMicros,
    next_seq: u64,
    changes: u64,
    heartbeat: Option<Body>,
}

/// One session: connect, stream, publish, confirm, until cancelled or an error.
async fn session(
    config: &ReaderConfig,
    codec: Arc<Codec>,
    cancel: &CancellationToken,
) -> Result<()> {
    let client = config.database.connect().await?;
    let heartbeat_client = config.database.connect().await?;
    let start = confirmed_position(&client, &config.slot).await?;
    ensure_topic(&config.kafka, &config.publisher.topic, None).await?;
    let mut publisher = Publisher::new(&config.kafka, config.publisher.clone(), codec)?;
    let mut canonical = CanonicalForm::new(config.region, RegistryCache::postgres(client));

    let walsender = ReplicationClient::connect(&config.database.replication_config()?)
        .await
        .map_err(replication("connect"))?;
    let publications = pgrepl::publication_names(&[config.publication.as_str()]);
    let mut stream = walsender
        .start_logical_replication(
            &config.slot,
            Lsn(0),
            &[
                ("proto_version", "1"),
                ("publication_names", publications.as_str()),
            ],
        )
        .await
        .map_err(replication("start streaming"))?;
    ReaderStreaming {
        slot: &config.slot,
        from: start,
        topic: &config.publisher.topic,
    }
    .emit();
    let mut published = Published::default();

    let mut decoder = StreamDecoder::new(ProtocolVersion::V1);
    let mut assembler = Assembler::new();
    let mut items = Vec::new();
    let mut open: Option<Open> = None;
    let mut confirmed = start;
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // An async block, so that `?` ends the loop, not the session: the close below always runs.
    let outcome: Result<()> = async {
        loop {
        tokio::select! {
            () = cancel.cancelled() => break Ok::<(), Error>(()),
            durable = publisher.progress() => {
                if let Some(lsn) = durable? {
                    confirmed = confirmed.max(lsn);
                }
                published.report(config.region, &publisher);
            }
            _ = heartbeat.tick() => write_heartbeat(&heartbeat_client, config.region).await?,
            event = stream.next_event() => match event.map_err(replication("stream"))? {
                ReplicationEvent::StatusDue => {
                    if let Some(lsn) = publisher.durable()? {
                        confirmed = confirmed.max(lsn);
                    }
                    published.report(config.region, &publisher);
                    stream.send_status(confirmed, confirmed, confirmed, false).await.map_err(replication("status update"))?;
                }
                ReplicationEvent::Message(ServerCopyMessage::XLogData(data)) => {
                    let message = decoder.decode(data.data).map_err(|source| Error::Decode { source })?;
                    assembler.feed(&message, &mut items)?;
                    for item in items.drain(..) {
                        publish(config.region, item, &mut open, &mut canonical, &mut publisher).await?;
                    }
                }
                ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(_)) => {}
            },
        }
        }
    }
    .await;
    // Whatever ended the session, confirm what is durable (bounded), so a restart replays less.
    if let Ok(Some(lsn)) = publisher.close(config.shutdown_grace).await {
        confirmed = confirmed.max(lsn);
    }
    // Best effort: after a replication error the stream may be gone.
    let _ = stream
        .send_status(confirmed, confirmed, confirmed, false)
        .await;
    ReaderSessionEnded {
        confirmed,
        orphans: assembler.orphans(),
        ok: outcome.is_ok(),
    }
    .emit();
    outcome
}

/// How many of this session's records were already counted as published.
#[derive(Debug, Default)]
struct Published(u64);

impl Published {
    /// Emits what the broker acknowledged since the last report.
    fn report(&mut self, region: RegionId, publisher: &Publisher) {
        let acked = publisher.stats().acked;
        EventsPublished {
            region: region.as_str(),
            count: acked.saturating_sub(self.0),
        }
        .emit();
        self.0 = acked;
    }
}

/// Publishes one captured item.
async fn publish<L: super::registry::RegistryLookup>(
    region: RegionId,
    item: Captured,
    open: &mut Option<Open>,
    canonical: &mut CanonicalForm<L>,
    publisher: &mut Publisher,
) -> Result<()> {
    match item {
        Captured::Begin {
            commit_lsn,
            commit_time_unix_micros,
        } => {
            *open = Some(Open {
                commit_lsn,
                commit_time: UnixMicros(commit_time_unix_micros),
                next_seq: 0,
                changes: 0,
                heartbeat: None,
            });
        }
        Captured::Registered {
            table,
            local_id,
            uuid,
        } => canonical.registry_mut().observe(&table, local_id, uuid),
        Captured::Change(change) => {
            let txn = open
                .as_mut()
                .ok_or_else(|| shape("a change outside a transaction"))?;
            let body = Body::Change(canonical.entity_change(change).await?);
            let envelope = next(region, txn, body);
            txn.changes += 1;
            publisher.send(&envelope, None).await?;
        }
        Captured::Heartbeat {
            beat,
            beat_time_unix_micros,
        } => {
            let txn = open
                .as_mut()
                .ok_or_else(|| shape("a heartbeat outside a transaction"))?;
            txn.heartbeat = Some(Body::Heartbeat {
                beat: u64::try_from(beat).unwrap_or_default(),
                beat_time: UnixMicros(beat_time_unix_micros),
            });
        }
        Captured::Commit {
            commit_lsn,
            end_lsn,
        } => {
            let mut txn = open
                .take()
                .ok_or_else(|| shape("a commit outside a transaction"))?;
            if txn.commit_lsn != commit_lsn {
                return Err(shape("a commit of another transaction"));
            }
            let beat = txn.heartbeat.take();
            match (txn.changes, beat) {
                (0, None) => publisher.confirm_after_sent(end_lsn),
                (0, Some(beat)) => {
                    publisher
                        .send(&next(region, &mut txn, beat), Some(end_lsn))
                        .await?
                }
                (changes, beat) => {
                    if let Some(beat) = beat {
                        publisher.send(&next(region, &mut txn, beat), None).await?;
                    }
                    let commit = next(
                        region,
                        &mut txn,
                        Body::Commit {
                            change_count: changes,
                        },
                    );
                    publisher.send(&commit, Some(end_lsn)).await?;
                }
            }
        }
        Captured::Skipped { end_lsn } => publisher.confirm_after_sent(end_lsn),
    }
    Ok(())
}

fn next(region: RegionId, txn: &mut Open, body: Body) -> Envelope {
    let seq = Seq(txn.next_seq);
    txn.next_seq += 1;
    Envelope {
        source: region,
        commit_lsn: txn.commit_lsn,
        commit_time: txn.commit_time,
        seq,
        body,
    }
}

/// The slot's confirmed position; a missing slot is the operator's error, never recreated here.
async fn confirmed_position(client: &tokio_postgres::Client, slot: &str) -> Result<Lsn> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(Error::pg("read the slot's position"))?;
    let Some(row) = row else {
        return Err(Error::SlotGone {
            slot: slot.to_owned(),
            lost_wal: false,
        });
    };
    let (lsn, wal_status): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    if wal_status.as_deref() == Some("lost") {
        return Err(Error::SlotGone {
            slot: slot.to_owned(),
            lost_wal: true,
        });
    }
    lsn.as_deref()
        .unwrap_or("0/0")
        .parse()
        .map_err(|_| shape("the slot's confirmed_flush_lsn is not an LSN"))
}

async fn write_heartbeat(client: &tokio_postgres::Client, region: RegionId) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO replicator.heartbeat (region, seq, beat_unix_micros) VALUES ($1, 1, $2)
             ON CONFLICT (region) DO UPDATE SET seq = replicator.heartbeat.seq + 1, beat_unix_micros = $2",
            &[&region.as_str(), &now],
        )
        .await
        .map_err(Error::pg("write the heartbeat"))?;
    Ok(())
}

fn replication(context: &'static str) -> impl FnOnce(pgrepl::Error) -> Error {
    move |source| Error::Replication {
        context: context.to_owned(),
        source,
    }
}

fn shape(problem: &str) -> Error {
    Error::StreamShape {
        problem: problem.to_owned(),
    }
}

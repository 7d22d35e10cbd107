//! Publishing: change envelopes to the region's topic, in source commit order, and the source LSN
//! up to which the broker has acknowledged everything (DESIGN §2 steps 2–3, §5).
//!
//! # Contract
//!
//! **One topic per region, one partition per topic.** Kafka orders records only within a
//! partition, and the applier needs one region's records in source commit order: a transaction's
//! changes before its commit record, a transaction that creates an entity before one that
//! references it, a heartbeat after the changes it follows. So the topic has exactly one
//! partition ([`ensure_topic`] creates it so and refuses a topic with more), and every record is
//! produced to partition 0 explicitly, so a topic grown later still holds one order. Records keep
//! their key ([`Envelope::key`]) for consumers and tooling. One region's metadata writes are made
//! by people editing dashboards: one partition carries them with room to spare.
//!
//! **Durable means acknowledged by the broker.** The producer is idempotent (`acks=all`, at most
//! 5 requests in flight per connection, `enable.gapless.guarantee`): librdkafka's own retries
//! neither duplicate nor reorder records. No Kafka transactions: the lab's broker (Tansu 0.6) does
//! not hide aborted records, so a source transaction's boundary is in the data (its
//! [`Body::Commit`] record).
//!
//! **[`Publisher::durable`]** returns the highest `confirms` LSN given to [`Publisher::send`] (or
//! [`Publisher::confirm_after_sent`]) whose record and *every record sent before it* the broker
//! has acknowledged. It never goes back. The reader passes a transaction's end LSN with its commit
//! record and moves the slot's confirmed LSN to what `durable` returns, never further (step 3).
//!
//! **A failed delivery poisons the publisher.** When librdkafka gives up on a record (after its
//! own retries, at `message.timeout.ms`), that record is never counted as acknowledged, `durable`
//! stops below it, and `send`, `durable`, `flush` and `progress` return the same
//! [`Error::Delivery`] from then on. Records sent after the failed one may or may not have been
//! written. The reader then drops the publisher, reconnects to the slot, which restarts at its
//! confirmed LSN (at or before the failed record's transaction), and publishes from there with a
//! new publisher: nothing is lost, and what appears twice in the topic is only the tail that was
//! not acknowledged (the appliers' merge makes duplicates harmless). Dropping a publisher never
//! blocks: the producer is destroyed on a thread of its own.
//!
//! **Backpressure.** At most [`PublisherConfig::max_in_flight`] records are unacknowledged;
//! `send` waits for the oldest one beyond that. Every record resolves (acknowledged or failed)
//! within `message.timeout.ms`, so a `send` never waits longer than that.
//!
//! **Shutdown.** An rdkafka producer dropped with records in flight purges them and can block
//! while its threads stop. [`Publisher::close`] first waits (bounded) for what is in flight, then
//! destroys the producer off the async runtime, bounded too.

mod context;
mod settings;
mod topic;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

pub use envelope::{Body, Codec, Envelope, Seq, UnixMicros};
pub use pgoutput::Lsn;
pub use settings::{
    is_sensitive, Compression, KafkaSettings, PublisherConfig, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MESSAGE_TIMEOUT, MAX_IN_FLIGHT_LIMIT,
};
pub use topic::{ensure_topic, topic_for, TopicStatus};

use crate::error::{Error, Result};
use context::KafkaContext;

/// How long `send` pauses when librdkafka's queue is full and none of our records is in flight
/// (only possible if the queue is shared; kept for robustness).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// Counters of one publisher's life (the metrics catalogue reads them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Records handed to librdkafka.
    pub sent: u64,
    /// Records the broker acknowledged.
    pub acked: u64,
    /// Records whose delivery failed (at most one is observed: the first poisons the publisher).
    pub failed: u64,
    /// Encoded bytes (payload and key) handed to librdkafka.
    pub bytes_sent: u64,
    /// Encoded bytes (payload and key) the broker acknowledged.
    pub bytes_acked: u64,
    /// Times `send` found librdkafka's queue full and waited.
    pub queue_full_waits: u64,
    /// Client errors librdkafka reported while retrying (broker down, request timeouts, ...).
    pub client_errors: u64,
}

/// One entry of the in-order queue of what is not yet settled.
enum Pending {
    /// A record handed to librdkafka.
    Record {
        delivery: DeliveryFuture,
        confirms: Option<Lsn>,
        bytes: u64,
    },
    /// An LSN confirmable once every record before it is acknowledged (no record of its own).
    Marker(Lsn),
}

/// The region's publisher: an idempotent producer on one topic and the queue of unacknowledged
/// records, in send order. See the module documentation for the contract.
pub struct Publisher {
    /// `None` only once [`Publisher::close`] or `drop` took it.
    producer: Option<FutureProducer<KafkaContext>>,
    codec: Arc<Codec>,
    topic: String,
    max_in_flight: usize,
    message_timeout: Duration,
    pending: VecDeque<Pending>,
    /// Records among `pending`.
    records_in_flight: usize,
    durable: Option<Lsn>,
    /// The first failed delivery; every later call returns it.
    failure: Option<KafkaError>,
    stats: PublishStats,
    client_errors: Arc<AtomicU64>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("max_in_flight", &self.max_in_flight)
            .field("records_in_flight", &self.records_in_flight)
            .field("durable", &self.durable)
            .field("failure", &self.failure)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `config.topic` (which should exist: see [`ensure_topic`]). Creating the
    /// producer does not contact the broker; an unreachable broker shows as deliveries that do
    /// not complete, then fail after `message_timeout`.
    pub fn new(
        settings: &KafkaSettings,
        config: PublisherConfig,
        codec: Arc<Codec>,
    ) -> Result<Self> {
        config.check()?;
        settings.check_publisher_properties()?;
        let mut client_config = settings.client_config()?;
        config.apply(&mut client_config);
        let client_errors = Arc::new(AtomicU64::new(0));
        let context = KafkaContext::new("producer", &config.topic, client_errors.clone());
        let producer: FutureProducer<KafkaContext> = client_config
            .create_with_context(context)
            .map_err(|e| settings.creation_error("create a Kafka producer", e))?;
        tracing::debug!(topic = %config.topic, settings = ?settings, "kafka producer created");
        Ok(Publisher {
            producer: Some(producer),
            codec,
            topic: config.topic,
            max_in_flight: config.max_in_flight,
            message_timeout: config.message_timeout,
            pending: VecDeque::new(),
            records_in_flight: 0,
            durable: None,
            failure: None,
            stats: PublishStats::default(),
            client_errors,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records sent and not yet settled (acknowledged or failed).
    pub fn in_flight(&self) -> usize {
        self.records_in_flight
    }

    pub fn stats(&self) -> PublishStats {
        PublishStats {
            client_errors: self.client_errors.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// What [`Publisher::durable`] returned last, without looking at deliveries: still true
    /// after a failure (what was acknowledged stays acknowledged).
    pub fn last_durable(&self) -> Option<Lsn> {
        self.durable
    }

    /// Encodes `envelope` and hands it to the producer (key [`Envelope::key`], partition 0).
    /// `confirms`: the source LSN that becomes confirmable once this record and every earlier
    /// one are acknowledged (the transaction's end LSN on its commit record, else `None`).
    ///
    /// Waits while `max_in_flight` records are unacknowledged (and when librdkafka's queue is
    /// full). Cancel-safe: if the future is dropped while waiting, the record was not sent.
    pub async fn send(&mut self, envelope: &Envelope, confirms: Option<Lsn>) -> Result<()> {
        self.check_failure()?;
        self.settle_ready()?;
        let payload = self
            .codec
            .encode(envelope)
            .map_err(|source| Error::Encode { source })?;
        let key = envelope.key();
        let bytes = u64::try_from(payload.len() + key.len()).unwrap_or(u64::MAX);
        while self.records_in_flight >= self.max_in_flight {
            self.settle_front().await?;
        }
        loop {
            let producer = self.producer.as_ref().ok_or_else(|| self.closed())?;
            let record = FutureRecord::to(&self.topic)
                .partition(0)
                .key(key.as_str())
                .payload(payload.as_slice());
            match producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push_back(Pending::Record {
                        delivery,
                        confirms,
                        bytes,
                    });
                    self.records_in_flight += 1;
                    self.stats.sent += 1;
                    self.stats.bytes_sent += bytes;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.stats.queue_full_waits += 1;
                    tracing::debug!(
                        topic = %self.topic,
                        in_flight = self.records_in_flight,
                        "librdkafka's queue is full; waiting for a delivery"
                    );
                    if self.records_in_flight > 0 {
                        self.settle_front().await?;
                    } else {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                }
                Err((source, _)) => {
                    // Not enqueued (e.g. a fatal producer error, a record too large): the same
                    // contract as a failed delivery.
                    return Err(self.fail(source, confirms));
                }
            }
        }
    }

    /// Makes `lsn` confirmable once every record sent so far is acknowledged, without sending a
    /// record: for a source transaction that publishes nothing (the applier's own, skipped).
    /// With nothing in flight, it is durable at once. Ignored once a delivery failed (nothing
    /// becomes durable past a failed record).
    pub fn confirm_after_sent(&mut self, lsn: Lsn) {
        if self.failure.is_some() {
            return;
        }
        if self.pending.is_empty() {
            self.advance(Some(lsn));
            return;
        }
        if let Some(Pending::Marker(last)) = self.pending.back_mut() {
            *last = (*last).max(lsn);
        } else {
            self.pending.push_back(Pending::Marker(lsn));
        }
    }

    /// Never waits: settles every delivery completed at the front of the queue, in send order,
    /// and returns the highest confirmable LSN whose record and all earlier ones are
    /// acknowledged (`None` until the first). Monotonic.
    pub fn durable(&mut self) -> Result<Option<Lsn>> {
        self.check_failure()?;
        self.settle_ready()?;
        Ok(self.durable)
    }

    /// Waits until the oldest record in flight is settled, then returns [`Publisher::durable`].
    /// With nothing in flight it never completes: meant as a branch of `tokio::select!` beside
    /// the slot stream. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn progress(&mut self) -> Result<Option<Lsn>> {
        self.check_failure()?;
        self.settle_ready()?;
        if self.records_in_flight == 0 {
            std::future::pending::<()>().await;
        }
        self.settle_front().await?;
        Ok(self.durable)
    }

    /// Waits (at most `timeout`) until every record sent is settled; returns
    /// [`Publisher::durable`]. A timeout is [`Error::PublishTimeout`] (retryable); records still
    /// in flight stay in flight.
    pub async fn flush(&mut self, timeout: Duration) -> Result<Option<Lsn>> {
        self.check_failure()?;
        let drained = tokio::time::timeout(timeout, async {
            while self.records_in_flight > 0 {
                self.settle_front().await?;
            }
            self.settle_ready()
        })
        .await;
        match drained {
            Ok(Ok(())) => Ok(self.durable),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::PublishTimeout {
                topic: self.topic.clone(),
                pending: self.records_in_flight,
                after: timeout,
            }),
        }
    }

    /// Flushes (at most `timeout`), then destroys the producer on a blocking thread (bounded by
    /// `timeout` again; a destruction that takes longer is left to finish in the background).
    /// Returns what `flush` returned: the final durable LSN, or why some records were not
    /// acknowledged (those are purged).
    pub async fn close(mut self, timeout: Duration) -> Result<Option<Lsn>> {
        let flushed = if self.failure.is_some() {
            Err(self.poisoned())
        } else {
            self.flush(timeout).await
        };
        if let Some(producer) = self.producer.take() {
            let destroyed = tokio::task::spawn_blocking(move || drop(producer));
            if tokio::time::timeout(timeout, destroyed).await.is_err() {
                tracing::warn!(
                    topic = %self.topic,
                    ?timeout,
                    "the kafka producer is still shutting down; left to finish in the background"
                );
            }
        }
        let stats = self.stats();
        tracing::debug!(topic = %self.topic, ?stats, "publisher closed");
        flushed
    }

    /// Settles entries at the front of the queue whose outcome is known, without waiting.
    fn settle_ready(&mut self) -> Result<()> {
        loop {
            match self.pending.front_mut() {
                None => return Ok(()),
                Some(Pending::Marker(lsn)) => {
                    let lsn = *lsn;
                    self.pending.pop_front();
                    self.advance(Some(lsn));
                }
                Some(Pending::Record { delivery, .. }) => match delivery.now_or_never() {
                    None => return Ok(()),
                    Some(outcome) => self.settle_popped(outcome)?,
                },
            }
        }
    }

    /// Waits for the oldest record's delivery and settles it, then whatever else is ready.
    /// Cancel-safe: the delivery stays queued until its outcome is in hand.
    async fn settle_front(&mut self) -> Result<()> {
        self.settle_ready()?;
        if let Some(Pending::Record { delivery, .. }) = self.pending.front_mut() {
            let outcome = delivery.await;
            self.settle_popped(outcome)?;
        }
        self.settle_ready()
    }

    /// Pops the front record, whose delivery resolved to `outcome`, and accounts for it.
    fn settle_popped(
        &mut self,
        outcome: <DeliveryFuture as std::future::Future>::Output,
    ) -> Result<()> {
        let Some(Pending::Record {
            confirms, bytes, ..
        }) = self.pending.pop_front()
        else {
            return Ok(());
        };
        self.records_in_flight = self.records_in_flight.saturating_sub(1);
        match outcome {
            Ok(Ok(_delivery)) => {
                self.stats.acked += 1;
                self.stats.bytes_acked += bytes;
                self.advance(confirms);
                Ok(())
            }
            Ok(Err((source, _message))) => Err(self.fail(source, confirms)),
            // The producer went away before reporting: not delivered, as far as we know.
            Err(_canceled) => Err(self.fail(KafkaError::Canceled, confirms)),
        }
    }

    fn advance(&mut self, confirms: Option<Lsn>) {
        if let Some(lsn) = confirms {
            if self.durable.is_none_or(|durable| lsn > durable) {
                self.durable = Some(lsn);
            }
        }
    }

    /// Records the first failure and returns it as an error.
    fn fail(&mut self, source: KafkaError, confirms: Option<Lsn>) -> Error {
        self.stats.failed += 1;
        tracing::error!(
            topic = %self.topic,
            error = %source,
            ?confirms,
            durable = ?self.durable,
            in_flight = self.records_in_flight,
            message_timeout = ?self.message_timeout,
            "a record was not delivered; this publisher must be dropped and publishing restarted from the slot's confirmed LSN"
        );
        if self.failure.is_none() {
            self.failure = Some(source);
        }
        self.poisoned()
    }

    fn check_failure(&self) -> Result<()> {
        match self.failure {
            Some(_) => Err(self.poisoned()),
            None => Ok(()),
        }
    }

    fn poisoned(&self) -> Error {
        Error::Delivery {
            topic: self.topic.clone(),
            source: self.failure.clone().unwrap_or(KafkaError::Canceled),
        }
    }

    fn closed(&self) -> Error {
        Error::Delivery {
            topic: self.topic.clone(),
            source: KafkaError::Canceled,
        }
    }
}

impl Drop for Publisher {
    /// Destroys the producer on a thread of its own: rdkafka purges what is in flight and joins
    /// its threads, which can take a while; the caller's (async) thread never waits for it.
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            let spawned = std::thread::Builder::new()
                .name("kafka-producer-drop".into())
                .spawn(move || drop(producer));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not spawn a thread to drop the kafka producer");
            }
        }
    }
}

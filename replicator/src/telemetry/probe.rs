//! Probes: gauges read from the database and the broker every few seconds, rather than counted.
//!
//! **Contract.** [`run`] ticks every [`ProbeConfig::interval`] (the first tick at once) until the
//! cancellation token fires, and on each tick reads, each only when configured:
//!
//! - the region's slot in `pg_replication_slots` (active, retained WAL, `safe_wal_size`) →
//!   [`SlotObserved`];
//! - `replicator.parked`, counted per source → [`ParkedCounted`];
//! - each source topic's high watermark (`fetch_watermarks`) against the applier's stored
//!   position (`replicator.applied_position`) → [`ConsumerLagMeasured`].
//!
//! A probe that fails (database or broker away) leaves its gauges as they were and is tried
//! again on the next tick; it logs a warning when it starts failing and once when it recovers,
//! not every tick. Probes never end the sidecar: the reader and the applier report their own
//! failures.
//!
//! **Why a separate connection.** The probes' queries must not wait behind the applier's
//! transactions nor take part in them, and their connection is not under the applier's
//! replication origin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conflict::RegionId;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::apply::{ConsumerLagMeasured, ParkedCounted};
use super::capture::{SlotObserved, SlotState};
use crate::capture::publish::KafkaSettings;
use crate::database::DatabaseUrl;
use crate::error::{Error, Result};

/// How long one high-watermark request may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(3);

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub database: DatabaseUrl,
    pub interval: Duration,
    /// This region and its slot, when this process runs the reader.
    pub slot: Option<(RegionId, String)>,
    /// The sources this process applies, with their topics (empty without an applier).
    pub sources: Vec<(RegionId, String)>,
    /// How to reach the broker, for the sources' high watermarks.
    pub kafka: Option<KafkaSettings>,
}

/// Probes until `cancel` fires (module docs). Only returns `Ok`.
pub async fn run(config: ProbeConfig, cancel: CancellationToken) -> Result<()> {
    let mut state = Probes {
        config: &config,
        client: None,
        watermarks: None,
        failing: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = state.round() => {}
        }
    }
    if let Some(consumer) = state.watermarks.take() {
        // Dropping a Kafka client can block while its threads stop.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
    Ok(())
}

/// A probe that failed, or recovered.
#[derive(Debug)]
pub struct ProbeFailed<'a> {
    pub probe: &'static str,
    pub error: &'a Error,
    /// It failed on the previous tick too: only a debug line.
    pub again: bool,
}

impl ProbeFailed<'_> {
    pub fn emit(self) {
        if self.again {
            tracing::debug!(probe = self.probe, error = %self.error, "metrics probe still failing");
        } else {
            tracing::warn!(probe = self.probe, error = %self.error, hint = %self.error.hint(), "metrics probe failed; its gauges keep their last values");
        }
    }
}

struct Probes<'a> {
    config: &'a ProbeConfig,
    client: Option<Client>,
    watermarks: Option<Arc<BaseConsumer>>,
    /// Probe → failing on the last tick.
    failing: BTreeMap<&'static str, bool>,
}

impl Probes<'_> {
    async fn round(&mut self) {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            match self.config.database.connect().await {
                Ok(client) => self.client = Some(client),
                Err(error) => {
                    self.report("database", Err(error));
                    return;
                }
            }
        }
        self.report("database", Ok(()));
        if let Some((region, slot)) = &self.config.slot {
            let outcome = self.slot(*region, slot).await;
            self.report("slot", outcome);
        }
        if !self.config.sources.is_empty() {
            let outcome = self.parked().await;
            self.report("parked", outcome);
            let outcome = self.consumer_lag().await;
            self.report("consumer_lag", outcome);
        }
    }

    fn report(&mut self, probe: &'static str, outcome: Result<()>) {
        let was_failing = self.failing.get(probe).copied().unwrap_or(false);
        match outcome {
            Ok(()) => {
                if was_failing {
                    tracing::info!(probe, "metrics probe recovered");
                }
                self.failing.insert(probe, false);
            }
            Err(error) => {
                ProbeFailed {
                    probe,
                    error: &error,
                    again: was_failing,
                }
                .emit();
                self.failing.insert(probe, true);
            }
        }
    }

    fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| Error::StreamShape {
            problem: "the probe has no database connection".into(),
        })
    }

    async fn slot(&self, region: RegionId, slot: &str) -> Result<()> {
        let row = self
            .client()?
            .query_opt(
                "SELECT active,
                        pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                        safe_wal_size
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(Error::pg("read the slot's state for the metrics"))?;
        let state = row
            .map(|row| {
                Ok::<_, Error>(SlotState {
                    active: row.try_get(0).map_err(Error::pg("read active"))?,
                    retained_wal_bytes: row.try_get(1).map_err(Error::pg("read retained WAL"))?,
                    safe_wal_size: row.try_get(2).map_err(Error::pg("read safe_wal_size"))?,
                })
            })
            .transpose()?;
        SlotObserved {
            region: region.as_str(),
            slot,
            state,
        }
        .emit();
        Ok(())
    }

    async fn parked(&self) -> Result<()> {
        let rows = self
            .client()?
            .query(
                "SELECT source, count(*) FROM replicator.parked GROUP BY source",
                &[],
            )
            .await
            .map_err(Error::pg("count parked transactions for the metrics"))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let source: String = row.try_get(0).map_err(Error::pg("read parked"))?;
            let count: i64 = row.try_get(1).map_err(Error::pg("read parked"))?;
            counts.insert(source, count);
        }
        for (source, _) in &self.config.sources {
            ParkedCounted {
                source: source.as_str(),
                count: counts.get(source.as_str()).copied().unwrap_or(0),
            }
            .emit();
        }
        Ok(())
    }

    async fn consumer_lag(&mut self) -> Result<()> {
        let Some(kafka) = &self.config.kafka else {
            return Ok(());
        };
        let rows = self
            .client()?
            .query(
                "SELECT source, resume_offset FROM replicator.applied_position",
                &[],
            )
            .await
            .map_err(Error::pg("read the applied positions for the metrics"))?;
        let mut positions = BTreeMap::new();
        for row in rows {
            let source: String = row.try_get(0).map_err(Error::pg("read a position"))?;
            let offset: i64 = row.try_get(1).map_err(Error::pg("read a position"))?;
            positions.insert(source, offset);
        }
        let consumer = match &self.watermarks {
            Some(consumer) => consumer.clone(),
            None => {
                let config = kafka.client_config()?;
                let consumer: BaseConsumer = config.create().map_err(creation_error)?;
                let consumer = Arc::new(consumer);
                self.watermarks = Some(consumer.clone());
                consumer
            }
        };
        let topics: Vec<(RegionId, String)> = self.config.sources.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            topics
                .into_iter()
                .map(|(source, topic)| {
                    let high = consumer.fetch_watermarks(&topic, 0, WATERMARK_TIMEOUT);
                    (source, topic, high)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::StreamShape {
            problem: format!("the watermark request panicked: {e}"),
        })?;
        let mut first_error = None;
        for (source, topic, high) in fetched {
            match high {
                Ok((_, high)) => ConsumerLagMeasured {
                    source: source.as_str(),
                    high_watermark: high,
                    position: positions.get(source.as_str()).copied().unwrap_or(0),
                }
                .emit(),
                Err(source_error) => {
                    first_error.get_or_insert(Error::Kafka {
                        context: format!("read the high watermark of {topic}"),
                        source: source_error,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A client that cannot be created, without quoting a value (it may be a credential; the
/// publisher and the applier's consumer, created from the same settings, report bad values
/// in full).
fn creation_error(error: KafkaError) -> Error {
    match error {
        KafkaError::ClientConfig(_, _, key, _) => Error::KafkaSetting {
            key,
            problem: "invalid value".into(),
        },
        _ => Error::KafkaSetting {
            key: String::new(),
            problem: "the metrics' Kafka client could not be created".into(),
        },
    }
}

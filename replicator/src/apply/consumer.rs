//! The consumer: other regions' topics, read from the positions stored in this region's database.
//!
//! **Contract.** [`Consumer::start`] assigns partition 0 of each source topic at the offset the
//! applier stored (DESIGN §5: the broker is not trusted with positions, so no group offsets are
//! committed) and hands records, in partition order per topic, through a bounded channel: a slow
//! database slows the reads, memory stays bounded. A topic that does not exist yet (a region not
//! started) is polled until it does.
//!
//! **Why a thread.** librdkafka's poll blocks; it runs on a blocking thread that also owns (and
//! finally drops) the consumer, off the async runtime (dropping a consumer can block).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::capture::publish::KafkaSettings;
use crate::error::{Error, Result};

use super::source_txn::Offset;

/// One record as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: String,
    pub offset: Offset,
    pub payload: Vec<u8>,
}

/// What the consumer thread reports.
#[derive(Debug)]
pub enum Delivery {
    Record(Fetched),
    /// A broker error that ends this consumer (the applier restarts its session).
    Failed(Error),
}

/// A running consumer; stops when dropped.
#[derive(Debug)]
pub struct Consumer {
    records: mpsc::Receiver<Delivery>,
    stop: Arc<AtomicBool>,
}

impl Consumer {
    /// Starts reading `topics` (name, first offset to read).
    pub fn start(
        settings: &KafkaSettings,
        group: &str,
        topics: &[(String, Offset)],
    ) -> Result<Self> {
        let mut config = settings.client_config()?;
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            // Bounded read-ahead: librdkafka's defaults prefetch up to 64 MiB per partition, so a
            // region coming back with a backlog grew the applier to 144 MiB (measured, P1 100k);
            // with these it stays near 30 MiB at the same drain rate.
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "1000")
            .set("fetch.max.bytes", "1048576")
            // The broker answers a fetch as soon as records arrive or after this long: the
            // default 500 ms was a floor under every apply's latency when records trickle in.
            .set("fetch.wait.max.ms", "50");
        let consumer: BaseConsumer = config.create().map_err(|source| Error::Kafka {
            context: "create the applier's consumer".into(),
            source,
        })?;
        let mut assignment = TopicPartitionList::new();
        for (topic, offset) in topics {
            assignment
                .add_partition_offset(topic, 0, KafkaOffset::Offset(offset.0))
                .map_err(|source| Error::Kafka {
                    context: format!("assign {topic}"),
                    source,
                })?;
        }
        consumer
            .assign(&assignment)
            .map_err(|source| Error::Kafka {
                context: "assign the source topics".into(),
                source,
            })?;
        drop(assignment);
        let (sender, records) = mpsc::channel(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("replicator-consume".into())
            .spawn(move || poll(consumer, sender, stopping))
            .map_err(|e| Error::StreamShape {
                problem: format!("start the consumer thread: {e}"),
            })?;
        Ok(Consumer { records, stop })
    }

    /// A record already fetched, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.records.try_recv().ok()
    }

    /// The next record (`None` once the thread ended).
    pub async fn next(&mut self) -> Option<Delivery> {
        self.records.recv().await
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn poll(consumer: BaseConsumer, sender: mpsc::Sender<Delivery>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) && !sender.is_closed() {
        let delivery = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(message)) => Delivery::Record(Fetched {
                topic: message.topic().to_owned(),
                offset: Offset(message.offset()),
                payload: message.payload().unwrap_or_default().to_vec(),
            }),
            Some(Err(error)) if transient(&error) => {
                tracing::debug!(%error, "consumer: waiting");
                continue;
            }
            Some(Err(source)) => Delivery::Failed(Error::Kafka {
                context: "consume the source topics".into(),
                source,
            }),
        };
        let failed = matches!(delivery, Delivery::Failed(_));
        if sender.blocking_send(delivery).is_err() || failed {
            break;
        }
    }
    drop(consumer);
}

/// Errors a consumer gets past by polling on: a topic not created yet, end of partition, a
/// broker briefly away (librdkafka reconnects by itself).
fn transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::UnknownTopicOrPartition
                | Code::UnknownTopic
                | Code::UnknownPartition
                | Code::PartitionEOF
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::RequestTimedOut
                | Code::OperationTimedOut
        )
    )
}

//! Per-test topics and client settings for the lab's Kafka-protocol broker. Topics are created
//! explicitly (never auto-created) and deleted when the handle drops; consumer groups are named
//! with [`crate::unique_name`] so no two tests share committed offsets.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::{unique_name, HarnessError, Lab};

/// Settings for an idempotent producer against the lab broker.
pub fn producer_config(lab: &Lab) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", lab.broker())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000");
    config
}

/// Settings for a consumer in `group` that commits its offsets by hand and starts at the beginning.
pub fn consumer_config(lab: &Lab, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", lab.broker())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    config
}

/// A topic owned by one test.
#[derive(Debug)]
pub struct TestTopic {
    name: String,
    broker: String,
}

impl TestTopic {
    /// Creates `it_<label>_<unique>` with `partitions` partitions and waits for the broker's answer.
    pub async fn create(
        lab: &Lab,
        label: &str,
        partitions: i32,
    ) -> Result<TestTopic, HarnessError> {
        let name = unique_name(&format!("it_{label}"));
        let admin = admin_client(lab.broker())?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await
            .map_err(HarnessError::kafka(format!("create topic {name}")))?;
        for result in results {
            result.map_err(|(topic, code)| {
                HarnessError::Other(format!(
                    "the broker refused to create topic {topic}: {code}"
                ))
            })?;
        }
        Ok(TestTopic {
            name,
            broker: lab.broker().to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn admin_client(broker: &str) -> Result<AdminClient<DefaultClientContext>, HarnessError> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .map_err(HarnessError::kafka("create an admin client"))
}

impl Drop for TestTopic {
    /// Deletes the topic on a thread with its own runtime (works from any context, even unwinding).
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let broker = std::mem::take(&mut self.broker);
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = admin_client(&broker).map_err(|e| e.to_string())?;
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                admin
                    .delete_topics(&[&name], &options)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("harness: could not delete a test topic: {e}"),
            Err(_) => eprintln!("harness: the thread deleting a test topic panicked"),
        }
    }
}

/// One record of a topic: `(offset, key, payload)`.
pub type Record = (i64, Option<Vec<u8>>, Vec<u8>);

/// How long a topic must stay quiet before a reader takes it as read to its end. (Tansu's high
/// watermark is not reliable, so "the end" is "nothing more for a while"; under load, fetches
/// come in bursts with gaps, so this is generous.)
const QUIET: Duration = Duration::from_secs(1);

/// Reads every record of partition 0 of `topic` from the beginning up to the current end, with a
/// throwaway consumer (no group offsets). Waits for at least `at_least` records, up to `timeout`.
/// For a topic that keeps growing while a test waits on it, prefer [`TopicReader`].
pub async fn read_topic(
    lab: &Lab,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Result<Vec<(i64, Option<Vec<u8>>, Vec<u8>)>, HarnessError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = consumer_config(lab, &unique_name("it_reader"))
        .create()
        .map_err(HarnessError::kafka("create a topic reader"))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(HarnessError::kafka("assign"))?;
    consumer
        .assign(&assignment)
        .map_err(HarnessError::kafka("assign"))?;
    drop(assignment);
    let records = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        let mut records = Vec::new();
        let mut quiet_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    quiet_since = std::time::Instant::now();
                    records.push(record(&m));
                }
                Some(Err(e)) => return Err(HarnessError::Other(format!("consume {e}"))),
                None if records.len() >= at_least && quiet_since.elapsed() >= QUIET => break,
                None => {}
            }
        }
        Ok(records)
    })
    .await
    .map_err(|e| HarnessError::Other(e.to_string()))??;
    if records.len() < at_least {
        return Err(HarnessError::Timeout {
            what: format!("{at_least} records in {} (got {})", "topic", records.len()),
            after: timeout,
        });
    }
    Ok(records)
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    use rdkafka::Message;
    (
        m.offset(),
        m.key().map(<[u8]>::to_vec),
        m.payload().unwrap_or_default().to_vec(),
    )
}

/// A reader that keeps its consumer and its position: each [`TopicReader::poll`] adds what
/// arrived since the last one, so a test can wait on a growing topic without re-reading it.
pub struct TopicReader {
    consumer: Option<rdkafka::consumer::BaseConsumer>,
    records: Vec<Record>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicReader({} records)", self.records.len())
    }
}

impl TopicReader {
    /// A reader of partition 0 of `topic`, from the beginning.
    pub fn new(lab: &Lab, topic: &str) -> Result<TopicReader, HarnessError> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = consumer_config(lab, &unique_name("it_reader"))
            .create()
            .map_err(HarnessError::kafka("create a topic reader"))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(HarnessError::kafka("assign"))?;
        consumer
            .assign(&assignment)
            .map_err(HarnessError::kafka("assign"))?;
        drop(assignment);
        Ok(TopicReader {
            consumer: Some(consumer),
            records: Vec::new(),
        })
    }

    /// Polls for up to `window`, then returns every record read so far.
    pub async fn poll(&mut self, window: Duration) -> Result<&[Record], HarnessError> {
        let consumer = self
            .consumer
            .take()
            .ok_or_else(|| HarnessError::Other("reader lost its consumer".into()))?;
        let (consumer, new) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + window;
            let mut new = Vec::new();
            while std::time::Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => new.push(record(&m)),
                    Some(Err(e)) => {
                        return (consumer, Err(HarnessError::Other(format!("consume {e}"))))
                    }
                    None => {}
                }
            }
            (consumer, Ok(new))
        })
        .await
        .map_err(|e| HarnessError::Other(e.to_string()))?;
        self.consumer = Some(consumer);
        self.records.extend(new?);
        Ok(&self.records)
    }
}

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

/// Reads every record of partition 0 of `topic` from the beginning up to the current end, as
/// `(offset, key, payload)`, with a throwaway consumer (no group offsets). Waits for at least
/// `at_least` records, up to `timeout`.
pub async fn read_topic(
    lab: &Lab,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Result<Vec<(i64, Option<Vec<u8>>, Vec<u8>)>, HarnessError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
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
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => records.push((
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                )),
                Some(Err(e)) => return Err(HarnessError::Other(format!("consume {e}"))),
                None if records.len() >= at_least => break,
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

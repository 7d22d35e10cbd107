//! The region's topic: its name, and its one partition (see the module documentation of
//! [`publish`](super) for why exactly one).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::context::KafkaContext;
use super::settings::KafkaSettings;
use crate::error::{Error, Result};
use crate::RegionId;

/// How long the broker gets to answer an admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a topic just created may take to show in the broker's metadata.
const METADATA_WAIT: Duration = Duration::from_secs(30);

/// The default topic of `region`'s change events: `replicator.<region>`.
pub fn topic_for(region: &RegionId) -> String {
    format!("replicator.{}", region.as_str())
}

/// What [`ensure_topic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// The topic did not exist and was created with one partition.
    Created,
    /// The topic existed, with one partition.
    Existed,
}

/// Creates `topic` with one partition if it is missing; accepts it if it exists with one
/// partition; refuses it ([`Error::TopicPartitions`], an operator error) if it has more.
///
/// `replication_factor` of a created topic: `None` takes the broker's default
/// (`default.replication.factor`). With `acks=all`, an acknowledged record is on every in-sync
/// replica; set the topic's `min.insync.replicas` on a real cluster. A created topic gets
/// `cleanup.policy=delete`: compaction by key would delete a transaction's earlier records.
pub async fn ensure_topic(
    settings: &KafkaSettings,
    topic: &str,
    replication_factor: Option<i32>,
) -> Result<TopicStatus> {
    check_topic_name(topic)?;
    let context = KafkaContext::new("admin", topic, Arc::new(AtomicU64::new(0)));
    let admin: AdminClient<KafkaContext> =
        settings
            .client_config()?
            .create_with_context(context)
            .map_err(|e| settings.creation_error("create a Kafka admin client", e))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let replication = TopicReplication::Fixed(replication_factor.unwrap_or(-1));
    let new_topic = NewTopic::new(topic, 1, replication).set("cleanup.policy", "delete");
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|source| Error::Kafka {
            context: format!("create topic {topic}"),
            source,
        })?;
    let mut status = TopicStatus::Created;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => status = TopicStatus::Existed,
            Err((_, code)) => {
                return Err(Error::Kafka {
                    context: format!("create topic {topic}"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    let partitions = partition_count(admin, topic).await?;
    if partitions != 1 {
        return Err(Error::TopicPartitions {
            topic: topic.to_owned(),
            partitions,
        });
    }
    match status {
        TopicStatus::Created => tracing::info!(topic, "created the region's topic"),
        TopicStatus::Existed => tracing::debug!(topic, "the region's topic exists"),
    }
    Ok(status)
}

/// The partition count of `topic` as the broker's metadata shows it, waiting (bounded) for a
/// topic just created to appear. Metadata fetches block: they run on a blocking thread, which
/// also drops the admin client.
async fn partition_count(admin: AdminClient<KafkaContext>, topic: &str) -> Result<usize> {
    let name = topic.to_owned();
    let context = format!("read the metadata of topic {topic}");
    let fetched = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + METADATA_WAIT;
        loop {
            let metadata = admin.inner().fetch_metadata(Some(&name), ADMIN_TIMEOUT)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map(|t| t.partitions().len())
                .filter(|n| *n > 0);
            match partitions {
                Some(n) => return Ok(n),
                None if Instant::now() >= deadline => {
                    return Err(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::UnknownTopicOrPartition,
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })
    .await;
    match fetched {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(source)) => Err(Error::Kafka { context, source }),
        Err(_) => Err(Error::Kafka {
            context,
            source: KafkaError::Canceled,
        }),
    }
}

/// Kafka's rule for topic names: 1 to 249 characters from `a-zA-Z0-9._-`, not `.` or `..`.
pub(super) fn check_topic_name(name: &str) -> Result<()> {
    let valid = (1..=249).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind: "topic",
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topic_is_named_after_the_region() -> Result<(), Box<dyn std::error::Error>> {
        let topic = topic_for(&RegionId::new("eu-west")?);
        assert_eq!(topic, "replicator.eu-west");
        check_topic_name(&topic)?;
        Ok(())
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad:?}");
        }
        for good in ["replicator.us", "A-b_c.9", &"x".repeat(249)] {
            assert!(check_topic_name(good).is_ok(), "{good:?}");
        }
    }
}

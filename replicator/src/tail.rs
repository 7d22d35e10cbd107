//! `replicator tail`: a region topic's records, decoded, as one JSON object per line — what an
//! operator reads when asking "what did region X publish?". Read-only: it joins no consumer group
//! and commits nothing.

use std::io::Write;
use std::time::Duration;

use envelope::{Body, Codec, Envelope};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::capture::publish::KafkaSettings;
use crate::{Error, Result};

/// Prints the records of `topic` from the beginning; stops after `idle` without a new record
/// (or never, when `follow`). Undecodable records print as `{"offset": n, "error": ...}`.
pub async fn run(
    settings: &KafkaSettings,
    topic: &str,
    follow: bool,
    idle: Duration,
) -> Result<u64> {
    let mut config = settings.client_config()?;
    config
        .set(
            "group.id",
            format!("replicator-tail-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().map_err(|source| Error::Kafka {
        context: "create a consumer".into(),
        source,
    })?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|source| Error::Kafka {
            context: "assign".into(),
            source,
        })?;
    consumer
        .assign(&assignment)
        .map_err(|source| Error::Kafka {
            context: "assign".into(),
            source,
        })?;
    drop(assignment);
    let codec = Codec::new().map_err(|e| Error::StreamShape {
        problem: e.to_string(),
    })?;
    tokio::task::spawn_blocking(move || {
        let mut printed = 0u64;
        let mut quiet = Duration::ZERO;
        let mut out = std::io::stdout().lock();
        while follow || quiet < idle {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    quiet = Duration::ZERO;
                    let line = match codec.decode(message.payload().unwrap_or_default()) {
                        Ok(envelope) => to_json(message.offset(), &envelope),
                        Err(e) => json!({"offset": message.offset(), "error": e.to_string()}),
                    };
                    if writeln!(out, "{line}").is_err() {
                        break; // a closed pipe ends the tail
                    }
                    printed += 1;
                }
                Some(Err(source)) => {
                    return Err(Error::Kafka {
                        context: "consume".into(),
                        source,
                    })
                }
                None => quiet += Duration::from_millis(200),
            }
        }
        Ok(printed)
    })
    .await
    .map_err(|e| Error::StreamShape {
        problem: e.to_string(),
    })?
}

/// One envelope as JSON (the Avro record's fields, values as canonical JSON).
pub fn to_json(offset: i64, e: &Envelope) -> Value {
    let body = match &e.body {
        Body::Change(c) => json!({
            "change": {
                "table": c.table,
                "entity": c.entity.to_string(),
                "clock": c.clock.iter().map(|(r, n)| (r.to_string(), json!(n.0))).collect::<serde_json::Map<_, _>>(),
                "fields": c.fields.iter().map(|f| json!({
                    "path": f.path.as_str(), "dot": f.dot.to_string(), "hlc": f.hlc.as_u64(), "value": f.value,
                })).collect::<Vec<_>>(),
            }
        }),
        Body::Commit { change_count } => json!({"commit": {"change_count": change_count}}),
        Body::Heartbeat { beat, beat_time } => {
            json!({"heartbeat": {"beat": beat, "beat_time_unix_micros": beat_time.0}})
        }
    };
    json!({
        "offset": offset,
        "source": e.source.to_string(),
        "commit_lsn": e.commit_lsn.to_string(),
        "seq": e.seq.0,
        "body": body,
    })
}

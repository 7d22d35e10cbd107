//! librdkafka's logs and client errors as tracing events.
//!
//! librdkafka retries by itself (reconnects, resends within `message.timeout.ms`); what it says
//! while doing so arrives here: a broker that went away, a request that timed out. Each client
//! error is counted, so a caller can tell "still retrying" from "quiet".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// The context of every Kafka client the publisher creates.
#[derive(Debug, Clone)]
pub(crate) struct KafkaContext {
    /// `producer` or `admin`.
    role: &'static str,
    topic: String,
    /// Client errors reported so far (transport failures, timeouts, all brokers down, ...).
    client_errors: Arc<AtomicU64>,
}

impl KafkaContext {
    pub(crate) fn new(role: &'static str, topic: &str, client_errors: Arc<AtomicU64>) -> Self {
        KafkaContext {
            role,
            topic: topic.to_owned(),
            client_errors,
        }
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let (role, topic) = (self.role, self.topic.as_str());
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", role, topic, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", role, topic, facility, "{message}")
            }
            RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", role, topic, facility, "{message}")
            }
            RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", role, topic, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::trace!(target: "librdkafka", role, topic, facility, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let count = self.client_errors.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            target: "librdkafka",
            role = self.role,
            topic = %self.topic,
            %error,
            reason,
            client_errors = count,
            "kafka client error; librdkafka keeps retrying until the message timeout"
        );
    }
}

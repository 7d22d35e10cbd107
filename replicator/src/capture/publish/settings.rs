//! How the publisher reaches the broker ([`KafkaSettings`]) and how it publishes
//! ([`PublisherConfig`]).
//!
//! Extra librdkafka properties pass through unchanged (TLS, SASL, socket tuning), except those that
//! carry the delivery guarantees: the publisher sets those itself and refuses an override. A
//! property whose key names a credential (`password`, `secret`, `sasl`, `ssl.key`, `token`) is
//! never shown: [`Debug`](std::fmt::Debug) and every error print `<redacted>` for its value.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::error::{Error, Result};

/// Key fragments of librdkafka properties whose values are credentials.
const SENSITIVE: &[&str] = &["password", "secret", "sasl", "ssl.key", "token"];

/// Properties the publisher sets itself: its ordering and durability contract rests on them.
const OWNED_BY_PUBLISHER: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "acks",
    "allow.auto.create.topics",
    "request.required.acks",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "transactional.id",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.max.messages",
    "compression.type",
    "compression.codec",
    "retries",
    "message.send.max.retries",
];

/// Whether the value of librdkafka property `key` is a credential that must never be shown.
pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|fragment| key.contains(fragment))
}

/// Where the broker is and how to authenticate to it; shared by every Kafka client of the
/// sidecar.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `client.id`: shows in the broker's logs and quotas (e.g. `replicator-us`).
    pub client_id: String,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `sasl.password`, `ssl.ca.location`).
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn new(bootstrap_servers: impl Into<String>, client_id: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: client_id.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Adds an extra librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Parses one `key=value` argument (as a command line gives it) into an extra property.
    pub fn add_property_arg(&mut self, arg: &str) -> Result<()> {
        // Not echoed: a malformed argument may be a mistyped credential.
        let (key, value) = arg.split_once('=').ok_or_else(|| Error::KafkaSetting {
            key: String::new(),
            problem: "expected `key=value`".into(),
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(Error::KafkaSetting {
                key: String::new(),
                problem: "expected `key=value` with a non-empty key".into(),
            });
        }
        self.properties.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// The client configuration: connection, identity and the extra properties. Kafka clients
    /// other than the publisher (the applier's consumer) start from this too.
    pub fn client_config(&self) -> Result<ClientConfig> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(Error::KafkaSetting {
                key: "bootstrap.servers".into(),
                problem: "no broker given".into(),
            });
        }
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            if matches!(
                key.as_str(),
                "bootstrap.servers" | "metadata.broker.list" | "client.id"
            ) {
                return Err(owned_key(key));
            }
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id);
        Ok(config)
    }

    /// Refuses extra properties that would weaken the publisher's delivery contract.
    pub(super) fn check_publisher_properties(&self) -> Result<()> {
        match self
            .properties
            .keys()
            .find(|key| OWNED_BY_PUBLISHER.contains(&key.as_str()))
        {
            Some(key) => Err(owned_key(key)),
            None => Ok(()),
        }
    }

    /// Turns an error of client creation into ours, without the value of a sensitive property
    /// (librdkafka's message for a bad value quotes the value).
    pub(super) fn creation_error(&self, context: &str, error: KafkaError) -> Error {
        match error {
            KafkaError::ClientConfig(_, description, key, _) => {
                let problem = if is_sensitive(&key) {
                    "invalid value (<redacted>)".to_owned()
                } else {
                    description
                };
                Error::KafkaSetting { key, problem }
            }
            KafkaError::ClientCreation(description) => {
                let sensitive = self
                    .properties
                    .iter()
                    .any(|(key, value)| is_sensitive(key) && description.contains(value.as_str()));
                Error::KafkaSetting {
                    key: String::new(),
                    problem: if sensitive {
                        format!("{context}: the client could not be created (details withheld: they quote a credential)")
                    } else {
                        format!("{context}: {description}")
                    },
                }
            }
            source => Error::Kafka {
                context: context.to_owned(),
                source,
            },
        }
    }
}

fn owned_key(key: &str) -> Error {
    Error::KafkaSetting {
        key: key.to_owned(),
        problem: "set by the replicator itself (it carries the delivery guarantees); remove it from the extra properties".into(),
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(key, value)| {
                        let shown = if is_sensitive(key) {
                            "<redacted>"
                        } else {
                            value.as_str()
                        };
                        (key, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("properties", &Redacted(&self.properties))
            .finish()
    }
}

/// The producer's record compression. The build links zlib and librdkafka's own lz4; zstd and
/// snappy would need more rdkafka features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    Gzip,
    /// Cheap on CPU and good on JSON-heavy envelopes: the default.
    #[default]
    Lz4,
}

impl Compression {
    pub(super) fn librdkafka_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
        }
    }
}

/// How a [`Publisher`](super::Publisher) publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// The region's topic ([`topic_for`](super::topic_for) by default).
    pub topic: String,
    /// Most records sent and not yet acknowledged; [`send`](super::Publisher::send) waits
    /// beyond that (backpressure onto the slot reader). 1 to [`MAX_IN_FLIGHT_LIMIT`].
    pub max_in_flight: usize,
    /// How long librdkafka keeps trying to deliver one record (its own retries included) before
    /// it fails the record (`message.timeout.ms`). Keep it well under PostgreSQL's
    /// `wal_sender_timeout` (60 s by default): a `send` waiting on backpressure waits up to this.
    pub message_timeout: Duration,
    pub compression: Compression,
}

/// Default of [`PublisherConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// Largest [`PublisherConfig::max_in_flight`]: librdkafka's own queue is sized to hold it.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
/// Default of [`PublisherConfig::message_timeout`].
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

impl PublisherConfig {
    /// Defaults for `topic`: 10 000 records in flight, 30 s message timeout, lz4.
    pub fn new(topic: impl Into<String>) -> Self {
        PublisherConfig {
            topic: topic.into(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            compression: Compression::default(),
        }
    }

    pub(super) fn check(&self) -> Result<()> {
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&self.max_in_flight) {
            return Err(Error::KafkaSetting {
                key: "max_in_flight".into(),
                problem: format!(
                    "{} is out of range 1..={MAX_IN_FLIGHT_LIMIT}",
                    self.max_in_flight
                ),
            });
        }
        let millis = self.message_timeout.as_millis();
        if !(1..=i32::MAX as u128).contains(&millis) {
            return Err(Error::KafkaSetting {
                key: "message.timeout.ms".into(),
                problem: format!("{:?} is out of range", self.message_timeout),
            });
        }
        super::topic::check_topic_name(&self.topic)
    }

    /// The producer's own properties, on top of [`KafkaSettings::client_config`].
    pub(super) fn apply(&self, config: &mut ClientConfig) {
        config
            // Idempotence: no duplicates from librdkafka's retries, and order kept with up to 5
            // requests in flight per connection.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            // A failure that could leave a gap in the partition stops the producer (fatal)
            // instead; the reader then restarts from the slot, which fills the gap.
            .set("enable.gapless.guarantee", "true")
            // Never let the producer's metadata requests create the topic (with the broker's
            // default partition count) after the broker lost it: `ensure_topic` recreates it.
            .set("allow.auto.create.topics", "false")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            // Room for every record we let in flight, so `QueueFull` is exceptional.
            .set(
                "queue.buffering.max.messages",
                self.max_in_flight.max(100_000).to_string(),
            )
            .set("compression.type", self.compression.librdkafka_name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings::new("broker:9092", "replicator-us")
            .with_property("security.protocol", "SASL_SSL")
            .with_property("sasl.username", "alice")
            .with_property("sasl.password", "hunter2-very-secret")
            .with_property("ssl.key.password", "k3y-pass")
            .with_property("ssl.key.pem", "-----BEGIN PRIVATE KEY-----")
    }

    #[test]
    fn debug_never_shows_credentials() {
        let shown = format!("{:?}", settings());
        for secret in ["hunter2", "k3y-pass", "PRIVATE KEY", "alice"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("SASL_SSL"), "{shown}");
        assert!(shown.contains("broker:9092"), "{shown}");
    }

    #[test]
    fn a_bad_sensitive_value_is_not_quoted_in_the_error() {
        let settings = KafkaSettings::new("broker:9092", "c")
            .with_property("sasl.oauthbearer.method", "NOT-A-METHOD-s3cr3t");
        let error = match settings.client_config() {
            Ok(config) => config
                .create::<rdkafka::producer::BaseProducer>()
                .map(|_| ())
                .map_err(|e| settings.creation_error("create a producer", e)),
            Err(e) => Err(e),
        };
        let Err(error) = error else {
            panic!("an invalid sasl.oauthbearer.method must fail client creation");
        };
        let shown = format!("{error} {error:?} {}", error.hint());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(error.action(), crate::Action::Operator);
    }

    #[test]
    fn the_delivery_contract_cannot_be_overridden() {
        for key in [
            "acks",
            "enable.idempotence",
            "transactional.id",
            "client.id",
        ] {
            let settings = settings().with_property(key, "x");
            let refused = settings
                .check_publisher_properties()
                .and_then(|()| settings.client_config().map(|_| ()));
            assert!(
                matches!(refused, Err(Error::KafkaSetting { key: ref k, .. }) if k == key),
                "{key}: {refused:?}"
            );
        }
        assert!(settings().check_publisher_properties().is_ok());
    }

    #[test]
    fn property_arguments_parse() {
        let mut settings = KafkaSettings::new("b:1", "c");
        assert!(settings.add_property_arg("socket.timeout.ms=5000").is_ok());
        assert!(settings.add_property_arg("sasl.password=a=b").is_ok());
        assert!(settings.add_property_arg("no-equals").is_err());
        assert!(settings.add_property_arg("=x").is_err());
        assert_eq!(
            settings.properties.get("sasl.password").map(String::as_str),
            Some("a=b")
        );
    }

    /// The build links OpenSSL: TLS and SASL/SCRAM settings are accepted by librdkafka (a build
    /// without them refuses `security.protocol=ssl` and any mechanism but PLAIN at creation).
    #[test]
    fn tls_and_scram_settings_create_clients() {
        for (protocol, mechanism) in [
            ("SSL", None),
            ("SASL_SSL", Some("SCRAM-SHA-512")),
            ("SASL_PLAINTEXT", Some("SCRAM-SHA-256")),
        ] {
            let mut settings =
                KafkaSettings::new("broker:9092", "c").with_property("security.protocol", protocol);
            if let Some(mechanism) = mechanism {
                settings = settings
                    .with_property("sasl.mechanism", mechanism)
                    .with_property("sasl.username", "u")
                    .with_property("sasl.password", "p");
            }
            let created = settings.client_config().and_then(|config| {
                config
                    .create::<rdkafka::producer::BaseProducer>()
                    .map(|_| ())
                    .map_err(|e| settings.creation_error("create a producer", e))
            });
            assert!(created.is_ok(), "{protocol} {mechanism:?}: {created:?}");
        }
    }

    #[test]
    fn config_ranges_are_checked() {
        let mut config = PublisherConfig::new("replicator.us");
        assert!(config.check().is_ok());
        config.max_in_flight = 0;
        assert!(config.check().is_err());
        config.max_in_flight = 5;
        config.message_timeout = Duration::ZERO;
        assert!(config.check().is_err());
        config.message_timeout = Duration::from_secs(1);
        config.topic = "bad topic".into();
        assert!(config.check().is_err());
    }
}

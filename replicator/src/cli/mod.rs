//! The command line: one module per group of subcommands, each with its arguments, its `--help`
//! examples and the function that wires the library together for it. Shared here: how to reach
//! Kafka, secrets on the command line, durations, and the signal handler.

pub(crate) mod apply;
pub(crate) mod capture;
pub(crate) mod config;
pub(crate) mod operator;
pub(crate) mod run;
pub(crate) mod setup;

use std::time::Duration;

use clap::Args;
use replicator::capture::publish::KafkaSettings;
use replicator::{Error, RegionId};
use tokio_util::sync::CancellationToken;

pub(crate) fn transaction_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of entities from 1 to 1000000"
        )),
    }
}

pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    match pgrepl::parse_duration_setting(text, Duration::from_secs(1)) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{text:?} is not a positive duration like `1s`, `500ms` or `2min`"
        )),
    }
}

/// How to reach Kafka: shared by every subcommand that talks to the broker.
#[derive(Debug, Args)]
pub(crate) struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "REPLICATOR_KAFKA_BROKERS")]
    pub(crate) kafka_brokers: String,

    /// Region topics are named `<prefix><region>`.
    #[arg(long, env = "REPLICATOR_TOPIC_PREFIX", default_value = "replicator.")]
    pub(crate) topic_prefix: String,

    /// An extra librdkafka property `key=value` (TLS, SASL, ...); repeatable. Values of secret
    /// keys are never logged.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = Secret::parse)]
    pub(crate) kafka_properties: Vec<Secret>,
}

impl KafkaArgs {
    pub(crate) fn topic(&self, region: &RegionId) -> String {
        format!("{}{region}", self.topic_prefix)
    }

    pub(crate) fn settings(&self, client_id: String) -> Result<KafkaSettings, Error> {
        let mut settings = KafkaSettings::new(self.kafka_brokers.clone(), client_id);
        for property in &self.kafka_properties {
            settings.add_property_arg(&property.0)?;
        }
        Ok(settings)
    }
}

/// A command-line value that may hold a password: parsed later by the library, so that a bad
/// value is reported without echoing it (clap would print it), and never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn parse(text: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Cancels on SIGTERM or SIGINT; a second signal is left to its default action (exit now).
pub(crate) async fn cancel_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

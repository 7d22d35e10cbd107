//! Configuration of `replicator run`: one TOML file, environment overrides, command-line flags.
//!
//! **Contract.**
//! - Sources, the first one that gives a key winning: command-line flags, then `REPLICATOR_*`
//!   environment variables, then the file (`--config FILE`, or `REPLICATOR_CONFIG`), then the
//!   defaults. Every key, its variable, its flag and its default are in [`keys::KEYS`] and in
//!   `docs/configuration.md`, which is generated from it ([`reference::markdown`]).
//! - [`load`] checks everything before anything starts; a bad setting is an
//!   [`Error::Setting`](crate::Error::Setting) naming its key and the fix, e.g.
//!   `applier.sources: "us" is this region` with `remove it: …`. An unknown key in the file is
//!   an error too, never ignored.
//! - Secrets (the database password, the Kafka SASL password, the local columns with their
//!   URIs) come from the environment or from files the configuration names, never from the file
//!   itself; they are held as [`Secret`]s and never printed: not by `Debug`, not in errors, not
//!   by `replicator config check` ([`RunConfig::effective`]).
//!
//! **Why layers.** Containers configure by environment, hosts by file, people debugging by flag;
//! the same key reaches the same check whichever way it came, and `config check` says which way
//! each value came.

pub mod file;
pub mod keys;
pub mod layer;
pub mod reference;
mod resolve;
pub mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use conflict::RegionId;

use crate::apply::applier::ApplierConfig;
use crate::capture::publish::{is_sensitive, PublisherConfig};
use crate::capture::reader::ReaderConfig;
use crate::error::Error;
use crate::telemetry::ProbeConfig;

pub use layer::{Layer, Origin, Value};
pub use resolve::parse_listen;
pub use secret::Secret;

/// Where `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None`: `off`.
    pub listen: Option<SocketAddr>,
    /// Given by the operator (a port that cannot be bound is then an error), not the default.
    pub explicit: bool,
    pub poll_interval: Duration,
}

/// Everything `replicator run` needs, checked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub reader: ReaderConfig,
    pub applier: ApplierConfig,
    pub metrics: MetricsConfig,
    /// The merged settings, for [`RunConfig::effective`].
    settings: Layer,
}

/// Loads and checks the configuration (module docs). `file` is `--config`; `flags` what the
/// command line gave; `env` looks a variable up (the process environment in the binary).
pub fn load(
    file: Option<PathBuf>,
    flags: &Layer,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RunConfig, Error> {
    let path = file.or_else(|| {
        env(keys::CONFIG_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    let file = match &path {
        Some(path) => file::read(path)?,
        None => Layer::default(),
    };
    let env = Layer::from_env(env)?;
    resolve(Layer::merge(&[flags, &env, &file]))
}

/// Checks merged settings.
pub fn resolve(settings: Layer) -> Result<RunConfig, Error> {
    let r = resolve::Resolver { layer: &settings };
    let region = r.region()?;
    let sources = r.sources(region)?;
    let database = r.database()?;
    let prefix = r.topic_prefix()?;
    let topic = r
        .text("capture.topic")?
        .map_or_else(|| format!("{prefix}{region}"), str::to_owned);
    let reader = ReaderConfig {
        region,
        database: database.clone(),
        slot: r.slot()?,
        publication: r.publication()?,
        kafka: r.kafka(format!("replicator-{region}"))?,
        publisher: PublisherConfig::new(topic),
        heartbeat_interval: r.duration("capture.heartbeat_interval", Duration::from_secs(1))?,
        max_backoff: r.duration("capture.max_backoff", Duration::from_secs(30))?,
        shutdown_grace: r.duration("capture.shutdown_grace", Duration::from_secs(10))?,
    };
    let applier = ApplierConfig {
        region,
        database,
        kafka: r.kafka(format!("replicator-{region}-apply"))?,
        sources: sources
            .into_iter()
            .map(|s| (s, format!("{prefix}{s}")))
            .collect(),
        local_columns: r.local_columns()?,
        max_backoff: r.duration("applier.max_backoff", Duration::from_secs(30))?,
    };
    let (listen, explicit) = r.listen()?;
    let metrics = MetricsConfig {
        listen,
        explicit,
        poll_interval: r.duration("metrics.poll_interval", Duration::from_secs(5))?,
    };
    Ok(RunConfig {
        reader,
        applier,
        metrics,
        settings,
    })
}

impl RunConfig {
    pub fn region(&self) -> RegionId {
        self.reader.region
    }

    /// The probes of a whole sidecar: the slot, the parked transactions, the consumer lag.
    pub fn probes(&self) -> ProbeConfig {
        ProbeConfig {
            database: self.reader.database.clone(),
            interval: self.metrics.poll_interval,
            slot: Some((self.reader.region, self.reader.slot.clone())),
            sources: self.applier.sources.clone(),
            kafka: Some(self.applier.kafka.clone()),
        }
    }

    /// The effective configuration as TOML, every secret redacted, each value with where it
    /// came from (what `replicator config check` prints).
    pub fn effective(&self) -> String {
        let mut out = String::from(
            "# The effective configuration of `replicator run`; secrets are never shown.\n",
        );
        let mut section = "";
        for key in keys::KEYS {
            let (this, name) = key.name.split_once('.').unwrap_or(("", key.name));
            if this != section {
                out.push_str(&format!("\n[{this}]\n"));
                section = this;
            }
            let setting = self.settings.get(key.name);
            let shown = match (key.name, setting) {
                ("database.url", Some(_)) => Some(quote(&self.reader.database.redacted())),
                ("capture.topic", None) => Some(quote(&self.reader.publisher.topic)),
                (_, Some(setting)) => Some(show(&setting.value)),
                (_, None) if !key.default.is_empty() => Some(key.default.to_owned()),
                (_, None) => None,
            };
            let note = match setting {
                Some(s) if key.name == "database.url" => {
                    format!("from {}; shown without credentials", s.origin)
                }
                Some(s) => format!("from {}", s.origin),
                None => "default".to_owned(),
            };
            match shown {
                Some(value) if key.in_file => {
                    out.push_str(&format!("{name} = {value}  # {note}\n"))
                }
                Some(value) => out.push_str(&format!(
                    "# {name} = {value}  # {note} (environment only)\n"
                )),
                None => out.push_str(&format!("# {name}: not set\n")),
            }
        }
        out
    }
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A raw value as TOML, secrets and credential properties redacted.
fn show(value: &Value) -> String {
    match value {
        Value::Text(text) => quote(text),
        Value::Secret(_) => quote("<redacted>"),
        Value::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| quote(i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Table(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|(k, v)| {
                    let v = if is_sensitive(k)
                        && !matches!(
                            k.as_str(),
                            "sasl.mechanism" | "sasl.mechanisms" | "security.protocol"
                        ) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    };
                    format!("{} = {}", quote(k), quote(v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests;

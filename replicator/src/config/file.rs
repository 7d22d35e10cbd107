//! The config file: TOML, one table per part of the sidecar.
//!
//! **Contract.** [`read`] parses the file into these structs, refusing any key they do not have
//! (a misspelt key is an error that names it and its line, never silently ignored), and turns
//! them into a [`Layer`]. The structs hold exactly the keys of [`KEYS`](super::keys::KEYS) marked
//! `in_file` (a test checks both ways). Values stay raw strings here; [`super::resolve`] checks
//! them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::layer::{Layer, Origin, Value};
use super::secret::Secret;
use crate::error::Error;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub region: Option<String>,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub kafka: KafkaSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub applier: ApplierSection,
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[database]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub password_file: Option<String>,
}

/// `[kafka]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: Option<String>,
    pub topic_prefix: Option<String>,
    pub properties: Option<BTreeMap<String, String>>,
    pub sasl_password_file: Option<String>,
}

/// `[capture]`: the reader.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub slot: Option<String>,
    pub publication: Option<String>,
    pub topic: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_backoff: Option<String>,
}

/// `[applier]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplierSection {
    pub sources: Option<Vec<String>>,
    pub local_columns_file: Option<String>,
    pub max_backoff: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<String>,
    pub poll_interval: Option<String>,
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Layer, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Setting {
        key: "--config".into(),
        problem: format!("cannot read {}: {error}", path.display()),
        fix: "give the path of a readable TOML file (see docs/configuration.md)".into(),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses a file's text; `name` is how errors and `config check` call it.
pub fn parse(text: &str, name: &str) -> Result<Layer, Error> {
    let file: FileConfig = toml::from_str(text).map_err(|error| parse_error(text, name, &error))?;
    file.into_layer(name)
}

/// A parse error naming the key and the line, without quoting the file (toml's own message
/// shows the line, which may hold a misplaced secret) nor a string value.
fn parse_error(text: &str, name: &str, error: &toml::de::Error) -> Error {
    let message = redact_strings(error.message());
    let offset = error.span().map_or(0, |span| span.start);
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    // Whole lines only, up to the end of the error's line (a header may be the error's line).
    let line_end = text
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |at| offset + at);
    let section = text
        .get(..line_end)
        .unwrap_or(text)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let field = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let key = match (section, field) {
        (Some(section), Some(field)) => format!("{section}.{field}"),
        (None, Some(field)) => field.to_owned(),
        (Some(section), None) => section.to_owned(),
        (None, None) => String::new(),
    };
    let fix = match super::keys::find(&key) {
        Some(secret) if !secret.in_file => format!(
            "secrets are never in the config file: remove it, and set {} (or its `_file` setting)",
            secret.env.unwrap_or("its environment variable")
        ),
        _ => "fix the file: the settings and their types are in docs/configuration.md".into(),
    };
    Error::Setting {
        key: if key.is_empty() {
            name.to_owned()
        } else {
            format!("{name}: {key}")
        },
        problem: format!("line {line}: {message}"),
        fix,
    }
}

/// `invalid type: string "hunter2", expected …` → `invalid type: string, expected …`.
fn redact_strings(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(rest.get(..at + "string".len()).unwrap_or_default());
        let after = rest.get(at + "string \"".len()..).unwrap_or_default();
        rest = after
            .find('"')
            .and_then(|end| after.get(end + 1..))
            .unwrap_or_default();
    }
    out.push_str(rest);
    out
}

impl FileConfig {
    fn into_layer(self, name: &str) -> Result<Layer, Error> {
        let origin = || Origin::File(name.to_owned());
        let mut layer = Layer::default();
        if let Some(url) = self.database.url {
            layer.put("database.url", Value::Secret(Secret::new(url)), origin())?;
        }
        let mut text = |key: &str, value: Option<String>| match value {
            Some(v) => layer.put(key, Value::Text(v), origin()),
            None => Ok(()),
        };
        text("region", self.region)?;
        text("database.password_file", self.database.password_file)?;
        text("kafka.brokers", self.kafka.brokers)?;
        text("kafka.topic_prefix", self.kafka.topic_prefix)?;
        text("kafka.sasl_password_file", self.kafka.sasl_password_file)?;
        text("capture.slot", self.capture.slot)?;
        text("capture.publication", self.capture.publication)?;
        text("capture.topic", self.capture.topic)?;
        text(
            "capture.heartbeat_interval",
            self.capture.heartbeat_interval,
        )?;
        text("capture.shutdown_grace", self.capture.shutdown_grace)?;
        text("capture.max_backoff", self.capture.max_backoff)?;
        text(
            "applier.local_columns_file",
            self.applier.local_columns_file,
        )?;
        text("applier.max_backoff", self.applier.max_backoff)?;
        text("metrics.listen", self.metrics.listen)?;
        text("metrics.poll_interval", self.metrics.poll_interval)?;
        if let Some(sources) = self.applier.sources {
            layer.put("applier.sources", Value::List(sources), origin())?;
        }
        if let Some(properties) = self.kafka.properties {
            layer.put("kafka.properties", Value::Table(properties), origin())?;
        }
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::KEYS;
    use super::*;

    /// A file setting every key the file may hold, to its documented example.
    pub(in crate::config) fn full_example() -> String {
        let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for key in KEYS.iter().filter(|k| k.in_file) {
            let (section, name) = key.name.split_once('.').unwrap_or(("", key.name));
            sections
                .entry(section)
                .or_default()
                .push(format!("{name} = {}", key.example));
        }
        let mut text = String::new();
        for (section, lines) in sections {
            if !section.is_empty() {
                text.push_str(&format!("[{section}]\n"));
            }
            text.push_str(&lines.join("\n"));
            text.push('\n');
        }
        text
    }

    #[test]
    fn every_file_key_of_the_docs_reaches_the_layer() -> Result<(), Error> {
        let layer = parse(&full_example(), "example.toml")?;
        for key in KEYS {
            assert_eq!(layer.get(key.name).is_some(), key.in_file, "{}", key.name);
        }
        Ok(())
    }

    #[test]
    fn a_misspelt_key_is_named() {
        let error = parse("region = \"us\"\n[capture]\nheartbeat = \"1s\"\n", "r.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("r.toml: capture.heartbeat"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        let Err(error) = parse("[database]\npassword = \"hunter2\"\n", "r.toml") else {
            panic!("a password in the file is refused");
        };
        let shown = format!("{error} {error:?} {}", error.hint());
        assert!(shown.contains("r.toml: database.password"), "{shown}");
        assert!(shown.contains("REPLICATOR_DATABASE_PASSWORD"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let Err(error) = parse(
            "[kafka]\nproperties = \"sasl.password=hunter2\"\n",
            "r.toml",
        ) else {
            panic!("a string is not a table");
        };
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("kafka"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

//! Layers: the settings one source gives — the file, the environment, the command line — and
//! their merge.
//!
//! **Contract.** A [`Layer`] maps keys of [`KEYS`](super::keys::KEYS) to raw values with their
//! [`Origin`]; nothing is interpreted here beyond splitting a list, so every check (and its
//! message naming the key) is in [`super::resolve`]. [`Layer::merge`] takes each key from the
//! first layer that has it: flags over environment over file; `kafka.properties` are merged key
//! by key the same way.

use std::collections::BTreeMap;
use std::fmt;

use super::keys::{find, Shape, KEYS};
use super::secret::Secret;
use crate::capture::publish::is_sensitive;
use crate::error::Error;

/// Where a value came from (`config check` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file (its path).
    File(String),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{path}"),
            Origin::Env(var) => write!(f, "${var}"),
            Origin::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// A raw value. `Debug` shows no secret: a [`Secret`] is redacted, and so are the values of
/// credential properties in a table.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    List(Vec<String>),
    Secret(Secret),
    Table(BTreeMap<String, String>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(text) => f.debug_tuple("Text").field(text).finish(),
            Value::List(items) => f.debug_tuple("List").field(items).finish(),
            Value::Secret(secret) => f.debug_tuple("Secret").field(secret).finish(),
            Value::Table(entries) => f
                .debug_map()
                .entries(entries.iter().map(|(k, v)| {
                    let shown = if is_sensitive(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    };
                    (k, shown)
                }))
                .finish(),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: Value,
    pub origin: Origin,
}

/// The settings of one source (module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    settings: BTreeMap<&'static str, Setting>,
}

impl Layer {
    /// Sets `key` (a bug if it is not in [`KEYS`]: reported as a setting error, never a panic).
    pub fn put(&mut self, key: &str, value: Value, origin: Origin) -> Result<(), Error> {
        let known = find(key).ok_or_else(|| Error::Setting {
            key: key.to_owned(),
            problem: "not a setting".into(),
            fix: "see docs/configuration.md for the settings".into(),
        })?;
        self.settings.insert(known.name, Setting { value, origin });
        Ok(())
    }

    /// Sets `key` from its text, as the environment gives it (a list is comma-separated).
    pub fn put_text(&mut self, key: &str, text: &str, origin: Origin) -> Result<(), Error> {
        let shape = find(key).map(|k| k.shape).unwrap_or(Shape::Text);
        let value = match shape {
            Shape::List => Value::List(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Shape::Secret | Shape::Url => Value::Secret(Secret::new(text)),
            Shape::Table => {
                return Err(Error::Setting {
                    key: key.to_owned(),
                    problem: "cannot be set from text".into(),
                    fix: "set it in the config file or with its flag".into(),
                })
            }
            Shape::Text | Shape::Duration | Shape::Path => Value::Text(text.to_owned()),
        };
        self.put(key, value, origin)
    }

    /// Every `REPLICATOR_*` variable of [`KEYS`] found by `lookup` (the process environment:
    /// `|name| std::env::var(name).ok()`). An empty variable counts as unset.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Layer, Error> {
        let mut layer = Layer::default();
        for key in KEYS {
            let Some(var) = key.env else { continue };
            if let Some(text) = lookup(var).filter(|t| !t.is_empty()) {
                layer.put_text(key.name, &text, Origin::Env(var))?;
            }
        }
        Ok(layer)
    }

    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Setting)> {
        self.settings.iter().map(|(k, s)| (*k, s))
    }

    /// `layers` merged, the first one winning (module docs).
    pub fn merge(layers: &[&Layer]) -> Layer {
        let mut merged = Layer::default();
        for key in KEYS {
            let mut found = layers.iter().filter_map(|l| l.settings.get(key.name));
            let Some(first) = found.next() else { continue };
            let setting = match &first.value {
                Value::Table(_) => {
                    // Lowest layer first, each one's entries over the ones below.
                    let mut table = BTreeMap::new();
                    let all: Vec<&Setting> = std::iter::once(first).chain(found).collect();
                    for setting in all.iter().rev() {
                        if let Value::Table(entries) = &setting.value {
                            table.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                    }
                    Setting {
                        value: Value::Table(table),
                        origin: first.origin.clone(),
                    }
                }
                _ => first.clone(),
            };
            merged.settings.insert(key.name, setting);
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_environment_over_the_file() -> Result<(), Error> {
        let file_origin = Origin::File("replicator.toml".into());
        let mut file = Layer::default();
        file.put_text("region", "us", file_origin.clone())?;
        file.put_text("capture.slot", "from_file", file_origin.clone())?;
        let table = |k: &str, v: &str| Value::Table([(k.to_owned(), v.to_owned())].into());
        file.put("kafka.properties", table("a", "file"), file_origin.clone())?;
        let env = Layer::from_env(|var| match var {
            "REPLICATOR_SLOT" => Some("from_env".into()),
            "REPLICATOR_SOURCES" => Some("eu, ap".into()),
            "REPLICATOR_REGION" => Some(String::new()),
            _ => None,
        })?;
        let mut flags = Layer::default();
        flags.put_text("applier.sources", "ap", Origin::Flag("--sources"))?;
        flags.put(
            "kafka.properties",
            table("b", "flag"),
            Origin::Flag("--kafka-property"),
        )?;
        let merged = Layer::merge(&[&flags, &env, &file]);
        let value = |key: &str| merged.get(key).map(|s| s.value.clone());
        assert_eq!(value("region"), Some(Value::Text("us".into())));
        assert_eq!(value("capture.slot"), Some(Value::Text("from_env".into())));
        assert_eq!(
            value("applier.sources"),
            Some(Value::List(vec!["ap".into()]))
        );
        let both = [("a", "file"), ("b", "flag")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(value("kafka.properties"), Some(Value::Table(both.into())));
        assert_eq!(
            merged.get("capture.slot").map(|s| s.origin.clone()),
            Some(Origin::Env("REPLICATOR_SLOT"))
        );
        assert!(Layer::default()
            .put_text("capture.nope", "x", file_origin)
            .is_err());
        Ok(())
    }
}

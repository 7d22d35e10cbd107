//! Resolution: merged settings checked and turned into what the reader, the applier and the
//! metrics need.
//!
//! **Contract.** Every check is here and every error is an [`Error::Setting`] that names the key
//! (its dotted file name), says what is wrong without quoting a secret, and says the fix. Defaults
//! are applied here (the ones [`KEYS`](super::keys::KEYS) documents). Secrets are read from their
//! files or variables here and nowhere else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use conflict::RegionId;

use super::keys::find;
use super::layer::{Layer, Setting, Value};
use super::secret::Secret;
use crate::apply::local_config::LocalColumns;
use crate::capture::publish::KafkaSettings;
use crate::database::DatabaseUrl;
use crate::error::Error;
use crate::setup::{PublicationName, SlotName};

/// Property keys that are credentials, refused in the config file.
const CREDENTIAL_FRAGMENTS: &[&str] = &["password", "secret", "token", "key.pem"];

/// Reads checked values out of a merged [`Layer`].
pub(super) struct Resolver<'a> {
    pub(super) layer: &'a Layer,
}

/// An error about `key`.
pub(super) fn bad(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Setting {
        key: key.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// How to set `key`, for a "missing" error.
fn how_to_set(key: &str) -> String {
    let Some(k) = find(key) else {
        return format!("set {key}");
    };
    let mut ways = Vec::new();
    if k.in_file {
        ways.push(format!("`{} = {}` in the config file", k.name, k.example));
    }
    if let Some(env) = k.env {
        ways.push(env.to_owned());
    }
    if let Some(flag) = k.flag {
        ways.push(flag.to_owned());
    }
    format!("set it: {}", ways.join(", or "))
}

impl Resolver<'_> {
    fn setting(&self, key: &str) -> Option<&Setting> {
        self.layer.get(key)
    }

    /// Text of `key`; a list or table where text belongs is refused.
    pub(super) fn text(&self, key: &str) -> Result<Option<&str>, Error> {
        match self.setting(key).map(|s| &s.value) {
            None => Ok(None),
            Some(Value::Text(text)) => Ok(Some(text.trim()).filter(|t| !t.is_empty())),
            Some(Value::Secret(secret)) => Ok(Some(secret.expose())),
            Some(_) => Err(bad(key, "expected a string", how_to_set(key))),
        }
    }

    pub(super) fn required(&self, key: &str) -> Result<&str, Error> {
        self.text(key)?
            .ok_or_else(|| bad(key, "missing", how_to_set(key)))
    }

    pub(super) fn secret(&self, key: &str) -> Option<Secret> {
        match self.setting(key).map(|s| &s.value) {
            Some(Value::Secret(secret)) => Some(secret.clone()),
            _ => None,
        }
    }

    pub(super) fn duration(&self, key: &str, default: Duration) -> Result<Duration, Error> {
        let Some(text) = self.text(key)? else {
            return Ok(default);
        };
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(bad(
                key,
                format!("{text:?} is not a positive duration"),
                format!("write it like `1s`, `500ms` or `2min` (default {default:?})"),
            )),
        }
    }

    pub(super) fn region(&self) -> Result<RegionId, Error> {
        let text = self.required("region")?;
        RegionId::new(text).map_err(|_| {
            bad(
                "region",
                format!("{text:?} is not a region id"),
                "use 1 to 16 characters from a-z, 0-9, `_` and `-`, as given to `replicator setup`",
            )
        })
    }

    pub(super) fn sources(&self, region: RegionId) -> Result<Vec<RegionId>, Error> {
        let key = "applier.sources";
        let list = match self.setting(key).map(|s| &s.value) {
            Some(Value::List(list)) => list.clone(),
            Some(Value::Text(text)) => text.split(',').map(|s| s.trim().to_owned()).collect(),
            _ => Vec::new(),
        };
        if list.is_empty() {
            return Err(bad(key, "missing: no region to apply", how_to_set(key)));
        }
        let mut sources = Vec::new();
        for text in &list {
            let source = RegionId::new(text).map_err(|_| {
                bad(
                    key,
                    format!("{text:?} is not a region id"),
                    "use the ids the other regions were set up with (a-z, 0-9, `_`, `-`)",
                )
            })?;
            if source == region {
                return Err(bad(
                    key,
                    format!("{text:?} is this region"),
                    format!(
                        "remove it: a region never applies its own topic (region = \"{region}\")"
                    ),
                ));
            }
            if sources.contains(&source) {
                return Err(bad(key, format!("{text:?} is named twice"), "name it once"));
            }
            sources.push(source);
        }
        Ok(sources)
    }

    pub(super) fn slot(&self) -> Result<String, Error> {
        let text = self.text("capture.slot")?.unwrap_or("replicator");
        SlotName::new(text).map(|s| s.to_string()).map_err(|_| {
            bad(
                "capture.slot",
                format!("{text:?} is not a slot name"),
                name_rule(),
            )
        })
    }

    pub(super) fn publication(&self) -> Result<String, Error> {
        let text = self.text("capture.publication")?.unwrap_or("replicator");
        PublicationName::new(text)
            .map(|s| s.to_string())
            .map_err(|_| {
                bad(
                    "capture.publication",
                    format!("{text:?} is not a publication name"),
                    name_rule(),
                )
            })
    }

    /// The database, with the password from `database.password` or `database.password_file`.
    pub(super) fn database(&self) -> Result<DatabaseUrl, Error> {
        let url = self.required("database.url")?;
        let database = DatabaseUrl::parse(url).map_err(|_| {
            bad(
                "database.url",
                "not a libpq `key=value` string nor a `postgresql://` url (not shown: it may hold a password)",
                "e.g. `host=db.internal dbname=superset user=replicator` or `postgresql://replicator@db.internal/superset`",
            )
        })?;
        match self.password("database.password", "database.password_file")? {
            Some(password) => Ok(database.with_password(password.expose())),
            None => Ok(database),
        }
    }

    /// A secret given directly (environment) or through a file; both is an error.
    fn password(&self, key: &str, file_key: &str) -> Result<Option<Secret>, Error> {
        match (self.secret(key), self.text(file_key)?) {
            (Some(_), Some(_)) => Err(bad(
                file_key,
                format!("{key} is given too"),
                format!("keep one of {key} and {file_key}"),
            )),
            (Some(secret), None) => Ok(Some(secret)),
            (None, Some(path)) => Secret::from_file(file_key, Path::new(path)).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// How to reach Kafka, for a client named `client_id`.
    pub(super) fn kafka(&self, client_id: String) -> Result<KafkaSettings, Error> {
        let brokers = self.required("kafka.brokers")?;
        let mut settings = KafkaSettings::new(brokers, client_id);
        if let Some(setting) = self.setting("kafka.properties") {
            let Value::Table(properties) = &setting.value else {
                return Err(bad(
                    "kafka.properties",
                    "expected a table",
                    how_to_set("kafka.properties"),
                ));
            };
            for (key, value) in properties {
                let credential = CREDENTIAL_FRAGMENTS
                    .iter()
                    .any(|f| key.to_ascii_lowercase().contains(f));
                if credential && matches!(setting.origin, super::layer::Origin::File(_)) {
                    return Err(bad(
                        &format!("kafka.properties.{key:?}"),
                        "a credential in the config file",
                        "remove it; give the SASL password with kafka.sasl_password_file or REPLICATOR_KAFKA_SASL_PASSWORD, other credentials with --kafka-property from a secret store (or their `*.location` file properties)",
                    ));
                }
                settings = settings.with_property(key.clone(), value.clone());
            }
        }
        if let Some(password) = self.password("kafka.sasl_password", "kafka.sasl_password_file")? {
            if settings.properties.contains_key("sasl.password") {
                return Err(bad(
                    "kafka.sasl_password",
                    "sasl.password is given as a property too",
                    "keep one of them",
                ));
            }
            settings = settings.with_property("sasl.password", password.expose());
        }
        Ok(settings)
    }

    pub(super) fn topic_prefix(&self) -> Result<String, Error> {
        Ok(self
            .text("kafka.topic_prefix")?
            .unwrap_or("replicator.")
            .to_owned())
    }

    /// Local columns from `applier.local_columns` (JSON) or `applier.local_columns_file`.
    pub(super) fn local_columns(&self) -> Result<LocalColumns, Error> {
        let key = "applier.local_columns_file";
        let (json, from) = match (self.secret("applier.local_columns"), self.text(key)?) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    key,
                    "applier.local_columns is given too",
                    "keep one of them",
                ))
            }
            (Some(json), None) => (json, "applier.local_columns"),
            (None, Some(path)) => (Secret::from_file(key, Path::new(path))?, key),
            (None, None) => return Ok(LocalColumns::new()),
        };
        type Tables = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;
        let tables: Tables = serde_json::from_str(json.expose()).map_err(|e| {
            // serde_json's message may quote a value (a URI with its password): only where.
            bad(
                from,
                format!("not the expected JSON (line {}, column {})", e.line(), e.column()),
                r#"write {"dbs": {"<uuid or database_name>": {"sqlalchemy_uri": "postgresql://..."}}}"#,
            )
        })?;
        let mut columns = LocalColumns::new();
        for (table, rows) in tables {
            for (row, values) in rows {
                columns.insert(&table, &row, values);
            }
        }
        Ok(columns)
    }

    /// `None` for `off`; whether it was given (not the default).
    pub(super) fn listen(&self) -> Result<(Option<SocketAddr>, bool), Error> {
        let key = "metrics.listen";
        match self.text(key)? {
            None => Ok((
                Some(SocketAddr::from((
                    [127, 0, 0, 1],
                    crate::telemetry::DEFAULT_PORT,
                ))),
                false,
            )),
            Some(text) => parse_listen(text)
                .map(|address| (address, true))
                .map_err(|problem| {
                    bad(
                        key,
                        problem,
                        "write `127.0.0.1:9464`, `0.0.0.0:9464`, `[::1]:9464` or `off`",
                    )
                }),
        }
    }
}

/// `off`, or an address to bind (`localhost:PORT` is `127.0.0.1:PORT`).
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let local = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    local
        .as_deref()
        .unwrap_or(text)
        .parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("{text:?} is not an address with a port"))
}

fn name_rule() -> &'static str {
    "use the name given to `replicator setup`: 1 to 63 characters from a-z, 0-9 and `_`, starting with a letter or `_`"
}

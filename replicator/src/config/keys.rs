//! Every setting of `replicator run`: its key, where it may come from, its default and its doc.
//!
//! **Contract.** [`KEYS`] is the one list of settings. The file's structs ([`super::file`]) hold
//! exactly the keys marked `in_file` (a test compares them field by field), the environment
//! variables and flags named here are the only ones read, and `docs/configuration.md` is
//! generated from this list ([`super::reference`]). A key is its dotted name in the file
//! (`capture.heartbeat_interval`).

/// What a setting holds (how an environment value is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One string.
    Text,
    /// A comma-separated list in the environment, an array in the file.
    List,
    /// A duration like `1s`, `500ms`, `2min`.
    Duration,
    /// A path.
    Path,
    /// A credential (never shown), from the environment only.
    Secret,
    /// A connection string that may hold a password: in the file too, but held as a secret.
    Url,
    /// A table of strings (file and flags only).
    Table,
}

/// One setting (module docs).
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub shape: Shape,
    pub env: Option<&'static str>,
    pub flag: Option<&'static str>,
    /// Whether the config file may set it (secrets may not: only the files holding them).
    pub in_file: bool,
    /// The default, as the docs show it (`""`: none).
    pub default: &'static str,
    /// An example value, as TOML (also what the tests set).
    pub example: &'static str,
    pub doc: &'static str,
}

const fn key(
    name: &'static str,
    shape: Shape,
    env: Option<&'static str>,
    flag: Option<&'static str>,
    default: &'static str,
    example: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        shape,
        env,
        flag,
        in_file: !matches!(shape, Shape::Secret),
        default,
        example,
        doc,
    }
}

use Shape::{Duration, List, Path, Secret, Table, Text, Url};

/// Every setting, in the order of the docs.
#[rustfmt::skip]
pub static KEYS: &[Key] = &[
    key("region", Text, Some("REPLICATOR_REGION"), Some("--region"), "", r#""us""#,
        "This region's id, as given to `replicator setup`. Required."),
    key("database.url", Url, Some("REPLICATOR_DATABASE_URL"), Some("--database-url"), "",
        r#""host=db.us.internal user=replicator dbname=superset sslmode=verify-full""#,
        "The metadata database: a libpq `key=value` string or a `postgresql://` url. Required. TLS as in libpq: `sslmode` `disable`, `prefer` (the default), `require`, `verify-ca` or `verify-full`, with `sslrootcert` a PEM file of trusted roots (or `system`). Put the password in `database.password_file` or `REPLICATOR_DATABASE_PASSWORD`, not here (a password in it is accepted and never shown, but the file is no place for it)."),
    key("database.password_file", Path, Some("REPLICATOR_DATABASE_PASSWORD_FILE"), None, "",
        r#""/run/secrets/pg""#,
        "A file holding the database password (its trailing line break is ignored)."),
    key("database.password", Secret, Some("REPLICATOR_DATABASE_PASSWORD"), None, "", r#""...""#,
        "The database password, from the environment only. Without it or a password file, the url's password or `PGPASSWORD` is used."),
    key("kafka.brokers", Text, Some("REPLICATOR_KAFKA_BROKERS"), Some("--kafka-brokers"), "",
        r#""kafka-1:9092,kafka-2:9092""#, "Kafka bootstrap servers, comma-separated. Required."),
    key("kafka.topic_prefix", Text, Some("REPLICATOR_TOPIC_PREFIX"), Some("--topic-prefix"),
        r#""replicator.""#, r#""replicator.""#, "Region topics are named `<prefix><region>`."),
    key("kafka.properties", Table, None, Some("--kafka-property"), "{}",
        r#"{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN", "sasl.username" = "replicator-us" }"#,
        "Extra librdkafka properties (TLS, SASL PLAIN or SCRAM, socket tuning; librdkafka is built with OpenSSL). Credentials (keys with `password`, `secret`, `token`, `key.pem`) are refused here: use `kafka.sasl_password_file`, or `--kafka-property` from a secret store. Properties that carry the delivery guarantees are set by the replicator and refused."),
    key("kafka.sasl_password_file", Path, Some("REPLICATOR_KAFKA_SASL_PASSWORD_FILE"), None, "",
        r#""/run/secrets/kafka""#, "A file holding the SASL password (`sasl.password`)."),
    key("kafka.sasl_password", Secret, Some("REPLICATOR_KAFKA_SASL_PASSWORD"), None, "", r#""...""#,
        "The SASL password, from the environment only."),
    key("capture.slot", Text, Some("REPLICATOR_SLOT"), Some("--slot"), r#""replicator""#,
        r#""replicator""#, "The slot `setup` created."),
    key("capture.publication", Text, Some("REPLICATOR_PUBLICATION"), Some("--publication"),
        r#""replicator""#, r#""replicator""#, "The publication `setup` created."),
    key("capture.topic", Text, Some("REPLICATOR_TOPIC"), Some("--topic"),
        "`<kafka.topic_prefix><region>`", r#""replicator.us""#, "This region's topic."),
    key("capture.heartbeat_interval", Duration, Some("REPLICATOR_HEARTBEAT_INTERVAL"),
        Some("--heartbeat-interval"), r#""1s""#, r#""1s""#,
        "How often a heartbeat goes through the WAL (it keeps lag reported while idle)."),
    key("capture.shutdown_grace", Duration, Some("REPLICATOR_SHUTDOWN_GRACE"),
        Some("--shutdown-grace"), r#""10s""#, r#""10s""#,
        "How long shutdown may wait for records in flight."),
    key("capture.max_backoff", Duration, Some("REPLICATOR_CAPTURE_MAX_BACKOFF"), None, r#""30s""#,
        r#""30s""#, "Longest pause between two reader sessions after a transient failure."),
    key("applier.sources", List, Some("REPLICATOR_SOURCES"), Some("--sources"), "",
        r#"["eu", "ap"]"#,
        "The regions to apply (never this region). Required. In the environment and on the command line: comma-separated."),
    key("applier.local_columns_file", Path, Some("REPLICATOR_LOCAL_COLUMNS_FILE"),
        Some("--local-columns-file"), "", r#""/run/secrets/local-columns.json""#,
        "A JSON file with this region's local columns for new rows (a database connection's `sqlalchemy_uri`), by uuid or name: `{\"dbs\": {\"<uuid or name>\": {\"sqlalchemy_uri\": \"...\"}}}`. Its values are secrets: never shown."),
    key("applier.local_columns", Secret, Some("REPLICATOR_LOCAL_COLUMNS"), None, "", r#""{}""#,
        "The same JSON, from the environment only (instead of the file)."),
    key("applier.max_backoff", Duration, Some("REPLICATOR_APPLIER_MAX_BACKOFF"), None, r#""30s""#,
        r#""30s""#, "Longest pause between two applier sessions after a transient failure."),
    key("metrics.listen", Text, Some("REPLICATOR_METRICS_LISTEN"), Some("--metrics-listen"),
        r#""127.0.0.1:9464""#, r#""0.0.0.0:9464""#,
        "Where `/metrics` is served, or `off`. Loopback unless set: in a container, set `0.0.0.0:9464`. A port given explicitly that cannot be bound stops the sidecar; the default one only logs a warning."),
    key("metrics.poll_interval", Duration, Some("REPLICATOR_METRICS_POLL_INTERVAL"), None,
        r#""5s""#, r#""5s""#,
        "How often the slot, the parked transactions and the consumer lag are read for the metrics."),
];

/// The setting named `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Where the config file is: `--config`, else this variable.
pub const CONFIG_ENV: &str = "REPLICATOR_CONFIG";

//! Tests of the configuration as a whole: keys, docs, checks, redaction.

use std::collections::BTreeSet;

use serde::de::{self, Deserialize, Visitor};

use super::file::{
    ApplierSection, CaptureSection, DatabaseSection, FileConfig, KafkaSection, MetricsSection,
};
use super::keys::KEYS;
use super::*;

/// The field names serde's derive gives a struct (it passes them to `deserialize_struct`).
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Collector<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Collector<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("collected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Collector(&mut fields));
    fields
}

#[test]
fn the_file_structs_hold_exactly_the_documented_file_keys() {
    let sections = [
        ("database", fields_of::<DatabaseSection>()),
        ("kafka", fields_of::<KafkaSection>()),
        ("capture", fields_of::<CaptureSection>()),
        ("applier", fields_of::<ApplierSection>()),
        ("metrics", fields_of::<MetricsSection>()),
    ];
    let mut in_structs = BTreeSet::new();
    for field in fields_of::<FileConfig>() {
        match sections.iter().find(|(name, _)| name == field) {
            Some((section, fields)) => {
                in_structs.extend(fields.iter().map(|f| format!("{section}.{f}")));
            }
            None => {
                in_structs.insert((*field).to_owned());
            }
        }
    }
    let documented: BTreeSet<String> = KEYS
        .iter()
        .filter(|k| k.in_file)
        .map(|k| k.name.to_owned())
        .collect();
    assert!(in_structs.len() > 15, "{in_structs:?}");
    assert_eq!(in_structs, documented);
}

#[test]
fn docs_configuration_md_is_generated_from_the_keys() {
    let committed = include_str!("../../../docs/configuration.md");
    let generated = reference::markdown();
    assert!(
        committed == generated,
        "docs/configuration.md is out of date: run \
         `cargo run -q --bin replicator -- config docs > docs/configuration.md`"
    );
    for key in KEYS {
        assert!(
            committed.contains(&format!("`{}`", key.name)),
            "{}",
            key.name
        );
    }
}

#[test]
fn every_environment_variable_reaches_its_key() -> Result<(), Error> {
    for key in KEYS {
        let Some(var) = key.env else { continue };
        let text = key.example.trim_matches('"').to_owned();
        let layer = Layer::from_env(|v| (v == var).then(|| text.clone()))?;
        assert!(layer.get(key.name).is_some(), "{var} → {}", key.name);
    }
    Ok(())
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // The last one wins, so that a test's own variables override [`MINIMAL`].
    move |name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

const MINIMAL: &[(&str, &str)] = &[
    ("REPLICATOR_REGION", "us"),
    ("REPLICATOR_SOURCES", "eu,ap"),
    ("REPLICATOR_KAFKA_BROKERS", "kafka:9092"),
    (
        "REPLICATOR_DATABASE_URL",
        "host=db user=replicator dbname=superset",
    ),
];

fn load_with(file: &str, vars: &[(&str, &str)], flags: &Layer) -> Result<RunConfig, Error> {
    let dir = std::env::temp_dir().join(format!(
        "replicator-config-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("replicator.toml");
    let _ = std::fs::write(&path, file);
    let loaded = load(Some(path), flags, env_of(vars));
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}

fn problem(result: Result<RunConfig, Error>) -> String {
    match result {
        Ok(_) => "accepted".into(),
        Err(error) => format!("{error} / {}", error.hint()),
    }
}

#[test]
fn defaults_fill_what_is_not_given() -> Result<(), Error> {
    let config = load_with("", MINIMAL, &Layer::default())?;
    assert_eq!(config.reader.slot, "replicator");
    assert_eq!(config.reader.publisher.topic, "replicator.us");
    assert_eq!(config.reader.heartbeat_interval, Duration::from_secs(1));
    let topics: Vec<&str> = config
        .applier
        .sources
        .iter()
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(topics, ["replicator.eu", "replicator.ap"]);
    assert_eq!(
        config.metrics.listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
    );
    assert!(!config.metrics.explicit);
    Ok(())
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_both() -> Result<(), Error> {
    let file = "region = \"us\"\n[capture]\nheartbeat_interval = \"5s\"\nslot = \"file_slot\"\n\
                [metrics]\nlisten = \"off\"\n";
    let vars = [MINIMAL, &[("REPLICATOR_HEARTBEAT_INTERVAL", "250ms")]].concat();
    let mut flags = Layer::default();
    flags.put_text("capture.slot", "flag_slot", Origin::Flag("--slot"))?;
    let config = load_with(file, &vars, &flags)?;
    assert_eq!(config.reader.heartbeat_interval, Duration::from_millis(250));
    assert_eq!(config.reader.slot, "flag_slot");
    assert_eq!(config.metrics.listen, None);
    let effective = config.effective();
    assert!(
        effective.contains("heartbeat_interval = \"250ms\"  # from $REPLICATOR_HEARTBEAT_INTERVAL"),
        "{effective}"
    );
    assert!(
        effective.contains("slot = \"flag_slot\"  # from --slot"),
        "{effective}"
    );
    Ok(())
}

#[test]
fn a_bad_setting_names_its_key_and_the_fix() {
    /// A file, variables over [`MINIMAL`] (an empty one unsets), what the error must say.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("[applier]\nsources = [\"eu\", \"us\"]\n", &[("REPLICATOR_SOURCES", "")], "applier.sources: \"us\" is this region / remove it"),
        ("[capture]\nheartbeat_interval = \"soon\"\n", &[], "capture.heartbeat_interval: \"soon\" is not a positive duration"),
        ("[metrics]\nlisten = \"everywhere\"\n", &[], "metrics.listen: \"everywhere\" is not an address"),
        ("[capture]\nslot = \"Bad-Slot\"\n", &[], "capture.slot"),
        ("[kafka]\nproperties = { \"sasl.password\" = \"hunter2\" }\n", &[], "kafka.properties.\"sasl.password\": a credential in the config file"),
        ("[capture]\nheartbeat = \"1s\"\n", &[], "capture.heartbeat"),
        ("", &[("REPLICATOR_REGION", "")], "region: missing / set it: `region = \"us\"` in the config file, or REPLICATOR_REGION, or --region"),
    ];
    for (file, vars, expected) in cases {
        let base: Vec<(&str, &str)> = MINIMAL
            .iter()
            .filter(|(k, _)| !vars.iter().any(|(v, _)| v == k))
            .copied()
            .chain(vars.iter().copied())
            .collect();
        let shown = problem(load_with(file, &base, &Layer::default()));
        assert!(shown.contains(expected), "{file:?}: {shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn secrets_come_from_files_or_the_environment_and_are_never_shown() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("replicator-secrets-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let pg = dir.join("pg");
    let _ = std::fs::write(&pg, "pg-s3cr3t\n");
    let columns = r#"{"dbs": {"examples": {"sqlalchemy_uri": "postgresql://u:uri-s3cr3t@h/db"}}}"#;
    let file = format!(
        "[database]\npassword_file = {:?}\n[kafka]\nproperties = {{ \"sasl.username\" = \"alice\" }}\n",
        pg.display()
    );
    let vars = [
        MINIMAL,
        &[
            (
                "REPLICATOR_DATABASE_URL",
                "postgresql://replicator:url-s3cr3t@db/superset",
            ),
            ("REPLICATOR_KAFKA_SASL_PASSWORD", "kafka-s3cr3t"),
            ("REPLICATOR_LOCAL_COLUMNS", columns),
        ],
    ]
    .concat();
    let config = load_with(&file, &vars, &Layer::default())?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        config
            .reader
            .kafka
            .properties
            .get("sasl.password")
            .map(String::as_str),
        Some("kafka-s3cr3t")
    );
    let shown = format!("{}\n{config:?}", config.effective());
    for secret in ["pg-s3cr3t", "url-s3cr3t", "kafka-s3cr3t", "uri-s3cr3t"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    assert!(shown.contains("sasl_password = \"<redacted>\""), "{shown}");
    assert!(
        shown.contains("url = \"replicator@db:5432/superset\""),
        "{shown}"
    );
    Ok(())
}

#[test]
fn a_password_given_twice_is_refused() {
    let vars = [MINIMAL, &[("REPLICATOR_DATABASE_PASSWORD", "x")]].concat();
    let shown = problem(load_with(
        "[database]\npassword_file = \"/nonexistent\"\n",
        &vars,
        &Layer::default(),
    ));
    assert!(
        shown.contains("database.password_file: database.password is given too"),
        "{shown}"
    );
}

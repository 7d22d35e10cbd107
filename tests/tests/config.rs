//! The configuration of `replicator run` through the binary, as an operator meets it: `config
//! check` validates a file with its environment and flags and prints the effective settings with
//! every secret redacted; a bad setting is named with its fix and exits 78 (EX_CONFIG), for `run`
//! too, before anything is connected to. No server is needed: nothing here connects.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{replicator_binary, unique_name};

type TestResult = Result<(), Box<dyn Error>>;

/// A folder of this test's own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Result<Dir, Box<dyn Error>> {
        let path = std::env::temp_dir().join(unique_name("it_config"));
        std::fs::create_dir_all(&path)?;
        Ok(Dir(path))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, Box<dyn Error>> {
        let path = self.0.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `replicator ARGS` with only `envs` in its environment: (exit code, stdout, stderr).
fn replicator(
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(i32, String, String), Box<dyn Error>> {
    let output = Command::new(replicator_binary()?)
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .env("RUST_LOG", "debug")
        .output()?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn config_file(dir: &Dir, secret_file: &Path, extra: &str) -> Result<PathBuf, Box<dyn Error>> {
    let properties = r#"{ "security.protocol" = "SASL_SSL", "sasl.username" = "replicator-us" }"#;
    config_file_with(dir, secret_file, properties, extra)
}

fn config_file_with(
    dir: &Dir,
    secret_file: &Path,
    properties: &str,
    extra: &str,
) -> Result<PathBuf, Box<dyn Error>> {
    dir.write(
        "replicator.toml",
        &format!(
            "region = \"us\"\n\
             [database]\n\
             url = \"host=db.us.internal user=replicator dbname=superset\"\n\
             password_file = {:?}\n\
             [kafka]\n\
             brokers = \"kafka-1:9092\"\n\
             properties = {properties}\n\
             [applier]\n\
             sources = [\"eu\", \"ap\"]\n\
             {extra}",
            secret_file.display()
        ),
    )
}

#[test]
fn config_check_prints_the_effective_config_without_a_secret() -> TestResult {
    let dir = Dir::new()?;
    let pg = dir.write("pg", "pg-password-from-file\n")?;
    let file = config_file(&dir, &pg, "[metrics]\nlisten = \"0.0.0.0:9464\"\n")?;
    let columns =
        r#"{"dbs": {"examples": {"sqlalchemy_uri": "postgresql://u:uri-password@h/db"}}}"#;
    let (code, stdout, stderr) = replicator(
        &["config", "check", "--config", &file.display().to_string()],
        &[
            ("REPLICATOR_KAFKA_SASL_PASSWORD", "kafka-password-from-env"),
            ("REPLICATOR_LOCAL_COLUMNS", columns),
        ],
    )?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "region = \"us\"",
        "url = \"replicator@db.us.internal/superset\"",
        "sources = [\"eu\", \"ap\"]",
        "sasl_password = \"<redacted>\"  # from $REPLICATOR_KAFKA_SASL_PASSWORD",
        "local_columns = \"<redacted>\"  # from $REPLICATOR_LOCAL_COLUMNS",
        "listen = \"0.0.0.0:9464\"",
        "heartbeat_interval = \"1s\"  # default",
        "topic = \"replicator.us\"",
    ] {
        assert!(stdout.contains(expected), "{expected} in:\n{stdout}");
    }
    let everything = format!("{stdout}{stderr}");
    for secret in [
        "pg-password-from-file",
        "kafka-password-from-env",
        "uri-password",
        "replicator-us",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }
    Ok(())
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_the_environment() -> TestResult {
    let dir = Dir::new()?;
    let pg = dir.write("pg", "x")?;
    let file = config_file(
        &dir,
        &pg,
        "[capture]\nslot = \"from_file\"\nheartbeat_interval = \"5s\"\n",
    )?;
    let (code, stdout, stderr) = replicator(
        &["config", "check", "--heartbeat-interval", "250ms"],
        &[
            ("REPLICATOR_CONFIG", &file.display().to_string()),
            ("REPLICATOR_SLOT", "from_env"),
            ("REPLICATOR_HEARTBEAT_INTERVAL", "2s"),
            ("REPLICATOR_METRICS_LISTEN", "off"),
        ],
    )?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("slot = \"from_env\"  # from $REPLICATOR_SLOT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("heartbeat_interval = \"250ms\"  # from --heartbeat-interval"),
        "{stdout}"
    );
    assert!(
        stdout.contains("listen = \"off\"  # from $REPLICATOR_METRICS_LISTEN"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "brokers = \"kafka-1:9092\"  # from {}",
            file.display()
        )),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_bad_setting_is_named_with_its_fix_and_exits_78() -> TestResult {
    let dir = Dir::new()?;
    let pg = dir.write("pg", "pg-password-from-file")?;
    let file = config_file(&dir, &pg, "")?;
    let path = file.display().to_string();
    // This region among the sources, by the environment: `check` and `run` refuse it alike.
    for command in [
        &["config", "check", "--config", &path][..],
        &["run", "--config", &path],
    ] {
        let (code, stdout, stderr) = replicator(command, &[("REPLICATOR_SOURCES", "eu,us")])?;
        assert_eq!(code, 78, "{command:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("configuration: applier.sources: \"us\" is this region"),
            "{stderr}"
        );
        assert!(stderr.contains("hint: remove it"), "{stderr}");
        assert!(!stderr.contains("pg-password-from-file"), "{stderr}");
    }
    // A misspelt key, and a password where only a password file belongs.
    for (properties, extra, named) in [
        ("{}", "[capture]\nheartbeat = \"1s\"\n", "capture.heartbeat"),
        (
            r#"{ "sasl.password" = "in-the-file" }"#,
            "",
            "kafka.properties.\"sasl.password\": a credential in the config file",
        ),
    ] {
        let file = config_file_with(&dir, &pg, properties, extra)?;
        let (code, _, stderr) = replicator(
            &["config", "check", "--config", &file.display().to_string()],
            &[],
        )?;
        assert_eq!(code, 78, "{stderr}");
        assert!(stderr.contains(named), "{named} in {stderr}");
        assert!(!stderr.contains("in-the-file"), "{stderr}");
    }
    // A missing required setting says how to set it.
    let (code, _, stderr) = replicator(&["config", "check"], &[])?;
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("region: missing"), "{stderr}");
    assert!(
        stderr.contains("REPLICATOR_REGION, or --region"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_docs_list_every_setting() -> TestResult {
    let (code, stdout, _) = replicator(&["config", "docs"], &[])?;
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )?;
    assert_eq!(
        stdout, committed,
        "regenerate docs/configuration.md with `replicator config docs`"
    );
    Ok(())
}

/// `sslmode` in the database url, against the lab's servers (which do not offer TLS): `prefer`
/// falls back to plaintext, `require` is refused rather than downgraded, and unreadable trusted
/// roots are an operator error before anything connects.
#[tokio::test]
async fn the_database_url_honours_sslmode() -> TestResult {
    use replicator::{Action, DatabaseUrl};
    let lab = harness::Lab::get()?;
    let db = lab.region("us")?.fresh_db("config_tls").await?;
    let prefer = DatabaseUrl::parse(&format!("{} sslmode=prefer", db.conninfo()))?;
    prefer.connect().await?.simple_query("SELECT 1").await?;
    let require = DatabaseUrl::parse(&format!("{} sslmode=require", db.conninfo()))?;
    let refused = require
        .connect()
        .await
        .err()
        .ok_or("connected without TLS")?;
    let chain = format!("{refused}: {:?}", std::error::Error::source(&refused));
    assert!(chain.to_lowercase().contains("tls"), "{chain}");
    let replication = require.replication_config()?;
    let refused = pgrepl::ReplicationClient::connect(&replication)
        .await
        .err()
        .ok_or("the walsender connected without TLS")?;
    assert!(matches!(refused, pgrepl::Error::Tls(_)), "{refused}");
    let missing = DatabaseUrl::parse(&format!(
        "{} sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
        db.conninfo()
    ))
    .err()
    .ok_or("an unreadable sslrootcert was accepted")?;
    assert_eq!(missing.action(), Action::Operator);
    assert!(missing.to_string().contains("sslrootcert"), "{missing}");
    assert!(
        !missing.to_string().contains(db.region().password()),
        "{missing}"
    );
    Ok(())
}

//! The operator's commands, run as a person runs them: the `replicator` binary as a subprocess
//! against a live two-region mesh (`status`, `lag`, `conflicts`, `quarantine`, `verify`), and
//! against a database of its own (`teardown`). No command may ever print a secret: neither the
//! lab's password (in every database url given to it) nor a region-local database URI.

// Reports are read with serde_json's `Index` (`report["sources"][0]`), which yields `null` for
// what is missing and never panics; the assertions then say what was expected.
#![allow(clippy::indexing_slicing)]

mod scenario;

use std::error::Error;
use std::process::Stdio;
use std::time::Duration;

use harness::{replicator_binary, wait_until, HarnessError, Lab, Mesh};
use scenario::{allow_databases, create_shared, users, Shared};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;

const CONVERGE: Duration = Duration::from_secs(120);
const COMMAND: Duration = Duration::from_secs(120);

/// What one command printed (any lab password replaced, see [`redacted`]), and its exit status.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Result<Value, Box<dyn Error>> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| format!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr).into())
    }
}

/// Every output of the test's commands, checked for secrets at the end.
#[derive(Debug, Default)]
struct Operator {
    outputs: Vec<String>,
}

impl Operator {
    /// Runs `replicator ARGS` against `conninfo` (in REPLICATOR_DATABASE_URL, password and all),
    /// with `stdin` as its input, and waits for it to exit.
    async fn run_with_input(
        &mut self,
        conninfo: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Run, Box<dyn Error>> {
        let mut child = tokio::process::Command::new(replicator_binary()?)
            .args(args)
            .env("REPLICATOR_DATABASE_URL", conninfo)
            .env_remove("PGPASSWORD")
            .env("RUST_LOG", "info")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes()).await?;
        }
        let output = tokio::time::timeout(COMMAND, child.wait_with_output())
            .await
            .map_err(|_| {
                let args = redacted(&args.join(" "));
                format!("replicator {args} did not exit within {COMMAND:?}")
            })??;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        // Raw here, for `assert_no_secret`; redacted in what the test prints on failure.
        self.outputs.push(format!(
            "replicator {}\n{stdout}\n{stderr}",
            redacted(&args.join(" "))
        ));
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: redacted(&stdout),
            stderr: redacted(&stderr),
        };
        Ok(run)
    }

    /// Runs `line` (words without spaces in them), requires exit status `code`, parses stdout.
    async fn json(
        &mut self,
        code: i32,
        conninfo: &str,
        line: &str,
    ) -> Result<Value, Box<dyn Error>> {
        self.expect(code, conninfo, &words(line)).await?.json()
    }

    async fn run(&mut self, conninfo: &str, args: &[&str]) -> Result<Run, Box<dyn Error>> {
        self.run_with_input(conninfo, args, None).await
    }

    /// Runs and requires exit status `code`.
    async fn expect(
        &mut self,
        code: i32,
        conninfo: &str,
        args: &[&str],
    ) -> Result<Run, Box<dyn Error>> {
        let run = self.run(conninfo, args).await?;
        if run.code != code {
            return Err(format!(
                "replicator {} exited {} (expected {code}):\n{}\n{}",
                redacted(&args.join(" ")),
                run.code,
                run.stdout,
                run.stderr
            )
            .into());
        }
        Ok(run)
    }

    /// No output contained the lab's password or a region-local database URI.
    fn assert_no_secret(&self) -> TestResult {
        let lab = Lab::get()?;
        let passwords: Vec<&str> = lab.regions().iter().map(|r| r.password()).collect();
        assert!(
            passwords.iter().all(|p| p.len() >= 8),
            "the lab password is too weak to test for"
        );
        for output in &self.outputs {
            for password in &passwords {
                assert!(
                    !output.contains(password),
                    "a password leaked (shown as ********):\n{}",
                    redacted(output)
                );
            }
            for uri in [
                "examples-us",
                "examples-eu",
                "noise-us",
                "noise-eu",
                "sqlite://",
            ] {
                assert!(!output.contains(uri), "a local URI leaked:\n{output}");
            }
        }
        Ok(())
    }
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `text` with every lab password replaced, for failure messages: a test must not leak it either.
fn redacted(text: &str) -> String {
    let mut text = text.to_owned();
    if let Ok(lab) = Lab::get() {
        for region in lab.regions() {
            if !region.password().is_empty() {
                text = text.replace(region.password(), "********");
            }
        }
    }
    text
}

async fn title(mesh: &Mesh, region: &str, uuid: Uuid) -> Result<String, HarnessError> {
    let row = mesh
        .client(region)
        .query_one(
            "SELECT dashboard_title FROM dashboards WHERE uuid = $1",
            &[&uuid],
        )
        .await
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    row.try_get(0)
        .map_err(|e| HarnessError::Other(e.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_status_settles_a_conflict_and_verifies_agreement() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu"], "operator").await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    allow_databases(&mut mesh)?;
    mesh.start_all()?;
    let shared = create_shared(mesh.client("us")).await?;
    mesh.converged(CONVERGE).await?;
    let mut op = Operator::default();
    status_and_lag(&mut op, &mesh).await?;
    conflict_shown_and_resolved(&mut op, &mut mesh, &shared).await?;
    quarantine_read(&mut op, &mesh).await?;
    agreement_then_divergence(&mut op, &mesh, &shared).await?;
    op.assert_no_secret()
}

/// Status names every source: the one that delivered, and an expected one that never did.
async fn status_and_lag(op: &mut Operator, mesh: &Mesh) -> TestResult {
    let (us, eu) = (
        mesh.member("us").db.conninfo(),
        mesh.member("eu").db.conninfo(),
    );
    let slot = mesh.member("us").slot.clone();
    // eu delivered something here (its heartbeats at least), and us's reader streams its slot.
    wait_until("us to apply eu and stream its slot", CONVERGE, || async {
        let sql = format!(
            "SELECT count(*) FROM replicator.applied_position WHERE source = 'eu'
                 AND EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active)"
        );
        Ok((mesh.count("us", &sql).await? > 0).then_some(()))
    })
    .await?;
    let status_json = format!("status --slot {slot} --sources eu,ap --output json");
    let status = op.json(0, &us, &status_json).await?;
    let sources: Vec<&str> = status["sources"]
        .as_array()
        .ok_or("no sources")?
        .iter()
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert_eq!(sources, ["ap", "eu"], "{status:#}");
    assert_eq!(status["region"], "us");
    assert_eq!(status["sources"][0]["never_applied"], true);
    let eu_source = &status["sources"][1];
    assert!(eu_source["lag_seconds"].is_number(), "{status:#}");
    assert!(eu_source["applied_position"]["resume_offset"].as_i64() > Some(0));
    assert_eq!(status["slot"]["exists"], true);
    assert_eq!(status["slot"]["active"], true, "{status:#}");
    assert!(status["slot"]["retained_wal_bytes"].is_number());
    let text = op
        .expect(
            0,
            &us,
            &words(&format!("status --slot {slot} --sources eu,ap")),
        )
        .await?;
    for expected in ["region us", "active (pid", "never applied", "eu  "] {
        assert!(
            text.stdout.contains(expected),
            "{expected}:\n{}",
            text.stdout
        );
    }
    let lag = op.json(0, &eu, "lag --output json").await?;
    assert!(lag["lag_seconds"]["us"].is_number(), "{lag:#}");
    op.expect(0, &eu, &["lag"]).await?;
    Ok(())
}

/// A conflict made while the regions are cut off from each other is listed, shown (a JSON value
/// as a diff of the keys that differ) and resolved by keeping the loser, everywhere.
async fn conflict_shown_and_resolved(
    op: &mut Operator,
    mesh: &mut Mesh,
    shared: &Shared,
) -> TestResult {
    mesh.kill_all();
    for region in ["us", "eu"] {
        mesh.client(region)
            .execute(
                "UPDATE dashboards SET dashboard_title = $2 WHERE uuid = $1",
                &[&shared.dashboard_uuid, &format!("Title from {region}")],
            )
            .await?;
        let limit: i32 = if region == "us" { 10 } else { 20 };
        mesh.client(region)
            .execute(
                "UPDATE slices SET params = (params::jsonb || jsonb_build_object('row_limit', $2::int))::text
                 WHERE uuid = $1",
                &[&shared.chart_uuids[0], &limit],
            )
            .await?;
    }
    mesh.start_all()?;
    mesh.converged(CONVERGE).await?;
    wait_until("both conflicts to be logged in us", CONVERGE, || async {
        let n = mesh
            .count("us", "SELECT count(*) FROM replicator.conflict")
            .await?;
        Ok((n >= 2).then_some(()))
    })
    .await?;
    let us = mesh.member("us").db.conninfo();
    let uuid = shared.dashboard_uuid.to_string();

    let list = op.json(0, &us, "conflicts list --output json").await?;
    let entries = list.as_array().ok_or("not a list")?;
    let field = |name: &str| entries.iter().find(|c| c["field"] == name).cloned();
    let title_conflict = field("dashboard_title").ok_or_else(|| format!("{list:#}"))?;
    let id = title_conflict["id"].as_i64().ok_or("no id")?.to_string();
    assert_eq!(title_conflict["kind"], "field");
    assert_eq!(title_conflict["uuid"], uuid.as_str());
    let text = op.expect(0, &us, &["conflicts", "list"]).await?;
    for expected in ["dashboard_title", "params", "Title from"] {
        assert!(
            text.stdout.contains(expected),
            "{expected}:\n{}",
            text.stdout
        );
    }
    let filters = format!(
        "conflicts list --since 1h --kind field --table dashboards --entity {uuid} --unresolved --output json"
    );
    let filtered = op.json(0, &us, &filters).await?;
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered:#}");
    let none = op
        .json(0, &us, "conflicts list --kind delete_update --output json")
        .await?;
    assert_eq!(none, Value::Array(vec![]));
    op.expect(
        0,
        &us,
        &words("conflicts list --since 2020-01-01T00:00:00Z"),
    )
    .await?;
    op.expect(78, &us, &words("conflicts list --since yesterday-ish"))
        .await?;

    let show = op.expect(0, &us, &["conflicts", "show", &id]).await?;
    for expected in [
        "Title from us",
        "Title from eu",
        "winner",
        "us:",
        "eu:",
        "hlc",
    ] {
        assert!(
            show.stdout.contains(expected),
            "{expected}:\n{}",
            show.stdout
        );
    }
    let shown = op
        .json(0, &us, &format!("conflicts show {id} --output json"))
        .await?;
    assert_eq!(shown["local"]["value"], "Title from us");
    assert_eq!(shown["incoming"]["value"], "Title from eu");
    assert!(shown["local"]["clock"].is_object() && shown["incoming"]["hlc"].is_number());
    let params = field("params")
        .and_then(|c| c["id"].as_i64())
        .ok_or("no params conflict")?;
    let json_diff = op
        .json(0, &us, &format!("conflicts show {params} --output json"))
        .await?;
    assert_eq!(json_diff["values_are_json"], true);
    let changed: Vec<&str> = json_diff["diff"]
        .as_array()
        .ok_or("no diff")?
        .iter()
        .filter_map(Value::as_str)
        .filter(|l| l.starts_with('-') || l.starts_with('+'))
        .collect();
    assert_eq!(
        changed.len(),
        2,
        "only the row_limit line differs: {changed:?}"
    );
    assert!(
        changed.iter().all(|l| l.contains("\"row_limit\"")),
        "{changed:?}"
    );
    op.expect(78, &us, &["conflicts", "show", "999999"]).await?;

    // Keep the loser: every region ends with it.
    let winner = title_conflict["winner_region"]
        .as_str()
        .ok_or("no winner")?;
    let loser_title = format!("Title from {}", if winner == "us" { "eu" } else { "us" });
    let now = title(mesh, "us", shared.dashboard_uuid).await?;
    assert_eq!(now, format!("Title from {winner}"));
    let resolve = format!("conflicts resolve {id} --keep loser --output json");
    let resolved = op.json(0, &us, &resolve).await?;
    assert_eq!(resolved["value"], loser_title.as_str(), "{resolved:#}");
    let dot = resolved["new_version"]["dot"].as_str();
    assert!(dot.is_some_and(|d| d.starts_with("us:")), "{resolved:#}");
    for region in ["us", "eu"] {
        wait_until(
            &format!("{region} to show the kept value"),
            CONVERGE,
            || async {
                let now = title(mesh, region, shared.dashboard_uuid).await?;
                Ok((now == loser_title).then_some(()))
            },
        )
        .await?;
    }
    let unresolved = op
        .json(0, &us, "conflicts list --unresolved --output json")
        .await?;
    let all_other = unresolved
        .as_array()
        .is_some_and(|l| l.iter().all(|c| c["field"] != "dashboard_title"));
    assert!(all_other, "{unresolved:#}");
    mesh.converged(CONVERGE).await?;
    Ok(())
}

/// The quarantine is readable empty, and with a run of one record that decodes and one that
/// does not, as the applier keeps them.
async fn quarantine_read(op: &mut Operator, mesh: &Mesh) -> TestResult {
    let us = mesh.member("us").db.conninfo();
    let slot = mesh.member("us").slot.clone();
    let empty = op.json(0, &us, "quarantine list --output json").await?;
    assert_eq!(empty, Value::Array(vec![]));
    op.expect(0, &us, &["quarantine", "list"]).await?;
    op.expect(78, &us, &["quarantine", "show", "999999"])
        .await?;
    let commit = envelope::Codec::new()?.encode(&envelope::Envelope {
        source: conflict::RegionId::new("eu")?,
        commit_lsn: pgoutput::Lsn(0x1_0000_0010),
        commit_time: envelope::UnixMicros(1_700_000_000_000_000),
        seq: envelope::Seq(0),
        body: envelope::Body::Commit { change_count: 0 },
    })?;
    let garbage: Vec<u8> = vec![0xc3, 0x01, 0xde, 0xad, 0xbe, 0xef];
    let id: i64 = mesh
        .client("us")
        .query_one(
            "INSERT INTO replicator.quarantine
                 (source, topic, first_offset, last_offset, commit_lsn, reason, detail, records)
             VALUES ('eu', 'the.eu.topic', 41, 42, '1/10', 'undecodable', 'bad bytes', $1)
             RETURNING id",
            &[&vec![commit, garbage]],
        )
        .await?
        .get(0);
    let listed = op.json(0, &us, "quarantine list --output json").await?;
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["records"], 2);
    let shown = op
        .expect(0, &us, &["quarantine", "show", &id.to_string()])
        .await?;
    for expected in [
        "undecodable",
        "bad bytes",
        "41..42",
        "\"commit\"",
        "c301deadbeef",
    ] {
        assert!(
            shown.stdout.contains(expected),
            "{expected}:\n{}",
            shown.stdout
        );
    }
    let shown = op
        .json(0, &us, &format!("quarantine show {id} --output json"))
        .await?;
    assert_eq!(shown["records"][0]["decoded"]["offset"], 41, "{shown:#}");
    assert_eq!(shown["records"][0]["decoded"]["source"], "eu");
    assert_eq!(shown["records"][1]["hex"], "c301deadbeef");
    let status = op
        .json(0, &us, &format!("status --slot {slot} --output json"))
        .await?;
    assert_eq!(status["sources"][0]["quarantined"], 1, "{status:#}");
    Ok(())
}

/// Verify: in agreement, then a divergence written behind the replicator's back in eu (the
/// triggers do not version it, so the reader never publishes it).
async fn agreement_then_divergence(op: &mut Operator, mesh: &Mesh, shared: &Shared) -> TestResult {
    let (us, eu) = (
        mesh.member("us").db.conninfo(),
        mesh.member("eu").db.conninfo(),
    );
    let uuid = shared.dashboard_uuid.to_string();
    let peer = format!("eu={eu}");
    let agree = op.expect(0, &us, &["verify", "--peer", &peer]).await?;
    assert!(
        agree.stdout.contains("all 2 regions agree"),
        "{}",
        agree.stdout
    );
    let agree = op
        .expect(0, &us, &["verify", "--peer", &peer, "--output", "json"])
        .await?
        .json()?;
    assert_eq!(agree["equal"], true);
    assert!(agree["tables"]["dashboards"]["us"]["md5"].is_string());
    mesh.client("eu")
        .batch_execute(&format!(
            "BEGIN; SET LOCAL replicator.applying = 'on';
             UPDATE dashboards SET dashboard_title = 'edited behind the replicator'
             WHERE uuid = '{uuid}'; COMMIT;"
        ))
        .await?;
    let verify = ["verify", "--peer", &peer, "--stable-for", "2s"];
    let diverged = op.expect(1, &us, &verify).await?;
    for expected in [uuid.as_str(), "dashboard_title", "DIFFERS"] {
        assert!(
            diverged.stdout.contains(expected),
            "{expected}:\n{}",
            diverged.stdout
        );
    }
    let diverged = op
        .expect(1, &us, &[&verify[..], &["--output", "json"]].concat())
        .await?
        .json()?;
    assert_eq!(diverged["equal"], false);
    assert_eq!(diverged["settled"], true);
    assert_eq!(
        diverged["divergent"][0]["uuid"],
        uuid.as_str(),
        "{diverged:#}"
    );
    assert_eq!(diverged["divergent"][0]["table"], "dashboards");
    // A peer that is not the region it claims is refused.
    op.expect(78, &us, &["verify", "--peer", &format!("ap={eu}")])
        .await?;
    Ok(())
}

async fn exists(client: &tokio_postgres::Client, sql: &str) -> Result<bool, Box<dyn Error>> {
    Ok(client.query_one(sql, &[]).await?.try_get(0)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_asks_first_then_removes_everything_setup_installed() -> TestResult {
    let db = Lab::get()?.region("us")?.fresh_db("teardown").await?;
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    harness::run_setup(&db, &slot, &publication).await?;
    let client = db.connect().await?;
    let conninfo = db.conninfo();
    let mut op = Operator::default();
    let teardown = |extra: &[&str]| -> Vec<String> {
        ["teardown", "--slot", &slot, "--publication", &publication]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let dry = teardown(&["--dry-run"]);
    let dry: Vec<&str> = dry.iter().map(String::as_str).collect();
    let plan = op.expect(0, &conninfo, &dry).await?;
    for expected in [
        "DROP TRIGGER replicator_version ON public.dashboards;",
        "DROP TRIGGER replicator_register ON public.ab_user;",
        "DROP SCHEMA replicator CASCADE;",
        &format!("DROP PUBLICATION {publication};"),
        &format!("pg_drop_replication_slot('{slot}')"),
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}:\n{}",
            plan.stdout
        );
    }
    let schema = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replicator')";
    assert!(exists(&client, schema).await?, "a dry run changes nothing");

    // Not confirmed: nothing dropped, an operator error.
    let ask = teardown(&[]);
    let ask: Vec<&str> = ask.iter().map(String::as_str).collect();
    let refused = op.run_with_input(&conninfo, &ask, Some("eu\n")).await?;
    assert_eq!(refused.code, 78, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("Type \"us\" to confirm"),
        "{}",
        refused.stderr
    );
    assert!(exists(&client, schema).await?);

    // The applier's origin goes too; a connected sidecar blocks the teardown.
    let origin = replicator::apply::applier::origin_name(&client).await?;
    client
        .execute("SELECT pg_replication_origin_create($1)", &[&origin])
        .await?;
    let (sidecar, connection) = tokio_postgres::connect(
        &format!("{conninfo} application_name=replicator-apply"),
        tokio_postgres::NoTls,
    )
    .await?;
    let driver = tokio::spawn(connection);
    let blocked = op.run_with_input(&conninfo, &ask, Some("us\n")).await?;
    assert_eq!(blocked.code, 78, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains("a sidecar is connected"),
        "{}",
        blocked.stderr
    );
    drop(sidecar);
    let _ = driver.await;
    wait_until("the sidecar's session to end", COMMAND, || async {
        let sql =
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'replicator-apply'
                   AND datname = current_database()";
        let n: i64 = client
            .query_one(sql, &[])
            .await
            .map_err(|e| HarnessError::Other(e.to_string()))?
            .get(0);
        Ok((n == 0).then_some(()))
    })
    .await?;
    assert!(exists(&client, schema).await?);

    // Confirmed by typing the region id.
    let done = op.run_with_input(&conninfo, &ask, Some("us\n")).await?;
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout.contains("REPLICA IDENTITY FULL"),
        "{}",
        done.stdout
    );
    assert!(!exists(&client, schema).await?);
    assert!(
        !exists(
            &client,
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'replicator\\_%')"
        )
        .await?
    );
    let gone = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{publication}')
             OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')
             OR EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = '{origin}')"
    );
    assert!(!exists(&client, &gone).await?);
    // Superset still works without it.
    client
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('after teardown')",
            &[],
        )
        .await?;

    // Again: nothing left to drop; and the read commands say setup never ran here.
    let yes = teardown(&["--yes"]);
    let yes: Vec<&str> = yes.iter().map(String::as_str).collect();
    let again = op.expect(0, &conninfo, &yes).await?;
    assert!(
        again.stdout.contains("nothing to tear down"),
        "{}",
        again.stdout
    );
    op.expect(78, &conninfo, &["status"]).await?;
    op.assert_no_secret()
}

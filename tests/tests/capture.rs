//! Capture end to end: `replicator setup`, then `replicator capture` as a process, against a real
//! region database and the real broker; what reaches the topic is decoded and checked.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use envelope::{Body, Codec, EntityChange, Envelope};
use harness::{unique_name, wait_until, HarnessError, Lab, Sidecar, TestDb, TopicReader};
use tokio_postgres::Client;

type TestResult = Result<(), Box<dyn Error>>;

/// A region database with capture set up and a sidecar streaming it to a topic of its own.
struct Captured {
    db: TestDb,
    client: Client,
    topic: String,
    sidecar: Option<Sidecar>,
    slot: String,
}

impl Captured {
    async fn start(region: &str, label: &str) -> Result<Captured, Box<dyn Error>> {
        let lab = Lab::get()?;
        let db = lab.region(region)?.fresh_db(label).await?;
        let client = db.connect().await?;
        let (slot, publication, topic) = (
            db.unique_name("slot"),
            db.unique_name("pub"),
            unique_name("it_topic"),
        );
        harness::run_setup(&db, &slot, &publication).await?;
        let mut captured = Captured {
            db,
            client,
            topic,
            sidecar: None,
            slot,
        };
        captured.start_sidecar(&publication)?;
        Ok(captured)
    }

    fn start_sidecar(&mut self, publication: &str) -> Result<(), HarnessError> {
        let lab = Lab::get()?;
        let region = self.db.region().name().to_owned();
        self.sidecar = Some(Sidecar::start(
            &[
                "capture",
                "--region",
                &region,
                "--slot",
                &self.slot,
                "--publication",
                publication,
                "--topic",
                &self.topic,
                "--kafka-brokers",
                lab.broker(),
                "--heartbeat-interval",
                "200ms",
            ],
            &[("REPLICATOR_DATABASE_URL", &self.db.conninfo())],
        )?);
        Ok(())
    }

    /// Every envelope on the topic once `done` holds for them (decoded; a record that does not
    /// decode fails the test).
    async fn envelopes_until(
        &self,
        what: &str,
        done: impl Fn(&[Envelope]) -> bool,
    ) -> Result<Vec<Envelope>, Box<dyn Error>> {
        let codec = Codec::new()?;
        let reader = tokio::sync::Mutex::new(TopicReader::new(Lab::get()?, &self.topic)?);
        let envelopes = wait_until(what, Duration::from_secs(90), || {
            let (codec, reader, done) = (&codec, &reader, &done);
            async move {
                let mut reader = reader.lock().await;
                let records = reader.poll(Duration::from_millis(300)).await?;
                let envelopes = records
                    .iter()
                    .map(|(_, _, payload)| codec.decode(payload))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| HarnessError::Other(format!("undecodable record: {e}")))?;
                Ok(done(&envelopes).then_some(envelopes))
            }
        })
        .await;
        if envelopes.is_err() {
            if let Some(sidecar) = &self.sidecar {
                eprintln!("{}", sidecar.log());
            }
        }
        Ok(envelopes?)
    }
}

fn changes(envelopes: &[Envelope]) -> Vec<&EntityChange> {
    envelopes
        .iter()
        .filter_map(|e| {
            if let Body::Change(c) = &e.body {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

fn fields(change: &EntityChange) -> BTreeMap<&str, &serde_json::Value> {
    change
        .fields
        .iter()
        .map(|f| (f.path.as_str(), &f.value))
        .collect()
}

#[tokio::test]
async fn capture_publishes_inserts_updates_and_deletes_in_commit_order() -> TestResult {
    let c = Captured::start("us", "cap_basic").await?;
    let dashboard: String = c
        .client
        .query_one(
            "INSERT INTO dashboards (dashboard_title, position_json, uuid)
             VALUES ('Sales', '{\"DASHBOARD_VERSION_KEY\": \"v2\"}', gen_random_uuid()) RETURNING uuid::text",
            &[],
        )
        .await?
        .get(0);
    // A Superset-style save of the title only: position_json must not travel, nor be blanked.
    c.client
        .execute("UPDATE dashboards SET dashboard_title = 'Sales 2026'", &[])
        .await?;
    c.client.execute("DELETE FROM dashboards", &[]).await?;

    let envelopes = c
        .envelopes_until("insert, update and delete of the dashboard", |e| {
            changes(e)
                .iter()
                .filter(|c| c.table == "dashboards")
                .count()
                >= 3
                && e.iter()
                    .filter(|e| matches!(e.body, Body::Commit { .. }))
                    .count()
                    >= 3
        })
        .await?;
    let dashboards: Vec<&EntityChange> = changes(&envelopes)
        .into_iter()
        .filter(|c| c.table == "dashboards")
        .collect();
    assert!(dashboards.iter().all(|d| d.entity.to_string() == dashboard));
    let (insert, update, delete) = (
        fields(dashboards[0]),
        fields(dashboards[1]),
        fields(dashboards[2]),
    );
    assert_eq!(insert.get("$exists"), Some(&&serde_json::json!(true)));
    assert_eq!(
        insert.get("dashboard_title"),
        Some(&&serde_json::json!("Sales"))
    );
    assert!(insert.contains_key("position_json"));
    assert!(
        !insert.contains_key("id") && !insert.contains_key("uuid"),
        "local id and identity never travel"
    );
    assert_eq!(
        update.keys().copied().collect::<Vec<_>>(),
        ["dashboard_title"],
        "only the changed field"
    );
    assert_eq!(
        update.get("dashboard_title"),
        Some(&&serde_json::json!("Sales 2026"))
    );
    assert_eq!(delete.keys().copied().collect::<Vec<_>>(), ["$exists"]);
    assert_eq!(delete.get("$exists"), Some(&&serde_json::json!(false)));

    // Commit order: (commit_lsn, seq) strictly increases across the topic, and every transaction
    // with changes closes with a commit record counting them.
    let positions: Vec<(u64, u64)> = envelopes
        .iter()
        .map(|e| (e.commit_lsn.0, e.seq.0))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for commit in envelopes
        .iter()
        .filter(|e| matches!(e.body, Body::Commit { .. }))
    {
        let Body::Commit { change_count } = commit.body else {
            unreachable!()
        };
        let in_txn = envelopes
            .iter()
            .filter(|e| e.commit_lsn == commit.commit_lsn && matches!(e.body, Body::Change(_)))
            .count();
        assert_eq!(in_txn as u64, change_count);
    }
    Ok(())
}

#[tokio::test]
async fn capture_skips_the_appliers_writes_and_confirms_only_what_the_broker_acknowledged(
) -> TestResult {
    let c = Captured::start("eu", "cap_origin").await?;
    let origin = unique_name("it_origin");
    c.client
        .execute("SELECT pg_replication_origin_create($1)", &[&origin])
        .await?;
    c.client
        .batch_execute(&format!(
            "SELECT pg_replication_origin_session_setup('{origin}');
             BEGIN;
             SET LOCAL replicator.applying = 'on';
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('from another region', gen_random_uuid());
             COMMIT;
             SELECT pg_replication_origin_session_reset();"
        ))
        .await?;
    c.client
        .execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('local', gen_random_uuid())",
            &[],
        )
        .await?;
    let envelopes = c
        .envelopes_until("the local dashboard", |e| !changes(e).is_empty())
        .await?;
    let titles: Vec<&serde_json::Value> = changes(&envelopes)
        .iter()
        .filter_map(|c| fields(c).get("dashboard_title").copied())
        .collect();
    assert_eq!(
        titles,
        [&serde_json::json!("local")],
        "the applier's insert is not published"
    );

    // The slot confirms past the local transaction (heartbeats keep it moving), and never past
    // what was published: every confirmed change is on the topic.
    let lsn_of_local: String = c
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let slot = c.slot.clone();
    wait_until("the slot to confirm the local transaction", Duration::from_secs(30), || {
        let (client, slot, lsn) = (&c.client, &slot, &lsn_of_local);
        async move {
            let row = client
                .query_one(
                    "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                    &[slot, lsn],
                )
                .await
                .map_err(|e| HarnessError::Other(e.to_string()))?;
            Ok(row.get::<_, bool>(0).then_some(()))
        }
    })
    .await?;
    let beats = c
        .envelopes_until("heartbeats", |e| {
            e.iter().any(|e| matches!(e.body, Body::Heartbeat { .. }))
        })
        .await?;
    assert!(beats
        .iter()
        .any(|e| matches!(e.body, Body::Heartbeat { .. })));
    Ok(())
}

#[tokio::test]
async fn capture_ends_with_an_operator_error_when_its_slot_is_gone() -> TestResult {
    let mut c = Captured::start("ap", "cap_noslot").await?;
    c.client
        .execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('x', gen_random_uuid())",
            &[],
        )
        .await?;
    c.envelopes_until("the first change", |e| !changes(e).is_empty())
        .await?;
    let admin = Lab::get()?.region("ap")?.connect_to("postgres").await?;
    // Kill the walsender and drop the slot under the reader.
    wait_until("the slot to be dropped", Duration::from_secs(30), || {
        let (admin, slot) = (&admin, &c.slot);
        async move {
            admin
                .execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active", &[slot])
                .await
                .map_err(|e| HarnessError::Other(e.to_string()))?;
            let dropped = admin
                .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[slot])
                .await;
            Ok(matches!(dropped, Ok(1)).then_some(()))
        }
    })
    .await?;
    let sidecar = c.sidecar.as_mut().ok_or("no sidecar")?;
    let code = wait_until("the reader to exit", Duration::from_secs(60), || {
        let code = sidecar.exited();
        async move { Ok(code) }
    })
    .await?;
    let log = sidecar.log();
    assert_eq!(code, 78, "an operator error (EX_CONFIG); log:\n{log}");
    assert!(log.contains("does not exist"), "{log}");
    let slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&c.slot],
        )
        .await?
        .get(0);
    assert_eq!(slots, 0, "the reader never recreates a slot");
    Ok(())
}

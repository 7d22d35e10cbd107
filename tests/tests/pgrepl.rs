//! The `pgrepl` replication client against the lab's real PostgreSQL 15: SCRAM login and
//! `IDENTIFY_SYSTEM`, an exported snapshot read in another session while the replication
//! connection stays open, pgoutput inserts decoded end to end, the slot's
//! `confirmed_flush_lsn` following (and never passing) what the client confirmed, a large
//! transaction streamed in chunks (read through constantly cancelled futures), typed slot
//! errors, and connections kept alive by status updates and by answering keepalive requests.

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{wait_until, HarnessError, Lab, TestDb};
use pgoutput::{
    ColumnValue, LogicalMessage, Lsn, ProtocolVersion, RelationCache, ServerCopyMessage,
    StreamDecoder,
};
use pgrepl::{
    publication_names, Config, ReplicationClient, ReplicationEvent, ReplicationStream,
    SnapshotAction,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn Error>>;

/// Generous bound for anything the server does asynchronously.
const PATIENCE: Duration = Duration::from_secs(30);

async fn replication_client(db: &TestDb) -> Result<ReplicationClient, Box<dyn Error>> {
    let config: Config = db.conninfo().parse()?;
    Ok(ReplicationClient::connect(&config).await?)
}

/// A publication for `dashboards` and a slot without snapshot; returns (slot, publication).
async fn slot_and_publication(
    db: &TestDb,
    client: &mut ReplicationClient,
) -> Result<(String, String), Box<dyn Error>> {
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    db.connect()
        .await?
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE dashboards"
        ))
        .await?;
    client
        .create_logical_slot(&slot, "pgoutput", SnapshotAction::NoExport)
        .await?;
    Ok((slot, publication))
}

/// Reads and decodes messages until `done` holds for what was read, answering status-due
/// events with the positions already reported (so the slot does not move on its own).
async fn read_until(
    stream: &mut ReplicationStream,
    decoder: &mut StreamDecoder,
    what: &str,
    done: impl Fn(&[LogicalMessage]) -> bool,
) -> Result<Vec<LogicalMessage>, Box<dyn Error>> {
    let deadline = Instant::now() + PATIENCE;
    let mut messages = Vec::new();
    while !done(&messages) {
        let event = tokio::time::timeout_at(deadline, stream.next_event())
            .await
            .map_err(|_| format!("timed out after {PATIENCE:?} waiting for {what}"))??;
        match event {
            ReplicationEvent::Message(ServerCopyMessage::XLogData(x)) => {
                messages.push(decoder.decode(x.data)?)
            }
            ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(_)) => {}
            ReplicationEvent::StatusDue => {
                let r = stream.reported();
                stream
                    .send_status(r.written, r.flushed, r.applied, false)
                    .await?;
            }
        }
    }
    Ok(messages)
}

fn commits(messages: &[LogicalMessage]) -> Vec<Lsn> {
    messages
        .iter()
        .filter_map(|m| match m {
            LogicalMessage::Commit(c) => Some(c.end_lsn),
            _ => None,
        })
        .collect()
}

fn kind(message: &LogicalMessage) -> &'static str {
    match message {
        LogicalMessage::Begin(_) => "begin",
        LogicalMessage::Relation(_) => "relation",
        LogicalMessage::Insert(_) => "insert",
        LogicalMessage::Commit(_) => "commit",
        LogicalMessage::StreamStart(_) => "stream start",
        LogicalMessage::StreamStop => "stream stop",
        LogicalMessage::StreamCommit(_) => "stream commit",
        LogicalMessage::StreamAbort(_) => "stream abort",
        _ => "other",
    }
}

/// The dashboard titles of the inserts in `messages`, decoded through the relation cache.
fn inserted_titles(messages: &[LogicalMessage]) -> Result<Vec<String>, Box<dyn Error>> {
    let mut relations = RelationCache::new();
    let mut titles = Vec::new();
    for message in messages {
        relations.observe(message);
        if let LogicalMessage::Insert(insert) = message {
            let row = relations.resolve(insert.relation, &insert.new)?;
            if let Some(ColumnValue::Text(text)) = row.get("dashboard_title").map(|c| c.value) {
                titles.push(String::from_utf8(text.to_vec())?);
            }
        }
    }
    Ok(titles)
}

async fn confirmed_flush(
    admin: &tokio_postgres::Client,
    slot: &str,
) -> Result<Option<Lsn>, HarnessError> {
    let row = admin
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    let text: Option<String> = row.get(0);
    text.map(|t| {
        t.parse()
            .map_err(|e: pgoutput::Error| HarnessError::Other(e.to_string()))
    })
    .transpose()
}

/// `pg_stat_replication.reply_time` of walsender `pid` in microseconds since the Unix epoch
/// (`None` while it has no row or no reply yet).
async fn reply_time(admin: &tokio_postgres::Client, pid: i32) -> Result<Option<i64>, HarnessError> {
    let rows = admin
        .query(
            "SELECT (extract(epoch FROM reply_time) * 1000000)::int8 FROM pg_stat_replication
             WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(|e| HarnessError::Other(e.to_string()))?;
    Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)))
}

#[tokio::test]
async fn pgrepl_scram_login_identify_system_and_show() -> TestResult {
    let lab = Lab::get()?;
    let region = lab.region("us")?;
    let db = region.fresh_db("pgrepl_ident").await?;
    let admin = db.connect().await?;

    // The lab stores a SCRAM verifier and its host lines demand scram-sha-256: logging in over
    // TCP with a password proves the SCRAM exchange (including the server signature check).
    let scram_only: bool = admin
        .query_one(
            "SELECT bool_and(auth_method = 'scram-sha-256') FROM pg_hba_file_rules WHERE type = 'host'",
            &[],
        )
        .await?
        .get(0);
    assert!(scram_only, "the lab's TCP logins are SCRAM-SHA-256");

    let config: Config = db.conninfo().parse()?;
    assert!(!format!("{config:?}").contains(region.password()));
    assert!(!config.to_string().contains(region.password()));
    let mut client = ReplicationClient::connect(&config).await?;
    assert!(!format!("{client:?}").contains(region.password()));
    assert!(client
        .server_version()
        .is_some_and(|v| v.starts_with("15.")));

    let system = client.identify_system().await?;
    assert_eq!(system.dbname.as_deref(), Some(db.name()));
    assert!(system.timeline >= 1);
    assert!(system.xlog_pos.is_valid());
    let system_id: String = admin
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(system.system_id, system_id);

    // The connection is a walsender attached to the test database.
    let pid = client.backend_pid().ok_or("no backend pid")?;
    let row = admin
        .query_one(
            "SELECT backend_type, datname::text, application_name FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await?;
    let (backend_type, datname, app): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (backend_type.as_str(), datname.as_str(), app.as_str()),
        ("walsender", db.name(), "replicator-it")
    );

    assert_eq!(client.show("wal_sender_timeout").await?, "1min");
    assert_eq!(client.keepalive_interval().await?, Duration::from_secs(1));
    let rows = client
        .simple_query("SELECT 1 AS one, NULL AS nothing")
        .await?;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].get("one"), rows[0].get("nothing")),
        (Some("1"), None)
    );

    // A wrong password is the server's 28P01, not retryable, and never echoed.
    let wrong = format!(
        "{} password=not-the-password",
        db.conninfo().replace(region.password(), "x")
    );
    let err = ReplicationClient::connect(&wrong.parse()?)
        .await
        .err()
        .ok_or("a wrong password connected")?;
    assert_eq!(err.sqlstate(), Some("28P01"), "{err}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("not-the-password"));

    // The lab's servers do not offer TLS: a mode that requires it is refused, never silently
    // downgraded; `prefer` (the default, as in libpq) falls back to plaintext.
    let tls: Config = format!("{} sslmode=require", db.conninfo()).parse()?;
    let err = ReplicationClient::connect(&tls)
        .await
        .err()
        .ok_or("sslmode=require connected without TLS")?;
    assert!(matches!(err, pgrepl::Error::Tls(_)), "{err}");
    assert!(!err.is_retryable());
    let prefer: Config = format!("{} sslmode=prefer", db.conninfo()).parse()?;
    ReplicationClient::connect(&prefer).await?;
    Ok(())
}

#[tokio::test]
async fn pgrepl_an_exported_snapshot_is_readable_while_the_replication_connection_stays_open(
) -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("us")?.fresh_db("pgrepl_snap").await?;
    let admin = db.connect().await?;
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    admin
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE dashboards;
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('before', gen_random_uuid());"
        ))
        .await?;

    let mut client = replication_client(&db).await?;
    let created = client
        .create_logical_slot(&slot, "pgoutput", SnapshotAction::Export)
        .await?;
    assert_eq!(created.slot_name, slot);
    assert_eq!(created.output_plugin.as_deref(), Some("pgoutput"));
    assert!(created.consistent_point.is_valid());
    let snapshot = created.snapshot_name.ok_or("no snapshot exported")?;

    admin
        .execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('after', gen_random_uuid())",
            &[],
        )
        .await?;

    // The snapshot, imported elsewhere, shows the data as of the slot's consistent point.
    let mut copier = db.connect().await?;
    let tx = copier
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .await?;
    let titles: Vec<String> = tx
        .query("SELECT dashboard_title FROM dashboards ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await?;
    assert_eq!(titles, ["before"]);

    // The stream from the consistent point holds exactly the rest.
    let names = publication_names(&[&publication]);
    let mut stream = client
        .start_logical_replication(
            &slot,
            created.consistent_point,
            &[("proto_version", "1"), ("publication_names", &names)],
        )
        .await?;
    let mut decoder = StreamDecoder::new(ProtocolVersion::V1);
    let messages = read_until(&mut stream, &mut decoder, "the 'after' insert", |m| {
        !commits(m).is_empty()
    })
    .await?;
    assert_eq!(
        messages.iter().map(kind).collect::<Vec<_>>(),
        ["begin", "relation", "insert", "commit"]
    );
    assert_eq!(inserted_titles(&messages)?, ["after"]);

    // The snapshot lived only until the replication connection's next command.
    let late = db.connect().await?;
    late.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let import = late
        .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .await;
    assert!(
        import.is_err(),
        "the exported snapshot outlived START_REPLICATION"
    );
    Ok(())
}

#[tokio::test]
async fn pgrepl_inserts_into_dashboards_stream_and_decode_with_pgoutput() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("eu")?.fresh_db("pgrepl_ins").await?;
    let mut client = replication_client(&db).await?;
    let (slot, publication) = slot_and_publication(&db, &mut client).await?;
    let names = publication_names(&[&publication]);
    let mut stream = client
        .start_logical_replication(
            &slot,
            Lsn::INVALID,
            &[("proto_version", "2"), ("publication_names", &names)],
        )
        .await?;

    let writer = db.connect().await?;
    writer
        .batch_execute(
            "BEGIN;
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Sales', gen_random_uuid());
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Ops', gen_random_uuid());
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Finance', gen_random_uuid());
             COMMIT;
             INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Solo', gen_random_uuid());",
        )
        .await?;

    let mut decoder = StreamDecoder::new(ProtocolVersion::V2);
    let messages = read_until(&mut stream, &mut decoder, "two transactions", |m| {
        commits(m).len() == 2
    })
    .await?;
    assert_eq!(
        messages.iter().map(kind).collect::<Vec<_>>(),
        [
            "begin", "relation", "insert", "insert", "insert", "commit", "begin", "insert",
            "commit"
        ],
        "the Relation message comes once per session"
    );
    assert_eq!(
        inserted_titles(&messages)?,
        ["Sales", "Ops", "Finance", "Solo"]
    );
    let (LogicalMessage::Begin(begin), LogicalMessage::Commit(commit)) =
        (&messages[0], &messages[5])
    else {
        return Err("not a Begin ... Commit transaction".into());
    };
    assert_eq!(begin.final_lsn, commit.commit_lsn);
    assert!(commit.end_lsn > commit.commit_lsn);
    let ends = commits(&messages);
    assert!(ends[0] < ends[1]);
    Ok(())
}

#[tokio::test]
async fn pgrepl_confirmed_flush_follows_the_status_update_and_never_passes_it() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("us")?.fresh_db("pgrepl_flush").await?;
    let admin = db.connect().await?;
    let mut client = replication_client(&db).await?;
    let (slot, publication) = slot_and_publication(&db, &mut client).await?;
    let created_at = confirmed_flush(&admin, &slot)
        .await?
        .ok_or("a new slot has no confirmed_flush_lsn")?;
    let names = publication_names(&[&publication]);
    let options = [
        ("proto_version", "2"),
        ("publication_names", names.as_str()),
    ];
    let mut stream = client
        .start_logical_replication(&slot, Lsn::INVALID, &options)
        .await?;
    let pid = stream.backend_pid().ok_or("no backend pid")?;

    for title in ["first", "second"] {
        admin
            .execute(
                "INSERT INTO dashboards (dashboard_title, uuid) VALUES ($1, gen_random_uuid())",
                &[&title],
            )
            .await?;
    }
    let mut decoder = StreamDecoder::new(ProtocolVersion::V2);
    let messages = read_until(&mut stream, &mut decoder, "two commits", |m| {
        commits(m).len() == 2
    })
    .await?;
    let ends = commits(&messages);
    let (first_end, second_end) = (ends[0], ends[1]);
    assert!(created_at < first_end && first_end < second_end);
    assert_eq!(
        confirmed_flush(&admin, &slot).await?,
        Some(created_at),
        "nothing confirmed yet"
    );

    // Confirm the first transaction only.
    stream
        .send_status(first_end, first_end, first_end, false)
        .await?;
    wait_until(
        "confirmed_flush_lsn to reach the first commit",
        PATIENCE,
        || {
            let (admin, slot) = (&admin, &slot);
            async move {
                Ok(confirmed_flush(admin, slot)
                    .await?
                    .filter(|l| *l == first_end))
            }
        },
    )
    .await?;
    let seen = reply_time(&admin, pid).await?.ok_or("no reply_time")?;

    // Later updates that (try to) report less are raised to what was confirmed: once the server
    // has processed them, the slot is still exactly at the first commit, not beyond, not back.
    stream
        .send_status(Lsn::INVALID, Lsn(first_end.0 - 1), Lsn::INVALID, true)
        .await?;
    assert_eq!(stream.reported().flushed, first_end);
    wait_until(
        "the server to process a later status update",
        PATIENCE,
        || {
            let admin = &admin;
            async move { Ok(reply_time(admin, pid).await?.filter(|t| *t > seen)) }
        },
    )
    .await?;
    assert_eq!(confirmed_flush(&admin, &slot).await?, Some(first_end));
    let flush_lsn: String = admin
        .query_one(
            "SELECT flush_lsn::text FROM pg_stat_replication WHERE pid = $1",
            &[&pid],
        )
        .await?
        .get(0);
    assert_eq!(flush_lsn.parse::<Lsn>()?, first_end);

    // Stop streaming cleanly: the connection takes commands again, but streams only once.
    let mut client = stream.stop().await?;
    assert!(client.identify_system().await?.xlog_pos >= second_end);
    let again = client
        .start_logical_replication(&slot, Lsn::INVALID, &options)
        .await;
    assert!(
        matches!(again, Err(pgrepl::Error::Unsupported(_))),
        "{:?}",
        again.err()
    );

    // A new connection resumes after what was confirmed: only the second transaction again.
    let client = replication_client(&db).await?;
    let mut stream = client
        .start_logical_replication(&slot, Lsn::INVALID, &options)
        .await?;
    let mut decoder = StreamDecoder::new(ProtocolVersion::V2);
    let again = read_until(&mut stream, &mut decoder, "the resent transaction", |m| {
        !commits(m).is_empty()
    })
    .await?;
    assert_eq!(inserted_titles(&again)?, ["second"]);
    assert_eq!(commits(&again), [second_end]);

    stream
        .send_status(second_end, second_end, second_end, false)
        .await?;
    wait_until(
        "confirmed_flush_lsn to reach the second commit",
        PATIENCE,
        || {
            let (admin, slot) = (&admin, &slot);
            async move {
                Ok(confirmed_flush(admin, slot)
                    .await?
                    .filter(|l| *l == second_end))
            }
        },
    )
    .await?;

    // And the connection returns to command mode to drop its own slot.
    let mut client = stream.stop().await?;
    client.drop_slot(&slot, false).await?;
    assert_eq!(confirmed_flush(&admin, &slot).await.ok().flatten(), None);
    Ok(())
}

#[tokio::test]
async fn pgrepl_a_large_transaction_arrives_in_stream_chunks() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("ap")?.fresh_db("pgrepl_big").await?;
    let admin = db.connect().await?;
    let mut client = replication_client(&db).await?;
    let (slot, publication) = slot_and_publication(&db, &mut client).await?;
    // The decoding happens in this walsender: its memory limit is what makes it stream.
    client
        .simple_query("SET logical_decoding_work_mem = '64kB'")
        .await?;
    assert_eq!(client.show("logical_decoding_work_mem").await?, "64kB");
    let names = publication_names(&[&publication]);
    let mut stream = client
        .start_logical_replication(
            &slot,
            Lsn::INVALID,
            &[
                ("proto_version", "2"),
                ("publication_names", &names),
                ("streaming", "true"),
            ],
        )
        .await?;

    const ROWS: usize = 2000;
    let writer = db.connect().await?;
    let insert = tokio::spawn(async move {
        writer
            .batch_execute(&format!(
                "INSERT INTO dashboards (dashboard_title, uuid, json_metadata)
                 SELECT 'big ' || g, gen_random_uuid(), repeat(md5(g::text), 30)
                 FROM generate_series(1, {ROWS}) g"
            ))
            .await
    });

    // Read, while the insert runs, through futures cancelled whenever they wait 50 µs: a
    // partial frame must survive cancellation.
    let mut decoder = StreamDecoder::new(ProtocolVersion::V2);
    let mut messages = Vec::new();
    let mut cancelled = 0u32;
    let deadline = Instant::now() + PATIENCE;
    while !messages
        .iter()
        .any(|m| matches!(m, LogicalMessage::StreamCommit(_)))
    {
        if Instant::now() > deadline {
            return Err("timed out waiting for the stream commit".into());
        }
        match tokio::time::timeout(Duration::from_micros(50), stream.next_event()).await {
            Err(_) => cancelled += 1,
            Ok(event) => match event? {
                ReplicationEvent::Message(ServerCopyMessage::XLogData(x)) => {
                    messages.push(decoder.decode(x.data)?)
                }
                ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(_)) => {}
                ReplicationEvent::StatusDue => {
                    let r = stream.reported();
                    stream
                        .send_status(r.written, r.flushed, r.applied, false)
                        .await?;
                }
            },
        }
    }
    insert.await??;
    assert!(cancelled > 0, "the reads were never cancelled");

    let starts: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            LogicalMessage::StreamStart(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert!(
        starts.len() >= 2,
        "{} stream blocks for a ~2 MB transaction",
        starts.len()
    );
    assert!(starts[0].first_segment && starts[1..].iter().all(|s| !s.first_segment));
    let xid = starts[0].xid;
    assert!(starts.iter().all(|s| s.xid == xid));
    assert!(!messages
        .iter()
        .any(|m| matches!(m, LogicalMessage::Begin(_) | LogicalMessage::Commit(_))));
    // Blocks alternate start/stop, and every insert sits inside one, tagged with the xid.
    let mut open = false;
    for message in &messages {
        match message {
            LogicalMessage::StreamStart(_) => {
                assert!(!open);
                open = true;
            }
            LogicalMessage::StreamStop => {
                assert!(open);
                open = false;
            }
            LogicalMessage::Insert(insert) => {
                assert!(open);
                assert_eq!(insert.xid, Some(xid));
            }
            _ => {}
        }
    }
    assert_eq!(inserted_titles(&messages)?.len(), ROWS);
    let Some(LogicalMessage::StreamCommit(commit)) = messages.last() else {
        return Err("the transaction did not end with a Stream Commit".into());
    };
    assert_eq!(commit.xid, xid);

    // A large transaction that rolls back is streamed too, then aborted.
    admin
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO dashboards (dashboard_title, uuid, json_metadata)
             SELECT 'doomed ' || g, gen_random_uuid(), repeat(md5(g::text), 30)
             FROM generate_series(1, {ROWS}) g;
             ROLLBACK;"
        ))
        .await?;
    let aborted = read_until(&mut stream, &mut decoder, "the stream abort", |m| {
        m.iter()
            .any(|m| matches!(m, LogicalMessage::StreamAbort(_)))
    })
    .await?;
    let Some(LogicalMessage::StreamAbort(abort)) = aborted.last() else {
        return Err("no Stream Abort".into());
    };
    assert!(abort.is_toplevel());
    assert_ne!(abort.xid, xid);
    Ok(())
}

#[tokio::test]
async fn pgrepl_slot_errors_are_typed_for_the_operator() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("eu")?.fresh_db("pgrepl_err").await?;
    let missing = db.unique_name("missing");

    let client = replication_client(&db).await?;
    let err = client
        .start_logical_replication(
            &missing,
            Lsn::INVALID,
            &[("proto_version", "1"), ("publication_names", "p")],
        )
        .await
        .err()
        .ok_or("START_REPLICATION on a missing slot succeeded")?;
    assert!(
        matches!(&err, pgrepl::Error::SlotMissing { slot, .. } if *slot == missing),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("42704"));
    assert!(!err.is_retryable());

    let mut client = replication_client(&db).await?;
    let err = client
        .drop_slot(&missing, false)
        .await
        .err()
        .ok_or("dropped a missing slot")?;
    assert!(matches!(err, pgrepl::Error::SlotMissing { .. }), "{err}");
    // An error in answer to a command leaves the connection usable.
    let (slot, publication) = slot_and_publication(&db, &mut client).await?;
    let err = client
        .create_logical_slot(&slot, "pgoutput", SnapshotAction::NoExport)
        .await
        .err()
        .ok_or("created a slot twice")?;
    assert!(
        matches!(err, pgrepl::Error::SlotAlreadyExists { .. }),
        "{err}"
    );

    let names = publication_names(&[&publication]);
    let options = [
        ("proto_version", "1"),
        ("publication_names", names.as_str()),
    ];
    let _streaming = client
        .start_logical_replication(&slot, Lsn::INVALID, &options)
        .await?;
    let err = replication_client(&db)
        .await?
        .start_logical_replication(&slot, Lsn::INVALID, &options)
        .await
        .err()
        .ok_or("two walsenders streamed one slot")?;
    assert!(
        matches!(&err, pgrepl::Error::SlotInUse { slot: s, .. } if *s == slot),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("55006"));
    assert!(
        err.is_retryable(),
        "a slot in use frees itself when its holder goes"
    );
    let err = replication_client(&db)
        .await?
        .drop_slot(&slot, false)
        .await
        .err()
        .ok_or("dropped an active slot")?;
    assert!(matches!(err, pgrepl::Error::SlotInUse { .. }), "{err}");
    Ok(())
}

/// Streams `slot` on a connection whose `wal_sender_timeout` is 3 s.
async fn short_timeout_stream(
    db: &TestDb,
    slot: &str,
    publication: &str,
) -> Result<ReplicationStream, Box<dyn Error>> {
    let config: Config = format!("{} options='-c wal_sender_timeout=3s'", db.conninfo()).parse()?;
    let mut client = ReplicationClient::connect(&config).await?;
    assert_eq!(client.show("wal_sender_timeout").await?, "3s");
    assert_eq!(client.keepalive_interval().await?, Duration::from_secs(1));
    let names = publication_names(&[publication]);
    let stream = client
        .start_logical_replication(
            slot,
            Lsn::INVALID,
            &[("proto_version", "1"), ("publication_names", &names)],
        )
        .await?;
    assert_eq!(stream.wal_sender_timeout(), Duration::from_secs(3));
    Ok(stream)
}

/// Drives `stream` as a reader would until told to stop, answering status-due events when
/// `answer` is set and counting keepalives that ask for a reply. Returns the error that ended
/// the stream, if one did.
async fn pump(
    mut stream: ReplicationStream,
    answer: bool,
    requests: Arc<AtomicU32>,
    mut stop: oneshot::Receiver<()>,
) -> Option<pgrepl::Error> {
    loop {
        // next_event is cancel-safe, so it may lose the race against `stop`.
        let event = tokio::select! {
            _ = &mut stop => return None,
            event = stream.next_event() => event,
        };
        match event {
            Ok(ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(k))) => {
                if k.reply_requested {
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(ReplicationEvent::Message(_)) => {}
            Ok(ReplicationEvent::StatusDue) if answer => {
                let r = stream.reported();
                if let Err(e) = stream
                    .send_status(r.written, r.flushed, r.applied, false)
                    .await
                {
                    return Some(e);
                }
            }
            Ok(ReplicationEvent::StatusDue) => {}
            Err(e) => return Some(e),
        }
    }
}

/// Waits until walsender `pid` has replied `span_micros` of its own clock after `since`, one
/// advance of `reply_time` at a time (each within `step`); returns how many advances it saw.
async fn replies_span(
    admin: &tokio_postgres::Client,
    pid: i32,
    since: i64,
    span_micros: i64,
    step: Duration,
) -> Result<u32, HarnessError> {
    let (mut last, mut advances) = (since, 0);
    while last - since < span_micros {
        last = wait_until("reply_time to advance", step, || async move {
            Ok(reply_time(admin, pid).await?.filter(|t| *t > last))
        })
        .await?;
        advances += 1;
    }
    Ok(advances)
}

#[tokio::test]
async fn pgrepl_status_updates_and_answered_keepalives_keep_the_connection_alive() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("us")?.fresh_db("pgrepl_alive").await?;
    let admin = db.connect().await?;
    let mut client = replication_client(&db).await?;
    let (regular, publication) = slot_and_publication(&db, &mut client).await?;
    let (on_request, silent) = (db.unique_name("slot"), db.unique_name("slot"));
    for slot in [&on_request, &silent] {
        client
            .create_logical_slot(slot, "pgoutput", SnapshotAction::NoExport)
            .await?;
    }

    // Regular: a status update every keepalive interval (1 s). On request: only when the server
    // asks (its own interval, 1 min, is far beyond the 3 s timeout). Silent: never answers.
    let regular = short_timeout_stream(&db, &regular, &publication).await?;
    let mut on_request = short_timeout_stream(&db, &on_request, &publication).await?;
    on_request.set_status_interval(Duration::from_secs(60));
    let silent = short_timeout_stream(&db, &silent, &publication).await?;
    let pids = [regular.backend_pid(), on_request.backend_pid()];
    let [Some(regular_pid), Some(on_request_pid)] = pids else {
        return Err("no backend pid".into());
    };
    let counters = [(); 3].map(|()| Arc::new(AtomicU32::new(0)));
    let [regular_requests, on_request_requests, silent_requests] = counters.clone();
    let (stop_regular, regular_stopped) = oneshot::channel();
    let (stop_on_request, on_request_stopped) = oneshot::channel();
    let (_keep_silent, silent_stopped) = oneshot::channel();
    let started = Instant::now();
    let regular = tokio::spawn(pump(regular, true, regular_requests, regular_stopped));
    let on_request = tokio::spawn(pump(
        on_request,
        true,
        on_request_requests,
        on_request_stopped,
    ));
    let silent = tokio::spawn(pump(silent, false, silent_requests, silent_stopped));

    // The silent reader is dropped by the server after wal_sender_timeout: the setting bites.
    let error = tokio::time::timeout(PATIENCE, silent)
        .await??
        .ok_or("the silent stream ended cleanly")?;
    assert!(
        counters[2].load(Ordering::Relaxed) >= 1,
        "the server asked the silent reader to reply"
    );
    assert!(error.is_retryable(), "{error}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{error} after {:?}",
        started.elapsed()
    );

    // The others outlive twice the timeout, their reply_time advancing all along: the regular
    // one about every second, the other about every 1.5 s, each time the server asks.
    let regular_first = wait_until("a first regular reply", PATIENCE, || async {
        reply_time(&admin, regular_pid).await
    })
    .await?;
    let advances = replies_span(
        &admin,
        regular_pid,
        regular_first,
        6_000_000,
        Duration::from_secs(3),
    )
    .await?;
    assert!(advances >= 5, "{advances} regular replies in 6 s");
    let on_request_first = wait_until("a first requested reply", PATIENCE, || async {
        reply_time(&admin, on_request_pid).await
    })
    .await?;
    replies_span(
        &admin,
        on_request_pid,
        on_request_first,
        6_000_000,
        Duration::from_secs(5),
    )
    .await?;
    assert!(
        counters[1].load(Ordering::Relaxed) >= 3,
        "the server had to ask for each reply"
    );

    for (stop, task) in [(stop_regular, regular), (stop_on_request, on_request)] {
        assert!(!task.is_finished(), "a stream that replies ended");
        let _ = stop.send(());
        let outcome = tokio::time::timeout(PATIENCE, task).await??;
        assert!(outcome.is_none(), "{outcome:?}");
    }
    Ok(())
}

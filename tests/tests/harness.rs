//! The harness, proven against the lab's real servers: per-test Superset databases on every
//! region's cluster, a pgoutput slot read back through our decoder, a broker round trip with a
//! committed consumer-group offset, and clean-up that really removes what a test created.

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use harness::{
    consumer_config, producer_config, unique_name, wait_until, HarnessError, Lab, TestTopic,
};
use pgoutput::{ColumnValue, LogicalMessage, ProtocolVersion, RelationCache, StreamDecoder};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

type TestResult = Result<(), Box<dyn Error>>;

/// Superset 6.1 has 54 tables in `public` (facts file §1); these are the ones replication cares
/// most about, including the two without a primary key.
const SOME_SUPERSET_TABLES: &[&str] = &[
    "dashboards",
    "slices",
    "tables",
    "table_columns",
    "sql_metrics",
    "dbs",
    "dashboard_slices",
    "dashboard_user",
    "embedded_dashboards",
    "user_favorite_tag",
    "tag",
    "tagged_object",
    "themes",
    "ab_user",
    "ab_role",
    "key_value",
    "report_schedule",
];

#[tokio::test]
async fn every_region_gives_a_test_its_own_superset_database() -> TestResult {
    let lab = Lab::get()?;
    assert!(lab.regions().len() >= 3, "the test lab runs three regions");
    for region in lab.regions() {
        let db = region.fresh_db("schema").await?;
        let client = db.connect().await?;
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(tables.len(), 54, "region {}: {tables:?}", region.name());
        for wanted in SOME_SUPERSET_TABLES {
            assert!(
                tables.iter().any(|t| t == wanted),
                "region {} lacks {wanted}",
                region.name()
            );
        }
        let no_pk: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r'
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
                   AND c.relname <> 'alembic_version'",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(
            no_pk, 2,
            "embedded_dashboards and user_favorite_tag have no primary key"
        );
        let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
        assert_eq!(wal_level, "logical");
    }
    Ok(())
}

#[tokio::test]
async fn test_databases_are_isolated_and_dropped_with_their_slots() -> TestResult {
    let lab = Lab::get()?;
    let region = lab.region("us")?;
    let first = region.fresh_db("iso_a").await?;
    let second = region.fresh_db("iso_b").await?;
    assert_ne!(first.name(), second.name());

    let a = first.connect().await?;
    a.execute(
        "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('only in a', gen_random_uuid())",
        &[],
    )
    .await?;
    let slot = first.unique_name("slot");
    a.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
    )
    .await?;
    let b = second.connect().await?;
    let in_b: i64 = b
        .query_one("SELECT count(*) FROM dashboards", &[])
        .await?
        .get(0);
    assert_eq!(
        in_b, 0,
        "a row written in one test database is invisible in another"
    );

    let name = first.name().to_owned();
    drop(a);
    drop(first);
    let admin = region.connect_to("postgres").await?;
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?
        .get(0);
    let slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .get(0);
    assert_eq!(
        (dbs, slots),
        (0, 0),
        "dropping the handle drops the database and its slot"
    );
    Ok(())
}

#[tokio::test]
async fn a_pgoutput_slot_can_be_created_and_read() -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("eu")?.fresh_db("slot").await?;
    let client = db.connect().await?;
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE dashboards"
        ))
        .await?;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?;
    client
        .execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Sales', gen_random_uuid())",
            &[],
        )
        .await?;

    let payloads: Vec<Vec<u8>> = wait_until(
        "the insert to reach the slot",
        Duration::from_secs(30),
        || {
            let client = &client;
            let (slot, publication) = (&slot, &publication);
            async move {
                let rows = client
                    .query(
                        "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
                       'proto_version', '1', 'publication_names', $2)",
                        &[slot, publication],
                    )
                    .await
                    .map_err(|e| HarnessError::Other(e.to_string()))?;
                let payloads: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
                Ok((!payloads.is_empty()).then_some(payloads))
            }
        },
    )
    .await?;

    let mut decoder = StreamDecoder::new(ProtocolVersion::V1);
    let mut relations = RelationCache::new();
    let mut kinds = Vec::new();
    let mut title = None;
    for payload in payloads {
        let message = decoder.decode(Bytes::from(payload))?;
        relations.observe(&message);
        if let LogicalMessage::Insert(insert) = &message {
            let row = relations.resolve(insert.relation, &insert.new)?;
            if let Some(ColumnValue::Text(text)) = row.get("dashboard_title").map(|c| c.value) {
                title = Some(String::from_utf8(text.to_vec())?);
            }
        }
        kinds.push(match message {
            LogicalMessage::Begin(_) => "begin",
            LogicalMessage::Relation(_) => "relation",
            LogicalMessage::Insert(_) => "insert",
            LogicalMessage::Commit(_) => "commit",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["begin", "relation", "insert", "commit"]);
    assert_eq!(title.as_deref(), Some("Sales"));
    Ok(())
}

#[tokio::test]
async fn a_record_round_trips_through_the_broker_with_a_committed_offset() -> TestResult {
    let lab = Lab::get()?;
    let topic = TestTopic::create(lab, "roundtrip", 1).await?;
    let producer: FutureProducer = producer_config(lab).create()?;
    let delivery = producer
        .send(
            FutureRecord::to(topic.name())
                .key("entity-uuid")
                .payload("hello from us"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    let offset = delivery.offset;
    assert_eq!(delivery.partition, 0);

    let group = unique_name("it_group");
    let consumer: StreamConsumer = consumer_config(lab, &group).create()?;
    consumer.subscribe(&[topic.name()])?;
    let received = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
    assert_eq!(received.payload(), Some(&b"hello from us"[..]));
    assert_eq!(received.key(), Some(&b"entity-uuid"[..]));
    assert_eq!(received.offset(), offset);
    consumer.commit_message(&received, rdkafka::consumer::CommitMode::Sync)?;
    drop(received);

    // A new member of the same group reads the offset the first one committed.
    let checker: StreamConsumer = consumer_config(lab, &group).create()?;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic.name(), 0);
    let committed = checker.committed_offsets(wanted, Duration::from_secs(30))?;
    let position = committed
        .find_partition(topic.name(), 0)
        .map(|p| p.offset());
    drop(committed);
    assert_eq!(position, Some(Offset::Offset(offset + 1)));
    close_off_runtime(consumer).await;
    close_off_runtime(checker).await;
    Ok(())
}

/// rdkafka consumers can block on drop (see docs/development.md): close them on a blocking thread,
/// bounded, so a slow close never hangs the async runtime.
async fn close_off_runtime(consumer: StreamConsumer) {
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    let _ = tokio::time::timeout(Duration::from_secs(30), closing).await;
}

/// The broker contract the applier's restart relies on: a consumer assigned at an offset in the
/// middle of a produced batch reads from exactly that offset (Kafka returns the whole batch and
/// the client drops the records before it). The applier resumes at the first record of a source
/// transaction not yet applied, which is usually inside a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_assigned_inside_a_batch_reads_from_that_offset() -> TestResult {
    let lab = Lab::get()?;
    let topic = TestTopic::create(lab, "midbatch", 1).await?;
    // One batch: a long linger, every record queued before the first is sent.
    let producer: FutureProducer = producer_config(lab)
        .set("linger.ms", "500")
        .set("batch.num.messages", "1000")
        .create()?;
    let payloads: Vec<String> = (0..10).map(|i| format!("record {i}")).collect();
    let mut sends = Vec::new();
    for payload in &payloads {
        let record = FutureRecord::<(), _>::to(topic.name())
            .partition(0)
            .payload(payload);
        sends.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    let mut offsets = Vec::new();
    for send in sends {
        let delivery = send.await?.map_err(|(e, _)| e)?;
        offsets.push(delivery.offset);
    }
    let first = offsets[0];
    assert_eq!(offsets, (first..first + 10).collect::<Vec<_>>());

    for start in [first, first + 4, first + 9] {
        let consumer: StreamConsumer = consumer_config(lab, &unique_name("it_group")).create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic.name(), 0, Offset::Offset(start))?;
        consumer.assign(&assignment)?;
        let received = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        let got = (received.offset(), received.payload().map(<[u8]>::to_vec));
        drop(received);
        close_off_runtime(consumer).await;
        let want = (
            start,
            Some(format!("record {}", start - first).into_bytes()),
        );
        assert_eq!(got, want, "assigned at {start}");
    }
    Ok(())
}

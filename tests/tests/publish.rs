//! The publisher against the lab's broker (Tansu), and against rdkafka's in-process mock cluster
//! where a fault must be injected (a broker that goes down and comes back, produce errors).
//!
//! What is proven: records arrive in send order and decode with the codec; `durable()` reaches a
//! commit's LSN only once that record and all before it are acknowledged, and never goes back;
//! `send` waits while `max_in_flight` records are unacknowledged; an unreachable broker keeps
//! `durable()` still and ends in a retryable error; a broker that comes back resumes delivery;
//! `ensure_topic` creates one partition and refuses two.

use std::error::Error;
use std::future::Future;
use std::net::TcpListener;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use harness::{consumer_config, unique_name, wait_until, HarnessError, Lab, TestTopic};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use replicator::capture::publish::{
    ensure_topic, Body, Codec, Envelope, KafkaSettings, Lsn, Publisher, PublisherConfig, Seq,
    TopicStatus, UnixMicros,
};
use replicator::{Action, RegionId};

type TestResult = Result<(), Box<dyn Error>>;

const LONG: Duration = Duration::from_secs(60);

fn settings(broker: &str) -> KafkaSettings {
    KafkaSettings::new(broker, "replicator-it-publish")
}

fn codec() -> Result<Arc<Codec>, Box<dyn Error>> {
    Ok(Arc::new(Codec::new()?))
}

fn us() -> Result<RegionId, Box<dyn Error>> {
    Ok(RegionId::new("us")?)
}

/// Transaction `k` of a test: a heartbeat (seq 0) and its commit (seq 1), committed at
/// `end_lsn(k)`.
fn transaction(k: u64) -> Result<[Envelope; 2], Box<dyn Error>> {
    let base = Envelope {
        source: us()?,
        commit_lsn: Lsn(0x1000 + 0x100 * k),
        commit_time: UnixMicros(1_790_000_000_000_000 + i64::try_from(k)?),
        seq: Seq(0),
        body: Body::Heartbeat {
            beat: k,
            beat_time: UnixMicros(1_790_000_000_000_000),
        },
    };
    let commit = Envelope {
        seq: Seq(1),
        body: Body::Commit { change_count: 1 },
        ..base.clone()
    };
    Ok([base, commit])
}

fn end_lsn(k: u64) -> Lsn {
    Lsn(0x1000 + 0x100 * k + 0x10)
}

/// Sends transaction `k`: the heartbeat confirms nothing, the commit confirms `end_lsn(k)`.
async fn send_transaction(publisher: &mut Publisher, k: u64) -> Result<(), Box<dyn Error>> {
    let [change, commit] = transaction(k)?;
    publisher.send(&change, None).await?;
    publisher.send(&commit, Some(end_lsn(k))).await?;
    Ok(())
}

/// One record as consumed: key, payload, partition, offset.
type Consumed = (Vec<u8>, Vec<u8>, i32, i64);

/// Reads `count` records of `topic` from the start, with a consumer group of its own, and checks
/// that they sit at offsets `0..count`. With `exactly`, also that the partition holds no more
/// (its high watermark is `count`): not against Tansu 0.6, whose ListOffsets answers the base
/// offset of the most recently written batch plus one.
async fn consume(
    mut config: ClientConfig,
    topic: &str,
    count: usize,
    exactly: bool,
) -> Result<Vec<Consumed>, Box<dyn Error>> {
    config.set("group.id", unique_name("it_publish_group"));
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    let read = tokio::time::timeout(LONG, async {
        while records.len() < count {
            let message = consumer.recv().await?;
            records.push((
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
                message.partition(),
                message.offset(),
            ));
        }
        consumer.fetch_watermarks(topic, 0, Duration::from_secs(30))
    })
    .await;
    close_off_runtime(consumer).await;
    let (_low, high) = read??;
    let offsets: Vec<i64> = records.iter().map(|(_, _, _, offset)| *offset).collect();
    let expected: Vec<i64> = (0..i64::try_from(count)?).collect();
    assert_eq!(offsets, expected, "records sit at offsets 0..{count}");
    if exactly {
        assert_eq!(
            high,
            i64::try_from(count)?,
            "the partition holds exactly the records sent"
        );
    }
    Ok(records)
}

/// rdkafka consumers can block on drop: close them on a blocking thread, bounded.
async fn close_off_runtime(consumer: StreamConsumer) {
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    let _ = tokio::time::timeout(Duration::from_secs(30), closing).await;
}

/// Polls `future` once, without a runtime's waker: whether it completes right away.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Asserts that `error` is a publishing failure the reader recovers from by restarting.
fn assert_retryable(error: &replicator::Error) {
    assert_eq!(error.action(), Action::Retry, "{error}: {error:?}");
}

#[tokio::test]
async fn publish_records_arrive_in_order_and_decode() -> TestResult {
    let lab = Lab::get()?;
    let topic = TestTopic::create(lab, "publish_order", 1).await?;
    let settings = settings(lab.broker());
    assert_eq!(
        ensure_topic(&settings, topic.name(), None).await?,
        TopicStatus::Existed
    );
    let codec = codec()?;
    let mut publisher =
        Publisher::new(&settings, PublisherConfig::new(topic.name()), codec.clone())?;
    let mut sent = Vec::new();
    for k in 0..25 {
        send_transaction(&mut publisher, k).await?;
        sent.extend(transaction(k)?);
    }
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(24)));
    let stats = publisher.stats();
    assert_eq!((stats.sent, stats.acked, stats.failed), (50, 50, 0));
    assert_eq!(stats.bytes_sent, stats.bytes_acked);
    assert_eq!(publisher.close(LONG).await?, Some(end_lsn(24)));

    let records = consume(
        consumer_config(lab, "unused"),
        topic.name(),
        sent.len(),
        false,
    )
    .await?;
    for ((key, payload, partition, _), expected) in records.iter().zip(&sent) {
        assert_eq!(&codec.decode(payload)?, expected);
        assert_eq!(key.as_slice(), expected.key().as_bytes());
        assert_eq!(*partition, 0);
    }
    assert_eq!(records.len(), sent.len());
    Ok(())
}

#[tokio::test]
async fn publish_durable_follows_acknowledged_commits_and_never_goes_back() -> TestResult {
    let lab = Lab::get()?;
    let topic = TestTopic::create(lab, "publish_durable", 1).await?;
    let mut publisher = Publisher::new(
        &settings(lab.broker()),
        PublisherConfig::new(topic.name()),
        codec()?,
    )?;
    assert_eq!(publisher.durable()?, None);

    let mut last = None;
    let mut check = |durable: Option<Lsn>, acked: u64| {
        assert!(
            durable >= last,
            "durable went back: {last:?} -> {durable:?}"
        );
        if let Some(lsn) = durable {
            // Transaction k's commit is record 2k+1: it and all before it must be acked.
            let k = (lsn.0 - 0x1010) / 0x100;
            assert_eq!(lsn, end_lsn(k), "only commit LSNs become durable");
            assert!(
                acked >= 2 * k + 2,
                "{lsn:?} durable with only {acked} records acked"
            );
        }
        last = durable;
    };
    for k in 0..30 {
        send_transaction(&mut publisher, k).await?;
        let durable = publisher.durable()?;
        check(durable, publisher.stats().acked);
    }
    let final_lsn = wait_until("every commit to be acknowledged", LONG, || {
        let durable = publisher
            .durable()
            .map_err(|e| HarnessError::Other(e.to_string()));
        let acked = publisher.stats().acked;
        if let Ok(d) = durable {
            check(d, acked);
        }
        async move { Ok(durable?.filter(|lsn| *lsn == end_lsn(29))) }
    })
    .await?;
    assert_eq!(final_lsn, end_lsn(29));

    // A lower LSN confirmed later does not move it back.
    let [_, commit] = transaction(1)?;
    publisher.send(&commit, Some(end_lsn(1))).await?;
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(29)));

    // A transaction that publishes nothing: at once when nothing is in flight, else after
    // everything sent before it.
    publisher.confirm_after_sent(Lsn(0x9000));
    assert_eq!(publisher.durable()?, Some(Lsn(0x9000)));
    let [beat, _] = transaction(40)?;
    publisher.send(&beat, None).await?;
    publisher.confirm_after_sent(Lsn(0x9100));
    publisher.confirm_after_sent(Lsn(0x9200));
    assert!(publisher.durable()? <= Some(Lsn(0x9200)));
    assert_eq!(publisher.flush(LONG).await?, Some(Lsn(0x9200)));
    publisher.close(LONG).await?;
    Ok(())
}

#[tokio::test]
async fn publish_with_one_record_in_flight_each_send_waits_for_the_previous_ack() -> TestResult {
    let lab = Lab::get()?;
    let topic = TestTopic::create(lab, "publish_one", 1).await?;
    let config = PublisherConfig {
        max_in_flight: 1,
        ..PublisherConfig::new(topic.name())
    };
    let mut publisher = Publisher::new(&settings(lab.broker()), config, codec()?)?;
    for k in 0..10 {
        send_transaction(&mut publisher, k).await?;
        assert!(publisher.in_flight() <= 1);
        // The commit of transaction k was sent only once the heartbeat before it was acked.
        assert!(publisher.stats().acked > 2 * k);
        assert!(publisher.durable()? >= k.checked_sub(1).map(end_lsn));
    }
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(9)));
    publisher.close(LONG).await?;
    Ok(())
}

#[tokio::test]
async fn publish_ensure_topic_creates_one_partition_and_refuses_two() -> TestResult {
    let lab = Lab::get()?;
    let settings = settings(lab.broker());
    let name = unique_name("it_publish_topic");
    let created = ensure_topic(&settings, &name, None).await;
    let again = ensure_topic(&settings, &name, None).await;
    // The topic is ours: delete it whatever happened above.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", lab.broker())
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deleted = admin.delete_topics(&[&name], &options).await;
    assert_eq!(created?, TopicStatus::Created);
    assert_eq!(again?, TopicStatus::Existed);
    for result in deleted? {
        result.map_err(|(topic, code)| format!("delete {topic}: {code}"))?;
    }

    let two = TestTopic::create(lab, "publish_two", 2).await?;
    match ensure_topic(&settings, two.name(), None).await {
        Err(replicator::Error::TopicPartitions { topic, partitions }) => {
            assert_eq!((topic.as_str(), partitions), (two.name(), 2));
        }
        other => panic!("a two-partition topic must be refused, got {other:?}"),
    }
    let refused = ensure_topic(&settings, two.name(), None)
        .await
        .err()
        .map(|e| e.action());
    assert_eq!(refused, Some(Action::Operator));
    Ok(())
}

#[tokio::test]
async fn publish_an_unreachable_broker_never_advances_and_fails_retryably() -> TestResult {
    // A loopback port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let broker = format!("127.0.0.1:{port}");
    let config = PublisherConfig {
        max_in_flight: 2,
        message_timeout: Duration::from_secs(2),
        ..PublisherConfig::new("replicator.nowhere")
    };

    // flush: the records time out, durable never moves, every later call fails the same way.
    let mut publisher = Publisher::new(&settings(&broker), config.clone(), codec()?)?;
    send_transaction(&mut publisher, 0).await?;
    assert_eq!(publisher.durable()?, None);
    let flushed = publisher.flush(LONG).await;
    let error = flushed.err().ok_or("flush must fail")?;
    assert!(
        matches!(error, replicator::Error::Delivery { .. }),
        "{error:?}"
    );
    assert_retryable(&error);
    assert_eq!(publisher.last_durable(), None);
    // Nothing becomes durable past a failed record, not even a skipped transaction's end.
    publisher.confirm_after_sent(Lsn(0x9000));
    assert_eq!(publisher.last_durable(), None);
    let again = publisher.durable().err().ok_or("durable must fail too")?;
    assert_retryable(&again);
    let [beat, _] = transaction(1)?;
    let refused = publisher.send(&beat, None).await.err();
    assert_retryable(&refused.ok_or("send must fail too")?);
    let stats = publisher.stats();
    assert_eq!((stats.acked, stats.sent), (0, 2));
    assert!(stats.failed >= 1);
    assert!(publisher.close(LONG).await.is_err());

    // send: the third record waits for the first, which fails.
    let mut publisher = Publisher::new(&settings(&broker), config, codec()?)?;
    send_transaction(&mut publisher, 0).await?;
    let [beat, _] = transaction(1)?;
    let third = tokio::time::timeout(LONG, publisher.send(&beat, None)).await?;
    assert_retryable(&third.err().ok_or("the third send must fail")?);
    assert_eq!(publisher.last_durable(), None);
    drop(publisher); // never blocks: the producer is destroyed on a thread of its own
    Ok(())
}

/// A one-broker mock cluster with `topic` (one partition).
fn mock_cluster(
    topic: &str,
) -> Result<MockCluster<'static, rdkafka::producer::DefaultProducerContext>, Box<dyn Error>> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(topic, 1, 1)?;
    Ok(cluster)
}

fn mock_consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    config
}

#[tokio::test]
async fn publish_send_waits_while_max_in_flight_records_are_unacknowledged() -> TestResult {
    let topic = "replicator.mock_backpressure";
    let cluster = mock_cluster(topic)?;
    let config = PublisherConfig {
        max_in_flight: 2,
        ..PublisherConfig::new(topic)
    };
    let mut publisher = Publisher::new(&settings(&cluster.bootstrap_servers()), config, codec()?)?;
    send_transaction(&mut publisher, 0).await?;
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(0)));

    cluster.broker_down(1)?;
    let [beat, commit] = transaction(1)?;
    let [next, _] = transaction(2)?;
    // Below the limit, a send completes at once.
    assert!(poll_once(&mut pin!(publisher.send(&beat, None))).is_ready());
    assert!(poll_once(&mut pin!(publisher.send(&commit, Some(end_lsn(1))))).is_ready());
    assert_eq!(publisher.in_flight(), 2);
    {
        // At the limit, it waits for an acknowledgement.
        let mut third = pin!(publisher.send(&next, None));
        assert!(poll_once(&mut third).is_pending());
        assert!(poll_once(&mut third).is_pending());
        cluster.broker_up(1)?;
        tokio::time::timeout(LONG, third).await??;
    }
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(1)));
    assert_eq!(publisher.stats().acked, 5);
    publisher.close(LONG).await?;
    Ok(())
}

#[tokio::test]
async fn publish_delivery_resumes_when_a_mock_broker_comes_back() -> TestResult {
    let topic = "replicator.mock_resume";
    let cluster = mock_cluster(topic)?;
    let bootstrap = cluster.bootstrap_servers();
    let codec = codec()?;
    let mut publisher = Publisher::new(
        &settings(&bootstrap),
        PublisherConfig::new(topic),
        codec.clone(),
    )?;
    send_transaction(&mut publisher, 0).await?;
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(0)));

    let errors_before = publisher.stats().client_errors;
    cluster.broker_down(1)?;
    send_transaction(&mut publisher, 1).await?;
    wait_until("the producer to notice the broker is down", LONG, || {
        let errors = publisher.stats().client_errors;
        async move { Ok((errors > errors_before).then_some(())) }
    })
    .await?;
    // Nothing of transaction 1 is acknowledged, so its commit is not durable.
    assert_eq!(publisher.durable()?, Some(end_lsn(0)));
    assert_eq!(publisher.in_flight(), 2);

    cluster.broker_up(1)?;
    let durable = wait_until("delivery to resume", LONG, || {
        let durable = publisher
            .durable()
            .map_err(|e| HarnessError::Other(e.to_string()));
        async move { Ok(durable?.filter(|lsn| *lsn == end_lsn(1))) }
    })
    .await?;
    assert_eq!(durable, end_lsn(1));
    assert_eq!(publisher.stats().failed, 0);
    publisher.close(LONG).await?;

    let records = consume(mock_consumer_config(&bootstrap), topic, 4, true).await?;
    let decoded = records
        .iter()
        .map(|(_, payload, _, _)| codec.decode(payload))
        .collect::<Result<Vec<_>, _>>()?;
    let expected: Vec<Envelope> = [transaction(0)?, transaction(1)?].concat();
    assert_eq!(decoded, expected);
    Ok(())
}

#[tokio::test]
async fn publish_retried_produce_errors_neither_duplicate_nor_reorder() -> TestResult {
    let topic = "replicator.mock_retries";
    let cluster = mock_cluster(topic)?;
    let bootstrap = cluster.bootstrap_servers();
    let codec = codec()?;
    let mut publisher = Publisher::new(
        &settings(&bootstrap),
        PublisherConfig::new(topic),
        codec.clone(),
    )?;
    send_transaction(&mut publisher, 0).await?;
    publisher.flush(LONG).await?;
    // The next produce requests fail with retriable errors; librdkafka retries them.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    for k in 1..10 {
        send_transaction(&mut publisher, k).await?;
    }
    assert_eq!(publisher.flush(LONG).await?, Some(end_lsn(9)));
    let stats = publisher.stats();
    assert_eq!((stats.sent, stats.acked, stats.failed), (20, 20, 0));
    publisher.close(LONG).await?;

    let records = consume(mock_consumer_config(&bootstrap), topic, 20, true).await?;
    let mut expected = Vec::new();
    for k in 0..10 {
        expected.extend(transaction(k)?);
    }
    let decoded = records
        .iter()
        .map(|(_, payload, _, _)| codec.decode(payload))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(decoded, expected);
    Ok(())
}

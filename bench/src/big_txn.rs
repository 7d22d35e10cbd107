//! One transaction of N rows through capture: the reader must publish it with flat memory
//! (the capture issue's bound: peak RSS under 128 MB for a million rows).
//!
//! Method: a fresh region database set up for capture, `replicator capture` running (the release
//! build beside this binary), then one `INSERT … SELECT generate_series` of N `css_templates`
//! rows in a single transaction. The reader's VmRSS is sampled every 100 ms and its VmHWM read
//! at the end; the run ends when the slot confirmed the transaction (which it does only after
//! the broker acknowledged every record) and the topic holds all N changes. `dev/bench big-txn`
//! runs a million rows (about 7 minutes here: the insert alone takes 5 with the triggers);
//! `dev/bench all` runs fewer, to fit its time budget, and says how many.

use std::time::{Duration, Instant};

use envelope::{Body, Codec};
use harness::{unique_name, wait_until, HarnessError, Lab, Sidecar};
use serde_json::json;

use crate::report::{count, mib, Line, Report};
use crate::{rss, slot};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub(crate) async fn run(rows: u64, region: &str) -> Result<Report> {
    let lab = Lab::get()?;
    let db = lab.region(region)?.fresh_db("bench_bigtxn").await?;
    let client = db.connect().await?;
    let (slot, publication, topic) = (
        db.unique_name("slot"),
        db.unique_name("pub"),
        unique_name("bench_topic"),
    );
    let env = [("REPLICATOR_DATABASE_URL", db.conninfo())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    harness::run_setup(&db, &slot, &publication).await?;
    let reader = Sidecar::start(
        &[
            "capture",
            "--region",
            region,
            "--slot",
            &slot,
            "--publication",
            &publication,
            "--topic",
            &topic,
            "--kafka-brokers",
            lab.broker(),
            "--heartbeat-interval",
            "200ms",
        ],
        &env,
    )?;
    wait_until("the reader to stream", Duration::from_secs(60), || {
        let (client, slot) = (&client, &slot);
        async move {
            let active: bool = client
                .query_one(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[slot],
                )
                .await
                .map_err(|e| HarnessError::Other(e.to_string()))?
                .get(0);
            Ok(active.then_some(()))
        }
    })
    .await?;
    let (_, idle_hwm) = rss::of(reader.pid()).ok_or("the reader died")?;

    let sampler = rss::Sampler::start(vec![reader.pid()], Duration::from_millis(100));

    let started = Instant::now();
    client
        .execute(
            "INSERT INTO css_templates (template_name, css, uuid)
             SELECT 'template ' || g, 'body { margin: ' || g || 'px }', gen_random_uuid()
             FROM generate_series(1, $1::bigint) AS g",
            &[&i64::try_from(rows)?],
        )
        .await?;
    let insert_seconds = started.elapsed().as_secs_f64();
    let end = slot::current_lsn(&client).await?;
    let committed = Instant::now();
    let confirmed = slot::wait_confirmed(&client, &slot, &end, Duration::from_secs(3600)).await;
    if let Err(e) = confirmed {
        return Err(format!("{e}\n--- capture log ---\n{}", reader.log()).into());
    }
    let publish_seconds = committed.elapsed().as_secs_f64();
    let (_, peak) = rss::of(reader.pid()).ok_or("the reader died")?;
    drop(reader);
    let max_sampled = sampler.stop().await.first().copied().unwrap_or(0);
    let changes = count_changes(lab, &topic, rows).await?;
    let json = json!({
        "measure": "big-txn",
        "rows": rows,
        "table": "css_templates",
        "insert_seconds_with_triggers": insert_seconds,
        "commit_to_confirmed_seconds": publish_seconds,
        "changes_on_topic": changes,
        "reader_peak_rss_bytes": peak,
        "reader_peak_rss_mib": mib(peak),
        "reader_max_sampled_rss_mib": mib(max_sampled),
        "reader_idle_peak_rss_mib": mib(idle_hwm),
        "bound_mib": 128,
        "within_bound": peak < 128 * 1048576,
    });
    let mut lines = vec![Line::new(
        format!("P5 peak RSS, {}-row transaction", count(rows)),
        format!("{:.1} MiB (idle {:.1})", mib(peak), mib(idle_hwm)),
    )
    .target("< 128 MiB", peak < 128 * 1048576)];
    if changes != rows {
        lines.push(Line::new(
            "P5 (context) changes on the topic",
            format!("{changes} of {rows}"),
        ));
    }
    Ok(Report { json, lines })
}

/// Counts the change records on `topic` (all of them, decoding each).
async fn count_changes(lab: &Lab, topic: &str, expected: u64) -> Result<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        harness::consumer_config(lab, &unique_name("bench_count")).create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    drop(assignment);
    let codec = Codec::new()?;
    let counted = tokio::task::spawn_blocking(move || -> std::result::Result<u64, String> {
        let (mut changes, mut idle) = (0u64, 0);
        while idle < 50 && changes < expected {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    idle = 0;
                    let envelope = codec
                        .decode(m.payload().unwrap_or_default())
                        .map_err(|e| e.to_string())?;
                    if matches!(envelope.body, Body::Change(_)) {
                        changes += 1;
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => idle += 1,
            }
        }
        Ok(changes)
    })
    .await??;
    Ok(counted)
}

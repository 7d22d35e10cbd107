//! P7, source write overhead: what the sidecar's triggers (ADR 0001: versioning rows written in
//! the same transaction as every change) cost the writes Superset itself makes.
//!
//! Method: two fresh databases cloned from the Superset template in region `us`, filled alike
//! (10 users, 50 charts), then `replicator setup` on one of them only (triggers, publication,
//! slot; no sidecar runs, so the figure is the triggers' cost alone — a running reader would add
//! its walsender's decoding to the server's CPU on top). The workload is what a user saving
//! things makes Superset write: per transaction, one dashboard (with a layout and metadata of a
//! realistic size) inserted, its 3 chart links (`dashboard_slices`) and 2 owners
//! (`dashboard_user`) inserted, one chart's `params` updated — statements prepared once, one
//! round trip each, one connection per database, `synchronous_commit` on (the lab is durable:
//! every commit waits for the disk). To cancel out the machine's drift (it may be shared), the
//! transactions run in rounds alternating between the two databases, and each side's time is the
//! sum of its rounds. Ratio = with triggers / without (target ≤ 1.25).
//!
//! The bulk case, as a second figure: one `INSERT … SELECT generate_series` of `bulk_rows`
//! `css_templates` rows in a single transaction, in each database. The WAL each side writes is
//! reported too (the cluster's WAL position before and after, outside the timed part; nothing
//! else writes in the bench lab meanwhile).

use std::time::Instant;

use harness::{Lab, TestDb};
use serde_json::json;
use tokio_postgres::Client;

use crate::report::{count, secs, Line, Report};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USERS: i32 = 10;
const CHARTS: i32 = 50;
const ROUNDS: u64 = 4;

/// Users and charts for the workload to link to.
async fn fill(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "INSERT INTO ab_user (id, first_name, last_name, username, email, active, created_on, changed_on)
             SELECT g, 'First', 'Last ' || g, 'user' || g, 'user' || g || '@example.com', true, now(), now()
             FROM generate_series(1, {USERS}) AS g;
             INSERT INTO slices (slice_name, datasource_type, viz_type, params, uuid, created_on, changed_on,
                                 created_by_fk, changed_by_fk)
             SELECT 'Chart ' || g, 'table', 'echarts_timeseries_line',
                    '{{\"viz_type\": \"echarts_timeseries_line\", \"metrics\": [\"count\"], \"row_limit\": 10000}}',
                    gen_random_uuid(), now(), now(), 1, 1
             FROM generate_series(1, {CHARTS}) AS g;"
        ))
        .await?;
    Ok(())
}

/// A layout of about 1.5 kB naming three charts, like Superset's `position_json`.
fn position_json(charts: [i32; 3]) -> String {
    let items: Vec<String> = charts
        .iter()
        .enumerate()
        .map(|(i, chart)| {
            format!(
                "\"CHART-{i}\": {{\"type\": \"CHART\", \"id\": \"CHART-{i}\", \"children\": [], \
                 \"parents\": [\"ROOT_ID\", \"GRID_ID\", \"ROW-1\"], \"meta\": {{\"chartId\": {chart}, \
                 \"width\": 4, \"height\": 50, \"sliceName\": \"Chart {chart}\", \"uuid\": \"00000000-0000-0000-0000-00000000000{i}\"}}}}"
            )
        })
        .collect();
    format!(
        "{{\"DASHBOARD_VERSION_KEY\": \"v2\", \"ROOT_ID\": {{\"type\": \"ROOT\", \"id\": \"ROOT_ID\", \
         \"children\": [\"GRID_ID\"]}}, \"GRID_ID\": {{\"type\": \"GRID\", \"id\": \"GRID_ID\", \
         \"children\": [\"ROW-1\"], \"parents\": [\"ROOT_ID\"]}}, \"ROW-1\": {{\"type\": \"ROW\", \
         \"id\": \"ROW-1\", \"children\": [\"CHART-0\", \"CHART-1\", \"CHART-2\"], \"parents\": \
         [\"ROOT_ID\", \"GRID_ID\"], \"meta\": {{\"background\": \"BACKGROUND_TRANSPARENT\"}}}}, {}}}",
        items.join(", ")
    )
}

/// Runs transactions `from..to` of the workload; returns the seconds they took and the WAL
/// bytes they wrote (measured outside the timed part).
async fn workload(client: &mut Client, from: u64, to: u64) -> Result<(f64, f64)> {
    let before = crate::slot::current_lsn(client).await?;
    let insert_dashboard = client
        .prepare(
            "INSERT INTO dashboards (dashboard_title, slug, position_json, json_metadata, published,
                                     uuid, created_on, changed_on, created_by_fk, changed_by_fk)
             VALUES ($1, $2, $3, $4, false, gen_random_uuid(), now(), now(), 1, 1) RETURNING id",
        )
        .await?;
    let link_charts = client
        .prepare(
            "INSERT INTO dashboard_slices (dashboard_id, slice_id) VALUES ($1, $2), ($1, $3), ($1, $4)",
        )
        .await?;
    let add_owners = client
        .prepare("INSERT INTO dashboard_user (user_id, dashboard_id) VALUES ($2, $1), ($3, $1)")
        .await?;
    let update_chart = client
        .prepare(
            "UPDATE slices SET params = $2, changed_on = now(), last_saved_at = now(),
                               last_saved_by_fk = 1 WHERE id = $1",
        )
        .await?;
    let started = Instant::now();
    for n in from..to {
        let k = i32::try_from(n)?;
        let charts = [k % CHARTS + 1, (k + 7) % CHARTS + 1, (k + 19) % CHARTS + 1];
        let owners = [k % USERS + 1, (k + 3) % USERS + 1];
        let metadata = format!(
            "{{\"color_scheme\": \"supersetColors\", \"refresh_frequency\": 0, \"native_filter_configuration\": [], \
             \"chart_configuration\": {{}}, \"positions\": null, \"shared_label_colors\": [], \"saved\": {n}}}"
        );
        let params = format!(
            "{{\"viz_type\": \"echarts_timeseries_line\", \"metrics\": [\"count\"], \"row_limit\": {n}}}"
        );
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                &insert_dashboard,
                &[
                    &format!("Sales {n}"),
                    &format!("sales-{n}"),
                    &position_json(charts),
                    &metadata,
                ],
            )
            .await?;
        let id: i32 = row.get(0);
        let [c0, c1, c2] = charts;
        tx.execute(&link_charts, &[&id, &c0, &c1, &c2]).await?;
        let [o0, o1] = owners;
        tx.execute(&add_owners, &[&id, &o0, &o1]).await?;
        tx.execute(&update_chart, &[&c0, &params]).await?;
        tx.commit().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, wal_since(client, &before).await?))
}

async fn wal_since(client: &Client, lsn: &str) -> Result<f64> {
    Ok(client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&lsn],
        )
        .await?
        .get(0))
}

/// One bulk insert; returns its seconds and the WAL bytes it wrote.
async fn bulk(client: &Client, rows: u64) -> Result<(f64, f64)> {
    let before = crate::slot::current_lsn(client).await?;
    let started = Instant::now();
    client
        .execute(
            "INSERT INTO css_templates (template_name, css, uuid)
             SELECT 'template ' || g, 'body { margin: ' || g || 'px }', gen_random_uuid()
             FROM generate_series(1, $1::bigint) AS g",
            &[&i64::try_from(rows)?],
        )
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, wal_since(client, &before).await?))
}

async fn fresh(lab: &Lab) -> Result<(TestDb, Client)> {
    let db = lab.region("us")?.fresh_db("bench_p7").await?;
    let client = db.connect().await?;
    fill(&client).await?;
    Ok((db, client))
}

pub(crate) async fn run(transactions: u64, bulk_rows: u64) -> Result<Report> {
    let lab = Lab::get()?;
    let (_plain_db, mut plain) = fresh(lab).await?;
    let (with_db, mut with) = fresh(lab).await?;
    let (slot, publication) = (with_db.unique_name("slot"), with_db.unique_name("pub"));
    harness::run_setup(&with_db, &slot, &publication).await?;

    eprintln!("P7 overhead: {transactions} transactions in {ROUNDS} alternating rounds per side");
    let (mut without_s, mut with_s, mut without_wal, mut with_wal) = (0.0, 0.0, 0.0, 0.0);
    let per_round = transactions.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let (from, to) = (
            round * per_round,
            ((round + 1) * per_round).min(transactions),
        );
        let (seconds, wal) = workload(&mut plain, from, to).await?;
        (without_s, without_wal) = (without_s + seconds, without_wal + wal);
        let (seconds, wal) = workload(&mut with, from, to).await?;
        (with_s, with_wal) = (with_s + seconds, with_wal + wal);
    }

    eprintln!("P7 overhead: bulk insert of {bulk_rows} rows, each side");
    let (bulk_without, wal_without) = bulk(&plain, bulk_rows).await?;
    let (bulk_with, wal_with) = bulk(&with, bulk_rows).await?;
    let ratio = with_s / without_s;
    let bulk_ratio = bulk_with / bulk_without;
    let json = json!({
        "measure": "overhead",
        "transactions": transactions,
        "rounds": ROUNDS,
        "statements_per_transaction": 4,
        "without_triggers_seconds": without_s,
        "with_triggers_seconds": with_s,
        "without_ms_per_transaction": without_s * 1000.0 / transactions as f64,
        "with_ms_per_transaction": with_s * 1000.0 / transactions as f64,
        "without_wal_bytes": without_wal,
        "with_wal_bytes": with_wal,
        "ratio_with_over_without": ratio,
        "bulk": {
            "rows": bulk_rows,
            "without_seconds": bulk_without,
            "with_seconds": bulk_with,
            "without_wal_bytes": wal_without,
            "with_wal_bytes": wal_with,
            "ratio_with_over_without": bulk_ratio,
        },
        "target": "<= 1.25",
    });
    let lines = vec![
        Line::new(
            format!(
                "P7 write overhead, {} Superset-like txns",
                count(transactions)
            ),
            format!(
                "{} with triggers, {:.0} MiB WAL",
                secs(with_s),
                with_wal / 1_048_576.0
            ),
        )
        .reference(format!(
            "{} without, {:.0} MiB WAL",
            secs(without_s),
            without_wal / 1_048_576.0
        ))
        .ratio(ratio)
        .target("≤ 1.25", ratio <= 1.25),
        Line::new(
            format!("P7 bulk INSERT … SELECT, {} rows", count(bulk_rows)),
            format!(
                "{} with, {:.0} MiB WAL",
                secs(bulk_with),
                wal_with / 1_048_576.0
            ),
        )
        .reference(format!(
            "{} without, {:.0} MiB WAL",
            secs(bulk_without),
            wal_without / 1_048_576.0
        ))
        .ratio(bulk_ratio)
        .target("≤ 1.25", bulk_ratio <= 1.25),
    ];
    Ok(Report { json, lines })
}

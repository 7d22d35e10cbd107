//! `replicator snapshot` end to end: a realistic region (databases, datasets with columns and
//! metrics, charts, dashboards whose layout and metadata embed ids, associations, tags, a deleted
//! dashboard) is set up, snapshotted by the binary as a subprocess, and what reaches the topic is
//! decoded and checked against the sidecar's versioning state; then the consistency argument is
//! run on real data: the snapshot merged (with `conflict::merge`) with what `replicator capture`
//! publishes afterwards equals a snapshot taken at the end, also when writes run during the
//! snapshot.

// Test code, helpers included: a failed unwrap, expect, index or panic is a failed test, with
// the value in the message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conflict::{EntityState, FieldPath, FieldVersion};
use envelope::{Body, Codec, EntityChange, Envelope};
use harness::{read_topic, wait_until, HarnessError, Lab, Sidecar, TestDb, TestTopic};
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;
type State = EntityState<Value>;
type Key = (String, Uuid);

/// A seeded region database with capture set up (setup ran; no reader yet).
struct Region {
    db: TestDb,
    client: Client,
    region: String,
    slot: String,
    publication: String,
}

impl Region {
    /// A fresh database of `region`, seeded with `seed_sql`-style realistic content, then set up.
    async fn seeded(
        region: &str,
        label: &str,
        extra_columns: i32,
    ) -> Result<Region, Box<dyn Error>> {
        let db = Lab::get()?.region(region)?.fresh_db(label).await?;
        let client = db.connect().await?;
        seed(&client, extra_columns).await?;
        let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
        let region = Region {
            db,
            client,
            region: region.to_owned(),
            slot,
            publication,
        };
        let log = region
            .run_to_end(
                &[
                    "setup",
                    "--region",
                    &region.region,
                    "--slot",
                    &region.slot,
                    "--publication",
                    &region.publication,
                ],
                "setup",
            )
            .await?;
        assert!(log.contains("backfill"), "{log}");
        Ok(region)
    }

    /// Runs the binary with `args` until it exits; fails unless it exits 0. Returns its log.
    async fn run_to_end(&self, args: &[&str], what: &str) -> Result<String, Box<dyn Error>> {
        let mut process =
            Sidecar::start(args, &[("REPLICATOR_DATABASE_URL", &self.db.conninfo())])?;
        let code = wait_until(
            &format!("{what} to finish"),
            Duration::from_secs(120),
            || {
                let code = process.exited();
                async move { Ok(code) }
            },
        )
        .await?;
        let log = process.log();
        assert_eq!(code, 0, "{what} failed:\n{log}");
        Ok(log)
    }

    fn snapshot_process(
        &self,
        topic: &str,
        transaction_size: usize,
    ) -> Result<Sidecar, HarnessError> {
        let lab = Lab::get()?;
        Sidecar::start(
            &[
                "snapshot",
                "--region",
                &self.region,
                "--slot",
                &self.slot,
                "--topic",
                topic,
                "--kafka-brokers",
                lab.broker(),
                "--transaction-size",
                &transaction_size.to_string(),
            ],
            &[("REPLICATOR_DATABASE_URL", &self.db.conninfo())],
        )
    }

    /// `replicator snapshot` to `topic`, to the end; its report.
    async fn snapshot(
        &self,
        topic: &str,
        transaction_size: usize,
    ) -> Result<Report, Box<dyn Error>> {
        let mut process = self.snapshot_process(topic, transaction_size)?;
        let code = wait_until("the snapshot to finish", Duration::from_secs(120), || {
            let code = process.exited();
            async move { Ok(code) }
        })
        .await?;
        let log = process.log();
        assert_eq!(code, 0, "snapshot failed:\n{log}");
        Report::parse(&log)
    }

    fn capture_process(&self, topic: &str) -> Result<Sidecar, HarnessError> {
        let lab = Lab::get()?;
        Sidecar::start(
            &[
                "capture",
                "--region",
                &self.region,
                "--slot",
                &self.slot,
                "--publication",
                &self.publication,
                "--topic",
                topic,
                "--kafka-brokers",
                lab.broker(),
                "--heartbeat-interval",
                "200ms",
            ],
            &[("REPLICATOR_DATABASE_URL", &self.db.conninfo())],
        )
    }

    async fn id(&self, sql: &str) -> Result<i32, Box<dyn Error>> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }
}

/// What the snapshot printed.
#[derive(Debug)]
struct Report {
    lsn: String,
    records: usize,
    start_offset: i64,
    text: String,
}

impl Report {
    fn parse(log: &str) -> Result<Report, Box<dyn Error>> {
        let after = |prefix: &str| -> Result<&str, Box<dyn Error>> {
            let at = log
                .find(prefix)
                .ok_or_else(|| format!("no {prefix:?} in the report:\n{log}"))?;
            Ok(&log[at + prefix.len()..])
        };
        let word = |text: &str| text.split([' ', ':', '\n']).next().unwrap_or("").to_owned();
        let lsn = word(after(" at LSN ")?);
        let published = after("published to topic ")?;
        let records = published
            .split(": ")
            .nth(1)
            .map(word)
            .ok_or("no record count")?
            .parse()?;
        let start_offset = word(after(" from offset ")?).parse()?;
        Ok(Report {
            lsn,
            records,
            start_offset,
            text: log.to_owned(),
        })
    }
}

/// Superset-shaped content: two users and roles, a database, two datasets (columns, metrics,
/// folders), a system and a custom theme, a CSS template, three charts (params and query context
/// with dataset ids, a deck.gl chart listing the others), three dashboards (layout and metadata
/// embedding chart and dataset ids, a theme), every association table, an embedded config, a
/// saved query, owner/type/custom tags on objects, and a row-level security filter.
/// `extra_columns` more dataset columns make a larger snapshot.
async fn seed(client: &Client, extra_columns: i32) -> TestResult {
    client
        .batch_execute(
            "INSERT INTO ab_user (id, first_name, last_name, username, email) VALUES
               (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com'),
               (nextval('ab_user_id_seq'), 'Alice', 'Analyst', 'alice', 'alice@example.com');
             INSERT INTO ab_role (id, name) VALUES
               (nextval('ab_role_id_seq'), 'Admin'), (nextval('ab_role_id_seq'), 'Alpha');
             INSERT INTO dbs (database_name, sqlalchemy_uri, password, uuid, created_on, changed_on,
                              created_by_fk, expose_in_sqllab, allow_run_async, cache_timeout, extra)
               SELECT 'examples', 'postgresql://superset:hunter2@warehouse/examples', '\\x0102',
                      gen_random_uuid(), '2026-01-02 03:04:05.678', now(), id, true, false, 300,
                      '{\"metadata_params\": {}}'
               FROM ab_user WHERE username = 'admin';
             INSERT INTO tables (table_name, schema, database_id, uuid, created_on, created_by_fk,
                                 is_featured, description)
               SELECT t, 'public', d.id, gen_random_uuid(), now(), u.id, false, 'Dataset ' || t
               FROM dbs d, ab_user u, unnest(ARRAY['sales', 'customers']) AS t
               WHERE u.username = 'admin';
             UPDATE tables SET perm = '[examples].[' || table_name || '](id:' || id || ')';
             INSERT INTO table_columns (table_id, column_name, type, is_dttm, groupby, filterable,
                                        uuid, created_on)
               SELECT t.id, c, 'VARCHAR', c = 'ds', true, true, gen_random_uuid(), now()
               FROM tables t, unnest(ARRAY['ds', 'region', 'amount']) AS c;
             INSERT INTO sql_metrics (table_id, metric_name, expression, metric_type, uuid,
                                      currency, d3format)
               SELECT t.id, 'sum__amount', 'SUM(amount)', 'sum', gen_random_uuid(),
                      '{\"symbol\": \"EUR\", \"symbolPosition\": \"suffix\"}', ',.2f'
               FROM tables t;
             UPDATE tables t SET folders = json_build_array(json_build_object(
                 'uuid', '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', 'type', 'folder', 'name', 'Metrics',
                 'children', (SELECT json_agg(json_build_object('uuid', m.uuid, 'type', 'metric'))
                              FROM sql_metrics m WHERE m.table_id = t.id)));
             INSERT INTO themes (theme_name, json_data, is_system, is_system_default, is_system_dark, uuid)
               VALUES ('THEME_DEFAULT', '{\"algorithm\": \"default\"}', true, true, false, gen_random_uuid()),
                      ('Corporate', '{\"token\": {\"colorPrimary\": \"#123456\"}}', false, false, false,
                       gen_random_uuid());
             INSERT INTO css_templates (template_name, css, uuid)
               VALUES ('Compact', '.dashboard { padding: 0 }', gen_random_uuid());
             INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type, uuid,
                                 created_on, created_by_fk, perm)
               SELECT n, 'table', t.id, 'table', gen_random_uuid(), now(), u.id,
                      '[examples].[sales](id:' || t.id || ')'
               FROM tables t, ab_user u, (VALUES ('Revenue'), ('Orders')) AS v (n)
               WHERE t.table_name = 'sales' AND u.username = 'admin';
             INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type, uuid)
               SELECT 'Layers', 'deck_multi', t.id, 'table', gen_random_uuid()
               FROM tables t WHERE t.table_name = 'customers';
             UPDATE slices s SET
               params = json_build_object('datasource', s.datasource_id || '__table',
                                          'viz_type', s.viz_type, 'row_limit', 100,
                                          'slice_id', s.id,
                                          'deck_slices', CASE WHEN s.viz_type = 'deck_multi' THEN
                                              (SELECT json_agg(o.id ORDER BY o.id) FROM slices o
                                               WHERE o.viz_type <> 'deck_multi') END)::text,
               query_context = json_build_object(
                   'datasource', json_build_object('id', s.datasource_id, 'type', 'table'),
                   'queries', json_build_array(json_build_object(
                       'datasource', json_build_object('id', s.datasource_id, 'type', 'table'))),
                   'form_data', json_build_object('datasource', s.datasource_id || '__table',
                                                  'slice_id', s.id))::text;
             INSERT INTO dashboards (dashboard_title, slug, published, uuid, theme_id, created_by_fk, css)
               SELECT 'Sales', 'sales', true, gen_random_uuid(), th.id, u.id, ''
               FROM themes th, ab_user u WHERE th.theme_name = 'Corporate' AND u.username = 'admin';
             INSERT INTO dashboards (dashboard_title, slug, published, uuid)
               VALUES ('Customers', 'customers', false, gen_random_uuid()),
                      ('Scratch', NULL, false, gen_random_uuid());
             INSERT INTO dashboard_slices (dashboard_id, slice_id)
               SELECT d.id, s.id FROM dashboards d, slices s
               WHERE (d.dashboard_title, s.slice_name) IN
                     (('Sales', 'Revenue'), ('Sales', 'Orders'), ('Customers', 'Layers'),
                      ('Scratch', 'Revenue'));
             INSERT INTO dashboard_user (dashboard_id, user_id)
               SELECT d.id, u.id FROM dashboards d, ab_user u
               WHERE (d.dashboard_title, u.username) IN
                     (('Sales', 'admin'), ('Sales', 'alice'), ('Customers', 'alice'),
                      ('Scratch', 'admin'));
             INSERT INTO dashboard_roles (dashboard_id, role_id)
               SELECT d.id, r.id FROM dashboards d, ab_role r
               WHERE d.dashboard_title = 'Sales' AND r.name = 'Alpha';
             INSERT INTO slice_user (slice_id, user_id)
               SELECT s.id, u.id FROM slices s, ab_user u WHERE u.username = 'admin';
             INSERT INTO sqlatable_user (table_id, user_id)
               SELECT t.id, u.id FROM tables t, ab_user u
               WHERE t.table_name = 'sales' AND u.username = 'admin';
             INSERT INTO embedded_dashboards (dashboard_id, allow_domain_list, uuid)
               SELECT id, 'https://intranet.example.com', gen_random_uuid()
               FROM dashboards WHERE dashboard_title = 'Sales';
             INSERT INTO saved_query (db_id, user_id, label, schema, sql, uuid)
               SELECT d.id, u.id, 'Top customers', 'public', 'SELECT 1', gen_random_uuid()
               FROM dbs d, ab_user u WHERE u.username = 'alice';
             INSERT INTO tag (name, type)
               SELECT 'owner:' || id, 'owner' FROM ab_user WHERE username = 'admin';
             INSERT INTO tag (name, type) VALUES ('type:dashboard', 'type'), ('finance', 'custom');
             INSERT INTO tagged_object (tag_id, object_id, object_type)
               SELECT t.id, d.id, 'dashboard' FROM tag t, dashboards d
               WHERE t.type IN ('owner', 'type');
             INSERT INTO tagged_object (tag_id, object_id, object_type)
               SELECT t.id, s.id, 'chart' FROM tag t, slices s
               WHERE t.name = 'finance' AND s.slice_name = 'Revenue';
             INSERT INTO row_level_security_filters (name, clause, filter_type, group_key)
               VALUES ('EMEA only', 'region = ''EMEA''', 'Regular', 'region');
             INSERT INTO rls_filter_tables (rls_filter_id, table_id)
               SELECT f.id, t.id FROM row_level_security_filters f, tables t
               WHERE t.table_name = 'sales';
             INSERT INTO rls_filter_roles (rls_filter_id, role_id)
               SELECT f.id, r.id FROM row_level_security_filters f, ab_role r WHERE r.name = 'Alpha';",
        )
        .await?;
    client
        .execute(
            "INSERT INTO table_columns (table_id, column_name, type, uuid)
             SELECT t.id, 'extra_' || n, 'BIGINT', gen_random_uuid()
             FROM tables t, generate_series(1, $1) AS n WHERE t.table_name = 'customers'",
            &[&extra_columns],
        )
        .await?;
    // The layout and metadata embed chart and dataset ids, as Superset writes them.
    let charts: Vec<(String, i32, String)> = client
        .query(
            "SELECT slice_name, id, uuid::text FROM slices ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let dataset: i32 = client
        .query_one("SELECT id FROM tables WHERE table_name = 'sales'", &[])
        .await?
        .get(0);
    for (title, chart_names) in [
        ("Sales", vec!["Revenue", "Orders"]),
        ("Customers", vec!["Layers"]),
        ("Scratch", vec!["Revenue"]),
    ] {
        let on: Vec<&(String, i32, String)> = charts
            .iter()
            .filter(|(name, _, _)| chart_names.contains(&name.as_str()))
            .collect();
        let mut position = json!({"DASHBOARD_VERSION_KEY": "v2",
            "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]}});
        for (_, id, uuid) in &on {
            position[format!("CHART-{id}")] = json!({"type": "CHART", "id": format!("CHART-{id}"),
                "children": [], "meta": {"chartId": id, "uuid": uuid, "width": 4, "height": 50}});
        }
        let first = on[0].1;
        let all: Vec<i32> = on.iter().map(|(_, id, _)| *id).collect();
        let metadata = json!({
            "native_filter_configuration": [{"id": "NATIVE_FILTER-1", "name": "Region",
                "targets": [{"datasetId": dataset, "column": {"name": "region"}}],
                "scope": {"rootPath": ["ROOT_ID"], "excluded": [first]},
                "chartsInScope": all}],
            "chart_configuration": {first.to_string(): {"id": first,
                "crossFilters": {"scope": "global", "chartsInScope": all}}},
            "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": []},
                "chartsInScope": all},
            "timed_refresh_immune_slices": [first],
            "expanded_slices": {first.to_string(): true},
            "default_filters": json!({first.to_string(): {"region": ["EMEA"]}}).to_string(),
            "refresh_frequency": 0,
            "color_scheme": "supersetColors"
        });
        client
            .execute(
                "UPDATE dashboards SET position_json = $1, json_metadata = $2 WHERE dashboard_title = $3",
                &[&position.to_string(), &metadata.to_string(), &title],
            )
            .await?;
    }
    Ok(())
}

/// Every envelope of `topic`, with its offset, once at least `at_least` records are there.
async fn envelopes(topic: &str, at_least: usize) -> Result<Vec<(i64, Envelope)>, Box<dyn Error>> {
    let codec = Codec::new()?;
    let records = read_topic(Lab::get()?, topic, at_least, Duration::from_secs(60)).await?;
    Ok(records
        .iter()
        .map(|(offset, _, payload)| Ok((*offset, codec.decode(payload)?)))
        .collect::<Result<Vec<_>, envelope::Error>>()?)
}

/// Every envelope of `topic` once `done` holds for them.
async fn envelopes_until(
    topic: &str,
    what: &str,
    capture: &Sidecar,
    done: impl Fn(&[(i64, Envelope)]) -> bool,
) -> Result<Vec<(i64, Envelope)>, Box<dyn Error>> {
    let lab = Lab::get()?;
    let codec = Codec::new()?;
    let found = wait_until(what, Duration::from_secs(90), || {
        let (codec, done) = (&codec, &done);
        async move {
            let records = match read_topic(lab, topic, 1, Duration::from_secs(10)).await {
                Ok(records) => records,
                Err(HarnessError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let envelopes = records
                .iter()
                .map(|(offset, _, payload)| Ok((*offset, codec.decode(payload)?)))
                .collect::<Result<Vec<_>, envelope::Error>>()
                .map_err(|e| HarnessError::Other(format!("undecodable record: {e}")))?;
            Ok(done(&envelopes).then_some(envelopes))
        }
    })
    .await;
    if found.is_err() {
        eprintln!("{}", capture.log());
    }
    Ok(found?)
}

fn change(envelope: &Envelope) -> Option<&EntityChange> {
    match &envelope.body {
        Body::Change(change) => Some(change),
        _ => None,
    }
}

/// The partial (or full) entity state a change record carries.
fn state_of(change: &EntityChange) -> State {
    let mut exists = None;
    let mut fields = BTreeMap::new();
    for field in &change.fields {
        if field.path.is_existence() {
            let alive = field.value.as_bool().expect("$exists is a boolean");
            exists = Some(FieldVersion::new(alive, field.dot, field.hlc));
        } else {
            fields.insert(
                field.path.clone(),
                FieldVersion::new(field.value.clone(), field.dot, field.hlc),
            );
        }
    }
    EntityState::from_parts(change.clock.clone(), exists, fields)
        .unwrap_or_else(|e| panic!("{} {}: {e}", change.table, change.entity))
}

/// Merges every change among `envelopes` into `states` (a value differing for one dot fails).
fn fold<'a>(states: &mut BTreeMap<Key, State>, envelopes: impl IntoIterator<Item = &'a Envelope>) {
    for change in envelopes.into_iter().filter_map(change) {
        let key = (change.table.clone(), change.entity);
        let local = states.remove(&key).unwrap_or_default();
        let merged = conflict::merge(&local, &state_of(change))
            .unwrap_or_else(|e| panic!("merging {key:?}: {e}"));
        states.insert(key, merged.state);
    }
}

/// `merged` is the state `later` (a full snapshot) holds: the same entities, the same clocks and
/// existence, and for live entities the same fields. (A snapshot's tombstone carries no field
/// values: the row is gone; merged tombstones keep the values they last had.)
fn assert_same_state(merged: &BTreeMap<Key, State>, later: &BTreeMap<Key, State>) {
    let merged_keys: BTreeSet<&Key> = merged.keys().collect();
    let later_keys: BTreeSet<&Key> = later.keys().collect();
    assert_eq!(
        merged_keys
            .symmetric_difference(&later_keys)
            .collect::<Vec<_>>(),
        Vec::<&&Key>::new(),
        "the same entities"
    );
    for (key, want) in later {
        let got = &merged[key];
        assert_eq!(got.clock(), want.clock(), "clock of {key:?}");
        assert_eq!(got.existence(), want.existence(), "existence of {key:?}");
        if want.is_alive() {
            assert_eq!(got.fields(), want.fields(), "fields of {key:?}");
        }
    }
}

fn path(name: &str) -> FieldPath {
    FieldPath::new(name).unwrap()
}

#[tokio::test]
async fn snapshot_publishes_every_live_entity_once_with_its_full_state_and_every_tombstone(
) -> TestResult {
    let region = Region::seeded("us", "snap_full", 0).await?;
    // After setup, through the triggers: a dashboard deleted (its associations go with it, by
    // FK cascade) and another renamed (its clock moves on).
    region
        .client
        .batch_execute(
            "DELETE FROM dashboards WHERE dashboard_title = 'Scratch';
             UPDATE dashboards SET dashboard_title = 'Sales 2026' WHERE dashboard_title = 'Sales';",
        )
        .await?;
    let topic = TestTopic::create(Lab::get()?, "snap_full", 1).await?;
    let transaction_size = 4;
    let report = region.snapshot(topic.name(), transaction_size).await?;
    let published = envelopes(topic.name(), report.records).await?;
    assert_eq!(published.len(), report.records, "{}", report.text);

    // Snapshot transactions: one LSN, each numbered from 0 and closed by a commit counting its
    // changes, at most `transaction_size` changes each.
    let mut open = 0u64;
    for (_, envelope) in &published {
        assert_eq!(envelope.commit_lsn.to_string(), report.lsn);
        assert_eq!(envelope.source.as_str(), "us");
        assert_eq!(envelope.seq.0, open, "seq numbers each transaction from 0");
        match &envelope.body {
            Body::Change(_) => open += 1,
            Body::Commit { change_count } => {
                assert_eq!(*change_count, open);
                assert!(open >= 1 && open <= transaction_size as u64);
                open = 0;
            }
            Body::Heartbeat { .. } => panic!("a snapshot publishes no heartbeat"),
        }
    }
    assert_eq!(open, 0, "the last transaction is closed");

    // Exactly once each, with the clock and every stamp the sidecar holds for it.
    let mut by_entity: BTreeMap<Key, &EntityChange> = BTreeMap::new();
    for change in published.iter().filter_map(|(_, e)| change(e)) {
        let key = (change.table.clone(), change.entity);
        assert!(
            by_entity.insert(key.clone(), change).is_none(),
            "{key:?} twice"
        );
    }
    let entities = region
        .client
        .query(
            "SELECT e.table_name, e.uuid, e.clock::text, e.alive,
                    array_agg(f.field ORDER BY f.field), array_agg(f.region ORDER BY f.field),
                    array_agg(f.counter ORDER BY f.field), array_agg(f.hlc ORDER BY f.field)
             FROM replicator.entity e JOIN replicator.field_version f USING (table_name, uuid)
             GROUP BY 1, 2, 3, 4",
            &[],
        )
        .await?;
    assert_eq!(
        entities.len(),
        by_entity.len(),
        "every entity, nothing else"
    );
    let mut tombstones = BTreeSet::new();
    for row in &entities {
        let key: Key = (row.get(0), row.get(1));
        let change = by_entity
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is missing"));
        let clock: BTreeMap<String, u64> = serde_json::from_str(row.get(2))?;
        let published_clock: BTreeMap<String, u64> = change
            .clock
            .iter()
            .map(|(region, counter)| (region.to_string(), counter.0))
            .collect();
        assert_eq!(published_clock, clock, "clock of {key:?}");
        let alive: bool = row.get(3);
        let (fields, regions, counters, hlcs): (Vec<String>, Vec<String>, Vec<i64>, Vec<i64>) =
            (row.get(4), row.get(5), row.get(6), row.get(7));
        let stamps: BTreeMap<&str, (String, u64, i64)> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    f.as_str(),
                    (regions[i].clone(), counters[i] as u64, hlcs[i]),
                )
            })
            .collect();
        let published_fields: BTreeMap<&str, (String, u64, i64)> = change
            .fields
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    (
                        f.dot.region.to_string(),
                        f.dot.counter.0,
                        f.hlc.to_i64().unwrap(),
                    ),
                )
            })
            .collect();
        let exists = change.fields.iter().find(|f| f.path.is_existence());
        if alive {
            assert_eq!(published_fields, stamps, "every stamped field of {key:?}");
            assert_eq!(exists.map(|f| &f.value), Some(&json!(true)), "{key:?}");
        } else {
            tombstones.insert(key.clone());
            assert_eq!(
                published_fields,
                stamps
                    .into_iter()
                    .filter(|(f, _)| *f == "$exists")
                    .collect::<BTreeMap<_, _>>(),
                "a tombstone is its delete's stamp, {key:?}"
            );
            assert_eq!(exists.map(|f| &f.value), Some(&json!(false)), "{key:?}");
        }
    }
    // The deleted dashboard and its two cascaded associations.
    let tables: Vec<&str> = tombstones.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tables,
        ["dashboard_slices", "dashboard_user", "dashboards"],
        "{tombstones:?}"
    );

    // Every live row of every replicated table is there.
    for (table, _) in replicator::policy::superset().replicated() {
        let rows: i64 = region
            .client
            .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
            .await?
            .get(0);
        let live = by_entity
            .iter()
            .filter(|((t, _), c)| {
                t == table
                    && c.fields
                        .iter()
                        .any(|f| f.path.is_existence() && f.value == json!(true))
            })
            .count();
        assert_eq!(live as i64, rows, "live entities of {table}");
        assert!(rows > 0, "the seed covers {table}");
    }

    // Canonical values: references and embedded ids as uuids, no local column.
    let uuid_of = |sql: &str| {
        let client = &region.client;
        let sql = sql.to_owned();
        async move {
            let row = client.query_one(&sql, &[]).await?;
            Ok::<Uuid, tokio_postgres::Error>(row.get(0))
        }
    };
    let sales = uuid_of("SELECT uuid FROM dashboards WHERE slug = 'sales'").await?;
    let revenue = uuid_of("SELECT uuid FROM slices WHERE slice_name = 'Revenue'").await?;
    let dataset = uuid_of("SELECT uuid FROM tables WHERE table_name = 'sales'").await?;
    let dashboard = by_entity[&("dashboards".to_owned(), sales)];
    let value = |change: &EntityChange, name: &str| {
        change
            .fields
            .iter()
            .find(|f| f.path == path(name))
            .map(|f| f.value.clone())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value(dashboard, "dashboard_title"), json!("Sales 2026"));
    let position: Value =
        serde_json::from_str(value(dashboard, "position_json").as_str().unwrap())?;
    let chart_nodes: Vec<&Value> = position
        .as_object()
        .unwrap()
        .values()
        .filter(|n| n["type"] == "CHART")
        .collect();
    assert!(chart_nodes
        .iter()
        .any(|n| n["meta"]["chartId"] == json!(revenue.to_string())));
    let metadata: Value =
        serde_json::from_str(value(dashboard, "json_metadata").as_str().unwrap())?;
    assert_eq!(
        metadata["native_filter_configuration"][0]["targets"][0]["datasetId"],
        json!(dataset.to_string())
    );
    let examples = by_entity
        .iter()
        .find(|((t, _), _)| t == "dbs")
        .map(|(_, c)| *c)
        .unwrap();
    for local in [
        "sqlalchemy_uri",
        "password",
        "encrypted_extra",
        "server_cert",
        "id",
        "uuid",
    ] {
        assert!(
            examples.fields.iter().all(|f| f.path.as_str() != local),
            "{local}"
        );
    }
    assert_eq!(
        value(examples, "created_on"),
        json!("2026-01-02 03:04:05.678"),
        "a timestamp as PostgreSQL prints it"
    );
    assert_eq!(value(examples, "expose_in_sqllab"), json!(true));
    assert!(by_entity
        .iter()
        .filter(|((t, _), _)| t == "tables" || t == "slices")
        .all(|(_, c)| c.fields.iter().all(|f| !f.path.as_str().ends_with("perm"))));
    Ok(())
}

/// Writes after the snapshot, through Superset-like statements: metadata and layout edits, a new
/// chart on a dashboard, a chart deleted (its associations cascade), a tag removed, an owner
/// removed and added back (the same association entity comes back), a tag renamed, a database
/// edited, an embedded config changed, a dataset column added; then a marker dashboard.
async fn later_writes(region: &Region) -> Result<Uuid, Box<dyn Error>> {
    let sales = region
        .id("SELECT id FROM dashboards WHERE slug = 'sales'")
        .await?;
    region
        .client
        .batch_execute(&format!(
            "UPDATE dashboards SET json_metadata = replace(json_metadata, 'supersetColors', 'bnbColors'),
                                   dashboard_title = 'Sales (edited)' WHERE id = {sales};
             UPDATE slices SET slice_name = 'Revenue (EUR)',
                               params = jsonb_set(params::jsonb, '{{row_limit}}', '500')::text
              WHERE slice_name = 'Revenue';
             INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type, params, uuid)
               SELECT 'Margin', 'big_number', id, 'table', '{{\"datasource\": \"' || id || '__table\"}}',
                      gen_random_uuid() FROM tables WHERE table_name = 'sales';
             INSERT INTO dashboard_slices (dashboard_id, slice_id)
               SELECT {sales}, id FROM slices WHERE slice_name = 'Margin';
             INSERT INTO slice_user (slice_id, user_id)
               SELECT s.id, u.id FROM slices s, ab_user u WHERE s.slice_name = 'Margin' AND u.username = 'alice';
             DELETE FROM slices WHERE slice_name = 'Orders';
             DELETE FROM tagged_object WHERE tag_id = (SELECT id FROM tag WHERE name = 'finance');
             DELETE FROM tag WHERE name = 'finance';
             DELETE FROM dashboard_user WHERE dashboard_id = {sales}
               AND user_id = (SELECT id FROM ab_user WHERE username = 'alice');
             INSERT INTO dashboard_user (dashboard_id, user_id)
               SELECT {sales}, id FROM ab_user WHERE username = 'alice';
             UPDATE tag SET name = 'type:dashboards' WHERE name = 'type:dashboard';
             UPDATE dbs SET verbose_name = 'Examples warehouse', cache_timeout = 600;
             UPDATE embedded_dashboards SET allow_domain_list = 'https://intranet.example.com,https://wiki.example.com';
             INSERT INTO table_columns (table_id, column_name, type, uuid)
               SELECT id, 'margin', 'FLOAT', gen_random_uuid() FROM tables WHERE table_name = 'sales';
             INSERT INTO tables (table_name, schema, database_id, uuid, created_on, is_featured,
                                 cache_timeout, folders, description)
               SELECT 'orders_v2', 'sales', id, gen_random_uuid(), '2026-03-04 05:06:07.891011', true,
                      -1, '[{{\"uuid\": \"0b6f7a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b\", \"type\": \"folder\"}}]',
                      E'Orders, v2 \\\\ \"quoted\" é'
               FROM dbs;
             INSERT INTO sql_metrics (table_id, metric_name, expression, uuid, currency)
               SELECT id, 'avg_margin', 'AVG(margin)', gen_random_uuid(),
                      '{{\"symbol\": \"USD\", \"symbolPosition\": \"prefix\"}}'
               FROM tables WHERE table_name = 'orders_v2';
             INSERT INTO dashboards (dashboard_title, position_json, json_metadata, uuid, published,
                                     theme_id, created_on)
               SELECT 'Margins', position_json, json_metadata, gen_random_uuid(), true, theme_id,
                      now() FROM dashboards WHERE id = {sales};"
        ))
        .await?;
    let marker: Uuid = region
        .client
        .query_one(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('marker', gen_random_uuid()) RETURNING uuid",
            &[],
        )
        .await?
        .get(0);
    Ok(marker)
}

fn holds(envelopes: &[(i64, Envelope)], table: &str, entity: Uuid) -> bool {
    envelopes
        .iter()
        .filter_map(|(_, e)| change(e))
        .any(|c| c.table == table && c.entity == entity)
}

#[tokio::test]
async fn snapshot_merged_with_the_changes_captured_after_it_equals_a_snapshot_taken_at_the_end(
) -> TestResult {
    let region = Region::seeded("eu", "snap_merge", 0).await?;
    region
        .client
        .execute(
            "DELETE FROM dashboards WHERE dashboard_title = 'Scratch'",
            &[],
        )
        .await?;
    let lab = Lab::get()?;
    let captured = TestTopic::create(lab, "snap_capture", 1).await?;
    let capture = region.capture_process(captured.name())?;

    let first_topic = TestTopic::create(lab, "snap_first", 1).await?;
    let first = region.snapshot(first_topic.name(), 1000).await?;
    let marker = later_writes(&region).await?;
    let stream = envelopes_until(
        captured.name(),
        "capture to publish the marker",
        &capture,
        |e| holds(e, "dashboards", marker),
    )
    .await?;
    let last_topic = TestTopic::create(lab, "snap_last", 1).await?;
    let last = region.snapshot(last_topic.name(), 1000).await?;

    let mut at_the_end = BTreeMap::new();
    fold(
        &mut at_the_end,
        envelopes(last_topic.name(), last.records)
            .await?
            .iter()
            .map(|(_, e)| e),
    );
    let snapshot = envelopes(first_topic.name(), first.records).await?;
    let first_lsn: pgoutput::Lsn = first.lsn.parse()?;

    // The snapshot ⊔ what capture published for the changes after it.
    let after: Vec<&Envelope> = stream
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.commit_lsn > first_lsn)
        .collect();
    assert!(
        after.iter().filter_map(|e| change(e)).count() >= 15,
        "{after:?}"
    );
    let mut merged = BTreeMap::new();
    fold(&mut merged, snapshot.iter().map(|(_, e)| e));
    fold(&mut merged, after.iter().copied());
    assert_same_state(&merged, &at_the_end);

    // Everything capture ever published on top (changes the snapshot already holds, twice):
    // duplicates change nothing, whatever the order.
    let mut replayed = BTreeMap::new();
    fold(&mut replayed, stream.iter().map(|(_, e)| e));
    fold(&mut replayed, snapshot.iter().map(|(_, e)| e));
    fold(&mut replayed, stream.iter().map(|(_, e)| e));
    assert_same_state(&replayed, &at_the_end);

    // The end state is what the writes made.
    let sales = region
        .id("SELECT id FROM dashboards WHERE slug = 'sales'")
        .await?;
    let sales_uuid: Uuid = region
        .client
        .query_one("SELECT uuid FROM dashboards WHERE id = $1", &[&sales])
        .await?
        .get(0);
    let state = &at_the_end[&("dashboards".to_owned(), sales_uuid)];
    assert_eq!(
        state.field(&path("dashboard_title")).map(|v| &v.value),
        Some(&json!("Sales (edited)"))
    );
    let orders = at_the_end
        .iter()
        .filter(|((t, _), s)| t == "slices" && !s.is_alive())
        .count();
    assert_eq!(orders, 1, "the deleted chart is a tombstone");
    Ok(())
}

#[tokio::test]
async fn snapshot_taken_while_writes_run_bootstraps_a_region_from_its_start_offset() -> TestResult {
    let region = Region::seeded("ap", "snap_live", 400).await?;
    let lab = Lab::get()?;
    let region_topic = TestTopic::create(lab, "snap_region", 1).await?;
    let topic = region_topic.name();
    let capture = region.capture_process(topic)?;
    // The region's topic already holds capture's records (heartbeats) before the snapshot.
    envelopes_until(topic, "capture to run", &capture, |e| !e.is_empty()).await?;

    // A writer renames a chart in a loop, before, during and after the snapshot (paced, so that
    // the topic stays small enough to read back quickly).
    let stop = Arc::new(AtomicBool::new(false));
    let writer_client = region.db.connect().await?;
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0u32;
            let mut pace = tokio::time::interval(Duration::from_millis(3));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                n += 1;
                writer_client
                    .execute(
                        "UPDATE slices SET slice_name = $1 WHERE viz_type = 'deck_multi'",
                        &[&format!("Layers #{n}")],
                    )
                    .await?;
            }
            Ok::<u32, tokio_postgres::Error>(n)
        }
    });
    let mut process = region.snapshot_process(topic, 50)?;
    let code = wait_until("the snapshot to finish", Duration::from_secs(120), || {
        let code = process.exited();
        async move { Ok(code) }
    })
    .await?;
    let log = process.log();
    assert_eq!(code, 0, "snapshot failed:\n{log}");
    let ended: String = region
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await??;
    let report = Report::parse(&log)?;
    let marker = later_writes(&region).await?;
    let stream = envelopes_until(topic, "capture to publish the marker", &capture, |e| {
        holds(e, "dashboards", marker)
    })
    .await?;

    // The writes really ran across the snapshot: some committed before it, some after it was
    // taken and before it had finished publishing.
    let (snapshot_lsn, ended): (pgoutput::Lsn, pgoutput::Lsn) =
        (report.lsn.parse()?, ended.parse()?);
    let renames: Vec<pgoutput::Lsn> = stream
        .iter()
        .filter_map(|(_, e)| change(e).map(|c| (e.commit_lsn, c)))
        .filter(|(_, c)| {
            c.table == "slices"
                && c.fields.len() == 1
                && c.fields[0].path == path("slice_name")
                && c.fields[0]
                    .value
                    .as_str()
                    .is_some_and(|v| v.starts_with("Layers #"))
        })
        .map(|(lsn, _)| lsn)
        .collect();
    assert!(writes >= 2, "{writes} writes");
    eprintln!("{writes} writes; the snapshot:\n{}", report.text);
    assert!(
        renames.iter().any(|lsn| *lsn < snapshot_lsn),
        "{renames:?} {snapshot_lsn}"
    );
    assert!(
        renames
            .iter()
            .any(|lsn| *lsn > snapshot_lsn && *lsn < ended),
        "a write during the snapshot: {renames:?} {snapshot_lsn} {ended}"
    );

    // A new region consumes the topic from the offset the report gave: the snapshot's records,
    // interleaved with capture's, and everything after. That is the region's state.
    let records = stream
        .iter()
        .filter(|(offset, _)| *offset >= report.start_offset);
    let snapshot_records = stream
        .iter()
        .filter(|(_, e)| e.commit_lsn == snapshot_lsn)
        .count();
    assert_eq!(snapshot_records, report.records, "{}", report.text);
    assert!(
        stream
            .iter()
            .filter(|(_, e)| e.commit_lsn == snapshot_lsn)
            .all(|(offset, _)| *offset >= report.start_offset),
        "the snapshot is after its start offset"
    );
    let mut bootstrapped = BTreeMap::new();
    fold(&mut bootstrapped, records.map(|(_, e)| e));

    let last_topic = TestTopic::create(lab, "snap_live_last", 1).await?;
    let last = region.snapshot(last_topic.name(), 1000).await?;
    let mut at_the_end = BTreeMap::new();
    fold(
        &mut at_the_end,
        envelopes(last_topic.name(), last.records)
            .await?
            .iter()
            .map(|(_, e)| e),
    );
    assert_same_state(&bootstrapped, &at_the_end);
    assert!(at_the_end.len() > 400, "{}", at_the_end.len());
    Ok(())
}

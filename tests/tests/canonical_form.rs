//! Canonical form against real Superset 6.1 databases set up by `replicator setup`: a database,
//! dataset, charts and a dashboard (layout, native filter with `chartsInScope`, cross-filters,
//! legacy default filters) written through plain SQL, read back with the stamps the triggers
//! wrote, and canonicalised. The same objects created in two regions with different local ids
//! give the same bytes; no local id and no local column's bytes leave a region; the registry
//! cache falls back to `replicator.registry`.
//!
//! The stream assembler is written elsewhere, so each `CapturedChange` is built from SQL reads:
//! the row as pgoutput's text form (each column through its type's output function), the
//! entity's clock and the stamps from `replicator.entity` / `replicator.field_version`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;

use bytes::Bytes;
use harness::{Lab, TestDb};
use pgoutput::{ColumnValue, Oid};
use replicator::capture::canonical_form::CanonicalForm;
use replicator::capture::registry::{PgRegistry, RegistryCache};
use replicator::capture::{CapturedChange, Column, Row, Stamp};
use replicator::policy::name_uuid;
use replicator::setup::{self, PublicationName, SetupOptions, SlotName};
use replicator::{DatabaseUrl, RegionId};
use tokio_postgres::types::Json;
use tokio_postgres::Client;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;
type AnyResult<T> = Result<T, Box<dyn Error>>;

/// The objects' uuids: the same in every region, as if replicated there.
const DB_UUID: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0001);
const DATASET_UUID: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0002);
const CHART_UUIDS: [Uuid; 3] = [
    Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0011),
    Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0012),
    Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0013),
];
const DASHBOARD_UUID: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0021);
const THEME_UUID: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0031);

/// JSON keys whose numbers are genuinely numbers, not ids (layout sizes, limits, timeouts).
const NUMERIC_KEYS: [&str; 5] = [
    "width",
    "height",
    "row_limit",
    "refresh_frequency",
    "cache_timeout",
];

/// One region's test database, set up for capture.
struct Region {
    name: String,
    db: TestDb,
    client: Client,
}

async fn region(name: &str, label: &str) -> AnyResult<Region> {
    let db = Lab::get()?.region(name)?.fresh_db(label).await?;
    let options = SetupOptions::new(
        RegionId::new(name)?,
        SlotName::new(&db.unique_name("slot"))?,
        PublicationName::new(&db.unique_name("pub"))?,
    );
    let mut client = DatabaseUrl::parse(&db.conninfo())?.connect().await?;
    setup::run(&mut client, &options).await?;
    Ok(Region {
        name: name.to_owned(),
        db,
        client,
    })
}

/// The local ids of the objects one region created.
#[derive(Debug, Clone)]
struct Objects {
    user: i32,
    db: i32,
    dataset: i32,
    charts: [i32; 3],
    dashboard: i32,
    theme: i32,
    tag: i32,
    /// The region-local secret in the database's uri and password.
    secret: String,
}

impl Region {
    async fn int(&self, sql: &str) -> AnyResult<i32> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    async fn canonical_form(&self, capacity: usize) -> AnyResult<CanonicalForm> {
        let registry = RegistryCache::new(PgRegistry::new(self.db.connect().await?), capacity);
        Ok(CanonicalForm::new(RegionId::new(&self.name)?, registry))
    }

    /// Rows of this region's own, written first so that the shared objects get other ids here.
    async fn local_noise(&self) -> TestResult {
        self.client
            .batch_execute(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                   VALUES (nextval('ab_user_id_seq'), 'Eve', 'Local', 'eve', 'eve@example.com');
                 INSERT INTO themes (theme_name, is_system, is_system_default, is_system_dark)
                   VALUES ('THEME_DEFAULT', true, true, false);
                 INSERT INTO dbs (database_name, sqlalchemy_uri) VALUES ('local_db', 'sqlite://');
                 INSERT INTO tables (table_name, database_id) SELECT 'local_table', id FROM dbs;
                 INSERT INTO slices (slice_name, datasource_id, datasource_type)
                   SELECT 'local chart ' || n, t.id, 'table' FROM tables t, generate_series(1, 2) AS n;
                 INSERT INTO dashboards (dashboard_title) VALUES ('local dashboard');
                 INSERT INTO tag (name, type) VALUES ('local', 'custom');",
            )
            .await?;
        Ok(())
    }

    /// The shared objects, the way Superset writes them (a chart's own id in its params, the
    /// dashboard's JSON full of chart and dataset ids); the third chart is deleted afterwards
    /// and its id stays in the dashboard's JSON (facts §5f).
    async fn create_objects(&self) -> AnyResult<Objects> {
        let secret = format!("S3cr3t-{}-{}", self.name, Uuid::new_v4().simple());
        let user = self
            .int(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                 VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com')
                 RETURNING id",
            )
            .await?;
        let theme = self
            .int(&format!(
                "INSERT INTO themes (theme_name, json_data, is_system, is_system_default, is_system_dark,
                                     created_by_fk, uuid)
                 VALUES ('Brand', '{{\"token\": {{\"colorPrimary\": \"#123456\"}}}}', false, false, false,
                         {user}, '{THEME_UUID}')
                 RETURNING id"
            ))
            .await?;
        let db = self
            .int(&format!(
                "INSERT INTO dbs (created_on, database_name, sqlalchemy_uri, password, created_by_fk,
                                  cache_timeout, extra, expose_in_sqllab, uuid)
                 VALUES ('2024-05-01 10:00:00', 'examples',
                         'postgresql://examples:{secret}@db-{region}.internal/examples',
                         convert_to('{secret}', 'UTF8'), {user}, 600, '{{\"metadata_params\": {{}}}}',
                         true, '{DB_UUID}')
                 RETURNING id",
                region = self.name,
            ))
            .await?;
        let dataset = self
            .int(&format!(
                "INSERT INTO tables (created_on, table_name, schema, database_id, created_by_fk,
                                     perm, cache_timeout, folders, uuid)
                 VALUES ('2024-05-01 10:00:01.25', 'sales', 'public', {db}, {user},
                         '[examples].[sales]', 300,
                         '[{{\"uuid\": \"0d0d0000-0000-4000-8000-0000000000f1\", \"type\": \"folder\",
                            \"name\": \"Money\", \"children\": []}}]',
                         '{DATASET_UUID}')
                 RETURNING id"
            ))
            .await?;
        // `perm` holds the dataset's local id (facts §3); it is a local column.
        self.client
            .execute(
                "UPDATE tables SET perm = '[examples].[sales](id:' || id || ')' WHERE id = $1",
                &[&dataset],
            )
            .await?;
        let mut charts = [0; 3];
        for (slot, uuid) in charts.iter_mut().zip(CHART_UUIDS) {
            *slot = self
                .int(&format!(
                    "INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type,
                                         created_by_fk, last_saved_by_fk, perm, uuid)
                     VALUES ('chart {uuid}', 'table', {dataset}, 'table', {user}, {user},
                             '[examples].[sales](id:{dataset})', '{uuid}')
                     RETURNING id"
                ))
                .await?;
        }
        let [c1, c2, c3] = charts;
        for (chart, extra) in [
            (c1, String::new()),
            (c2, format!(", \"deck_slices\": [{c1}, {c3}]")),
            (c3, String::new()),
        ] {
            let params = format!(
                "{{\"datasource\": \"{dataset}__table\", \"viz_type\": \"table\", \"slice_id\": {chart},
                  \"row_limit\": 10000, \"adhoc_filters\": []{extra}}}"
            );
            let query_context = format!(
                "{{\"datasource\": {{\"id\": {dataset}, \"type\": \"table\"}}, \"force\": false,
                  \"queries\": [{{\"datasource\": {{\"id\": {dataset}, \"type\": \"table\"}}, \"row_limit\": 10000}}],
                  \"form_data\": {{\"datasource\": \"{dataset}__table\", \"slice_id\": {chart}}},
                  \"result_format\": \"json\"}}"
            );
            self.client
                .execute(
                    "UPDATE slices SET params = $1, query_context = $2 WHERE id = $3",
                    &[&params, &query_context, &chart],
                )
                .await?;
        }
        let [u1, u2, u3] = CHART_UUIDS;
        let position = format!(
            r#"{{"DASHBOARD_VERSION_KEY": "v2",
                "ROOT_ID": {{"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]}},
                "GRID_ID": {{"type": "GRID", "id": "GRID_ID", "children": ["ROW-1"], "parents": ["ROOT_ID"]}},
                "ROW-1": {{"type": "ROW", "id": "ROW-1", "children": ["CHART-a", "CHART-b", "CHART-c"],
                           "meta": {{"background": "BACKGROUND_TRANSPARENT"}}}},
                "CHART-a": {{"type": "CHART", "id": "CHART-a", "children": [],
                             "meta": {{"chartId": {c1}, "uuid": "{u1}", "width": 4, "height": 50}}}},
                "CHART-b": {{"type": "CHART", "id": "CHART-b", "children": [],
                             "meta": {{"chartId": {c2}, "uuid": "{u2}", "width": 4, "height": 50}}}},
                "CHART-c": {{"type": "CHART", "id": "CHART-c", "children": [],
                             "meta": {{"chartId": {c3}, "uuid": "{u3}", "width": 4, "height": 50}}}}}}"#
        );
        let metadata = format!(
            r#"{{"native_filter_configuration": [{{"id": "NATIVE_FILTER-abc", "name": "Region",
                    "filterType": "filter_select",
                    "targets": [{{"datasetId": {dataset}, "column": {{"name": "region"}}}}],
                    "scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c2}]}},
                    "chartsInScope": [{c1}, {c3}], "cascadeParentIds": []}}],
                "chart_customization_config": [{{"id": "CUSTOM-1",
                    "targets": [{{"datasetId": {dataset}}}], "chartsInScope": [{c2}]}}],
                "chart_configuration": {{"{c1}": {{"id": {c1},
                    "crossFilters": {{"scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c1}]}},
                                      "chartsInScope": [{c2}, {c3}]}}}}}},
                "global_chart_configuration": {{"scope": {{"rootPath": ["ROOT_ID"], "excluded": []}},
                    "chartsInScope": [{c1}, {c2}, {c3}]}},
                "timed_refresh_immune_slices": [{c2}],
                "expanded_slices": {{"{c1}": true}},
                "filter_scopes": {{"{c1}": {{"region": {{"scope": ["ROOT_ID"], "immune": [{c3}]}}}}}},
                "default_filters": "{{\"{c1}\": {{\"region\": [\"EU\"]}}}}",
                "refresh_frequency": 0, "color_scheme": "supersetColors",
                "cross_filters_enabled": true}}"#
        );
        let dashboard = self
            .int(&format!(
                "INSERT INTO dashboards (created_on, dashboard_title, slug, position_json, json_metadata,
                                         css, published, created_by_fk, changed_by_fk, theme_id, uuid)
                 VALUES ('2024-05-01 10:00:02', 'Sales', 'sales', $pos${position}$pos$,
                         $meta${metadata}$meta$, '.x {{ color: red; }}', true, {user}, {user}, {theme},
                         '{DASHBOARD_UUID}')
                 RETURNING id"
            ))
            .await?;
        let tag = self
            .int(&format!(
                "INSERT INTO tag (name, type, created_by_fk) VALUES ('owner:{user}', 'owner', {user})
                 RETURNING id"
            ))
            .await?;
        self.client
            .batch_execute(&format!(
                "INSERT INTO dashboard_slices (dashboard_id, slice_id)
                   VALUES ({dashboard}, {c1}), ({dashboard}, {c2}), ({dashboard}, {c3});
                 INSERT INTO dashboard_user (dashboard_id, user_id) VALUES ({dashboard}, {user});
                 INSERT INTO tagged_object (tag_id, object_id, object_type, created_by_fk)
                   VALUES ({tag}, {dashboard}, 'dashboard', {user});
                 DELETE FROM slices WHERE id = {c3};"
            ))
            .await?;
        Ok(Objects {
            user,
            db,
            dataset,
            charts,
            dashboard,
            theme,
            tag,
            secret,
        })
    }

    /// Every local id this region's tables hold, whatever the table.
    async fn all_local_ids(&self) -> AnyResult<BTreeSet<i64>> {
        let rows = self
            .client
            .query("SELECT DISTINCT local_id FROM replicator.registry", &[])
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The registered identity of `table`'s row `id`.
    async fn entity(&self, table: &str, id: i32) -> AnyResult<Uuid> {
        let row = self
            .client
            .query_one(
                "SELECT uuid FROM replicator.registry WHERE table_name = $1 AND local_id = $2",
                &[&table, &i64::from(id)],
            )
            .await?;
        Ok(row.get(0))
    }

    /// `table`'s row `id` as pgoutput sends it: every column in table order, in its type's
    /// text output form (`concat` calls the output function: `t`/`f` for booleans, unlike a
    /// cast to text); `None` when the row is gone.
    async fn row(&self, table: &str, id: i32) -> AnyResult<Option<Row>> {
        let columns = self
            .client
            .query(
                "SELECT attname::text, atttypid FROM pg_attribute
                 WHERE attrelid = ('public.' || quote_ident($1))::regclass AND attnum > 0
                   AND NOT attisdropped
                 ORDER BY attnum",
                &[&table],
            )
            .await?;
        let names: Vec<String> = columns.iter().map(|c| c.get(0)).collect();
        let types: Vec<u32> = columns.iter().map(|c| c.get(1)).collect();
        let select: Vec<String> = names
            .iter()
            .map(|n| format!("CASE WHEN t.\"{n}\" IS NULL THEN NULL ELSE concat(t.\"{n}\") END"))
            .collect();
        let sql = format!(
            "SELECT ARRAY[{}]::text[] FROM public.\"{table}\" AS t WHERE t.id = $1",
            select.join(", ")
        );
        let Some(found) = self.client.query_opt(&sql, &[&id]).await? else {
            return Ok(None);
        };
        let values: Vec<Option<String>> = found.get(0);
        let columns = names
            .into_iter()
            .zip(types)
            .zip(values)
            .map(|((name, type_oid), value)| Column {
                name,
                type_oid: Oid(type_oid),
                value: match value {
                    Some(text) => ColumnValue::Text(Bytes::from(text)),
                    None => ColumnValue::Null,
                },
            })
            .collect();
        Ok(Some(Row { columns }))
    }

    /// The captured change of `table`'s row `id` as it is now, with the stamps the triggers
    /// wrote: all of them (the entity's state), or only those of its latest local write.
    async fn captured(&self, table: &str, id: i32, latest_only: bool) -> AnyResult<CapturedChange> {
        let entity = self.entity(table, id).await?;
        let clock_row = self
            .client
            .query_one(
                "SELECT clock, (clock ->> $3)::bigint FROM replicator.entity
                 WHERE table_name = $1 AND uuid = $2",
                &[&table, &entity, &self.name],
            )
            .await?;
        let Json(clock) = clock_row.get(0);
        let counter: i64 = clock_row.get(1);
        let stamps = self
            .client
            .query(
                "SELECT field, jsonb_build_object('region', region, 'counter', counter), to_jsonb(hlc)
                 FROM replicator.field_version
                 WHERE table_name = $1 AND uuid = $2 AND (NOT $3 OR counter = $4)
                 ORDER BY field",
                &[&table, &entity, &latest_only, &counter],
            )
            .await?
            .iter()
            .map(|row| {
                let Json(dot) = row.get(1);
                let Json(hlc) = row.get(2);
                Stamp {
                    field: row.get(0),
                    dot,
                    hlc,
                }
            })
            .collect();
        Ok(CapturedChange {
            table: table.to_owned(),
            entity,
            clock,
            stamps,
            row: self.row(table, id).await?,
        })
    }

    /// Every leaf of a canonical value as `(nearest key, kind, text)`, descending into arrays,
    /// objects (whose keys are leaves of kind `key`) and strings holding JSON (JSON-as-text
    /// columns, and `default_filters` inside them).
    async fn leaves(&self, path: &str, value: &str) -> AnyResult<Vec<(String, String, String)>> {
        let rows = self
            .client
            .query(
                "WITH RECURSIVE walk (key, v) AS (
                     SELECT $1::text, $2::text::jsonb
                   UNION ALL
                     SELECT c.key, c.v FROM walk AS w, LATERAL (
                         SELECT e.key, e.value
                         FROM jsonb_each(CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v END) AS e
                       UNION ALL
                         SELECT w.key, a.value
                         FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.v) = 'array' THEN w.v END) AS a
                       UNION ALL
                         SELECT w.key, j.parsed
                         FROM (SELECT public.safe_to_jsonb(w.v #>> '{}') AS parsed
                               WHERE jsonb_typeof(w.v) = 'string') AS j
                         WHERE jsonb_typeof(j.parsed) IN ('object', 'array')
                     ) AS c (key, v)
                 )
                 SELECT key, jsonb_typeof(v), v #>> '{}' FROM walk
                 WHERE jsonb_typeof(v) IN ('number', 'string')
                 UNION ALL
                 SELECT w.key, 'key', k
                 FROM walk AS w, jsonb_object_keys(CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v END) AS k",
                &[&path, &value],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The local id a leaf would leak, if it is shaped like one: a number (outside the genuinely
/// numeric keys), a numeric string or key, `<id>__table`, `owner:<id>`, `(id:<id>)`.
fn leaked_id(key: &str, kind: &str, text: &str) -> Option<i64> {
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match kind {
        "number" if NUMERIC_KEYS.contains(&key) => None,
        "number" => digits(text),
        _ => digits(text)
            .or_else(|| text.split_once("__").and_then(|(id, _)| digits(id)))
            .or_else(|| text.split_once(':').and_then(|(_, id)| digits(id)))
            .or_else(|| {
                text.split_once("(id:")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .and_then(|(id, _)| digits(id))
            }),
    }
}

/// The tables and rows canonicalised, in order: `(table, local id)`.
fn entities(o: &Objects) -> Vec<(&'static str, i32)> {
    vec![
        ("themes", o.theme),
        ("dbs", o.db),
        ("tables", o.dataset),
        ("slices", o.charts[0]),
        ("slices", o.charts[1]),
        ("dashboards", o.dashboard),
        ("tag", o.tag),
    ]
}

/// A canonical change as comparable text: `(table, entity, [(path, value)])`.
type Canonical = (String, Uuid, Vec<(String, String)>);

async fn canonicalise_all(
    region: &Region,
    objects: &Objects,
    form: &mut CanonicalForm,
) -> AnyResult<Vec<Canonical>> {
    let mut out = Vec::new();
    let mut changes = Vec::new();
    for (table, id) in entities(objects) {
        changes.push(region.captured(table, id, false).await?);
    }
    // Association rows: found through the registry by what they join.
    for (table, sql) in [
        (
            "dashboard_slices",
            format!(
                "SELECT id FROM dashboard_slices WHERE dashboard_id = {}",
                objects.dashboard
            ),
        ),
        (
            "dashboard_user",
            format!(
                "SELECT id FROM dashboard_user WHERE dashboard_id = {}",
                objects.dashboard
            ),
        ),
        (
            "tagged_object",
            format!(
                "SELECT id FROM tagged_object WHERE tag_id = {}",
                objects.tag
            ),
        ),
    ] {
        for row in region.client.query(&sql, &[]).await? {
            changes.push(region.captured(table, row.get(0), false).await?);
        }
    }
    for change in changes {
        let canonical = form.entity_change(change).await?;
        let fields = canonical
            .fields
            .iter()
            .map(|f| (f.path.as_str().to_owned(), f.value.to_string()))
            .collect();
        out.push((canonical.table, canonical.entity, fields));
    }
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn canonical_form_the_same_objects_in_two_regions_are_the_same_bytes() -> TestResult {
    let us = region("us", "canonical_us").await?;
    let eu = region("eu", "canonical_eu").await?;
    eu.local_noise().await?;
    let us_objects = us.create_objects().await?;
    let eu_objects = eu.create_objects().await?;
    // The test means something only if the local ids differ.
    assert_ne!(us_objects.user, eu_objects.user);
    assert_ne!(us_objects.db, eu_objects.db);
    assert_ne!(us_objects.dataset, eu_objects.dataset);
    assert_ne!(us_objects.charts, eu_objects.charts);
    assert_ne!(us_objects.dashboard, eu_objects.dashboard);
    assert_ne!(us_objects.theme, eu_objects.theme);
    assert_ne!(us_objects.tag, eu_objects.tag);
    assert_eq!(
        us_objects.charts[2], eu_objects.charts[0],
        "one id names a different chart in each region: {us_objects:?} {eu_objects:?}"
    );

    // A small cache, so that the database fallback and eviction are part of the run.
    let mut us_form = us.canonical_form(4).await?;
    let mut eu_form = eu.canonical_form(4).await?;
    let us_out = canonicalise_all(&us, &us_objects, &mut us_form).await?;
    let eu_out = canonicalise_all(&eu, &eu_objects, &mut eu_form).await?;
    assert_eq!(us_out.len(), 7 + 2 + 1 + 1, "{us_out:#?}");
    assert_eq!(us_out, eu_out);
    assert!(us_form.registry().stats().evictions > 0);
    assert_eq!(us_form.stats().dangling, 0, "every reference is registered");

    // The shapes that matter, spelled out once.
    let dashboard = us_out
        .iter()
        .find(|(table, _, _)| table == "dashboards")
        .ok_or("no dashboard")?;
    assert_eq!(dashboard.1, DASHBOARD_UUID);
    let field = |path: &str| {
        dashboard
            .2
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("$exists"), "true");
    assert_eq!(field("theme_id"), format!("\"{THEME_UUID}\""));
    assert_eq!(
        field("created_by_fk"),
        format!("\"{}\"", name_uuid("ab_user:admin"))
    );
    let metadata = field("json_metadata");
    for chart in CHART_UUIDS {
        assert!(metadata.contains(&chart.to_string()), "{metadata}");
    }
    assert!(
        metadata.contains(&format!(
            r#"\"chartsInScope\":[\"{}\",\"{}\"]"#,
            CHART_UUIDS[0], CHART_UUIDS[2]
        )),
        "chartsInScope, with the deleted chart's uuid: {metadata}"
    );
    assert!(metadata.contains(&format!(r#"\"datasetId\":\"{DATASET_UUID}\""#)));
    let chart = us_out
        .iter()
        .find(|(table, entity, _)| table == "slices" && *entity == CHART_UUIDS[1])
        .ok_or("no chart")?;
    let params = chart
        .2
        .iter()
        .find(|(p, _)| p == "params")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    assert!(
        params.contains(&format!(r#"\"datasource\":\"{DATASET_UUID}__table\""#)),
        "{params}"
    );
    assert!(params.contains(&format!(
        r#"\"deck_slices\":[\"{}\",\"{}\"]"#,
        CHART_UUIDS[0], CHART_UUIDS[2]
    )));
    let tag = us_out
        .iter()
        .find(|(table, _, _)| table == "tag")
        .ok_or("no tag")?;
    assert!(tag.2.contains(&(
        "name".to_owned(),
        format!("\"owner:{}\"", name_uuid("ab_user:admin"))
    )));
    Ok(())
}

#[tokio::test]
async fn canonical_form_no_local_id_and_no_local_column_leaves_a_region() -> TestResult {
    for (name, noise) in [("eu", true), ("us", false)] {
        let region = region(name, "canonical_leak").await?;
        if noise {
            region.local_noise().await?;
        }
        let objects = region.create_objects().await?;
        let local_ids = region.all_local_ids().await?;
        let mut form = region.canonical_form(100_000).await?;

        // Defence in depth: stamps for the local id, the uuid and the local columns are added
        // to real changes; they must be dropped.
        let mut db_change = region.captured("dbs", objects.db, false).await?;
        let template = db_change.stamps.first().cloned().ok_or("no stamps")?;
        for field in ["id", "uuid", "sqlalchemy_uri", "password"] {
            db_change.stamps.push(Stamp {
                field: field.to_owned(),
                ..template.clone()
            });
        }
        let mut chart_change = region.captured("slices", objects.charts[0], false).await?;
        for field in ["perm", "schema_perm"] {
            chart_change.stamps.push(Stamp {
                field: field.to_owned(),
                ..template.clone()
            });
        }
        let mut changes = vec![db_change, chart_change];
        for (table, id) in entities(&objects).into_iter().skip(2) {
            changes.push(region.captured(table, id, false).await?);
        }
        let ds = region
            .int(&format!(
                "SELECT min(id) FROM dashboard_slices WHERE dashboard_id = {}",
                objects.dashboard
            ))
            .await?;
        changes.push(region.captured("dashboard_slices", ds, false).await?);
        let mut checked = 0;
        for change in changes {
            let table = change.table.clone();
            let canonical = form.entity_change(change).await?;
            for field in &canonical.fields {
                let path = field.path.as_str();
                assert!(
                    ![
                        "id",
                        "uuid",
                        "sqlalchemy_uri",
                        "password",
                        "perm",
                        "schema_perm"
                    ]
                    .contains(&path),
                    "{table}.{path} left the region"
                );
                let text = field.value.to_string();
                assert!(!text.contains(&objects.secret), "{table}.{path}: {text}");
                let hex: String = objects.secret.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(!text.contains(&hex), "{table}.{path}: {text}");
                for (key, kind, leaf) in region.leaves(path, &text).await? {
                    checked += 1;
                    if let Some(id) = leaked_id(&key, &kind, &leaf) {
                        assert!(
                            !local_ids.contains(&id),
                            "{name}: {table}.{path}: {kind} {leaf:?} under {key:?} is local id {id}"
                        );
                    }
                }
            }
        }
        assert!(checked > 100, "the scan saw {checked} leaves");
        assert_eq!(form.stats().dropped_unversioned, 6);
        // The scan itself finds a local id when there is one.
        let leaves = region
            .leaves(
                "params",
                &format!(
                    "\"{{\\\"datasource\\\": \\\"{}__table\\\"}}\"",
                    objects.dataset
                ),
            )
            .await?;
        assert!(leaves
            .iter()
            .any(|(k, kind, t)| leaked_id(k, kind, t) == Some(i64::from(objects.dataset))));
    }
    Ok(())
}

#[tokio::test]
async fn canonical_form_registry_cache_falls_back_to_the_registry_table() -> TestResult {
    let region = region("eu", "canonical_registry").await?;
    region.local_noise().await?;
    let objects = region.create_objects().await?;
    let mut cache = RegistryCache::new(PgRegistry::new(region.db.connect().await?), 2);

    assert_eq!(
        cache.get("dbs", i64::from(objects.db)).await?,
        Some(DB_UUID)
    );
    assert_eq!(cache.stats().lookups, 1);
    assert_eq!(
        cache.get("dbs", i64::from(objects.db)).await?,
        Some(DB_UUID)
    );
    assert_eq!(cache.stats().lookups, 1, "the second time from memory");
    assert_eq!(
        cache.get("ab_user", i64::from(objects.user)).await?,
        Some(name_uuid("ab_user:admin"))
    );
    assert_eq!(cache.get("slices", 999_999).await?, None);
    assert_eq!(cache.get("annotation_layer", 1).await?, None);

    // Several misses across tables: one round trip, and the cache stays within its capacity.
    let keys: BTreeSet<(&str, i64)> = [
        ("tables", i64::from(objects.dataset)),
        ("slices", i64::from(objects.charts[0])),
        ("slices", i64::from(objects.charts[2])),
        ("dashboards", i64::from(objects.dashboard)),
        ("themes", i64::from(objects.theme)),
        ("slices", 999_998),
    ]
    .into_iter()
    .collect();
    let before = cache.stats().lookups;
    let found = cache.resolve(&keys).await?;
    assert_eq!(cache.stats().lookups, before + 1);
    let want: BTreeMap<(&str, i64), Uuid> = [
        (("tables", i64::from(objects.dataset)), DATASET_UUID),
        (("slices", i64::from(objects.charts[0])), CHART_UUIDS[0]),
        (("slices", i64::from(objects.charts[2])), CHART_UUIDS[2]),
        (("dashboards", i64::from(objects.dashboard)), DASHBOARD_UUID),
        (("themes", i64::from(objects.theme)), THEME_UUID),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want, "the deleted chart's entry outlives its row");
    assert!(cache.len() <= 2);

    // The chart deleted in `create_objects` comes back under a new id with its uuid: both ids
    // keep naming it, in a warm cache and in the database a cold cache falls back to.
    let old = i64::from(objects.charts[2]);
    let mut warm = RegistryCache::new(PgRegistry::new(region.db.connect().await?), 100);
    warm.observe("slices", old, CHART_UUIDS[2]);
    let new = region
        .int(&format!(
            "INSERT INTO slices (slice_name, datasource_id, datasource_type, uuid)
             VALUES ('back', {}, 'table', '{}') RETURNING id",
            objects.dataset, CHART_UUIDS[2]
        ))
        .await?;
    warm.observe("slices", i64::from(new), CHART_UUIDS[2]);
    assert_eq!(warm.get("slices", old).await?, Some(CHART_UUIDS[2]));
    assert_eq!(
        warm.get("slices", i64::from(new)).await?,
        Some(CHART_UUIDS[2])
    );
    let mut cold = RegistryCache::new(PgRegistry::new(region.db.connect().await?), 100);
    assert_eq!(
        cold.get("slices", i64::from(new)).await?,
        Some(CHART_UUIDS[2])
    );
    // The old id keeps naming the uuid: a replay after a restart translates it the same way.
    assert_eq!(cold.get("slices", old).await?, Some(CHART_UUIDS[2]));
    Ok(())
}

#[tokio::test]
async fn canonical_form_deletes_dangling_ids_and_unchanged_toast_on_real_rows() -> TestResult {
    let region = region("us", "canonical_edges").await?;
    let objects = region.create_objects().await?;
    let mut form = region.canonical_form(100).await?;

    // An id that was never registered (Superset's import leaves such ids behind) becomes a
    // dangling token naming the region and the table; a NATIVE annotation layer likewise.
    region
        .client
        .execute(
            "UPDATE slices SET params = $1 WHERE id = $2",
            &[
                &format!(
                    "{{\"datasource\": \"{}__table\", \"deck_slices\": [999999],
                      \"annotation_layers\": [{{\"sourceType\": \"NATIVE\", \"value\": 7}}]}}",
                    objects.dataset
                ),
                &objects.charts[1],
            ],
        )
        .await?;
    let change = region.captured("slices", objects.charts[1], true).await?;
    let stamped: Vec<&str> = change.stamps.iter().map(|s| s.field.as_str()).collect();
    assert_eq!(stamped, ["params"], "the triggers stamped what changed");
    let canonical = form.entity_change(change).await?;
    assert_eq!(canonical.fields.len(), 1);
    let params = canonical
        .fields
        .first()
        .map(|f| f.value.to_string())
        .unwrap_or_default();
    assert!(
        params.contains(r#"\"deck_slices\":[\"dangling:us:slices:999999\"]"#),
        "{params}"
    );
    assert!(
        params.contains(r#"\"value\":\"dangling:us:annotation_layer:7\""#),
        "{params}"
    );
    assert_eq!(form.stats().dangling, 2);

    // A title change on a dashboard whose layout is TOASTed: pgoutput sends the layout as
    // unchanged-TOAST, and it is not stamped, so it is simply absent from the change.
    let big_layout: String = (0..400)
        .map(|i| {
            format!(
                "\"MARKDOWN-{i}\": {{\"type\": \"MARKDOWN\", \"meta\": {{\"code\": \"{}\"}}}}",
                Uuid::new_v4()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    region
        .client
        .execute(
            "UPDATE dashboards SET position_json = $1 WHERE id = $2",
            &[&format!("{{{big_layout}}}"), &objects.dashboard],
        )
        .await?;
    region
        .client
        .execute(
            "UPDATE dashboards SET dashboard_title = 'Sales (EU)' WHERE id = $1",
            &[&objects.dashboard],
        )
        .await?;
    let mut change = region
        .captured("dashboards", objects.dashboard, true)
        .await?;
    let stamped: Vec<&str> = change.stamps.iter().map(|s| s.field.as_str()).collect();
    assert_eq!(stamped, ["dashboard_title"]);
    if let Some(row) = change.row.as_mut() {
        for column in &mut row.columns {
            if column.name == "position_json" {
                column.value = ColumnValue::UnchangedToast;
            }
        }
    }
    let canonical = form.entity_change(change.clone()).await?;
    let fields: Vec<(String, String)> = canonical
        .fields
        .iter()
        .map(|f| (f.path.as_str().to_owned(), f.value.to_string()))
        .collect();
    assert_eq!(
        fields,
        [("dashboard_title".to_owned(), "\"Sales (EU)\"".to_owned())]
    );
    // Had the layout been stamped, an unchanged-TOAST value would be an error, never a blank.
    let mut broken = change;
    let template = broken.stamps.first().cloned().ok_or("no stamp")?;
    broken.stamps.push(Stamp {
        field: "position_json".to_owned(),
        ..template
    });
    let error = form.entity_change(broken).await.err().ok_or("accepted")?;
    assert!(
        matches!(error, replicator::Error::StampedValueMissing { .. }),
        "{error}"
    );
    assert!(error.hint().contains("TOAST"));

    // A delete: the triggers stamp `$exists` only; the change has no row.
    region
        .client
        .execute(
            "DELETE FROM dashboards WHERE id = $1",
            &[&objects.dashboard],
        )
        .await?;
    let change = region
        .captured("dashboards", objects.dashboard, true)
        .await?;
    assert!(change.row.is_none());
    let canonical = form.entity_change(change).await?;
    let fields: Vec<(String, String)> = canonical
        .fields
        .iter()
        .map(|f| (f.path.as_str().to_owned(), f.value.to_string()))
        .collect();
    assert_eq!(fields, [("$exists".to_owned(), "false".to_owned())]);
    assert_eq!(canonical.entity, DASHBOARD_UUID);
    Ok(())
}

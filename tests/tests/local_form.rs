//! Local form against real Superset 6.1 databases set up by `replicator setup`: region us writes a
//! dataset, charts and a dashboard (layout, native filter with `chartsInScope`,
//! `chart_configuration`, owners), and canonical form captures them; region eu, which holds rows
//! of its own first (so every id differs), has the same objects under the same uuids (registered
//! by its triggers) and translates us's canonical changes into its own ids. Every id in eu's
//! values names the eu row with the same uuid, which the test proves by writing the values into
//! eu's rows and capturing them again: eu's canonical form is us's, byte for byte. A uuid eu does
//! not have yet is `Missing`; a user eu does not have skips the ownership row.
//!
//! Changes are built from SQL reads, as in `canonical_form.rs` (the assembler is not involved).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::error::Error;

use bytes::Bytes;
use envelope::{EntityChange, FieldWrite};
use harness::{Lab, TestDb};
use pgoutput::{ColumnValue, Oid};
use replicator::apply::local_form::{
    ColumnTypes, LocalForm, LocalValue, PgUuidRegistry, Skip, Translated,
};
use replicator::capture::canonical_form::CanonicalForm;
use replicator::capture::registry::{PgRegistry, RegistryCache};
use replicator::capture::{CapturedChange, Column, Row, Stamp};
use replicator::policy::{self, name_uuid};
use replicator::setup::{self, PublicationName, SetupOptions, SlotName};
use replicator::{DatabaseUrl, RegionId};
use serde_json::Value;
use tokio_postgres::types::Json;
use tokio_postgres::Client;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;
type AnyResult<T> = Result<T, Box<dyn Error>>;

const DB_UUID: Uuid = Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0001);
const DATASET_UUID: Uuid = Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0002);
const CHART_UUIDS: [Uuid; 3] = [
    Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0011),
    Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0012),
    Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0013),
];
const DASHBOARD_UUID: Uuid = Uuid::from_u128(0x10f0_0000_0000_4000_8000_0000_0000_0021);

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

/// Local ids of the shared objects in one region.
#[derive(Debug, Clone)]
struct Ids {
    admin: i32,
    db: i32,
    dataset: i32,
    charts: Vec<i32>,
}

impl Region {
    async fn int(&self, sql: &str) -> AnyResult<i32> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    /// Rows of eu's own, written first so that the shared objects get other ids there.
    async fn local_noise(&self) -> TestResult {
        self.client
            .batch_execute(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                   VALUES (nextval('ab_user_id_seq'), 'Eve', 'Local', 'eve', 'eve@example.com');
                 INSERT INTO dbs (database_name, sqlalchemy_uri) VALUES ('local_db', 'sqlite://');
                 INSERT INTO tables (table_name, database_id) SELECT 'local_table', id FROM dbs;
                 INSERT INTO slices (slice_name, datasource_id, datasource_type)
                   SELECT 'local chart ' || n, t.id, 'table' FROM tables t, generate_series(1, 5) AS n;
                 INSERT INTO dashboards (dashboard_title) VALUES ('local dashboard');",
            )
            .await?;
        Ok(())
    }

    /// The user, database, dataset and the charts `which` (indexes into [`CHART_UUIDS`]).
    async fn create_base(&self, which: &[usize]) -> AnyResult<Ids> {
        let admin = self
            .int(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                 VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com')
                 RETURNING id",
            )
            .await?;
        let db = self
            .int(&format!(
                "INSERT INTO dbs (database_name, sqlalchemy_uri, created_by_fk, uuid)
                 VALUES ('examples', 'postgresql://db-{}/examples', {admin}, '{DB_UUID}')
                 RETURNING id",
                self.name
            ))
            .await?;
        let dataset = self
            .int(&format!(
                "INSERT INTO tables (created_on, table_name, schema, database_id, created_by_fk, uuid)
                 VALUES ('2024-05-01 10:00:01.25', 'sales', 'public', {db}, {admin}, '{DATASET_UUID}')
                 RETURNING id"
            ))
            .await?;
        let mut ids = Ids {
            admin,
            db,
            dataset,
            charts: vec![0; CHART_UUIDS.len()],
        };
        for &i in which {
            self.create_chart(&mut ids, i).await?;
        }
        Ok(ids)
    }

    async fn create_chart(&self, ids: &mut Ids, i: usize) -> TestResult {
        let (dataset, admin, uuid) = (ids.dataset, ids.admin, CHART_UUIDS[i]);
        let id = self
            .int(&format!(
                "INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type,
                                     created_by_fk, last_saved_by_fk, uuid)
                 VALUES ('chart {i}', 'table', {dataset}, 'table', {admin}, {admin}, '{uuid}')
                 RETURNING id"
            ))
            .await?;
        let params = format!(
            r#"{{"datasource": "{dataset}__table", "viz_type": "table", "slice_id": {id}, "row_limit": 100}}"#
        );
        let context = format!(
            r#"{{"datasource": {{"id": {dataset}, "type": "table"}},
                "queries": [{{"datasource": {{"id": {dataset}, "type": "table"}}}}],
                "form_data": {{"datasource": "{dataset}__table", "slice_id": {id}}}}}"#
        );
        self.client
            .execute(
                "UPDATE slices SET params = $1, query_context = $2 WHERE id = $3",
                &[&params, &context, &id],
            )
            .await?;
        ids.charts[i] = id;
        Ok(())
    }

    /// us's dashboard: a layout with the three charts, a native filter scoped with
    /// `chartsInScope`, cross-filter configuration; owned by admin and bob, with its charts.
    async fn create_dashboard(&self, ids: &Ids) -> AnyResult<i32> {
        let (dataset, [c1, c2, c3]) = (ids.dataset, [ids.charts[0], ids.charts[1], ids.charts[2]]);
        let [u1, u2, u3] = CHART_UUIDS;
        let position = format!(
            r#"{{"DASHBOARD_VERSION_KEY": "v2",
                "ROOT_ID": {{"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]}},
                "GRID_ID": {{"type": "GRID", "id": "GRID_ID", "children": ["ROW-1"]}},
                "ROW-1": {{"type": "ROW", "id": "ROW-1", "children": ["CHART-a", "CHART-b", "CHART-c"]}},
                "CHART-a": {{"type": "CHART", "id": "CHART-a", "meta": {{"chartId": {c1}, "uuid": "{u1}", "width": 4, "height": 50}}}},
                "CHART-b": {{"type": "CHART", "id": "CHART-b", "meta": {{"chartId": {c2}, "uuid": "{u2}", "width": 4, "height": 50}}}},
                "CHART-c": {{"type": "CHART", "id": "CHART-c", "meta": {{"chartId": {c3}, "uuid": "{u3}", "width": 4, "height": 50}}}}}}"#
        );
        let metadata = format!(
            r#"{{"native_filter_configuration": [{{"id": "NATIVE_FILTER-abc", "name": "Region",
                    "targets": [{{"datasetId": {dataset}, "column": {{"name": "region"}}}}],
                    "scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c2}]}},
                    "chartsInScope": [{c1}, {c3}]}}],
                "chart_configuration": {{"{c1}": {{"id": {c1},
                    "crossFilters": {{"scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c1}]}},
                                      "chartsInScope": [{c2}, {c3}]}}}}}},
                "global_chart_configuration": {{"scope": {{"excluded": []}}, "chartsInScope": [{c1}, {c2}, {c3}]}},
                "timed_refresh_immune_slices": [{c2}], "expanded_slices": {{"{c3}": true}},
                "refresh_frequency": 0, "color_scheme": "supersetColors"}}"#
        );
        let admin = ids.admin;
        let dashboard = self
            .int(&format!(
                "INSERT INTO dashboards (created_on, dashboard_title, slug, position_json, json_metadata,
                                         css, published, created_by_fk, changed_by_fk, uuid)
                 VALUES ('2024-05-01 10:00:02', 'Sales', 'sales', $pos${position}$pos$,
                         $meta${metadata}$meta$, '.x {{ color: red; }}', true, {admin}, {admin},
                         '{DASHBOARD_UUID}')
                 RETURNING id"
            ))
            .await?;
        let bob = self
            .int(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                 VALUES (nextval('ab_user_id_seq'), 'Bob', 'Us', 'bob', 'bob@example.com')
                 RETURNING id",
            )
            .await?;
        self.client
            .batch_execute(&format!(
                "INSERT INTO dashboard_slices (dashboard_id, slice_id)
                   VALUES ({dashboard}, {c1}), ({dashboard}, {c2}), ({dashboard}, {c3});
                 INSERT INTO dashboard_user (dashboard_id, user_id)
                   VALUES ({dashboard}, {admin}), ({dashboard}, {bob});"
            ))
            .await?;
        Ok(dashboard)
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

    /// The uuid eu's registry holds for `table`'s row `id`.
    async fn registered(&self, table: &str, id: i64) -> AnyResult<Option<Uuid>> {
        Ok(self
            .client
            .query_opt(
                "SELECT uuid FROM replicator.registry WHERE table_name = $1 AND local_id = $2",
                &[&table, &id],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// `table`'s row `id` as pgoutput sends it (each column in its type's text form).
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

    /// The captured change of `table`'s row `id` with every stamp of the entity.
    async fn captured(&self, table: &str, id: i32) -> AnyResult<CapturedChange> {
        let entity = self.entity(table, id).await?;
        let Json(clock) = self
            .client
            .query_one(
                "SELECT clock FROM replicator.entity WHERE table_name = $1 AND uuid = $2",
                &[&table, &entity],
            )
            .await?
            .get(0);
        let stamps = self
            .client
            .query(
                "SELECT field, jsonb_build_object('region', region, 'counter', counter), to_jsonb(hlc)
                 FROM replicator.field_version WHERE table_name = $1 AND uuid = $2 ORDER BY field",
                &[&table, &entity],
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

    async fn canonical_form(&self) -> AnyResult<CanonicalForm> {
        let registry = RegistryCache::new(PgRegistry::new(self.db.connect().await?), 100);
        Ok(CanonicalForm::new(RegionId::new(&self.name)?, registry))
    }

    async fn canonical(&self, table: &str, id: i32) -> AnyResult<EntityChange> {
        let mut form = self.canonical_form().await?;
        Ok(form.entity_change(self.captured(table, id).await?).await?)
    }

    async fn local_form(&self) -> AnyResult<LocalForm> {
        let types = ColumnTypes::load(&self.client, policy::superset()).await?;
        Ok(LocalForm::new(
            RegionId::new(&self.name)?,
            PgUuidRegistry::new(self.db.connect().await?),
            types,
        ))
    }

    /// Writes `columns` into `table`'s row `uuid` the way the applier binds them: each value's
    /// PostgreSQL text, cast to the column's type.
    async fn write(&self, table: &str, uuid: Uuid, columns: &[(String, LocalValue)]) -> TestResult {
        let mut sets = Vec::new();
        let mut texts: Vec<Option<String>> = Vec::new();
        for (i, (column, value)) in columns.iter().enumerate() {
            let type_name: String = self
                .client
                .query_one(
                    "SELECT format_type(atttypid, NULL) FROM pg_attribute
                     WHERE attrelid = ('public.' || quote_ident($1))::regclass AND attname = $2",
                    &[&table, column],
                )
                .await?
                .get(0);
            sets.push(format!("\"{column}\" = ${}::text::{type_name}", i + 1));
            texts.push(value.pg_text());
        }
        let sql = format!(
            "UPDATE public.\"{table}\" SET {} WHERE uuid = ${}",
            sets.join(", "),
            columns.len() + 1
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = texts
            .iter()
            .map(|t| t as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        params.push(&uuid);
        assert_eq!(self.client.execute(&sql, &params).await?, 1);
        Ok(())
    }
}

fn ready(translated: Translated) -> AnyResult<Vec<(String, LocalValue)>> {
    match translated {
        Translated::Ready { columns, .. } => Ok(columns),
        other => Err(format!("not ready: {other:?}").into()),
    }
}

fn by_path(change: &EntityChange) -> BTreeMap<String, Value> {
    change
        .fields
        .iter()
        .map(|f| (f.path.as_str().to_owned(), f.value.clone()))
        .collect()
}

fn fields_of(change: &EntityChange, paths: &[&str]) -> Vec<FieldWrite> {
    change
        .fields
        .iter()
        .filter(|f| paths.contains(&f.path.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn local_form_translates_us_objects_into_eu_ids_and_back_to_the_same_bytes() -> TestResult {
    let us = region("us", "local_form_us").await?;
    let eu = region("eu", "local_form_eu").await?;
    let us_ids = us.create_base(&[0, 1, 2]).await?;
    let us_dashboard = us.create_dashboard(&us_ids).await?;
    eu.local_noise().await?;
    // eu has charts 1 and 2 so far; chart 3 has not arrived.
    let mut eu_ids = eu.create_base(&[0, 1]).await?;
    let eu_dashboard = eu
        .int(&format!(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('placeholder', '{DASHBOARD_UUID}')
             RETURNING id"
        ))
        .await?;
    assert_ne!(us_ids.dataset, eu_ids.dataset);
    assert_ne!(us_ids.charts[0], eu_ids.charts[0]);
    assert_ne!(us_dashboard, eu_dashboard);
    assert_ne!(us_ids.admin, eu_ids.admin);

    let dashboard = us.canonical("dashboards", us_dashboard).await?;
    let mut form = eu.local_form().await?;

    // A uuid eu does not know yet: the write waits for exactly that chart.
    let fields: Vec<FieldWrite> = dashboard.fields.clone();
    assert_eq!(
        form.column_values("dashboards", &fields).await?,
        Translated::Missing(vec![("slices", CHART_UUIDS[2])])
    );
    let us_link = us
        .int(&format!(
            "SELECT id FROM dashboard_slices WHERE slice_id = {}",
            us_ids.charts[2]
        ))
        .await?;
    let link = us.canonical("dashboard_slices", us_link).await?;
    assert_eq!(
        form.column_values("dashboard_slices", &link.fields).await?,
        Translated::Missing(vec![("slices", CHART_UUIDS[2])])
    );

    // It arrives.
    eu.create_chart(&mut eu_ids, 2).await?;
    let columns = ready(form.column_values("dashboards", &fields).await?)?;
    let local: BTreeMap<String, LocalValue> = columns.iter().cloned().collect();
    assert_eq!(
        local["created_by_fk"],
        LocalValue::Int(i64::from(eu_ids.admin))
    );
    let LocalValue::Text(position) = &local["position_json"] else {
        return Err(format!("{:?}", local["position_json"]).into());
    };
    let position: Value = serde_json::from_str(position)?;
    for (node, i) in [("CHART-a", 0), ("CHART-b", 1), ("CHART-c", 2)] {
        assert_eq!(
            position[node]["meta"]["chartId"],
            Value::from(eu_ids.charts[i]),
            "{node}"
        );
    }
    let LocalValue::Text(metadata) = &local["json_metadata"] else {
        return Err(format!("{:?}", local["json_metadata"]).into());
    };
    let metadata: Value = serde_json::from_str(metadata)?;
    let [c1, c2, c3] = [eu_ids.charts[0], eu_ids.charts[1], eu_ids.charts[2]].map(Value::from);
    let filter = &metadata["native_filter_configuration"][0];
    assert_eq!(
        filter["chartsInScope"],
        Value::from(vec![c1.clone(), c3.clone()])
    );
    assert_eq!(filter["scope"]["excluded"], Value::from(vec![c2.clone()]));
    assert_eq!(
        filter["targets"][0]["datasetId"],
        Value::from(eu_ids.dataset)
    );
    let config = &metadata["chart_configuration"][eu_ids.charts[0].to_string()];
    assert_eq!(config["id"], c1);
    assert_eq!(
        config["crossFilters"]["chartsInScope"],
        Value::from(vec![c2.clone(), c3.clone()])
    );
    assert_eq!(
        metadata["timed_refresh_immune_slices"],
        Value::from(vec![c2])
    );

    // Written into eu's row and captured again in eu: us's canonical form, byte for byte. So
    // every id eu's values hold names the eu row with the same uuid.
    eu.write("dashboards", DASHBOARD_UUID, &columns).await?;
    let again = by_path(&eu.canonical("dashboards", eu_dashboard).await?);
    let want = by_path(&dashboard);
    for (path, value) in &want {
        if path != "$exists" {
            assert_eq!(again.get(path), Some(value), "dashboards.{path}");
        }
    }
    assert!(want.contains_key("json_metadata") && want.contains_key("created_on"));

    // The charts and the dataset likewise (their params and query context hold ids).
    for (i, chart) in us_ids.charts.iter().enumerate() {
        let canonical = us.canonical("slices", *chart).await?;
        let paths = [
            "params",
            "query_context",
            "datasource_id",
            "created_by_fk",
            "viz_type",
        ];
        let columns = ready(
            form.column_values("slices", &fields_of(&canonical, &paths))
                .await?,
        )?;
        eu.write("slices", CHART_UUIDS[i], &columns).await?;
        let again = by_path(&eu.canonical("slices", eu_ids.charts[i]).await?);
        for path in paths {
            assert_eq!(
                again.get(path),
                by_path(&canonical).get(path),
                "slices.{path}"
            );
        }
    }
    let canonical = us.canonical("tables", us_ids.dataset).await?;
    let columns = ready(
        form.column_values(
            "tables",
            &fields_of(&canonical, &["database_id", "created_on"]),
        )
        .await?,
    )?;
    assert_eq!(
        columns[0],
        (
            "created_on".to_owned(),
            LocalValue::Text("2024-05-01 10:00:01.25".to_owned())
        )
    );
    assert_eq!(
        columns[1],
        (
            "database_id".to_owned(),
            LocalValue::Int(i64::from(eu_ids.db))
        )
    );

    // Association rows: ids that name eu's rows with the same uuids.
    for row in us
        .client
        .query(
            &format!("SELECT id FROM dashboard_slices WHERE dashboard_id = {us_dashboard}"),
            &[],
        )
        .await?
    {
        let link = us.canonical("dashboard_slices", row.get(0)).await?;
        let columns = ready(form.column_values("dashboard_slices", &link.fields).await?)?;
        let want = by_path(&link);
        for (column, value) in columns {
            let (LocalValue::Int(id), Some(Value::String(uuid))) = (&value, want.get(&column))
            else {
                return Err(format!("{column}: {value:?}").into());
            };
            let table = if column == "dashboard_id" {
                "dashboards"
            } else {
                "slices"
            };
            assert_eq!(
                eu.registered(table, *id).await?,
                Some(uuid.parse()?),
                "{column}"
            );
        }
    }

    // Owners: admin exists in eu, bob does not: his ownership row cannot exist there.
    let mut owners = Vec::new();
    for row in us
        .client
        .query(
            &format!(
                "SELECT id FROM dashboard_user WHERE dashboard_id = {us_dashboard} ORDER BY id"
            ),
            &[],
        )
        .await?
    {
        let owner = us.canonical("dashboard_user", row.get(0)).await?;
        owners.push(form.column_values("dashboard_user", &owner.fields).await?);
    }
    let admin = ready(owners.remove(0))?;
    assert!(admin.contains(&(
        "user_id".to_owned(),
        LocalValue::Int(i64::from(eu_ids.admin))
    )));
    assert!(admin.contains(&(
        "dashboard_id".to_owned(),
        LocalValue::Int(i64::from(eu_dashboard))
    )));
    assert_eq!(
        owners.remove(0),
        Translated::Skip(vec![Skip::Absent {
            column: "user_id".to_owned(),
            table: "ab_user",
            uuid: name_uuid("ab_user:bob"),
        }])
    );
    Ok(())
}

/// Plain values of every type canonical form tells apart, through real PostgreSQL: what
/// PostgreSQL prints is canonicalised, turned back into a local value, written (bound as text and
/// cast, in a session whose time zone is not UTC) and printed again; canonical form gives the
/// same value.
#[tokio::test]
async fn local_form_plain_values_survive_a_write_through_postgres() -> TestResult {
    let eu = region("eu", "local_form_values").await?;
    eu.client
        .batch_execute("SET TimeZone = 'Asia/Kolkata'")
        .await?;
    // Plain values never ask the registry.
    let mut canonical_form = eu.canonical_form().await?;
    let cases: &[(&str, &[&str])] = &[
        ("int2", &["-32768", "7"]),
        ("int4", &["2147483647"]),
        ("int8", &["-9223372036854775808"]),
        ("boolean", &["t", "f"]),
        ("real", &["0.1", "3.4028235e+38", "-0", "NaN"]),
        (
            "double precision",
            &[
                "1e+20",
                "0.1",
                "1.7976931348623157e+308",
                "-Infinity",
                "5e-324",
            ],
        ),
        ("numeric", &["12345678901234567890.10", "NaN", "-0.000"]),
        (
            "json",
            &[r#"{"b": [1, 2.50, {"x": null}], "a": "é"}"#, "[]"],
        ),
        ("jsonb", &[r#"{"b": [1, 2.50, 1e3], "a": "s"}"#]),
        (
            "timestamp with time zone",
            &[
                "2024-05-01 12:00:00.5+02",
                "0044-03-15 12:00:00+00 BC",
                "infinity",
                "1900-01-01 00:00:00+00",
            ],
        ),
        ("timestamp without time zone", &["2024-05-01 10:00:00.25"]),
        ("date", &["2024-02-29"]),
        ("bytea", &["\\xdeadbeef", "\\x"]),
        ("uuid", &["5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f"]),
        ("text", &["é \"quoted\" \\ back", ""]),
        ("character varying", &["Sales"]),
    ];
    for (type_name, samples) in cases {
        let type_oid: u32 = eu
            .client
            .query_one(&format!("SELECT '{type_name}'::regtype::oid"), &[])
            .await?
            .get(0);
        let mut types = ColumnTypes::default();
        types.insert(
            "dashboards",
            "css",
            replicator::apply::local_form::ColumnType {
                type_oid: Oid(type_oid),
                not_null: false,
            },
        );
        let mut form = LocalForm::new(
            RegionId::new("eu")?,
            PgUuidRegistry::new(eu.db.connect().await?),
            types,
        );
        for sample in samples.iter().map(|s| Some((*s).to_owned())).chain([None]) {
            let printed = eu.print(type_name, sample).await?;
            let canonical = canonical_css(&mut canonical_form, type_oid, printed.clone()).await?;
            let Translated::Ready { columns, .. } =
                form.column_values("dashboards", &canonical.fields).await?
            else {
                return Err(format!("{type_name}: not ready").into());
            };
            let local = columns
                .first()
                .map(|(_, v)| v.pg_text())
                .ok_or("no value")?;
            let again = canonical_css(
                &mut canonical_form,
                type_oid,
                eu.print(type_name, local.clone()).await?,
            )
            .await?;
            assert_eq!(
                by_path(&again),
                by_path(&canonical),
                "{type_name}: printed {printed:?}, written {local:?}"
            );
        }
    }
    Ok(())
}

impl Region {
    /// What PostgreSQL prints for `text` read as `type_name`.
    async fn print(&self, type_name: &str, text: Option<String>) -> AnyResult<Option<String>> {
        Ok(self
            .client
            .query_one(
                &format!(
                    "SELECT CASE WHEN $1::text IS NULL THEN NULL ELSE concat($1::text::{type_name}) END"
                ),
                &[&text],
            )
            .await?
            .get(0))
    }
}

/// Canonical form of a dashboard change whose `css` column has type `type_oid` and `text`.
async fn canonical_css(
    form: &mut CanonicalForm,
    type_oid: u32,
    text: Option<String>,
) -> AnyResult<EntityChange> {
    let dot = conflict::Dot::new(RegionId::new("us")?, conflict::Counter(1));
    let change = CapturedChange {
        table: "dashboards".to_owned(),
        entity: DASHBOARD_UUID,
        clock: [(RegionId::new("us")?, conflict::Counter(1))]
            .into_iter()
            .collect(),
        stamps: vec![Stamp {
            field: "css".to_owned(),
            dot,
            hlc: conflict::Hlc::from_u64(1),
        }],
        row: Some(Row {
            columns: vec![Column {
                name: "css".to_owned(),
                type_oid: Oid(type_oid),
                value: match text {
                    Some(text) => ColumnValue::Text(Bytes::from(text)),
                    None => ColumnValue::Null,
                },
            }],
        }),
    };
    Ok(form.entity_change(change).await?)
}

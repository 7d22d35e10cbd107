//! Local form against the real canonical form: the round trip canonical → local → canonical is
//! the identity (per type, per reference, for generated dashboards and charts), with one
//! in-memory registry per region.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use conflict::{Counter, Dot, FieldPath, Hlc, VersionVector};
use envelope::EntityChange;
use pgoutput::ColumnValue;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::capture::canonical_form::CanonicalForm;
use crate::capture::registry::{RegistryCache, RegistryLookup};
use crate::capture::{CapturedChange, Column, Row, Stamp};

const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const UUID: u32 = 2950;
const BYTEA: u32 = 17;
const DATE: u32 = 1082;
const TIMESTAMP: u32 = 1114;
const NUMERIC: u32 = 1700;

/// One region's `replicator.registry`: `(table, local id) → uuid`; records each round trip.
#[derive(Debug, Default, Clone)]
struct Memory {
    rows: BTreeMap<(String, i64), Uuid>,
}

impl Memory {
    fn with(rows: &[(&str, i64, Uuid)]) -> Self {
        Memory {
            rows: rows
                .iter()
                .map(|(t, id, u)| (((*t).to_owned(), *id), *u))
                .collect(),
        }
    }
}

impl RegistryLookup for Memory {
    async fn lookup(&self, keys: &[(&str, i64)]) -> Result<Vec<(String, i64, Uuid)>> {
        Ok(keys
            .iter()
            .filter_map(|(t, id)| {
                let uuid = self.rows.get(&((*t).to_owned(), *id))?;
                Some(((*t).to_owned(), *id, *uuid))
            })
            .collect())
    }
}

/// The reverse lookup, recording every round trip.
#[derive(Debug, Default)]
struct Reverse {
    memory: Memory,
    asked: Mutex<Vec<Vec<(String, Uuid)>>>,
}

impl UuidLookup for Reverse {
    async fn local_ids(&self, keys: &[(&str, Uuid)]) -> Result<Vec<(String, Uuid, i64)>> {
        self.asked
            .lock()
            .unwrap()
            .push(keys.iter().map(|(t, u)| ((*t).to_owned(), *u)).collect());
        Ok(keys
            .iter()
            .filter_map(|(t, u)| {
                // The newest (greatest) id registered under the uuid.
                let id = self
                    .memory
                    .rows
                    .iter()
                    .filter(|((table, _), uuid)| table == t && *uuid == u)
                    .map(|((_, id), _)| *id)
                    .max()?;
                Some(((*t).to_owned(), *u, id))
            })
            .collect())
    }
}

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn uuid(name: &str) -> Uuid {
    policy::name_uuid(&format!("test:{name}"))
}

fn user(name: &str) -> Uuid {
    policy::name_uuid(&format!("ab_user:{name}"))
}

/// Column types of the columns these tests use (as in Superset 6.1), `css` retyped per test.
fn types(css: u32) -> ColumnTypes {
    let mut types = ColumnTypes::default();
    let mut add = |table: &str, column: &str, type_oid: u32, not_null: bool| {
        types.insert(
            table,
            column,
            ColumnType {
                type_oid: Oid(type_oid),
                not_null,
            },
        );
    };
    for (column, type_oid) in [
        ("dashboard_title", VARCHAR),
        ("position_json", TEXT),
        ("json_metadata", TEXT),
        ("css", css),
        ("theme_id", oid::INT4),
        ("created_by_fk", oid::INT4),
        ("changed_by_fk", oid::INT4),
        ("published", oid::BOOL),
    ] {
        add("dashboards", column, type_oid, false);
    }
    for (column, type_oid) in [
        ("params", TEXT),
        ("query_context", TEXT),
        ("datasource_id", oid::INT4),
        ("datasource_type", VARCHAR),
        ("table_id", oid::INT4),
        ("created_by_fk", oid::INT4),
    ] {
        add("slices", column, type_oid, false);
    }
    add("tables", "database_id", oid::INT4, true);
    add("tables", "folders", oid::JSON, false);
    add("tables", "table_name", VARCHAR, true);
    for table in ["dashboard_user", "dashboard_slices"] {
        add(table, "dashboard_id", oid::INT4, false);
    }
    add("dashboard_user", "user_id", oid::INT4, false);
    add("dashboard_slices", "slice_id", oid::INT4, false);
    add("tag", "name", VARCHAR, false);
    add("tag", "type", VARCHAR, false);
    add("tagged_object", "tag_id", oid::INT4, false);
    add("tagged_object", "object_id", oid::INT4, false);
    add("tagged_object", "object_type", VARCHAR, false);
    types
}

fn local_form(registry: &Memory, css: u32) -> LocalForm<Reverse> {
    LocalForm::new(
        region("eu"),
        Reverse {
            memory: registry.clone(),
            asked: Mutex::default(),
        },
        types(css),
    )
}

fn col(name: &str, type_oid: u32, value: Option<&str>) -> Column {
    Column {
        name: name.to_owned(),
        type_oid: Oid(type_oid),
        value: match value {
            Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
            None => ColumnValue::Null,
        },
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// The real canonical form of a row of `table` whose every column is stamped.
async fn forward(home: &str, registry: &Memory, table: &str, row: Vec<Column>) -> EntityChange {
    let stamps = row
        .iter()
        .map(|c| Stamp {
            field: c.name.clone(),
            dot: Dot::new(region("us"), Counter(1)),
            hlc: Hlc::from_u64(7),
        })
        .collect();
    let change = CapturedChange {
        table: table.to_owned(),
        entity: uuid("entity"),
        clock: [(region("us"), Counter(1))]
            .into_iter()
            .collect::<VersionVector>(),
        stamps,
        row: Some(Row { columns: row }),
    };
    let mut form = CanonicalForm::new(region(home), RegistryCache::new(registry.clone(), 100));
    form.entity_change(change).await.unwrap()
}

/// `Ready` columns as the row capture would read back after the applier wrote them (each in its
/// PostgreSQL text form, under this database's type).
fn written(table: &str, types: &ColumnTypes, ready: &Translated) -> Vec<Column> {
    let Translated::Ready { columns, .. } = ready else {
        panic!("not ready: {ready:?}");
    };
    columns
        .iter()
        .map(|(name, value)| {
            let type_oid = types.get(table, name).unwrap().type_oid;
            col(name, type_oid.0, value.pg_text().as_deref())
        })
        .collect()
}

fn values(change: &EntityChange) -> Vec<(String, Value)> {
    change
        .fields
        .iter()
        .map(|f| (f.path.as_str().to_owned(), f.value.clone()))
        .collect()
}

/// us's row → canonical (us) → local (eu) → canonical (eu): the same values.
async fn round_trip(
    table: &str,
    row: Vec<Column>,
    us: &Memory,
    eu: &Memory,
    css: u32,
) -> (EntityChange, Translated) {
    let canonical = forward("us", us, table, row).await;
    let mut form = local_form(eu, css);
    let local = form.column_values(table, &canonical.fields).await.unwrap();
    let again = forward("eu", eu, table, written(table, &types(css), &local)).await;
    let without_existence: Vec<(String, Value)> = values(&canonical)
        .into_iter()
        .filter(|(p, _)| p != "$exists")
        .collect();
    let again: Vec<(String, Value)> = values(&again)
        .into_iter()
        .filter(|(p, _)| p != "$exists")
        .collect();
    assert_eq!(again, without_existence, "local: {local:?}");
    (canonical, local)
}

fn field(path: &str, value: Value) -> FieldWrite {
    FieldWrite {
        path: if path == "$exists" {
            FieldPath::existence()
        } else {
            FieldPath::new(path).unwrap()
        },
        dot: Dot::new(region("us"), Counter(1)),
        hlc: Hlc::from_u64(7),
        value,
    }
}

fn ready_columns(translated: &Translated) -> BTreeMap<String, LocalValue> {
    match translated {
        Translated::Ready { columns, .. } => columns.iter().cloned().collect(),
        other => panic!("not ready: {other:?}"),
    }
}

fn notes(translated: &Translated) -> Vec<Note> {
    match translated {
        Translated::Ready { notes, .. } => notes.clone(),
        other => panic!("not ready: {other:?}"),
    }
}

/// us and eu know the same objects under different ids; eu also knows chart 1 under an older id.
fn registries() -> (Memory, Memory) {
    let mut us = Vec::new();
    let mut eu = Vec::new();
    for i in 1..=8 {
        us.push(("slices", i, uuid(&format!("chart{i}"))));
        eu.push(("slices", 100 + 7 * i, uuid(&format!("chart{i}"))));
    }
    eu.push(("slices", 500, uuid("chart1")));
    for i in 1..=3 {
        us.push(("tables", i, uuid(&format!("dataset{i}"))));
        eu.push(("tables", 200 + i, uuid(&format!("dataset{i}"))));
    }
    us.extend([
        ("themes", 1, uuid("theme")),
        ("ab_user", 1, user("admin")),
        ("ab_user", 2, user("bob")),
        ("dashboards", 1, uuid("dashboard")),
        ("tag", 1, uuid("tag")),
    ]);
    eu.extend([
        ("themes", 31, uuid("theme")),
        ("ab_user", 41, user("admin")),
        ("dashboards", 51, uuid("dashboard")),
        ("tag", 61, uuid("tag")),
    ]);
    (Memory::with(&us), Memory::with(&eu))
}

#[test]
fn timestamptz_goes_back_to_what_postgres_prints_in_utc() {
    for (canonical, pg) in [
        ("2024-05-01T10:00:00Z", "2024-05-01 10:00:00+00"),
        ("2024-05-01T10:00:00.5Z", "2024-05-01 10:00:00.5+00"),
        (
            "2024-05-01T10:00:00.123456Z",
            "2024-05-01 10:00:00.123456+00",
        ),
        ("10000-01-01T00:00:00Z", "10000-01-01 00:00:00+00"),
        ("0000-01-01T00:00:00Z", "0001-01-01 00:00:00+00 BC"),
        ("-0043-03-15T12:00:00Z", "0044-03-15 12:00:00+00 BC"),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
    ] {
        assert_eq!(
            pg_timestamptz(canonical).as_deref(),
            Some(pg),
            "{canonical}"
        );
    }
    for bad in [
        "2024-05-01 10:00:00+00",
        "2024-05-01T10:00:00",
        "2024-05-01T10:00:00.50Z",
        "2024-05-01T10:00:00.Z",
        "24-05-01T10:00:00Z",
        "2024-5-01T10:00:00Z",
        "2024-05-01T10:00Z",
    ] {
        assert_eq!(pg_timestamptz(bad), None, "{bad}");
    }
}

#[test]
fn local_values_have_postgres_input_text() {
    assert_eq!(LocalValue::Null.pg_text(), None);
    assert_eq!(LocalValue::Int(-7).pg_text().unwrap(), "-7");
    assert_eq!(LocalValue::Bool(true).pg_text().unwrap(), "t");
    assert_eq!(LocalValue::Float(1e20).pg_text().unwrap(), "1e20");
    assert_eq!(LocalValue::Float(0.1).pg_text().unwrap(), "0.1");
    assert_eq!(LocalValue::Float(f64::NAN).pg_text().unwrap(), "NaN");
    assert_eq!(
        LocalValue::Float(f64::NEG_INFINITY).pg_text().unwrap(),
        "-Infinity"
    );
    assert_eq!(
        LocalValue::Json(json!({"b": 1, "a": [null]}))
            .pg_text()
            .unwrap(),
        r#"{"a":[null],"b":1}"#
    );
}

#[test]
fn values_that_do_not_fit_their_column_are_errors() {
    for (type_oid, value) in [
        (oid::INT4, json!(2_147_483_648_i64)),
        (oid::INT2, json!(40_000)),
        (oid::INT8, json!(1.5)),
        (oid::INT8, json!("1")),
        (oid::BOOL, json!("t")),
        (oid::FLOAT8, json!("one")),
        (oid::TIMESTAMPTZ, json!("2024-05-01 10:00:00+00")),
        (TEXT, json!(1)),
    ] {
        assert!(
            local_scalar(Oid(type_oid), &value).is_err(),
            "{type_oid} {value}"
        );
    }
    assert_eq!(
        local_scalar(Oid(oid::INT8), &Value::Null),
        Ok(LocalValue::Null)
    );
}

#[test]
fn every_json_text_column_with_ids_has_a_walker() {
    for (table, policy) in policy::superset().replicated() {
        for embedded in policy.embedded {
            let local = embedded.refs.iter().any(|r| r.form == IdForm::LocalId);
            if embedded.format == EmbeddedFormat::JsonText && local {
                assert!(JsonColumn::of(table, embedded.column).is_some(), "{table}");
            }
        }
    }
}

#[tokio::test]
async fn references_become_this_regions_ids_in_one_round_trip() {
    let (us, eu) = registries();
    let position = r#"{"CHART-a": {"type": "CHART", "meta": {"chartId": 1, "width": 4}},
        "CHART-b": {"type": "CHART", "meta": {"chartId": 99}}}"#;
    let metadata = r#"{"native_filter_configuration": [{"targets": [{"datasetId": 2}],
        "scope": {"excluded": [3]}, "chartsInScope": [1, 3, 99]}],
        "chart_configuration": {"1": {"id": 1, "crossFilters": {"chartsInScope": [3]}}},
        "refresh_frequency": 3}"#;
    let row = vec![
        col("dashboard_title", VARCHAR, Some("Sales")),
        col("position_json", TEXT, Some(position)),
        col("json_metadata", TEXT, Some(metadata)),
        col("theme_id", oid::INT4, Some("1")),
        col("created_by_fk", oid::INT4, Some("1")),
        col("changed_by_fk", oid::INT4, None),
        col("published", oid::BOOL, Some("t")),
    ];
    let (_, local) = round_trip("dashboards", row, &us, &eu, TEXT).await;
    let columns = ready_columns(&local);
    assert_eq!(columns["theme_id"], LocalValue::Int(31));
    assert_eq!(columns["created_by_fk"], LocalValue::Int(41));
    assert_eq!(columns["changed_by_fk"], LocalValue::Null);
    assert_eq!(columns["published"], LocalValue::Bool(true));
    let LocalValue::Text(position) = &columns["position_json"] else {
        panic!("text");
    };
    let position: Value = serde_json::from_str(position).unwrap();
    assert_eq!(
        position["CHART-a"]["meta"]["chartId"],
        json!(500),
        "the newest id"
    );
    assert_eq!(
        position["CHART-b"]["meta"]["chartId"],
        json!("dangling:us:slices:99")
    );
    let LocalValue::Text(metadata) = &columns["json_metadata"] else {
        panic!("text");
    };
    let metadata: Value = serde_json::from_str(metadata).unwrap();
    let filter = &metadata["native_filter_configuration"][0];
    assert_eq!(filter["targets"][0]["datasetId"], json!(202));
    assert_eq!(filter["scope"]["excluded"], json!([121]));
    assert_eq!(
        filter["chartsInScope"],
        json!([500, 121, "dangling:us:slices:99"])
    );
    assert_eq!(metadata["chart_configuration"]["500"]["id"], json!(500));
    assert_eq!(metadata["refresh_frequency"], json!(3));
    assert!(notes(&local).is_empty());

    let mut form = local_form(&eu, TEXT);
    let canonical = forward(
        "us",
        &us,
        "dashboards",
        vec![col("json_metadata", TEXT, Some(metadata_text()))],
    )
    .await;
    form.column_values("dashboards", &canonical.fields)
        .await
        .unwrap();
    assert_eq!(form.stats().lookups, 1);
    assert_eq!(form.registry().asked.lock().unwrap().len(), 1);
}

fn metadata_text() -> &'static str {
    r#"{"native_filter_configuration": [{"targets": [{"datasetId": 1}], "chartsInScope": [1, 2]}],
        "timed_refresh_immune_slices": [3], "expanded_slices": {"4": true}}"#
}

#[tokio::test]
async fn uuids_not_known_here_are_missing_and_the_write_waits() {
    let (us, mut eu) = registries();
    // eu lacks charts 1 (ids 107 and 500) and 2 (id 114), and the theme.
    eu.rows
        .retain(|(t, id), _| t != "themes" && !(t == "slices" && [107, 114, 500].contains(id)));
    let canonical = forward(
        "us",
        &us,
        "dashboards",
        vec![
            col("json_metadata", TEXT, Some(metadata_text())),
            col("theme_id", oid::INT4, Some("1")),
            col("dashboard_title", VARCHAR, Some("x")),
        ],
    )
    .await;
    let mut form = local_form(&eu, TEXT);
    let out = form
        .column_values("dashboards", &canonical.fields)
        .await
        .unwrap();
    let mut want = vec![
        ("slices", uuid("chart1")),
        ("slices", uuid("chart2")),
        ("themes", uuid("theme")),
    ];
    want.sort();
    assert_eq!(out, Translated::Missing(want));
    assert_eq!(form.stats().missing, 1);
}

#[tokio::test]
async fn absent_users_are_null_in_audit_columns_and_skip_ownership_rows() {
    let (us, eu) = registries();
    // bob (us id 2) has no account in eu.
    let canonical = forward(
        "us",
        &us,
        "dashboards",
        vec![
            col("created_by_fk", oid::INT4, Some("2")),
            col("changed_by_fk", oid::INT4, Some("1")),
        ],
    )
    .await;
    let mut form = local_form(&eu, TEXT);
    let out = form
        .column_values("dashboards", &canonical.fields)
        .await
        .unwrap();
    assert_eq!(ready_columns(&out)["created_by_fk"], LocalValue::Null);
    assert_eq!(ready_columns(&out)["changed_by_fk"], LocalValue::Int(41));
    assert_eq!(
        notes(&out),
        [Note::AbsentNulled {
            column: "created_by_fk".into(),
            table: "ab_user",
            uuid: user("bob")
        }]
    );

    let fields = [
        field("$exists", json!(true)),
        field("dashboard_id", json!(uuid("dashboard").to_string())),
        field("user_id", json!(user("bob").to_string())),
    ];
    let out = form.column_values("dashboard_user", &fields).await.unwrap();
    assert_eq!(
        out,
        Translated::Skip(vec![Skip::Absent {
            column: "user_id".into(),
            table: "ab_user",
            uuid: user("bob")
        }])
    );
    // A skip outranks a missing uuid: waiting would not help.
    let fields = [
        field("dashboard_id", json!(uuid("not here").to_string())),
        field("user_id", json!(user("bob").to_string())),
    ];
    let out = form.column_values("dashboard_user", &fields).await.unwrap();
    assert!(matches!(out, Translated::Skip(_)), "{out:?}");
    let fields = [
        field("dashboard_id", json!(uuid("dashboard").to_string())),
        field("user_id", json!(user("admin").to_string())),
    ];
    let out = form.column_values("dashboard_user", &fields).await.unwrap();
    assert_eq!(ready_columns(&out)["user_id"], LocalValue::Int(41));
    assert_eq!(ready_columns(&out)["dashboard_id"], LocalValue::Int(51));
}

#[tokio::test]
async fn dangling_references_are_null_when_they_can_be_and_skip_the_row_otherwise() {
    let (us, eu) = registries();
    // Theme 9 was never registered in us.
    let canonical = forward(
        "us",
        &us,
        "dashboards",
        vec![col("theme_id", oid::INT4, Some("9"))],
    )
    .await;
    let mut form = local_form(&eu, TEXT);
    let out = form
        .column_values("dashboards", &canonical.fields)
        .await
        .unwrap();
    assert_eq!(ready_columns(&out)["theme_id"], LocalValue::Null);
    assert_eq!(
        notes(&out),
        [Note::DanglingNulled {
            column: "theme_id".into(),
            token: "dangling:us:themes:9".into()
        }]
    );
    let token = json!("dangling:us:slices:9");
    for (table, column) in [("dashboard_slices", "slice_id"), ("tables", "database_id")] {
        let out = form
            .column_values(table, &[field(column, token.clone())])
            .await
            .unwrap();
        assert_eq!(
            out,
            Translated::Skip(vec![Skip::Dangling {
                column: column.into(),
                token: "dangling:us:slices:9".into()
            }]),
            "{table}.{column}: it names the row, or is NOT NULL"
        );
    }
    assert_eq!(form.stats().skipped, 2);
}

#[tokio::test]
async fn tag_names_hold_local_user_ids_and_keep_absent_users_uuids() {
    let (us, eu) = registries();
    for (name, local) in [
        ("owner:1", "owner:41".to_owned()),
        ("favorited_by:1", "favorited_by:41".to_owned()),
        ("owner:2", format!("owner:{}", user("bob"))),
        ("owner:7", "owner:dangling:us:ab_user:7".to_owned()),
        ("type:dashboard", "type:dashboard".to_owned()),
        ("sales", "sales".to_owned()),
    ] {
        let (_, out) = round_trip(
            "tag",
            vec![col("name", VARCHAR, Some(name))],
            &us,
            &eu,
            TEXT,
        )
        .await;
        assert_eq!(
            ready_columns(&out)["name"],
            LocalValue::Text(local),
            "{name}"
        );
        if name == "owner:2" {
            assert!(matches!(notes(&out).as_slice(), [Note::AbsentKept { .. }]));
        }
    }
}

#[tokio::test]
async fn polymorphic_references_use_the_discriminator_or_every_target() {
    let (us, eu) = registries();
    let row = vec![
        col("tag_id", oid::INT4, Some("1")),
        col("object_id", oid::INT4, Some("1")),
        col("object_type", VARCHAR, Some("dashboard")),
    ];
    let (canonical, out) = round_trip("tagged_object", row, &us, &eu, TEXT).await;
    assert_eq!(ready_columns(&out)["object_id"], LocalValue::Int(51));
    assert_eq!(ready_columns(&out)["tag_id"], LocalValue::Int(61));
    // Without the discriminator in the write, the uuid is looked up in every target.
    let fields: Vec<FieldWrite> = canonical
        .fields
        .into_iter()
        .filter(|f| f.path.as_str() == "object_id")
        .collect();
    let mut form = local_form(&eu, TEXT);
    let out = form.column_values("tagged_object", &fields).await.unwrap();
    assert_eq!(ready_columns(&out)["object_id"], LocalValue::Int(51));
    let asked = form.registry().asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].len(), 4, "{asked:?}");
}

#[tokio::test]
async fn changes_that_cannot_be_local_are_errors_and_local_columns_never_written() {
    let (_, eu) = registries();
    let mut form = local_form(&eu, TEXT);
    let out = form
        .column_values(
            "dashboards",
            &[
                field("$exists", json!(true)),
                field("id", json!(5)),
                field("uuid", json!(uuid("x").to_string())),
                field("dashboard_title", json!("t")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        Translated::Ready {
            columns: vec![("dashboard_title".into(), LocalValue::Text("t".into()))],
            notes: vec![
                Note::LocalColumnDropped {
                    column: "id".into()
                },
                Note::LocalColumnDropped {
                    column: "uuid".into()
                }
            ],
        }
    );
    for fields in [
        vec![field("no_such_column", json!(1))],
        vec![field("theme_id", json!(3))],
        vec![field("theme_id", json!("not a uuid"))],
        vec![field(
            "json_metadata",
            json!(r#"{"timed_refresh_immune_slices": [3]}"#),
        )],
        vec![field("json_metadata", json!({"a": 1}))],
        vec![field("published", json!("t"))],
    ] {
        let error = form.column_values("dashboards", &fields).await.unwrap_err();
        assert!(matches!(error, Error::LocalValue { .. }), "{error}");
        assert_eq!(error.action(), crate::Action::Quarantine);
    }
    let error = form.column_values("logs", &[]).await.unwrap_err();
    assert!(matches!(error, Error::NotReplicated { .. }), "{error}");
    assert_eq!(existence(&[field("$exists", json!(false))]), Some(false));
    assert_eq!(existence(&[]), None);
}

#[tokio::test]
async fn json_text_that_is_not_json_and_native_json_round_trip() {
    let (us, eu) = registries();
    for text in [Some("{not json"), Some(""), Some("null"), None] {
        round_trip(
            "dashboards",
            vec![col("json_metadata", TEXT, text)],
            &us,
            &eu,
            TEXT,
        )
        .await;
    }
    let folders = r#"[{"uuid": "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f", "children": [], "n": 1.5}]"#;
    let (_, out) = round_trip(
        "tables",
        vec![col("folders", oid::JSON, Some(folders))],
        &us,
        &eu,
        TEXT,
    )
    .await;
    assert!(matches!(
        ready_columns(&out)["folders"],
        LocalValue::Json(_)
    ));
}

/// serde_json without its `float_roundtrip` feature parses some floats one ulp off, so a float
/// inside JSON (a `json` column, JSON text, and every envelope value, which travels as JSON text)
/// would not survive print → parse. The workspace enables the feature; this pins it.
#[test]
fn json_floats_round_trip_exactly() {
    let value = -6.065_289_364_439_884e184_f64;
    let text = Value::from(value).to_string();
    assert_eq!(serde_json::from_str::<f64>(&text).unwrap(), value, "{text}");
}

/// PostgreSQL's text of a generated value of type `type_oid` (what pgoutput would send).
fn pg_value(type_oid: u32) -> BoxedStrategy<Option<String>> {
    let value: BoxedStrategy<String> = match type_oid {
        oid::INT2 => any::<i16>().prop_map(|n| n.to_string()).boxed(),
        oid::INT4 => any::<i32>().prop_map(|n| n.to_string()).boxed(),
        oid::INT8 => any::<i64>().prop_map(|n| n.to_string()).boxed(),
        oid::BOOL => prop_oneof![Just("t".to_owned()), Just("f".to_owned())].boxed(),
        oid::FLOAT8 => any::<f64>().prop_map(pg_float).boxed(),
        oid::FLOAT4 => any::<f32>()
            .prop_map(|f| {
                if f.is_finite() {
                    format!("{f:?}")
                } else {
                    pg_float(f64::from(f))
                }
            })
            .boxed(),
        NUMERIC => "-?[0-9]{1,25}(\\.[0-9]{1,12})?|NaN".boxed(),
        oid::JSON | oid::JSONB => json_value().prop_map(|v| v.to_string()).boxed(),
        oid::TIMESTAMPTZ => timestamptz().boxed(),
        UUID => any::<u128>()
            .prop_map(|n| Uuid::from_u128(n).to_string())
            .boxed(),
        BYTEA => "\\\\x([0-9a-f]{2}){0,16}".boxed(),
        DATE => "[0-9]{4}-[01][0-9]-[0-3][0-9]".boxed(),
        TIMESTAMP => {
            "[0-9]{4}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?".boxed()
        }
        _ => "[^\\x00]{0,40}".boxed(),
    };
    proptest::option::weighted(0.9, value).boxed()
}

fn pg_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{f:e}")
    }
}

fn timestamptz() -> impl Strategy<Value = String> {
    (
        (1i64..=12_000, any::<bool>(), 1u32..=12, 1u32..=28),
        (
            0u32..24,
            0u32..60,
            0u32..60,
            proptest::option::of("[0-9]{1,6}"),
        ),
        (-12i32..=14, prop_oneof![Just(0u32), Just(30), Just(45)]),
    )
        .prop_map(|((year, bc, month, day), (h, m, s, fraction), (oh, om))| {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let sign = if oh < 0 { '-' } else { '+' };
            let offset = if om == 0 {
                format!("{sign}{:02}", oh.abs())
            } else {
                format!("{sign}{:02}:{om:02}", oh.abs())
            };
            let bc = if bc && year < 9000 { " BC" } else { "" };
            format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}{fraction}{offset}{bc}")
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Every finite float (the workspace enables serde_json's `float_roundtrip`).
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[^\\x00]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const SCALAR_TYPES: [u32; 16] = [
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::BOOL,
    oid::FLOAT4,
    oid::FLOAT8,
    NUMERIC,
    oid::JSON,
    oid::JSONB,
    oid::TIMESTAMPTZ,
    UUID,
    BYTEA,
    DATE,
    TIMESTAMP,
    TEXT,
    VARCHAR,
];

fn scalar_case() -> impl Strategy<Value = (u32, Option<String>)> {
    proptest::sample::select(SCALAR_TYPES.to_vec())
        .prop_flat_map(|type_oid| (Just(type_oid), pg_value(type_oid)))
}

/// An id us knows (1..=8 charts, 1..=3 datasets) or one it never registered (a dangling one).
fn chart_id() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1i64..=8, 1 => 90i64..=95]
}

fn dataset_id() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1i64..=3, 1 => Just(50i64)]
}

fn ids(max: usize) -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec(chart_id(), 0..max)
}

/// A dashboard's layout and metadata as Superset writes them in us, with ids in every place
/// of facts §3.
fn dashboard_json() -> impl Strategy<Value = (String, String)> {
    (
        proptest::collection::vec((chart_id(), 1u32..12), 0..6),
        proptest::collection::vec((dataset_id(), ids(3), ids(4)), 0..3),
        proptest::collection::vec((chart_id(), ids(3), ids(3)), 0..3),
        (ids(4), ids(3), ids(3), ids(3)),
        (proptest::option::of(dataset_id()), any::<u16>()),
    )
        .prop_map(
            |(charts, filters, configuration, (global, immune, expanded, scoped), (custom, refresh))| {
                let mut position = serde_json::Map::new();
                position.insert("DASHBOARD_VERSION_KEY".into(), json!("v2"));
                position.insert("ROOT_ID".into(), json!({"type": "ROOT", "children": ["GRID_ID"]}));
                for (i, (chart, width)) in charts.iter().enumerate() {
                    position.insert(
                        format!("CHART-{i}"),
                        json!({"type": "CHART", "id": format!("CHART-{i}"), "children": [],
                               "meta": {"chartId": chart, "width": width, "height": 50,
                                        "uuid": uuid(&format!("chart{chart}")).to_string()}}),
                    );
                }
                let native: Vec<Value> = filters
                    .iter()
                    .enumerate()
                    .map(|(i, (dataset, excluded, in_scope))| {
                        json!({"id": format!("NATIVE_FILTER-{i}"), "targets": [{"datasetId": dataset,
                               "column": {"name": "region"}}],
                               "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded},
                               "chartsInScope": in_scope})
                    })
                    .collect();
                let mut per_chart = serde_json::Map::new();
                for (chart, excluded, in_scope) in &configuration {
                    per_chart.insert(
                        chart.to_string(),
                        json!({"id": chart, "crossFilters": {"scope": {"excluded": excluded},
                               "chartsInScope": in_scope}}),
                    );
                }
                let expanded: serde_json::Map<String, Value> =
                    expanded.iter().map(|c| (c.to_string(), json!(true))).collect();
                let scopes: serde_json::Map<String, Value> = scoped
                    .iter()
                    .map(|c| (c.to_string(), json!({"region": {"immune": immune}})))
                    .collect();
                let defaults: serde_json::Map<String, Value> = scoped
                    .iter()
                    .map(|c| (c.to_string(), json!({"region": ["EU"]})))
                    .collect();
                let mut metadata = json!({
                    "native_filter_configuration": native,
                    "chart_configuration": per_chart,
                    "global_chart_configuration": {"scope": {"excluded": immune}, "chartsInScope": global},
                    "timed_refresh_immune_slices": immune,
                    "expanded_slices": expanded,
                    "filter_scopes": scopes,
                    "default_filters": Value::Object(defaults).to_string(),
                    "refresh_frequency": refresh,
                    "color_scheme": "supersetColors",
                });
                if let Some(dataset) = custom {
                    metadata["chart_customization_config"] =
                        json!([{"id": "CUSTOM-1", "targets": [{"datasetId": dataset}],
                                "chartsInScope": global}]);
                }
                (Value::Object(position).to_string(), metadata.to_string())
            },
        )
}

/// A chart's params and query context as Superset writes them in us.
fn chart_json() -> impl Strategy<Value = (String, String)> {
    (dataset_id(), chart_id(), ids(3), chart_id(), 0i64..9).prop_map(
        |(dataset, chart, deck, layer_chart, layer)| {
            let params = json!({"datasource": format!("{dataset}__table"), "slice_id": chart,
                "deck_slices": deck, "row_limit": 1000,
                "annotation_layers": [{"sourceType": "NATIVE", "value": layer},
                                      {"sourceType": "line", "value": layer_chart}]});
            let context = json!({"datasource": {"id": dataset, "type": "table"},
                "queries": [{"datasource": {"id": dataset}, "row_limit": 10}],
                "form_data": {"datasource": format!("{dataset}__table"), "slice_id": chart}});
            (params.to_string(), context.to_string())
        },
    )
}

/// Every local id the walker finds in `json` of `kind`.
fn local_ids(walker: JsonColumn, json: &str) -> Vec<(RefKind, i64)> {
    let mut json: Value = serde_json::from_str(json).unwrap();
    let mut found = Vec::new();
    let mut collect = |kind: RefKind, id: EmbeddedId| -> canonical::Result<EmbeddedId> {
        if let EmbeddedId::Local(n) = id {
            found.push((kind, n));
        }
        Ok(id)
    };
    walker.translate(&mut json, &mut collect).unwrap();
    found
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// canonical → local → canonical is the identity for every type canonical form knows.
    #[test]
    fn scalars_round_trip((type_oid, text) in scalar_case()) {
        let (us, eu) = registries();
        block_on(round_trip(
            "dashboards",
            vec![col("css", type_oid, text.as_deref())],
            &us,
            &eu,
            type_oid,
        ));
    }

    /// The same for generated dashboards and charts: every id in eu's local JSON is an eu id
    /// (or a dangling token), and capturing it in eu gives us's canonical bytes.
    #[test]
    fn dashboards_and_charts_round_trip(
        (position, metadata) in dashboard_json(),
        (params, context) in chart_json(),
    ) {
        let (us, eu) = registries();
        let eu_ids: Vec<i64> = eu.rows.keys().map(|(_, id)| *id).collect();
        let (canonical, local) = block_on(round_trip(
            "dashboards",
            vec![
                col("position_json", TEXT, Some(&position)),
                col("json_metadata", TEXT, Some(&metadata)),
            ],
            &us,
            &eu,
            TEXT,
        ));
        for field in &canonical.fields {
            prop_assert!(field.value.as_str().is_some_and(|s| s == canonical::sorted_json(&serde_json::from_str(s).unwrap())));
        }
        let columns = ready_columns(&local);
        for (column, walker) in [("position_json", JsonColumn::DashboardPosition), ("json_metadata", JsonColumn::DashboardMetadata)] {
            let LocalValue::Text(text) = &columns[column] else { panic!("text") };
            for (kind, id) in local_ids(walker, text) {
                prop_assert!(eu_ids.contains(&id), "{kind:?} {id} in {text}");
            }
        }
        let (_, local) = block_on(round_trip(
            "slices",
            vec![
                col("params", TEXT, Some(&params)),
                col("query_context", TEXT, Some(&context)),
            ],
            &us,
            &eu,
            TEXT,
        ));
        let columns = ready_columns(&local);
        for (column, walker) in [("params", JsonColumn::ChartParams), ("query_context", JsonColumn::ChartQueryContext)] {
            let LocalValue::Text(text) = &columns[column] else { panic!("text") };
            for (kind, id) in local_ids(walker, text) {
                prop_assert!(eu_ids.contains(&id), "{kind:?} {id} in {text}");
            }
        }
    }

    /// A generated dashboard that names a chart eu does not have waits for exactly the uuids of
    /// the charts eu lacks.
    #[test]
    fn a_dashboard_waits_for_exactly_the_charts_it_lacks(
        (position, metadata) in dashboard_json(),
        absent in proptest::collection::btree_set(1i64..=8, 1..4),
    ) {
        let (us, mut eu) = registries();
        let absent_uuids: BTreeSet<Uuid> = absent.iter().map(|i| uuid(&format!("chart{i}"))).collect();
        eu.rows.retain(|(t, _), u| t != "slices" || !absent_uuids.contains(u));
        let canonical = block_on(forward("us", &us, "dashboards", vec![
            col("position_json", TEXT, Some(&position)),
            col("json_metadata", TEXT, Some(&metadata)),
        ]));
        let referenced: BTreeSet<Uuid> = canonical
            .fields
            .iter()
            .flat_map(|f| {
                let text = f.value.as_str().unwrap_or_default();
                absent_uuids.iter().filter(|u| text.contains(&u.to_string())).copied().collect::<Vec<_>>()
            })
            .collect();
        let mut form = local_form(&eu, TEXT);
        let out = block_on(form.column_values("dashboards", &canonical.fields)).unwrap();
        if referenced.is_empty() {
            prop_assert!(matches!(out, Translated::Ready { .. }), "{out:?}");
        } else {
            let want: Vec<(&'static str, Uuid)> = referenced.into_iter().map(|u| ("slices", u)).collect();
            let mut want = want;
            want.sort();
            prop_assert_eq!(out, Translated::Missing(want));
        }
    }
}

#[tokio::test]
async fn a_uuid_of_a_table_without_registry_entries_is_an_error_not_a_wait() {
    let (_, eu) = registries();
    let params = format!(
        r#"{{"annotation_layers":[{{"sourceType":"NATIVE","value":"{}"}}]}}"#,
        uuid("layer")
    );
    let mut form = local_form(&eu, TEXT);
    let error = form
        .column_values("slices", &[field("params", json!(params))])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::LocalValue { .. }), "{error}");
}

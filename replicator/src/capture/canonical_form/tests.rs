//! Unit tests of canonical form.
use std::sync::Mutex;

use bytes::Bytes;
use conflict::{Counter, Dot, Hlc, VersionVector};
use serde_json::json;
use uuid::Uuid;

use pgoutput::Oid;

use super::value::{civil_from_days, days_from_civil, scalar_text, timestamptz_utc};
use super::*;
use crate::capture::Stamp;

/// `replicator.registry` as a map; records each round trip.
#[derive(Default)]
struct Registry {
    rows: BTreeMap<(String, i64), Uuid>,
    asked: Mutex<Vec<Vec<(String, i64)>>>,
}

impl RegistryLookup for Registry {
    async fn lookup(&self, keys: &[(&str, i64)]) -> Result<Vec<(String, i64, Uuid)>> {
        self.asked
            .lock()
            .unwrap()
            .push(keys.iter().map(|(t, id)| ((*t).to_owned(), *id)).collect());
        Ok(keys
            .iter()
            .filter_map(|(t, id)| {
                self.rows
                    .get(&((*t).to_owned(), *id))
                    .map(|u| ((*t).to_owned(), *id, *u))
            })
            .collect())
    }
}

fn uuid(table: &str, id: i64) -> Uuid {
    policy::name_uuid(&format!("test:{table}:{id}"))
}

/// A form for region `us` whose registry knows `known` (each as [`uuid`]).
fn form(known: &[(&str, i64)]) -> CanonicalForm<Registry> {
    let registry = Registry {
        rows: known
            .iter()
            .map(|(t, id)| (((*t).to_owned(), *id), uuid(t, *id)))
            .collect(),
        asked: Mutex::default(),
    };
    CanonicalForm::new(
        RegionId::new("us").unwrap(),
        RegistryCache::new(registry, 100),
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

const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const UUID: u32 = 2950;
const TIMESTAMP: u32 = 1114;
const BYTEA: u32 = 17;

fn stamp(field: &str, hlc: u64) -> Stamp {
    Stamp {
        field: field.to_owned(),
        dot: Dot::new(RegionId::new("us").unwrap(), Counter(3)),
        hlc: Hlc::from_u64(hlc),
    }
}

fn change(table: &str, row: Option<Vec<Column>>, fields: &[&str]) -> CapturedChange {
    CapturedChange {
        table: table.to_owned(),
        entity: uuid("entity", 1),
        clock: [(RegionId::new("us").unwrap(), Counter(3))]
            .into_iter()
            .collect::<VersionVector>(),
        stamps: fields
            .iter()
            .enumerate()
            .map(|(i, f)| stamp(f, 1000 + i as u64))
            .collect(),
        row: row.map(|columns| Row { columns }),
    }
}

fn value<'c>(change: &'c EntityChange, path: &str) -> &'c Value {
    &change
        .fields
        .iter()
        .find(|f| f.path.as_str() == path)
        .unwrap_or_else(|| panic!("no field {path}"))
        .value
}

fn scalar_of(type_oid: u32, text: &str) -> std::result::Result<Value, String> {
    scalar_text(Oid(type_oid), text)
}

#[test]
fn values_are_canonical_by_type() {
    assert_eq!(scalar_of(oid::INT2, "-7"), Ok(json!(-7)));
    assert_eq!(scalar_of(oid::INT4, "2147483647"), Ok(json!(2_147_483_647)));
    assert_eq!(
        scalar_of(oid::INT8, "-9223372036854775808"),
        Ok(json!(i64::MIN))
    );
    assert_eq!(scalar_of(oid::BOOL, "t"), Ok(json!(true)));
    assert_eq!(scalar_of(oid::BOOL, "f"), Ok(json!(false)));
    assert_eq!(scalar_of(oid::FLOAT8, "1.5"), Ok(json!(1.5)));
    assert_eq!(scalar_of(oid::FLOAT4, "1e+20"), Ok(json!(1e20)));
    assert_eq!(scalar_of(oid::FLOAT8, "NaN"), Ok(json!("NaN")));
    assert_eq!(scalar_of(oid::FLOAT8, "Infinity"), Ok(json!("Infinity")));
    assert_eq!(scalar_of(oid::FLOAT8, "-Infinity"), Ok(json!("-Infinity")));
    assert_eq!(
        scalar_of(oid::NUMERIC, "12345678901234567890.10"),
        Ok(json!("12345678901234567890.10")),
        "numeric stays exact"
    );
    assert_eq!(scalar_of(TEXT, "42"), Ok(json!("42")), "text stays text");
    assert_eq!(scalar_of(VARCHAR, "Sales"), Ok(json!("Sales")));
    assert_eq!(scalar_of(1042, "ab  "), Ok(json!("ab  ")));
    let u = "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f";
    assert_eq!(scalar_of(UUID, u), Ok(json!(u)));
    assert_eq!(scalar_of(1082, "2024-05-01"), Ok(json!("2024-05-01")));
    assert_eq!(
        scalar_of(TIMESTAMP, "2024-05-01 10:00:00.25"),
        Ok(json!("2024-05-01 10:00:00.25"))
    );
    assert_eq!(
        scalar_of(oid::JSON, r#"{"b": [1, {"x": null}], "a": "s"}"#),
        Ok(json!({"a": "s", "b": [1, {"x": null}]})),
        "json is a value"
    );
    assert_eq!(scalar_of(oid::JSONB, "[]"), Ok(json!([])));
    assert_eq!(scalar_of(BYTEA, "\\xdeadbeef"), Ok(json!("\\xdeadbeef")));
    assert_eq!(
        scalar_of(oid::TIMESTAMPTZ, "2024-05-01 12:00:00+02"),
        Ok(json!("2024-05-01T10:00:00Z"))
    );
    assert_eq!(scalar_of(1009, "{a,b}"), Ok(json!("{a,b}")), "other types");
    for (type_oid, bad) in [
        (oid::INT4, "1.5"),
        (oid::INT8, ""),
        (oid::BOOL, "true"),
        (oid::FLOAT8, "one"),
        (oid::TIMESTAMPTZ, "05/01/2024 12:00:00 CEST"),
    ] {
        assert!(scalar_of(type_oid, bad).is_err(), "{type_oid} {bad:?}");
    }
    assert_eq!(scalar(&col("x", oid::INT4, None)), Ok(Value::Null));
    let binary = Column {
        value: ColumnValue::Binary(Bytes::from_static(b"\0\0\0\x01")),
        ..col("x", oid::INT4, None)
    };
    assert!(scalar(&binary).unwrap_err().contains("binary"));
    let not_utf8 = Column {
        value: ColumnValue::Text(Bytes::from_static(b"\xff")),
        ..col("x", TEXT, None)
    };
    assert!(scalar(&not_utf8).unwrap_err().contains("UTF-8"));
}

#[test]
fn timestamptz_is_normalised_to_utc() {
    for (pg, utc) in [
        ("2024-05-01 12:00:00+02", "2024-05-01T10:00:00Z"),
        (
            "2024-05-01 12:00:00.123456+00",
            "2024-05-01T12:00:00.123456Z",
        ),
        ("2024-05-01 12:00:00.5-03", "2024-05-01T15:00:00.5Z"),
        ("2024-01-01 01:00:00+05:30", "2023-12-31T19:30:00Z"),
        ("2023-12-31 23:30:00-01", "2024-01-01T00:30:00Z"),
        ("2024-02-28 23:00:00-02", "2024-02-29T01:00:00Z"),
        ("1900-01-01 00:00:00+00:19:32", "1899-12-31T23:40:28Z"),
        ("1970-01-01 00:00:00+00", "1970-01-01T00:00:00Z"),
        ("10000-01-01 00:00:00+00", "10000-01-01T00:00:00Z"),
        ("0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00Z"),
        ("0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00Z"),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
    ] {
        assert_eq!(timestamptz_utc(pg).as_deref(), Some(utc), "{pg}");
    }
    for bad in [
        "2024-05-01T12:00:00+02",
        "2024-05-01 12:00:00",
        "2024-13-01 12:00:00+00",
        "2024-05-01 12:00+00",
        "24-05-01 12:00:00+00",
        "2024-05-01 12:00:00.x+00",
        "2024-05-01 12:00:00+0200",
    ] {
        assert_eq!(timestamptz_utc(bad), None, "{bad}");
    }
    // The civil-date arithmetic round-trips over a wide range.
    for days in (-800_000..800_000).step_by(997) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn translated_json_is_written_with_sorted_keys() {
    let value = json!({"b": {"z": 1, "a": [true, null, {"y": "\"q\"", "x": 1.5}]}, "a": "é"});
    assert_eq!(
        canonical::sorted_json(&value),
        r#"{"a":"é","b":{"a":[true,null,{"x":1.5,"y":"\"q\""}],"z":1}}"#
    );
    assert_eq!(
        serde_json::from_str::<Value>(&canonical::sorted_json(&value)).unwrap(),
        value
    );
}

#[test]
fn the_first_pass_collects_every_local_id_and_changes_nothing() {
    let mut metadata = json!({
        "native_filter_configuration": [{
            "targets": [{"datasetId": 7}],
            "scope": {"excluded": [3]},
            "chartsInScope": [1, 2]
        }],
        "chart_configuration": {"1": {"id": 1, "crossFilters": {"chartsInScope": [2]}}},
        "expanded_slices": {"5": true},
    });
    let before = metadata.clone();
    let ids = collect_ids(JsonColumn::DashboardMetadata, &mut metadata).unwrap();
    assert_eq!(metadata, before);
    let want: BTreeSet<(&str, i64)> = [
        ("slices", 1),
        ("slices", 2),
        ("slices", 3),
        ("slices", 5),
        ("tables", 7),
    ]
    .into_iter()
    .collect();
    assert_eq!(ids, want);
    let mut params = json!({"datasource": "7__table", "slice_id": 1,
        "annotation_layers": [{"sourceType": "NATIVE", "value": 4}]});
    let ids = collect_ids(JsonColumn::ChartParams, &mut params).unwrap();
    assert!(ids.contains(&("annotation_layer", 4)) && ids.contains(&("tables", 7)));
}

#[test]
fn every_column_the_policy_says_embeds_local_ids_has_a_walker() {
    for (table, policy) in policy::superset().replicated() {
        for embedded in policy.embedded {
            let local = embedded.refs.iter().any(|r| r.form == IdForm::LocalId);
            match embedded.format {
                EmbeddedFormat::JsonText if local => assert!(
                    JsonColumn::of(table, embedded.column).is_some(),
                    "{table}.{}",
                    embedded.column
                ),
                EmbeddedFormat::Json => assert!(!local, "{table}.{}", embedded.column),
                EmbeddedFormat::PrefixedId => {
                    assert!(embedded.refs.iter().all(|r| r.path.ends_with(":<id>")))
                }
                EmbeddedFormat::JsonText => {}
            }
        }
    }
}

fn dashboard_row(position: &str, metadata: &str) -> Vec<Column> {
    vec![
        col("id", oid::INT4, Some("11")),
        col("dashboard_title", VARCHAR, Some("Sales")),
        col("position_json", TEXT, Some(position)),
        col("json_metadata", TEXT, Some(metadata)),
        col("created_by_fk", oid::INT4, Some("1")),
        col("changed_by_fk", oid::INT4, None),
        col("theme_id", oid::INT4, Some("3")),
        col("published", oid::BOOL, Some("t")),
        col("uuid", UUID, Some("5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f")),
    ]
}

#[tokio::test]
async fn a_dashboard_insert_is_translated_and_only_stamped_versioned_fields_leave() {
    let mut form = form(&[
        ("ab_user", 1),
        ("slices", 21),
        ("slices", 22),
        ("tables", 7),
    ]);
    let position = r#"{"CHART-a": {"type": "CHART", "meta": {"chartId": 21, "width": 4}},
        "CHART-b": {"type": "CHART", "meta": {"chartId": 99}}, "ROOT_ID": {"type": "ROOT"}}"#;
    let metadata = r#"{"native_filter_configuration": [{"id": "NATIVE_FILTER-x",
        "targets": [{"datasetId": 7, "column": {"name": "region"}}],
        "scope": {"excluded": [22]}, "chartsInScope": [21, 22]}],
        "timed_refresh_immune_slices": [21], "refresh_frequency": 21}"#;
    let mut captured = change(
        "dashboards",
        Some(dashboard_row(position, metadata)),
        &[
            "dashboard_title",
            "position_json",
            "json_metadata",
            "created_by_fk",
            "changed_by_fk",
            "theme_id",
            "published",
            "$exists",
            "id",
            "uuid",
        ],
    );
    let dot = captured.stamps[0].dot;
    captured.stamps.reverse();
    let out = form.entity_change(captured.clone()).await.unwrap();

    assert_eq!(out.table, "dashboards");
    assert_eq!(out.entity, captured.entity);
    assert_eq!(out.clock, captured.clock);
    let paths: Vec<&str> = out.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$exists",
            "changed_by_fk",
            "created_by_fk",
            "dashboard_title",
            "json_metadata",
            "position_json",
            "published",
            "theme_id"
        ],
        "sorted, without id and uuid"
    );
    assert!(out.fields.iter().all(|f| f.dot == dot));
    let title = out
        .fields
        .iter()
        .find(|f| f.path.as_str() == "dashboard_title")
        .unwrap();
    assert_eq!(
        title.hlc,
        Hlc::from_u64(1000),
        "each field keeps its stamp's hlc"
    );
    assert_eq!(value(&out, "$exists"), &json!(true));
    assert_eq!(value(&out, "dashboard_title"), &json!("Sales"));
    assert_eq!(value(&out, "published"), &json!(true));
    assert_eq!(value(&out, "changed_by_fk"), &Value::Null);
    assert_eq!(
        value(&out, "created_by_fk"),
        &json!(uuid("ab_user", 1).to_string())
    );
    assert_eq!(value(&out, "theme_id"), &json!("dangling:us:themes:3"));

    let position: Value =
        serde_json::from_str(value(&out, "position_json").as_str().unwrap()).unwrap();
    assert_eq!(
        position["CHART-a"]["meta"],
        json!({"chartId": uuid("slices", 21).to_string(), "width": 4})
    );
    assert_eq!(
        position["CHART-b"]["meta"]["chartId"],
        json!("dangling:us:slices:99")
    );
    let metadata_text = value(&out, "json_metadata").as_str().unwrap();
    let metadata: Value = serde_json::from_str(metadata_text).unwrap();
    assert_eq!(
        canonical::sorted_json(&metadata),
        metadata_text,
        "sorted, compact text"
    );
    let filter = &metadata["native_filter_configuration"][0];
    let (c21, c22) = (
        uuid("slices", 21).to_string(),
        uuid("slices", 22).to_string(),
    );
    assert_eq!(filter["chartsInScope"], json!([c21, c22]));
    assert_eq!(filter["scope"]["excluded"], json!([c22]));
    assert_eq!(
        filter["targets"][0]["datasetId"],
        json!(uuid("tables", 7).to_string())
    );
    assert_eq!(metadata["timed_refresh_immune_slices"], json!([c21]));
    assert_eq!(
        metadata["refresh_frequency"],
        json!(21),
        "a number that is not an id stays"
    );

    let stats = form.stats();
    assert_eq!(stats.dropped_unversioned, 2, "id and uuid");
    assert_eq!(stats.dangling, 2, "theme 3 and chart 99");
    assert_eq!(stats.fields, 8);
    assert_eq!(
        form.registry().stats().lookups,
        1,
        "every id of the change in one round trip"
    );

    // The same change again is answered from memory, byte for byte the same.
    let again = form.entity_change(captured).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(
        form.registry().stats().lookups,
        2,
        "only the absent ids again"
    );
}

#[tokio::test]
async fn a_delete_is_existence_false_and_nothing_else() {
    let mut form = form(&[]);
    let out = form
        .entity_change(change("dashboards", None, &["$exists"]))
        .await
        .unwrap();
    assert_eq!(out.fields.len(), 1);
    assert!(out.fields[0].path.is_existence());
    assert_eq!(out.fields[0].value, json!(false));
}

#[tokio::test]
async fn a_stamped_value_that_is_not_in_the_row_is_an_error_never_a_blank() {
    let mut form = form(&[]);
    let toast = Column {
        value: ColumnValue::UnchangedToast,
        ..col("position_json", TEXT, None)
    };
    let cases = [
        change("dashboards", Some(vec![toast]), &["position_json"]),
        change("dashboards", Some(vec![]), &["css"]),
        change("dashboards", None, &["$exists", "css"]),
    ];
    for (captured, why) in cases.into_iter().zip(["TOAST", "no such column", "delete"]) {
        let error = form.entity_change(captured).await.unwrap_err();
        assert!(
            matches!(&error, Error::StampedValueMissing { why: w, .. } if w.contains(why)),
            "{error}"
        );
        assert_eq!(error.action(), crate::Action::Fatal);
        assert!(error.hint().contains("TOAST"));
    }
    // Unchanged TOAST in a column that was not stamped is fine: it is simply not sent.
    let toast = Column {
        value: ColumnValue::UnchangedToast,
        ..col("position_json", TEXT, None)
    };
    let title = col("dashboard_title", VARCHAR, Some("New"));
    let out = form
        .entity_change(change(
            "dashboards",
            Some(vec![toast, title]),
            &["dashboard_title"],
        ))
        .await
        .unwrap();
    assert_eq!(out.fields.len(), 1);
}

#[tokio::test]
async fn local_columns_never_leave_even_when_stamped() {
    let mut form = form(&[]);
    let row = vec![
        col("id", oid::INT4, Some("4")),
        col("database_name", VARCHAR, Some("examples")),
        col(
            "sqlalchemy_uri",
            VARCHAR,
            Some("postgresql://u:SECRET@h/db"),
        ),
        col("password", BYTEA, Some("\\x534543524554")),
        col("encrypted_extra", BYTEA, None),
        col("server_cert", BYTEA, None),
        col("cache_timeout", oid::INT4, Some("4")),
    ];
    let fields = [
        "database_name",
        "sqlalchemy_uri",
        "password",
        "encrypted_extra",
        "server_cert",
        "cache_timeout",
    ];
    let out = form
        .entity_change(change("dbs", Some(row), &fields))
        .await
        .unwrap();
    let paths: Vec<&str> = out.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["cache_timeout", "database_name"]);
    assert_eq!(value(&out, "cache_timeout"), &json!(4), "a genuine number");
    assert_eq!(form.stats().dropped_unversioned, 4);
}

#[tokio::test]
async fn polymorphic_references_follow_their_discriminator() {
    let mut form = form(&[("tag", 2), ("dashboards", 5), ("slices", 5)]);
    let row = |kind: Option<&str>, id: &str| {
        vec![
            col("id", oid::INT4, Some("1")),
            col("tag_id", oid::INT4, Some("2")),
            col("object_id", oid::INT4, Some(id)),
            col("object_type", VARCHAR, kind),
        ]
    };
    let fields = ["tag_id", "object_id", "object_type"];
    let out = form
        .entity_change(change(
            "tagged_object",
            Some(row(Some("dashboard"), "5")),
            &fields,
        ))
        .await
        .unwrap();
    assert_eq!(value(&out, "tag_id"), &json!(uuid("tag", 2).to_string()));
    assert_eq!(
        value(&out, "object_id"),
        &json!(uuid("dashboards", 5).to_string())
    );
    assert_eq!(value(&out, "object_type"), &json!("dashboard"));
    let out = form
        .entity_change(change(
            "tagged_object",
            Some(row(Some("chart"), "5")),
            &fields,
        ))
        .await
        .unwrap();
    assert_eq!(
        value(&out, "object_id"),
        &json!(uuid("slices", 5).to_string())
    );
    let out = form
        .entity_change(change(
            "tagged_object",
            Some(row(Some("query"), "5")),
            &fields,
        ))
        .await
        .unwrap();
    assert_eq!(
        value(&out, "object_id"),
        &json!("dangling:us:saved_query:5"),
        "a registered table without that row"
    );
    let out = form
        .entity_change(change(
            "tagged_object",
            Some(row(Some("widget"), "5")),
            &fields,
        ))
        .await
        .unwrap();
    assert_eq!(
        value(&out, "object_id"),
        &json!("dangling:us:object_type=widget:5")
    );
    let out = form
        .entity_change(change("tagged_object", Some(row(None, "5")), &fields))
        .await
        .unwrap();
    assert_eq!(
        value(&out, "object_id"),
        &json!("dangling:us:object_type=?:5")
    );
    let bad = form
        .entity_change(change(
            "tagged_object",
            Some(row(Some("chart"), "x")),
            &fields,
        ))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::CanonicalValue { .. }), "{bad}");
}

#[tokio::test]
async fn tag_names_hold_user_uuids_instead_of_user_ids() {
    let mut form = form(&[("ab_user", 1)]);
    for (name, want) in [
        ("owner:1", format!("owner:{}", uuid("ab_user", 1))),
        (
            "favorited_by:1",
            format!("favorited_by:{}", uuid("ab_user", 1)),
        ),
        ("owner:2", "owner:dangling:us:ab_user:2".to_owned()),
        ("type:dashboard", "type:dashboard".to_owned()),
        ("owner:", "owner:".to_owned()),
        ("owner:1x", "owner:1x".to_owned()),
        ("sales", "sales".to_owned()),
    ] {
        let row = vec![
            col("name", VARCHAR, Some(name)),
            col("type", VARCHAR, Some("owner")),
        ];
        let out = form
            .entity_change(change("tag", Some(row), &["name"]))
            .await
            .unwrap();
        assert_eq!(value(&out, "name"), &json!(want), "{name}");
    }
}

#[tokio::test]
async fn chart_json_is_translated_and_annotation_layers_never_query_the_registry() {
    let mut form = form(&[("tables", 7), ("slices", 8)]);
    let params = r#"{"datasource": "7__table", "slice_id": 8, "deck_slices": [8, 9],
        "annotation_layers": [{"sourceType": "NATIVE", "value": 4},
                              {"sourceType": "line", "value": 8}], "row_limit": 7}"#;
    let context = r#"{"datasource": {"id": 7, "type": "table"},
        "queries": [{"datasource": {"id": 7}}], "form_data": {"datasource": "7__table"}}"#;
    let row = vec![
        col("params", TEXT, Some(params)),
        col("query_context", TEXT, Some(context)),
        col("datasource_id", oid::INT4, Some("7")),
        col("datasource_type", VARCHAR, Some("table")),
        col("perm", VARCHAR, Some("[examples].[sales](id:7)")),
    ];
    let fields = [
        "params",
        "query_context",
        "datasource_id",
        "datasource_type",
        "perm",
    ];
    let out = form
        .entity_change(change("slices", Some(row), &fields))
        .await
        .unwrap();
    let (t7, c8) = (uuid("tables", 7).to_string(), uuid("slices", 8).to_string());
    let params: Value = serde_json::from_str(value(&out, "params").as_str().unwrap()).unwrap();
    assert_eq!(params["datasource"], json!(format!("{t7}__table")));
    assert_eq!(params["slice_id"], json!(c8));
    assert_eq!(params["deck_slices"], json!([c8, "dangling:us:slices:9"]));
    assert_eq!(
        params["annotation_layers"][0]["value"],
        json!("dangling:us:annotation_layer:4")
    );
    assert_eq!(params["annotation_layers"][1]["value"], json!(c8));
    assert_eq!(params["row_limit"], json!(7));
    let context: Value =
        serde_json::from_str(value(&out, "query_context").as_str().unwrap()).unwrap();
    assert_eq!(context["datasource"]["id"], json!(t7));
    assert_eq!(context["queries"][0]["datasource"]["id"], json!(t7));
    assert_eq!(
        context["form_data"]["datasource"],
        json!(format!("{t7}__table"))
    );
    assert_eq!(value(&out, "datasource_id"), &json!(t7));
    assert!(out.fields.iter().all(|f| f.path.as_str() != "perm"));
    let asked = form.registry().lookup().asked.lock().unwrap().clone();
    assert!(
        asked.iter().flatten().all(|(t, _)| t != "annotation_layer"),
        "{asked:?}"
    );
}

#[tokio::test]
async fn json_text_that_is_not_json_is_kept_as_it_is() {
    let mut form = form(&[]);
    for text in ["{not json", "", "null"] {
        let row = vec![col("json_metadata", TEXT, Some(text))];
        let out = form
            .entity_change(change("dashboards", Some(row), &["json_metadata"]))
            .await
            .unwrap();
        assert_eq!(value(&out, "json_metadata"), &json!(text));
    }
    let row = vec![col("json_metadata", TEXT, None)];
    let out = form
        .entity_change(change("dashboards", Some(row), &["json_metadata"]))
        .await
        .unwrap();
    assert_eq!(value(&out, "json_metadata"), &Value::Null);
}

#[tokio::test]
async fn native_json_columns_are_values() {
    let mut form = form(&[]);
    let folders = r#"[{"uuid": "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f", "children": []}]"#;
    let row = vec![col("folders", oid::JSON, Some(folders))];
    let out = form
        .entity_change(change("tables", Some(row), &["folders"]))
        .await
        .unwrap();
    assert_eq!(
        value(&out, "folders"),
        &json!([{"children": [], "uuid": "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f"}])
    );
}

#[test]
fn the_reader_can_run_canonical_form_on_any_task() {
    fn send<T: Send>(_: T) {}
    fn entity_change(form: &mut CanonicalForm<PgRegistry>, change: CapturedChange) {
        send(form.entity_change(change));
    }
    // Compiles only if the future is `Send` (nothing to run).
    let _ = entity_change;
}

#[tokio::test]
async fn a_change_of_a_table_that_is_not_replicated_is_refused() {
    let mut form = form(&[]);
    for table in ["logs", "ab_user", "no_such_table"] {
        let error = form
            .entity_change(change(table, Some(vec![]), &["$exists"]))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::NotReplicated { .. }), "{error}");
        assert_eq!(error.action(), crate::Action::Operator);
    }
}

//! Every embedded-id place of the facts file §3, translated to canonical form and back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::collections::BTreeMap;

use canonical::{chart, dashboard, EmbeddedId, Error, RefKind};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

/// A registry stand-in: local id ↔ uuid per kind, invertible. Ids outside it are dangling.
#[derive(Default)]
struct Registry {
    forward: BTreeMap<(u8, i64), Uuid>,
}

fn tag(kind: RefKind) -> u8 {
    match kind {
        RefKind::Chart => 0,
        RefKind::Dataset => 1,
        RefKind::AnnotationLayer => 2,
    }
}

impl Registry {
    fn with(ids: &[(RefKind, i64)]) -> Registry {
        let mut r = Registry::default();
        for (kind, id) in ids {
            r.forward.insert((tag(*kind), *id), Uuid::new_v4());
        }
        r
    }

    fn to_canonical(
        &self,
    ) -> impl FnMut(RefKind, EmbeddedId) -> canonical::Result<EmbeddedId> + '_ {
        move |kind, id| match id {
            EmbeddedId::Local(n) => Ok(match self.forward.get(&(tag(kind), n)) {
                Some(u) => EmbeddedId::Uuid(*u),
                None => EmbeddedId::Dangling(format!("dangling:us:{n}")),
            }),
            other => Ok(other),
        }
    }

    fn to_local(&self) -> impl FnMut(RefKind, EmbeddedId) -> canonical::Result<EmbeddedId> + '_ {
        move |kind, id| match id {
            EmbeddedId::Uuid(u) => self
                .forward
                .iter()
                .find(|((k, _), v)| *k == tag(kind) && **v == u)
                .map(|((_, n), _)| EmbeddedId::Local(*n))
                .ok_or(Error::Untranslatable {
                    kind,
                    id: u.to_string(),
                    reason: "unknown".into(),
                }),
            other => Ok(other),
        }
    }
}

/// Fails on any local id: proves none is left in a place the walkers know.
fn no_local_left(kind: RefKind, id: EmbeddedId) -> canonical::Result<EmbeddedId> {
    match id {
        EmbeddedId::Local(n) => Err(Error::Untranslatable {
            kind,
            id: n.to_string(),
            reason: "local id left".into(),
        }),
        other => Ok(other),
    }
}

fn metadata(c: [i64; 3], d: [i64; 2]) -> Value {
    json!({
        "native_filter_configuration": [{
            "id": "NATIVE_FILTER-abc",
            "targets": [{"datasetId": d[0], "column": {"name": "country"}}],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": [c[1]]},
            "chartsInScope": [c[0], c[2]],
        }],
        "chart_customization_config": [{
            "targets": [{"datasetId": d[1]}],
            "scope": {"excluded": [c[0]]},
            "chartsInScope": [c[1]],
        }],
        "chart_configuration": {
            c[0].to_string(): {"id": c[0], "crossFilters": {"scope": {"rootPath": ["ROOT_ID"], "excluded": [c[1]]}, "chartsInScope": [c[2]]}},
            c[1].to_string(): {"id": c[1], "crossFilters": {"scope": "global", "chartsInScope": [c[0], c[2]]}},
        },
        "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": [c[2]]}, "chartsInScope": [c[0], c[1]]},
        "timed_refresh_immune_slices": [c[2]],
        "expanded_slices": {c[0].to_string(): true},
        "filter_scopes": {c[1].to_string(): {"region": {"scope": ["ROOT_ID"], "immune": [c[2]]}}},
        "default_filters": json!({c[1].to_string(): {"region": ["EU"]}}).to_string(),
        "color_scheme": "supersetColors",
        "refresh_frequency": 0,
    })
}

fn position(c: [i64; 3]) -> Value {
    json!({
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "CHART-a": {"type": "CHART", "id": "CHART-a", "meta": {"chartId": c[0], "uuid": "1f0a2d5c-3a4b-4c5d-8e9f-0a1b2c3d4e5f", "width": 4}},
        "CHART-b": {"type": "CHART", "id": "CHART-b", "meta": {"chartId": c[1], "width": 4}},
        "CHART-c": {"type": "CHART", "id": "CHART-c", "meta": {"chartId": c[2], "width": 4}},
        "MARKDOWN-x": {"type": "MARKDOWN", "meta": {"code": "# 12", "width": 4}},
    })
}

fn params(c: [i64; 3], d: i64) -> Value {
    json!({
        "datasource": format!("{d}__table"),
        "slice_id": c[0],
        "viz_type": "deck_multi",
        "deck_slices": [c[1], c[2]],
        "annotation_layers": [
            {"name": "from chart", "sourceType": "line", "value": c[2]},
            {"name": "native", "sourceType": "NATIVE", "value": 4},
            {"name": "formula", "sourceType": "", "value": "x*2"},
        ],
        "metrics": ["count"],
    })
}

fn query_context(c: [i64; 3], d: i64) -> Value {
    json!({
        "datasource": {"id": d, "type": "table"},
        "queries": [{"datasource": {"id": d, "type": "table"}, "metrics": ["count"]}],
        "form_data": params(c, d),
        "result_format": "json",
    })
}

type Walker = fn(&mut Value, &mut dyn canonical::Translate) -> canonical::Result<()>;

fn round_trip(original: &Value, walker: Walker, registry: &Registry) -> Value {
    let mut canonical = original.clone();
    walker(&mut canonical, &mut registry.to_canonical()).unwrap();
    let mut check = canonical.clone();
    walker(&mut check, &mut no_local_left).expect("no local id may remain in canonical form");
    let mut local = canonical.clone();
    walker(&mut local, &mut registry.to_local()).unwrap();
    assert_eq!(
        &local, original,
        "local → canonical → local changed the JSON"
    );
    canonical
}

fn full_registry(c: [i64; 3], d: [i64; 2]) -> Registry {
    let mut ids: Vec<(RefKind, i64)> = c.iter().map(|n| (RefKind::Chart, *n)).collect();
    ids.extend(d.iter().map(|n| (RefKind::Dataset, *n)));
    ids.push((RefKind::AnnotationLayer, 4));
    Registry::with(&ids)
}

#[test]
fn every_place_of_a_real_shaped_dashboard_and_chart_is_translated() {
    let (c, d) = ([11, 12, 13], [5, 6]);
    let registry = full_registry(c, d);
    let canonical = round_trip(&metadata(c, d), dashboard::translate_metadata, &registry);
    let chart_uuid = registry.forward[&(0, 11)].to_string();
    assert_eq!(
        canonical["native_filter_configuration"][0]["chartsInScope"][0],
        json!(chart_uuid)
    );
    assert!(canonical["chart_configuration"].get(&chart_uuid).is_some());
    assert!(canonical["default_filters"]
        .as_str()
        .unwrap()
        .contains(&registry.forward[&(0, 12)].to_string()));
    round_trip(&position(c), dashboard::translate_position, &registry);
    let p = round_trip(&params(c, d[0]), chart::translate_params, &registry);
    assert_eq!(
        p["datasource"],
        json!(format!("{}__table", registry.forward[&(1, 5)]))
    );
    assert_eq!(
        p["annotation_layers"][2]["value"],
        json!("x*2"),
        "formula layers are not ids"
    );
    round_trip(
        &query_context(c, d[0]),
        chart::translate_query_context,
        &registry,
    );
}

#[test]
fn an_id_no_row_ever_had_becomes_a_stable_dangling_token() {
    let registry = Registry::with(&[(RefKind::Chart, 11)]);
    let mut value = json!({"timed_refresh_immune_slices": [11, 999]});
    dashboard::translate_metadata(&mut value, &mut registry.to_canonical()).unwrap();
    assert_eq!(
        value["timed_refresh_immune_slices"][1],
        json!("dangling:us:999")
    );
    let before = value.clone();
    dashboard::translate_metadata(&mut value, &mut registry.to_local()).unwrap();
    assert_eq!(
        value["timed_refresh_immune_slices"][1],
        before["timed_refresh_immune_slices"][1]
    );
    assert_eq!(value["timed_refresh_immune_slices"][0], json!(11));
}

#[test]
fn unexpected_shapes_are_left_alone() {
    let registry = Registry::default();
    for mut odd in [
        json!(null),
        json!([1, 2]),
        json!("text"),
        json!({"native_filter_configuration": 7, "chart_configuration": []}),
    ] {
        let before = odd.clone();
        dashboard::translate_metadata(&mut odd, &mut registry.to_canonical()).unwrap();
        dashboard::translate_position(&mut odd, &mut registry.to_canonical()).unwrap();
        chart::translate_params(&mut odd, &mut registry.to_canonical()).unwrap();
        chart::translate_query_context(&mut odd, &mut registry.to_canonical()).unwrap();
        assert_eq!(odd, before);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0i64..30).prop_map(Value::from),
        "[a-z0-9_]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("chartsInScope".to_owned()),
                    Just("scope".to_owned()),
                    Just("excluded".to_owned()),
                    Just("targets".to_owned()),
                    Just("datasetId".to_owned()),
                    Just("id".to_owned()),
                    Just("meta".to_owned()),
                    Just("chartId".to_owned()),
                    Just("type".to_owned()),
                    Just("CHART".to_owned()),
                    Just("native_filter_configuration".to_owned()),
                    Just("chart_configuration".to_owned()),
                    Just("expanded_slices".to_owned()),
                    Just("filter_scopes".to_owned()),
                    Just("immune".to_owned()),
                    Just("datasource".to_owned()),
                    Just("deck_slices".to_owned()),
                    "[0-9]{1,2}",
                    "0[0-9]",
                    "[a-z]{1,4}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// On any JSON, with every small id registered: no walker panics, no local id survives in a
    /// known place, and the way back restores the input.
    #[test]
    fn any_json_round_trips(value in arb_json()) {
        // Every id the generator can produce (leaf numbers 0..30, keys up to 99) is registered.
        let ids: Vec<(RefKind, i64)> = (0..100)
            .flat_map(|n| [(RefKind::Chart, n), (RefKind::Dataset, n), (RefKind::AnnotationLayer, n)])
            .collect();
        let registry = Registry::with(&ids);
        let walkers: [Walker; 4] = [
            dashboard::translate_metadata,
            dashboard::translate_position,
            chart::translate_params,
            chart::translate_query_context,
        ];
        for walker in walkers {
            round_trip(&value, walker, &registry);
        }
    }

    #[test]
    fn generated_dashboards_round_trip(c in proptest::array::uniform3(1i64..10_000), d in proptest::array::uniform2(1i64..10_000)) {
        prop_assume!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
        let registry = full_registry(c, d);
        round_trip(&metadata(c, d), dashboard::translate_metadata, &registry);
        round_trip(&position(c), dashboard::translate_position, &registry);
        round_trip(&params(c, d[0]), chart::translate_params, &registry);
        round_trip(&query_context(c, d[1]), chart::translate_query_context, &registry);
    }
}

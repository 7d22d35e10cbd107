//! Which Superset column each walker knows, which table an embedded id names, and the one JSON
//! text form both directions write (so capture and apply agree byte for byte).

use serde_json::Value;

use crate::{chart, dashboard, RefKind, Result, Translate};

/// A Superset JSON-as-text column that embeds region-local ids, with its walker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumn {
    /// `dashboards.position_json`
    DashboardPosition,
    /// `dashboards.json_metadata`
    DashboardMetadata,
    /// `slices.params`
    ChartParams,
    /// `slices.query_context`
    ChartQueryContext,
}

impl JsonColumn {
    /// The walker of `table.column`, if that column embeds ids.
    pub fn of(table: &str, column: &str) -> Option<JsonColumn> {
        match (table, column) {
            ("dashboards", "position_json") => Some(JsonColumn::DashboardPosition),
            ("dashboards", "json_metadata") => Some(JsonColumn::DashboardMetadata),
            ("slices", "params") => Some(JsonColumn::ChartParams),
            ("slices", "query_context") => Some(JsonColumn::ChartQueryContext),
            _ => None,
        }
    }

    /// Translates every embedded id of `json` through `t`.
    pub fn translate(self, json: &mut Value, t: &mut dyn Translate) -> Result<()> {
        match self {
            JsonColumn::DashboardPosition => dashboard::translate_position(json, t),
            JsonColumn::DashboardMetadata => dashboard::translate_metadata(json, t),
            JsonColumn::ChartParams => chart::translate_params(json, t),
            JsonColumn::ChartQueryContext => chart::translate_query_context(json, t),
        }
    }
}

impl RefKind {
    /// The Superset table an embedded id of this kind names.
    pub fn table(self) -> &'static str {
        match self {
            RefKind::Chart => "slices",
            RefKind::Dataset => "tables",
            RefKind::AnnotationLayer => "annotation_layer",
        }
    }
}

/// JSON text with object keys sorted and no whitespace, whatever serde_json's map order: the form
/// translated JSON is written in, in every region.
pub fn sorted_json(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_without_whitespace() {
        let value = json!({"b": [1, {"z": null, "a": "x"}], "a": true});
        assert_eq!(
            sorted_json(&value),
            r#"{"a":true,"b":[1,{"a":"x","z":null}]}"#
        );
    }

    #[test]
    fn only_the_four_id_bearing_columns_have_walkers() {
        assert_eq!(
            JsonColumn::of("dashboards", "json_metadata"),
            Some(JsonColumn::DashboardMetadata)
        );
        assert_eq!(JsonColumn::of("dashboards", "css"), None);
        assert_eq!(RefKind::Chart.table(), "slices");
    }
}

//! Ids inside a dashboard's `position_json` and `json_metadata` (facts file §3).

use serde_json::Value;

use crate::embedded::{array, at, keys, slot};
use crate::{RefKind, Result, Translate};

/// `position_json`: every layout node of type `CHART` holds `meta.chartId`. (`meta.uuid` is the
/// chart's uuid already, and stays.)
pub fn translate_position(position: &mut Value, t: &mut dyn Translate) -> Result<()> {
    let Value::Object(nodes) = position else {
        return Ok(());
    };
    for node in nodes.values_mut() {
        if node.get("type").and_then(Value::as_str) != Some("CHART") {
            continue;
        }
        if let Some(chart_id) = at(node, &["meta", "chartId"]) {
            slot(chart_id, RefKind::Chart, t)?;
        }
    }
    Ok(())
}

/// `json_metadata`: native filters, cross-filter configuration, display controls, refresh
/// immunity, expanded charts, legacy filter scopes and legacy default filters.
pub fn translate_metadata(metadata: &mut Value, t: &mut dyn Translate) -> Result<()> {
    if !metadata.is_object() {
        return Ok(());
    }
    // Native filters and 6.x display controls share one shape.
    for list in ["native_filter_configuration", "chart_customization_config"] {
        if let Some(Value::Array(filters)) = metadata.get_mut(list) {
            for filter in filters {
                filter_like(filter, t)?;
            }
        }
    }
    if let Some(Value::Object(per_chart)) = metadata.get_mut("chart_configuration") {
        for config in per_chart.values_mut() {
            if let Some(id) = config.get_mut("id") {
                slot(id, RefKind::Chart, t)?;
            }
            if let Some(cross) = config.get_mut("crossFilters") {
                array(at(cross, &["scope", "excluded"]), RefKind::Chart, t)?;
                array(cross.get_mut("chartsInScope"), RefKind::Chart, t)?;
            }
        }
    }
    keys(metadata.get_mut("chart_configuration"), RefKind::Chart, t)?;
    if let Some(global) = metadata.get_mut("global_chart_configuration") {
        array(at(global, &["scope", "excluded"]), RefKind::Chart, t)?;
        array(global.get_mut("chartsInScope"), RefKind::Chart, t)?;
    }
    array(
        metadata.get_mut("timed_refresh_immune_slices"),
        RefKind::Chart,
        t,
    )?;
    keys(metadata.get_mut("expanded_slices"), RefKind::Chart, t)?;
    if let Some(Value::Object(scopes)) = metadata.get_mut("filter_scopes") {
        for per_column in scopes.values_mut() {
            if let Value::Object(columns) = per_column {
                for column in columns.values_mut() {
                    array(column.get_mut("immune"), RefKind::Chart, t)?;
                }
            }
        }
    }
    keys(metadata.get_mut("filter_scopes"), RefKind::Chart, t)?;
    // Legacy default filters are JSON text inside the JSON.
    if let Some(Value::String(text)) = metadata.get_mut("default_filters") {
        if let Ok(mut inner) = serde_json::from_str::<Value>(text) {
            keys(Some(&mut inner), RefKind::Chart, t)?;
            *text = inner.to_string();
        }
    }
    Ok(())
}

fn filter_like(filter: &mut Value, t: &mut dyn Translate) -> Result<()> {
    if let Some(Value::Array(targets)) = filter.get_mut("targets") {
        for target in targets {
            if let Some(dataset) = target.get_mut("datasetId") {
                slot(dataset, RefKind::Dataset, t)?;
            }
        }
    }
    array(at(filter, &["scope", "excluded"]), RefKind::Chart, t)?;
    array(filter.get_mut("chartsInScope"), RefKind::Chart, t)
}

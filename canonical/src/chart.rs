//! Ids inside a chart's `params` and `query_context` (facts file §3).

use serde_json::Value;

use crate::embedded::{array, at, slot};
use crate::{EmbeddedId, RefKind, Result, Translate};

/// `slices.params`: `datasource` (`"<dataset id>__table"`), `slice_id`, deck.gl `deck_slices`,
/// and annotation layers (`value` is an annotation layer id for `NATIVE` layers, a chart id for
/// layers taken from a chart: `line`, `table`; formula layers hold an expression, not an id).
pub fn translate_params(params: &mut Value, t: &mut dyn Translate) -> Result<()> {
    if !params.is_object() {
        return Ok(());
    }
    if let Some(datasource) = params.get_mut("datasource") {
        translate_datasource(datasource, t)?;
    }
    if let Some(id) = params.get_mut("slice_id") {
        slot(id, RefKind::Chart, t)?;
    }
    array(params.get_mut("deck_slices"), RefKind::Chart, t)?;
    if let Some(Value::Array(layers)) = params.get_mut("annotation_layers") {
        for layer in layers {
            let kind = match layer.get("sourceType").and_then(Value::as_str) {
                Some("NATIVE") => RefKind::AnnotationLayer,
                Some("line") | Some("table") => RefKind::Chart,
                _ => continue,
            };
            if let Some(value) = layer.get_mut("value") {
                slot(value, kind, t)?;
            }
        }
    }
    Ok(())
}

/// `slices.query_context`: the datasource of the context and of each query, and the form data
/// (which is a `params`-shaped object).
pub fn translate_query_context(context: &mut Value, t: &mut dyn Translate) -> Result<()> {
    if !context.is_object() {
        return Ok(());
    }
    if let Some(id) = at(context, &["datasource", "id"]) {
        slot(id, RefKind::Dataset, t)?;
    }
    if let Some(Value::Array(queries)) = context.get_mut("queries") {
        for query in queries {
            if let Some(id) = at(query, &["datasource", "id"]) {
                slot(id, RefKind::Dataset, t)?;
            }
        }
    }
    if let Some(form_data) = context.get_mut("form_data") {
        translate_params(form_data, t)?;
    }
    Ok(())
}

/// `"<id>__<type>"` (e.g. `"12__table"`): the id part is a dataset for `table`; other datasource
/// types (`query`, `saved_query`) are left alone.
fn translate_datasource(value: &mut Value, t: &mut dyn Translate) -> Result<()> {
    let Value::String(text) = value else {
        return Ok(());
    };
    let Some((id, kind)) = text.rsplit_once("__") else {
        return Ok(());
    };
    if kind != "table" {
        return Ok(());
    }
    if let Some(id) = EmbeddedId::from_text(id) {
        *text = format!("{}__table", t.translate(RefKind::Dataset, id)?.to_text());
    }
    Ok(())
}

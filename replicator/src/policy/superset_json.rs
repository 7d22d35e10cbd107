//! Where Superset 6.1 hides region-local ids inside JSON and text columns (facts file §3), as
//! declared by the policy. The translation itself belongs to the reader and the applier; these
//! lists are what they must cover, including the places Superset's own import misses
//! (`chartsInScope`, `chart_customization_config`, `deck_slices`).

use super::{EmbeddedRef, IdForm};

const fn id_ref(path: &'static str, target: &'static str) -> EmbeddedRef {
    EmbeddedRef {
        path,
        target,
        form: IdForm::LocalId,
    }
}

pub(super) const SLICE_PARAMS: [EmbeddedRef; 4] = [
    id_ref("datasource (\"<id>__table\")", "tables"),
    id_ref("deck_slices[]", "slices"),
    id_ref(
        "annotation_layers[?(@.sourceType != 'NATIVE')].value",
        "slices",
    ),
    id_ref(
        "annotation_layers[?(@.sourceType == 'NATIVE')].value",
        "annotation_layer",
    ),
];

pub(super) const SLICE_QUERY_CONTEXT: [EmbeddedRef; 3] = [
    id_ref("datasource.id", "tables"),
    id_ref("queries[].datasource.id", "tables"),
    id_ref("form_data.datasource (\"<id>__table\")", "tables"),
];

pub(super) const DASHBOARD_POSITION: [EmbeddedRef; 2] = [
    id_ref("*[?(@.type == 'CHART')].meta.chartId", "slices"),
    EmbeddedRef {
        path: "*[?(@.type == 'CHART')].meta.uuid",
        target: "slices",
        form: IdForm::Uuid,
    },
];

pub(super) const DASHBOARD_METADATA: [EmbeddedRef; 17] = [
    id_ref(
        "native_filter_configuration[].targets[].datasetId",
        "tables",
    ),
    id_ref("native_filter_configuration[].scope.excluded[]", "slices"),
    id_ref("native_filter_configuration[].chartsInScope[]", "slices"),
    id_ref("chart_configuration.<key>", "slices"),
    id_ref("chart_configuration.*.id", "slices"),
    id_ref(
        "chart_configuration.*.crossFilters.scope.excluded[]",
        "slices",
    ),
    id_ref(
        "chart_configuration.*.crossFilters.chartsInScope[]",
        "slices",
    ),
    id_ref("global_chart_configuration.scope.excluded[]", "slices"),
    id_ref("global_chart_configuration.chartsInScope[]", "slices"),
    id_ref("chart_customization_config[].targets[].datasetId", "tables"),
    id_ref("chart_customization_config[].scope.excluded[]", "slices"),
    id_ref("chart_customization_config[].chartsInScope[]", "slices"),
    id_ref("timed_refresh_immune_slices[]", "slices"),
    id_ref("expanded_slices.<key>", "slices"),
    id_ref("filter_scopes.<key>", "slices"),
    id_ref("filter_scopes.*.*.immune[]", "slices"),
    id_ref("default_filters (a JSON string).<key>", "slices"),
];

pub(super) const TABLE_FOLDERS: [EmbeddedRef; 2] = [
    EmbeddedRef {
        path: "..uuid (columns)",
        target: "table_columns",
        form: IdForm::Uuid,
    },
    EmbeddedRef {
        path: "..uuid (metrics)",
        target: "sql_metrics",
        form: IdForm::Uuid,
    },
];

pub(super) const TAG_NAME: [EmbeddedRef; 2] = [
    id_ref("owner:<id>", "ab_user"),
    id_ref("favorited_by:<id>", "ab_user"),
];

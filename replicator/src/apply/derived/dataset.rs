//! Datasets (`tables`) and charts (`slices`): their `perm`, `schema_perm` and `catalog_perm`,
//! and the `datasource_access`, `schema_access` and `catalog_access` permission views.

use tokio_postgres::GenericClient;

use super::pvm;
use crate::error::{Error, Result};

/// Which datasets to derive: `$1` is a dataset id, or a database id for all of its datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Dataset,
    OfDatabase,
}

impl Scope {
    /// The condition on `public.tables AS t` that selects the scope, with `$1` an `int8`.
    fn filter(self) -> &'static str {
        match self {
            Scope::Dataset => "t.id = $1::int8",
            Scope::OfDatabase => "t.database_id = $1::int8",
        }
    }
}

/// `SELECT id, old_perm, perm, schema_perm, catalog_perm` for the datasets in scope: what
/// Superset's `dataset_after_insert` (superset/security/manager.py, 6.1.0 line 1819) computes
/// from the dataset's current values, and `old_perm`, the `perm` this region stored last.
///
/// - `perm` is `SqlaTable.get_perm()` (superset/connectors/sqla/models.py line 1370):
///   `f"[{self.database}].[{self.table_name}](id:{self.id})"`, where `str(database)` is
///   `Database.name` (superset/models/core.py line 212–217): `verbose_name` if truthy, else
///   `database_name`.
/// - `schema_perm` is set only `if target.schema` (a NULL or empty schema leaves it NULL):
///   `get_schema_perm(database.database_name, catalog, schema)` (manager.py line 505) is
///   `[db].[catalog].[schema]` when the catalog is truthy, else `[db].[schema]`.
/// - `catalog_perm` is set only `if target.catalog`: `get_catalog_perm(database.database_name,
///   catalog)` (line 488) is `[db].[catalog]`.
fn computed(scope: Scope) -> String {
    format!(
        "SELECT t.id, t.perm AS old_perm,
                '[' || COALESCE(NULLIF(d.verbose_name, ''), d.database_name) || '].['
                    || t.table_name || '](id:' || t.id || ')' AS perm,
                CASE WHEN COALESCE(t.schema, '') = '' THEN NULL
                     WHEN COALESCE(t.catalog, '') <> '' THEN
                        '[' || d.database_name || '].[' || t.catalog || '].[' || t.schema || ']'
                     ELSE '[' || d.database_name || '].[' || t.schema || ']'
                END AS schema_perm,
                CASE WHEN COALESCE(t.catalog, '') = '' THEN NULL
                     ELSE '[' || d.database_name || '].[' || t.catalog || ']'
                END AS catalog_perm
         FROM public.tables AS t JOIN public.dbs AS d ON d.id = t.database_id
         WHERE {}",
        scope.filter()
    )
}

/// Recomputes the derived columns and permission views of the datasets in `scope` (`id` is
/// the dataset's or the database's), and copies them to the datasets' charts.
///
/// 1. A dataset whose name changed (its table, database or database name) renames the view
///    menu its stored `perm` names, so the grants follow: `_update_dataset_perm` (line 2092,
///    called by `dataset_before_update`, line 1929) and `_update_vm_datasources_access`
///    (line 1741). The old name is the stored `perm` (Superset recomputes it with
///    `get_dataset_perm`, which ignores `verbose_name`, and finds nothing when it is set).
/// 2. The `datasource_access`, `schema_access` and `catalog_access` permission views exist:
///    `dataset_after_insert` and `_update_dataset_catalog_schema_perm` (line 2021). A schema
///    or catalog permission a dataset stops using is left: it names a schema of the database,
///    not the dataset (Superset leaves it too).
/// 3. The dataset's `perm`, `schema_perm` and `catalog_perm` are written where they differ.
/// 4. The charts of the datasets (`datasource_type = 'table'`, `datasource_id`) take their
///    dataset's three values, as the `chart_table.update()` of the functions above does.
pub(super) async fn derive(client: &impl GenericClient, scope: Scope, id: i64) -> Result<()> {
    let computed = computed(scope);
    pvm::rename(
        client,
        &format!(
            "SELECT v.id, c.perm FROM ({computed}) AS c
             JOIN public.ab_view_menu AS v ON v.name = c.old_perm
             WHERE c.old_perm <> c.perm"
        ),
        &[&id],
    )
    .await?;
    pvm::ensure(
        client,
        &format!(
            "SELECT 'datasource_access', c.perm FROM ({computed}) AS c
             UNION ALL SELECT 'schema_access', c.schema_perm FROM ({computed}) AS c
             UNION ALL SELECT 'catalog_access', c.catalog_perm FROM ({computed}) AS c"
        ),
        &[&id],
    )
    .await?;
    let datasets = format!(
        "UPDATE public.tables AS target
         SET perm = c.perm, schema_perm = c.schema_perm, catalog_perm = c.catalog_perm
         FROM ({computed}) AS c
         WHERE target.id = c.id
           AND (target.perm, target.schema_perm, target.catalog_perm)
               IS DISTINCT FROM (c.perm, c.schema_perm, c.catalog_perm)"
    );
    client
        .execute(datasets.as_str(), &[&id])
        .await
        .map_err(Error::pg(
            "write the datasets' perm, schema_perm and catalog_perm",
        ))?;
    let charts = format!(
        "UPDATE public.slices AS s
         SET perm = t.perm, schema_perm = t.schema_perm, catalog_perm = t.catalog_perm
         FROM public.tables AS t
         WHERE {} AND s.datasource_type = 'table' AND s.datasource_id = t.id
           AND (s.perm, s.schema_perm, s.catalog_perm)
               IS DISTINCT FROM (t.perm, t.schema_perm, t.catalog_perm)",
        scope.filter()
    );
    client
        .execute(charts.as_str(), &[&id])
        .await
        .map_err(Error::pg("copy the datasets' perm strings to their charts"))?;
    Ok(())
}

/// A chart takes its dataset's `perm`, `schema_perm` and `catalog_perm`, as
/// `set_related_perm` (superset/models/slice.py line 364, on `before_insert` and
/// `before_update`) does: only when `datasource_id` names an existing dataset; otherwise the
/// chart's values are left as they are.
pub(super) async fn chart(client: &impl GenericClient, id: i64) -> Result<()> {
    client
        .execute(
            "UPDATE public.slices AS s
             SET perm = t.perm, schema_perm = t.schema_perm, catalog_perm = t.catalog_perm
             FROM public.tables AS t
             WHERE s.id = $1::int8 AND s.datasource_type = 'table' AND t.id = s.datasource_id
               AND (s.perm, s.schema_perm, s.catalog_perm)
                   IS DISTINCT FROM (t.perm, t.schema_perm, t.catalog_perm)",
            &[&id],
        )
        .await
        .map_err(Error::pg("copy the dataset's perm strings to the chart"))?;
    Ok(())
}

/// Before a dataset is deleted: its `datasource_access` permission view goes, with its grants
/// and view menu: `dataset_after_delete` (manager.py line 1904) deletes the one named
/// `get_dataset_perm(id, table_name, database.database_name)`. The one its stored `perm` names
/// goes too: they differ when the database has a `verbose_name`, and Superset then leaves the
/// dataset's permission behind. Its schema and catalog permissions stay: other datasets and
/// grants of the schema may use them.
pub(super) async fn before_delete(client: &impl GenericClient, id: i64) -> Result<()> {
    pvm::delete(
        client,
        "SELECT pv.id FROM public.tables AS t
         JOIN public.dbs AS d ON d.id = t.database_id
         JOIN public.ab_view_menu AS v
           ON v.name IN (t.perm, '[' || d.database_name || '].[' || t.table_name || '](id:' || t.id || ')')
         JOIN public.ab_permission_view AS pv ON pv.view_menu_id = v.id
         JOIN public.ab_permission AS p ON p.id = pv.permission_id AND p.name = 'datasource_access'
         WHERE t.id = $1::int8",
        &[&id],
    )
    .await?;
    Ok(())
}

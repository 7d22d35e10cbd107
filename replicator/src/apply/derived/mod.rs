//! Derived data: what Superset's own hooks compute from the rows the applier writes (DESIGN §4).
//!
//! **Why.** When Superset writes a database (`dbs`), a dataset (`tables`) or a chart (`slices`),
//! SQLAlchemy listeners derive more data from the row: the permission strings `perm`,
//! `schema_perm` and `catalog_perm`, which embed this region's ids (`[examples].[sales](id:7)`),
//! and the Flask-AppBuilder permission rows (`ab_permission`, `ab_view_menu`,
//! `ab_permission_view`) that this region's roles are granted. Those columns are local (never
//! replicated) and the permission rows are never copied, and the applier writes in a session
//! where no Superset code runs: so it calls this module, in its own transaction, to derive them
//! here, in this region's terms, as Superset 6.1.0 would.
//!
//! **Contract.** [`after_write`] runs after the applier inserted or updated a row of `dbs`,
//! `tables` or `slices`; [`before_delete`] runs before it deletes one. Both are no-ops for any
//! other table and for an id that names no row. Both are idempotent (running them again writes
//! nothing and creates no row), and set-based (a few statements, whatever the number of
//! datasets and charts). The derived state is a function of the rows as they are now plus the
//! names this region derived last (the stored `perm`, the view menu names): the view menu a
//! renamed object used is renamed, never replaced, so the grants of this region's roles follow.
//!
//! **What Superset 6.1.0 does, and what is mirrored** (superset/security/manager.py unless
//! named; line numbers of the 6.1.0 release):
//!
//! | Superset | here |
//! |---|---|
//! | `Database.perm` (models/core.py 1172): `[database_name].(id:N)`; `database_after_insert` (1573) inserts the `database_access` pvm | [`after_write`] `dbs` |
//! | `database_after_update` (1617) on a new `database_name`: `_update_vm_database_access` (1685) renames the view menu, or deletes the old one via `_delete_vm_database_access` (1656) when the new one exists; `_update_vm_datasources_access` (1741) renames the datasets' view menus and `perm`s and the charts' | same; the old name is read from the old view menu |
//! | `SyncPermissionsCommand._rename_database_in_permissions` (commands/database/sync_permissions.py 245, run by the database update command) renames the `schema_access` / `catalog_access` view menus `[old].[…]` and the datasets' and charts' `schema_perm` / `catalog_perm` | same, for the view menus this region has (it cannot list the live database's schemas) |
//! | `dataset_after_insert` (1819), `dataset_before_update` (1929), `set_related_perm` (models/slice.py 364) | `dataset.rs` |
//! | `database_after_delete` → `_delete_vm_database_access`: the `database_access` pvm and every `schema_access` / `catalog_access` pvm `LIKE '[name].[%]'`; `dataset_after_delete` (1904): the dataset's `datasource_access` pvm | [`before_delete`] |
//!
//! The strings and rows were checked against Superset 6.1.0 itself (its ORM writing the same
//! objects into a clone of the schema template): the tests in `tests/tests/derived.rs` expect
//! what it produced.
//!
//! **Where this differs from Superset, on purpose.** The derived columns are always set to what
//! the insert hook computes from the current row, also where Superset's update hooks skip or
//! disagree:
//!
//! - a database with a `verbose_name`: `SqlaTable.get_perm` names the dataset permission after
//!   `Database.name` (the verbose name), `get_dataset_perm` after `database_name`, so Superset's
//!   dataset rename and delete miss the permission (it stays, orphaned) and its database rename
//!   fails (`_update_vm_datasources_access` finds no view menu: `AttributeError`). Here the
//!   stored `perm` names the view menu to rename or delete, and a `verbose_name` change renames
//!   the datasets' permissions (Superset watches `database_name` only);
//! - `_update_dataset_perm` and `_update_vm_datasources_access` skip a dataset whose new view
//!   menu exists already, leaving its `perm` stale; here the `perm` is written anyway;
//! - Superset's `LIKE '[name].[%]'` treats `_` and `%` in a database name as wildcards; here
//!   the prefix is matched exactly, and not at all when another database holds the old name now;
//! - a view menu another permission view still uses is kept (Superset's delete would fail on
//!   the foreign key); a catalog permission is renamed in place (`SyncPermissionsCommand`
//!   points the permission view at a new view menu): the grants end up the same.
//!
//! **Left out.** The `schema_access` / `catalog_access` permissions of every schema the live
//! database has (`CreateDatabaseCommand`, `SyncPermissionsCommand` list them through a
//! connection to it, which the applier does not have): here only the schemas and catalogs of
//! datasets get permissions, as `dataset_after_insert` creates them, and a rename renames the
//! ones this region has. The owner and type tags of `superset/tags/core.py`'s listeners. A view
//! menu name longer than `ab_view_menu.name` holds (255) fails the write, as it fails in
//! Superset.

mod dataset;
mod pvm;

use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// `Database.perm` (superset/models/core.py line 1172, `get_database_perm` in
/// superset/security/manager.py line 535): the `database_access` view menu of a database.
pub fn database_perm(database_name: &str, id: i64) -> String {
    format!("[{database_name}].(id:{id})")
}

/// After the applier inserted or updated row `local_id` of `table` (one of "dbs", "tables",
/// "slices"; any other table: no-op Ok), recompute its derived columns and permission rows,
/// and those of rows that derive from it (a database's datasets and their charts; a dataset's
/// charts), as Superset's hooks would.
pub async fn after_write(client: &impl GenericClient, table: &str, local_id: i64) -> Result<()> {
    match table {
        "dbs" => after_database_write(client, local_id).await,
        "tables" => dataset::derive(client, dataset::Scope::Dataset, local_id).await,
        "slices" => dataset::chart(client, local_id).await,
        _ => Ok(()),
    }
}

/// Before the applier deletes row `local_id` of `table`: remove the permission rows Superset
/// would remove on delete (the dataset's `datasource_access` permission view, the database's
/// `database_access`, ...), leaving shared ones (schema) as Superset does.
pub async fn before_delete(client: &impl GenericClient, table: &str, local_id: i64) -> Result<()> {
    match table {
        "dbs" => before_database_delete(client, local_id).await,
        "tables" => dataset::before_delete(client, local_id).await,
        _ => Ok(()),
    }
}

/// The `database_access` permission views (`pv_id, view_menu_id, name`) whose view menu is
/// `[<anything>].(id:<id>)`, with `suffix` the placeholder of `].(id:<id>)`: the view menus this
/// region derived for the database, under any name.
fn database_view_menus(suffix: &str) -> String {
    format!(
        "SELECT pv.id AS pv_id, v.id AS view_menu_id, v.name
         FROM public.ab_view_menu AS v
         JOIN public.ab_permission_view AS pv ON pv.view_menu_id = v.id
         JOIN public.ab_permission AS p ON p.id = pv.permission_id AND p.name = 'database_access'
         WHERE left(v.name, 1) = '[' AND length(v.name) > length({suffix}::text)
           AND right(v.name, length({suffix}::text)) = {suffix}::text"
    )
}

/// The `schema_access` and `catalog_access` permission views (`pv_id, view_menu_id, name`)
/// whose view menu starts with `prefix`, the placeholder of `[<database name>].[`, as
/// `_delete_vm_database_access` selects them.
fn schema_view_menus(prefix: &str) -> String {
    format!(
        "SELECT pv.id AS pv_id, v.id AS view_menu_id, v.name
         FROM public.ab_view_menu AS v
         JOIN public.ab_permission_view AS pv ON pv.view_menu_id = v.id
         JOIN public.ab_permission AS p
           ON p.id = pv.permission_id AND p.name IN ('schema_access', 'catalog_access')
         WHERE left(v.name, length({prefix}::text)) = {prefix}::text"
    )
}

async fn database_name(client: &impl GenericClient, id: i64) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT database_name FROM public.dbs WHERE id = $1::int8",
            &[&id],
        )
        .await
        .map_err(Error::pg("read the database's name"))?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(Error::pg("read the database's name"))
}

/// `database_after_insert` and `database_after_update`, then the database's datasets and their
/// charts (see the module doc).
async fn after_database_write(client: &impl GenericClient, id: i64) -> Result<()> {
    let Some(name) = database_name(client, id).await? else {
        return Ok(());
    };
    let new_name = database_perm(&name, id);
    let suffix = format!("].(id:{id})");
    // The view menu this region derived under the previous name, if the name changed. Several
    // (only left by hand) are handled one per write, the oldest first.
    let old = client
        .query_opt(
            &format!(
                "SELECT o.view_menu_id,
                        substr(o.name, 2, length(o.name) - 1 - length($1::text)) AS old_name
                 FROM ({}) AS o
                 WHERE o.name <> $2::text ORDER BY o.view_menu_id LIMIT 1",
                database_view_menus("$1")
            ),
            &[&suffix, &new_name],
        )
        .await
        .map_err(Error::pg("find the database's previous view menu"))?;
    if let Some(old) = old {
        let read = || Error::pg("read the database's previous view menu");
        let view_menu_id: i32 = old.try_get(0).map_err(read())?;
        let old_name: String = old.try_get(1).map_err(read())?;
        rename_database(client, id, view_menu_id, &old_name, &new_name, &name).await?;
    }
    // `database_after_insert`, and `_update_vm_database_access` when no old pvm was found.
    pvm::ensure(client, "SELECT 'database_access', $1::text", &[&new_name]).await?;
    dataset::derive(client, dataset::Scope::OfDatabase, id).await
}

/// `_update_vm_database_access` and the schema half of `SyncPermissionsCommand`, for a database
/// renamed from `old_name` (view menu `view_menu_id`) to `name` (view menu `new_view_menu`).
async fn rename_database(
    client: &impl GenericClient,
    id: i64,
    view_menu_id: i32,
    old_name: &str,
    new_view_menu: &str,
    name: &str,
) -> Result<()> {
    let old_prefix = format!("[{old_name}].[");
    let new_prefix = format!("[{name}].[");
    // The `[old].[…]` schema permissions belong to another database if one is named `old` now.
    let old_name_taken = client
        .query_opt(
            "SELECT 1 FROM public.dbs WHERE database_name = $1::text AND id <> $2::int8",
            &[&old_name, &id],
        )
        .await
        .map_err(Error::pg("look for a database with the previous name"))?
        .is_some();
    let renamed = pvm::rename(
        client,
        "SELECT $1::int4, $2::text",
        &[&view_menu_id, &new_view_menu],
    )
    .await?;
    if renamed == 0 {
        // "New permission [...] already exists, deleting the previous": Superset deletes the
        // old database pvm and the old name's schema and catalog pvms.
        pvm::delete(
            client,
            "SELECT pv.id FROM public.ab_permission_view AS pv
             JOIN public.ab_permission AS p ON p.id = pv.permission_id
             WHERE pv.view_menu_id = $1::int4 AND p.name = 'database_access'",
            &[&view_menu_id],
        )
        .await?;
        if !old_name_taken {
            pvm::delete(
                client,
                &format!("SELECT s.pv_id FROM ({}) AS s", schema_view_menus("$1")),
                &[&old_prefix],
            )
            .await?;
        }
        return Ok(());
    }
    if !old_name_taken {
        pvm::rename(
            client,
            &format!(
                "SELECT DISTINCT s.view_menu_id,
                        $1::text || substr(s.name, length($2::text) + 1)
                 FROM ({}) AS s",
                schema_view_menus("$2")
            ),
            &[&new_prefix, &old_prefix],
        )
        .await?;
    }
    Ok(())
}

/// `database_after_delete` → `_delete_vm_database_access` (manager.py line 1656): the
/// database's `database_access` permission view, and the `schema_access` and `catalog_access`
/// ones of its name, with their grants and view menus.
async fn before_database_delete(client: &impl GenericClient, id: i64) -> Result<()> {
    let Some(name) = database_name(client, id).await? else {
        return Ok(());
    };
    let suffix = format!("].(id:{id})");
    let prefix = format!("[{name}].[");
    pvm::delete(
        client,
        &format!(
            "SELECT d.pv_id FROM ({}) AS d UNION SELECT s.pv_id FROM ({}) AS s",
            database_view_menus("$1"),
            schema_view_menus("$2")
        ),
        &[&suffix, &prefix],
    )
    .await?;
    Ok(())
}

//! Flask-AppBuilder's permission rows, written the way Superset's SQLAlchemy hooks write them.
//!
//! A *permission view* (`ab_permission_view`) pairs a permission (`ab_permission`, e.g.
//! `datasource_access`) with a view menu (`ab_view_menu`, e.g. `[examples].[sales](id:7)`); roles
//! are granted permission views (`ab_permission_view_role`). Each helper takes the rows it works
//! on as a SQL `SELECT` (with its parameters), so every step is one set-based statement.
//!
//! Ids come from FAB's sequences (`ab_permission_id_seq`, `ab_view_menu_id_seq`,
//! `ab_permission_view_id_seq`: the columns have no default; FAB's models name these
//! `Sequence`s in `flask_appbuilder/security/sqla/models.py`).

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Makes sure a permission view exists for each `(permission_name, view_menu_name)` row that
/// `wanted` selects, creating the missing `ab_permission`, `ab_view_menu` and
/// `ab_permission_view` rows. Rows with a NULL or empty view menu name are skipped.
///
/// Mirrors `SupersetSecurityManager._insert_pvm_on_sqla_event` (superset/security/manager.py,
/// 6.1.0 line 2261): `if not view_menu_name: return`; an existing pvm is kept; a missing
/// permission or view menu is inserted first.
pub(super) async fn ensure(
    client: &impl GenericClient,
    wanted: &str,
    params: &Params<'_>,
) -> Result<()> {
    let wanted = format!(
        "WITH wanted0 (permission_name, view_menu_name) AS ({wanted}),
         wanted AS (SELECT DISTINCT permission_name::text, view_menu_name::text FROM wanted0
                    WHERE view_menu_name IS NOT NULL AND view_menu_name <> '')"
    );
    // `NOT EXISTS` keeps sequence values from being spent on rows that exist; `ON CONFLICT`
    // covers a Superset process inserting the same row concurrently.
    let permissions = format!(
        "{wanted}
         INSERT INTO public.ab_permission (id, name)
         SELECT nextval('public.ab_permission_id_seq'), n.name
         FROM (SELECT DISTINCT permission_name AS name FROM wanted) AS n
         WHERE NOT EXISTS (SELECT 1 FROM public.ab_permission AS p WHERE p.name = n.name)
         ON CONFLICT (name) DO NOTHING"
    );
    let view_menus = format!(
        "{wanted}
         INSERT INTO public.ab_view_menu (id, name)
         SELECT nextval('public.ab_view_menu_id_seq'), n.name
         FROM (SELECT DISTINCT view_menu_name AS name FROM wanted) AS n
         WHERE NOT EXISTS (SELECT 1 FROM public.ab_view_menu AS v WHERE v.name = n.name)
         ON CONFLICT (name) DO NOTHING"
    );
    let permission_views = format!(
        "{wanted}
         INSERT INTO public.ab_permission_view (id, permission_id, view_menu_id)
         SELECT nextval('public.ab_permission_view_id_seq'), n.permission_id, n.view_menu_id
         FROM (SELECT DISTINCT p.id AS permission_id, v.id AS view_menu_id
               FROM wanted AS w
               JOIN public.ab_permission AS p ON p.name = w.permission_name
               JOIN public.ab_view_menu AS v ON v.name = w.view_menu_name) AS n
         WHERE NOT EXISTS (SELECT 1 FROM public.ab_permission_view AS pv
                           WHERE pv.permission_id = n.permission_id
                             AND pv.view_menu_id = n.view_menu_id)
         ON CONFLICT (permission_id, view_menu_id) DO NOTHING"
    );
    client
        .execute(permissions.as_str(), params)
        .await
        .map_err(Error::pg("insert missing ab_permission rows"))?;
    client
        .execute(view_menus.as_str(), params)
        .await
        .map_err(Error::pg("insert missing ab_view_menu rows"))?;
    client
        .execute(permission_views.as_str(), params)
        .await
        .map_err(Error::pg("insert missing ab_permission_view rows"))?;
    Ok(())
}

/// Renames view menus: `renames` selects `(view_menu_id, new_name)`. A view menu keeps its id,
/// so its permission views and their role grants follow the new name. A rename whose new name
/// another view menu already holds is skipped (the name is unique), as are NULL names.
///
/// Mirrors the `view_menu_table.update()...values(name=...)` of `_update_vm_database_access`
/// (line 1685), `_update_vm_datasources_access` (line 1741) and `_update_dataset_perm`
/// (line 2092), which rename only when no view menu holds the new name yet.
pub(super) async fn rename(
    client: &impl GenericClient,
    renames: &str,
    params: &Params<'_>,
) -> Result<u64> {
    let sql = format!(
        "UPDATE public.ab_view_menu AS v SET name = r.new_name
         FROM ({renames}) AS r (view_menu_id, new_name)
         WHERE v.id = r.view_menu_id AND r.new_name IS NOT NULL AND v.name <> r.new_name
           AND NOT EXISTS (SELECT 1 FROM public.ab_view_menu AS x WHERE x.name = r.new_name)"
    );
    client
        .execute(sql.as_str(), params)
        .await
        .map_err(Error::pg("rename ab_view_menu rows"))
}

/// Deletes the permission views whose ids `doomed` selects, with their role grants, then their
/// view menus unless another permission view still uses one. Returns how many permission views
/// were deleted.
///
/// Mirrors `_delete_pvm_on_sqla_event` (line 2166), which deletes the grants, the pvm and its
/// view menu. Superset deletes the view menu unconditionally, which fails on the foreign key when
/// another pvm shares it (`[db].[x]` can be both a schema and a catalog view menu); it is kept
/// here instead.
pub(super) async fn delete(
    client: &impl GenericClient,
    doomed: &str,
    params: &Params<'_>,
) -> Result<u64> {
    let rows = client
        .query(doomed, params)
        .await
        .map_err(Error::pg("find the ab_permission_view rows to delete"))?;
    let ids = rows
        .iter()
        .map(|row| row.try_get::<_, i32>(0))
        .collect::<std::result::Result<Vec<i32>, _>>()
        .map_err(Error::pg("read an ab_permission_view id"))?;
    if ids.is_empty() {
        return Ok(0);
    }
    client
        .execute(
            "DELETE FROM public.ab_permission_view_role WHERE permission_view_id = ANY($1::int4[])",
            &[&ids],
        )
        .await
        .map_err(Error::pg("delete role grants of ab_permission_view rows"))?;
    let view_menus = client
        .query(
            "DELETE FROM public.ab_permission_view WHERE id = ANY($1::int4[])
             RETURNING view_menu_id",
            &[&ids],
        )
        .await
        .map_err(Error::pg("delete ab_permission_view rows"))?;
    let view_menu_ids = view_menus
        .iter()
        .map(|row| row.try_get::<_, Option<i32>>(0))
        .collect::<std::result::Result<Vec<Option<i32>>, _>>()
        .map_err(Error::pg("read an ab_view_menu id"))?;
    let view_menu_ids: Vec<i32> = view_menu_ids.into_iter().flatten().collect();
    client
        .execute(
            "DELETE FROM public.ab_view_menu AS v WHERE v.id = ANY($1::int4[])
               AND NOT EXISTS (SELECT 1 FROM public.ab_permission_view AS pv
                               WHERE pv.view_menu_id = v.id)",
            &[&view_menu_ids],
        )
        .await
        .map_err(Error::pg("delete unused ab_view_menu rows"))?;
    Ok(view_menus.len() as u64)
}

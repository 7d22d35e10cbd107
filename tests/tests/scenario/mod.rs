//! Superset objects for the apply tests, written with SQL the way Superset's ORM writes them, and
//! the reading back of a dashboard's references as uuids.

#![allow(dead_code, unreachable_pub, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::error::Error;

use harness::{Lab, Mesh};
use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

type AnyResult<T> = Result<T, Box<dyn Error>>;

pub const DB_UUID: Uuid = Uuid::from_u128(0x0d0d0d0d_0000_4000_8000_00000000db01);

/// The users every region has (users are per region, matched by username).
pub async fn users(client: &Client) -> AnyResult<()> {
    client
        .batch_execute(
            "INSERT INTO ab_user (id, first_name, last_name, username, email)
             VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com'),
                    (nextval('ab_user_id_seq'), 'Bob', 'Owner', 'bob', 'bob@example.com')",
        )
        .await?;
    Ok(())
}

/// Rows of a region's own, written first so that replicated objects get other ids there.
pub async fn local_noise(client: &Client, n: i32) -> AnyResult<()> {
    client
        .batch_execute(&format!(
            "INSERT INTO dbs (database_name, sqlalchemy_uri) VALUES ('noise_{n}', 'sqlite://');
             INSERT INTO tables (table_name, database_id)
               SELECT 'noise_' || g, (SELECT max(id) FROM dbs) FROM generate_series(1, {n}) AS g;
             INSERT INTO slices (slice_name, datasource_id, datasource_type)
               SELECT 'noise ' || g, (SELECT max(id) FROM tables), 'table'
               FROM generate_series(1, {n} * 2) AS g;
             INSERT INTO dashboards (dashboard_title) SELECT 'noise ' || g FROM generate_series(1, {n}) AS g;"
        ))
        .await?;
    Ok(())
}

/// Gives every member's sidecar this region's URI for the shared database connection.
pub fn allow_databases(mesh: &mut Mesh) -> AnyResult<()> {
    for member in &mut mesh.members {
        let path = Lab::get()?.scratch_file(&format!("{}-{}.json", mesh.prefix, member.region))?;
        let uri = |name: &str| serde_json::json!({"sqlalchemy_uri": format!("postgresql://{name}-{}/{name}", member.region)});
        let mut dbs = serde_json::Map::new();
        dbs.insert(DB_UUID.to_string(), uri("examples"));
        for n in 1..10 {
            // The databases `local_noise` creates, by name.
            dbs.insert(format!("noise_{n}"), uri("noise"));
        }
        let json = serde_json::json!({ "dbs": dbs });
        std::fs::write(&path, json.to_string())?;
        member.extra_args = vec!["--local-columns-file".into(), path.display().to_string()];
    }
    Ok(())
}

/// What [`create_shared`] made, in the region that made it.
#[derive(Debug, Clone)]
pub struct Shared {
    pub dashboard_id: i32,
    pub dashboard_uuid: Uuid,
    pub chart_ids: Vec<i32>,
    pub chart_uuids: Vec<Uuid>,
    pub dataset_uuids: Vec<Uuid>,
}

async fn int(client: &Client, sql: &str) -> AnyResult<i32> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// A database connection, two datasets, three charts and a dashboard with native filters
/// (targets, `chartsInScope`, `scope.excluded`), cross-filters, `expanded_slices` and two owners.
pub async fn create_shared(client: &Client) -> AnyResult<Shared> {
    let admin = int(client, "SELECT id FROM ab_user WHERE username = 'admin'").await?;
    let bob = int(client, "SELECT id FROM ab_user WHERE username = 'bob'").await?;
    let db = int(
        client,
        &format!(
            "INSERT INTO dbs (database_name, sqlalchemy_uri, created_by_fk, uuid)
             VALUES ('examples', 'postgresql://examples-us/examples', {admin}, '{DB_UUID}') RETURNING id"
        ),
    )
    .await?;
    let mut datasets = Vec::new();
    let mut dataset_uuids = Vec::new();
    for name in ["sales", "visits"] {
        let uuid = Uuid::new_v4();
        datasets.push(
            int(
                client,
                &format!(
                    "INSERT INTO tables (created_on, table_name, schema, database_id, created_by_fk, uuid)
                     VALUES ('2024-05-01 10:00:01.25', '{name}', 'public', {db}, {admin}, '{uuid}')
                     RETURNING id"
                ),
            )
            .await?,
        );
        dataset_uuids.push(uuid);
    }
    let mut chart_ids = Vec::new();
    let mut chart_uuids = Vec::new();
    for i in 0..3 {
        let dataset = datasets[i.min(1)];
        let uuid = Uuid::new_v4();
        let id = int(
            client,
            &format!(
                "INSERT INTO slices (slice_name, viz_type, datasource_id, datasource_type,
                                     created_by_fk, last_saved_by_fk, uuid)
                 VALUES ('chart {i}', 'table', {dataset}, 'table', {admin}, {admin}, '{uuid}')
                 RETURNING id"
            ),
        )
        .await?;
        let params = format!(
            r#"{{"datasource": "{dataset}__table", "viz_type": "table", "slice_id": {id}}}"#
        );
        let context = format!(
            r#"{{"datasource": {{"id": {dataset}, "type": "table"}},
                "queries": [{{"datasource": {{"id": {dataset}, "type": "table"}}}}],
                "form_data": {{"datasource": "{dataset}__table", "slice_id": {id}}}}}"#
        );
        client
            .execute(
                "UPDATE slices SET params = $1, query_context = $2 WHERE id = $3",
                &[&params, &context, &id],
            )
            .await?;
        client
            .execute(
                "INSERT INTO slice_user (slice_id, user_id) VALUES ($1, $2)",
                &[&id, &admin],
            )
            .await?;
        chart_ids.push(id);
        chart_uuids.push(uuid);
    }
    let [c1, c2, c3] = [chart_ids[0], chart_ids[1], chart_ids[2]];
    let [u1, u2, u3] = [chart_uuids[0], chart_uuids[1], chart_uuids[2]];
    let (d1, d2) = (datasets[0], datasets[1]);
    let position = format!(
        r#"{{"DASHBOARD_VERSION_KEY": "v2",
            "ROOT_ID": {{"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]}},
            "GRID_ID": {{"type": "GRID", "id": "GRID_ID", "children": ["ROW-1"]}},
            "ROW-1": {{"type": "ROW", "id": "ROW-1", "children": ["CHART-a", "CHART-b", "CHART-c"]}},
            "CHART-a": {{"type": "CHART", "id": "CHART-a", "meta": {{"chartId": {c1}, "uuid": "{u1}", "width": 4, "height": 50}}}},
            "CHART-b": {{"type": "CHART", "id": "CHART-b", "meta": {{"chartId": {c2}, "uuid": "{u2}", "width": 4, "height": 50}}}},
            "CHART-c": {{"type": "CHART", "id": "CHART-c", "meta": {{"chartId": {c3}, "uuid": "{u3}", "width": 4, "height": 50}}}}}}"#
    );
    let metadata = format!(
        r#"{{"native_filter_configuration": [
                {{"id": "NATIVE_FILTER-abc", "name": "Region",
                  "targets": [{{"datasetId": {d1}, "column": {{"name": "region"}}}}],
                  "scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c2}]}},
                  "chartsInScope": [{c1}, {c3}]}},
                {{"id": "NATIVE_FILTER-def", "name": "Page",
                  "targets": [{{"datasetId": {d2}, "column": {{"name": "page"}}}}],
                  "scope": {{"rootPath": ["ROOT_ID"], "excluded": []}},
                  "chartsInScope": [{c3}]}}],
            "chart_configuration": {{"{c1}": {{"id": {c1},
                "crossFilters": {{"scope": {{"rootPath": ["ROOT_ID"], "excluded": [{c1}]}},
                                  "chartsInScope": [{c2}, {c3}]}}}}}},
            "global_chart_configuration": {{"scope": {{"excluded": []}}, "chartsInScope": [{c1}, {c2}, {c3}]}},
            "timed_refresh_immune_slices": [{c2}], "expanded_slices": {{"{c3}": true}},
            "refresh_frequency": 0, "color_scheme": "supersetColors"}}"#
    );
    let dashboard_uuid = Uuid::new_v4();
    let dashboard = int(
        client,
        &format!(
            "INSERT INTO dashboards (created_on, dashboard_title, slug, position_json, json_metadata,
                                     css, published, created_by_fk, changed_by_fk, uuid)
             VALUES ('2024-05-01 10:00:02', 'Sales', 'sales', $pos${position}$pos$,
                     $meta${metadata}$meta$, '.x {{ color: red; }}', true, {admin}, {admin},
                     '{dashboard_uuid}')
             RETURNING id"
        ),
    )
    .await?;
    client
        .batch_execute(&format!(
            "INSERT INTO dashboard_slices (dashboard_id, slice_id)
               VALUES ({dashboard}, {c1}), ({dashboard}, {c2}), ({dashboard}, {c3});
             INSERT INTO dashboard_user (dashboard_id, user_id)
               VALUES ({dashboard}, {admin}), ({dashboard}, {bob});"
        ))
        .await?;
    Ok(Shared {
        dashboard_id: dashboard,
        dashboard_uuid,
        chart_ids,
        chart_uuids,
        dataset_uuids,
    })
}

/// Every reference a dashboard makes, resolved through its region's own tables to uuids (or
/// usernames): a region-independent picture to compare between regions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct References {
    pub charts: BTreeSet<Uuid>,
    pub datasets: BTreeSet<Uuid>,
    pub layout_charts: Vec<Uuid>,
    pub filter_datasets: Vec<Uuid>,
    pub filter_excluded: Vec<Vec<Uuid>>,
    pub filter_in_scope: Vec<Vec<Uuid>>,
    pub cross_filter_keys: Vec<Uuid>,
    pub cross_filter_in_scope: Vec<Uuid>,
    pub expanded: Vec<Uuid>,
    pub immune: Vec<Uuid>,
    pub owners: BTreeSet<String>,
    pub chart_datasets: BTreeSet<(Uuid, Uuid)>,
    pub chart_params_datasets: BTreeSet<(Uuid, Uuid)>,
}

async fn chart_uuid(client: &Client, id: &Value) -> AnyResult<Uuid> {
    let id: i32 = match id {
        Value::Number(n) => n.as_i64().ok_or("not an id")? as i32,
        Value::String(s) => s.parse()?,
        other => return Err(format!("not a chart id: {other}").into()),
    };
    let row = client
        .query_one("SELECT uuid FROM slices WHERE id = $1", &[&id])
        .await?;
    Ok(row.get(0))
}

async fn dataset_uuid(client: &Client, id: i64) -> AnyResult<Uuid> {
    let row = client
        .query_one("SELECT uuid FROM tables WHERE id = $1", &[&(id as i32)])
        .await?;
    Ok(row.get(0))
}

async fn chart_list(client: &Client, ids: &Value) -> AnyResult<Vec<Uuid>> {
    let mut out = Vec::new();
    for id in ids.as_array().ok_or("not a list")? {
        out.push(chart_uuid(client, id).await?);
    }
    Ok(out)
}

/// Reads dashboard `uuid`'s references in this region (see [`References`]).
pub async fn ids_to_uuids(client: &Client, uuid: Uuid) -> AnyResult<References> {
    let row = client
        .query_one(
            "SELECT id, position_json, json_metadata FROM dashboards WHERE uuid = $1",
            &[&uuid],
        )
        .await?;
    let id: i32 = row.get(0);
    let position: Value = serde_json::from_str(row.get::<_, &str>(1))?;
    let metadata: Value = serde_json::from_str(row.get::<_, &str>(2))?;
    let mut refs = References::default();
    for row in client
        .query(
            "SELECT s.uuid, t.uuid, s.params FROM dashboard_slices ds
             JOIN slices s ON s.id = ds.slice_id
             JOIN tables t ON t.id = s.datasource_id AND s.datasource_type = 'table'
             WHERE ds.dashboard_id = $1",
            &[&id],
        )
        .await?
    {
        let (chart, dataset): (Uuid, Uuid) = (row.get(0), row.get(1));
        refs.charts.insert(chart);
        refs.datasets.insert(dataset);
        refs.chart_datasets.insert((chart, dataset));
        let params: Value = serde_json::from_str(row.get::<_, &str>(2))?;
        let source = params["datasource"]
            .as_str()
            .ok_or("no params.datasource")?;
        let local: i64 = source.trim_end_matches("__table").parse()?;
        refs.chart_params_datasets
            .insert((chart, dataset_uuid(client, local).await?));
    }
    for key in ["CHART-a", "CHART-b", "CHART-c"] {
        refs.layout_charts
            .push(chart_uuid(client, &position[key]["meta"]["chartId"]).await?);
    }
    for filter in metadata["native_filter_configuration"]
        .as_array()
        .ok_or("no filters")?
    {
        let dataset = filter["targets"][0]["datasetId"]
            .as_i64()
            .ok_or("no datasetId")?;
        refs.filter_datasets
            .push(dataset_uuid(client, dataset).await?);
        refs.filter_excluded
            .push(chart_list(client, &filter["scope"]["excluded"]).await?);
        refs.filter_in_scope
            .push(chart_list(client, &filter["chartsInScope"]).await?);
    }
    for (key, config) in metadata["chart_configuration"]
        .as_object()
        .ok_or("no chart_configuration")?
    {
        refs.cross_filter_keys
            .push(chart_uuid(client, &Value::String(key.clone())).await?);
        refs.cross_filter_in_scope
            .extend(chart_list(client, &config["crossFilters"]["chartsInScope"]).await?);
    }
    for key in metadata["expanded_slices"]
        .as_object()
        .ok_or("no expanded_slices")?
        .keys()
    {
        refs.expanded
            .push(chart_uuid(client, &Value::String(key.clone())).await?);
    }
    refs.immune = chart_list(client, &metadata["timed_refresh_immune_slices"]).await?;
    for row in client
        .query(
            "SELECT u.username FROM dashboard_user du JOIN ab_user u ON u.id = du.user_id
             WHERE du.dashboard_id = $1",
            &[&id],
        )
        .await?
    {
        refs.owners.insert(row.get(0));
    }
    Ok(refs)
}

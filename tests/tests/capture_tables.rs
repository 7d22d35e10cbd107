//! Capture of every replicated table of the policy, end to end, and nothing local leaves the
//! region: with `replicator capture` running as a process, a row of every replicated table is
//! inserted, updated and deleted (FKs satisfied, ids from their sequences advanced to large,
//! distinctive values), each write's change events are checked field by field, and then every
//! published record is scanned for any of those local ids and for the values of the local
//! columns (secrets planted in `dbs.sqlalchemy_uri`, the encrypted columns and the `perm`
//! strings): none may appear, in the raw bytes or anywhere in the decoded values (keys, nested
//! JSON, JSON inside strings).

// Test code, helpers included: a failed unwrap, expect, index or panic is a failed test, with
// the value in the message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::time::Duration;

use envelope::{Body, Codec, EntityChange, Envelope};
use harness::{read_topic, wait_until, HarnessError, Lab, Sidecar, TestDb, TestTopic};
use replicator::policy::{name_uuid, superset, TablePolicy};
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;

/// Marks every value planted in a local column.
const SECRET: &str = "LOCAL-SECRET";
/// `SECRET` as PostgreSQL prints it inside a bytea (`\x…` hex).
const SECRET_HEX: &str = "4c4f43414c2d534543524554";
/// A distinctive value for `slices.druid_datasource_id`, a local integer column.
const DRUID_ID: i32 = 9_900_001;

/// Tables whose ids come from `<table>_id_seq`, in the order their sequences are advanced: each
/// gets ids from `7_000_001 + 100_000 × position`, so every id of the test is a 7-digit number no
/// legitimate value (a uuid, an hlc, a timestamp) can be equal to.
const SEQUENCED: [&str; 21] = [
    "ab_user",
    "ab_role",
    "dbs",
    "tables",
    "table_columns",
    "sql_metrics",
    "themes",
    "css_templates",
    "slices",
    "dashboards",
    "dashboard_slices",
    "dashboard_user",
    "dashboard_roles",
    "slice_user",
    "sqlatable_user",
    "saved_query",
    "tag",
    "tagged_object",
    "row_level_security_filters",
    "rls_filter_tables",
    "rls_filter_roles",
];

/// The database, a connection, and what the test created.
struct Region {
    /// Kept for the test's duration: dropping it drops the database.
    _db: TestDb,
    client: Client,
    /// Every local id the test created.
    ids: BTreeSet<i32>,
}

impl Region {
    /// The next id of `table` (recorded as a local id to look for).
    async fn next_id(&mut self, table: &str) -> Result<i32, Box<dyn Error>> {
        let id: i64 = self
            .client
            .query_one(&format!("SELECT nextval('{table}_id_seq')"), &[])
            .await?
            .get(0);
        let id = i32::try_from(id)?;
        self.ids.insert(id);
        Ok(id)
    }

    async fn execute(&self, sql: &str) -> Result<u64, Box<dyn Error>> {
        self.client.execute(sql, &[]).await.map_err(|e| {
            let reason = e.as_db_error().map(|d| d.message().to_owned());
            format!("{sql}: {e} {reason:?}").into()
        })
    }

    /// The `uuid` column of `table`'s row `id`.
    async fn uuid_of(&self, table: &str, id: i32) -> Result<Uuid, Box<dyn Error>> {
        Ok(self
            .client
            .query_one(&format!("SELECT uuid FROM {table} WHERE id = $1"), &[&id])
            .await?
            .get(0))
    }

    /// The entity uuid the registry gives `table`'s row `id`.
    async fn registered(&self, table: &str, id: i32) -> Result<Uuid, Box<dyn Error>> {
        Ok(self
            .client
            .query_one(
                "SELECT uuid FROM replicator.registry WHERE table_name = $1 AND local_id = $2",
                &[&table, &i64::from(id)],
            )
            .await?
            .get(0))
    }

    /// The columns a write of `table` versions: all but the local id, the identity column and
    /// the local columns.
    async fn versioned(
        &self,
        table: &str,
        policy: &TablePolicy,
    ) -> Result<BTreeSet<String>, Box<dyn Error>> {
        let unversioned = policy.unversioned_columns();
        let columns: Vec<String> = self
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1",
                &[&table],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(columns
            .into_iter()
            .filter(|c| !unversioned.contains(&c.as_str()))
            .chain(["$exists".to_owned()])
            .collect())
    }
}

/// What the test expects one table to publish.
#[derive(Debug)]
enum Expect {
    /// One entity: inserted, `field` updated to `value`, deleted.
    Edited {
        entity: Uuid,
        field: &'static str,
        value: Value,
    },
    /// An association re-pointed: its first identity inserted then deleted by the re-point, the
    /// new identity inserted by it, then deleted.
    Repointed { before: Uuid, after: Uuid },
}

fn changes(envelopes: &[Envelope]) -> Vec<&EntityChange> {
    envelopes
        .iter()
        .filter_map(|e| match &e.body {
            Body::Change(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn fields(change: &EntityChange) -> BTreeMap<&str, &Value> {
    change
        .fields
        .iter()
        .map(|f| (f.path.as_str(), &f.value))
        .collect()
}

/// Checks an insert: every versioned field, and `$exists` true.
fn assert_insert(change: &EntityChange, versioned: &BTreeSet<String>) {
    let fields = fields(change);
    let paths: BTreeSet<String> = fields.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(
        &paths, versioned,
        "insert of {} {}",
        change.table, change.entity
    );
    assert_eq!(fields["$exists"], &json!(true), "{}", change.table);
}

/// Checks a delete: `$exists` false and nothing else.
fn assert_delete(change: &EntityChange) {
    let fields = fields(change);
    assert_eq!(
        fields.keys().copied().collect::<Vec<_>>(),
        ["$exists"],
        "delete of {} {}",
        change.table,
        change.entity
    );
    assert_eq!(fields["$exists"], &json!(false), "{}", change.table);
}

/// Whether `text` holds `number` as a whole number (not part of a longer run of digits).
fn holds_number(text: &[u8], number: &[u8]) -> bool {
    text.windows(number.len()).enumerate().any(|(i, window)| {
        window == number
            && (i == 0 || !text[i - 1].is_ascii_digit())
            && text
                .get(i + number.len())
                .is_none_or(|b| !b.is_ascii_digit())
    })
}

/// Every place in a decoded value where a local id or a local column's value shows: numbers equal
/// to an id, strings and object keys holding one as a whole number or holding a secret, and the
/// same inside JSON held in strings.
fn leaks(value: &Value, ids: &[String], at: &str, found: &mut Vec<String>) {
    let text = |s: &str, what: &str, found: &mut Vec<String>| {
        for id in ids {
            if holds_number(s.as_bytes(), id.as_bytes()) {
                found.push(format!("{at}: local id {id} in {what} {s:?}"));
            }
        }
        if s.contains(SECRET) || s.to_ascii_lowercase().contains(SECRET_HEX) {
            found.push(format!("{at}: a local column's value in {what} {s:?}"));
        }
    };
    match value {
        Value::Number(n) => {
            if ids.contains(&n.to_string()) {
                found.push(format!("{at}: local id {n} as a number"));
            }
        }
        Value::String(s) => {
            text(s, "a string", found);
            if let Ok(inner @ (Value::Object(_) | Value::Array(_) | Value::String(_))) =
                serde_json::from_str::<Value>(s)
            {
                leaks(&inner, ids, &format!("{at} (JSON in a string)"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaks(item, ids, &format!("{at}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                text(key, "an object key", found);
                leaks(item, ids, &format!("{at}.{key}"), found);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[tokio::test]
async fn capture_tables_every_replicated_table_publishes_its_inserts_updates_and_deletes_and_nothing_local(
) -> TestResult {
    let lab = Lab::get()?;
    let db = lab.region("eu")?.fresh_db("cap_tables").await?;
    let client = db.connect().await?;
    let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
    harness::run_setup(&db, &slot, &publication).await?;
    let topic = TestTopic::create(lab, "cap_tables", 1).await?;
    let capture = Sidecar::start(
        &[
            "capture",
            "--region",
            "eu",
            "--slot",
            &slot,
            "--publication",
            &publication,
            "--topic",
            topic.name(),
            "--kafka-brokers",
            lab.broker(),
            "--heartbeat-interval",
            "200ms",
        ],
        &[("REPLICATOR_DATABASE_URL", &db.conninfo())],
    )?;
    let mut r = Region {
        _db: db,
        client,
        ids: BTreeSet::new(),
    };
    for (position, table) in SEQUENCED.iter().enumerate() {
        let base = 7_000_000 + 100_000 * i64::try_from(position)?;
        r.client
            .execute(&format!("SELECT setval('{table}_id_seq', {base})"), &[])
            .await?;
    }
    let exercised: BTreeSet<&str> = superset().replicated().map(|(t, _)| t).collect();
    assert_eq!(
        exercised.len(),
        20,
        "the policy's replicated tables changed: extend this test ({exercised:?})"
    );

    // ---- Inserts, parents first; every id from its sequence. ----
    let u1 = r.next_id("ab_user").await?;
    let u2 = r.next_id("ab_user").await?;
    r.execute(&format!(
        "INSERT INTO ab_user (id, first_name, last_name, username, email) VALUES
           ({u1}, 'Ada', 'Admin', 'ada', 'ada@example.com'),
           ({u2}, 'Bob', 'Builder', 'bob', 'bob@example.com')"
    ))
    .await?;
    let r1 = r.next_id("ab_role").await?;
    let r2 = r.next_id("ab_role").await?;
    r.execute(&format!(
        "INSERT INTO ab_role (id, name) VALUES ({r1}, 'Gamma'), ({r2}, 'Delta')"
    ))
    .await?;

    let d = r.next_id("dbs").await?;
    r.execute(&format!(
        "INSERT INTO dbs (id, database_name, sqlalchemy_uri, password, encrypted_extra, server_cert,
                          uuid, created_by_fk, changed_by_fk, created_on, cache_timeout,
                          expose_in_sqllab, extra)
         VALUES ({d}, 'warehouse', 'postgresql://scott:{SECRET}-URI@db.internal/warehouse',
                 convert_to('{SECRET}-PASSWORD', 'UTF8'), convert_to('{SECRET}-EXTRA', 'UTF8'),
                 convert_to('{SECRET}-CERT', 'UTF8'), gen_random_uuid(), {u1}, {u1}, now(), 60,
                 true, '{{}}')"
    ))
    .await?;
    let perms = |table: &str, id: i32| {
        format!(
            "'[warehouse].[{table}](id:{id}) {SECRET}-PERM', '[warehouse].[public] {SECRET}-SCHEMA-PERM',
             '[warehouse] {SECRET}-CATALOG-PERM'"
        )
    };
    let t = r.next_id("tables").await?;
    let t2 = r.next_id("tables").await?;
    for (id, name) in [(t, "sales"), (t2, "customers")] {
        r.execute(&format!(
            "INSERT INTO tables (id, table_name, schema, database_id, uuid, created_by_fk,
                                 perm, schema_perm, catalog_perm, description, folders)
             VALUES ({id}, '{name}', 'public', {d}, gen_random_uuid(), {u1}, {}, 'Dataset',
                     '[{{\"uuid\": \"1e4e0c5a-2b3c-4d5e-8f90-a1b2c3d4e5f6\", \"type\": \"folder\"}}]')",
            perms("tables", id)
        ))
        .await?;
    }
    let c = r.next_id("table_columns").await?;
    r.execute(&format!(
        "INSERT INTO table_columns (id, table_id, column_name, type, is_dttm, uuid, created_by_fk)
         VALUES ({c}, {t}, 'amount', 'NUMERIC', false, gen_random_uuid(), {u1})"
    ))
    .await?;
    let m = r.next_id("sql_metrics").await?;
    r.execute(&format!(
        "INSERT INTO sql_metrics (id, table_id, metric_name, expression, uuid, currency, changed_by_fk)
         VALUES ({m}, {t}, 'revenue', 'SUM(amount)', gen_random_uuid(), '{{\"symbol\": \"EUR\"}}', {u2})"
    ))
    .await?;
    let th = r.next_id("themes").await?;
    r.execute(&format!(
        "INSERT INTO themes (id, theme_name, json_data, is_system, is_system_default, is_system_dark,
                             uuid, created_by_fk)
         VALUES ({th}, 'Ocean', '{{\"token\": {{}}}}', false, false, false, gen_random_uuid(), {u1})"
    ))
    .await?;
    let css = r.next_id("css_templates").await?;
    r.execute(&format!(
        "INSERT INTO css_templates (id, template_name, css, uuid, created_by_fk)
         VALUES ({css}, 'Dense', '.grid {{ gap: 0 }}', gen_random_uuid(), {u1})"
    ))
    .await?;
    let s2 = r.next_id("slices").await?;
    let s = r.next_id("slices").await?;
    let slice_sql = |id: i32, name: &str, dataset: i32, params: &Value, context: &Value| {
        format!(
            "INSERT INTO slices (id, slice_name, viz_type, datasource_id, datasource_type, table_id,
                                 druid_datasource_id, params, query_context, uuid, created_by_fk,
                                 last_saved_by_fk, perm, schema_perm, catalog_perm)
             VALUES ({id}, '{name}', 'line', {dataset}, 'table', {dataset}, {DRUID_ID}, '{params}',
                     '{context}', gen_random_uuid(), {u1}, {u2}, {})",
            perms("slices", id)
        )
    };
    r.execute(&slice_sql(
        s2,
        "Orders",
        t2,
        &json!({"datasource": format!("{t2}__table"), "slice_id": s2, "viz_type": "line"}),
        &json!({"datasource": {"id": t2, "type": "table"}}),
    ))
    .await?;
    r.execute(&slice_sql(
        s,
        "Revenue",
        t,
        &json!({"datasource": format!("{t}__table"), "slice_id": s, "viz_type": "deck_multi",
                "deck_slices": [s2],
                "annotation_layers": [{"sourceType": "line", "value": s2, "name": "orders"}]}),
        &json!({"datasource": {"id": t, "type": "table"},
                "queries": [{"datasource": {"id": t, "type": "table"}, "row_limit": 10}],
                "form_data": {"datasource": format!("{t}__table"), "slice_id": s}}),
    ))
    .await?;
    let (s_uuid, s2_uuid) = (
        r.uuid_of("slices", s).await?,
        r.uuid_of("slices", s2).await?,
    );
    let dash = r.next_id("dashboards").await?;
    let position = json!({
        "DASHBOARD_VERSION_KEY": "v2",
        "CHART-revenue": {"type": "CHART", "id": "CHART-revenue", "children": [],
            "meta": {"chartId": s, "uuid": s_uuid, "width": 4, "height": 50}},
        "CHART-orders": {"type": "CHART", "id": "CHART-orders", "children": [],
            "meta": {"chartId": s2, "uuid": s2_uuid, "width": 4, "height": 50}}
    });
    let metadata = json!({
        "native_filter_configuration": [{"id": "NATIVE_FILTER-a", "targets": [{"datasetId": t,
            "column": {"name": "region"}}], "scope": {"rootPath": ["ROOT_ID"], "excluded": [s2]},
            "chartsInScope": [s, s2]}],
        "chart_customization_config": [{"id": "CUSTOMIZATION-a", "targets": [{"datasetId": t2}],
            "scope": {"excluded": [s]}, "chartsInScope": [s2]}],
        "chart_configuration": {s.to_string(): {"id": s, "crossFilters": {
            "scope": {"rootPath": ["ROOT_ID"], "excluded": [s2]}, "chartsInScope": [s2]}}},
        "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": [s2]},
            "chartsInScope": [s, s2]},
        "timed_refresh_immune_slices": [s],
        "expanded_slices": {s.to_string(): true},
        "filter_scopes": {s.to_string(): {"region": {"scope": ["ROOT_ID"], "immune": [s2]}}},
        "default_filters": json!({s.to_string(): {"region": ["EU"]}}).to_string(),
        "refresh_frequency": 0
    });
    r.execute(&format!(
        "INSERT INTO dashboards (id, dashboard_title, slug, published, theme_id, position_json,
                                 json_metadata, uuid, created_by_fk, changed_by_fk)
         VALUES ({dash}, 'Revenue board', 'revenue-board', true, {th}, '{position}', '{metadata}',
                 gen_random_uuid(), {u1}, {u2})"
    ))
    .await?;
    let ds = r.next_id("dashboard_slices").await?;
    r.execute(&format!(
        "INSERT INTO dashboard_slices (id, dashboard_id, slice_id) VALUES ({ds}, {dash}, {s})"
    ))
    .await?;
    let du = r.next_id("dashboard_user").await?;
    r.execute(&format!(
        "INSERT INTO dashboard_user (id, dashboard_id, user_id) VALUES ({du}, {dash}, {u1})"
    ))
    .await?;
    let dr = r.next_id("dashboard_roles").await?;
    r.execute(&format!(
        "INSERT INTO dashboard_roles (id, dashboard_id, role_id) VALUES ({dr}, {dash}, {r1})"
    ))
    .await?;
    let su = r.next_id("slice_user").await?;
    r.execute(&format!(
        "INSERT INTO slice_user (id, slice_id, user_id) VALUES ({su}, {s}, {u1})"
    ))
    .await?;
    let tu = r.next_id("sqlatable_user").await?;
    r.execute(&format!(
        "INSERT INTO sqlatable_user (id, table_id, user_id) VALUES ({tu}, {t}, {u1})"
    ))
    .await?;
    let embedded: Uuid = r
        .client
        .query_one(
            &format!(
                "INSERT INTO embedded_dashboards (dashboard_id, allow_domain_list, uuid, created_by_fk)
                 VALUES ({dash}, 'https://a.example.com', gen_random_uuid(), {u1}) RETURNING uuid"
            ),
            &[],
        )
        .await?
        .get(0);
    let q = r.next_id("saved_query").await?;
    r.execute(&format!(
        "INSERT INTO saved_query (id, user_id, db_id, label, schema, sql, uuid, created_by_fk)
         VALUES ({q}, {u1}, {d}, 'Top customers', 'public', 'SELECT 1', gen_random_uuid(), {u1})"
    ))
    .await?;
    let tag = r.next_id("tag").await?;
    r.execute(&format!(
        "INSERT INTO tag (id, name, type, created_by_fk) VALUES ({tag}, 'owner:{u1}', 'owner', {u1})"
    ))
    .await?;
    let tagged = r.next_id("tagged_object").await?;
    r.execute(&format!(
        "INSERT INTO tagged_object (id, tag_id, object_id, object_type, created_by_fk)
         VALUES ({tagged}, {tag}, {dash}, 'dashboard', {u1})"
    ))
    .await?;
    let rls = r.next_id("row_level_security_filters").await?;
    r.execute(&format!(
        "INSERT INTO row_level_security_filters (id, name, clause, filter_type, created_by_fk)
         VALUES ({rls}, 'EU only', 'region = ''EU''', 'Regular', {u1})"
    ))
    .await?;
    let rt = r.next_id("rls_filter_tables").await?;
    r.execute(&format!(
        "INSERT INTO rls_filter_tables (id, rls_filter_id, table_id) VALUES ({rt}, {rls}, {t})"
    ))
    .await?;
    let rr = r.next_id("rls_filter_roles").await?;
    r.execute(&format!(
        "INSERT INTO rls_filter_roles (id, rls_filter_id, role_id) VALUES ({rr}, {rls}, {r1})"
    ))
    .await?;
    r.ids.insert(DRUID_ID);

    // Every local column of the policy holds a planted value.
    for (table, policy) in superset().replicated() {
        for local in policy.local {
            let id = match table {
                "dbs" => d,
                "tables" => t,
                "slices" => s,
                other => panic!("{other}.{} is local: plant a value in it", local.column),
            };
            let planted: String = r
                .client
                .query_one(
                    &format!("SELECT to_jsonb(t) ->> $1 FROM {table} AS t WHERE id = $2"),
                    &[&local.column, &id],
                )
                .await?
                .get(0);
            assert!(
                planted.contains(SECRET)
                    || planted.contains(SECRET_HEX)
                    || planted == DRUID_ID.to_string(),
                "{table}.{}: {planted}",
                local.column
            );
        }
    }

    // ---- Updates: one versioned field each; associations re-pointed. A local-columns-only
    // update publishes nothing. ----
    let mut expect: BTreeMap<&str, Expect> = BTreeMap::new();
    let edits: [(&str, i32, &str, &str, Value); 12] = [
        (
            "dbs",
            d,
            "verbose_name",
            "'Warehouse (EU)'",
            json!("Warehouse (EU)"),
        ),
        (
            "tables",
            t,
            "description",
            "'Sales, by region'",
            json!("Sales, by region"),
        ),
        (
            "table_columns",
            c,
            "description",
            "'Net amount'",
            json!("Net amount"),
        ),
        (
            "sql_metrics",
            m,
            "description",
            "'Revenue in EUR'",
            json!("Revenue in EUR"),
        ),
        (
            "themes",
            th,
            "theme_name",
            "'Deep ocean'",
            json!("Deep ocean"),
        ),
        (
            "css_templates",
            css,
            "template_name",
            "'Denser'",
            json!("Denser"),
        ),
        (
            "slices",
            s,
            "slice_name",
            "'Revenue (EUR)'",
            json!("Revenue (EUR)"),
        ),
        (
            "dashboards",
            dash,
            "dashboard_title",
            "'Revenue'",
            json!("Revenue"),
        ),
        (
            "saved_query",
            q,
            "label",
            "'Top 10 customers'",
            json!("Top 10 customers"),
        ),
        (
            "tag",
            tag,
            "description",
            "'Owned by Ada'",
            json!("Owned by Ada"),
        ),
        (
            "tagged_object",
            tagged,
            "changed_on",
            "'2026-05-06 07:08:09.5'",
            json!("2026-05-06 07:08:09.5"),
        ),
        (
            "row_level_security_filters",
            rls,
            "description",
            "'EU rows'",
            json!("EU rows"),
        ),
    ];
    for (table, id, field, sql_value, value) in edits {
        let entity = match table {
            "tag" | "tagged_object" | "row_level_security_filters" => {
                r.registered(table, id).await?
            }
            _ => r.uuid_of(table, id).await?,
        };
        r.execute(&format!(
            "UPDATE {table} SET {field} = {sql_value} WHERE id = {id}"
        ))
        .await?;
        expect.insert(
            table,
            Expect::Edited {
                entity,
                field,
                value,
            },
        );
    }
    r.execute(&format!(
        "UPDATE embedded_dashboards SET allow_domain_list = 'https://b.example.com' WHERE uuid = '{embedded}'"
    ))
    .await?;
    expect.insert(
        "embedded_dashboards",
        Expect::Edited {
            entity: embedded,
            field: "allow_domain_list",
            value: json!("https://b.example.com"),
        },
    );
    let repoints: [(&str, i32, &str, i32); 7] = [
        ("dashboard_slices", ds, "slice_id", s2),
        ("dashboard_user", du, "user_id", u2),
        ("dashboard_roles", dr, "role_id", r2),
        ("slice_user", su, "user_id", u2),
        ("sqlatable_user", tu, "user_id", u2),
        ("rls_filter_tables", rt, "table_id", t2),
        ("rls_filter_roles", rr, "role_id", r2),
    ];
    for (table, id, column, to) in repoints {
        let before = r.registered(table, id).await?;
        r.execute(&format!(
            "UPDATE {table} SET {column} = {to} WHERE id = {id}"
        ))
        .await?;
        let after = r.registered(table, id).await?;
        assert_ne!(
            before, after,
            "{table}: a re-pointed association is another entity"
        );
        expect.insert(table, Expect::Repointed { before, after });
    }
    r.client
        .batch_execute(&format!(
            "UPDATE dbs SET sqlalchemy_uri = 'postgresql://scott:{SECRET}-URI-2@db.internal/w',
                        password = convert_to('{SECRET}-PASSWORD-2', 'UTF8') WHERE id = {d};
         UPDATE tables SET perm = '[warehouse].[sales](id:{t}) {SECRET}-PERM-2' WHERE id = {t};
         UPDATE slices SET perm = '[warehouse].[sales](id:{t}) {SECRET}-PERM-3' WHERE id = {s}"
        ))
        .await?;
    assert_eq!(
        expect.keys().copied().collect::<BTreeSet<_>>(),
        exercised,
        "every replicated table is exercised"
    );

    // ---- Deletes, children first (the policy's order reversed). ----
    for (table, _) in superset()
        .replicated()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let sql = match table {
            "embedded_dashboards" => format!("DELETE FROM {table} WHERE uuid = '{embedded}'"),
            "slices" => format!("DELETE FROM slices WHERE id IN ({s}, {s2})"),
            "tables" => format!("DELETE FROM tables WHERE id IN ({t}, {t2})"),
            _ => {
                let id = match table {
                    "dbs" => d,
                    "table_columns" => c,
                    "sql_metrics" => m,
                    "themes" => th,
                    "css_templates" => css,
                    "dashboards" => dash,
                    "dashboard_slices" => ds,
                    "dashboard_user" => du,
                    "dashboard_roles" => dr,
                    "slice_user" => su,
                    "sqlatable_user" => tu,
                    "saved_query" => q,
                    "tag" => tag,
                    "tagged_object" => tagged,
                    "row_level_security_filters" => rls,
                    "rls_filter_tables" => rt,
                    "rls_filter_roles" => rr,
                    other => panic!("no row of {other}"),
                };
                format!("DELETE FROM {table} WHERE id = {id}")
            }
        };
        let deleted = r.execute(&sql).await?;
        assert!(deleted >= 1, "{sql}");
    }
    let dbs_uuid = match &expect["dbs"] {
        Expect::Edited { entity, .. } => *entity,
        other => panic!("{other:?}"),
    };

    // ---- What reached the topic. ----
    let codec = Codec::new()?;
    let records = wait_until(
        "capture to publish the last delete",
        Duration::from_secs(90),
        || {
            let (codec, topic) = (&codec, topic.name());
            async move {
                let records = match read_topic(lab, topic, 1, Duration::from_secs(10)).await {
                    Ok(records) => records,
                    Err(HarnessError::Timeout { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let done = records.iter().any(|(_, _, payload)| {
                    matches!(codec.decode(payload), Ok(Envelope { body: Body::Change(c), .. })
                        if c.entity == dbs_uuid && c.fields.iter().any(|f| f.path.is_existence() && f.value == json!(false)))
                });
                Ok(done.then_some(records))
            }
        },
    )
    .await
    .inspect_err(|_| eprintln!("{}", capture.log()))?;
    let envelopes: Vec<Envelope> = records
        .iter()
        .map(|(_, _, payload)| codec.decode(payload))
        .collect::<Result<_, _>>()?;
    let published = changes(&envelopes);

    for (table, policy) in superset().replicated() {
        let versioned = r.versioned(table, policy).await?;
        let of = |entity: Uuid| -> Vec<&EntityChange> {
            published
                .iter()
                .copied()
                .filter(|c| c.entity == entity)
                .inspect(|c| assert_eq!(c.table, table))
                .collect()
        };
        match &expect[table] {
            Expect::Edited {
                entity,
                field,
                value,
            } => {
                let events = of(*entity);
                assert_eq!(
                    events.len(),
                    3,
                    "{table}: insert, update, delete: {events:#?}"
                );
                assert_insert(events[0], &versioned);
                let update = fields(events[1]);
                assert_eq!(
                    update.keys().copied().collect::<Vec<_>>(),
                    [*field],
                    "{table}: the update is exactly the changed field"
                );
                assert_eq!(update[field], value, "{table}.{field}");
                assert_delete(events[2]);
            }
            Expect::Repointed { before, after } => {
                let (first, second) = (of(*before), of(*after));
                assert_eq!(
                    first.len(),
                    2,
                    "{table}: insert, then re-pointed away: {first:#?}"
                );
                assert_insert(first[0], &versioned);
                assert_delete(first[1]);
                assert_eq!(
                    second.len(),
                    2,
                    "{table}: re-pointed here, then deleted: {second:#?}"
                );
                assert_insert(second[0], &versioned);
                assert_delete(second[1]);
            }
        }
    }

    // References and embedded ids were translated (not merely dropped).
    let user = |name: &str| name_uuid(&format!("ab_user:{name}")).to_string();
    let inserted = |entity: Uuid| {
        published
            .iter()
            .find(|c| c.entity == entity)
            .map(|c| fields(c))
            .unwrap()
    };
    let tag_insert = match &expect["tag"] {
        Expect::Edited { entity, .. } => inserted(*entity),
        other => panic!("{other:?}"),
    };
    assert_eq!(tag_insert["name"], &json!(format!("owner:{}", user("ada"))));
    assert_eq!(tag_insert["created_by_fk"], &json!(user("ada")));
    let chart = inserted(s_uuid);
    let t_uuid = match &expect["tables"] {
        Expect::Edited { entity, .. } => *entity,
        other => panic!("{other:?}"),
    };
    assert_eq!(chart["datasource_id"], &json!(t_uuid.to_string()));
    assert_eq!(chart["table_id"], &json!(t_uuid.to_string()));
    let chart_params: Value = serde_json::from_str(chart["params"].as_str().unwrap())?;
    assert_eq!(chart_params["deck_slices"], json!([s2_uuid.to_string()]));
    assert_eq!(
        chart_params["datasource"],
        json!(format!("{t_uuid}__table"))
    );
    assert_eq!(chart["last_saved_by_fk"], &json!(user("bob")));

    // ---- Nothing local anywhere: raw bytes, then every decoded value. ----
    let ids: Vec<String> = r.ids.iter().map(i32::to_string).collect();
    assert!(ids.len() > 25, "{ids:?}");
    let mut found = Vec::new();
    for (offset, key, payload) in &records {
        for bytes in [key.as_deref().unwrap_or_default(), payload.as_slice()] {
            for id in &ids {
                if holds_number(bytes, id.as_bytes()) {
                    found.push(format!("record {offset}: local id {id} in the raw bytes"));
                }
            }
            let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
            if lower.contains(&SECRET.to_ascii_lowercase()) || lower.contains(SECRET_HEX) {
                found.push(format!(
                    "record {offset}: a local column's value in the raw bytes"
                ));
            }
        }
    }
    for (envelope, (offset, _, _)) in envelopes.iter().zip(&records) {
        let Body::Change(change) = &envelope.body else {
            continue;
        };
        let at = format!("record {offset} ({} {})", change.table, change.entity);
        leaks(&json!(change.table), &ids, &at, &mut found);
        for field in &change.fields {
            leaks(&json!(field.path.as_str()), &ids, &at, &mut found);
            leaks(
                &field.value,
                &ids,
                &format!("{at} {}", field.path),
                &mut found,
            );
        }
    }
    assert!(
        found.is_empty(),
        "local data left the region:\n{}",
        found.join("\n")
    );
    Ok(())
}

//! Backfill: bringing rows that existed before capture into the registry and the version state.
//!
//! **Contract.** After the backfill step of a table:
//!
//! - every row of a uuid-identified table has a uuid, and no two rows share one (a later row
//!   sharing an earlier row's uuid gets a new one; only tables without a unique uuid constraint,
//!   like `css_templates`, can have such rows);
//! - every row of a replicated or registry table with a local id has a registry entry, computed by
//!   the same identity formula as the triggers (`identity`); an association row whose formula
//!   collides with another row's (duplicate owner rows) gets a random uuid;
//! - every existing row of a replicated table has an entity with clock `{region: 1}` and every
//!   versioned field (plus `$exists`) stamped with dot `(region, 1)` and the setup time as hlc.
//!
//! **Why `{region: 1}`.** A row that exists before setup was written by this region as far as
//! anyone can tell, so it is treated as one local insert at setup time. This gives the snapshot
//! of existing content dots and hlcs like every later write, so it merges by the ordinary rules:
//! an entity two regions already shared before replication (say, imported with the same uuid)
//! has two concurrent histories, and each field converges to the `(hlc, region)` winner. An empty
//! clock would instead leave such fields unordered. The versioning rows carry the setup
//! transaction's xid and no data row changes, and the slot is created after the backfill, so the
//! reader never sees them as a change.
//!
//! The uuid fill runs with `replicator.applying = on` (registry upkeep, no versioning): the entity
//! rows written next version the row once, as a whole. Re-running finds nothing to do.

use tokio_postgres::Transaction;

use crate::error::{Error, Result};
use crate::policy::{Identity, Policy, TablePolicy, Treatment};

use super::identity;
use super::inspect::{column, State};
use super::sql::{ident, literal, public, text_array};
use super::{Statement, Step};

/// How much work one table needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Needs {
    uuids: i64,
    unregistered: i64,
    unversioned: i64,
}

/// The backfill steps of every table that needs one, in policy order.
pub(crate) async fn steps(
    tx: &Transaction<'_>,
    state: &State,
    policy: &Policy,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for rule in policy.rules() {
        let (table_policy, statements) = match &rule.treatment {
            Treatment::Replicated(table_policy) => {
                (Some(table_policy), replicated(rule.table, table_policy))
            }
            Treatment::Registry(registry) => {
                let id = ident(registry.local_id);
                let register = format!(
                    "SELECT replicator.register({name}, t.{id}, {identity}) FROM {table} AS t WHERE {unregistered}",
                    name = literal(rule.table),
                    identity = identity::registry(rule.table, registry, "t"),
                    table = public(rule.table),
                    unregistered = unregistered(rule.table, registry.local_id),
                );
                (
                    None,
                    vec![Statement::count(
                        format!("{}: registered", rule.table),
                        register,
                    )],
                )
            }
            Treatment::Excluded { .. } => continue,
        };
        let needs = needs(tx, state, rule.table, &rule.treatment, table_policy).await?;
        if needs != Needs::default() {
            tracing::info!(table = rule.table, ?needs, "backfill needed");
            steps.push(Step::atomic(format!("backfill {}", rule.table), statements));
        }
    }
    Ok(steps)
}

/// `NOT EXISTS` a registry entry for row `t`.
fn unregistered(table: &str, local_id: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM replicator.registry AS r WHERE r.table_name = {} AND r.local_id = t.{})",
        literal(table),
        ident(local_id)
    )
}

/// Rows of a uuid table that need a (new) uuid.
fn needs_uuid(table: &str, policy: &TablePolicy) -> Option<String> {
    let Identity::Uuid { column, .. } = policy.identity else {
        return None;
    };
    let column = ident(column);
    Some(match policy.local_id {
        Some(id) => format!(
            "t.{column} IS NULL OR EXISTS (SELECT 1 FROM {table} AS older WHERE older.{column} = t.{column} AND older.{id} < t.{id})",
            table = public(table),
            id = ident(id),
        ),
        None => format!("t.{column} IS NULL"),
    })
}

/// The rows of `t` with their registered (or, without a local id, column) uuid as `uuid`.
fn with_identity(table: &str, policy: &TablePolicy) -> (String, String) {
    match (policy.local_id, policy.identity) {
        (Some(id), _) => (
            format!(
                "{} AS t JOIN replicator.registry AS r ON r.table_name = {} AND r.local_id = t.{}",
                public(table),
                literal(table),
                ident(id)
            ),
            "r.uuid".to_owned(),
        ),
        (None, Identity::Uuid { column, .. }) => (
            format!("{} AS t", public(table)),
            format!("t.{}", ident(column)),
        ),
        (None, _) => (format!("{} AS t", public(table)), "NULL::uuid".to_owned()),
    }
}

fn replicated(table: &str, policy: &TablePolicy) -> Vec<Statement> {
    let name = literal(table);
    let mut statements = vec![Statement::silent("SET LOCAL replicator.applying = 'on'")];
    if let (Some(needs), Identity::Uuid { column, .. }) =
        (needs_uuid(table, policy), policy.identity)
    {
        statements.push(Statement::count(
            format!("{table}: uuids assigned"),
            format!(
                "UPDATE {} AS t SET {} = gen_random_uuid() WHERE {needs}",
                public(table),
                ident(column)
            ),
        ));
    }
    if let Some(local_id) = policy.local_id {
        let id = ident(local_id);
        let computed = identity::computed(table, policy, "t");
        let from = format!(
            "{} AS t WHERE {}",
            public(table),
            unregistered(table, local_id)
        );
        if identity::may_collide(policy) {
            statements.push(Statement::count(
                format!("{table}: registered"),
                // The first row (lowest id) to claim a formula uuid keeps it, unless the registry
                // already names it; the others are duplicates and get random uuids below.
                format!(
                    "INSERT INTO replicator.registry (table_name, local_id, uuid) \
                     SELECT DISTINCT ON (c.uuid) {name}, c.id, c.uuid \
                     FROM (SELECT t.{id} AS id, {computed} AS uuid FROM {from}) AS c \
                     WHERE c.uuid IS NOT NULL AND NOT EXISTS \
                       (SELECT 1 FROM replicator.registry AS r WHERE r.table_name = {name} AND r.uuid = c.uuid) \
                     ORDER BY c.uuid, c.id ON CONFLICT DO NOTHING"
                ),
            ));
            statements.push(Statement::count(
                format!("{table}: registered under a random uuid (duplicates)"),
                format!(
                    "INSERT INTO replicator.registry (table_name, local_id, uuid) SELECT {name}, t.{id}, gen_random_uuid() FROM {from}"
                ),
            ));
        } else {
            statements.push(Statement::count(
                format!("{table}: registered"),
                format!("SELECT replicator.register({name}, t.{id}, {computed}) FROM {from}"),
            ));
        }
    }
    let (rows, uuid) = with_identity(table, policy);
    statements.push(Statement::count(
        format!("{table}: entities versioned"),
        format!(
            "INSERT INTO replicator.entity (table_name, uuid, clock, max_hlc, alive, last_local_xid)
SELECT {name}, {uuid}, jsonb_build_object(l.region, 1), replicator.wall_hlc(), true, pg_current_xact_id()
FROM {rows} CROSS JOIN replicator.local_region AS l
WHERE {uuid} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM replicator.entity AS e WHERE e.table_name = {name} AND e.uuid = {uuid})
ON CONFLICT DO NOTHING"
        ),
    ));
    statements.push(Statement::count(
        format!("{table}: fields stamped"),
        format!(
            "INSERT INTO replicator.field_version (table_name, uuid, field, region, counter, hlc, xid)
SELECT {name}, e.uuid, f.field, l.region, 1, e.max_hlc, e.last_local_xid
FROM {rows}
JOIN replicator.entity AS e ON e.table_name = {name} AND e.uuid = {uuid} AND e.last_local_xid = pg_current_xact_id()
CROSS JOIN replicator.local_region AS l
CROSS JOIN LATERAL (SELECT jsonb_object_keys(to_jsonb(t) - {unversioned}) UNION ALL SELECT '$exists') AS f (field)
ON CONFLICT DO NOTHING",
            unversioned = text_array(&policy.unversioned_columns()),
        ),
    ));
    statements
}

/// Counts what the table needs. Before the sidecar schema exists, every row needs everything.
async fn needs(
    tx: &Transaction<'_>,
    state: &State,
    table: &str,
    treatment: &Treatment,
    policy: Option<&TablePolicy>,
) -> Result<Needs> {
    const NONE: &str = "0::bigint";
    let all = format!("(SELECT count(*) FROM {})", public(table));
    let count = |condition: String| {
        format!(
            "(SELECT count(*) FROM {} AS t WHERE {condition})",
            public(table)
        )
    };
    let local_id = match treatment {
        Treatment::Replicated(p) => p.local_id,
        Treatment::Registry(r) => Some(r.local_id),
        Treatment::Excluded { .. } => None,
    };
    let uuids = policy.and_then(|p| needs_uuid(table, p)).map(count);
    let (unregistered, unversioned) = if state.installed {
        let versioned = |p: &TablePolicy| {
            let (rows, uuid) = with_identity(table, p);
            format!(
                "{all} - (SELECT count(*) FROM {rows} WHERE EXISTS (SELECT 1 FROM replicator.entity AS e WHERE e.table_name = {} AND e.uuid = {uuid}))",
                literal(table)
            )
        };
        (
            local_id.map(|id| count(unregistered(table, id))),
            policy.map(versioned),
        )
    } else {
        (local_id.map(|_| all.clone()), policy.map(|_| all.clone()))
    };
    let query = format!(
        "SELECT {}, {}, {}",
        uuids.as_deref().unwrap_or(NONE),
        unregistered.as_deref().unwrap_or(NONE),
        unversioned.as_deref().unwrap_or(NONE),
    );
    let row = tx
        .query_one(&query, &[])
        .await
        .map_err(Error::pg(format!("count what public.{table} needs")))?;
    Ok(Needs {
        uuids: column(&row, 0)?,
        unregistered: column(&row, 1)?,
        unversioned: column(&row, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::superset;

    fn statements(table: &str) -> Vec<Statement> {
        match &superset().rule(table).expect("in the policy").treatment {
            Treatment::Replicated(policy) => replicated(table, policy),
            _ => panic!("{table} is replicated"),
        }
    }

    #[test]
    fn a_uuid_table_gets_uuids_registry_entries_and_entities_without_versioning_the_fill() {
        let sql: Vec<String> = statements("dashboards")
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(sql[0], "SET LOCAL replicator.applying = 'on'");
        assert!(sql[1].starts_with("UPDATE public.dashboards AS t SET uuid = gen_random_uuid() WHERE t.uuid IS NULL OR EXISTS"));
        assert_eq!(
            sql[2],
            "SELECT replicator.register('dashboards', t.id, t.uuid) FROM public.dashboards AS t WHERE NOT EXISTS (SELECT 1 FROM replicator.registry AS r WHERE r.table_name = 'dashboards' AND r.local_id = t.id)"
        );
        assert!(sql[3].contains("jsonb_build_object(l.region, 1)"));
        assert!(
            sql[4].contains("to_jsonb(t) - '{id,uuid}'::text[]"),
            "{}",
            sql[4]
        );
        assert!(sql[4].contains("UNION ALL SELECT '$exists'"));
    }

    #[test]
    fn association_rows_fall_back_to_a_random_uuid_on_collision() {
        let sql: Vec<String> = statements("dashboard_user")
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(sql.len(), 5, "no uuid column to fill: {sql:#?}");
        assert!(
            sql[1].contains("replicator.name_uuid('dashboard_user:'")
                && sql[1].ends_with("ON CONFLICT DO NOTHING")
        );
        assert!(sql[2].contains("gen_random_uuid()"));
    }

    #[test]
    fn embedded_dashboards_are_versioned_by_their_uuid_column() {
        let sql: Vec<String> = statements("embedded_dashboards")
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(sql[1], "UPDATE public.embedded_dashboards AS t SET uuid = gen_random_uuid() WHERE t.uuid IS NULL");
        assert!(
            !sql.iter().any(|s| s.contains("replicator.registry")),
            "{sql:#?}"
        );
        assert!(sql[2].contains("FROM public.embedded_dashboards AS t CROSS JOIN"));
    }
}

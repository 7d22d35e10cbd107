//! The publication the reader streams (DESIGN §2 step 2).
//!
//! **Contract.** The publication publishes exactly, `FOR TABLE`:
//!
//! - every replicated table; a table with local columns (`dbs`, `slices`, `tables`) with a column
//!   list of every other column (PostgreSQL 15 column lists), so `sqlalchemy_uri`, the encrypted
//!   columns and the `perm` strings never even enter the stream. Such a list is computed from the
//!   live table, so a column a Superset upgrade adds is published once setup runs again (the
//!   triggers version it already; run setup after every `superset db upgrade`);
//! - every registry table with a column list of its id and natural key only (`ab_user (id,
//!   username)`, `ab_role (id, name)`), so no password hash, e-mail or login bookkeeping is sent;
//! - the sidecar's `registry`, `entity`, `field_version` and `heartbeat`: the reader reads the
//!   versioning rows in the same transaction as the data row, which is how it knows which fields
//!   changed and with which dot, and why an unchanged TOAST value is never sent as a blank.
//!
//! Inserts, updates and deletes are published. Setup creates the publication, or, when it exists
//! and differs in any way (tables, column lists, row filters, schemas), replaces its table list
//! with `ALTER PUBLICATION … SET TABLE`. A `FOR ALL TABLES` publication of the same name is an
//! operator error: it would publish logs, secrets and everything else.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::policy::{Policy, Treatment};

use super::inspect::State;
use super::sql::{ident, public};
use super::{SetupOptions, Statement, Step};

/// The sidecar tables the reader needs in the stream.
const SIDECAR_TABLES: [&str; 4] = ["registry", "entity", "field_version", "heartbeat"];

/// The `public` tables the publication holds (replicated and registry), in policy order.
pub(crate) fn public_tables(policy: &Policy) -> impl Iterator<Item = &'static str> + '_ {
    policy
        .rules()
        .iter()
        .filter_map(|rule| match rule.treatment {
            Treatment::Replicated(_) | Treatment::Registry(_) => Some(rule.table),
            Treatment::Excluded { .. } => None,
        })
}

/// `schema.table` -> column list (None: all columns).
fn wanted(policy: &Policy, state: &State) -> BTreeMap<String, Option<Vec<String>>> {
    let mut tables = BTreeMap::new();
    for rule in policy.rules() {
        let columns = match &rule.treatment {
            Treatment::Replicated(table_policy) if table_policy.local.is_empty() => None,
            Treatment::Replicated(table_policy) => {
                let live = state.columns.get(rule.table).into_iter().flatten();
                let local = |column: &String| table_policy.local.iter().any(|l| l.column == column);
                Some(live.filter(|column| !local(column)).cloned().collect())
            }
            Treatment::Registry(registry) => Some(
                std::iter::once(registry.local_id)
                    .chain(registry.key.iter().copied())
                    .map(str::to_owned)
                    .collect(),
            ),
            Treatment::Excluded { .. } => continue,
        };
        tables.insert(format!("public.{}", rule.table), columns);
    }
    for table in SIDECAR_TABLES {
        tables.insert(format!("replicator.{table}"), None);
    }
    tables
}

/// The `FOR TABLE` list, one table a line, in policy order then the sidecar tables.
fn table_list(policy: &Policy, state: &State) -> String {
    let wanted = wanted(policy, state);
    let mut entries: Vec<String> = public_tables(policy)
        .map(|table| match wanted.get(&format!("public.{table}")) {
            Some(Some(columns)) => {
                let columns: Vec<String> = columns.iter().map(|c| ident(c)).collect();
                format!("{} ({})", public(table), columns.join(", "))
            }
            _ => public(table),
        })
        .collect();
    entries.extend(
        SIDECAR_TABLES
            .iter()
            .map(|table| format!("replicator.{}", ident(table))),
    );
    entries
        .iter()
        .map(|entry| format!("\n    {entry}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the installed table list is exactly the wanted one.
fn matches(
    installed: &BTreeMap<String, Option<Vec<String>>>,
    policy: &Policy,
    state: &State,
) -> bool {
    let sorted = |columns: &Option<Vec<String>>| {
        columns.clone().map(|mut columns| {
            columns.sort_unstable();
            columns
        })
    };
    let wanted = wanted(policy, state);
    installed.len() == wanted.len()
        && wanted.iter().all(|(table, columns)| {
            installed
                .get(table)
                .is_some_and(|have| sorted(have) == sorted(columns))
        })
}

/// The step that creates the publication or makes it match; `None` when it already does.
pub(crate) fn step(state: &State, options: &SetupOptions) -> Result<Option<Step>> {
    let name = options.publication.as_str();
    let list = table_list(options.policy, state);
    let Some(installed) = &state.publication else {
        return Ok(Some(Step::atomic(
            format!("create publication {name}"),
            vec![Statement::silent(format!(
                "CREATE PUBLICATION {} FOR TABLE{list}",
                ident(name)
            ))],
        )));
    };
    if installed.all_tables {
        return Err(Error::PublicationForAllTables {
            publication: name.to_owned(),
        });
    }
    let mut statements = Vec::new();
    if installed.has_schemas
        || installed.filtered
        || !matches(&installed.tables, options.policy, state)
    {
        statements.push(Statement::silent(format!(
            "ALTER PUBLICATION {} SET TABLE{list}",
            ident(name)
        )));
    }
    if !installed.publishes_every_change {
        statements.push(Statement::silent(format!(
            "ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate')",
            ident(name)
        )));
    }
    Ok((!statements.is_empty()).then(|| {
        Step::atomic(
            format!("make publication {name} publish exactly the policy's tables"),
            statements,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::superset;
    use crate::setup::inspect::InstalledPublication;
    use crate::setup::{PublicationName, SlotName};
    use crate::RegionId;

    fn options() -> SetupOptions {
        SetupOptions::new(
            RegionId::new("us").expect("valid"),
            SlotName::new("replicator").expect("valid"),
            PublicationName::new("replicator").expect("valid"),
        )
    }

    fn state() -> State {
        let mut state = State::default();
        let dbs = [
            "id",
            "uuid",
            "database_name",
            "sqlalchemy_uri",
            "password",
            "encrypted_extra",
            "server_cert",
        ];
        state
            .columns
            .insert("dbs".into(), dbs.iter().map(|c| (*c).to_owned()).collect());
        let slices = [
            "id",
            "uuid",
            "slice_name",
            "perm",
            "schema_perm",
            "catalog_perm",
            "druid_datasource_id",
        ];
        state.columns.insert(
            "slices".into(),
            slices.iter().map(|c| (*c).to_owned()).collect(),
        );
        state
    }

    #[test]
    fn a_new_publication_lists_every_published_table_without_local_columns() {
        let step = step(&state(), &options()).expect("plans").expect("a step");
        let sql = &step.statements[0].sql;
        assert!(sql.starts_with("CREATE PUBLICATION replicator FOR TABLE\n    public.ab_role (id, name),\n    public.ab_user (id, username),\n    public.dbs (database_name, id, uuid),"), "{sql}");
        assert!(
            sql.contains("\n    public.slices (id, slice_name, uuid),"),
            "{sql}"
        );
        assert!(sql.contains("\n    public.dashboards,"), "{sql}");
        assert!(sql.ends_with("replicator.registry,\n    replicator.entity,\n    replicator.field_version,\n    replicator.heartbeat"), "{sql}");
        assert!(!sql.contains("public.logs") && !sql.contains("user_favorite_tag"));
        assert_eq!(sql.matches("\n    ").count(), 22 + 4);
    }

    #[test]
    fn a_matching_publication_needs_nothing_and_a_drifted_one_is_reset() {
        let state_now = state();
        let tables: BTreeMap<String, Option<Vec<String>>> = wanted(superset(), &state_now)
            .into_iter()
            .map(|(t, c)| (t, c.map(|c| c.into_iter().rev().collect())))
            .collect();
        let mut state = State {
            publication: Some(InstalledPublication {
                all_tables: false,
                publishes_every_change: true,
                has_schemas: false,
                tables,
                filtered: false,
            }),
            ..state_now
        };
        assert!(step(&state, &options()).expect("plans").is_none());
        if let Some(publication) = state.publication.as_mut() {
            publication.tables.remove("public.dashboards");
            publication.tables.insert("public.logs".into(), None);
        }
        let drifted = step(&state, &options()).expect("plans").expect("a step");
        assert!(drifted.statements[0]
            .sql
            .starts_with("ALTER PUBLICATION replicator SET TABLE\n"));
    }
}

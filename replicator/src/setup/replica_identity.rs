//! Replica identity of the published tables (facts §1, DESIGN §4 "never break Superset").
//!
//! **Contract.** Every published table can be updated and deleted from once it is in the
//! publication: a table without a primary key (`embedded_dashboards`; `user_favorite_tag` too,
//! were it ever published) gets `REPLICA IDENTITY FULL`, because PostgreSQL refuses UPDATE and
//! DELETE on a published table without a replica identity, and Superset's own REST calls then fail
//! with HTTP 500. A published table whose identity was set to `NOTHING` is reset the same way
//! (`DEFAULT` when it has a primary key). This step runs before the publication step.
//!
//! **Why `DEFAULT` is enough for every other table.** With `DEFAULT`, an UPDATE's WAL record holds
//! the new row, except that a TOASTed column whose value did not change arrives as "unchanged"
//! (`'u'`, e.g. a 39 KB `position_json` when only `dashboard_title` changed). The reader never
//! needs that value: the triggers wrote `replicator.field_version` rows in the same transaction,
//! and those are published too, so the reader knows exactly which fields the transaction changed.
//! A changed TOAST value is always in the WAL in full, and an unchanged one is not a changed
//! field, so it is never sent, let alone as a blank. A DELETE's old key is the primary key, which
//! the registry (and the `$exists` stamp) turn into the entity's uuid. `FULL` on every table would
//! put every old row, TOAST values included, into the WAL on every update, for nothing.

use crate::policy::Policy;

use super::inspect::State;
use super::publication;
use super::sql::public;
use super::{Statement, Step};

/// One step per published `public` table whose replica identity needs setting.
pub(crate) fn steps(state: &State, policy: &Policy) -> Vec<Step> {
    publication::public_tables(policy)
        .filter_map(|table| {
            let current = *state.replica_identity.get(table)?;
            let has_pk = state.primary_keys.contains(table);
            let (wanted, why) = match (current, has_pk) {
                ('d' | 'n', false) => ("FULL", "it has no primary key"),
                ('n', true) => ("DEFAULT", "it was NOTHING"),
                _ => return None,
            };
            Some(Step::atomic(
                format!("set REPLICA IDENTITY {wanted} on {table} ({why})"),
                vec![Statement::silent(format!(
                    "ALTER TABLE {} REPLICA IDENTITY {wanted}",
                    public(table)
                ))],
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::superset;

    #[test]
    fn only_published_tables_without_a_primary_key_get_full() {
        let mut state = State::default();
        for table in publication::public_tables(superset()) {
            state.replica_identity.insert(table.to_owned(), 'd');
            if table != "embedded_dashboards" {
                state.primary_keys.insert(table.to_owned());
            }
        }
        state
            .replica_identity
            .insert("user_favorite_tag".into(), 'd');
        let steps = steps(&state, superset());
        let sql: Vec<&str> = steps
            .iter()
            .flat_map(|s| &s.statements)
            .map(|s| s.sql.as_str())
            .collect();
        assert_eq!(
            sql,
            ["ALTER TABLE public.embedded_dashboards REPLICA IDENTITY FULL"]
        );
        state
            .replica_identity
            .insert("embedded_dashboards".into(), 'f');
        assert!(super::steps(&state, superset()).is_empty());
    }
}

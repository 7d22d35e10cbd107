//! The logical replication slot the reader streams from (DESIGN §2 step 2).
//!
//! **Contract.** Setup creates the slot with the `pgoutput` plugin when it does not exist, through
//! `pg_create_logical_replication_slot` (streaming it is the reader's job), and reports its
//! consistent point. It never touches an existing slot: dropping or recreating one would lose the
//! changes it holds. A slot of that name with another plugin, or belonging to another database
//! (slot names are per cluster), is an operator error. The slot is created last, after the
//! backfill, so its stream starts with a database that is fully set up.

use crate::error::{Error, Result};

use super::inspect::State;
use super::sql::literal;
use super::{SetupOptions, Statement, Step};

pub(crate) fn step(state: &State, options: &SetupOptions) -> Result<Option<Step>> {
    let slot = options.slot.as_str();
    if let Some(existing) = &state.slot {
        let plugin = existing
            .plugin
            .clone()
            .unwrap_or_else(|| "(physical slot)".to_owned());
        if plugin != "pgoutput" {
            return Err(Error::SlotPlugin {
                slot: slot.to_owned(),
                plugin,
            });
        }
        let database = existing.database.clone().unwrap_or_default();
        if database != state.database {
            return Err(Error::SlotElsewhere {
                slot: slot.to_owned(),
                database,
            });
        }
        return Ok(None);
    }
    if state.wal_level != "logical" {
        return Err(Error::WalLevel {
            wal_level: state.wal_level.clone(),
        });
    }
    Ok(Some(Step::single(
        format!("create replication slot {slot} (pgoutput)"),
        Statement::value(
            format!("slot {slot} consistent point"),
            format!(
                "SELECT lsn::text FROM pg_create_logical_replication_slot({}, 'pgoutput')",
                literal(slot)
            ),
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::inspect::InstalledSlot;
    use crate::setup::{PublicationName, SlotName};
    use crate::{Action, RegionId};

    fn options() -> SetupOptions {
        SetupOptions::new(
            RegionId::new("us").expect("valid"),
            SlotName::new("replicator_us").expect("valid"),
            PublicationName::new("replicator").expect("valid"),
        )
    }

    fn state(slot: Option<(&str, &str)>) -> State {
        State {
            database: "superset".into(),
            wal_level: "logical".into(),
            slot: slot.map(|(plugin, database)| InstalledSlot {
                plugin: Some(plugin.into()),
                database: Some(database.into()),
            }),
            ..State::default()
        }
    }

    #[test]
    fn a_missing_slot_is_created_with_pgoutput_and_an_existing_one_left_alone() {
        let created = step(&state(None), &options())
            .expect("plans")
            .expect("a step");
        assert!(!created.atomic);
        assert_eq!(
            created.statements[0].sql,
            "SELECT lsn::text FROM pg_create_logical_replication_slot('replicator_us', 'pgoutput')"
        );
        assert!(step(&state(Some(("pgoutput", "superset"))), &options())
            .expect("ok")
            .is_none());
    }

    #[test]
    fn a_slot_of_another_plugin_or_database_is_refused() {
        let wrong = step(&state(Some(("test_decoding", "superset"))), &options());
        assert!(
            matches!(&wrong, Err(e @ Error::SlotPlugin { .. }) if e.action() == Action::Operator)
        );
        let elsewhere = step(&state(Some(("pgoutput", "other"))), &options());
        assert!(matches!(elsewhere, Err(Error::SlotElsewhere { .. })));
        let mut replica = state(None);
        replica.wal_level = "replica".into();
        assert!(matches!(
            step(&replica, &options()),
            Err(Error::WalLevel { .. })
        ));
    }
}

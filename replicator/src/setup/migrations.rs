//! Versioned migrations of schema `replicator` (the files in `replicator/sql/`).
//!
//! **Contract.** Migrations are numbered from 1, never edited once released, and applied in order,
//! each in its own transaction together with its row in `replicator.schema_migrations` (version,
//! name, md5 of its text). Setup applies the missing ones; it refuses a database whose history has
//! a migration with a different text ([`Error::MigrationChanged`]) or a version this binary does
//! not know ([`Error::SchemaTooNew`]), because either means the code and the schema disagree.

use md5::{Digest, Md5};

use crate::error::{Error, Result};

use super::sql::literal;
use super::{Statement, Step};

/// One migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "state",
        sql: include_str!("../../sql/0001_state.sql"),
    },
    Migration {
        version: 2,
        name: "versioning",
        sql: include_str!("../../sql/0002_versioning.sql"),
    },
    Migration {
        version: 3,
        name: "apply",
        sql: include_str!("../../sql/0003_apply.sql"),
    },
];

impl Migration {
    /// The md5 of the migration's text, in hex.
    pub(crate) fn checksum(&self) -> String {
        Md5::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn step(&self) -> Step {
        Step::atomic(
            format!("apply migration {} ({})", self.version, self.name),
            vec![
                Statement::silent(self.sql.trim_end()),
                Statement::silent(format!(
                    "INSERT INTO replicator.schema_migrations (version, name, checksum) VALUES ({}, {}, {})",
                    self.version,
                    literal(self.name),
                    literal(&self.checksum())
                )),
            ],
        )
    }
}

/// The steps that bring a database with `applied` migrations (version, checksum) up to date.
pub(crate) fn steps(applied: &[(i32, String)]) -> Result<Vec<Step>> {
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, checksum) in applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::SchemaTooNew {
                    found: *version,
                    known,
                })
            }
            Some(migration) if migration.checksum() != *checksum => {
                return Err(Error::MigrationChanged {
                    version: *version,
                    name: migration.name.to_owned(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(version, _)| *version == m.version))
        .map(Migration::step)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(migration.version).ok(), Some(index + 1));
        }
        assert!(MIGRATIONS[0].sql.contains("CREATE SCHEMA replicator;"));
    }

    #[test]
    fn a_fresh_database_gets_every_migration_and_an_up_to_date_one_none() {
        let fresh = steps(&[]).expect("fresh");
        assert_eq!(fresh.len(), MIGRATIONS.len());
        assert!(fresh[0].statements[1].sql.starts_with(
            "INSERT INTO replicator.schema_migrations (version, name, checksum) VALUES (1, 'state', '"
        ));
        let all: Vec<(i32, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.checksum()))
            .collect();
        assert!(steps(&all).expect("current").is_empty());
        assert_eq!(
            steps(&all[..1]).expect("one behind").len(),
            MIGRATIONS.len() - 1
        );
    }

    #[test]
    fn an_edited_or_unknown_migration_is_refused() {
        let edited = vec![(1, "0".repeat(32))];
        assert!(matches!(
            steps(&edited),
            Err(Error::MigrationChanged { version: 1, .. })
        ));
        let newer = vec![(99, String::new())];
        assert!(matches!(
            steps(&newer),
            Err(Error::SchemaTooNew { found: 99, .. })
        ));
    }
}

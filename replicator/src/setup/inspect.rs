//! What setup reads before it plans: the catalog facts every step compares with what it wants.
//!
//! **Contract.** Loading is read-only (it runs inside `plan`'s `READ ONLY` transaction) and works on
//! a database that has never been set up (no schema `replicator`): every fact then reads as
//! "missing", and the plan installs everything.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::types::FromSql;
use tokio_postgres::{Row, Transaction};

use crate::error::{Error, Result};
use crate::policy::{Policy, Treatment};

use super::capture::Capture;
use super::sql::{ident, public};
use super::SetupOptions;

/// The facts setup plans from.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) database: String,
    pub(crate) wal_level: String,
    /// Whether schema `replicator` exists with its `schema_migrations` table.
    pub(crate) installed: bool,
    /// Applied migrations: (version, checksum).
    pub(crate) migrations: Vec<(i32, String)>,
    pub(crate) region: Option<String>,
    /// Columns of every table in `public`.
    pub(crate) columns: BTreeMap<String, BTreeSet<String>>,
    pub(crate) primary_keys: BTreeSet<String>,
    /// `relreplident` of every table in `public` ('d', 'n', 'f' or 'i').
    pub(crate) replica_identity: BTreeMap<String, char>,
    /// Our generated functions: name -> (body, security definer).
    pub(crate) functions: BTreeMap<String, (String, bool)>,
    /// Our triggers on `public` tables.
    pub(crate) triggers: Vec<InstalledTrigger>,
    pub(crate) publication: Option<InstalledPublication>,
    pub(crate) slot: Option<InstalledSlot>,
}

#[derive(Debug)]
pub(crate) struct InstalledTrigger {
    pub(crate) table: String,
    pub(crate) name: String,
    pub(crate) definition: String,
    pub(crate) always: bool,
}

#[derive(Debug)]
pub(crate) struct InstalledPublication {
    pub(crate) all_tables: bool,
    pub(crate) publishes_every_change: bool,
    pub(crate) has_schemas: bool,
    /// `schema.table` -> column list (None: every column), for tables without a row filter.
    pub(crate) tables: BTreeMap<String, Option<Vec<String>>>,
    pub(crate) filtered: bool,
}

#[derive(Debug)]
pub(crate) struct InstalledSlot {
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
}

/// Column `index` of a catalog row.
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index)
        .map_err(Error::pg("decode a catalog row"))
}

fn char_of(value: i8) -> char {
    u8::try_from(value).map(char::from).unwrap_or('?')
}

impl State {
    pub(crate) async fn load(tx: &Transaction<'_>, options: &SetupOptions) -> Result<State> {
        let mut state = State::default();
        let row = tx
            .query_one(
                "SELECT current_database()::text, current_setting('wal_level'),
                        to_regclass('replicator.schema_migrations') IS NOT NULL,
                        EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replicator')",
                &[],
            )
            .await
            .map_err(Error::pg("read the database's settings"))?;
        state.database = column(&row, 0)?;
        state.wal_level = column(&row, 1)?;
        state.installed = column(&row, 2)?;
        let schema_exists: bool = column(&row, 3)?;
        if schema_exists && !state.installed {
            return Err(Error::ForeignSchema);
        }
        if state.installed {
            state.load_sidecar(tx).await?;
        }
        state.load_tables(tx).await?;
        state.load_capture(tx).await?;
        state
            .load_publication(tx, options.publication.as_str())
            .await?;
        let slot = tx
            .query_opt(
                "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&options.slot.as_str()],
            )
            .await
            .map_err(Error::pg("read the replication slot"))?;
        state.slot = match slot {
            Some(row) => Some(InstalledSlot {
                plugin: column(&row, 0)?,
                database: column(&row, 1)?,
            }),
            None => None,
        };
        Ok(state)
    }

    async fn load_sidecar(&mut self, tx: &Transaction<'_>) -> Result<()> {
        let rows = tx
            .query(
                "SELECT version, checksum FROM replicator.schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(Error::pg("read replicator.schema_migrations"))?;
        for row in &rows {
            self.migrations.push((column(row, 0)?, column(row, 1)?));
        }
        let has_region = tx
            .query_one(
                "SELECT to_regclass('replicator.local_region') IS NOT NULL",
                &[],
            )
            .await
            .map_err(Error::pg("look for replicator.local_region"))?;
        let has_region: bool = column(&has_region, 0)?;
        if has_region {
            let region = tx
                .query_opt("SELECT region FROM replicator.local_region", &[])
                .await
                .map_err(Error::pg("read replicator.local_region"))?;
            self.region = match region {
                Some(row) => Some(column(&row, 0)?),
                None => None,
            };
        }
        Ok(())
    }

    async fn load_tables(&mut self, tx: &Transaction<'_>) -> Result<()> {
        let rows = tx
            .query(
                "SELECT c.relname::text, c.relreplident, a.attname::text,
                        EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
                &[],
            )
            .await
            .map_err(Error::pg("read the tables of schema public"))?;
        for row in rows {
            let table: String = column(&row, 0)?;
            self.replica_identity
                .insert(table.clone(), char_of(column(&row, 1)?));
            if column::<bool>(&row, 3)? {
                self.primary_keys.insert(table.clone());
            }
            self.columns
                .entry(table)
                .or_default()
                .insert(column(&row, 2)?);
        }
        Ok(())
    }

    async fn load_capture(&mut self, tx: &Transaction<'_>) -> Result<()> {
        let functions = tx
            .query(
                r"SELECT p.proname::text, p.prosrc, p.prosecdef FROM pg_proc p
                  JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'replicator'
                    AND (p.proname LIKE 'capture\_%' OR p.proname LIKE 'register\_%')",
                &[],
            )
            .await
            .map_err(Error::pg("read the capture functions"))?;
        for row in functions {
            self.functions
                .insert(column(&row, 0)?, (column(&row, 1)?, column(&row, 2)?));
        }
        let triggers = tx
            .query(
                r"SELECT c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled
                  FROM pg_trigger t
                  JOIN pg_class c ON c.oid = t.tgrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND NOT t.tgisinternal AND t.tgname LIKE 'replicator\_%'",
                &[],
            )
            .await
            .map_err(Error::pg("read the capture triggers"))?;
        for row in &triggers {
            self.triggers.push(InstalledTrigger {
                table: column(row, 0)?,
                name: column(row, 1)?,
                definition: column(row, 2)?,
                always: char_of(column(row, 3)?) == 'A',
            });
        }
        Ok(())
    }

    async fn load_publication(&mut self, tx: &Transaction<'_>, name: &str) -> Result<()> {
        let Some(row) = tx
            .query_opt(
                "SELECT p.oid, p.puballtables, p.pubinsert AND p.pubupdate AND p.pubdelete,
                        EXISTS (SELECT 1 FROM pg_publication_namespace s WHERE s.pnpubid = p.oid)
                 FROM pg_publication p WHERE p.pubname = $1",
                &[&name],
            )
            .await
            .map_err(Error::pg("read the publication"))?
        else {
            return Ok(());
        };
        let oid: u32 = column(&row, 0)?;
        let rows = tx
            .query(
                "SELECT n.nspname || '.' || c.relname, pr.prqual IS NOT NULL,
                        CASE WHEN pr.prattrs IS NULL THEN NULL ELSE
                          ARRAY(SELECT a.attname::text FROM pg_attribute a
                                WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)
                                ORDER BY a.attnum) END
                 FROM pg_publication_rel pr
                 JOIN pg_class c ON c.oid = pr.prrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE pr.prpubid = $1",
                &[&oid],
            )
            .await
            .map_err(Error::pg("read the publication's tables"))?;
        let mut publication = InstalledPublication {
            all_tables: column(&row, 1)?,
            publishes_every_change: column(&row, 2)?,
            has_schemas: column(&row, 3)?,
            tables: BTreeMap::new(),
            filtered: false,
        };
        for row in rows {
            publication.filtered |= column::<bool>(&row, 1)?;
            publication
                .tables
                .insert(column(&row, 0)?, column(&row, 2)?);
        }
        self.publication = Some(publication);
        Ok(())
    }

    /// Refuses a database that lacks a table or column the policy relies on: a generated trigger
    /// would otherwise fail at Superset's next write, not here.
    pub(crate) fn check_schema(&self, policy: &Policy) -> Result<()> {
        for rule in policy.rules() {
            let Some(columns) = self.columns.get(rule.table) else {
                if matches!(rule.treatment, Treatment::Excluded { .. }) {
                    continue;
                }
                return Err(Error::MissingTable {
                    table: rule.table.to_owned(),
                });
            };
            let needed: Vec<&str> = match &rule.treatment {
                Treatment::Replicated(table_policy) => {
                    let mut needed = table_policy.unversioned_columns();
                    needed.extend(table_policy.references.iter().map(|r| r.column()));
                    needed.extend(super::identity::identity_columns(table_policy));
                    needed
                }
                Treatment::Registry(registry) => registry
                    .key
                    .iter()
                    .copied()
                    .chain([registry.local_id])
                    .collect(),
                Treatment::Excluded { .. } => Vec::new(),
            };
            if let Some(missing) = needed.into_iter().find(|column| !columns.contains(*column)) {
                return Err(Error::MissingColumn {
                    table: rule.table.to_owned(),
                    column: missing.to_owned(),
                });
            }
        }
        for table in self
            .columns
            .keys()
            .filter(|table| policy.rule(table).is_none())
        {
            tracing::warn!(%table, "table public.{table} is not in the table policy: it is not replicated");
        }
        Ok(())
    }

    /// Whether `capture` is installed exactly as generated.
    pub(crate) fn has_capture(&self, capture: &Capture) -> bool {
        let function_current = self
            .functions
            .get(&capture.function)
            .is_some_and(|(body, definer)| *body == capture.body && *definer);
        let installed: Vec<&InstalledTrigger> = self
            .triggers
            .iter()
            .filter(|t| t.table == capture.table)
            .collect();
        // Triggers of ours that this capture does not include are removed by `stale_capture`.
        let triggers_current = capture.triggers.iter().all(|wanted| {
            installed
                .iter()
                .any(|t| t.name == wanted.name && t.definition == wanted.definition && t.always)
        });
        function_current && triggers_current
    }

    /// Statements that remove our triggers and functions the wanted captures do not include.
    pub(crate) fn stale_capture(&self, wanted: &[Capture]) -> Vec<String> {
        let mut statements = Vec::new();
        for trigger in &self.triggers {
            let kept = wanted.iter().any(|capture| {
                capture.table == trigger.table
                    && capture.triggers.iter().any(|t| t.name == trigger.name)
            });
            if !kept {
                statements.push(format!(
                    "DROP TRIGGER {} ON {}",
                    ident(&trigger.name),
                    public(&trigger.table)
                ));
            }
        }
        for function in self.functions.keys() {
            if !wanted.iter().any(|capture| capture.function == *function) {
                statements.push(format!("DROP FUNCTION replicator.{}()", ident(function)));
            }
        }
        statements
    }
}

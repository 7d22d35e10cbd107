//! One source transaction, applied inside one transaction of this region (DESIGN §2 step 4).
//!
//! **Contract.** [`TxnApplier::apply`] runs on the apply transaction (already marked with
//! `replicator.applying` and under this region's replication origin) and, for each entity change
//! in source order:
//!
//! 1. loads and locks the entity's local versions ([`versions`]);
//! 2. translates the change into this region's ids ([`LocalForm`]); a uuid not here yet, or an
//!    update of an entity this region has never seen, makes the whole transaction
//!    [`Outcome::Park`] (the caller rolls back and parks it durably);
//! 3. merges local and incoming states through `conflict::merge` — nothing else decides a winner.
//!    Local values are read only where the merge may report a conflict, so the log shows both;
//! 4. writes the row — insert, update of the replaced columns only, or delete — then Superset's
//!    derived data ([`derived`]), the merged versions, and every conflict to the log.
//!
//! Row writes run inside a savepoint, so that a constraint the row breaks is settled here instead
//! of failing the transaction: a unique natural key held by another entity is a natural-key
//! collision ([`keys`]); a foreign key to a row deleted here means the parent is gone (a delete
//! concurrent with this insert): the row is not written, its versions are. Anything else that is
//! the input's fault is an error with [`Action::Quarantine`](crate::Action::Quarantine).

use std::collections::{BTreeMap, BTreeSet};

use conflict::{EntityState, FieldPath, FieldVersion, Hlc, RegionId};
use envelope::EntityChange;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Statement, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::policy::{Identity, Policy, TablePolicy};

use super::derived;
use super::keys::{self, KeyContext};
use super::local_config::LocalColumns;
use super::local_form::{self, ColumnTypes, LocalForm, LocalValue, Translated, UuidLookup};
use super::rows::{RowKey, Rows};
use super::source_txn::SourceTxn;
use super::statements::Statements;
use super::versions::{self, Stamp};

/// What became of a source transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written; counts of what happened.
    Applied(Applied),
    /// Waits for these `(table, uuid)`s (a table `$config:<table>` waits for configuration).
    Park {
        waiting: Vec<(String, Uuid)>,
        reason: String,
    },
}

/// What applying one transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub entities: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Changes whose every field was already here (replays, duplicates).
    pub unchanged: u64,
    /// Rows that cannot exist here (`Translated::Skip`, a parent gone).
    pub skipped: u64,
    pub conflicts: u64,
    pub key_collisions: u64,
    /// Each conflict resolved, emitted once the apply transaction commits.
    pub conflicts_detected: Vec<crate::telemetry::apply::ConflictDetected>,
}

/// Registry lookups inside the apply transaction, so a row inserted earlier in it is found, with
/// the session's prepared lookup.
pub struct TxLookup<'a, 't>(pub &'a Transaction<'t>, pub &'a Statement);

impl std::fmt::Debug for TxLookup<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxLookup")
    }
}

impl UuidLookup for TxLookup<'_, '_> {
    async fn local_ids(&self, keys: &[(&str, Uuid)]) -> Result<Vec<(String, Uuid, i64)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        local_form::query_local_ids(self.0, self.1, keys).await
    }
}

/// Applies source transactions in this region (module docs).
#[derive(Debug)]
pub struct TxnApplier {
    pub(super) policy: &'static Policy,
    pub(super) region: RegionId,
    pub(super) types: ColumnTypes,
    pub(super) rows: Rows,
    pub(super) local_columns: LocalColumns,
    pub(super) statements: Statements,
}

/// One entity change, translated and merged, ready to write.
struct Planned<'c> {
    table: &'static str,
    policy: &'static TablePolicy,
    change: &'c EntityChange,
    columns: Vec<(String, LocalValue)>,
    key: Option<RowKey>,
    alive_before: bool,
    merged: conflict::Merged<Option<String>>,
    max_hlc: Hlc,
}

impl TxnApplier {
    pub fn new(
        policy: &'static Policy,
        region: RegionId,
        types: ColumnTypes,
        rows: Rows,
        local_columns: LocalColumns,
        statements: Statements,
    ) -> Self {
        TxnApplier {
            policy,
            region,
            types,
            rows,
            local_columns,
            statements,
        }
    }

    /// Applies `txn` on `tx` (module docs). On [`Outcome::Park`] or an error the caller must roll
    /// `tx` back: what was written before is not undone here.
    pub async fn apply(&mut self, tx: &Transaction<'_>, txn: &SourceTxn) -> Result<Outcome> {
        let mut applied = Applied::default();
        // A clone (statements are reference-counted): `plan` and `write` borrow `self` mutably.
        let local_ids = self.statements.local_ids.clone();
        let lookup = TxLookup(tx, &local_ids);
        let mut form = LocalForm::with_policy(self.policy, self.region, lookup, self.types.clone());
        for change in &txn.changes {
            let plan = match self.plan(tx, &mut form, change, &mut applied).await? {
                Step::Ready(plan) => plan,
                Step::Skip => continue,
                Step::Park { waiting, reason } => return Ok(Outcome::Park { waiting, reason }),
            };
            if let Some(park) = self.write(tx, txn, plan, &mut applied).await? {
                return Ok(park);
            }
        }
        Ok(Outcome::Applied(applied))
    }

    async fn plan<'c>(
        &mut self,
        tx: &Transaction<'_>,
        form: &mut LocalForm<TxLookup<'_, '_>>,
        change: &'c EntityChange,
        applied: &mut Applied,
    ) -> Result<Step<'c>> {
        let (table, policy) =
            self.policy
                .replicated_table(&change.table)
                .ok_or_else(|| Error::Unappliable {
                    problem: format!(
                        "a change of table {:?}, which this region does not replicate",
                        change.table
                    ),
                })?;
        let entity = change.entity;
        applied.entities += 1;
        let incoming_exists = local_form::existence(&change.fields);
        let names: Vec<String> = change
            .fields
            .iter()
            .filter(|f| !f.path.is_existence())
            .map(|f| f.path.as_str().to_owned())
            .collect();
        let wants_all = incoming_exists == Some(false);
        let local = versions::load(
            tx,
            &self.statements.load_versions,
            table,
            entity,
            (!wants_all).then_some(&names[..]),
        )
        .await?;
        if !local.known && incoming_exists.is_none() {
            return Ok(Step::Park {
                waiting: vec![(table.to_owned(), entity)],
                reason: format!("an update of {table} {entity}, which has not arrived here"),
            });
        }
        let columns = if names.is_empty() {
            Vec::new()
        } else {
            match form.column_values(table, &change.fields).await? {
                Translated::Ready { columns, notes } => {
                    for note in notes {
                        tracing::debug!(table, %entity, ?note, "apply adapted a value");
                    }
                    columns
                }
                Translated::Missing(missing) => {
                    let waiting: Vec<(String, Uuid)> = missing
                        .into_iter()
                        .map(|(t, u)| (t.to_owned(), u))
                        .collect();
                    let reason = format!(
                        "{table} {entity} references {} uuid(s) not here yet",
                        waiting.len()
                    );
                    return Ok(Step::Park { waiting, reason });
                }
                Translated::Skip(why) => {
                    tracing::info!(table, %entity, ?why, "a row that cannot exist in this region is not applied");
                    applied.skipped += 1;
                    return Ok(Step::Skip);
                }
            }
        };
        let key = match (policy.local_id, local.known) {
            (Some(_), true) => local.local_id.map(RowKey::Id),
            _ => row_key(tx, &self.statements, table, policy, entity).await?,
        };
        let merge_error = |source| Error::Merge {
            table: table.to_owned(),
            entity,
            source,
        };

        // The incoming state: the change's fields, valued in this region's terms.
        let values: BTreeMap<&str, Option<String>> = columns
            .iter()
            .map(|(c, v)| (c.as_str(), v.pg_text()))
            .collect();
        let mut incoming_fields = BTreeMap::new();
        let mut incoming_existence = None;
        let mut max_hlc = local.max_hlc.unwrap_or(Hlc::ZERO);
        for f in &change.fields {
            max_hlc = max_hlc.max(f.hlc);
            if f.path.is_existence() {
                let alive = f.value.as_bool().ok_or_else(|| Error::Unappliable {
                    problem: format!("{table} {entity}: `$exists` is not a boolean"),
                })?;
                incoming_existence = Some(FieldVersion::new(alive, f.dot, f.hlc));
            } else if let Some(value) = values.get(f.path.as_str()) {
                incoming_fields.insert(
                    f.path.clone(),
                    FieldVersion::new(value.clone(), f.dot, f.hlc),
                );
            }
        }
        let incoming =
            EntityState::from_parts(change.clock.clone(), incoming_existence, incoming_fields)
                .map_err(merge_error)?;

        // The local state: stored stamps; values only where the merge may report a conflict.
        let alive_before = local.known && local.alive;
        let mut local_fields = BTreeMap::new();
        let mut to_read = Vec::new();
        let mut local_existence = None;
        for (path, stamp) in &local.fields {
            if path.is_existence() {
                local_existence = Some(FieldVersion::new(local.alive, stamp.dot, stamp.hlc));
                continue;
            }
            let theirs = incoming.field(path);
            let value = match theirs {
                Some(t) if t.dot == stamp.dot && t.hlc == stamp.hlc => t.value.clone(),
                _ => {
                    let unseen = !change.clock.covers(&stamp.dot);
                    let newer = theirs.is_some_and(|t| (stamp.hlc, stamp.dot) > (t.hlc, t.dot));
                    if (unseen || newer) && alive_before {
                        to_read.push(path.as_str().to_owned());
                    }
                    None
                }
            };
            local_fields.insert(path.clone(), FieldVersion::new(value, stamp.dot, stamp.hlc));
        }
        if let (false, Some(key)) = (to_read.is_empty(), key) {
            let readable: Vec<&str> = to_read
                .iter()
                .map(String::as_str)
                .filter(|c| self.types.get(table, c).is_some())
                .collect();
            if let Some(row) = self
                .rows
                .read_text(tx, table, key_column(policy), key, &readable)
                .await?
            {
                for (column, value) in row {
                    if let Ok(path) = FieldPath::new(&column) {
                        if let Some(version) = local_fields.get_mut(&path) {
                            version.value = value;
                        }
                    }
                }
            }
        }
        let local_state = EntityState::from_parts(local.clock, local_existence, local_fields)
            .map_err(merge_error)?;
        let merged = conflict::merge(&local_state, &incoming).map_err(merge_error)?;
        Ok(Step::Ready(Planned {
            table,
            policy,
            change,
            columns,
            key,
            alive_before,
            merged,
            max_hlc,
        }))
    }

    async fn write(
        &mut self,
        tx: &Transaction<'_>,
        txn: &SourceTxn,
        plan: Planned<'_>,
        applied: &mut Applied,
    ) -> Result<Option<Outcome>> {
        let Planned {
            table,
            policy,
            change,
            mut columns,
            key,
            alive_before,
            merged,
            max_hlc,
        } = plan;
        let entity = change.entity;
        let replaced: BTreeSet<&FieldPath> = merged.replaced.iter().collect();
        let alive_after = merged.state.is_alive();
        let row_error = |context: &str| {
            let context = context.to_owned();
            move |source| Error::ApplyRow {
                table: table.to_owned(),
                entity,
                context,
                source,
            }
        };
        match (alive_before && key.is_some(), alive_after) {
            (false, true) => {
                if let Some(park) = self.identify(table, policy, entity, &mut columns)? {
                    return Ok(Some(park));
                }
                let register = self.statements.register.clone();
                let context = KeyContext {
                    table,
                    policy,
                    change,
                    register: &register,
                };
                match keys::insert(tx, &mut self.rows, &context, &mut columns, applied).await? {
                    keys::Inserted::Row(id) => {
                        if let Some(id) = id {
                            derived::after_write(tx, table, id).await?;
                        }
                        applied.inserted += 1;
                    }
                    keys::Inserted::NotWritten => applied.skipped += 1,
                }
            }
            (true, false) => {
                if let Some(key) = key {
                    if let RowKey::Id(id) = key {
                        derived::before_delete(tx, table, id).await?;
                    }
                    self.rows.delete(tx, table, key_column(policy), key).await?;
                    applied.deleted += 1;
                }
            }
            (true, true) => {
                let changed: Vec<(String, LocalValue)> = columns
                    .into_iter()
                    .filter(|(c, _)| FieldPath::new(c).is_ok_and(|p| replaced.contains(&p)))
                    .collect();
                if changed.is_empty() {
                    applied.unchanged += 1;
                } else if let Some(key) = key {
                    let context = KeyContext {
                        table,
                        policy,
                        change,
                        register: &self.statements.register,
                    };
                    if keys::update(tx, &mut self.rows, &context, key, changed, applied).await? {
                        if let RowKey::Id(id) = key {
                            derived::after_write(tx, table, id).await?;
                        }
                        applied.updated += 1;
                    }
                }
            }
            (false, false) => {
                if key.is_none() && policy.local_id.is_some() {
                    // A tombstone that never had a row here: reserve an id that no row will ever
                    // take, so ids embedded elsewhere translate to it and to nothing else.
                    tx.execute(
                        "SELECT replicator.register($1, nextval(pg_get_serial_sequence($2, $3)), $4)",
                        &[&table, &format!("public.{table}"), &policy.local_id, &entity],
                    )
                    .await
                    .map_err(row_error("reserve an id for a tombstone"))?;
                }
                applied.unchanged += 1;
            }
        }
        let written: Vec<(FieldPath, Stamp)> = merged
            .replaced
            .iter()
            .filter_map(|path| {
                let version = if path.is_existence() {
                    merged.state.existence().map(|v| (v.dot, v.hlc))
                } else {
                    merged.state.field(path).map(|v| (v.dot, v.hlc))
                };
                version.map(|(dot, hlc)| (path.clone(), Stamp { dot, hlc }))
            })
            .collect();
        versions::save(
            tx,
            &self.statements.save_versions,
            (table, entity),
            merged.state.clock(),
            alive_after,
            max_hlc,
            &written,
        )
        .await?;
        for conflict in &merged.conflicts {
            super::ledger::log_conflict(
                tx,
                table,
                entity,
                txn.source.as_str(),
                txn.commit_lsn,
                conflict,
            )
            .await?;
            applied.conflicts += 1;
            applied
                .conflicts_detected
                .push(crate::telemetry::apply::ConflictDetected {
                    source: txn.source.to_string(),
                    table: table.to_owned(),
                    entity,
                    field: conflict.field.as_str().to_owned(),
                    kind: match conflict.kind {
                        conflict::ConflictKind::Field => "field",
                        conflict::ConflictKind::DeleteUpdate => "delete_update",
                    },
                    winner: match conflict.winner {
                        conflict::Side::Local => "local",
                        conflict::Side::Incoming => "incoming",
                    },
                });
        }
        Ok(None)
    }

    /// Adds what an insert needs beyond the change: the uuid column, and the local columns this
    /// region's configuration gives (a database connection's URI). Parks when they are missing.
    fn identify(
        &self,
        table: &str,
        policy: &TablePolicy,
        entity: Uuid,
        columns: &mut Vec<(String, LocalValue)>,
    ) -> Result<Option<Outcome>> {
        if let Identity::Uuid { column, .. } = policy.identity {
            columns.retain(|(c, _)| c != column);
            columns.push((column.to_owned(), LocalValue::Text(entity.to_string())));
        }
        match self.local_columns.for_insert(table, entity, columns) {
            Ok(extra) => {
                columns.extend(extra);
                Ok(None)
            }
            Err(reason) => Ok(Some(Outcome::Park {
                waiting: vec![(format!("$config:{table}"), entity)],
                reason,
            })),
        }
    }
}

enum Step<'c> {
    Ready(Planned<'c>),
    Skip,
    Park {
        waiting: Vec<(String, Uuid)>,
        reason: String,
    },
}

/// The column a row is found by: its local id, or its uuid column.
pub(super) fn key_column(policy: &TablePolicy) -> &'static str {
    match (policy.local_id, policy.identity) {
        (Some(id), _) => id,
        (None, Identity::Uuid { column, .. }) => column,
        (None, _) => "id",
    }
}

/// Where the entity's row is here, if it has one: the newest local id registered for it, or,
/// for a table without local ids, its uuid when a row holds it.
async fn row_key(
    tx: &Transaction<'_>,
    statements: &Statements,
    table: &str,
    policy: &TablePolicy,
    entity: Uuid,
) -> Result<Option<RowKey>> {
    match policy.local_id {
        Some(_) => {
            let found = TxLookup(tx, &statements.local_ids)
                .local_ids(&[(table, entity)])
                .await?;
            Ok(found.first().map(|(_, _, id)| RowKey::Id(*id)))
        }
        None => {
            let column = key_column(policy);
            let sql = format!(
                "SELECT 1 FROM {} WHERE {} = $1 LIMIT 1",
                crate::setup::sql::public(table),
                crate::setup::sql::ident(column)
            );
            let row = tx
                .query_opt(&sql, &[&entity])
                .await
                .map_err(Error::pg(format!("find a row of {table}")))?;
            Ok(row.map(|_| RowKey::Uuid(entity)))
        }
    }
}

/// Whether a PostgreSQL error is a unique or foreign-key violation, and which.
pub(super) fn violation(error: &Error) -> Option<(SqlState, String)> {
    let source = match error {
        Error::Postgres { source, .. } | Error::ApplyRow { source, .. } => source,
        _ => return None,
    };
    let db = source.as_db_error()?;
    let code = db.code().clone();
    (code == SqlState::UNIQUE_VIOLATION || code == SqlState::FOREIGN_KEY_VIOLATION)
        .then(|| (code, db.constraint().unwrap_or_default().to_owned()))
}

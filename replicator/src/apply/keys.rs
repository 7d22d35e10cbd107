//! Natural keys: row writes that may collide with another entity's unique key (DESIGN §3).
//!
//! **Contract.** [`insert`] and [`update`] write one row inside a savepoint. When PostgreSQL
//! refuses it:
//!
//! - **a unique label key** (dashboard `slug`, tag / RLS filter `name`, a database connection's
//!   `database_name` or `verbose_name`) held by another entity: the two claims — each the key
//!   field's stamp `(hlc, region, uuid)` — go to `conflict::resolve_renames`, which every region
//!   computes identically; the earliest claim keeps the key, the loser is renamed to
//!   `<key>-<8 hex of its uuid>`. If the loser is the row being written, it is written renamed;
//!   if it is the row already here, that row is renamed (as the applier, so not published:
//!   every region meeting the collision renames it the same way) and the write goes ahead. The
//!   decision is logged in `replicator.key_collision`. Apply never stalls on it.
//! - **another unique key** (a dataset's `(database, schema, table_name)`, a column's name in its
//!   dataset, ...): two entities naming the same physical thing. The row is not written, its
//!   versions are, and the collision is logged with outcome `not_applied` (the alias policy of
//!   DESIGN §3 is not built yet; see docs/apply.md).
//! - **a foreign key** to a row deleted here (a delete concurrent with this write): the row cannot
//!   exist; it is not written, its versions are (the delete reaches the other regions too).

use conflict::{Claim, EntityId, Hlc, KeyOutcome, RegionId};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Statement, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::policy::TablePolicy;
use crate::setup::sql::{ident, public};

use super::ledger;
use super::local_form::LocalValue;
use super::rows::{RowKey, Rows};
use super::transaction::{violation, Applied};

/// Columns whose unique value is a label, settled by renaming the later claim.
const LABELS: &[(&str, &str)] = &[
    ("dashboards", "slug"),
    ("tag", "name"),
    ("row_level_security_filters", "name"),
    ("dbs", "database_name"),
    ("dbs", "verbose_name"),
];

/// Longest label PostgreSQL accepts in these columns (the narrowest is varchar(250)).
const MAX_LABEL: usize = 250;

/// The write being settled.
#[derive(Debug)]
pub struct KeyContext<'a> {
    pub table: &'static str,
    pub policy: &'static TablePolicy,
    pub change: &'a envelope::EntityChange,
    /// The session's prepared `replicator.register(table, local_id, uuid)`, for a new row.
    pub register: &'a Statement,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Written; the new local id (none for a table without one).
    Row(Option<i64>),
    /// Not written (a collision on a physical key, or a parent gone).
    NotWritten,
}

fn row_error(context: &KeyContext<'_>, what: &str, error: Error) -> Error {
    match error {
        Error::Postgres { source, .. } => Error::ApplyRow {
            table: context.table.to_owned(),
            entity: context.change.entity,
            context: what.to_owned(),
            source,
        },
        other => other,
    }
}

async fn savepoint(tx: &Transaction<'_>, statement: &str) -> Result<()> {
    tx.batch_execute(statement)
        .await
        .map_err(Error::pg(format!("`{statement}`")))
}

/// Registers a new row's local id for its entity (nothing for a table without local ids).
async fn register(tx: &Transaction<'_>, context: &KeyContext<'_>, id: Option<i64>) -> Result<()> {
    let Some(id) = id else {
        return Ok(());
    };
    tx.execute(
        context.register,
        &[&context.table, &id, &context.change.entity],
    )
    .await
    .map(drop)
    .map_err(|source| Error::ApplyRow {
        table: context.table.to_owned(),
        entity: context.change.entity,
        context: "register the new row".into(),
        source,
    })
}

/// Inserts the row (and registers its local id), settling collisions (module docs).
pub async fn insert(
    tx: &Transaction<'_>,
    rows: &mut Rows,
    context: &KeyContext<'_>,
    columns: &mut [(String, LocalValue)],
    applied: &mut Applied,
) -> Result<Inserted> {
    for _attempt in 0..4 {
        // Pipelined: the savepoint and the write go out together.
        let (set, written) = tokio::join!(
            savepoint(tx, "SAVEPOINT replicator_row"),
            rows.insert(tx, context.table, context.policy, columns)
        );
        set?;
        let error = match written {
            Ok(id) => {
                // Pipelined: the release and the new row's registration go out together.
                let (released, registered) = tokio::join!(
                    savepoint(tx, "RELEASE SAVEPOINT replicator_row"),
                    register(tx, context, id)
                );
                released?;
                registered?;
                return Ok(Inserted::Row(id));
            }
            Err(error) => error,
        };
        let Some((code, constraint)) = violation(&error) else {
            return Err(row_error(context, "insert", error));
        };
        savepoint(tx, "ROLLBACK TO SAVEPOINT replicator_row").await?;
        if !settle(tx, rows, context, columns, &code, &constraint, applied).await? {
            return Ok(Inserted::NotWritten);
        }
    }
    Err(Error::Unappliable {
        problem: format!(
            "{} {}: still colliding after renaming",
            context.table, context.change.entity
        ),
    })
}

/// Updates the row's `columns`, settling collisions; returns whether the row was written.
pub async fn update(
    tx: &Transaction<'_>,
    rows: &mut Rows,
    context: &KeyContext<'_>,
    key: RowKey,
    mut columns: Vec<(String, LocalValue)>,
    applied: &mut Applied,
) -> Result<bool> {
    let key_column = super::transaction::key_column(context.policy);
    for _attempt in 0..4 {
        let (set, written) = tokio::join!(
            savepoint(tx, "SAVEPOINT replicator_row"),
            rows.update(tx, context.table, key_column, key, &columns)
        );
        set?;
        let error = match written {
            Ok(found) => {
                savepoint(tx, "RELEASE SAVEPOINT replicator_row").await?;
                return Ok(found);
            }
            Err(error) => error,
        };
        let Some((code, constraint)) = violation(&error) else {
            return Err(row_error(context, "update", error));
        };
        savepoint(tx, "ROLLBACK TO SAVEPOINT replicator_row").await?;
        if !settle(tx, rows, context, &mut columns, &code, &constraint, applied).await? {
            return Ok(false);
        }
    }
    Err(Error::Unappliable {
        problem: format!(
            "{} {}: still colliding after renaming",
            context.table, context.change.entity
        ),
    })
}

/// Settles one violation; returns whether to try the write again.
async fn settle(
    tx: &Transaction<'_>,
    rows: &mut Rows,
    context: &KeyContext<'_>,
    columns: &mut [(String, LocalValue)],
    code: &SqlState,
    constraint: &str,
    applied: &mut Applied,
) -> Result<bool> {
    let (table, entity) = (context.table, context.change.entity);
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        tracing::info!(table, %entity, constraint, "the row's parent is gone here; not written");
        return Ok(false);
    }
    applied.key_collisions += 1;
    let key_columns = index_columns(tx, constraint).await?;
    let label = match key_columns.as_slice() {
        [column] if LABELS.contains(&(table, column.as_str())) => column.clone(),
        _ => {
            let key = key_text(columns, &key_columns);
            tracing::warn!(table, %entity, constraint, key, "natural-key collision on a physical key; the row is not written");
            ledger::log_key_collision(tx, table, &key, Uuid::nil(), entity, "not_applied").await?;
            return Ok(false);
        }
    };
    let Some(LocalValue::Text(value)) = columns
        .iter()
        .find(|(c, _)| *c == label)
        .map(|(_, v)| v.clone())
    else {
        return Err(Error::Unappliable {
            problem: format!(
                "{table} {entity}: collision on {label}, which the write does not set"
            ),
        });
    };
    let holder = holder(tx, table, &label, &value).await?;
    let Some((holder_id, holder_uuid)) = holder else {
        return Err(Error::Unappliable {
            problem: format!(
                "{table} {entity}: {constraint} refused {value:?}, held by no row found"
            ),
        });
    };
    let incoming = context
        .change
        .fields
        .iter()
        .find(|f| f.path.as_str() == label)
        .map(|f| (f.hlc, f.dot.region));
    let Some((hlc, region)) = incoming else {
        return Err(Error::Unappliable {
            problem: format!("{table} {entity}: no stamp for {label}"),
        });
    };
    let held = claim_stamp(tx, table, holder_uuid, &label).await?;
    let claims = [
        Claim {
            key: value.clone(),
            entity: EntityId(*entity.as_bytes()),
            hlc,
            region,
        },
        Claim {
            key: value.clone(),
            entity: EntityId(*holder_uuid.as_bytes()),
            hlc: held.0,
            region: held.1,
        },
    ];
    let decisions =
        conflict::resolve_renames(&claims, MAX_LABEL).map_err(|source| Error::Merge {
            table: table.to_owned(),
            entity,
            source,
        })?;
    for decision in decisions {
        let KeyOutcome::Renamed(renamed) = decision.outcome else {
            continue;
        };
        let loser = Uuid::from_bytes(decision.entity.0);
        let winner = if loser == entity { holder_uuid } else { entity };
        tracing::info!(table, column = label, key = value, %winner, %loser, renamed, "natural-key collision");
        ledger::log_key_collision(
            tx,
            table,
            &value,
            winner,
            loser,
            &format!("renamed:{renamed}"),
        )
        .await?;
        if loser == entity {
            for (column, v) in columns.iter_mut() {
                if *column == label {
                    *v = LocalValue::Text(renamed.clone());
                }
            }
        } else {
            let set = [(label.clone(), LocalValue::Text(renamed))];
            rows.update(tx, table, "id", RowKey::Id(holder_id), &set)
                .await
                .map_err(|e| row_error(context, "rename the key's other holder", e))?;
        }
    }
    Ok(true)
}

fn key_text(columns: &[(String, LocalValue)], key_columns: &[String]) -> String {
    key_columns
        .iter()
        .map(|k| {
            columns
                .iter()
                .find(|(c, _)| c == k)
                .and_then(|(_, v)| v.pg_text())
                .unwrap_or_else(|| "?".into())
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The columns of a unique index or constraint, in order.
async fn index_columns(tx: &Transaction<'_>, index: &str) -> Result<Vec<String>> {
    let row = tx
        .query_opt(
            "SELECT array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_class AS c
             JOIN pg_index AS i ON i.indexrelid = c.oid
             JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord) ON true
             JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE c.relname = $1 AND c.relnamespace = 'public'::regnamespace",
            &[&index],
        )
        .await
        .map_err(Error::pg("read a unique index's columns"))?;
    Ok(row
        .and_then(|row| row.try_get::<_, Option<Vec<String>>>(0).ok().flatten())
        .unwrap_or_default())
}

/// The row holding `value` in `column`, and its uuid.
async fn holder(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
    value: &str,
) -> Result<Option<(i64, Uuid)>> {
    let sql = format!(
        "SELECT t.id::bigint, replicator.registered($1, t.id) FROM {} AS t WHERE t.{}::text = $2",
        public(table),
        ident(column)
    );
    let row = tx
        .query_opt(&sql, &[&table, &value])
        .await
        .map_err(Error::pg(format!("find the holder of {table}.{column}")))?;
    Ok(row.and_then(|row| {
        let id: i64 = row.try_get(0).ok()?;
        let uuid: Option<Uuid> = row.try_get(1).ok()?;
        uuid.map(|uuid| (id, uuid))
    }))
}

/// The stamp of the write that gave `uuid` its key (its field's stored version); the earliest
/// possible stamp when the field was never versioned.
async fn claim_stamp(
    tx: &Transaction<'_>,
    table: &str,
    uuid: Uuid,
    column: &str,
) -> Result<(Hlc, RegionId)> {
    let row = tx
        .query_opt(
            "SELECT f.hlc, f.region FROM replicator.field_version AS f
             WHERE f.table_name = $1 AND f.uuid = $2 AND f.field = $3",
            &[&table, &uuid, &column],
        )
        .await
        .map_err(Error::pg("read a key's stamp"))?;
    let fallback = || RegionId::new("0").map(|r| (Hlc::ZERO, r));
    let stamp = match row {
        Some(row) => {
            let hlc: i64 = row.try_get(0).map_err(Error::pg("read a key's stamp"))?;
            let region: String = row.try_get(1).map_err(Error::pg("read a key's stamp"))?;
            match (Hlc::from_i64(hlc), RegionId::new(&region)) {
                (Ok(hlc), Ok(region)) => Ok((hlc, region)),
                _ => fallback(),
            }
        }
        None => fallback(),
    };
    stamp.map_err(|source| Error::Merge {
        table: table.to_owned(),
        entity: uuid,
        source,
    })
}

//! `replicator conflicts resolve ID --keep <region|winner|loser>`: the operator's choice, made
//! the value every region converges on.
//!
//! **Contract.** Resolving writes a *new version* that dominates both sides of the conflict: one
//! ordinary `UPDATE` of that column of that row, in a normal session — never with
//! `replicator.applying` and never under the applier's replication origin — so the capture
//! trigger stamps it like a user's edit: this region's counter in the entity's clock (which
//! already covers both sides, merged) goes up, the field gets a new dot and an hlc above every
//! hlc stored for the entity, and the reader publishes it. Every region then applies it over
//! both old versions. The value is the chosen side's value from the log, which is in this
//! region's terms (ids and all) as PostgreSQL prints it, cast back with `$1::text::<column
//! type>`. In the same transaction the conflict gets `resolved_at` and `resolved_keep` (the
//! region whose value was kept).
//!
//! It refuses, changing nothing ([`Error::CannotResolve`]):
//! - a `delete_update` conflict: existence is not a column to set; recreate or delete the
//!   object in Superset instead;
//! - a field that is a part of a column (a path with `/`), or not a column of the table;
//! - an entity whose row is gone here;
//! - a field whose current value is neither side's (someone edited it since): that later edit
//!   would be overwritten, so only with `force`.
//!
//! When the current value already is the chosen one (keeping the winner, usually), no new version
//! is needed: every region already converges on it; the conflict is only marked resolved.

use std::fmt;

use serde_json::{json, Value};
use tokio_postgres::{Client, SimpleQueryMessage, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::policy::{self, Identity, TablePolicy};
use crate::setup::sql::{ident, public};

use super::conflicts::{self, Conflict};
use super::{get, hlc_time, Report};

/// Which side `--keep` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Winner,
    Loser,
    Region(String),
}

impl Keep {
    pub fn parse(text: &str) -> Self {
        match text {
            "winner" => Keep::Winner,
            "loser" => Keep::Loser,
            region => Keep::Region(region.to_owned()),
        }
    }
}

/// What `resolve` did.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub conflict: Conflict,
    /// The region whose value was kept.
    pub kept_region: String,
    pub value: Option<String>,
    pub previous: Option<String>,
    /// The new version's dot and hlc time, when one was written.
    pub new_version: Option<(String, i64, String)>,
}

/// Resolves conflict `id` (module docs).
pub async fn resolve(client: &mut Client, id: i64, keep: &Keep, force: bool) -> Result<Resolution> {
    let conflict = conflicts::get_one(client, id).await?;
    let refuse = |reason: String| Error::CannotResolve { id, reason };
    if conflict.kind == "delete_update" {
        return Err(refuse(format!(
            "it is a delete concurrent with an update of `{}`: whether {} {} exists is decided by the merge, not by a column; the {} won. To keep the object, recreate it (e.g. import it again) in one region; to delete it, delete it in Superset",
            conflict.field,
            conflict.table,
            conflict.uuid,
            if conflict.winning().value.as_deref() == Some("deleted") { "delete" } else { "update" },
        )));
    }
    let chosen = match keep {
        Keep::Winner => conflict.winning().clone(),
        Keep::Loser => conflict.losing().clone(),
        Keep::Region(region) => {
            let sides = [&conflict.local, &conflict.incoming];
            let matching: Vec<_> = sides.iter().filter(|v| v.region == *region).collect();
            match matching.as_slice() {
                [one] => (**one).clone(),
                [] => {
                    return Err(refuse(format!(
                        "--keep {region}: the sides are {} and {}",
                        conflict.local.region, conflict.incoming.region
                    )))
                }
                _ => {
                    return Err(refuse(format!(
                        "--keep {region}: both sides come from {region}; use --keep winner or loser"
                    )))
                }
            }
        }
    };
    let other =
        if chosen.region == conflict.local.region && chosen.counter == conflict.local.counter {
            conflict.incoming.value.clone()
        } else {
            conflict.local.value.clone()
        };
    let column = conflict.field.clone();
    if column.contains('/') || column.starts_with('$') {
        return Err(refuse(format!(
            "field `{column}` is a part of a column, which resolve cannot set yet; edit the object in Superset"
        )));
    }
    let (table, table_policy) = policy::superset()
        .replicated_table(&conflict.table)
        .ok_or_else(|| {
            refuse(format!(
                "table {} is not replicated by this binary",
                conflict.table
            ))
        })?;

    let tx = client
        .transaction()
        .await
        .map_err(Error::pg("begin the resolve transaction"))?;
    // A normal, versioned write, whatever the role's or database's defaults say.
    tx.batch_execute("SET LOCAL replicator.applying = 'off'")
        .await
        .map_err(Error::pg("mark the resolve transaction as a local write"))?;
    let sql_type = column_type(&tx, table, &column)
        .await?
        .ok_or_else(|| refuse(format!("{table} has no column `{column}` in this database")))?;
    let key = row_key(&tx, table, table_policy, conflict.uuid)
        .await?
        .ok_or_else(|| {
            refuse(format!(
                "{table} {} has no row in this region any more (it was deleted)",
                conflict.uuid
            ))
        })?;
    let previous = match current_text(&tx, table, &key, &column).await? {
        Some(previous) => previous,
        None => {
            return Err(refuse(format!(
                "{table} {} has no row in this region any more (it was deleted)",
                conflict.uuid
            )))
        }
    };
    if previous != chosen.value && previous != other && !force {
        return Err(refuse(format!(
            "`{column}` was changed again after the conflict (its value is neither side's); resolving would overwrite that later edit. Pass --force to do it anyway"
        )));
    }
    let mut new_version = None;
    if previous != chosen.value {
        let sql = format!(
            "UPDATE {} SET {} = $1::text::{sql_type} WHERE {} = $2::text::{}",
            public(table),
            ident(&column),
            ident(&key.column),
            key.sql_type
        );
        tx.execute(&sql, &[&chosen.value, &key.value])
            .await
            .map_err(Error::pg(format!("set {table}.{column}")))?;
        let stamped = tx
            .query_opt(
                &format!(
                    "SELECT region || ':' || counter, hlc, {} FROM replicator.field_version
                     WHERE table_name = $1 AND uuid = $2 AND field = $3 AND xid = pg_current_xact_id()",
                    hlc_time("hlc")
                ),
                &[&table, &conflict.uuid, &column],
            )
            .await
            .map_err(Error::pg("read the new version"))?;
        match stamped {
            Some(row) => {
                let what = "the new version";
                new_version = Some((get(&row, 0, what)?, get(&row, 1, what)?, get(&row, 2, what)?));
            }
            None => {
                return Err(Error::CannotResolve {
                    id,
                    reason: format!(
                        "the update of `{column}` was not versioned (are the capture triggers installed? run `replicator setup`)"
                    ),
                })
            }
        }
    }
    tx.execute(
        "UPDATE replicator.conflict SET resolved_at = now(), resolved_keep = $2 WHERE id = $1",
        &[&id, &chosen.region],
    )
    .await
    .map_err(Error::pg("mark the conflict resolved"))?;
    tx.commit()
        .await
        .map_err(Error::pg("commit the resolution"))?;
    Ok(Resolution {
        kept_region: chosen.region.clone(),
        value: chosen.value,
        previous,
        new_version,
        conflict,
    })
}

/// Where the entity's row is: a key column, its SQL type and the key's text.
#[derive(Debug)]
struct RowKey {
    column: String,
    sql_type: &'static str,
    value: String,
}

async fn row_key(
    tx: &Transaction<'_>,
    table: &str,
    policy: &TablePolicy,
    uuid: Uuid,
) -> Result<Option<RowKey>> {
    match (policy.local_id, policy.identity) {
        (Some(id), _) => {
            let row = tx
                .query_opt(
                    "SELECT local_id FROM replicator.registry WHERE table_name = $1 AND uuid = $2
                     ORDER BY local_id DESC LIMIT 1",
                    &[&table, &uuid],
                )
                .await
                .map_err(Error::pg("look up the entity's local id"))?;
            Ok(match row {
                Some(row) => Some(RowKey {
                    column: id.to_owned(),
                    sql_type: "bigint",
                    value: get::<i64>(&row, 0, "a local id")?.to_string(),
                }),
                None => None,
            })
        }
        (None, Identity::Uuid { column, .. }) => Ok(Some(RowKey {
            column: column.to_owned(),
            sql_type: "uuid",
            value: uuid.to_string(),
        })),
        (None, _) => Ok(None),
    }
}

async fn column_type(tx: &Transaction<'_>, table: &str, column: &str) -> Result<Option<String>> {
    let row = tx
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a
             WHERE a.attrelid = to_regclass('public.' || quote_ident($1))
               AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table, &column],
        )
        .await
        .map_err(Error::pg("read the column's type"))?;
    row.map(|row| get(&row, 0, "a column type")).transpose()
}

/// The column's value as its type's output function prints it (like the applier's
/// `Rows::read_text`, through the simple query protocol), locked; `None` when the row is gone.
async fn current_text(
    tx: &Transaction<'_>,
    table: &str,
    key: &RowKey,
    column: &str,
) -> Result<Option<Option<String>>> {
    // Only an integer or a uuid is spliced into the text, never a value from the log.
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = '{}' FOR UPDATE",
        ident(column),
        public(table),
        ident(&key.column),
        key.value
    );
    let messages = tx
        .simple_query(&sql)
        .await
        .map_err(Error::pg(format!("read {table}.{column}")))?;
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            let value = row
                .try_get(0)
                .map_err(Error::pg(format!("read {table}.{column}")))?;
            return Ok(Some(value.map(str::to_owned)));
        }
    }
    Ok(None)
}

impl Report for Resolution {
    fn to_json(&self) -> Value {
        let c = &self.conflict;
        json!({
            "id": c.id,
            "table": c.table,
            "uuid": c.uuid.to_string(),
            "field": c.field,
            "kept_region": self.kept_region,
            "kept": if self.kept_region == c.winning().region { "winner" } else { "loser" },
            "value": self.value,
            "previous_value": self.previous,
            "new_version": self.new_version.as_ref().map(|(dot, hlc, time)| json!({"dot": dot, "hlc": hlc, "hlc_time": time})),
        })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.conflict;
        writeln!(
            f,
            "conflict {}: kept the value of {} for {} {} field {}",
            c.id, self.kept_region, c.table, c.uuid, c.field
        )?;
        match &self.new_version {
            Some((dot, _, time)) => writeln!(
                f,
                "wrote a new version {dot} (hlc time {time}) above both sides; it replicates to every region like an edit"
            ),
            None => writeln!(
                f,
                "the field already holds that value here, so no new version was needed: every region converges on it"
            ),
        }
    }
}

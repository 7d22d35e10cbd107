//! Canonical form: one captured write, in the terms every region shares (DESIGN §1, §2 step 2,
//! §4).
//!
//! **Contract.** [`CanonicalForm::entity_change`] turns a [`CapturedChange`] (local terms) into an
//! [`EntityChange`] with the change's table, entity uuid and clock, and **one [`FieldWrite`] per
//! stamp and nothing else**, sorted by path, each with the stamp's dot and hlc and a canonical
//! value. The same write in any region gives the same bytes: no region-local integer id anywhere,
//! no region-local column.
//!
//! *Which fields.* Only stamped ones: the triggers stamp exactly the columns a write changed, and
//! an unchanged field is absent, never blank (the merge would take a blank for a write).
//!
//! - `$exists` is JSON `true` when the change has a row, `false` for a delete (row `None`).
//! - A stamped column missing from the row, or sent as unchanged-TOAST, is an error
//!   ([`Error::StampedValueMissing`]), never a blank: the triggers stamp only changed columns and
//!   PostgreSQL always sends a changed TOASTed value, so it cannot happen unless the stream or the
//!   publication is wrong. A column stamped on a delete is the same error.
//! - The local id, the identity column and every column the policy names local are dropped even
//!   when stamped (defence in depth: the triggers never stamp them). Each drop is logged as a
//!   warning and counted ([`CanonicalStats::dropped_unversioned`]).
//!
//! *Values*, from pgoutput's text form, by the column's type oid (deterministic: the same text
//! gives the same JSON in every region):
//!
//! | type | canonical value | why |
//! |---|---|---|
//! | NULL (any type) | `null` | |
//! | `int2`, `int4`, `int8` | number | exact in JSON (i64) |
//! | `bool` (`t`/`f`) | `true`/`false` | |
//! | `float4`, `float8` | number if finite, else the text (`NaN`, `Infinity`, `-Infinity`) | JSON has no non-finite numbers |
//! | `numeric` | string, as printed | exact: a JSON number would go through f64 |
//! | `json`, `jsonb` | the parsed JSON (e.g. `tables.folders`) | a value, not text |
//! | `timestamptz` | string, ISO-8601 in UTC (`2024-05-01T10:00:00.5Z`) | PG prints it in the session's time zone |
//! | `bytea` | string, as printed (`\x…` hex) | replicated tables' bytea columns are all local (encrypted) |
//! | `text`, `varchar`, `bpchar`, `uuid`, `date`, `timestamp`, anything else | string, as printed | |
//!
//! The text forms assume what pgoutput sends on a replication connection with the server
//! defaults: text format, `DateStyle` ISO, `bytea_output` hex, a UTF-8 database. A value that does
//! not parse as its type says is an error ([`Error::CanonicalValue`]), not a guess.
//!
//! *References* (policy [`Reference`]): the local integer becomes the uuid registered for the
//! target row (through the [`RegistryCache`]); users and roles by their name-based uuids. A
//! polymorphic reference takes its target table from its discriminator column in the row. A
//! reference whose target is not registered (or whose discriminator names no known table)
//! becomes the token `dangling:<region>:<table>:<id>` (`dangling:<region>:<discriminator>=<value>:<id>`
//! for an unknown discriminator), with a warning: deterministic, readable, and naming no object
//! anywhere. Never the integer.
//!
//! *Embedded ids* (policy [`Embedded`]):
//!
//! - JSON stored as text (`dashboards.position_json`, `json_metadata`, `slices.params`,
//!   `query_context`): translated by the `canonical` crate's walkers (chart ids → `slices`,
//!   dataset ids → `tables`, annotation layer ids → `annotation_layer`), each id to its uuid or a
//!   dangling token like a reference; the result is serialised back to text with object keys
//!   sorted (compact, independent of serde_json's features) and emitted as a JSON **string**, the
//!   column's type. Text that is not JSON is emitted unchanged (Superset writes JSON there; a
//!   broken value is Superset's, and translating nothing is all that can be done with it).
//!   Numbers are re-printed by serde_json: integers beyond 64 bits lose precision (f64), as they
//!   would in Superset's frontend.
//! - The `canonical` walkers take a *synchronous* `Translate`, while the registry may need the
//!   database. So each column is walked twice: first with a translator that records every local
//!   id and returns it unchanged, then, after all ids of the whole change are resolved in one
//!   registry round trip, with a translator over the resolved map.
//! - `<prefix>:<id>` text (tag names `owner:<user id>`, `favorited_by:<user id>`): the id part
//!   becomes the user's uuid (`owner:<uuid>`), or a dangling token (`owner:dangling:us:ab_user:7`);
//!   the same rule that gives a tag its identity in setup (`^prefix:[0-9]{1,18}$`). Other names
//!   are kept.
//! - Native `json` columns (`tables.folders`) only hold uuids: the parsed value as is.
//! - A column the policy says embeds local ids but for which no walker exists is an error
//!   ([`Error::EmbeddedIds`]): shipping it untranslated would leak local ids.
//!
//! Tables the policy does not register (`annotation_layer`) never have registry entries (nothing
//! registers them), so their ids become dangling tokens without a database round trip.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use canonical::{EmbeddedId, JsonColumn, RefKind, DANGLING_PREFIX};
use conflict::{FieldPath, RegionId};
use envelope::{EntityChange, FieldWrite};
use pgoutput::ColumnValue;
use serde_json::Value;

use super::registry::{PgRegistry, RegistryCache, RegistryLookup};
use super::{CapturedChange, Column, Row};
use crate::error::{Error, Result};
use crate::policy::{self, Embedded, EmbeddedFormat, IdForm, Policy, Reference, TablePolicy};

/// Type oids of the built-in types canonical form tells apart (`pg_type.oid`, fixed in
/// PostgreSQL's catalog).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const TIMESTAMPTZ: u32 = 1184;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const JSONB: u32 = 3802;
}

/// Turns captured changes into canonical entity changes (see the module docs).
pub struct CanonicalForm<L = PgRegistry> {
    policy: &'static Policy,
    region: RegionId,
    registry: RegistryCache<L>,
    stats: CanonicalStats,
}

/// Counters of one canonical form's life, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanonicalStats {
    /// Changes turned into entity changes.
    pub changes: u64,
    /// Field writes emitted.
    pub fields: u64,
    /// Stamped local, identity or local-id columns dropped (each is a warning: the triggers
    /// never stamp them).
    pub dropped_unversioned: u64,
    /// References and embedded ids emitted as dangling tokens.
    pub dangling: u64,
}

impl<L> fmt::Debug for CanonicalForm<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalForm")
            .field("region", &self.region)
            .field("registry", &self.registry)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<L: RegistryLookup> CanonicalForm<L> {
    /// Canonical form of `region`'s changes under Superset 6.1's policy.
    pub fn new(region: RegionId, registry: RegistryCache<L>) -> Self {
        CanonicalForm::with_policy(policy::superset(), region, registry)
    }

    pub fn with_policy(
        policy: &'static Policy,
        region: RegionId,
        registry: RegistryCache<L>,
    ) -> Self {
        CanonicalForm {
            policy,
            region,
            registry,
            stats: CanonicalStats::default(),
        }
    }

    /// The registry cache, for the reader to [`observe`](RegistryCache::observe) the registry
    /// entries it streams.
    pub fn registry_mut(&mut self) -> &mut RegistryCache<L> {
        &mut self.registry
    }

    pub fn registry(&self) -> &RegistryCache<L> {
        &self.registry
    }

    pub fn stats(&self) -> CanonicalStats {
        self.stats
    }

    /// The canonical form of one captured write (module docs).
    pub async fn entity_change(&mut self, change: CapturedChange) -> Result<EntityChange> {
        let (table, policy) = self.table(&change.table)?;
        let unversioned = policy.unversioned_columns();
        let mut pending: Vec<(FieldPath, super::Stamp, Pending)> =
            Vec::with_capacity(change.stamps.len());
        for stamp in change.stamps {
            if stamp.field == FieldPath::existence().as_str() {
                let value = Pending::Ready(Value::Bool(change.row.is_some()));
                pending.push((FieldPath::existence(), stamp, value));
                continue;
            }
            if unversioned.contains(&stamp.field.as_str()) {
                self.stats.dropped_unversioned += 1;
                tracing::warn!(
                    table,
                    entity = %change.entity,
                    field = %stamp.field,
                    "a local or identity column was stamped; it is left out of the change (the triggers never stamp it)"
                );
                continue;
            }
            let path = FieldPath::new(&stamp.field).map_err(|e| Error::CanonicalValue {
                table: table.to_owned(),
                field: stamp.field.clone(),
                reason: e.to_string(),
            })?;
            let missing = |why: &'static str| Error::StampedValueMissing {
                table: table.to_owned(),
                entity: change.entity,
                field: stamp.field.clone(),
                why,
            };
            let row = change
                .row
                .as_ref()
                .ok_or_else(|| missing("the change is a delete"))?;
            let column = row
                .get(&stamp.field)
                .ok_or_else(|| missing("the row has no such column"))?;
            if column.value == ColumnValue::UnchangedToast {
                return Err(missing("it was sent as an unchanged TOAST value"));
            }
            let value = prepare(table, policy, row, column)?;
            pending.push((path, stamp, value));
        }

        let mut keys = BTreeSet::new();
        for (_, _, value) in &pending {
            value.keys(self.policy, &mut keys);
        }
        let resolved = self.registry.resolve(&keys).await?;

        let mut fields = Vec::with_capacity(pending.len());
        for (path, stamp, value) in pending {
            let mut translator = Translator {
                region: self.region,
                resolved: &resolved,
                dangling: 0,
                table,
                column: path.as_str(),
            };
            let value = translator.finish(value)?;
            self.stats.dangling += translator.dangling;
            fields.push(FieldWrite {
                path,
                dot: stamp.dot,
                hlc: stamp.hlc,
                value,
            });
        }
        fields.sort_by(|a, b| a.path.cmp(&b.path));
        self.stats.changes += 1;
        self.stats.fields += fields.len() as u64;
        Ok(EntityChange {
            table: table.to_owned(),
            entity: change.entity,
            clock: change.clock,
            fields,
        })
    }

    /// The policy of a replicated table.
    fn table(&self, table: &str) -> Result<(&'static str, &'static TablePolicy)> {
        self.policy
            .replicated_table(table)
            .ok_or_else(|| Error::NotReplicated {
                table: table.to_owned(),
            })
    }
}

/// A field's value, canonical except for the local ids it still has to look up.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    /// Nothing to look up.
    Ready(Value),
    /// A reference to `target`'s row `local_id`.
    Reference { target: Target, local_id: i64 },
    /// JSON text with local ids inside, to walk again with the resolved ids.
    Embedded {
        walker: JsonColumn,
        json: Value,
        ids: BTreeSet<(&'static str, i64)>,
    },
    /// `<prefix>:<local id>` of a row of `target`.
    Prefixed {
        prefix: &'static str,
        target: &'static str,
        local_id: i64,
    },
}

/// The table a reference points to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Table(&'static str),
    /// A polymorphic reference whose discriminator names no table the policy knows:
    /// `<discriminator>=<value>` (`?` for NULL).
    Unknown(String),
}

impl Pending {
    /// The registry keys this value needs (only of tables the policy registers).
    fn keys(&self, policy: &Policy, keys: &mut BTreeSet<(&'static str, i64)>) {
        let mut add = |table: &'static str, id: i64| {
            if policy.is_registered(table) {
                keys.insert((table, id));
            }
        };
        match self {
            Pending::Ready(_)
            | Pending::Reference {
                target: Target::Unknown(_),
                ..
            } => {}
            Pending::Reference {
                target: Target::Table(table),
                local_id,
            } => add(table, *local_id),
            Pending::Embedded { ids, .. } => ids.iter().for_each(|(t, id)| add(t, *id)),
            Pending::Prefixed {
                target, local_id, ..
            } => add(target, *local_id),
        }
    }
}

/// The first pass over embedded JSON: every local id, left unchanged.
fn collect_ids(
    walker: JsonColumn,
    json: &mut Value,
) -> canonical::Result<BTreeSet<(&'static str, i64)>> {
    let mut ids = BTreeSet::new();
    let mut collect = |kind: RefKind, id: EmbeddedId| -> canonical::Result<EmbeddedId> {
        if let EmbeddedId::Local(n) = id {
            ids.insert((kind.table(), n));
        }
        Ok(id)
    };
    walker.translate(json, &mut collect)?;
    Ok(ids)
}

/// A stamped column's value, before registry lookups.
fn prepare(
    table: &'static str,
    policy: &TablePolicy,
    row: &Row,
    column: &Column,
) -> Result<Pending> {
    let bad = |reason: String| Error::CanonicalValue {
        table: table.to_owned(),
        field: column.name.clone(),
        reason,
    };
    if let Some(reference) = policy.reference(&column.name) {
        let Some(text) = column_text(column).map_err(bad)? else {
            return Ok(Pending::Ready(Value::Null));
        };
        let local_id = text
            .trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("a reference holds {text:?}, not an integer id")))?;
        let target = match reference {
            Reference::Foreign { target, .. } => Target::Table(target),
            Reference::Polymorphic {
                discriminator,
                targets,
                ..
            } => {
                let kind = match row.get(discriminator) {
                    Some(c) => column_text(c).map_err(bad)?,
                    None => {
                        return Err(bad(format!(
                            "its discriminator column `{discriminator}` is not in the row"
                        )))
                    }
                };
                match targets.iter().find(|(value, _)| Some(*value) == kind) {
                    Some((_, target)) => Target::Table(target),
                    None => Target::Unknown(format!("{discriminator}={}", kind.unwrap_or("?"))),
                }
            }
        };
        return Ok(Pending::Reference { target, local_id });
    }
    if let Some(embedded) = policy.embedded.iter().find(|e| e.column == column.name) {
        return prepare_embedded(table, embedded, column).map_err(bad);
    }
    scalar(column).map(Pending::Ready).map_err(bad)
}

fn prepare_embedded(
    table: &'static str,
    embedded: &Embedded,
    column: &Column,
) -> std::result::Result<Pending, String> {
    let has_local_ids = embedded.refs.iter().any(|r| r.form == IdForm::LocalId);
    match embedded.format {
        EmbeddedFormat::JsonText => {
            let walker = match JsonColumn::of(table, embedded.column) {
                Some(walker) => walker,
                None if has_local_ids => return Err(no_walker(embedded)),
                None => return scalar(column).map(Pending::Ready),
            };
            let Some(text) = column_text(column)? else {
                return Ok(Pending::Ready(Value::Null));
            };
            let Ok(mut json) = serde_json::from_str::<Value>(text) else {
                return Ok(Pending::Ready(Value::String(text.to_owned())));
            };
            let ids = collect_ids(walker, &mut json).map_err(|e| e.to_string())?;
            Ok(Pending::Embedded { walker, json, ids })
        }
        EmbeddedFormat::Json if has_local_ids => Err(no_walker(embedded)),
        EmbeddedFormat::Json => scalar(column).map(Pending::Ready),
        EmbeddedFormat::PrefixedId => {
            let Some(text) = column_text(column)? else {
                return Ok(Pending::Ready(Value::Null));
            };
            for reference in embedded.refs {
                let Some(prefix) = reference.path.strip_suffix(":<id>") else {
                    continue;
                };
                if let Some(local_id) = prefixed_id(text, prefix) {
                    return Ok(Pending::Prefixed {
                        prefix,
                        target: reference.target,
                        local_id,
                    });
                }
            }
            Ok(Pending::Ready(Value::String(text.to_owned())))
        }
    }
}

fn no_walker(embedded: &Embedded) -> String {
    format!(
        "the policy says it embeds local ids ({}), but canonical form has no walker for it",
        embedded
            .refs
            .iter()
            .map(|r| r.path)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The id of `<prefix>:<1 to 18 digits>`, the form setup keys tag identities by.
fn prefixed_id(text: &str, prefix: &str) -> Option<i64> {
    let digits = text.strip_prefix(prefix)?.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Turns pending values into canonical ones with the resolved registry entries.
struct Translator<'a> {
    region: RegionId,
    resolved: &'a BTreeMap<(&'static str, i64), uuid::Uuid>,
    dangling: u64,
    table: &'static str,
    column: &'a str,
}

impl Translator<'_> {
    fn finish(&mut self, value: Pending) -> Result<Value> {
        match value {
            Pending::Ready(value) => Ok(value),
            Pending::Reference {
                target: Target::Table(target),
                local_id,
            } => Ok(Value::String(self.id(target, local_id).to_text())),
            Pending::Reference {
                target: Target::Unknown(target),
                local_id,
            } => Ok(Value::String(self.dangling(&target, local_id))),
            Pending::Prefixed {
                prefix,
                target,
                local_id,
            } => Ok(Value::String(format!(
                "{prefix}:{}",
                self.id(target, local_id).to_text()
            ))),
            Pending::Embedded {
                walker, mut json, ..
            } => {
                let mut translate =
                    |kind: RefKind, id: EmbeddedId| -> canonical::Result<EmbeddedId> {
                        Ok(match id {
                            EmbeddedId::Local(n) => self.id(kind.table(), n),
                            other => other,
                        })
                    };
                walker
                    .translate(&mut json, &mut translate)
                    .map_err(|source| Error::EmbeddedIds {
                        table: self.table.to_owned(),
                        column: self.column.to_owned(),
                        source,
                    })?;
                Ok(Value::String(canonical::sorted_json(&json)))
            }
        }
    }

    /// `table`'s row `local_id` as a uuid, or a dangling token.
    fn id(&mut self, table: &'static str, local_id: i64) -> EmbeddedId {
        match self.resolved.get(&(table, local_id)) {
            Some(uuid) => EmbeddedId::Uuid(*uuid),
            None => EmbeddedId::Dangling(self.dangling(table, local_id)),
        }
    }

    fn dangling(&mut self, table: &str, local_id: i64) -> String {
        self.dangling += 1;
        tracing::warn!(
            table = self.table,
            column = self.column,
            target = table,
            local_id,
            "a reference to a row that was never registered; it is published as a dangling token"
        );
        dangling_token(self.region, table, local_id)
    }
}

/// `dangling:<region>:<table>:<id>`: names no object in any region, the same bytes everywhere.
fn dangling_token(region: RegionId, table: &str, local_id: i64) -> String {
    format!("{DANGLING_PREFIX}{region}:{table}:{local_id}")
}

/// A column's text, `None` for NULL.
mod value;

use value::{column_text, scalar};

#[cfg(test)]
mod tests;

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

use canonical::{chart, dashboard, EmbeddedId, RefKind, DANGLING_PREFIX};
use conflict::{FieldPath, RegionId};
use envelope::{EntityChange, FieldWrite};
use pgoutput::{ColumnValue, Oid};
use serde_json::Value;

use super::registry::{PgRegistry, RegistryCache, RegistryLookup};
use super::{CapturedChange, Column, Row};
use crate::error::{Error, Result};
use crate::policy::{
    self, Embedded, EmbeddedFormat, IdForm, Policy, Reference, TablePolicy, Treatment,
};

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
        match self.policy.rule(table) {
            Some(rule) => match &rule.treatment {
                Treatment::Replicated(policy) => Ok((rule.table, policy)),
                _ => Err(Error::NotReplicated {
                    table: table.to_owned(),
                }),
            },
            None => Err(Error::NotReplicated {
                table: table.to_owned(),
            }),
        }
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
        walker: Walker,
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

/// Which `canonical` walker knows a JSON text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walker {
    DashboardPosition,
    DashboardMetadata,
    ChartParams,
    ChartQueryContext,
}

impl Walker {
    fn of(table: &str, column: &str) -> Option<Walker> {
        match (table, column) {
            ("dashboards", "position_json") => Some(Walker::DashboardPosition),
            ("dashboards", "json_metadata") => Some(Walker::DashboardMetadata),
            ("slices", "params") => Some(Walker::ChartParams),
            ("slices", "query_context") => Some(Walker::ChartQueryContext),
            _ => None,
        }
    }

    fn walk(self, json: &mut Value, t: &mut dyn canonical::Translate) -> canonical::Result<()> {
        match self {
            Walker::DashboardPosition => dashboard::translate_position(json, t),
            Walker::DashboardMetadata => dashboard::translate_metadata(json, t),
            Walker::ChartParams => chart::translate_params(json, t),
            Walker::ChartQueryContext => chart::translate_query_context(json, t),
        }
    }
}

/// The table an embedded id of `kind` names.
fn ref_table(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Chart => "slices",
        RefKind::Dataset => "tables",
        RefKind::AnnotationLayer => "annotation_layer",
    }
}

/// The first pass over embedded JSON: every local id, left unchanged.
fn collect_ids(
    walker: Walker,
    json: &mut Value,
) -> canonical::Result<BTreeSet<(&'static str, i64)>> {
    let mut ids = BTreeSet::new();
    let mut collect = |kind: RefKind, id: EmbeddedId| -> canonical::Result<EmbeddedId> {
        if let EmbeddedId::Local(n) = id {
            ids.insert((ref_table(kind), n));
        }
        Ok(id)
    };
    walker.walk(json, &mut collect)?;
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
            let walker = match Walker::of(table, embedded.column) {
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
                            EmbeddedId::Local(n) => self.id(ref_table(kind), n),
                            other => other,
                        })
                    };
                walker
                    .walk(&mut json, &mut translate)
                    .map_err(|source| Error::EmbeddedIds {
                        table: self.table.to_owned(),
                        column: self.column.to_owned(),
                        source,
                    })?;
                Ok(Value::String(sorted_json(&json)))
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
fn column_text(column: &Column) -> std::result::Result<Option<&str>, String> {
    match &column.value {
        ColumnValue::Null => Ok(None),
        ColumnValue::Text(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "the value is not UTF-8 (the database encoding must be UTF8)".to_owned()),
        ColumnValue::Binary(_) => {
            Err("the value came in binary format; the reader must stream text format".to_owned())
        }
        ColumnValue::UnchangedToast => Err("the value is an unchanged TOAST value".to_owned()),
    }
}

/// A plain column's canonical value, by its type (module docs).
fn scalar(column: &Column) -> std::result::Result<Value, String> {
    match column_text(column)? {
        None => Ok(Value::Null),
        Some(text) => scalar_text(column.type_oid, text),
    }
}

fn scalar_text(type_oid: Oid, text: &str) -> std::result::Result<Value, String> {
    let Oid(type_oid) = type_oid;
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{text:?} is not an integer")),
        oid::BOOL => match text {
            "t" => Ok(Value::Bool(true)),
            "f" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean (t or f)")),
        },
        oid::FLOAT4 | oid::FLOAT8 => {
            let float = text
                .parse::<f64>()
                .map_err(|_| format!("{text:?} is not a floating-point number"))?;
            Ok(serde_json::Number::from_f64(float)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.to_owned())))
        }
        oid::JSON | oid::JSONB => {
            Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
        }
        oid::TIMESTAMPTZ => timestamptz_utc(text).map(Value::String).ok_or_else(|| {
            format!("{text:?} is not a timestamptz in ISO style (the reader's session needs DateStyle ISO)")
        }),
        oid::NUMERIC => Ok(Value::String(text.to_owned())),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// JSON text with object keys sorted and no whitespace, whatever serde_json's map order.
fn sorted_json(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A `timestamptz` as PostgreSQL prints it in `DateStyle` ISO (`2024-05-01 12:00:00.5+02`,
/// offsets `+05:30` or `-00:19:32`, a ` BC` suffix, `infinity`) as ISO-8601 in UTC:
/// `2024-05-01T10:00:00.5Z` (`infinity` and `-infinity` stay). The fraction keeps PostgreSQL's
/// digits without trailing zeros; a year outside 0000–9999 keeps its digits (with `-` before
/// year 0, astronomical numbering).
fn timestamptz_utc(text: &str) -> Option<String> {
    if text == "infinity" || text == "-infinity" {
        return Some(text.to_owned());
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let (date, time) = body.split_once(' ')?;
    let mut parts = date.rsplitn(3, '-');
    let day: i64 = number(parts.next()?, 2)?;
    let month: i64 = number(parts.next()?, 2)?;
    let year_text = parts.next()?;
    let mut year: i64 = year_text
        .parse()
        .ok()
        .filter(|_| year_text.len() >= 4 && year_text.bytes().all(|b| b.is_ascii_digit()))?;
    if bc {
        year = 1 - year;
    }
    let sign_at = time.find(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (clock, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut hms = hms.split(':');
    let hour = number(hms.next()?, 2)?;
    let minute = number(hms.next()?, 2)?;
    let second = number(hms.next()?, 2)?;
    if hms.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let (sign, offset) = offset.split_at(1);
    let mut offset_parts = offset.split(':');
    let mut offset_seconds = number(offset_parts.next()?, 2)? * 3600;
    if let Some(minutes) = offset_parts.next() {
        offset_seconds += number(minutes, 2)? * 60;
    }
    if let Some(seconds) = offset_parts.next() {
        offset_seconds += number(seconds, 2)?;
    }
    if offset_parts.next().is_some() {
        return None;
    }
    if sign == "-" {
        offset_seconds = -offset_seconds;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = local - offset_seconds;
    let (y, m, d) = civil_from_days(utc.div_euclid(86_400));
    let seconds = utc.rem_euclid(86_400);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let fraction = fraction.trim_end_matches('0');
    let fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    Some(format!(
        "{year}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    ))
}

/// Exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use conflict::{Counter, Dot, Hlc, VersionVector};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::capture::Stamp;

    /// `replicator.registry` as a map; records each round trip.
    #[derive(Default)]
    struct Registry {
        rows: BTreeMap<(String, i64), Uuid>,
        asked: Mutex<Vec<Vec<(String, i64)>>>,
    }

    impl RegistryLookup for Registry {
        async fn lookup(&self, keys: &[(&str, i64)]) -> Result<Vec<(String, i64, Uuid)>> {
            self.asked
                .lock()
                .unwrap()
                .push(keys.iter().map(|(t, id)| ((*t).to_owned(), *id)).collect());
            Ok(keys
                .iter()
                .filter_map(|(t, id)| {
                    self.rows
                        .get(&((*t).to_owned(), *id))
                        .map(|u| ((*t).to_owned(), *id, *u))
                })
                .collect())
        }
    }

    fn uuid(table: &str, id: i64) -> Uuid {
        policy::name_uuid(&format!("test:{table}:{id}"))
    }

    /// A form for region `us` whose registry knows `known` (each as [`uuid`]).
    fn form(known: &[(&str, i64)]) -> CanonicalForm<Registry> {
        let registry = Registry {
            rows: known
                .iter()
                .map(|(t, id)| (((*t).to_owned(), *id), uuid(t, *id)))
                .collect(),
            asked: Mutex::default(),
        };
        CanonicalForm::new(
            RegionId::new("us").unwrap(),
            RegistryCache::new(registry, 100),
        )
    }

    fn col(name: &str, type_oid: u32, value: Option<&str>) -> Column {
        Column {
            name: name.to_owned(),
            type_oid: Oid(type_oid),
            value: match value {
                Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
                None => ColumnValue::Null,
            },
        }
    }

    const TEXT: u32 = 25;
    const VARCHAR: u32 = 1043;
    const UUID: u32 = 2950;
    const TIMESTAMP: u32 = 1114;
    const BYTEA: u32 = 17;

    fn stamp(field: &str, hlc: u64) -> Stamp {
        Stamp {
            field: field.to_owned(),
            dot: Dot::new(RegionId::new("us").unwrap(), Counter(3)),
            hlc: Hlc::from_u64(hlc),
        }
    }

    fn change(table: &str, row: Option<Vec<Column>>, fields: &[&str]) -> CapturedChange {
        CapturedChange {
            table: table.to_owned(),
            entity: uuid("entity", 1),
            clock: [(RegionId::new("us").unwrap(), Counter(3))]
                .into_iter()
                .collect::<VersionVector>(),
            stamps: fields
                .iter()
                .enumerate()
                .map(|(i, f)| stamp(f, 1000 + i as u64))
                .collect(),
            row: row.map(|columns| Row { columns }),
        }
    }

    fn value<'c>(change: &'c EntityChange, path: &str) -> &'c Value {
        &change
            .fields
            .iter()
            .find(|f| f.path.as_str() == path)
            .unwrap_or_else(|| panic!("no field {path}"))
            .value
    }

    fn scalar_of(type_oid: u32, text: &str) -> std::result::Result<Value, String> {
        scalar_text(Oid(type_oid), text)
    }

    #[test]
    fn values_are_canonical_by_type() {
        assert_eq!(scalar_of(oid::INT2, "-7"), Ok(json!(-7)));
        assert_eq!(scalar_of(oid::INT4, "2147483647"), Ok(json!(2_147_483_647)));
        assert_eq!(
            scalar_of(oid::INT8, "-9223372036854775808"),
            Ok(json!(i64::MIN))
        );
        assert_eq!(scalar_of(oid::BOOL, "t"), Ok(json!(true)));
        assert_eq!(scalar_of(oid::BOOL, "f"), Ok(json!(false)));
        assert_eq!(scalar_of(oid::FLOAT8, "1.5"), Ok(json!(1.5)));
        assert_eq!(scalar_of(oid::FLOAT4, "1e+20"), Ok(json!(1e20)));
        assert_eq!(scalar_of(oid::FLOAT8, "NaN"), Ok(json!("NaN")));
        assert_eq!(scalar_of(oid::FLOAT8, "Infinity"), Ok(json!("Infinity")));
        assert_eq!(scalar_of(oid::FLOAT8, "-Infinity"), Ok(json!("-Infinity")));
        assert_eq!(
            scalar_of(oid::NUMERIC, "12345678901234567890.10"),
            Ok(json!("12345678901234567890.10")),
            "numeric stays exact"
        );
        assert_eq!(scalar_of(TEXT, "42"), Ok(json!("42")), "text stays text");
        assert_eq!(scalar_of(VARCHAR, "Sales"), Ok(json!("Sales")));
        assert_eq!(scalar_of(1042, "ab  "), Ok(json!("ab  ")));
        let u = "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f";
        assert_eq!(scalar_of(UUID, u), Ok(json!(u)));
        assert_eq!(scalar_of(1082, "2024-05-01"), Ok(json!("2024-05-01")));
        assert_eq!(
            scalar_of(TIMESTAMP, "2024-05-01 10:00:00.25"),
            Ok(json!("2024-05-01 10:00:00.25"))
        );
        assert_eq!(
            scalar_of(oid::JSON, r#"{"b": [1, {"x": null}], "a": "s"}"#),
            Ok(json!({"a": "s", "b": [1, {"x": null}]})),
            "json is a value"
        );
        assert_eq!(scalar_of(oid::JSONB, "[]"), Ok(json!([])));
        assert_eq!(scalar_of(BYTEA, "\\xdeadbeef"), Ok(json!("\\xdeadbeef")));
        assert_eq!(
            scalar_of(oid::TIMESTAMPTZ, "2024-05-01 12:00:00+02"),
            Ok(json!("2024-05-01T10:00:00Z"))
        );
        assert_eq!(scalar_of(1009, "{a,b}"), Ok(json!("{a,b}")), "other types");
        for (type_oid, bad) in [
            (oid::INT4, "1.5"),
            (oid::INT8, ""),
            (oid::BOOL, "true"),
            (oid::FLOAT8, "one"),
            (oid::TIMESTAMPTZ, "05/01/2024 12:00:00 CEST"),
        ] {
            assert!(scalar_of(type_oid, bad).is_err(), "{type_oid} {bad:?}");
        }
        assert_eq!(scalar(&col("x", oid::INT4, None)), Ok(Value::Null));
        let binary = Column {
            value: ColumnValue::Binary(Bytes::from_static(b"\0\0\0\x01")),
            ..col("x", oid::INT4, None)
        };
        assert!(scalar(&binary).unwrap_err().contains("binary"));
        let not_utf8 = Column {
            value: ColumnValue::Text(Bytes::from_static(b"\xff")),
            ..col("x", TEXT, None)
        };
        assert!(scalar(&not_utf8).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn timestamptz_is_normalised_to_utc() {
        for (pg, utc) in [
            ("2024-05-01 12:00:00+02", "2024-05-01T10:00:00Z"),
            (
                "2024-05-01 12:00:00.123456+00",
                "2024-05-01T12:00:00.123456Z",
            ),
            ("2024-05-01 12:00:00.5-03", "2024-05-01T15:00:00.5Z"),
            ("2024-01-01 01:00:00+05:30", "2023-12-31T19:30:00Z"),
            ("2023-12-31 23:30:00-01", "2024-01-01T00:30:00Z"),
            ("2024-02-28 23:00:00-02", "2024-02-29T01:00:00Z"),
            ("1900-01-01 00:00:00+00:19:32", "1899-12-31T23:40:28Z"),
            ("1970-01-01 00:00:00+00", "1970-01-01T00:00:00Z"),
            ("10000-01-01 00:00:00+00", "10000-01-01T00:00:00Z"),
            ("0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00Z"),
            ("0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00Z"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
        ] {
            assert_eq!(timestamptz_utc(pg).as_deref(), Some(utc), "{pg}");
        }
        for bad in [
            "2024-05-01T12:00:00+02",
            "2024-05-01 12:00:00",
            "2024-13-01 12:00:00+00",
            "2024-05-01 12:00+00",
            "24-05-01 12:00:00+00",
            "2024-05-01 12:00:00.x+00",
            "2024-05-01 12:00:00+0200",
        ] {
            assert_eq!(timestamptz_utc(bad), None, "{bad}");
        }
        // The civil-date arithmetic round-trips over a wide range.
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn translated_json_is_written_with_sorted_keys() {
        let value = json!({"b": {"z": 1, "a": [true, null, {"y": "\"q\"", "x": 1.5}]}, "a": "é"});
        assert_eq!(
            sorted_json(&value),
            r#"{"a":"é","b":{"a":[true,null,{"x":1.5,"y":"\"q\""}],"z":1}}"#
        );
        assert_eq!(
            serde_json::from_str::<Value>(&sorted_json(&value)).unwrap(),
            value
        );
    }

    #[test]
    fn the_first_pass_collects_every_local_id_and_changes_nothing() {
        let mut metadata = json!({
            "native_filter_configuration": [{
                "targets": [{"datasetId": 7}],
                "scope": {"excluded": [3]},
                "chartsInScope": [1, 2]
            }],
            "chart_configuration": {"1": {"id": 1, "crossFilters": {"chartsInScope": [2]}}},
            "expanded_slices": {"5": true},
        });
        let before = metadata.clone();
        let ids = collect_ids(Walker::DashboardMetadata, &mut metadata).unwrap();
        assert_eq!(metadata, before);
        let want: BTreeSet<(&str, i64)> = [
            ("slices", 1),
            ("slices", 2),
            ("slices", 3),
            ("slices", 5),
            ("tables", 7),
        ]
        .into_iter()
        .collect();
        assert_eq!(ids, want);
        let mut params = json!({"datasource": "7__table", "slice_id": 1,
            "annotation_layers": [{"sourceType": "NATIVE", "value": 4}]});
        let ids = collect_ids(Walker::ChartParams, &mut params).unwrap();
        assert!(ids.contains(&("annotation_layer", 4)) && ids.contains(&("tables", 7)));
    }

    #[test]
    fn every_column_the_policy_says_embeds_local_ids_has_a_walker() {
        for (table, policy) in policy::superset().replicated() {
            for embedded in policy.embedded {
                let local = embedded.refs.iter().any(|r| r.form == IdForm::LocalId);
                match embedded.format {
                    EmbeddedFormat::JsonText if local => assert!(
                        Walker::of(table, embedded.column).is_some(),
                        "{table}.{}",
                        embedded.column
                    ),
                    EmbeddedFormat::Json => assert!(!local, "{table}.{}", embedded.column),
                    EmbeddedFormat::PrefixedId => {
                        assert!(embedded.refs.iter().all(|r| r.path.ends_with(":<id>")))
                    }
                    EmbeddedFormat::JsonText => {}
                }
            }
        }
    }

    fn dashboard_row(position: &str, metadata: &str) -> Vec<Column> {
        vec![
            col("id", oid::INT4, Some("11")),
            col("dashboard_title", VARCHAR, Some("Sales")),
            col("position_json", TEXT, Some(position)),
            col("json_metadata", TEXT, Some(metadata)),
            col("created_by_fk", oid::INT4, Some("1")),
            col("changed_by_fk", oid::INT4, None),
            col("theme_id", oid::INT4, Some("3")),
            col("published", oid::BOOL, Some("t")),
            col("uuid", UUID, Some("5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f")),
        ]
    }

    #[tokio::test]
    async fn a_dashboard_insert_is_translated_and_only_stamped_versioned_fields_leave() {
        let mut form = form(&[
            ("ab_user", 1),
            ("slices", 21),
            ("slices", 22),
            ("tables", 7),
        ]);
        let position = r#"{"CHART-a": {"type": "CHART", "meta": {"chartId": 21, "width": 4}},
            "CHART-b": {"type": "CHART", "meta": {"chartId": 99}}, "ROOT_ID": {"type": "ROOT"}}"#;
        let metadata = r#"{"native_filter_configuration": [{"id": "NATIVE_FILTER-x",
            "targets": [{"datasetId": 7, "column": {"name": "region"}}],
            "scope": {"excluded": [22]}, "chartsInScope": [21, 22]}],
            "timed_refresh_immune_slices": [21], "refresh_frequency": 21}"#;
        let mut captured = change(
            "dashboards",
            Some(dashboard_row(position, metadata)),
            &[
                "dashboard_title",
                "position_json",
                "json_metadata",
                "created_by_fk",
                "changed_by_fk",
                "theme_id",
                "published",
                "$exists",
                "id",
                "uuid",
            ],
        );
        let dot = captured.stamps[0].dot;
        captured.stamps.reverse();
        let out = form.entity_change(captured.clone()).await.unwrap();

        assert_eq!(out.table, "dashboards");
        assert_eq!(out.entity, captured.entity);
        assert_eq!(out.clock, captured.clock);
        let paths: Vec<&str> = out.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$exists",
                "changed_by_fk",
                "created_by_fk",
                "dashboard_title",
                "json_metadata",
                "position_json",
                "published",
                "theme_id"
            ],
            "sorted, without id and uuid"
        );
        assert!(out.fields.iter().all(|f| f.dot == dot));
        let title = out
            .fields
            .iter()
            .find(|f| f.path.as_str() == "dashboard_title")
            .unwrap();
        assert_eq!(
            title.hlc,
            Hlc::from_u64(1000),
            "each field keeps its stamp's hlc"
        );
        assert_eq!(value(&out, "$exists"), &json!(true));
        assert_eq!(value(&out, "dashboard_title"), &json!("Sales"));
        assert_eq!(value(&out, "published"), &json!(true));
        assert_eq!(value(&out, "changed_by_fk"), &Value::Null);
        assert_eq!(
            value(&out, "created_by_fk"),
            &json!(uuid("ab_user", 1).to_string())
        );
        assert_eq!(value(&out, "theme_id"), &json!("dangling:us:themes:3"));

        let position: Value =
            serde_json::from_str(value(&out, "position_json").as_str().unwrap()).unwrap();
        assert_eq!(
            position["CHART-a"]["meta"],
            json!({"chartId": uuid("slices", 21).to_string(), "width": 4})
        );
        assert_eq!(
            position["CHART-b"]["meta"]["chartId"],
            json!("dangling:us:slices:99")
        );
        let metadata_text = value(&out, "json_metadata").as_str().unwrap();
        let metadata: Value = serde_json::from_str(metadata_text).unwrap();
        assert_eq!(
            sorted_json(&metadata),
            metadata_text,
            "sorted, compact text"
        );
        let filter = &metadata["native_filter_configuration"][0];
        let (c21, c22) = (
            uuid("slices", 21).to_string(),
            uuid("slices", 22).to_string(),
        );
        assert_eq!(filter["chartsInScope"], json!([c21, c22]));
        assert_eq!(filter["scope"]["excluded"], json!([c22]));
        assert_eq!(
            filter["targets"][0]["datasetId"],
            json!(uuid("tables", 7).to_string())
        );
        assert_eq!(metadata["timed_refresh_immune_slices"], json!([c21]));
        assert_eq!(
            metadata["refresh_frequency"],
            json!(21),
            "a number that is not an id stays"
        );

        let stats = form.stats();
        assert_eq!(stats.dropped_unversioned, 2, "id and uuid");
        assert_eq!(stats.dangling, 2, "theme 3 and chart 99");
        assert_eq!(stats.fields, 8);
        assert_eq!(
            form.registry().stats().lookups,
            1,
            "every id of the change in one round trip"
        );

        // The same change again is answered from memory, byte for byte the same.
        let again = form.entity_change(captured).await.unwrap();
        assert_eq!(again, out);
        assert_eq!(
            form.registry().stats().lookups,
            2,
            "only the absent ids again"
        );
    }

    #[tokio::test]
    async fn a_delete_is_existence_false_and_nothing_else() {
        let mut form = form(&[]);
        let out = form
            .entity_change(change("dashboards", None, &["$exists"]))
            .await
            .unwrap();
        assert_eq!(out.fields.len(), 1);
        assert!(out.fields[0].path.is_existence());
        assert_eq!(out.fields[0].value, json!(false));
    }

    #[tokio::test]
    async fn a_stamped_value_that_is_not_in_the_row_is_an_error_never_a_blank() {
        let mut form = form(&[]);
        let toast = Column {
            value: ColumnValue::UnchangedToast,
            ..col("position_json", TEXT, None)
        };
        let cases = [
            change("dashboards", Some(vec![toast]), &["position_json"]),
            change("dashboards", Some(vec![]), &["css"]),
            change("dashboards", None, &["$exists", "css"]),
        ];
        for (captured, why) in cases.into_iter().zip(["TOAST", "no such column", "delete"]) {
            let error = form.entity_change(captured).await.unwrap_err();
            assert!(
                matches!(&error, Error::StampedValueMissing { why: w, .. } if w.contains(why)),
                "{error}"
            );
            assert_eq!(error.action(), crate::Action::Fatal);
            assert!(error.hint().contains("TOAST"));
        }
        // Unchanged TOAST in a column that was not stamped is fine: it is simply not sent.
        let toast = Column {
            value: ColumnValue::UnchangedToast,
            ..col("position_json", TEXT, None)
        };
        let title = col("dashboard_title", VARCHAR, Some("New"));
        let out = form
            .entity_change(change(
                "dashboards",
                Some(vec![toast, title]),
                &["dashboard_title"],
            ))
            .await
            .unwrap();
        assert_eq!(out.fields.len(), 1);
    }

    #[tokio::test]
    async fn local_columns_never_leave_even_when_stamped() {
        let mut form = form(&[]);
        let row = vec![
            col("id", oid::INT4, Some("4")),
            col("database_name", VARCHAR, Some("examples")),
            col(
                "sqlalchemy_uri",
                VARCHAR,
                Some("postgresql://u:SECRET@h/db"),
            ),
            col("password", BYTEA, Some("\\x534543524554")),
            col("encrypted_extra", BYTEA, None),
            col("server_cert", BYTEA, None),
            col("cache_timeout", oid::INT4, Some("4")),
        ];
        let fields = [
            "database_name",
            "sqlalchemy_uri",
            "password",
            "encrypted_extra",
            "server_cert",
            "cache_timeout",
        ];
        let out = form
            .entity_change(change("dbs", Some(row), &fields))
            .await
            .unwrap();
        let paths: Vec<&str> = out.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["cache_timeout", "database_name"]);
        assert_eq!(value(&out, "cache_timeout"), &json!(4), "a genuine number");
        assert_eq!(form.stats().dropped_unversioned, 4);
    }

    #[tokio::test]
    async fn polymorphic_references_follow_their_discriminator() {
        let mut form = form(&[("tag", 2), ("dashboards", 5), ("slices", 5)]);
        let row = |kind: Option<&str>, id: &str| {
            vec![
                col("id", oid::INT4, Some("1")),
                col("tag_id", oid::INT4, Some("2")),
                col("object_id", oid::INT4, Some(id)),
                col("object_type", VARCHAR, kind),
            ]
        };
        let fields = ["tag_id", "object_id", "object_type"];
        let out = form
            .entity_change(change(
                "tagged_object",
                Some(row(Some("dashboard"), "5")),
                &fields,
            ))
            .await
            .unwrap();
        assert_eq!(value(&out, "tag_id"), &json!(uuid("tag", 2).to_string()));
        assert_eq!(
            value(&out, "object_id"),
            &json!(uuid("dashboards", 5).to_string())
        );
        assert_eq!(value(&out, "object_type"), &json!("dashboard"));
        let out = form
            .entity_change(change(
                "tagged_object",
                Some(row(Some("chart"), "5")),
                &fields,
            ))
            .await
            .unwrap();
        assert_eq!(
            value(&out, "object_id"),
            &json!(uuid("slices", 5).to_string())
        );
        let out = form
            .entity_change(change(
                "tagged_object",
                Some(row(Some("query"), "5")),
                &fields,
            ))
            .await
            .unwrap();
        assert_eq!(
            value(&out, "object_id"),
            &json!("dangling:us:saved_query:5"),
            "a registered table without that row"
        );
        let out = form
            .entity_change(change(
                "tagged_object",
                Some(row(Some("widget"), "5")),
                &fields,
            ))
            .await
            .unwrap();
        assert_eq!(
            value(&out, "object_id"),
            &json!("dangling:us:object_type=widget:5")
        );
        let out = form
            .entity_change(change("tagged_object", Some(row(None, "5")), &fields))
            .await
            .unwrap();
        assert_eq!(
            value(&out, "object_id"),
            &json!("dangling:us:object_type=?:5")
        );
        let bad = form
            .entity_change(change(
                "tagged_object",
                Some(row(Some("chart"), "x")),
                &fields,
            ))
            .await
            .unwrap_err();
        assert!(matches!(bad, Error::CanonicalValue { .. }), "{bad}");
    }

    #[tokio::test]
    async fn tag_names_hold_user_uuids_instead_of_user_ids() {
        let mut form = form(&[("ab_user", 1)]);
        for (name, want) in [
            ("owner:1", format!("owner:{}", uuid("ab_user", 1))),
            (
                "favorited_by:1",
                format!("favorited_by:{}", uuid("ab_user", 1)),
            ),
            ("owner:2", "owner:dangling:us:ab_user:2".to_owned()),
            ("type:dashboard", "type:dashboard".to_owned()),
            ("owner:", "owner:".to_owned()),
            ("owner:1x", "owner:1x".to_owned()),
            ("sales", "sales".to_owned()),
        ] {
            let row = vec![
                col("name", VARCHAR, Some(name)),
                col("type", VARCHAR, Some("owner")),
            ];
            let out = form
                .entity_change(change("tag", Some(row), &["name"]))
                .await
                .unwrap();
            assert_eq!(value(&out, "name"), &json!(want), "{name}");
        }
    }

    #[tokio::test]
    async fn chart_json_is_translated_and_annotation_layers_never_query_the_registry() {
        let mut form = form(&[("tables", 7), ("slices", 8)]);
        let params = r#"{"datasource": "7__table", "slice_id": 8, "deck_slices": [8, 9],
            "annotation_layers": [{"sourceType": "NATIVE", "value": 4},
                                  {"sourceType": "line", "value": 8}], "row_limit": 7}"#;
        let context = r#"{"datasource": {"id": 7, "type": "table"},
            "queries": [{"datasource": {"id": 7}}], "form_data": {"datasource": "7__table"}}"#;
        let row = vec![
            col("params", TEXT, Some(params)),
            col("query_context", TEXT, Some(context)),
            col("datasource_id", oid::INT4, Some("7")),
            col("datasource_type", VARCHAR, Some("table")),
            col("perm", VARCHAR, Some("[examples].[sales](id:7)")),
        ];
        let fields = [
            "params",
            "query_context",
            "datasource_id",
            "datasource_type",
            "perm",
        ];
        let out = form
            .entity_change(change("slices", Some(row), &fields))
            .await
            .unwrap();
        let (t7, c8) = (uuid("tables", 7).to_string(), uuid("slices", 8).to_string());
        let params: Value = serde_json::from_str(value(&out, "params").as_str().unwrap()).unwrap();
        assert_eq!(params["datasource"], json!(format!("{t7}__table")));
        assert_eq!(params["slice_id"], json!(c8));
        assert_eq!(params["deck_slices"], json!([c8, "dangling:us:slices:9"]));
        assert_eq!(
            params["annotation_layers"][0]["value"],
            json!("dangling:us:annotation_layer:4")
        );
        assert_eq!(params["annotation_layers"][1]["value"], json!(c8));
        assert_eq!(params["row_limit"], json!(7));
        let context: Value =
            serde_json::from_str(value(&out, "query_context").as_str().unwrap()).unwrap();
        assert_eq!(context["datasource"]["id"], json!(t7));
        assert_eq!(context["queries"][0]["datasource"]["id"], json!(t7));
        assert_eq!(
            context["form_data"]["datasource"],
            json!(format!("{t7}__table"))
        );
        assert_eq!(value(&out, "datasource_id"), &json!(t7));
        assert!(out.fields.iter().all(|f| f.path.as_str() != "perm"));
        let asked = form.registry().lookup().asked.lock().unwrap().clone();
        assert!(
            asked.iter().flatten().all(|(t, _)| t != "annotation_layer"),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn json_text_that_is_not_json_is_kept_as_it_is() {
        let mut form = form(&[]);
        for text in ["{not json", "", "null"] {
            let row = vec![col("json_metadata", TEXT, Some(text))];
            let out = form
                .entity_change(change("dashboards", Some(row), &["json_metadata"]))
                .await
                .unwrap();
            assert_eq!(value(&out, "json_metadata"), &json!(text));
        }
        let row = vec![col("json_metadata", TEXT, None)];
        let out = form
            .entity_change(change("dashboards", Some(row), &["json_metadata"]))
            .await
            .unwrap();
        assert_eq!(value(&out, "json_metadata"), &Value::Null);
    }

    #[tokio::test]
    async fn native_json_columns_are_values() {
        let mut form = form(&[]);
        let folders = r#"[{"uuid": "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f", "children": []}]"#;
        let row = vec![col("folders", oid::JSON, Some(folders))];
        let out = form
            .entity_change(change("tables", Some(row), &["folders"]))
            .await
            .unwrap();
        assert_eq!(
            value(&out, "folders"),
            &json!([{"children": [], "uuid": "5b0f1c6e-8d2a-4b7e-9c3d-1a2b3c4d5e6f"}])
        );
    }

    #[test]
    fn the_reader_can_run_canonical_form_on_any_task() {
        fn send<T: Send>(_: T) {}
        fn entity_change(form: &mut CanonicalForm<PgRegistry>, change: CapturedChange) {
            send(form.entity_change(change));
        }
        // Compiles only if the future is `Send` (nothing to run).
        let _ = entity_change;
    }

    #[tokio::test]
    async fn a_change_of_a_table_that_is_not_replicated_is_refused() {
        let mut form = form(&[]);
        for table in ["logs", "ab_user", "no_such_table"] {
            let error = form
                .entity_change(change(table, Some(vec![]), &["$exists"]))
                .await
                .unwrap_err();
            assert!(matches!(error, Error::NotReplicated { .. }), "{error}");
            assert_eq!(error.action(), crate::Action::Operator);
        }
    }
}

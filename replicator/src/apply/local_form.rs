//! Local form: one canonical write in this region's terms, the inverse of
//! [`canonical_form`](crate::capture::canonical_form) (DESIGN §2 step 4, §4).
//!
//! **Contract.** [`LocalForm::column_values`] turns the fields of one canonical
//! [`EntityChange`](envelope::EntityChange) of a replicated table into the values the applier
//! binds into SQL, one [`LocalValue`] per column, or says why it cannot yet or cannot ever:
//!
//! - [`Translated::Ready`]: every column's value, plus [`Note`]s for what was adapted (a dangling
//!   reference or an absent user written as NULL, a local column dropped);
//! - [`Translated::Missing`]: the `(table, uuid)`s the write references that this region does not
//!   know yet. The applier parks the whole source transaction until they arrive (DESIGN §2 step 4);
//! - [`Translated::Skip`]: the row cannot exist in this region whatever arrives later (a dangling
//!   reference or an absent user in a column that names the row or cannot be NULL). The applier
//!   logs and counts it, and does not write the row.
//!
//! A [`Skip`] outranks a missing uuid (waiting for it would not help), and a missing uuid outranks
//! notes. A value that cannot be local at all (a number in an integer column that does not fit, a
//! local id where only uuids belong, a column this database lacks) is an error,
//! [`Error::LocalValue`]: the applier quarantines the record.
//!
//! **The round trip.** For every value canonical form produces, writing the local value here and
//! capturing it again gives back **exactly** the canonical value (canonical → local → canonical is
//! the identity): that is what makes every region converge byte for byte. The exceptions are the
//! adaptations a [`Note`] reports (a NULL for a reference that names nothing here).
//!
//! *Fields.* `$exists` is not a column: it is left to the applier (see [`existence`]). The local
//! id, the identity column and every column the policy names local are never written from another
//! region, even if a (broken) change carries them: they are dropped with a
//! [`Note::LocalColumnDropped`]. A field path that is not a column name (the finer paths of DESIGN
//! §3 are not produced yet) is an error.
//!
//! *Values*, by the column's type oid in this database ([`ColumnTypes`], read from `pg_attribute`
//! at startup: the same oids pgoutput reports, so the rules below mirror canonical form's
//! table row by row). Each [`LocalValue`] has a PostgreSQL input text ([`LocalValue::pg_text`])
//! which is exactly what PostgreSQL prints back in a UTC session, so capture reads what it wrote:
//!
//! | type | canonical value | local value |
//! |---|---|---|
//! | any | `null` | [`LocalValue::Null`] |
//! | `int2`, `int4`, `int8` | number | [`LocalValue::Int`] (range-checked) |
//! | `bool` | `true`/`false` | [`LocalValue::Bool`] (`t`/`f`) |
//! | `float4`, `float8` | number, or `"NaN"`, `"Infinity"`, `"-Infinity"` | [`LocalValue::Float`] |
//! | `json`, `jsonb` | any JSON | [`LocalValue::Json`] |
//! | `timestamptz` | `"2024-05-01T10:00:00.5Z"` (or `infinity`) | [`LocalValue::Text`] `2024-05-01 10:00:00.5+00` (` BC` for years ≤ 0) |
//! | `numeric`, `text`, `varchar`, `uuid`, `date`, `timestamp`, `bytea`, anything else | string | [`LocalValue::Text`], as is |
//!
//! A native `json` column whose text serde_json could not read (nesting deeper than 128, a number
//! beyond f64) was published as a JSON string holding the text; it comes back as a JSON *string*,
//! not as the text (the two cannot be told apart). No replicated column holds such JSON.
//!
//! *References* (policy [`Reference`]): the uuid becomes this region's local id of the row
//! registered under it (`replicator.registry`, uuid → the newest local id, through a
//! [`UuidLookup`]). A polymorphic reference looks in the table its discriminator names when the
//! discriminator is part of the write, and in each of its target tables otherwise (uuids are
//! unique). When the uuid is not registered here:
//!
//! - the target is replicated (a dataset, a chart, …): it has not arrived yet, so the write is
//!   [`Translated::Missing`] it;
//! - the target is a user or a role (registry-only tables: never replicated, each region has its
//!   own; a user exists in a region only once created or logged in there): waiting could take
//!   forever, so a nullable column that does not name the row (`created_by_fk`, `changed_by_fk`,
//!   `last_saved_by_fk`, `saved_query.user_id`) is written NULL with a [`Note::AbsentNulled`], and
//!   an ownership row (`dashboard_user`, `slice_user`, `sqlatable_user`, `dashboard_roles`,
//!   `rls_filter_roles`: the user or role is part of the row's identity) is
//!   [`Translated::Skip`]ped: this region has no such owner to record.
//!
//! A `dangling:…` token names no row in any region (canonical form emits it for an id that was
//! never registered): an integer column cannot hold it and nothing will ever arrive for it. A
//! nullable column that does not name the row is written NULL with a [`Note::DanglingNulled`]; a
//! NOT NULL column or one that names the row (`dashboard_slices.slice_id`) makes the row a
//! [`Translated::Skip`].
//!
//! *Embedded ids* (policy [`Embedded`]):
//!
//! - JSON stored as text: the canonical value is a JSON string holding the translated JSON. It is
//!   parsed and walked by the `canonical` crate's walkers (the same ones canonical form uses) with
//!   the reverse map: [`EmbeddedId::Uuid`] → [`EmbeddedId::Local`] (the newest local id, which
//!   may be a deleted chart's: Superset keeps those ids in dashboards, and canonical form
//!   translates them back to the same uuid); [`EmbeddedId::Dangling`] stays as it is; a uuid not
//!   registered here is collected into [`Translated::Missing`]. Like canonical form, each column
//!   is walked twice (collect, then resolve all uuids of the change in one round trip, then
//!   translate), because the walkers take a synchronous [`canonical::Translate`]. The result is
//!   serialised compactly with sorted keys. Text that is not JSON stays as it is (canonical form
//!   kept it so). A local id (a number in an id slot), or a uuid of a table whose rows are never
//!   registered (`annotation_layer`: canonical form makes those ids dangling), is an error:
//!   canonical form never publishes one.
//! - `<prefix>:<uuid>` text (tag names `owner:<user uuid>`, `favorited_by:<user uuid>`):
//!   `<prefix>:<local user id>`. For a user absent here the canonical text is kept
//!   (`owner:<uuid>`, with a [`Note::AbsentKept`]): it round-trips exactly, and names no user
//!   here, as the tag would if the user had been deleted. Other names stay.
//! - Native `json` columns (`tables.folders`) only hold uuids: values like any `json` column.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use canonical::{EmbeddedId, JsonColumn, RefKind, DANGLING_PREFIX};
use conflict::RegionId;
use envelope::FieldWrite;
use pgoutput::Oid;
use serde_json::Value;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::policy::{
    self, Embedded, EmbeddedFormat, IdForm, Identity, Policy, Reference, TablePolicy, Treatment,
};

/// Type oids of the built-in types local form tells apart (the same as canonical form's).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const TIMESTAMPTZ: u32 = 1184;
    pub(super) const JSONB: u32 = 3802;
}

/// A column value in this region's terms, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalValue {
    Null,
    Int(i64),
    Bool(bool),
    Float(f64),
    Text(String),
    Json(Value),
}

impl LocalValue {
    /// PostgreSQL's input text for the value (`None` for NULL), to bind as `$n::text::<type>`:
    /// exactly what PostgreSQL prints back for it in a UTC session.
    pub fn pg_text(&self) -> Option<String> {
        match self {
            LocalValue::Null => None,
            LocalValue::Int(n) => Some(n.to_string()),
            LocalValue::Bool(b) => Some(if *b { "t" } else { "f" }.to_owned()),
            LocalValue::Float(f) if f.is_nan() => Some("NaN".to_owned()),
            LocalValue::Float(f) if f.is_infinite() => Some(
                if f.is_sign_positive() {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_owned(),
            ),
            // Debug prints the shortest text that parses back to the same f64.
            LocalValue::Float(f) => Some(format!("{f:?}")),
            LocalValue::Text(text) => Some(text.clone()),
            LocalValue::Json(json) => Some(json.to_string()),
        }
    }
}

/// The outcome of [`LocalForm::column_values`] (module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Translated {
    /// Every column of the write, in field order, and what was adapted.
    Ready {
        columns: Vec<(String, LocalValue)>,
        notes: Vec<Note>,
    },
    /// The uuids the write references that this region does not know yet, sorted, each once.
    Missing(Vec<(&'static str, Uuid)>),
    /// Why the row cannot exist in this region.
    Skip(Vec<Skip>),
}

/// Something [`LocalForm`] adapted in a write it could apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A nullable reference held a dangling token: written NULL.
    DanglingNulled { column: String, token: String },
    /// A nullable reference named a user or role this region does not have: written NULL.
    AbsentNulled {
        column: String,
        table: &'static str,
        uuid: Uuid,
    },
    /// A `<prefix>:<uuid>` text named a user this region does not have: kept as it is.
    AbsentKept {
        column: String,
        table: &'static str,
        uuid: Uuid,
    },
    /// A local, local-id or identity column was in the change: not written.
    LocalColumnDropped { column: String },
}

/// Why a row cannot exist in this region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A dangling token in a column that names the row or cannot be NULL.
    Dangling { column: String, token: String },
    /// A user or role absent here, in a column that names the row or cannot be NULL.
    Absent {
        column: String,
        table: &'static str,
        uuid: Uuid,
    },
}

/// Counters of one local form's life, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Writes answered [`Translated::Ready`].
    pub ready: u64,
    /// Writes answered [`Translated::Missing`].
    pub missing: u64,
    /// Writes answered [`Translated::Skip`].
    pub skipped: u64,
    /// Round trips to the registry.
    pub lookups: u64,
}

/// `replicator.registry` read backwards: uuid → local id.
pub trait UuidLookup {
    /// The newest local id registered under each of `keys` `(table, uuid)` that has one, as
    /// `(table, uuid, local id)`; keys with no entry are left out of the answer.
    fn local_ids(
        &self,
        keys: &[(&str, Uuid)],
    ) -> impl Future<Output = Result<Vec<(String, Uuid, i64)>>> + Send;
}

/// [`UuidLookup`] through a normal connection to this region's database.
pub struct PgUuidRegistry {
    client: Client,
    statement: tokio::sync::OnceCell<Statement>,
}

/// Uses the index `(table_name, uuid, local_id)`. Ids come from sequences and are never reused,
/// so the newest id is the greatest (the table's comment: uuid → id takes the newest id).
pub(crate) const LOCAL_IDS_SQL: &str =
    "SELECT DISTINCT ON (k.table_name, k.uuid) k.table_name, k.uuid, r.local_id \
     FROM unnest($1::text[], $2::uuid[]) AS k (table_name, uuid) \
     JOIN replicator.registry AS r USING (table_name, uuid) \
     ORDER BY k.table_name, k.uuid, r.local_id DESC";

impl PgUuidRegistry {
    pub fn new(client: Client) -> Self {
        PgUuidRegistry {
            client,
            statement: tokio::sync::OnceCell::new(),
        }
    }
}

impl fmt::Debug for PgUuidRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUuidRegistry").finish_non_exhaustive()
    }
}

impl UuidLookup for PgUuidRegistry {
    async fn local_ids(&self, keys: &[(&str, Uuid)]) -> Result<Vec<(String, Uuid, i64)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let statement = self
            .statement
            .get_or_try_init(|| self.client.prepare(LOCAL_IDS_SQL))
            .await
            .map_err(Error::pg("prepare the registry's uuid lookup"))?;
        query_local_ids(&self.client, statement, keys).await
    }
}

/// Runs the registry's uuid → newest local id lookup ([`LOCAL_IDS_SQL`], as text or prepared) on
/// `client` for `keys`.
pub(crate) async fn query_local_ids<C, T>(
    client: &C,
    statement: &T,
    keys: &[(&str, Uuid)],
) -> Result<Vec<(String, Uuid, i64)>>
where
    C: tokio_postgres::GenericClient,
    T: tokio_postgres::ToStatement + ?Sized + Sync + Send,
{
    let tables: Vec<&str> = keys.iter().map(|(table, _)| *table).collect();
    let uuids: Vec<Uuid> = keys.iter().map(|(_, uuid)| *uuid).collect();
    let rows = client
        .query(statement, &[&tables, &uuids])
        .await
        .map_err(Error::pg("look up uuids in replicator.registry"))?;
    rows.iter()
        .map(|row| {
            let read = || Error::pg("read a registry row");
            Ok((
                row.try_get(0).map_err(read())?,
                row.try_get(1).map_err(read())?,
                row.try_get(2).map_err(read())?,
            ))
        })
        .collect()
}

/// One column of this database: its type and whether it may be NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    pub type_oid: Oid,
    pub not_null: bool,
}

/// The columns of the replicated tables in this database, `table → column → type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnTypes {
    /// Shared: every source transaction's [`LocalForm`] holds a copy.
    tables: std::sync::Arc<BTreeMap<String, BTreeMap<String, ColumnType>>>,
    /// Each column's type as `format_type` prints it, for casts in the applier's SQL.
    sql_types: std::sync::Arc<BTreeMap<String, BTreeMap<String, String>>>,
}

impl ColumnTypes {
    /// Every column of `policy`'s replicated tables, from `pg_attribute` (schema `public`).
    pub async fn load(client: &Client, policy: &Policy) -> Result<Self> {
        let tables: Vec<&str> = policy.replicated().map(|(table, _)| table).collect();
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, a.atttypid, a.attnotnull,
                        format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute AS a
                 JOIN pg_class AS c ON c.oid = a.attrelid
                 JOIN pg_namespace AS n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relname = ANY($1::text[])
                   AND a.attnum > 0 AND NOT a.attisdropped",
                &[&tables],
            )
            .await
            .map_err(Error::pg("read the replicated tables' column types"))?;
        let mut types = ColumnTypes::default();
        for row in rows {
            let read = || Error::pg("read a column type");
            let table: String = row.try_get(0).map_err(read())?;
            let column: String = row.try_get(1).map_err(read())?;
            let type_oid: u32 = row.try_get(2).map_err(read())?;
            let not_null: bool = row.try_get(3).map_err(read())?;
            let sql_type: String = row.try_get(4).map_err(read())?;
            std::sync::Arc::make_mut(&mut types.sql_types)
                .entry(table.clone())
                .or_default()
                .insert(column.clone(), sql_type);
            types.insert(
                &table,
                &column,
                ColumnType {
                    type_oid: Oid(type_oid),
                    not_null,
                },
            );
        }
        Ok(types)
    }

    pub fn insert(&mut self, table: &str, column: &str, column_type: ColumnType) {
        std::sync::Arc::make_mut(&mut self.tables)
            .entry(table.to_owned())
            .or_default()
            .insert(column.to_owned(), column_type);
    }

    pub fn get(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.tables.get(table)?.get(column).copied()
    }

    /// The column's type as `format_type` prints it (read by [`ColumnTypes::load`] only).
    pub fn sql_type(&self, table: &str, column: &str) -> Option<&str> {
        self.sql_types.get(table)?.get(column).map(String::as_str)
    }
}

/// Whether a canonical write says the entity exists (`$exists`), when it says so.
pub fn existence(fields: &[FieldWrite]) -> Option<bool> {
    fields
        .iter()
        .find(|f| f.path.is_existence())
        .and_then(|f| f.value.as_bool())
}

/// Turns canonical writes into this region's column values (see the module docs).
pub struct LocalForm<L = PgUuidRegistry> {
    policy: &'static Policy,
    region: RegionId,
    registry: L,
    types: ColumnTypes,
    stats: LocalStats,
}

impl<L> fmt::Debug for LocalForm<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalForm")
            .field("region", &self.region)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A field's local value, except for the uuids it still has to look up.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Ready(LocalValue),
    /// A reference to `uuid` in one of `targets`.
    Reference {
        targets: Vec<&'static str>,
        uuid: Uuid,
        /// The column names the row or cannot be NULL.
        required: bool,
    },
    /// Canonical JSON text to walk again with the resolved ids.
    Embedded {
        walker: JsonColumn,
        json: Value,
    },
    /// `<prefix>:<uuid>` of a row of `target`; `text` is the canonical text.
    Prefixed {
        prefix: &'static str,
        target: &'static str,
        uuid: Uuid,
        text: String,
    },
}

impl<L: UuidLookup> LocalForm<L> {
    /// Local form in `region` under Superset 6.1's policy, with this database's column types.
    pub fn new(region: RegionId, registry: L, types: ColumnTypes) -> Self {
        LocalForm::with_policy(policy::superset(), region, registry, types)
    }

    pub fn with_policy(
        policy: &'static Policy,
        region: RegionId,
        registry: L,
        types: ColumnTypes,
    ) -> Self {
        LocalForm {
            policy,
            region,
            registry,
            types,
            stats: LocalStats::default(),
        }
    }

    pub fn stats(&self) -> LocalStats {
        self.stats
    }

    pub fn registry(&self) -> &L {
        &self.registry
    }

    /// The local form of one canonical write of `table` (module docs).
    pub async fn column_values(
        &mut self,
        table: &str,
        fields: &[FieldWrite],
    ) -> Result<Translated> {
        let (table, policy) = self.table(table)?;
        let unversioned = policy.unversioned_columns();
        let identity_parts: &[&str] = match policy.identity {
            Identity::Derived { parts } => parts,
            _ => &[],
        };
        let mut notes = Vec::new();
        let mut pending: Vec<(String, Pending)> = Vec::with_capacity(fields.len());
        for field in fields {
            if field.path.is_existence() {
                continue;
            }
            let column = field.path.as_str();
            if unversioned.contains(&column) {
                tracing::warn!(
                    table,
                    column,
                    region = %self.region,
                    "a change carries a local or identity column; it is not written"
                );
                notes.push(Note::LocalColumnDropped {
                    column: column.to_owned(),
                });
                continue;
            }
            let bad = |reason: String| Error::LocalValue {
                table: table.to_owned(),
                field: column.to_owned(),
                reason,
            };
            let column_type = self.types.get(table, column).ok_or_else(|| {
                bad("this database has no such column (a field path that is not a column, or schema drift)".to_owned())
            })?;
            let value = prepare(
                table,
                policy,
                fields,
                column,
                column_type,
                identity_parts.contains(&column),
                &field.value,
            )
            .map_err(bad)?;
            pending.push((column.to_owned(), value));
        }

        let keys = self.keys(&pending);
        let resolved = self.resolve(&keys).await?;

        let mut missing = BTreeSet::new();
        let mut skips = Vec::new();
        let mut columns = Vec::with_capacity(pending.len());
        for (column, value) in pending {
            let bad = |reason: String| Error::LocalValue {
                table: table.to_owned(),
                field: column.clone(),
                reason,
            };
            let value = match value {
                Pending::Ready(value) => value,
                Pending::Reference {
                    targets,
                    uuid,
                    required,
                } => {
                    let found: Vec<i64> = targets
                        .iter()
                        .filter_map(|t| resolved.get(&(*t, uuid)).copied())
                        .collect();
                    match found.as_slice() {
                        [id] => LocalValue::Int(*id),
                        [] => match targets.iter().find(|t| !self.is_replicated(t)) {
                            Some(local_table) if required => {
                                skips.push(Skip::Absent {
                                    column: column.clone(),
                                    table: local_table,
                                    uuid,
                                });
                                LocalValue::Null
                            }
                            Some(local_table) => {
                                notes.push(Note::AbsentNulled {
                                    column: column.clone(),
                                    table: local_table,
                                    uuid,
                                });
                                LocalValue::Null
                            }
                            None => {
                                missing.extend(targets.iter().map(|t| (*t, uuid)));
                                LocalValue::Null
                            }
                        },
                        _ => {
                            return Err(bad(format!(
                                "uuid {uuid} is registered in more than one of {targets:?}"
                            )))
                        }
                    }
                }
                Pending::Prefixed {
                    prefix,
                    target,
                    uuid,
                    text,
                } => match resolved.get(&(target, uuid)) {
                    Some(id) => LocalValue::Text(format!("{prefix}:{id}")),
                    None if self.is_replicated(target) => {
                        missing.insert((target, uuid));
                        LocalValue::Null
                    }
                    None => {
                        notes.push(Note::AbsentKept {
                            column: column.clone(),
                            table: target,
                            uuid,
                        });
                        LocalValue::Text(text)
                    }
                },
                Pending::Embedded { walker, mut json } => {
                    let registered = self.policy;
                    let mut translate = |kind: RefKind,
                                         id: EmbeddedId|
                     -> canonical::Result<EmbeddedId> {
                        match id {
                            EmbeddedId::Uuid(uuid) => {
                                let table = kind.table();
                                if !registered.is_registered(table) {
                                    // Never published: canonical form makes their ids dangling.
                                    return Err(canonical::Error::Untranslatable {
                                            kind,
                                            id: uuid.to_string(),
                                            reason: format!("a uuid of `{table}`, whose rows have no registry entries"),
                                        });
                                }
                                match resolved.get(&(table, uuid)) {
                                    Some(local) => Ok(EmbeddedId::Local(*local)),
                                    None => {
                                        missing.insert((table, uuid));
                                        Ok(EmbeddedId::Uuid(uuid))
                                    }
                                }
                            }
                            EmbeddedId::Local(n) => Err(local_id_error(kind, n)),
                            dangling => Ok(dangling),
                        }
                    };
                    walker
                        .translate(&mut json, &mut translate)
                        .map_err(|e| bad(e.to_string()))?;
                    LocalValue::Text(canonical::sorted_json(&json))
                }
            };
            columns.push((column, value));
        }
        // Dangling references were written NULL by `prepare`: each is a note or a skip.
        let dangling = dangling_refs(table, policy, fields, identity_parts, &self.types);
        for (column, token, required) in dangling {
            if required {
                skips.push(Skip::Dangling { column, token });
            } else {
                notes.push(Note::DanglingNulled { column, token });
            }
        }

        if !skips.is_empty() {
            self.stats.skipped += 1;
            tracing::info!(table, region = %self.region, ?skips, "a replicated row cannot exist in this region; it is not written");
            return Ok(Translated::Skip(skips));
        }
        if !missing.is_empty() {
            self.stats.missing += 1;
            return Ok(Translated::Missing(missing.into_iter().collect()));
        }
        for note in &notes {
            tracing::warn!(table, region = %self.region, ?note, "a replicated value was adapted to this region");
        }
        self.stats.ready += 1;
        Ok(Translated::Ready { columns, notes })
    }

    /// Every `(table, uuid)` the pending values need, of tables the registry knows.
    fn keys(&self, pending: &[(String, Pending)]) -> BTreeSet<(&'static str, Uuid)> {
        let mut keys = BTreeSet::new();
        for (_, value) in pending {
            match value {
                Pending::Ready(_) => {}
                Pending::Reference { targets, uuid, .. } => {
                    keys.extend(targets.iter().map(|t| (*t, *uuid)));
                }
                Pending::Prefixed { target, uuid, .. } => {
                    keys.insert((*target, *uuid));
                }
                Pending::Embedded { walker, json } => {
                    let mut json = json.clone();
                    let mut collect =
                        |kind: RefKind, id: EmbeddedId| -> canonical::Result<EmbeddedId> {
                            if let EmbeddedId::Uuid(uuid) = &id {
                                keys.insert((kind.table(), *uuid));
                            }
                            Ok(id)
                        };
                    // The collecting translator never fails; a walk error shows in the second pass.
                    let _ = walker.translate(&mut json, &mut collect);
                }
            }
        }
        keys.retain(|(table, _)| self.policy.is_registered(table));
        keys
    }

    /// The local ids of `keys`, in one round trip.
    async fn resolve(
        &mut self,
        keys: &BTreeSet<(&'static str, Uuid)>,
    ) -> Result<BTreeMap<(&'static str, Uuid), i64>> {
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let asked: Vec<(&str, Uuid)> = keys.iter().map(|(t, u)| (*t, *u)).collect();
        self.stats.lookups += 1;
        let answer = self.registry.local_ids(&asked).await?;
        let mut resolved = BTreeMap::new();
        for (table, uuid, local_id) in answer {
            if let Some(&(asked_table, _)) = keys.iter().find(|(t, u)| *t == table && *u == uuid) {
                resolved.insert((asked_table, uuid), local_id);
            }
        }
        Ok(resolved)
    }

    /// Whether rows of `table` arrive through replication (else they are this region's own:
    /// users and roles).
    fn is_replicated(&self, table: &str) -> bool {
        matches!(
            self.policy.rule(table).map(|r| &r.treatment),
            Some(Treatment::Replicated(_))
        )
    }

    fn table(&self, table: &str) -> Result<(&'static str, &'static TablePolicy)> {
        self.policy
            .replicated_table(table)
            .ok_or_else(|| Error::NotReplicated {
                table: table.to_owned(),
            })
    }
}

fn local_id_error(kind: RefKind, n: i64) -> canonical::Error {
    canonical::Error::Untranslatable {
        kind,
        id: n.to_string(),
        reason: "a local id in canonical JSON (canonical form never publishes one)".to_owned(),
    }
}

/// The references of `fields` that hold dangling tokens: `(column, token, required)`.
fn dangling_refs(
    table: &str,
    policy: &TablePolicy,
    fields: &[FieldWrite],
    identity_parts: &[&str],
    types: &ColumnTypes,
) -> Vec<(String, String, bool)> {
    fields
        .iter()
        .filter_map(|field| {
            let column = field.path.as_str();
            policy.reference(column)?;
            let token = field.value.as_str()?;
            token.starts_with(DANGLING_PREFIX).then(|| {
                let not_null = types.get(table, column).is_some_and(|t| t.not_null);
                (
                    column.to_owned(),
                    token.to_owned(),
                    not_null || identity_parts.contains(&column),
                )
            })
        })
        .collect()
}

/// A field's value before registry lookups.
fn prepare(
    table: &'static str,
    policy: &TablePolicy,
    fields: &[FieldWrite],
    column: &str,
    column_type: ColumnType,
    identity_part: bool,
    value: &Value,
) -> std::result::Result<Pending, String> {
    if let Some(reference) = policy.reference(column) {
        let text = match value {
            Value::Null => return Ok(Pending::Ready(LocalValue::Null)),
            Value::String(text) => text,
            other => return Err(format!("a reference holds {other}, not a uuid")),
        };
        if text.starts_with(DANGLING_PREFIX) {
            // Settled after the lookups (a note or a skip): the column stays NULL.
            return Ok(Pending::Ready(LocalValue::Null));
        }
        let uuid = Uuid::try_parse(text)
            .map_err(|_| format!("a reference holds {text:?}, not a uuid or a dangling token"))?;
        let targets = match reference {
            Reference::Foreign { target, .. } => vec![*target],
            Reference::Polymorphic {
                discriminator,
                targets,
                ..
            } => {
                let kind = fields
                    .iter()
                    .find(|f| f.path.as_str() == *discriminator)
                    .map(|f| f.value.as_str());
                match kind {
                    // The discriminator is part of the write: its table only.
                    Some(kind) => match targets.iter().find(|(value, _)| Some(*value) == kind) {
                        Some((_, target)) => vec![*target],
                        None => {
                            return Err(format!(
                                "a uuid under discriminator `{discriminator}` = {kind:?}, which names no table"
                            ))
                        }
                    },
                    None => reference.targets(),
                }
            }
        };
        return Ok(Pending::Reference {
            targets,
            uuid,
            required: column_type.not_null || identity_part,
        });
    }
    if let Some(embedded) = policy.embedded.iter().find(|e| e.column == column) {
        return prepare_embedded(table, embedded, column_type, value);
    }
    local_scalar(column_type.type_oid, value).map(Pending::Ready)
}

fn prepare_embedded(
    table: &str,
    embedded: &Embedded,
    column_type: ColumnType,
    value: &Value,
) -> std::result::Result<Pending, String> {
    let has_local_ids = embedded.refs.iter().any(|r| r.form == IdForm::LocalId);
    match embedded.format {
        EmbeddedFormat::JsonText => {
            let walker = match JsonColumn::of(table, embedded.column) {
                Some(walker) => walker,
                None if has_local_ids => {
                    return Err(
                        "the policy says it embeds ids, but local form has no walker for it"
                            .to_owned(),
                    )
                }
                None => return local_scalar(column_type.type_oid, value).map(Pending::Ready),
            };
            let text = match value {
                Value::Null => return Ok(Pending::Ready(LocalValue::Null)),
                Value::String(text) => text,
                other => return Err(format!("JSON text expected, found {other}")),
            };
            match serde_json::from_str::<Value>(text) {
                Ok(json) => Ok(Pending::Embedded { walker, json }),
                // Canonical form kept text that is not JSON as it was.
                Err(_) => Ok(Pending::Ready(LocalValue::Text(text.clone()))),
            }
        }
        EmbeddedFormat::Json if has_local_ids => Err(
            "the policy says it embeds local ids, but local form has no walker for it".to_owned(),
        ),
        EmbeddedFormat::Json => local_scalar(column_type.type_oid, value).map(Pending::Ready),
        EmbeddedFormat::PrefixedId => {
            let text = match value {
                Value::Null => return Ok(Pending::Ready(LocalValue::Null)),
                Value::String(text) => text,
                other => return Err(format!("text expected, found {other}")),
            };
            for reference in embedded.refs {
                let Some(prefix) = reference.path.strip_suffix(":<id>") else {
                    continue;
                };
                let uuid = text
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(|rest| Uuid::try_parse(rest).ok())
                    // Only the form canonical form writes (hyphenated, lower case) round-trips.
                    .filter(|uuid| text.ends_with(&uuid.to_string()));
                if let Some(uuid) = uuid {
                    return Ok(Pending::Prefixed {
                        prefix,
                        target: reference.target,
                        uuid,
                        text: text.clone(),
                    });
                }
            }
            Ok(Pending::Ready(LocalValue::Text(text.clone())))
        }
    }
}

/// A plain column's local value, by its type (module docs).
fn local_scalar(type_oid: Oid, value: &Value) -> std::result::Result<LocalValue, String> {
    let Oid(type_oid) = type_oid;
    if value.is_null() {
        return Ok(LocalValue::Null);
    }
    let integer = |min: i64, max: i64| {
        value
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .map(LocalValue::Int)
            .ok_or_else(|| format!("{value} is not an integer this column can hold"))
    };
    match type_oid {
        oid::INT2 => integer(i16::MIN.into(), i16::MAX.into()),
        oid::INT4 => integer(i32::MIN.into(), i32::MAX.into()),
        oid::INT8 => integer(i64::MIN, i64::MAX),
        oid::BOOL => value
            .as_bool()
            .map(LocalValue::Bool)
            .ok_or_else(|| format!("{value} is not a boolean")),
        oid::FLOAT4 | oid::FLOAT8 => match value {
            Value::Number(n) => n
                .as_f64()
                .map(LocalValue::Float)
                .ok_or_else(|| format!("{value} is not a floating-point number")),
            Value::String(s) if s == "NaN" => Ok(LocalValue::Float(f64::NAN)),
            Value::String(s) if s == "Infinity" => Ok(LocalValue::Float(f64::INFINITY)),
            Value::String(s) if s == "-Infinity" => Ok(LocalValue::Float(f64::NEG_INFINITY)),
            other => Err(format!("{other} is not a floating-point number")),
        },
        oid::JSON | oid::JSONB => Ok(LocalValue::Json(value.clone())),
        oid::TIMESTAMPTZ => match value {
            Value::String(s) => pg_timestamptz(s)
                .map(LocalValue::Text)
                .ok_or_else(|| format!("{s:?} is not a canonical timestamptz (ISO-8601 in UTC)")),
            other => Err(format!("{other} is not a timestamptz")),
        },
        _ => match value {
            Value::String(s) => Ok(LocalValue::Text(s.clone())),
            other => Err(format!("{other} is not text")),
        },
    }
}

/// A canonical timestamptz (`2024-05-01T10:00:00.5Z`, `-0043-03-15T12:00:00Z`, `infinity`) as
/// PostgreSQL prints it in UTC with `DateStyle` ISO (`2024-05-01 10:00:00.5+00`,
/// `0044-03-15 12:00:00+00 BC`).
fn pg_timestamptz(text: &str) -> Option<String> {
    if text == "infinity" || text == "-infinity" {
        return Some(text.to_owned());
    }
    let body = text.strip_suffix('Z')?;
    let (date, time) = body.split_once('T')?;
    let (negative, date) = match date.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, date),
    };
    let mut parts = date.rsplitn(3, '-');
    let day = parts.next()?;
    let month = parts.next()?;
    let year_text = parts.next()?;
    if year_text.len() < 4
        || !year_text.bytes().all(|b| b.is_ascii_digit())
        || day.len() != 2
        || month.len() != 2
        || !day.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let year: i64 = year_text.parse().ok()?;
    let year = if negative { -year } else { year };
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let valid_clock = clock.len() == 8
        && clock.bytes().enumerate().all(|(i, b)| {
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    let valid_fraction = fraction.is_none_or(|f| {
        !f.is_empty() && !f.ends_with('0') && f.bytes().all(|b| b.is_ascii_digit())
    });
    if !valid_clock || !valid_fraction {
        return None;
    }
    let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
    Some(if year <= 0 {
        format!("{:04}-{month}-{day} {clock}{fraction}+00 BC", 1 - year)
    } else {
        format!("{year:04}-{month}-{day} {clock}{fraction}+00")
    })
}

#[cfg(test)]
#[path = "local_form_tests.rs"]
mod tests;

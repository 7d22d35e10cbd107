//! Versions: an entity's clock and field stamps as this region stores them
//! (`replicator.entity`, `replicator.field_version`), read before a merge and written after it.
//!
//! **Contract.** [`load`] locks the entity's row (`FOR UPDATE`) for the rest of the apply
//! transaction and returns its clock, existence, greatest hlc and the stamps of the fields asked
//! for (`$exists` always). [`save`] writes the merged clock, existence and greatest hlc, and the
//! stamps of the fields the merge replaced. Values are not stored here: they live in Superset's
//! row, which is what a region's reader publishes.
//!
//! **Why the greatest hlc is kept.** A later local write must carry an hlc above every hlc the
//! entity holds, whichever region wrote it (`replicator.stamp` takes `max_hlc + 1` at least), so
//! "later" never contradicts "caused by" (DESIGN §1). Saving takes the max of the stored value and
//! every incoming stamp.

use std::collections::BTreeMap;

use conflict::{Counter, Dot, FieldPath, Hlc, RegionId, VersionVector};
use serde_json::Value;
use tokio_postgres::{GenericClient, ToStatement};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A field's stored stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dot: Dot,
    pub hlc: Hlc,
}

/// What this region stores about one entity.
#[derive(Debug, Clone, Default)]
pub struct LocalVersions {
    /// Whether the entity has a `replicator.entity` row (alive or a tombstone).
    pub known: bool,
    pub clock: VersionVector,
    pub alive: bool,
    pub max_hlc: Option<Hlc>,
    /// Stamps by field; `$exists` included when stored.
    pub fields: BTreeMap<FieldPath, Stamp>,
    /// The newest local id registered for the entity (read with a known entity only).
    pub local_id: Option<i64>,
}

/// [`load`]'s statement (`$1` table, `$2` uuid, `$3` field names or NULL for all): the entity
/// row, locked, its field stamps, and the newest local id registered for it.
pub const LOAD_SQL: &str = "SELECT e.clock, e.alive, e.max_hlc,
                    (SELECT max(r.local_id) FROM replicator.registry AS r
                     WHERE r.table_name = $1 AND r.uuid = $2),
                    f.field, f.region, f.counter, f.hlc
             FROM replicator.entity AS e
             LEFT JOIN replicator.field_version AS f
               ON f.table_name = e.table_name AND f.uuid = e.uuid
              AND ($3::text[] IS NULL OR f.field = ANY($3::text[]))
             WHERE e.table_name = $1 AND e.uuid = $2
             FOR UPDATE OF e";

/// [`save`]'s statement. The stored clock is joined, not overwritten: a local write of a
/// brand-new entity (an association added here at the same moment) may have bumped it since it
/// was read.
pub const SAVE_SQL: &str = "WITH e AS (
                 INSERT INTO replicator.entity AS e (table_name, uuid, clock, max_hlc, alive)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (table_name, uuid) DO UPDATE SET
                     clock = (SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
                              FROM (SELECT k, max(v::bigint) AS n
                                    FROM (SELECT * FROM jsonb_each_text(e.clock)
                                          UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.clock))
                                         AS kv (k, v)
                                    GROUP BY k) AS joined),
                     max_hlc = greatest(e.max_hlc, EXCLUDED.max_hlc),
                     alive = EXCLUDED.alive
                 RETURNING 1)
             INSERT INTO replicator.field_version AS f (table_name, uuid, field, region, counter, hlc)
             SELECT $1, $2, w.field, w.region, w.counter, w.hlc
             FROM unnest($6::text[], $7::text[], $8::bigint[], $9::bigint[])
                  AS w (field, region, counter, hlc), e
             ON CONFLICT (table_name, uuid, field) DO UPDATE SET
                 region = EXCLUDED.region, counter = EXCLUDED.counter, hlc = EXCLUDED.hlc,
                 xid = NULL";

fn bad(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::StreamShape {
        problem: format!("replicator state: {what}: {detail}"),
    }
}

/// Loads (and locks) an entity's versions with `statement` ([`LOAD_SQL`], prepared or as text);
/// `fields` `None` loads every stored field. One round trip when prepared.
pub async fn load<T>(
    client: &impl GenericClient,
    statement: &T,
    table: &str,
    uuid: Uuid,
    fields: Option<&[String]>,
) -> Result<LocalVersions>
where
    T: ToStatement + ?Sized + Sync + Send,
{
    let names: Option<Vec<&str>> = fields.map(|fields| {
        let mut names: Vec<&str> = fields.iter().map(String::as_str).collect();
        names.push("$exists");
        names
    });
    let rows = client
        .query(statement, &[&table, &uuid, &names])
        .await
        .map_err(Error::pg("read an entity's versions"))?;
    let Some(first) = rows.first() else {
        return Ok(LocalVersions::default());
    };
    let clock: Value = first.try_get(0).map_err(Error::pg("read a clock"))?;
    let clock: VersionVector =
        serde_json::from_value(clock).map_err(|e| bad("an entity clock", e))?;
    let alive: bool = first.try_get(1).map_err(Error::pg("read alive"))?;
    let max_hlc: i64 = first.try_get(2).map_err(Error::pg("read max_hlc"))?;
    let max_hlc = Hlc::from_i64(max_hlc).map_err(|e| bad("max_hlc", e))?;
    let local_id: Option<i64> = first.try_get(3).map_err(Error::pg("read the local id"))?;
    let mut stamps = BTreeMap::new();
    for row in &rows {
        let read = || Error::pg("read a field stamp");
        let Some(field) = row.try_get::<_, Option<String>>(4).map_err(read())? else {
            continue;
        };
        let region: String = row.try_get(5).map_err(read())?;
        let counter: i64 = row.try_get(6).map_err(read())?;
        let hlc: i64 = row.try_get(7).map_err(read())?;
        let path = if field == "$exists" {
            FieldPath::existence()
        } else {
            FieldPath::new(&field).map_err(|e| bad("a field path", e))?
        };
        let region = RegionId::new(&region).map_err(|e| bad("a region", e))?;
        let counter = u64::try_from(counter).map_err(|e| bad("a counter", e))?;
        let hlc = Hlc::from_i64(hlc).map_err(|e| bad("an hlc", e))?;
        stamps.insert(
            path,
            Stamp {
                dot: Dot::new(region, Counter(counter)),
                hlc,
            },
        );
    }
    Ok(LocalVersions {
        known: true,
        clock,
        alive,
        max_hlc: Some(max_hlc),
        fields: stamps,
        local_id,
    })
}

/// Writes a merged entity with `statement` ([`SAVE_SQL`], prepared or as text): its clock,
/// existence, greatest hlc, and the stamps of `written`, for entity `(table, uuid)`.
pub async fn save<T>(
    client: &impl GenericClient,
    statement: &T,
    (table, uuid): (&str, Uuid),
    clock: &VersionVector,
    alive: bool,
    max_hlc: Hlc,
    written: &[(FieldPath, Stamp)],
) -> Result<()>
where
    T: ToStatement + ?Sized + Sync + Send,
{
    let clock = serde_json::to_value(clock).map_err(|e| bad("a clock", e))?;
    let max_hlc = max_hlc.to_i64().map_err(|e| bad("max_hlc", e))?;
    let mut fields = Vec::with_capacity(written.len());
    let mut regions = Vec::with_capacity(written.len());
    let mut counters = Vec::with_capacity(written.len());
    let mut hlcs = Vec::with_capacity(written.len());
    for (path, stamp) in written {
        fields.push(path.as_str());
        regions.push(stamp.dot.region.as_str());
        counters.push(i64::try_from(stamp.dot.counter.0).map_err(|e| bad("a counter", e))?);
        hlcs.push(stamp.hlc.to_i64().map_err(|e| bad("an hlc", e))?);
    }
    client
        .execute(
            statement,
            &[
                &table, &uuid, &clock, &max_hlc, &alive, &fields, &regions, &counters, &hlcs,
            ],
        )
        .await
        .map_err(Error::pg("write an entity's versions"))?;
    Ok(())
}

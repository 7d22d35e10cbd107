//! The reader's id↔uuid map: `(table, local id) → uuid`, for turning references into uuids.
//!
//! **Contract.** [`RegistryCache`] answers "which uuid is `table`'s row `local_id`?" the way
//! `replicator.registry` does, in bounded memory:
//!
//! - It is fed from the WAL: the reader calls [`RegistryCache::observe`] for every registry row
//!   it streams. A later entry for the same key replaces the earlier one.
//! - When a uuid moves to a new local id (`replicator.register` deletes the older key holding the
//!   uuid: a deleted entity came back under a new id), the cache learns the new key and **keeps
//!   the old one**: an id of a deleted row (Superset leaves them in dashboard JSON) must keep
//!   translating to the same uuid, never to something else.
//! - It holds at most `capacity` entries (default [`DEFAULT_CAPACITY`]), evicting with the CLOCK
//!   algorithm (an LRU approximation: each entry has a "used since the hand last passed" bit; the
//!   hand clears set bits and evicts the first entry whose bit is clear). Memory stays flat
//!   however many rows the region has.
//! - A miss is looked up in `replicator.registry` through a [`RegistryLookup`] (in production
//!   [`PgRegistry`], a normal connection the reader gives it), all misses of one change in one
//!   round trip ([`RegistryCache::resolve`]), and what is found is cached. A key found neither in
//!   the cache nor in the database is `None`; the caller decides what that means (canonical form
//!   emits a dangling token). Negative answers are **not** cached: nothing is stored for them, so
//!   memory is spent on real entries only, and an entry registered later is found then.
//!
//! **Why a database lookup on a miss is correct.** The capture triggers register a row in the
//! transaction that writes it, before the row itself is written, so a registry entry is committed
//! no later than any row that references it; the reader only sees committed transactions, hence
//! every entry a streamed row references is already in the database when the reader looks. And
//! entries are never deleted for a live id.
//!
//! **A uuid that comes back under a new id** (a deleted chart re-added) keeps its old id's entry
//! too: the registry never takes an entry back, so the database answers the old id exactly as the
//! WAL did, and a replay after a restart canonicalises the same stream to the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;

use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::error::{Error, Result};

/// How many entries a cache holds unless told otherwise (about 6 MB).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Where the cache looks up what it does not hold: `replicator.registry`, or a stand-in in tests.
pub trait RegistryLookup {
    /// The registered uuid of each of `keys` that has one, as `(table, local id, uuid)`; keys with
    /// no entry are left out of the answer.
    fn lookup(
        &self,
        keys: &[(&str, i64)],
    ) -> impl Future<Output = Result<Vec<(String, i64, Uuid)>>> + Send;
}

/// [`RegistryLookup`] through a normal (not replication) connection to the region's database.
pub struct PgRegistry {
    client: std::sync::Arc<Client>,
    statement: tokio::sync::OnceCell<Statement>,
}

/// One query for any number of keys, whatever their tables.
const LOOKUP_SQL: &str = "SELECT k.table_name, k.local_id, r.uuid \
     FROM unnest($1::text[], $2::bigint[]) AS k (table_name, local_id) \
     JOIN replicator.registry AS r USING (table_name, local_id)";

impl PgRegistry {
    pub fn new(client: Client) -> Self {
        PgRegistry::shared(std::sync::Arc::new(client))
    }

    /// A lookup on a connection shared with other work (the snapshot reads its registry inside
    /// its own repeatable-read transaction, on the connection that holds it).
    pub fn shared(client: std::sync::Arc<Client>) -> Self {
        PgRegistry {
            client,
            statement: tokio::sync::OnceCell::new(),
        }
    }
}

impl fmt::Debug for PgRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRegistry").finish_non_exhaustive()
    }
}

impl RegistryLookup for PgRegistry {
    async fn lookup(&self, keys: &[(&str, i64)]) -> Result<Vec<(String, i64, Uuid)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let statement = self
            .statement
            .get_or_try_init(|| self.client.prepare(LOOKUP_SQL))
            .await
            .map_err(Error::pg("prepare the registry lookup"))?;
        let tables: Vec<&str> = keys.iter().map(|(table, _)| *table).collect();
        let ids: Vec<i64> = keys.iter().map(|(_, id)| *id).collect();
        let rows = self
            .client
            .query(statement, &[&tables, &ids])
            .await
            .map_err(Error::pg("look up replicator.registry"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(Error::pg("read a registry row"))?,
                    row.try_get(1).map_err(Error::pg("read a registry row"))?,
                    row.try_get(2).map_err(Error::pg("read a registry row"))?,
                ))
            })
            .collect()
    }
}

/// Counters of one cache's life, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Keys answered from memory.
    pub hits: u64,
    /// Keys not in memory (each looked up in the database).
    pub misses: u64,
    /// Misses the database did not know either.
    pub absent: u64,
    /// Round trips to the database.
    pub lookups: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
}

/// A cache key: an interned table name and a local id.
type Key = (u16, i64);

#[derive(Debug)]
struct Slot {
    key: Key,
    uuid: Uuid,
    /// Used since the clock hand last passed.
    referenced: bool,
}

/// The bounded `(table, local id) → uuid` map of one reader (see the module docs).
pub struct RegistryCache<L = PgRegistry> {
    lookup: L,
    capacity: usize,
    /// Table names, interned: a key is 10 bytes, not a `String`.
    tables: HashMap<String, u16>,
    table_names: Vec<String>,
    index: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
    stats: RegistryStats,
}

impl<L> fmt::Debug for RegistryCache<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCache")
            .field("capacity", &self.capacity)
            .field("len", &self.slots.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RegistryCache<PgRegistry> {
    /// A cache of [`DEFAULT_CAPACITY`] entries over `replicator.registry` through `client`.
    pub fn postgres(client: Client) -> Self {
        RegistryCache::new(PgRegistry::new(client), DEFAULT_CAPACITY)
    }
}

impl<L: RegistryLookup> RegistryCache<L> {
    /// A cache of at most `capacity` entries (at least one) that asks `lookup` on a miss.
    pub fn new(lookup: L, capacity: usize) -> Self {
        RegistryCache {
            lookup,
            capacity: capacity.max(1),
            tables: HashMap::new(),
            table_names: Vec::new(),
            index: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
            stats: RegistryStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn stats(&self) -> RegistryStats {
        self.stats
    }

    /// What misses are looked up in.
    pub fn lookup(&self) -> &L {
        &self.lookup
    }

    /// The WAL carried the registry entry `table`'s `local_id` ↔ `uuid`: it replaces whatever the
    /// cache held for that key. An older key holding the same uuid is kept (module docs).
    pub fn observe(&mut self, table: &str, local_id: i64, uuid: Uuid) {
        let key = (self.intern(table), local_id);
        self.insert(key, uuid);
    }

    /// The uuid registered for `table`'s `local_id`, from memory or else from the database;
    /// `None` when neither knows it.
    pub async fn get(&mut self, table: &str, local_id: i64) -> Result<Option<Uuid>> {
        let mut keys = BTreeSet::new();
        keys.insert((table, local_id));
        Ok(self.resolve(&keys).await?.remove(&(table, local_id)))
    }

    /// The uuids of every key of `keys` that is registered; the misses are looked up in one
    /// round trip. Keys that are not registered are absent from the answer.
    pub async fn resolve<'k>(
        &mut self,
        keys: &BTreeSet<(&'k str, i64)>,
    ) -> Result<BTreeMap<(&'k str, i64), Uuid>> {
        let mut found = BTreeMap::new();
        let mut missing: Vec<(&'k str, i64)> = Vec::new();
        for &(table, local_id) in keys {
            match self.cached(table, local_id) {
                Some(uuid) => {
                    self.stats.hits += 1;
                    found.insert((table, local_id), uuid);
                }
                None => {
                    self.stats.misses += 1;
                    missing.push((table, local_id));
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        self.stats.lookups += 1;
        let answered = self.lookup.lookup(&missing).await?;
        for (table, local_id, uuid) in answered {
            // Only keys that were asked for: the answer names its table by value, take ours.
            if let Some(&(asked, _)) = missing
                .iter()
                .find(|(t, id)| *t == table.as_str() && *id == local_id)
            {
                let key = (self.intern(asked), local_id);
                self.insert(key, uuid);
                found.insert((asked, local_id), uuid);
            }
        }
        self.stats.absent += missing
            .iter()
            .filter(|key| !found.contains_key(*key))
            .count() as u64;
        Ok(found)
    }

    /// The cached uuid of a key, marking it used; `None` when not held (no lookup).
    fn cached(&mut self, table: &str, local_id: i64) -> Option<Uuid> {
        let table = *self.tables.get(table)?;
        let position = *self.index.get(&(table, local_id))?;
        let slot = self.slots.get_mut(position)?;
        slot.referenced = true;
        Some(slot.uuid)
    }

    fn intern(&mut self, table: &str) -> u16 {
        if let Some(id) = self.tables.get(table) {
            return *id;
        }
        // A policy has a few dozen tables; more than 65 536 names would be a bug upstream, and
        // sharing the last id then only makes such keys miss more (never answer wrongly: the
        // name is compared again in `table_name`).
        let id = u16::try_from(self.table_names.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.tables.insert(table.to_owned(), id);
            self.table_names.push(table.to_owned());
        }
        id
    }

    /// Stores `key → uuid`, replacing the key's entry or evicting one when full.
    fn insert(&mut self, key: Key, uuid: Uuid) {
        if key.0 == u16::MAX {
            return; // see `intern`: never cache what cannot be named exactly
        }
        if let Some(slot) = self
            .index
            .get(&key)
            .copied()
            .and_then(|position| self.slots.get_mut(position))
        {
            slot.uuid = uuid;
            slot.referenced = true;
            return;
        }
        let fresh = Slot {
            key,
            uuid,
            referenced: false,
        };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(fresh);
            return;
        }
        // CLOCK: clear set bits until an entry not used since the last pass comes under the hand.
        // Terminates within two sweeps: the first clears every bit.
        loop {
            let position = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let Some(slot) = self.slots.get_mut(position) else {
                return; // unreachable: the hand stays below `slots.len()`
            };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.index.remove(&slot.key);
            *slot = fresh;
            self.index.insert(key, position);
            self.stats.evictions += 1;
            return;
        }
    }

    /// The name of an interned table.
    #[cfg(test)]
    fn table_name(&self, id: u16) -> Option<&str> {
        self.table_names.get(usize::from(id)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A stand-in for `replicator.registry` that records what it was asked.
    #[derive(Default)]
    struct FakeRegistry {
        rows: Vec<(String, i64, Uuid)>,
        asked: Mutex<Vec<Vec<(String, i64)>>>,
    }

    impl FakeRegistry {
        fn with(rows: &[(&str, i64, Uuid)]) -> Self {
            FakeRegistry {
                rows: rows
                    .iter()
                    .map(|(t, id, u)| ((*t).to_owned(), *id, *u))
                    .collect(),
                asked: Mutex::default(),
            }
        }

        fn asked(&self) -> Vec<Vec<(String, i64)>> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl RegistryLookup for FakeRegistry {
        async fn lookup(&self, keys: &[(&str, i64)]) -> Result<Vec<(String, i64, Uuid)>> {
            self.asked
                .lock()
                .unwrap()
                .push(keys.iter().map(|(t, id)| ((*t).to_owned(), *id)).collect());
            Ok(self
                .rows
                .iter()
                .filter(|(t, id, _)| keys.contains(&(t.as_str(), *id)))
                .cloned()
                .collect())
        }
    }

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[tokio::test]
    async fn observed_entries_answer_without_the_database() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 10);
        cache.observe("slices", 1, u(1));
        cache.observe("tables", 1, u(2));
        assert_eq!(cache.get("slices", 1).await.unwrap(), Some(u(1)));
        assert_eq!(cache.get("tables", 1).await.unwrap(), Some(u(2)));
        assert!(cache.lookup.asked().is_empty());
        assert_eq!(cache.stats().hits, 2);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn a_later_entry_for_the_same_key_replaces_the_earlier() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 10);
        cache.observe("dashboard_user", 7, u(1));
        cache.observe("dashboard_user", 7, u(2));
        assert_eq!(cache.get("dashboard_user", 7).await.unwrap(), Some(u(2)));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn a_moved_uuid_keeps_translating_from_its_old_id() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 10);
        cache.observe("slices", 5, u(9));
        // The chart was deleted and came back as id 12: the registry moved the uuid.
        cache.observe("slices", 12, u(9));
        assert_eq!(cache.get("slices", 12).await.unwrap(), Some(u(9)));
        assert_eq!(cache.get("slices", 5).await.unwrap(), Some(u(9)));
    }

    #[tokio::test]
    async fn misses_are_looked_up_once_per_resolve_and_then_cached() {
        let registry = FakeRegistry::with(&[("slices", 3, u(3)), ("tables", 4, u(4))]);
        let mut cache = RegistryCache::new(registry, 10);
        cache.observe("slices", 1, u(1));
        let keys: BTreeSet<(&str, i64)> =
            [("slices", 1), ("slices", 3), ("tables", 4), ("tables", 99)]
                .into_iter()
                .collect();
        let found = cache.resolve(&keys).await.unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[&("tables", 4)], u(4));
        assert!(!found.contains_key(&("tables", 99)));
        assert_eq!(
            cache.lookup.asked(),
            vec![vec![
                ("slices".to_owned(), 3),
                ("tables".to_owned(), 4),
                ("tables".to_owned(), 99)
            ]],
            "only the misses, in one round trip"
        );
        // Found entries are cached; the absent one is asked again (never cached as absent).
        let again = cache.resolve(&keys).await.unwrap();
        assert_eq!(again, found);
        assert_eq!(
            cache.lookup.asked().last().unwrap(),
            &vec![("tables".to_owned(), 99)]
        );
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.absent, stats.lookups),
            (4, 4, 2, 2)
        );
    }

    #[tokio::test]
    async fn a_key_unknown_everywhere_is_none() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 10);
        assert_eq!(cache.get("annotation_layer", 1).await.unwrap(), None);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn eviction_keeps_memory_bounded_and_spares_recently_used_entries() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 3);
        cache.observe("slices", 1, u(1));
        cache.observe("slices", 2, u(2));
        cache.observe("slices", 3, u(3));
        // Use 1 and 3: 2 is the entry not used since it came in.
        assert_eq!(cache.get("slices", 1).await.unwrap(), Some(u(1)));
        assert_eq!(cache.get("slices", 3).await.unwrap(), Some(u(3)));
        cache.observe("slices", 4, u(4));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.stats().evictions, 1);
        let held: BTreeSet<i64> = cache.index.keys().map(|(_, id)| *id).collect();
        assert_eq!(held, [1, 3, 4].into_iter().collect());
        // An evicted entry is looked up again (and the fake does not know it).
        assert_eq!(cache.get("slices", 2).await.unwrap(), None);
        assert_eq!(cache.lookup.asked(), vec![vec![("slices".to_owned(), 2)]]);
    }

    #[tokio::test]
    async fn many_inserts_never_exceed_the_capacity() {
        let mut cache = RegistryCache::new(FakeRegistry::default(), 100);
        for id in 0..10_000 {
            cache.observe(
                if id % 2 == 0 { "slices" } else { "tables" },
                id,
                u(id as u128),
            );
            if id % 3 == 0 {
                let _ = cache.cached("slices", id / 2);
            }
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.index.len(), 100);
        assert_eq!(cache.stats().evictions, 10_000 - 100);
        // Every indexed key points at its own slot, and the freshest entry is there.
        for (key, position) in &cache.index {
            assert_eq!(&cache.slots[*position].key, key);
        }
        assert_eq!(cache.cached("tables", 9_999), Some(u(9_999)));
        assert_eq!(cache.table_name(0), Some("slices"));
    }

    #[test]
    fn capacity_is_at_least_one() {
        let cache = RegistryCache::new(FakeRegistry::default(), 0);
        assert_eq!(cache.capacity(), 1);
    }
}

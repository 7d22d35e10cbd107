//! The replicated state of one entity, and the writes a region makes to it.
//!
//! An [`EntityState`] is a clock plus one last-writer-wins register per field, plus the existence
//! register (alive/deleted) kept as its own typed field so the value type `V` need not encode a
//! boolean. The same type serves as a region's full state of an entity and as the *partial* state
//! a source transaction publishes (only the fields it changed, with the source's clock right after
//! it; see [`EntityState::transaction_delta`]).
//!
//! Writes here uphold the hlc invariant the merge relies on: a write's hlc must exceed every hlc
//! the entity holds ([`EntityState::max_hlc`]); otherwise the write is refused, not reordered.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::VersionVector;
use crate::dot::{Counter, Dot};
use crate::error::{Error, Result};
use crate::field::FieldPath;
use crate::hlc::Hlc;
use crate::region::RegionId;
use crate::register::FieldVersion;

/// One entity's clock, existence and field versions.
///
/// Invariants (checked by [`from_parts`](Self::from_parts), kept by every method): the clock
/// covers every version's dot; no dot has counter 0; the existence field is never among `fields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityState<V> {
    pub(crate) clock: VersionVector,
    pub(crate) exists: Option<FieldVersion<bool>>,
    pub(crate) fields: BTreeMap<FieldPath, FieldVersion<V>>,
}

impl<V> Default for EntityState<V> {
    fn default() -> Self {
        Self {
            clock: VersionVector::new(),
            exists: None,
            fields: BTreeMap::new(),
        }
    }
}

impl<V: Clone + Eq> EntityState<V> {
    /// An entity nobody has written.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state from stored or received parts, checking the invariants.
    pub fn from_parts(
        clock: VersionVector,
        exists: Option<FieldVersion<bool>>,
        fields: BTreeMap<FieldPath, FieldVersion<V>>,
    ) -> Result<Self> {
        let check = |field: &FieldPath, dot: &Dot| {
            if dot.counter == Counter::ZERO {
                Err(Error::ZeroDot(*dot))
            } else if !clock.covers(dot) {
                Err(Error::DotNotCovered {
                    field: field.clone(),
                    dot: *dot,
                })
            } else {
                Ok(())
            }
        };
        if let Some(version) = &exists {
            check(&FieldPath::existence(), &version.dot)?;
        }
        for (field, version) in &fields {
            if field.is_existence() {
                return Err(Error::ReservedField(field.clone()));
            }
            check(field, &version.dot)?;
        }
        Ok(Self {
            clock,
            exists,
            fields,
        })
    }

    /// The parts, for storage.
    pub fn into_parts(
        self,
    ) -> (
        VersionVector,
        Option<FieldVersion<bool>>,
        BTreeMap<FieldPath, FieldVersion<V>>,
    ) {
        (self.clock, self.exists, self.fields)
    }

    /// The entity clock.
    pub fn clock(&self) -> &VersionVector {
        &self.clock
    }

    /// The existence register (`None`: no insert or delete seen yet).
    pub fn existence(&self) -> Option<&FieldVersion<bool>> {
        self.exists.as_ref()
    }

    /// Every ordinary field's version, by path.
    pub fn fields(&self) -> &BTreeMap<FieldPath, FieldVersion<V>> {
        &self.fields
    }

    /// One field's version.
    pub fn field(&self, path: &FieldPath) -> Option<&FieldVersion<V>> {
        self.fields.get(path)
    }

    /// Whether the entity exists: its existence register says alive. An entity whose insert has
    /// not arrived yet (only later updates did) is not alive; its row must not be written.
    pub fn is_alive(&self) -> bool {
        self.exists.as_ref().is_some_and(|version| version.value)
    }

    /// The greatest hlc the entity holds ([`Hlc::ZERO`] when empty). A new write's hlc must be
    /// greater; a trigger computes it as `Hlc::next_after(max_hlc, now)`.
    pub fn max_hlc(&self) -> Hlc {
        let fields = self.fields.values().map(|version| version.hlc);
        fields
            .chain(self.exists.as_ref().map(|version| version.hlc))
            .max()
            .unwrap_or(Hlc::ZERO)
    }

    /// The hlc for a write made now: `Hlc::next_after(self.max_hlc(), wall_ms)`.
    pub fn next_hlc(&self, wall_ms: u64) -> Result<Hlc> {
        Hlc::next_after(self.max_hlc(), wall_ms)
    }

    /// One local transaction by `region` changing `changes`, all stamped with one new dot and
    /// `hlc`. If the entity is not alive, the write is an insert and also sets existence to alive
    /// (an insert must then list every field, as an SQL `INSERT` does). Updates never write
    /// existence, so a concurrent delete beats them (see [`crate::merge`]).
    ///
    /// Fails, leaving the state unchanged, on an empty change set, on the existence field, or on
    /// an `hlc` not greater than [`max_hlc`](Self::max_hlc). A field listed twice keeps the last
    /// value.
    pub fn local_write(
        &mut self,
        region: RegionId,
        hlc: Hlc,
        changes: impl IntoIterator<Item = (FieldPath, V)>,
    ) -> Result<Dot> {
        let changes: BTreeMap<FieldPath, V> = changes.into_iter().collect();
        if let Some(field) = changes.keys().find(|field| field.is_existence()) {
            return Err(Error::ReservedField(field.clone()));
        }
        if changes.is_empty() {
            return Err(Error::EmptyWrite);
        }
        let dot = self.new_write(region, hlc)?;
        if !self.is_alive() {
            self.exists = Some(FieldVersion::new(true, dot, hlc));
        }
        for (field, value) in changes {
            self.fields
                .insert(field, FieldVersion::new(value, dot, hlc));
        }
        Ok(dot)
    }

    /// A local delete by `region`: a write of existence = deleted. Field values stay in the
    /// tombstone so that an undelete can restore them.
    pub fn delete(&mut self, region: RegionId, hlc: Hlc) -> Result<Dot> {
        let dot = self.new_write(region, hlc)?;
        self.exists = Some(FieldVersion::new(false, dot, hlc));
        Ok(dot)
    }

    /// An undelete (or re-insert) by `region`: existence = alive and *every* field re-stamped with
    /// the new dot, values unchanged, so the write carries the whole entity like an SQL `INSERT`
    /// and a region that already collected the tombstone can rebuild it.
    pub(crate) fn undelete(&mut self, region: RegionId, hlc: Hlc) -> Result<Dot> {
        let dot = self.new_write(region, hlc)?;
        self.exists = Some(FieldVersion::new(true, dot, hlc));
        for version in self.fields.values_mut() {
            version.dot = dot;
            version.hlc = hlc;
        }
        Ok(dot)
    }

    /// Writes one ordinary field (operator resolution): no existence change.
    pub(crate) fn write_field(
        &mut self,
        region: RegionId,
        hlc: Hlc,
        field: FieldPath,
        value: V,
    ) -> Result<Dot> {
        if field.is_existence() {
            return Err(Error::ReservedField(field));
        }
        let dot = self.new_write(region, hlc)?;
        self.fields
            .insert(field, FieldVersion::new(value, dot, hlc));
        Ok(dot)
    }

    /// The partial state that the write `dot` publishes: the versions it wrote and the whole
    /// clock. Take it right after the write, before merging anything else, so the clock is the
    /// write's causal past (what the merge assumes of an incoming partial state).
    pub fn transaction_delta(&self, dot: &Dot) -> EntityState<V> {
        let written = |version: &&FieldVersion<_>| version.dot == *dot;
        EntityState {
            clock: self.clock.clone(),
            exists: self.exists.as_ref().filter(written).cloned(),
            fields: self
                .fields
                .iter()
                .filter(|(_, version)| version.dot == *dot)
                .map(|(field, version)| (field.clone(), version.clone()))
                .collect(),
        }
    }

    /// Checks `hlc` and takes the next dot of `region`; mutates only the clock, only on success.
    fn new_write(&mut self, region: RegionId, hlc: Hlc) -> Result<Dot> {
        let max = self.max_hlc();
        if hlc <= max {
            return Err(Error::StaleHlc { given: hlc, max });
        }
        self.clock.bump(region)
    }
}

/// The stored shape: `{clock, exists, fields}`.
#[derive(Serialize)]
struct PartsRef<'a, V> {
    clock: &'a VersionVector,
    exists: &'a Option<FieldVersion<bool>>,
    fields: &'a BTreeMap<FieldPath, FieldVersion<V>>,
}

#[derive(Deserialize)]
struct Parts<V> {
    clock: VersionVector,
    exists: Option<FieldVersion<bool>>,
    fields: BTreeMap<FieldPath, FieldVersion<V>>,
}

impl<V: Serialize> Serialize for EntityState<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        PartsRef {
            clock: &self.clock,
            exists: &self.exists,
            fields: &self.fields,
        }
        .serialize(serializer)
    }
}

impl<'de, V: Deserialize<'de> + Clone + Eq> Deserialize<'de> for EntityState<V> {
    /// Checks the invariants, like [`EntityState::from_parts`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let parts = Parts::<V>::deserialize(deserializer)?;
        Self::from_parts(parts.clock, parts.exists, parts.fields).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str) -> RegionId {
        RegionId::new(id).unwrap()
    }

    fn f(path: &str) -> FieldPath {
        FieldPath::new(path).unwrap()
    }

    #[test]
    fn write_delete_undelete() {
        let mut state = EntityState::<u8>::new();
        assert!(!state.is_alive());
        let h1 = state.next_hlc(100).unwrap();
        let d1 = state
            .local_write(r("us"), h1, [(f("a"), 1), (f("b"), 2)])
            .unwrap();
        assert!(state.is_alive());
        assert_eq!(state.existence().unwrap().dot, d1);
        assert_eq!(state.field(&f("b")).unwrap().dot, d1);

        let h2 = state.next_hlc(90).unwrap(); // wall clock behind: hlc still moves forward
        assert!(h2 > h1);
        let d2 = state.local_write(r("us"), h2, [(f("a"), 3)]).unwrap();
        assert_eq!(
            state.existence().unwrap().dot,
            d1,
            "an update does not write existence"
        );
        let delta = state.transaction_delta(&d2);
        assert_eq!(delta.fields().keys().collect::<Vec<_>>(), [&f("a")]);
        assert!(delta.existence().is_none());
        assert_eq!(delta.clock(), state.clock());

        let d3 = state.delete(r("eu"), state.next_hlc(0).unwrap()).unwrap();
        assert!(!state.is_alive());
        assert_eq!(
            state.field(&f("a")).unwrap().value,
            3,
            "tombstone keeps values"
        );
        let d4 = state.undelete(r("eu"), state.next_hlc(0).unwrap()).unwrap();
        assert!(state.is_alive());
        assert!(state.fields().values().all(|v| v.dot == d4));
        assert!(state.clock().covers(&d3) && d4.counter == Counter(2));
    }

    #[test]
    fn refused_writes_leave_state_unchanged() {
        let mut state = EntityState::<u8>::new();
        state
            .local_write(r("us"), Hlc::from_u64(10), [(f("a"), 1)])
            .unwrap();
        let before = state.clone();
        let stale = state.local_write(r("us"), Hlc::from_u64(10), [(f("a"), 2)]);
        assert!(matches!(stale, Err(Error::StaleHlc { .. })));
        assert_eq!(
            state.local_write(r("us"), Hlc::from_u64(11), []),
            Err(Error::EmptyWrite)
        );
        let reserved = state.local_write(r("us"), Hlc::from_u64(11), [(FieldPath::existence(), 0)]);
        assert!(matches!(reserved, Err(Error::ReservedField(_))));
        assert!(state
            .write_field(r("us"), Hlc::from_u64(11), FieldPath::existence(), 1)
            .is_err());
        assert!(matches!(
            state.delete(r("us"), Hlc::ZERO),
            Err(Error::StaleHlc { .. })
        ));
        assert_eq!(state, before);
    }

    #[test]
    fn from_parts_and_serde_check_invariants() {
        let mut state = EntityState::<String>::new();
        state
            .local_write(r("us"), Hlc::from_u64(5), [(f("title"), "x".to_owned())])
            .unwrap();
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<EntityState<String>>(&json).unwrap(),
            state
        );

        let (clock, exists, fields) = state.clone().into_parts();
        assert!(
            EntityState::from_parts(VersionVector::new(), exists.clone(), fields.clone()).is_err()
        );
        let mut reserved = fields.clone();
        if let Some(version) = fields.values().next() {
            reserved.insert(FieldPath::existence(), version.clone());
        }
        assert!(EntityState::from_parts(clock.clone(), exists.clone(), reserved).is_err());
        let zero = FieldVersion::new(true, Dot::new(r("us"), Counter::ZERO), Hlc::from_u64(1));
        assert!(EntityState::from_parts(clock.clone(), Some(zero), fields.clone()).is_err());
        assert_eq!(
            EntityState::from_parts(clock, exists, fields).unwrap(),
            state
        );

        let uncovered = json.replace(r#""clock":{"us":1}"#, r#""clock":{}"#);
        assert!(serde_json::from_str::<EntityState<String>>(&uncovered).is_err());
    }
}

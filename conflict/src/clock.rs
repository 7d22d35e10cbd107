//! Version vectors: what an entity's history contains.
//!
//! Each entity has one clock `region → counter`. Entry `r → c` says "region `r`'s first `c` writes
//! to this entity are in my causal past". Regions write to an entity one after another (see
//! [`Counter`]), so one number per region is enough. Absent entries are 0; the map never stores a
//! 0, so two clocks are equal exactly when they say the same thing.
//!
//! Note what a clock does *not* say: that the holder has every *value* those writes wrote. The
//! replicator ships partial states (only the fields one transaction changed, with the source's
//! clock), so a region can learn of a dot through a third region's clock before the write itself
//! arrives. The merge in [`crate::merge`] is built so that this never changes the result.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dot::{Counter, Dot};
use crate::error::{Error, Result};
use crate::region::RegionId;

/// How two clocks (two histories) relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// `self` is strictly in the past of `other`.
    Before,
    /// `self` strictly contains `other`.
    After,
    /// Same history.
    Equal,
    /// Each has a write the other has not seen.
    Concurrent,
}

/// A version vector: for each region, how many of its writes to one entity are in this history.
///
/// **Ordering.** Clocks are *partially* ordered, pointwise: `a ≤ b` iff every entry of `a` is at
/// most the same entry of `b` ([`compare`](Self::compare), [`dominates`](Self::dominates)).
/// Pointwise max ([`merge`](Self::merge)) is their least upper bound, so it is commutative,
/// associative and idempotent, which is why exchanging clocks in any order converges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(BTreeMap<RegionId, Counter>);

impl VersionVector {
    /// The empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// `region`'s entry (0 when absent).
    pub fn get(&self, region: RegionId) -> Counter {
        self.0.get(&region).copied().unwrap_or(Counter::ZERO)
    }

    /// Whether the write `dot` is in this history.
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(dot.region)
    }

    /// Joins `other` into `self` (pointwise max).
    pub fn merge(&mut self, other: &VersionVector) {
        for (region, counter) in &other.0 {
            let entry = self.0.entry(*region).or_insert(Counter::ZERO);
            if *counter > *entry {
                *entry = *counter;
            }
        }
    }

    /// The join of two clocks, as a new clock.
    pub fn joined(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// Records a new write of `region` and returns its dot. Leaves `self` unchanged on error.
    pub fn bump(&mut self, region: RegionId) -> Result<Dot> {
        let counter = self
            .get(region)
            .next()
            .ok_or(Error::CounterOverflow(region))?;
        self.0.insert(region, counter);
        Ok(Dot::new(region, counter))
    }

    /// Adds `dot` to the history (entry becomes at least `dot.counter`).
    pub fn observe(&mut self, dot: &Dot) {
        if dot.counter > Counter::ZERO {
            let entry = self.0.entry(dot.region).or_insert(Counter::ZERO);
            if dot.counter > *entry {
                *entry = dot.counter;
            }
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.dominates(other), other.dominates(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// Whether `self` contains all of `other` (pointwise `≥`; true for equal clocks).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .0
            .iter()
            .all(|(region, counter)| self.get(*region) >= *counter)
    }

    /// Whether a partial state with clock `delta_clock`, published by the write `dot`, can be
    /// merged *in causal order*: everything in its causal past except `dot` itself is already in
    /// `self` (or `dot` is, for a duplicate). Merging is correct in any order; causal order only
    /// makes conflict *reporting* exact (see [`crate::merge`]).
    pub fn causally_ready(&self, delta_clock: &VersionVector, dot: &Dot) -> bool {
        delta_clock.0.iter().all(|(region, counter)| {
            let needed = if *region == dot.region {
                Counter(dot.counter.0.saturating_sub(1))
            } else {
                *counter
            };
            self.get(*region) >= needed
        })
    }

    /// Entries in region order.
    pub fn iter(&self) -> impl Iterator<Item = (RegionId, Counter)> + '_ {
        self.0.iter().map(|(region, counter)| (*region, *counter))
    }

    /// Whether no write is in this history.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(RegionId, Counter)> for VersionVector {
    /// Builds a clock; repeated regions keep their maximum, zero entries are dropped.
    fn from_iter<I: IntoIterator<Item = (RegionId, Counter)>>(iter: I) -> Self {
        let mut clock = VersionVector::new();
        for (region, counter) in iter {
            clock.observe(&Dot::new(region, counter));
        }
        clock
    }
}

impl Serialize for VersionVector {
    /// A map `region → counter` (as numbers).
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<RegionId, Counter>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(id: &str) -> RegionId {
        RegionId::new(id).unwrap()
    }

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|(id, c)| (r(id), Counter(*c))).collect()
    }

    #[test]
    fn bump_covers_compare() {
        let mut a = VersionVector::new();
        let d1 = a.bump(r("us")).unwrap();
        assert_eq!(d1, Dot::new(r("us"), Counter(1)));
        assert!(a.covers(&d1));
        let mut b = a.clone();
        let d2 = b.bump(r("eu")).unwrap();
        assert!(!a.covers(&d2));
        assert_eq!(a.compare(&b), Causality::Before);
        assert_eq!(b.compare(&a), Causality::After);
        assert_eq!(a.compare(&a), Causality::Equal);
        a.bump(r("us")).unwrap();
        assert_eq!(a.compare(&b), Causality::Concurrent);
        assert!(a.joined(&b).dominates(&a) && a.joined(&b).dominates(&b));
    }

    #[test]
    fn bump_overflow_is_an_error_and_leaves_clock() {
        let mut a = vv(&[("us", u64::MAX)]);
        assert_eq!(a.bump(r("us")), Err(Error::CounterOverflow(r("us"))));
        assert_eq!(a, vv(&[("us", u64::MAX)]));
    }

    #[test]
    fn zeros_are_absent() {
        assert_eq!(vv(&[("us", 0)]), VersionVector::new());
        let parsed: VersionVector = serde_json::from_str(r#"{"us":0,"eu":2}"#).unwrap();
        assert_eq!(parsed, vv(&[("eu", 2)]));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"{"eu":2}"#);
    }

    #[test]
    fn causal_readiness() {
        let local = vv(&[("us", 2), ("eu", 1)]);
        let dot = Dot::new(r("eu"), Counter(2));
        assert!(local.causally_ready(&vv(&[("us", 2), ("eu", 2)]), &dot));
        assert!(!local.causally_ready(&vv(&[("us", 3), ("eu", 2)]), &dot));
        let gap = Dot::new(r("eu"), Counter(3));
        assert!(!local.causally_ready(&vv(&[("eu", 3)]), &gap));
        // A duplicate is always ready.
        assert!(local.causally_ready(&vv(&[("eu", 1)]), &Dot::new(r("eu"), Counter(1))));
    }

    fn clock() -> impl Strategy<Value = VersionVector> {
        prop::collection::vec((0..4_usize, 0..5_u64), 0..6).prop_map(|entries| {
            let ids = ["a", "b", "c", "d"];
            entries
                .into_iter()
                .map(|(i, c)| (r(ids.get(i).copied().unwrap_or("a")), Counter(c)))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn join_is_a_semilattice(a in clock(), b in clock(), c in clock()) {
            prop_assert_eq!(a.joined(&b), b.joined(&a));
            prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
            prop_assert_eq!(a.joined(&a), a.clone());
            prop_assert!(a.joined(&b).dominates(&a));
            let ab = a.compare(&b);
            let ba = b.compare(&a);
            let flipped = match ab {
                Causality::Before => Causality::After,
                Causality::After => Causality::Before,
                other => other,
            };
            prop_assert_eq!(ba, flipped);
        }
    }
}

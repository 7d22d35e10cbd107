//! Dots: the names of writes.
//!
//! Every write to an entity (one source transaction touching it, a delete, an operator's
//! resolution) gets one dot `(region, counter)`: the writing region and that region's next counter
//! *for this entity*. All fields the write changes carry the same dot. A transaction that writes one
//! field twice gives both writes its dot, with growing hlcs: the later write wins by hlc. If two
//! different versions of one field arrive with the same dot *and* the same hlc, a region reused a
//! counter and the merge refuses the input ([`Error::DotReused`](crate::Error::DotReused)).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::region::RegionId;

/// How many writes one region has made to one entity.
///
/// **Ordering.** Only counters of the same region and entity are meaningfully compared: a region
/// makes its writes to an entity one after another, each with the previous counter plus one, so
/// for one `(region, entity)` the counter order *is* the order in which that region wrote, and each
/// write had every earlier one of that region in its causal past. `Counter(0)` means "no write yet";
/// it is what a clock reports for a region it has never heard from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Counter(pub u64);

impl Counter {
    /// No write yet.
    pub const ZERO: Counter = Counter(0);

    /// The next counter, or `None` when exhausted.
    pub fn next(self) -> Option<Counter> {
        self.0.checked_add(1).map(Counter)
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of one write: the `counter`-th write of `region` to the entity.
///
/// **Ordering.** The derived order (region, then counter) is only a deterministic *sort* order
/// for reports; it says nothing about causality or about which write wins. Causality is
/// [`VersionVector::covers`](crate::VersionVector::covers); the winner is decided by
/// [`WriteStamp`](crate::WriteStamp).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The writing region.
    pub region: RegionId,
    /// That region's counter for the entity after the write (1 for its first write).
    pub counter: Counter,
}

impl Dot {
    /// A dot.
    pub fn new(region: RegionId, counter: Counter) -> Self {
        Self { region, counter }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.region, self.counter)
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dot({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_serde() {
        let dot = Dot::new(RegionId::new("us").unwrap(), Counter(3));
        assert_eq!(dot.to_string(), "us:3");
        let json = serde_json::to_string(&dot).unwrap();
        assert_eq!(json, r#"{"region":"us","counter":3}"#);
        assert_eq!(serde_json::from_str::<Dot>(&json).unwrap(), dot);
        assert_eq!(Counter(u64::MAX).next(), None);
        assert_eq!(Counter::ZERO.next(), Some(Counter(1)));
    }
}

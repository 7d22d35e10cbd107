//! The per-field last-writer-wins register.
//!
//! Each field of an entity holds exactly one [`FieldVersion`]: the value of the winning write, that
//! write's dot and its hlc. Joining two versions keeps the one with the greater [`WriteStamp`];
//! a maximum over a total order is commutative, associative and idempotent, which is the whole
//! reason the entity merge converges (see [`crate::merge`]).

use serde::{Deserialize, Serialize};

use crate::dot::{Counter, Dot};
use crate::error::{Error, Result};
use crate::field::FieldPath;
use crate::hlc::Hlc;
use crate::region::RegionId;

/// The key that orders the writes of one entity: `(hlc, region, counter)`, lexicographically.
///
/// **Ordering.** Total. Within one entity `(hlc, region)` is already unique per write (a region
/// stamps each write of an entity with an hlc above all that the entity holds), and the counter
/// keeps the order total even on malformed input. Because hlcs respect causality (see
/// [`Hlc`]), the greater stamp is also the causally later write whenever the two writes are
/// causally related; only for concurrent writes does the stamp make an arbitrary — but
/// everywhere-identical — choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteStamp {
    /// The write's hybrid logical timestamp.
    pub hlc: Hlc,
    /// The writing region.
    pub region: RegionId,
    /// The writing region's counter.
    pub counter: Counter,
}

/// One field's current version: the winning write's value, dot and hlc.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldVersion<V> {
    /// The value written.
    pub value: V,
    /// The write that wrote it.
    pub dot: Dot,
    /// That write's hlc.
    pub hlc: Hlc,
}

impl<V> FieldVersion<V> {
    /// A version.
    pub fn new(value: V, dot: Dot, hlc: Hlc) -> Self {
        Self { value, dot, hlc }
    }

    /// This version's place in the write order.
    pub fn stamp(&self) -> WriteStamp {
        WriteStamp {
            hlc: self.hlc,
            region: self.dot.region,
            counter: self.dot.counter,
        }
    }

    /// The same write with its value transformed.
    pub fn map<W>(self, f: impl FnOnce(V) -> W) -> FieldVersion<W> {
        FieldVersion {
            value: f(self.value),
            dot: self.dot,
            hlc: self.hlc,
        }
    }
}

/// What a version in a conflict report holds: an ordinary field's value or the existence bit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell<V> {
    /// An ordinary field's value.
    Value(V),
    /// The existence field: `true` alive, `false` deleted.
    Existence(bool),
}

/// The register join of two optional versions of `field`: the one with the greater stamp
/// (absent is the bottom).
///
/// One dot names one transaction, and a transaction may write a field more than once (Superset's
/// dashboard save is two UPDATEs); its successive writes share the dot and carry growing hlcs, so
/// the greater hlc is the later write and wins like any other. Only one dot *and* one hlc naming
/// two different values is impossible in a correct history: a region reused a counter.
pub(crate) fn join<'a, V: Eq>(
    field: &FieldPath,
    a: Option<&'a FieldVersion<V>>,
    b: Option<&'a FieldVersion<V>>,
) -> Result<Option<&'a FieldVersion<V>>> {
    match (a, b) {
        (Some(x), Some(y)) if x.dot == y.dot && x.hlc == y.hlc => {
            if x == y {
                Ok(Some(x))
            } else {
                Err(Error::DotReused {
                    field: field.clone(),
                    dot: x.dot,
                })
            }
        }
        (Some(x), Some(y)) => Ok(Some(if y.stamp() > x.stamp() { y } else { x })),
        (x, None) => Ok(x),
        (None, y) => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: u8, region: &str, counter: u64, hlc: u64) -> FieldVersion<u8> {
        let dot = Dot::new(RegionId::new(region).unwrap(), Counter(counter));
        FieldVersion::new(value, dot, Hlc::from_u64(hlc))
    }

    #[test]
    fn greater_stamp_wins_hlc_then_region() {
        let f = FieldPath::new("f").unwrap();
        let (a, b) = (v(1, "us", 1, 10), v(2, "eu", 1, 11));
        assert_eq!(join(&f, Some(&a), Some(&b)).unwrap(), Some(&b));
        assert_eq!(join(&f, Some(&b), Some(&a)).unwrap(), Some(&b));
        let (c, d) = (v(1, "us", 1, 10), v(2, "eu", 1, 10));
        assert_eq!(join(&f, Some(&c), Some(&d)).unwrap(), Some(&c));
        assert_eq!(join(&f, Some(&d), Some(&c)).unwrap(), Some(&c));
        assert_eq!(join(&f, None, Some(&d)).unwrap(), Some(&d));
        assert_eq!(join::<u8>(&f, None, None).unwrap(), None);
    }

    #[test]
    fn reused_dot_is_refused() {
        let f = FieldPath::new("f").unwrap();
        let (a, b) = (v(1, "us", 1, 10), v(2, "us", 1, 10));
        assert!(matches!(
            join(&f, Some(&a), Some(&b)),
            Err(Error::DotReused { .. })
        ));
        // The same dot with a later hlc: a later write of the same transaction, which wins.
        let c = v(1, "us", 1, 11);
        assert_eq!(join(&f, Some(&a), Some(&c)).unwrap(), Some(&c));
        assert_eq!(join(&f, Some(&c), Some(&a)).unwrap(), Some(&c));
        assert_eq!(join(&f, Some(&a), Some(&a.clone())).unwrap(), Some(&a));
    }
}

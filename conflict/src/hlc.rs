//! Hybrid logical clocks: the timestamps that decide which of two concurrent writes wins.
//!
//! Contract (DESIGN §1): every write to an entity gets an hlc greater than every hlc already
//! stored for that entity, and at least the writer's wall time. The caller reads the wall clock
//! and passes it in; this module reads no clock.
//!
//! Why: vector clocks can say that two writes are concurrent, but not which should win. An hlc
//! is close to wall time (so "the later edit wins" matches what people expect across regions
//! with roughly synchronised clocks) yet never contradicts causality, whatever the clock skew:
//! a write that had another in its past always has the greater hlc. See [`Hlc`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bits of the logical counter (the low bits of the packed value).
const LOGICAL_BITS: u32 = 16;

/// A hybrid logical timestamp packed in one `u64`: the high 48 bits are wall-clock milliseconds
/// since the Unix epoch, the low 16 bits a logical counter that separates writes within one
/// millisecond (or while the wall clock lags behind an hlc already seen).
///
/// **Ordering.** The order is plain `u64` order, which is (wall ms, logical) lexicographically,
/// so PostgreSQL can keep an hlc in one `bigint` and compare it natively (every hlc below wall
/// time 2^47 ms — the year 6429 — is a non-negative `bigint`; see [`to_i64`](Self::to_i64)).
///
/// *Why `(hlc, region)` totally orders the writes of one entity.* `u64` and [`RegionId`]s are total
/// orders, so the pair order is total; and no two writes of one entity share a pair: a region
/// writes to an entity one write at a time, each with an hlc strictly greater than every hlc the
/// entity already holds, including that region's own previous write (or whatever beat it). The
/// dot counter is a third key only so that the order stays total on malformed input.
///
/// *Why "later" never contradicts "caused by".* Invariant: the greatest hlc an entity state holds
/// is at least the hlc of every write its clock covers. A local write keeps it (its hlc is above
/// that greatest hlc — [`next_after`](Self::next_after)), a merge keeps it (the join holds the max
/// of both sides' greatest hlcs and the join of their clocks), and a transaction's partial state
/// keeps it (its one hlc is the greatest of everything its source had seen). So if write `b` had
/// write `a` in its causal past, `hlc(b) > hlc(a)`: the last-writer-wins order agrees with
/// causality, and the merge can pick winners by `(hlc, region)` alone.
///
/// [`RegionId`]: crate::RegionId
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hlc(u64);

impl Hlc {
    /// Below every hlc a write can carry.
    pub const ZERO: Hlc = Hlc(0);

    /// Greatest wall time an hlc can carry, in milliseconds (48 bits).
    pub const MAX_WALL_MS: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

    /// From the packed form.
    pub const fn from_u64(packed: u64) -> Self {
        Hlc(packed)
    }

    /// The packed form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// From parts; fails if `wall_ms` exceeds [`Self::MAX_WALL_MS`].
    pub fn new(wall_ms: u64, logical: u16) -> Result<Self> {
        if wall_ms > Self::MAX_WALL_MS {
            return Err(Error::WallClockOutOfRange { wall_ms });
        }
        Ok(Hlc((wall_ms << LOGICAL_BITS) | u64::from(logical)))
    }

    /// The wall-clock part, milliseconds since the Unix epoch.
    pub const fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical part.
    pub const fn logical(self) -> u16 {
        // Truncation is the point: the low 16 bits.
        (self.0 & 0xFFFF) as u16
    }

    /// The hlc of a new write: strictly greater than `prev_max` (the greatest hlc the entity
    /// holds) and with a wall part at least `wall_ms` (the writer's wall clock).
    ///
    /// When the wall clock is behind `prev_max` (skew, or many writes in one millisecond) the
    /// result is `prev_max + 1`; a full logical counter carries into the wall part, which only
    /// moves the stamp a millisecond ahead — it never panics and never goes backwards.
    pub fn next_after(prev_max: Hlc, wall_ms: u64) -> Result<Hlc> {
        let physical = Hlc::new(wall_ms, 0)?;
        let bumped = prev_max
            .0
            .checked_add(1)
            .ok_or(Error::HlcExhausted(prev_max))?;
        Ok(Hlc(bumped.max(physical.0)))
    }

    /// As a PostgreSQL `bigint`; fails above `i64::MAX` (wall time from the year 6429 on).
    pub fn to_i64(self) -> Result<i64> {
        i64::try_from(self.0).map_err(|_| Error::HlcOutOfBigintRange(i128::from(self.0)))
    }

    /// From a PostgreSQL `bigint`; fails on negative values.
    pub fn from_i64(value: i64) -> Result<Hlc> {
        u64::try_from(value)
            .map(Hlc)
            .map_err(|_| Error::HlcOutOfBigintRange(i128::from(value)))
    }
}

impl fmt::Display for Hlc {
    /// `wall_ms.logical`, e.g. `1700000000000.3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.logical())
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packing() {
        let h = Hlc::new(1_700_000_000_000, 7).unwrap();
        assert_eq!(h.wall_ms(), 1_700_000_000_000);
        assert_eq!(h.logical(), 7);
        assert_eq!(Hlc::from_u64(h.as_u64()), h);
        assert_eq!(h.to_string(), "1700000000000.7");
        assert_eq!(Hlc::from_i64(h.to_i64().unwrap()).unwrap(), h);
        assert!(Hlc::new(Hlc::MAX_WALL_MS + 1, 0).is_err());
        assert!(Hlc::from_u64(u64::MAX).to_i64().is_err());
        assert!(Hlc::from_i64(-1).is_err());
    }

    #[test]
    fn logical_overflow_carries_into_wall() {
        let prev = Hlc::new(10, u16::MAX).unwrap();
        let next = Hlc::next_after(prev, 5).unwrap();
        assert_eq!((next.wall_ms(), next.logical()), (11, 0));
        assert_eq!(
            Hlc::next_after(Hlc::from_u64(u64::MAX), 0),
            Err(Error::HlcExhausted(Hlc::from_u64(u64::MAX)))
        );
        assert!(Hlc::next_after(Hlc::ZERO, u64::MAX).is_err());
    }

    #[test]
    fn wall_time_wins_when_ahead() {
        let prev = Hlc::new(10, 3).unwrap();
        assert_eq!(Hlc::next_after(prev, 20).unwrap(), Hlc::new(20, 0).unwrap());
        assert_eq!(Hlc::next_after(prev, 10).unwrap(), Hlc::new(10, 4).unwrap());
    }

    proptest! {
        #[test]
        fn next_is_after_prev_and_wall(prev in 0..u64::MAX, wall in 0..=Hlc::MAX_WALL_MS) {
            let next = Hlc::next_after(Hlc::from_u64(prev), wall).unwrap();
            prop_assert!(next > Hlc::from_u64(prev));
            prop_assert!(next.wall_ms() >= wall);
        }

        #[test]
        fn order_is_wall_then_logical(a in 0..=Hlc::MAX_WALL_MS, la: u16, b in 0..=Hlc::MAX_WALL_MS, lb: u16) {
            let (ha, hb) = (Hlc::new(a, la).unwrap(), Hlc::new(b, lb).unwrap());
            prop_assert_eq!(ha.cmp(&hb), (a, la).cmp(&(b, lb)));
        }
    }
}

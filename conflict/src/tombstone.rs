//! When a deleted entity may be forgotten.
//!
//! A tombstone (an entity whose existence register says deleted) must outlive every write that
//! could still be merged against it: a concurrent update arriving after the tombstone is gone
//! would come back as a field-only "ghost" in one region and not in others, and its
//! delete/update conflict would never be reported there.

use crate::clock::{Causality, VersionVector};

/// Whether the tombstone whose entity clock is `tombstone_clock` may be collected, given
/// `applied_frontiers`: for **every** region (this one included), the entity clock that region
/// has reported applying.
///
/// True when there is at least one frontier and every frontier **equals** the tombstone clock:
///
/// - every frontier covers the tombstone clock — each region has applied the delete and all
///   before it (DESIGN §3), so no region can still make a write that is not after the delete;
/// - the tombstone clock covers every frontier — no region has applied a write this region has
///   not merged yet. Without this half, an update made concurrently with the delete (already
///   counted in its own region's frontier, still in flight to us) could arrive after collection.
///
/// Collecting must keep the entity's clock and greatest hlc (a few bytes): a later re-insert of
/// the same uuid then continues the counters and hlcs instead of reusing dots.
pub fn tombstone_collectable(
    tombstone_clock: &VersionVector,
    applied_frontiers: &[VersionVector],
) -> bool {
    !applied_frontiers.is_empty()
        && applied_frontiers
            .iter()
            .all(|frontier| frontier.compare(tombstone_clock) == Causality::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::Counter;
    use crate::region::RegionId;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries
            .iter()
            .map(|(id, c)| (RegionId::new(id).unwrap(), Counter(*c)))
            .collect()
    }

    #[test]
    fn all_regions_must_have_applied_exactly_the_tombstone() {
        let tomb = vv(&[("us", 3), ("eu", 1)]);
        assert!(!tombstone_collectable(&tomb, &[]));
        assert!(tombstone_collectable(&tomb, &[tomb.clone(), tomb.clone()]));
        // A region that has not applied the delete yet.
        assert!(!tombstone_collectable(
            &tomb,
            &[tomb.clone(), vv(&[("us", 2), ("eu", 1)])]
        ));
        // A region that applied a write we have not merged (e.g. a concurrent update).
        assert!(!tombstone_collectable(
            &tomb,
            &[tomb.clone(), vv(&[("us", 3), ("eu", 2)])]
        ));
    }
}

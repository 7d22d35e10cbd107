//! Operator resolution of a logged conflict.
//!
//! A conflict was logged by a merge that joined both conflicting versions into the region's state:
//! its clock covers both dots and its greatest hlc is at least both hlcs. A resolution is a new
//! local write on that state, so its dot is not covered by either side and its hlc — from
//! [`Hlc::next_after`](crate::Hlc::next_after) over the entity's greatest hlc — exceeds both. When
//! its partial state reaches another region, it therefore replaces either conflicting version
//! *causally* (its clock covers them), logs no new conflict, and every region converges on the
//! chosen value. Only a write made concurrently with the resolution can still compete with it, and
//! that is an ordinary, logged conflict.

use crate::dot::Dot;
use crate::entity::EntityState;
use crate::error::Result;
use crate::field::FieldPath;
use crate::region::RegionId;

/// Writes the operator's `chosen` value of `field` into `state` as a new write by `resolver` at
/// wall time `wall_ms`; returns its dot (publish `state.transaction_delta(&dot)`).
///
/// Does not change existence (use [`resolve_existence`]). Fails on the existence field, or when
/// the region's counter or the hlc space is exhausted.
pub fn resolve<V: Clone + Eq>(
    state: &mut EntityState<V>,
    field: &FieldPath,
    chosen: V,
    resolver: RegionId,
    wall_ms: u64,
) -> Result<Dot> {
    let hlc = state.next_hlc(wall_ms)?;
    state.write_field(resolver, hlc, field.clone(), chosen)
}

/// Resolves existence: `alive = false` deletes again; `alive = true` undeletes, re-stamping every
/// field with the new dot (values unchanged) so the write carries the whole entity, like an SQL
/// `INSERT`. This is how a [`DeleteUpdate`](crate::ConflictKind::DeleteUpdate) conflict is
/// settled in favour of the update: the tombstone kept the update's values.
pub fn resolve_existence<V: Clone + Eq>(
    state: &mut EntityState<V>,
    alive: bool,
    resolver: RegionId,
    wall_ms: u64,
) -> Result<Dot> {
    let hlc = state.next_hlc(wall_ms)?;
    if alive {
        state.undelete(resolver, hlc)
    } else {
        state.delete(resolver, hlc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::merge;
    use crate::register::Cell;

    fn r(id: &str) -> RegionId {
        RegionId::new(id).unwrap()
    }

    #[test]
    fn resolution_dominates_both_sides_everywhere() {
        let title = FieldPath::new("title").unwrap();
        let mut base = EntityState::<u8>::new();
        let d0 = base
            .local_write(r("us"), base.next_hlc(1).unwrap(), [(title.clone(), 0)])
            .unwrap();
        let _ = d0;
        let (mut us, mut eu) = (base.clone(), base);
        let du = us
            .local_write(r("us"), us.next_hlc(10).unwrap(), [(title.clone(), 1)])
            .unwrap();
        let de = eu
            .local_write(r("eu"), eu.next_hlc(20).unwrap(), [(title.clone(), 2)])
            .unwrap();
        let (us_delta, eu_delta) = (us.transaction_delta(&du), eu.transaction_delta(&de));

        let at_us = merge(&us, &eu_delta).unwrap();
        let at_eu = merge(&eu, &us_delta).unwrap();
        assert_eq!(at_us.state, at_eu.state);
        assert_eq!(at_us.conflicts.len(), 1);
        assert_eq!(at_us.conflicts[0].winning().value, Cell::Value(2));
        assert_eq!(at_eu.conflicts[0].winning().dot, de);

        // The operator in us picks the losing value, with a wall clock far behind.
        let mut resolved = at_us.state;
        let dr = resolve(&mut resolved, &title, 1, r("us"), 0).unwrap();
        let version = resolved.field(&title).unwrap();
        assert!(version.hlc > at_eu.state.max_hlc());
        assert!(resolved.clock().covers(&du) && resolved.clock().covers(&de));

        let elsewhere = merge(&at_eu.state, &resolved.transaction_delta(&dr)).unwrap();
        assert!(elsewhere.conflicts.is_empty());
        assert_eq!(elsewhere.state, resolved);
        assert_eq!(elsewhere.state.field(&title).unwrap().value, 1);
        assert!(resolve(&mut resolved, &FieldPath::existence(), 0, r("us"), 0).is_err());
    }

    #[test]
    fn undelete_restores_tombstone_values() {
        let title = FieldPath::new("title").unwrap();
        let mut state = EntityState::<u8>::new();
        state
            .local_write(r("us"), state.next_hlc(1).unwrap(), [(title.clone(), 7)])
            .unwrap();
        resolve_existence(&mut state, false, r("eu"), 2).unwrap();
        assert!(!state.is_alive());
        let dot = resolve_existence(&mut state, true, r("eu"), 3).unwrap();
        assert!(state.is_alive());
        let delta = state.transaction_delta(&dot);
        assert_eq!(delta.field(&title).unwrap().value, 7);
        let rebuilt = merge(&EntityState::new(), &delta).unwrap().state;
        assert!(rebuilt.is_alive());
        assert_eq!(rebuilt.fields(), state.fields());
    }
}

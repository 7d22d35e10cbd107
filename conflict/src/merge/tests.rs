//! Hand-written merge scenarios; the algebraic properties are in `tests/lattice.rs`.

use super::*;
use crate::dot::Dot;
use crate::error::Error;
use crate::hlc::Hlc;
use crate::region::RegionId;

fn r(id: &str) -> RegionId {
    RegionId::new(id).unwrap()
}

fn f(path: &str) -> FieldPath {
    FieldPath::new(path).unwrap()
}

/// An entity created in `us` with fields a = 0, b = 0, and its creation delta.
fn created() -> EntityState<u8> {
    let mut state = EntityState::new();
    state
        .local_write(r("us"), Hlc::from_u64(100), [(f("a"), 0), (f("b"), 0)])
        .unwrap();
    state
}

/// `state` after a local write by `region` at wall `wall`, and that write's delta.
fn write(
    state: &EntityState<u8>,
    region: &str,
    wall: u64,
    changes: &[(&str, u8)],
) -> (EntityState<u8>, EntityState<u8>) {
    let mut next = state.clone();
    let hlc = Hlc::next_after(next.max_hlc(), wall).unwrap();
    let changes = changes.iter().map(|(path, value)| (f(path), *value));
    let dot = next.local_write(r(region), hlc, changes).unwrap();
    let delta = next.transaction_delta(&dot);
    (next, delta)
}

fn delete(state: &EntityState<u8>, region: &str, wall: u64) -> (EntityState<u8>, EntityState<u8>) {
    let mut next = state.clone();
    let dot = next
        .delete(r(region), next.next_hlc(wall).unwrap())
        .unwrap();
    let delta = next.transaction_delta(&dot);
    (next, delta)
}

#[test]
fn causal_overwrite_replaces_without_conflict() {
    let base = created();
    let (us, us_delta) = write(&base, "us", 0, &[("a", 1)]);
    let (eu, _) = write(
        &merge(&base, &us_delta).unwrap().state,
        "eu",
        0,
        &[("a", 2)],
    );
    let back = merge(&us, &eu.transaction_delta(&eu.field(&f("a")).unwrap().dot)).unwrap();
    assert!(back.conflicts.is_empty());
    assert_eq!(back.replaced, [f("a")]);
    assert_eq!(back.state, eu);
}

#[test]
fn concurrent_same_field_same_winner_in_both_regions() {
    let base = created();
    // eu's wall clock is behind: us wins by hlc, whatever the arrival order.
    let (us, us_delta) = write(&base, "us", 500, &[("a", 1)]);
    let (eu, eu_delta) = write(&base, "eu", 300, &[("a", 2)]);
    let at_us = merge(&us, &eu_delta).unwrap();
    let at_eu = merge(&eu, &us_delta).unwrap();
    assert_eq!(at_us.state, at_eu.state);
    assert_eq!(at_us.state.field(&f("a")).unwrap().value, 1);
    let (cu, ce) = (&at_us.conflicts, &at_eu.conflicts);
    assert_eq!((cu.len(), ce.len()), (1, 1));
    assert_eq!(
        (cu[0].kind, cu[0].winner, ce[0].winner),
        (ConflictKind::Field, Side::Local, Side::Incoming)
    );
    assert_eq!(cu[0].winning(), ce[0].winning());
    assert_eq!(cu[0].losing(), ce[0].losing());
    assert_eq!(cu[0].local_clock, *us.clock());
    assert_eq!(at_eu.replaced, [f("a")]);
    assert!(at_us.replaced.is_empty());
}

#[test]
fn equal_hlcs_break_ties_by_region() {
    let base = created();
    let (us, us_delta) = write(&base, "us", 500, &[("a", 1)]);
    let (eu, eu_delta) = write(&base, "eu", 500, &[("a", 2)]);
    assert_eq!(us.max_hlc(), eu.max_hlc());
    let at_us = merge(&us, &eu_delta).unwrap();
    assert_eq!(
        at_us.state.field(&f("a")).unwrap().dot.region,
        r("us"),
        "eu < us, us wins"
    );
    assert_eq!(merge(&eu, &us_delta).unwrap().state, at_us.state);
}

#[test]
fn concurrent_different_fields_both_survive() {
    let base = created();
    let (us, us_delta) = write(&base, "us", 0, &[("a", 1)]);
    let (eu, eu_delta) = write(&base, "eu", 0, &[("b", 2)]);
    let at_us = merge(&us, &eu_delta).unwrap();
    let at_eu = merge(&eu, &us_delta).unwrap();
    assert!(at_us.conflicts.is_empty() && at_eu.conflicts.is_empty());
    assert_eq!(at_us.state, at_eu.state);
    assert_eq!(at_us.state.field(&f("a")).unwrap().value, 1);
    assert_eq!(at_us.state.field(&f("b")).unwrap().value, 2);
}

#[test]
fn concurrent_equal_values_are_no_conflict() {
    let base = created();
    let (us, _) = write(&base, "us", 0, &[("a", 5)]);
    let (_, eu_delta) = write(&base, "eu", 0, &[("a", 5)]);
    assert!(merge(&us, &eu_delta).unwrap().conflicts.is_empty());
}

#[test]
fn delete_beats_concurrent_later_update_and_keeps_its_values() {
    let base = created();
    let (us, us_delta) = delete(&base, "us", 0);
    let (eu, eu_delta) = write(&base, "eu", 9_000, &[("a", 7)]); // later hlc than the delete
    let at_us = merge(&us, &eu_delta).unwrap();
    let at_eu = merge(&eu, &us_delta).unwrap();
    assert_eq!(at_us.state, at_eu.state);
    assert!(!at_us.state.is_alive());
    assert_eq!(
        at_us.state.field(&f("a")).unwrap().value,
        7,
        "tombstone keeps the update"
    );
    for (merged, delete_side) in [(&at_us, Side::Local), (&at_eu, Side::Incoming)] {
        assert_eq!(merged.conflicts.len(), 1);
        let conflict = &merged.conflicts[0];
        assert_eq!(
            (conflict.kind, conflict.winner),
            (ConflictKind::DeleteUpdate, delete_side)
        );
        assert_eq!(conflict.field, f("a"));
        assert_eq!(conflict.winning().value, Cell::Existence(false));
        assert_eq!(conflict.losing().value, Cell::Value(7));
    }
}

#[test]
fn update_before_delete_is_no_conflict() {
    let base = created();
    let (_, eu_delta) = write(&base, "eu", 0, &[("a", 7)]);
    let seen = merge(&base, &eu_delta).unwrap().state;
    let (_, us_delta) = delete(&seen, "us", 0);
    let at_eu = merge(&merge(&base, &eu_delta).unwrap().state, &us_delta).unwrap();
    assert!(at_eu.conflicts.is_empty());
    assert!(!at_eu.state.is_alive());
}

#[test]
fn concurrent_undelete_and_delete_conflict_on_existence() {
    let (dead, _) = delete(&created(), "us", 0);
    let mut eu = dead.clone();
    let undeleted = crate::resolve_existence(&mut eu, true, r("eu"), 50).unwrap();
    let (us, us_delta) = delete(&dead, "us", 90); // a second delete, later
    let at_eu = merge(&eu, &us_delta).unwrap();
    let at_us = merge(&us, &eu.transaction_delta(&undeleted)).unwrap();
    assert_eq!(at_eu.state, at_us.state);
    let existence: Vec<_> = at_eu
        .conflicts
        .iter()
        .filter(|c| c.kind == ConflictKind::Field)
        .collect();
    assert_eq!(existence.len(), 1);
    assert!(existence[0].field.is_existence());
    assert_eq!(
        at_eu.state.is_alive(),
        existence[0].winning().value == Cell::Existence(true)
    );
}

#[test]
fn duplicates_and_replays_report_nothing() {
    let base = created();
    let (us, _) = write(&base, "us", 500, &[("a", 1)]);
    let (_, eu_delta) = write(&base, "eu", 300, &[("a", 2)]);
    let once = merge(&us, &eu_delta).unwrap();
    let twice = merge(&once.state, &eu_delta).unwrap();
    assert_eq!(once.conflicts.len(), 1);
    assert!(twice.conflicts.is_empty() && twice.replaced.is_empty());
    assert_eq!(twice.state, once.state);
}

#[test]
fn a_write_known_only_by_clock_still_lands() {
    // A writes a; C merges it and writes b; B receives C's delta (whose clock covers A's dot)
    // before A's own delta. DESIGN's literal dot rule would then ignore A's `a` in B forever.
    let base = created();
    let (_, a_delta) = write(&base, "a", 0, &[("a", 1)]);
    let at_c = merge(&base, &a_delta).unwrap().state;
    let (_, c_delta) = write(&at_c, "c", 0, &[("b", 2)]);
    let at_b = merge(&base, &c_delta).unwrap().state;
    let a_dot = a_delta.field(&f("a")).unwrap().dot;
    assert!(at_b.clock().covers(&a_dot));
    let at_b = merge(&at_b, &a_delta).unwrap();
    assert_eq!(at_b.state.field(&f("a")).unwrap().value, 1);
    assert!(
        at_b.conflicts.is_empty(),
        "a causal overwrite of the creation"
    );
}

#[test]
fn fields_on_one_side_only_are_kept() {
    let base = created();
    let (_, delta) = write(&base, "eu", 0, &[("c", 3)]);
    let merged = merge(&base, &delta).unwrap();
    assert_eq!(merged.state.fields().len(), 3);
    assert_eq!(merged.replaced, [f("c")]);
    let reverse = merge(&delta, &base).unwrap();
    assert_eq!(reverse.state, merged.state);
}

#[test]
fn reused_dot_is_an_error() {
    let base = created();
    let (_, one) = write(&base, "eu", 0, &[("a", 1)]);
    let (_, other) = write(&base, "eu", 0, &[("a", 2)]);
    let dot: Dot = one.field(&f("a")).unwrap().dot;
    assert_eq!(
        merge(&one, &other),
        Err(Error::DotReused { field: f("a"), dot })
    );
}

#[test]
fn a_later_write_of_the_same_transaction_is_reported_replaced() {
    // One transaction (one dot) inserts a field, then updates it: the second write shares the
    // dot with a greater hlc, and the applier must write it.
    let clock: VersionVector = [(r("us"), crate::dot::Counter(1))].into_iter().collect();
    let dot = Dot::new(r("us"), crate::dot::Counter(1));
    let first = EntityState::from_parts(
        clock.clone(),
        None,
        [(f("a"), FieldVersion::new(0u8, dot, Hlc::from_u64(100)))].into(),
    )
    .unwrap();
    let second = EntityState::from_parts(
        clock,
        None,
        [(f("a"), FieldVersion::new(7u8, dot, Hlc::from_u64(101)))].into(),
    )
    .unwrap();
    let merged = merge(&first, &second).unwrap();
    assert_eq!(merged.replaced, vec![f("a")]);
    assert_eq!(merged.state.field(&f("a")).map(|v| v.value), Some(7));
    assert!(merged.conflicts.is_empty());
    // Merged the other way round, the local version is already the later one: nothing to write.
    assert!(merge(&second, &first).unwrap().replaced.is_empty());
}

//! Merging two states of one entity (DESIGN §3), and the conflict report.
//!
//! # The rule
//!
//! The result's clock is the pointwise max of both clocks. Each field — the existence field
//! included — keeps the version with the greater [`WriteStamp`] `(hlc, region, counter)`; a field
//! present on one side only keeps that side's version. Nothing else decides a winner.
//!
//! # Why the state is a join-semilattice
//!
//! A state is a product of a version vector (joined by pointwise max) and one register per field
//! (joined by max over a total order, absent = bottom). Max over a total order and pointwise max
//! are commutative, associative and idempotent, and so is a product of them; conflicts are only a
//! *report* computed from the two inputs and never feed back into the state. So arrival order,
//! duplicates and replays cannot change the result (property-tested in `tests/lattice.rs`).
//!
//! # Why this is DESIGN §3's dot rule
//!
//! DESIGN §3 states the rule with dots: an incoming version whose dot the local clock covers is
//! ignored, a local version whose dot the incoming clock covers is replaced, otherwise the greater
//! `(hlc, region)` wins. By the hlc invariant (see [`Hlc`](crate::Hlc)) a write that had another in
//! its causal past has the greater hlc, so whenever a clock's coverage reflects values actually
//! received, "covered" and "smaller stamp" agree and the two formulations coincide. They differ
//! only when a clock covers a dot whose *value* the state does not hold: the replicator ships
//! partial states (one transaction's fields plus the source's whole clock), so region B can learn
//! of A's write to `title` through C's transaction on `description` before A's own event arrives.
//! The literal dot rule would then drop A's `title` forever in B but not elsewhere — divergence.
//! The stamp rule keeps it, and every region ends with the same state.
//!
//! # What is reported
//!
//! Two different versions of one field meeting in a merge are **concurrent** — a
//! [`ConflictKind::Field`] conflict — when the winner's side clock does not cover the loser's dot
//! and the values differ (equal values are no conflict: two regions that both delete, or both set
//! the same title, agree). The other direction need not be checked: the loser cannot have had the
//! winner in its past, or it would carry the greater hlc. With existence as one more field, a
//! delete against an undelete is such a conflict on `$exists`.
//!
//! A [`ConflictKind::DeleteUpdate`] is reported when the result is deleted and a merge brings
//! together, from the two sides, the winning delete and a field version written concurrently with
//! it (neither side's clock covers the other's write). **The delete wins**: updates never write
//! existence, so existence stays deleted whatever the update's hlc, and the tombstone keeps the
//! update's field values so an operator's undelete ([`resolve_existence`](crate::resolve_existence))
//! brings the entity back with them.
//!
//! Guarantees of the report: (1) the winner is the greater stamp, hence the same in every region
//! whatever the arrival order; (2) a reported pair is truly concurrent; (3) a region reports a pair
//! at most once: once it holds the winner its clock covers the loser, and it never holds the loser
//! again; replays and duplicates report nothing. (4) A region reports every concurrent pair that
//! meets in it when it merges partial states in causal order ([`VersionVector::causally_ready`]);
//! out of causal order, a pair can go unreported in a region whose clock learned of the losing
//! write through a third region before the write itself arrived (the clock cannot tell "seen and
//! beaten" from "heard of"; per-field causal contexts would, at a storage cost).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::VersionVector;
use crate::entity::EntityState;
use crate::error::Result;
use crate::field::FieldPath;
use crate::register::{self, Cell, FieldVersion};

/// Which input of a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The state the region held.
    Local,
    /// The state that arrived.
    Incoming,
}

/// What kind of conflict was logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Two concurrent writes of one field (the existence field included).
    Field,
    /// A delete concurrent with an update of a field; the delete won.
    DeleteUpdate,
}

/// One logged conflict: both versions, both clocks and the winner.
///
/// For [`ConflictKind::DeleteUpdate`], `field` is the updated field; the delete's side holds a
/// [`Cell::Existence`]`(false)` version and the other side the update's [`Cell::Value`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict<V> {
    /// Field or delete/update.
    pub kind: ConflictKind,
    /// The contested field.
    pub field: FieldPath,
    /// The local side's version.
    pub local: FieldVersion<Cell<V>>,
    /// The incoming side's version.
    pub incoming: FieldVersion<Cell<V>>,
    /// The local clock before the merge.
    pub local_clock: VersionVector,
    /// The incoming clock.
    pub incoming_clock: VersionVector,
    /// Whose version the merged state keeps.
    pub winner: Side,
}

impl<V> Conflict<V> {
    /// The version that won.
    pub fn winning(&self) -> &FieldVersion<Cell<V>> {
        match self.winner {
            Side::Local => &self.local,
            Side::Incoming => &self.incoming,
        }
    }

    /// The version that lost.
    pub fn losing(&self) -> &FieldVersion<Cell<V>> {
        match self.winner {
            Side::Local => &self.incoming,
            Side::Incoming => &self.local,
        }
    }
}

/// The result of a merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged<V> {
    /// The joined state.
    pub state: EntityState<V>,
    /// Conflicts to log, in a deterministic order (existence, then fields by path, then
    /// delete/update conflicts by path).
    pub conflicts: Vec<Conflict<V>>,
    /// Fields (`$exists` included) whose version differs from the local one: what the applier
    /// must write.
    pub replaced: Vec<FieldPath>,
}

/// Joins `incoming` (typically a transaction's partial state) into `local`; see the module docs.
///
/// Errors only with [`Error::DotReused`](crate::Error::DotReused): one dot naming two different
/// versions of a field, which no correct history produces; quarantine the input.
pub fn merge<V: Clone + Eq>(
    local: &EntityState<V>,
    incoming: &EntityState<V>,
) -> Result<Merged<V>> {
    let mut report = Report {
        local,
        incoming,
        conflicts: Vec::new(),
        replaced: Vec::new(),
    };

    let existence = FieldPath::existence();
    let exists = report
        .register(
            &existence,
            local.exists.as_ref(),
            incoming.exists.as_ref(),
            Cell::Existence,
        )?
        .cloned();

    let paths: BTreeSet<&FieldPath> = local.fields.keys().chain(incoming.fields.keys()).collect();
    let mut fields = std::collections::BTreeMap::new();
    for path in paths {
        let (l, i) = (local.fields.get(path), incoming.fields.get(path));
        if let Some(version) = report.register(path, l, i, Cell::Value)? {
            fields.insert(path.clone(), version.clone());
        }
    }

    let state = EntityState {
        clock: local.clock.joined(&incoming.clock),
        exists,
        fields,
    };
    report.delete_update(&state);
    Ok(Merged {
        state,
        conflicts: report.conflicts,
        replaced: report.replaced,
    })
}

/// The inputs of one merge and what it has reported so far.
struct Report<'a, V> {
    local: &'a EntityState<V>,
    incoming: &'a EntityState<V>,
    conflicts: Vec<Conflict<V>>,
    replaced: Vec<FieldPath>,
}

impl<V: Clone + Eq> Report<'_, V> {
    fn clock(&self, side: Side) -> &VersionVector {
        match side {
            Side::Local => &self.local.clock,
            Side::Incoming => &self.incoming.clock,
        }
    }

    /// Joins one register and records a field conflict if the two versions are concurrent.
    fn register<'v, T: Clone + Eq>(
        &mut self,
        field: &FieldPath,
        local: Option<&'v FieldVersion<T>>,
        incoming: Option<&'v FieldVersion<T>>,
        cell: fn(T) -> Cell<V>,
    ) -> Result<Option<&'v FieldVersion<T>>> {
        let kept = register::join(field, local, incoming)?;
        // A later write of the same transaction shares the dot and carries a greater hlc: it
        // replaces the local version too.
        if kept.map(|v| (v.dot, v.hlc)) != local.map(|v| (v.dot, v.hlc)) {
            self.replaced.push(field.clone());
        }
        if let (Some(l), Some(i)) = (local, incoming) {
            let winner = if i.stamp() > l.stamp() {
                Side::Incoming
            } else {
                Side::Local
            };
            let loser_dot = if winner == Side::Incoming {
                l.dot
            } else {
                i.dot
            };
            if l.dot != i.dot && l.value != i.value && !self.clock(winner).covers(&loser_dot) {
                self.push(
                    ConflictKind::Field,
                    field,
                    l.clone().map(cell),
                    i.clone().map(cell),
                    winner,
                );
            }
        }
        Ok(kept)
    }

    /// Records the delete/update pairs that `merged` brings together for the first time.
    fn delete_update(&mut self, merged: &EntityState<V>) {
        let Some(delete) = merged.exists.as_ref().filter(|version| !version.value) else {
            return;
        };
        let holds_delete = |state: &EntityState<V>| {
            state
                .exists
                .as_ref()
                .is_some_and(|version| version.dot == delete.dot)
        };
        let (local_d, incoming_d) = (holds_delete(self.local), holds_delete(self.incoming));
        for (field, update) in &merged.fields {
            let holds_update = |state: &EntityState<V>| {
                state
                    .fields
                    .get(field)
                    .is_some_and(|version| version.dot == update.dot)
            };
            let (local_u, incoming_u) = (holds_update(self.local), holds_update(self.incoming));
            let delete_side = match (local_d, incoming_d, local_u, incoming_u) {
                _ if update.dot == delete.dot => continue,
                (true, _, true, _) | (_, true, _, true) => continue, // already together
                (true, _, _, true) => Side::Local,
                (_, true, true, _) => Side::Incoming,
                _ => continue,
            };
            let update_side = match delete_side {
                Side::Local => Side::Incoming,
                Side::Incoming => Side::Local,
            };
            if self.clock(delete_side).covers(&update.dot)
                || self.clock(update_side).covers(&delete.dot)
            {
                continue; // the update was before the delete (or saw it)
            }
            let d = delete.clone().map(Cell::Existence);
            let u = update.clone().map(Cell::Value);
            let (l, i) = if delete_side == Side::Local {
                (d, u)
            } else {
                (u, d)
            };
            self.push(ConflictKind::DeleteUpdate, field, l, i, delete_side);
        }
    }

    fn push(
        &mut self,
        kind: ConflictKind,
        field: &FieldPath,
        local: FieldVersion<Cell<V>>,
        incoming: FieldVersion<Cell<V>>,
        winner: Side,
    ) {
        self.conflicts.push(Conflict {
            kind,
            field: field.clone(),
            local,
            incoming,
            local_clock: self.local.clock.clone(),
            incoming_clock: self.incoming.clock.clone(),
            winner,
        });
    }
}

#[cfg(test)]
mod tests;

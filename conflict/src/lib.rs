//! Clocks and merge rules of the replicator (DESIGN §1, §3): pure, deterministic, no I/O.
//!
//! Everything that decides which write wins lives here and nowhere else:
//!
//! - [`RegionId`], [`Dot`] and [`VersionVector`] name writes and histories;
//! - [`Hlc`] stamps writes so that "later" never contradicts "caused by";
//! - [`EntityState`] holds one [`FieldVersion`] per [`FieldPath`] plus existence;
//! - [`merge`] joins two states (a join-semilattice: order, duplicates and replays cannot change
//!   the result) and reports [`Conflict`]s; [`resolve`] writes an operator's choice;
//! - [`tombstone_collectable`] says when a deleted entity may be forgotten;
//! - [`resolve_aliases`] / [`resolve_renames`] settle natural-key collisions.
//!
//! Callers pass wall time in; nothing here reads a clock, allocates ids or panics on bad input.

mod clock;
mod dot;
mod entity;
mod error;
mod field;
mod hlc;
mod merge;
mod natural_key;
mod region;
mod register;
mod resolution;
mod tombstone;

pub use clock::{Causality, VersionVector};
pub use dot::{Counter, Dot};
pub use entity::EntityState;
pub use error::{Error, Result};
pub use field::FieldPath;
pub use hlc::Hlc;
pub use merge::{merge, Conflict, ConflictKind, Merged, Side};
pub use natural_key::{resolve_aliases, resolve_renames, Claim, EntityId, KeyDecision, KeyOutcome};
pub use region::RegionId;
pub use register::{Cell, FieldVersion, WriteStamp};
pub use resolution::{resolve, resolve_existence};
pub use tombstone::tombstone_collectable;

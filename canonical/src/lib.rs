//! Superset's JSON columns embed region-local integer ids (docs/superset-metadata-facts.md §3).
//! Canonical form has none: every embedded id becomes the uuid of the row it names, and back again
//! in the target region. This crate knows *where* the ids are; the caller knows *what* they map
//! to (the id↔uuid registry), through a [`Translate`] function.
//!
//! Contract:
//! - Every place of the facts file §3 is covered, including the ones Superset's own import misses
//!   (`chartsInScope`, `chart_customization_config`, `deck_slices`): see [`dashboard`] and
//!   [`chart`].
//! - Translation is total on any JSON: a place that is absent, null or of an unexpected shape is
//!   left as it is; only a failing [`Translate`] is an error.
//! - An id that names no row the registry ever knew is not guessed at: the translator turns it into
//!   an [`EmbeddedId::Dangling`] token, a string kept byte-for-byte in every region, which names no
//!   object anywhere. Rows the registry knew stay translatable after deletion, so Superset's
//!   leftover ids of deleted charts translate the same way everywhere and never come to point at a
//!   different chart.
//! - Local → canonical → local with inverse maps gives back the same JSON (up to object key order
//!   and number formatting), which the property tests check.

pub mod chart;
mod column;
pub mod dashboard;
mod embedded;
mod error;

pub use column::{sorted_json, JsonColumn};
pub use embedded::{EmbeddedId, RefKind, Translate, DANGLING_PREFIX};
pub use error::{Error, Result};

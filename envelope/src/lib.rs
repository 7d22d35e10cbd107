//! The change envelope: what a region's reader publishes and every other region's applier reads.
//!
//! Contract (docs/design.md §5):
//! - One Kafka record = one [`Envelope`], Avro-encoded against a schema kept as a file in
//!   `schemas/` and framed with Avro *single-object encoding* (`C3 01`, then the schema's 64-bit
//!   Rabin fingerprint, little-endian, then the datum), so any consumer can decode a record without
//!   a schema registry.
//! - A source transaction is a run of records sharing `commit_lsn`, numbered by `seq` from 0, made
//!   of [`Body::Change`] records and closed by one [`Body::Commit`] whose `change_count` says how
//!   many changes came before it. A consumer applies a transaction only once it holds the commit:
//!   the boundary is in the data, not in Kafka transactions (which the broker cannot be trusted
//!   with).
//! - Everything in an envelope is canonical: entities and references by uuid, users by username,
//!   field values as canonical JSON. No region-local integer id and no local column appears.
//! - Schema evolution follows Avro resolution: a record written with any schema version the
//!   [`Codec`] knows decodes into today's model; an unknown fingerprint or bad bytes is an error
//!   (the applier quarantines the record), never a panic.

mod codec;
mod error;
mod model;
mod value;

pub use codec::{Codec, MAX_RECORD_ALLOCATION, SINGLE_OBJECT_MAGIC};
pub use error::{Error, Result};
pub use model::{Body, EntityChange, Envelope, FieldWrite, Seq, UnixMicros};

//! The replicator sidecar: beside each regional Superset metadata PostgreSQL database, it captures
//! local changes through logical replication and publishes canonical change events to Kafka;
//! appliers in the other regions merge them (see `docs/design.md`).
//!
//! This crate holds the sidecar's domains:
//!
//! - [`policy`]: the declarative table policy (what is replicated, how rows are identified across
//!   regions, what stays local, where references hide);
//! - [`setup`]: `replicator setup`, which installs capture into a metadata database, idempotently:
//!   the sidecar schema, the versioning triggers, the replica identities, the publication and
//!   the slot;
//! - [`database`]: where the metadata database is, with its password kept out of every output;
//! - [`operator`]: the operator's commands (`status`, `lag`, `conflicts`, `quarantine`, `verify`,
//!   `teardown`): reports as text or JSON, and the few deliberate changes an operator makes;
//! - [`config`]: the sidecar's configuration file, its environment overrides and its secrets;
//! - [`telemetry`]: events, each one log line and its metrics, and the `/metrics` endpoint;
//! - [`error`]: the one error type, with an operator hint and an [`Action`] per variant.

pub mod apply;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod database;
pub mod error;
pub mod operator;
pub mod policy;
pub mod setup;
pub mod tail;
pub mod telemetry;
pub mod verify;

pub use conflict::RegionId;
pub use database::DatabaseUrl;
pub use error::{Action, Error, Result};

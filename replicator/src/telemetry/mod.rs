//! Telemetry: what the sidecar tells its operators — log lines and Prometheus metrics — from one
//! set of event structs (DESIGN §6).
//!
//! **Contract.**
//! - Every observable thing is an event struct in [`apply`], [`capture`] or [`probe`] whose
//!   `emit()` writes exactly one `tracing` line and updates its metrics. Code that does something
//!   worth observing builds the event and emits it; it never logs and counts separately, so logs
//!   and metrics cannot disagree.
//! - Metric names, types, help and label names live in one place, the [`catalogue`], which is the
//!   table of `compose/prometheus/README.md` that the alert rules are written against (a test
//!   keeps the two equal).
//! - Values are held by the process-wide [`registry`] and served by the [`server`] on
//!   `/metrics`; gauges that are states rather than happenings (the slot, parked transactions,
//!   consumer lag) are read every few seconds by the [`probe`] task.
//! - No event carries a secret: events take regions, tables, uuids, LSNs, counts and reasons,
//!   never a connection string, a row's values or a Kafka property.
//!
//! **Why events.** The same pattern as Vector's `internal_events`: one struct per thing that
//! happens makes the set of observable things reviewable in one folder, and gives each a name
//! that both the log line and the metric share.

pub mod apply;
pub mod capture;
pub mod catalogue;
pub mod probe;
pub mod registry;
pub mod server;

pub use probe::ProbeConfig;
pub use server::{MetricsServer, DEFAULT_PORT};

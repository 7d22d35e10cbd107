//! The integration-test harness: real servers, per-test isolation, waits on conditions.
//!
//! Every integration test runs against the lab that `dev/lab test` brings up (one PostgreSQL 15
//! cluster per region and one Kafka-protocol broker, all on loopback). The harness never mocks them
//! and never skips: when the lab is not up, a test fails and says how to start it.
//!
//! Isolation is by name, not by server: each test gets its own metadata database(s) cloned from the
//! Superset 6.1 template ([`Region::fresh_db`]), its own slot and publication names
//! ([`TestDb::unique_name`]), and its own topics and consumer groups ([`TestTopic`],
//! [`unique_name`]). Everything it created is dropped when its handle drops, even when the test
//! panics; what a killed run leaves behind is swept by the next `dev/lab --name test up`.
//! Waiting is always on a condition with a deadline ([`wait_until`]), never a bare sleep.

mod broker;
mod database;
mod error;
mod lab;
mod mesh;
mod private_broker;
mod process;
mod wait;

pub use broker::{consumer_config, producer_config, read_topic, Record, TestTopic, TopicReader};
pub use database::TestDb;
pub use error::HarnessError;
pub use lab::{Lab, Region};
pub use mesh::{Member, Mesh};
pub use private_broker::{end_offset, read_until, tansu_binary, PrivateBroker, TopicRecord};
pub use process::{replicator_binary, run_setup, Sidecar};
pub use wait::wait_until;

/// A name no other test (in this run or a concurrent one) uses: `<prefix>_<pid>_<seq>_<random>`,
/// lowercase, at most 48 characters, valid as a database, slot, publication, topic or group name.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(20)
        .collect();
    format!(
        "{prefix}_{}_{seq}_{}",
        std::process::id(),
        random.get(..8).unwrap_or("0")
    )
}

/// The integration-test fixture: Superset 6.1's real metadata schema (pg_dump, schema only).
pub const SUPERSET_SCHEMA_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/superset-6.1-metadata-schema.sql"
);

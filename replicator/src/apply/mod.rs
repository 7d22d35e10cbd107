//! Apply: other regions' changes, merged into this region's database (DESIGN §2 step 4).
//!
//! For each source transaction consumed from another region's topic, the applier:
//!
//! 1. waits (durably parked) until every uuid the transaction references exists in this region;
//! 2. translates uuids back to this region's local ids;
//! 3. merges each entity by the rules of DESIGN §3 (the `conflict` crate decides every winner);
//! 4. writes rows, clocks, conflicts and the consumer position in **one** transaction under this
//!    region's replication origin (so capture skips it).
//!
//! Where each part lives: [`consumer`] reads the topics from the stored positions,
//! [`source_txn`] reassembles source transactions, [`local_form`] turns a canonical
//! [`envelope::EntityChange`] into column values in this region's terms (or says which uuids the
//! write waits for), [`transaction`] merges and writes one source transaction ([`versions`],
//! [`rows`], [`keys`], [`derived`]), `batch` applies many in one database transaction with the
//! positions ([`ledger`]), and [`applier`] runs the session; [`statements`] are the per-change
//! statements it prepares once.

pub mod applier;
mod batch;
pub mod consumer;
pub mod derived;
pub mod keys;
pub mod ledger;
pub mod local_config;
pub mod local_form;
pub mod rows;
pub mod source_txn;
pub mod statements;
pub mod transaction;
pub mod versions;

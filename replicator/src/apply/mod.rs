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
//! What exists so far is step 2 and the input of step 1: [`local_form`] turns the fields of one
//! canonical [`envelope::EntityChange`] into column values in this region's terms, or says which
//! uuids the write still waits for (step 1 parks on them), or why the row cannot exist here.

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
pub mod transaction;
pub mod versions;

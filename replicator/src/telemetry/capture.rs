//! Events of the reader: the region's slot streamed and published.
//!
//! **Contract.** As for every event: one log line and its metrics per [`emit`](EventsPublished::emit).
//! Publishing is counted when the broker acknowledges (what the reader may confirm), not when a
//! record is handed to the producer.

use pgoutput::Lsn;

use super::catalogue::{EVENTS_PUBLISHED, SLOT_ACTIVE, SLOT_RETAINED_WAL, SLOT_SAFE_WAL_SIZE};
use super::registry::global;

/// A reader session started streaming the slot.
#[derive(Debug)]
pub struct ReaderStreaming<'a> {
    pub slot: &'a str,
    pub from: Lsn,
    pub topic: &'a str,
}

impl ReaderStreaming<'_> {
    pub fn emit(self) {
        tracing::info!(slot = self.slot, from = %self.from, topic = self.topic, "reader streaming");
    }
}

/// A reader session ended (cancelled, or on an error it reports itself).
#[derive(Debug)]
pub struct ReaderSessionEnded {
    pub confirmed: Lsn,
    pub orphans: u64,
    pub ok: bool,
}

impl ReaderSessionEnded {
    pub fn emit(self) {
        tracing::info!(confirmed = %self.confirmed, orphans = self.orphans, ok = self.ok, "reader session ended");
    }
}

/// The broker acknowledged `count` more records of the region's topic.
#[derive(Debug)]
pub struct EventsPublished<'a> {
    pub region: &'a str,
    pub count: u64,
}

impl EventsPublished<'_> {
    pub fn emit(self) {
        if self.count == 0 {
            return;
        }
        global().add(&EVENTS_PUBLISHED, &[self.region], self.count as f64);
        tracing::trace!(region = self.region, count = self.count, "events published");
    }
}

/// What `pg_replication_slots` says about the region's slot.
#[derive(Debug)]
pub struct SlotObserved<'a> {
    pub region: &'a str,
    pub slot: &'a str,
    /// `None`: the slot does not exist.
    pub state: Option<SlotState>,
}

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    pub active: bool,
    /// `pg_current_wal_lsn() - restart_lsn`; `None` when the slot has no restart LSN.
    pub retained_wal_bytes: Option<i64>,
    /// `None` when `max_slot_wal_keep_size` is unlimited.
    pub safe_wal_size: Option<i64>,
}

impl SlotObserved<'_> {
    pub fn emit(self) {
        let registry = global();
        let labels = [self.region];
        let state = self.state.unwrap_or(SlotState {
            active: false,
            retained_wal_bytes: None,
            safe_wal_size: None,
        });
        registry.set(&SLOT_ACTIVE, &labels, if state.active { 1.0 } else { 0.0 });
        match state.retained_wal_bytes {
            Some(bytes) => registry.set(&SLOT_RETAINED_WAL, &labels, bytes as f64),
            None => registry.remove(&SLOT_RETAINED_WAL, &labels),
        }
        match state.safe_wal_size {
            Some(bytes) => registry.set(&SLOT_SAFE_WAL_SIZE, &labels, bytes as f64),
            None => registry.remove(&SLOT_SAFE_WAL_SIZE, &labels),
        }
        if self.state.is_none() {
            tracing::warn!(
                region = self.region,
                slot = self.slot,
                "the replication slot does not exist"
            );
        } else {
            tracing::debug!(
                region = self.region,
                slot = self.slot,
                ?state,
                "slot observed"
            );
        }
    }
}

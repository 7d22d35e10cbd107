//! Events of the applier: what became of other regions' transactions here.
//!
//! **Contract.** Each event is a struct whose [`emit`](TransactionApplied::emit) writes one log
//! line and updates its metrics; the applier emits them only once what they report is committed
//! (a transaction rolled back and tried again is never counted twice). Lag is measured against the
//! source's clock: `now − commit time` (or heartbeat time), clamped at 0.

use std::time::{SystemTime, UNIX_EPOCH};

use pgoutput::Lsn;
use uuid::Uuid;

use super::catalogue::{
    CONFLICTS, CONSUMER_LAG, EVENTS_APPLIED, LAG_SECONDS, LAST_HEARTBEAT, PARKED, QUARANTINED,
};
use super::registry::global;
use crate::apply::transaction::Applied;
use crate::policy::{self, Identity};

/// Seconds since the Unix epoch, now.
pub(super) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn micros_to_seconds(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// The applier's session started.
#[derive(Debug)]
pub struct ApplierStarted<'a> {
    pub region: &'a str,
    /// Each source region with its topic.
    pub sources: &'a [(conflict::RegionId, String)],
}

impl ApplierStarted<'_> {
    pub fn emit(self) {
        tracing::info!(region = self.region, sources = ?self.sources, "applier started");
    }
}

/// A source transaction was applied and committed here (directly, or from the parked ones).
#[derive(Debug)]
pub struct TransactionApplied {
    pub source: String,
    pub target: String,
    pub commit_lsn: Lsn,
    /// The source's commit time (Unix µs).
    pub commit_time: i64,
    pub applied: Applied,
    /// Taken up from `replicator.parked`: its lag says how long it waited, not how far behind
    /// the stream is, so it does not set the lag gauge.
    pub was_parked: bool,
}

impl TransactionApplied {
    pub fn emit(self) {
        let a = &self.applied;
        let source = self.source.as_str();
        let registry = global();
        for (kind, count) in [
            ("insert", a.inserted),
            ("update", a.updated),
            ("delete", a.deleted),
            ("unchanged", a.unchanged),
            ("skipped", a.skipped),
        ] {
            if count > 0 {
                registry.add(&EVENTS_APPLIED, &[source, kind], count as f64);
            }
        }
        let lag = (now_seconds() - micros_to_seconds(self.commit_time)).max(0.0);
        if self.was_parked {
            registry.shift(&PARKED, &[source], -1.0);
        } else {
            registry.set(&LAG_SECONDS, &[source, &self.target], lag);
        }
        for conflict in &a.conflicts_detected {
            conflict.emit();
        }
        if self.was_parked {
            tracing::info!(source, commit_lsn = %self.commit_lsn, ?a, "parked transaction applied");
        } else if a.entities > 0 {
            tracing::debug!(source, commit_lsn = %self.commit_lsn, lag_seconds = lag, ?a, "applied");
        }
    }
}

/// A heartbeat from `source` was applied in `target`.
#[derive(Debug)]
pub struct HeartbeatApplied {
    pub source: String,
    pub target: String,
    pub beat: u64,
    /// When the source wrote it (Unix µs, the source's clock).
    pub beat_time: i64,
}

impl HeartbeatApplied {
    pub fn emit(self) {
        let registry = global();
        let labels = [self.source.as_str(), self.target.as_str()];
        let beat_time = micros_to_seconds(self.beat_time);
        let lag = (now_seconds() - beat_time).max(0.0);
        registry.set(&LAST_HEARTBEAT, &labels, beat_time);
        registry.set(&LAG_SECONDS, &labels, lag);
        registry.add(&EVENTS_APPLIED, &[&self.source, "heartbeat"], 1.0);
        tracing::trace!(
            source = self.source,
            beat = self.beat,
            lag_seconds = lag,
            "heartbeat applied"
        );
    }
}

/// What the conflict metric groups fields by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnClass {
    /// `$exists`: a delete concurrent with an update.
    Existence,
    /// A column holding a reference to another row (a foreign key, or part of an association's
    /// identity).
    Reference,
    /// How a dashboard looks: `position_json`, `css`.
    Layout,
    /// Structured settings: JSON columns (`json_metadata`, `params`, `query_context`,
    /// `template_params`, `extra`, …).
    Metadata,
    /// Everything else: names, titles, descriptions, SQL, flags.
    Text,
}

impl ColumnClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnClass::Existence => "existence",
            ColumnClass::Reference => "reference",
            ColumnClass::Layout => "layout",
            ColumnClass::Metadata => "metadata",
            ColumnClass::Text => "text",
        }
    }
}

/// The class of field `field` of replicated table `table` (see [`ColumnClass`]).
pub fn column_class(table: &str, field: &str) -> ColumnClass {
    if field == conflict::FieldPath::existence().as_str() {
        return ColumnClass::Existence;
    }
    if let Some((_, rules)) = policy::superset().replicated_table(table) {
        let in_identity =
            matches!(rules.identity, Identity::Derived { parts } if parts.contains(&field));
        if rules.reference(field).is_some() || in_identity {
            return ColumnClass::Reference;
        }
        if rules.embedded.iter().any(|e| e.column == field) {
            return if field == "position_json" {
                ColumnClass::Layout
            } else {
                ColumnClass::Metadata
            };
        }
    }
    match field {
        "position_json" | "css" => ColumnClass::Layout,
        f if f.ends_with("_json")
            || f.ends_with("params")
            || f.ends_with("metadata")
            || f.ends_with("extra")
            || f == "query_context" =>
        {
            ColumnClass::Metadata
        }
        _ => ColumnClass::Text,
    }
}

/// A conflict resolved while applying a change from `source` (logged to `replicator.conflict`
/// in the same transaction). Kept in [`Applied`] and emitted after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictDetected {
    pub source: String,
    pub table: String,
    pub entity: Uuid,
    pub field: String,
    /// `field` or `delete_update`.
    pub kind: &'static str,
    /// `local` or `incoming`.
    pub winner: &'static str,
}

impl ConflictDetected {
    pub fn emit(&self) {
        let class = column_class(&self.table, &self.field);
        global().add(&CONFLICTS, &[&self.source, self.kind, class.as_str()], 1.0);
        tracing::info!(
            source = self.source,
            table = self.table,
            entity = %self.entity,
            field = self.field,
            kind = self.kind,
            column_class = class.as_str(),
            winner = self.winner,
            "conflict"
        );
    }
}

/// A source transaction was parked (durably, with the position) until what it waits for arrives.
#[derive(Debug)]
pub struct TransactionParked {
    pub source: String,
    pub commit_lsn: Lsn,
    pub reason: String,
}

impl TransactionParked {
    pub fn emit(self) {
        global().shift(&PARKED, &[&self.source], 1.0);
        tracing::info!(source = self.source, commit_lsn = %self.commit_lsn, reason = self.reason, "parked");
    }
}

/// The number of parked transactions of `source`, as `replicator.parked` holds them (the probe
/// reads it every few seconds, correcting what the events counted).
#[derive(Debug)]
pub struct ParkedCounted<'a> {
    pub source: &'a str,
    pub count: i64,
}

impl ParkedCounted<'_> {
    pub fn emit(self) {
        global().set(&PARKED, &[self.source], self.count as f64);
        tracing::trace!(source = self.source, count = self.count, "parked counted");
    }
}

/// Records or a transaction from `source` went to `replicator.quarantine` (committed).
#[derive(Debug)]
pub struct RecordsQuarantined {
    pub source: String,
    /// `undecodable`, `wrong_source`, `incomplete_transaction` or `unappliable`.
    pub reason: &'static str,
    pub commit_lsn: Option<Lsn>,
    pub records: usize,
    pub detail: String,
}

impl RecordsQuarantined {
    pub fn emit(self) {
        global().add(&QUARANTINED, &[&self.source, self.reason], 1.0);
        tracing::warn!(
            source = self.source,
            reason = self.reason,
            commit_lsn = self.commit_lsn.map(|l| l.to_string()),
            records = self.records,
            detail = self.detail,
            "records quarantined"
        );
    }
}

/// Events of one apply transaction, held until it commits (module docs): a batch rolled back
/// and read again must not count twice.
#[derive(Debug, Default)]
pub struct AfterCommit {
    events: Vec<Pending>,
}

#[derive(Debug)]
enum Pending {
    Applied(TransactionApplied),
    Heartbeat(HeartbeatApplied),
    Parked(TransactionParked),
    Quarantined(RecordsQuarantined),
}

impl AfterCommit {
    pub fn applied(&mut self, event: TransactionApplied) {
        self.events.push(Pending::Applied(event));
    }

    pub fn heartbeat(&mut self, event: HeartbeatApplied) {
        self.events.push(Pending::Heartbeat(event));
    }

    pub fn parked(&mut self, event: TransactionParked) {
        self.events.push(Pending::Parked(event));
    }

    pub fn quarantined(&mut self, event: RecordsQuarantined) {
        self.events.push(Pending::Quarantined(event));
    }

    /// Emits them all, in order: call right after the commit succeeded.
    pub fn emit(self) {
        for event in self.events {
            match event {
                Pending::Applied(e) => e.emit(),
                Pending::Heartbeat(e) => e.emit(),
                Pending::Parked(e) => e.emit(),
                Pending::Quarantined(e) => e.emit(),
            }
        }
    }
}

/// Records in `source`'s topic beyond what the applier consumed.
#[derive(Debug)]
pub struct ConsumerLagMeasured<'a> {
    pub source: &'a str,
    pub high_watermark: i64,
    /// The applier's stored position (`replicator.applied_position.resume_offset`; 0 before
    /// the first record).
    pub position: i64,
}

impl ConsumerLagMeasured<'_> {
    pub fn emit(self) {
        // Tansu 0.6 answers ListOffsets short (catalogue docs): a negative difference is that,
        // not a consumer ahead of the log.
        let lag = (self.high_watermark - self.position).max(0);
        global().set(&CONSUMER_LAG, &[self.source], lag as f64);
        tracing::trace!(
            source = self.source,
            high_watermark = self.high_watermark,
            position = self.position,
            lag,
            "consumer lag measured"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_fall_into_column_classes() {
        let cases = [
            ("dashboards", "$exists", ColumnClass::Existence),
            ("dashboards", "position_json", ColumnClass::Layout),
            ("dashboards", "css", ColumnClass::Layout),
            ("dashboards", "json_metadata", ColumnClass::Metadata),
            ("dashboards", "dashboard_title", ColumnClass::Text),
            ("slices", "params", ColumnClass::Metadata),
            ("slices", "slice_name", ColumnClass::Text),
            ("slices", "datasource_id", ColumnClass::Reference),
            ("dashboard_slices", "slice_id", ColumnClass::Reference),
            ("tables", "database_id", ColumnClass::Reference),
            ("tables", "extra", ColumnClass::Metadata),
        ];
        for (table, field, class) in cases {
            assert_eq!(column_class(table, field), class, "{table}.{field}");
        }
    }
}

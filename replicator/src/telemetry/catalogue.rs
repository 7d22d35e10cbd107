//! The metric catalogue: every metric the sidecar exports, in one place.
//!
//! **Contract.** Names, types and label names are exactly those of the table in
//! `compose/prometheus/README.md`, which the alert rules (`compose/prometheus/alerts.yml`) are
//! written against; a unit test compares the two. Renaming a metric or a label breaks alerting:
//! change the rules, their tests and that table together. Label *values* are documented here.

/// Counter or gauge (the only two the sidecar exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever increases (from 0 when the process starts).
    Counter,
    /// Goes up and down; the last value set.
    Gauge,
}

impl Kind {
    /// The word of the exposition format's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in the order the events give their values.
    pub labels: &'static [&'static str],
}

/// Seconds from a commit (or heartbeat) in `source` until it was applied in `target`: set on
/// every applied transaction and heartbeat, so an idle region keeps reporting it. Clock skew
/// between the regions' hosts is in it; a negative difference reads 0.
pub static LAG_SECONDS: Metric = Metric {
    name: "replicator_lag_seconds",
    help: "Seconds from a commit or heartbeat in source until it was applied in target.",
    kind: Kind::Gauge,
    labels: &["source", "target"],
};

/// The source's own time of the last heartbeat from `source` applied in `target`.
pub static LAST_HEARTBEAT: Metric = Metric {
    name: "replicator_last_heartbeat_timestamp_seconds",
    help: "Unix time of the last heartbeat from source applied in target.",
    kind: Kind::Gauge,
    labels: &["source", "target"],
};

/// 1 while the region's slot has a consumer (`pg_replication_slots.active`), else 0 (also when
/// the slot is gone).
pub static SLOT_ACTIVE: Metric = Metric {
    name: "replicator_slot_active",
    help: "1 while the region's replication slot has a consumer, else 0.",
    kind: Kind::Gauge,
    labels: &["region"],
};

/// `pg_current_wal_lsn() - restart_lsn` of the slot.
pub static SLOT_RETAINED_WAL: Metric = Metric {
    name: "replicator_slot_retained_wal_bytes",
    help: "WAL that PostgreSQL keeps for the region's replication slot, in bytes.",
    kind: Kind::Gauge,
    labels: &["region"],
};

/// `pg_replication_slots.safe_wal_size`; absent while `max_slot_wal_keep_size` is unlimited.
pub static SLOT_SAFE_WAL_SIZE: Metric = Metric {
    name: "replicator_slot_safe_wal_size_bytes",
    help: "WAL that can still be written before the slot is invalidated (absent when unlimited).",
    kind: Kind::Gauge,
    labels: &["region"],
};

/// High watermark of `source`'s topic minus the next offset the applier reads. **Tansu 0.6**
/// (the lab's broker) answers ListOffsets short (the base offset of the most recently written
/// batch plus one, not the end of that batch), so there it reads low, often 0 (a negative
/// difference is clamped); against Apache Kafka it is exact.
pub static CONSUMER_LAG: Metric = Metric {
    name: "replicator_consumer_lag_records",
    help: "Records in source's topic not consumed yet (high watermark minus position).",
    kind: Kind::Gauge,
    labels: &["source"],
};

/// Records of the region's topic the broker acknowledged (changes, heartbeats, commit records).
pub static EVENTS_PUBLISHED: Metric = Metric {
    name: "replicator_events_published_total",
    help: "Events the region's reader published (records acknowledged by the broker).",
    kind: Kind::Counter,
    labels: &["region"],
};

/// Events from `source` applied here. `kind`: `insert`, `update`, `delete` (rows written),
/// `unchanged` (merged away: duplicates, replays, older values), `skipped` (a row that cannot
/// exist here), `heartbeat`.
pub static EVENTS_APPLIED: Metric = Metric {
    name: "replicator_events_applied_total",
    help: "Events from source applied here, by kind (insert, update, delete, unchanged, skipped, heartbeat).",
    kind: Kind::Counter,
    labels: &["source", "kind"],
};

/// Conflicts resolved while applying changes from `source`. `kind`: `field` (concurrent writes
/// of one field) or `delete_update`; `column_class`: see
/// [`column_class`](super::apply::column_class).
pub static CONFLICTS: Metric = Metric {
    name: "replicator_conflicts_total",
    help: "Conflicts resolved while applying changes from source, by kind and column class.",
    kind: Kind::Counter,
    labels: &["source", "kind", "column_class"],
};

/// Rows of `replicator.parked` from `source`.
pub static PARKED: Metric = Metric {
    name: "replicator_parked_transactions",
    help: "Transactions from source waiting for something they depend on.",
    kind: Kind::Gauge,
    labels: &["source"],
};

/// `reason`: `undecodable`, `wrong_source`, `incomplete_transaction` (records that never form a
/// transaction) or `unappliable` (a transaction this region cannot write).
pub static QUARANTINED: Metric = Metric {
    name: "replicator_quarantined_total",
    help: "Changes from source quarantined, by reason.",
    kind: Kind::Counter,
    labels: &["source", "reason"],
};

/// Every metric, in the order `/metrics` shows them.
pub static CATALOGUE: &[&Metric] = &[
    &LAG_SECONDS,
    &LAST_HEARTBEAT,
    &SLOT_ACTIVE,
    &SLOT_RETAINED_WAL,
    &SLOT_SAFE_WAL_SIZE,
    &CONSUMER_LAG,
    &EVENTS_PUBLISHED,
    &EVENTS_APPLIED,
    &CONFLICTS,
    &PARKED,
    &QUARANTINED,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The alert rules' contract: the table in compose/prometheus/README.md.
    const ALERTING_README: &str = include_str!("../../../compose/prometheus/README.md");

    /// `(name, type, labels)` of each `replicator_*` row of the README's metric table.
    fn readme_rows() -> Vec<(String, String, Vec<String>)> {
        let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
        ALERTING_README
            .lines()
            .filter(|line| line.starts_with("| `replicator_"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
                let labels = cell(3)
                    .split(',')
                    .map(unquote)
                    .filter(|l| !l.is_empty())
                    .collect();
                (unquote(cell(1)), unquote(cell(2)), labels)
            })
            .collect()
    }

    #[test]
    fn the_catalogue_is_the_table_the_alert_rules_use() {
        let readme = readme_rows();
        let ours: Vec<(String, String, Vec<String>)> = CATALOGUE
            .iter()
            .map(|m| {
                (
                    m.name.to_owned(),
                    m.kind.as_str().to_owned(),
                    m.labels.iter().map(|l| (*l).to_owned()).collect(),
                )
            })
            .collect();
        assert_eq!(readme.len(), 11, "{readme:?}");
        assert_eq!(ours, readme);
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for metric in CATALOGUE {
            assert!(metric.name.starts_with("replicator_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}",
                metric.name
            );
            assert!(!metric.help.contains('\n'), "{}", metric.name);
        }
    }
}

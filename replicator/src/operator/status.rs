//! `replicator status` and `replicator lag`: how far this region has applied each other region,
//! and what its own slot holds back.
//!
//! **Contract.** The sources are the rows of `replicator.applied_position` (a region that never
//! delivered anything here has none), every source that has parked or quarantined transactions,
//! and the `expected` ones the operator names, which show as "never applied" when absent. Per
//! source: where the applier resumes, the last applied source commit (lsn and time) and heartbeat,
//! the **lag** — now minus the newer of the last applied heartbeat time and commit time of that
//! source (DESIGN §6: measured from the source's clock, so clock skew between regions shows in
//! it) — and how many of its transactions are parked or quarantined here. The own slot is read
//! from `pg_replication_slots`: whether a reader streams it, the WAL it retains
//! (`pg_current_wal_lsn() - restart_lsn`), `safe_wal_size` and `wal_status`.
//!
//! **Why lag uses heartbeats too.** An idle source commits nothing; its heartbeats still flow the
//! same path, so a lag that grows means the path is broken, not that nobody edits dashboards.

use std::fmt;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::error::{Error, Result};

use super::layout::{bytes, or_dash, seconds, Table};
use super::{get, rfc3339, Report};

/// What this region applied of one source.
#[derive(Debug, Clone)]
pub struct Applied {
    pub topic: String,
    pub resume_offset: i64,
    pub last_commit_lsn: Option<String>,
    pub last_commit_time: Option<String>,
    pub last_beat: Option<i64>,
    pub last_beat_time: Option<String>,
    pub applied_at: String,
}

/// One source region, as this region sees it.
#[derive(Debug, Clone)]
pub struct Source {
    pub source: String,
    /// `None`: nothing of it was ever applied here.
    pub applied: Option<Applied>,
    pub lag_seconds: Option<f64>,
    /// What the lag is measured against: `heartbeat` or `commit`.
    pub lag_basis: Option<String>,
    pub parked: i64,
    pub quarantined: i64,
}

/// This region's own replication slot.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub found: bool,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub retained_wal_bytes: Option<i64>,
    pub safe_wal_size: Option<i64>,
    pub wal_status: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
}

/// `replicator status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub region: String,
    pub database: String,
    pub as_of: String,
    pub slot: Slot,
    pub sources: Vec<Source>,
    pub unresolved_conflicts: i64,
}

/// `replicator lag`: the lag of every source.
#[derive(Debug, Clone)]
pub struct Lag {
    pub region: String,
    pub sources: Vec<Source>,
}

/// Reads every source's position and counts (module docs).
pub async fn sources(client: &Client, expected: &[String]) -> Result<Vec<Source>> {
    let sql = format!(
        "WITH names AS (
             SELECT source FROM replicator.applied_position
             UNION SELECT source FROM replicator.parked
             UNION SELECT source FROM replicator.quarantine
             UNION SELECT unnest($1::text[]))
         SELECT n.source, p.topic, p.resume_offset, p.last_commit_lsn::text, {}, p.last_beat,
                {}, {},
                extract(epoch FROM clock_timestamp()
                                   - greatest(p.last_beat_time, p.last_commit_time))::float8,
                CASE WHEN p.last_beat_time IS NULL AND p.last_commit_time IS NULL THEN NULL
                     WHEN p.last_commit_time IS NULL OR p.last_beat_time >= p.last_commit_time
                         THEN 'heartbeat'
                     ELSE 'commit' END,
                (SELECT count(*) FROM replicator.parked AS k WHERE k.source = n.source),
                (SELECT count(*) FROM replicator.quarantine AS q WHERE q.source = n.source)
         FROM names AS n LEFT JOIN replicator.applied_position AS p USING (source)
         ORDER BY n.source",
        rfc3339("p.last_commit_time"),
        rfc3339("p.last_beat_time"),
        rfc3339("p.applied_at"),
    );
    let rows = client
        .query(&sql, &[&expected])
        .await
        .map_err(Error::pg("read the applied positions"))?;
    let what = "an applied position";
    rows.iter()
        .map(|row| {
            let topic: Option<String> = get(row, 1, what)?;
            let applied = match topic {
                Some(topic) => Some(Applied {
                    topic,
                    resume_offset: get(row, 2, what)?,
                    last_commit_lsn: get(row, 3, what)?,
                    last_commit_time: get(row, 4, what)?,
                    last_beat: get(row, 5, what)?,
                    last_beat_time: get(row, 6, what)?,
                    applied_at: get::<Option<String>>(row, 7, what)?.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(Source {
                source: get(row, 0, what)?,
                applied,
                lag_seconds: get(row, 8, what)?,
                lag_basis: get(row, 9, what)?,
                parked: get(row, 10, what)?,
                quarantined: get(row, 11, what)?,
            })
        })
        .collect()
}

/// Reads the slot named `slot`.
pub async fn slot(client: &Client, slot: &str) -> Result<Slot> {
    let row = client
        .query_opt(
            "SELECT active, active_pid,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                    safe_wal_size, wal_status, confirmed_flush_lsn::text
             FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(Error::pg("read the replication slot"))?;
    let what = "the replication slot";
    Ok(match row {
        Some(row) => Slot {
            name: slot.to_owned(),
            found: true,
            active: get(&row, 0, what)?,
            active_pid: get(&row, 1, what)?,
            retained_wal_bytes: get(&row, 2, what)?,
            safe_wal_size: get(&row, 3, what)?,
            wal_status: get(&row, 4, what)?,
            confirmed_flush_lsn: get(&row, 5, what)?,
        },
        None => Slot {
            name: slot.to_owned(),
            found: false,
            active: false,
            active_pid: None,
            retained_wal_bytes: None,
            safe_wal_size: None,
            wal_status: None,
            confirmed_flush_lsn: None,
        },
    })
}

/// `replicator status` of the region `client` is connected to.
pub async fn status(
    client: &Client,
    region: String,
    database: String,
    slot_name: &str,
    expected: &[String],
) -> Result<Status> {
    let row = client
        .query_one(
            &format!(
                "SELECT {}, (SELECT count(*) FROM replicator.conflict WHERE resolved_at IS NULL)",
                rfc3339("clock_timestamp()")
            ),
            &[],
        )
        .await
        .map_err(Error::pg("count unresolved conflicts"))?;
    Ok(Status {
        region,
        database,
        as_of: get(&row, 0, "the time")?,
        unresolved_conflicts: get(&row, 1, "the conflict count")?,
        slot: slot(client, slot_name).await?,
        sources: sources(client, expected).await?,
    })
}

fn source_json(s: &Source) -> Value {
    let applied = s.applied.as_ref().map(|a| {
        json!({
            "topic": a.topic,
            "resume_offset": a.resume_offset,
            "last_commit_lsn": a.last_commit_lsn,
            "last_commit_time": a.last_commit_time,
            "last_heartbeat": a.last_beat,
            "last_heartbeat_time": a.last_beat_time,
            "applied_at": a.applied_at,
        })
    });
    json!({
        "source": s.source,
        "never_applied": s.applied.is_none(),
        "applied_position": applied,
        "lag_seconds": s.lag_seconds,
        "lag_measured_from": s.lag_basis,
        "parked": s.parked,
        "quarantined": s.quarantined,
    })
}

impl Report for Status {
    fn to_json(&self) -> Value {
        let slot = &self.slot;
        json!({
            "region": self.region,
            "database": self.database,
            "as_of": self.as_of,
            "slot": {
                "name": slot.name,
                "exists": slot.found,
                "active": slot.active,
                "active_pid": slot.active_pid,
                "retained_wal_bytes": slot.retained_wal_bytes,
                "safe_wal_size": slot.safe_wal_size,
                "wal_status": slot.wal_status,
                "confirmed_flush_lsn": slot.confirmed_flush_lsn,
            },
            "sources": self.sources.iter().map(source_json).collect::<Vec<_>>(),
            "unresolved_conflicts": self.unresolved_conflicts,
        })
    }
}

fn lag_cell(s: &Source) -> String {
    match (s.lag_seconds, &s.applied) {
        (_, None) => "never applied".into(),
        (Some(lag), Some(_)) => seconds(lag),
        (None, Some(_)) => "-".into(),
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "region {} ({}), as of {}",
            self.region, self.database, self.as_of
        )?;
        let slot = &self.slot;
        if slot.found {
            writeln!(
                f,
                "slot {}: {}, retains {} of WAL, safe_wal_size {}, wal_status {}, confirmed {}",
                slot.name,
                if slot.active {
                    format!("active (pid {})", or_dash(slot.active_pid))
                } else {
                    "INACTIVE (no reader streams it)".to_owned()
                },
                slot.retained_wal_bytes.map_or_else(|| "?".into(), bytes),
                slot.safe_wal_size.map_or_else(|| "unlimited".into(), bytes),
                or_dash(slot.wal_status.as_deref()),
                or_dash(slot.confirmed_flush_lsn.as_deref()),
            )?;
        } else {
            writeln!(f, "slot {}: MISSING in this database", slot.name)?;
        }
        writeln!(f, "unresolved conflicts: {}", self.unresolved_conflicts)?;
        writeln!(f)?;
        if self.sources.is_empty() {
            return writeln!(f, "no source has delivered anything here yet");
        }
        let mut table = Table::new(&[
            "source",
            "lag",
            "resume offset",
            "last commit lsn",
            "last commit time",
            "last heartbeat time",
            "parked",
            "quarantined",
        ]);
        for s in &self.sources {
            let a = s.applied.as_ref();
            table.row(vec![
                s.source.clone(),
                lag_cell(s),
                or_dash(a.map(|a| a.resume_offset)),
                or_dash(a.and_then(|a| a.last_commit_lsn.as_deref())),
                or_dash(a.and_then(|a| a.last_commit_time.as_deref())),
                or_dash(a.and_then(|a| a.last_beat_time.as_deref())),
                s.parked.to_string(),
                s.quarantined.to_string(),
            ]);
        }
        write!(f, "{table}")
    }
}

impl Report for Lag {
    fn to_json(&self) -> Value {
        let lag: serde_json::Map<String, Value> = self
            .sources
            .iter()
            .map(|s| (s.source.clone(), json!(s.lag_seconds)))
            .collect();
        json!({"region": self.region, "lag_seconds": lag})
    }
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = Table::new(&["source", "lag", "seconds", "measured from"]);
        for s in &self.sources {
            table.row(vec![
                s.source.clone(),
                lag_cell(s),
                s.lag_seconds
                    .map_or_else(|| "-".into(), |l| format!("{l:.3}")),
                or_dash(s.lag_basis.as_deref()),
            ]);
        }
        if table.is_empty() {
            return writeln!(
                f,
                "region {}: no source has delivered anything here yet",
                self.region
            );
        }
        write!(f, "{table}")
    }
}

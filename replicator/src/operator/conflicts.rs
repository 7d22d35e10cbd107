//! `replicator conflicts list` and `show`: the conflict log of this region (DESIGN §3).
//!
//! **Contract.** Each row of `replicator.conflict` is one pair of concurrent writes of one field
//! that met in this region: both values (as PostgreSQL prints them here, in this region's ids),
//! both dots, hlcs and entity clocks, which side won and when it was detected. Every region that
//! meets the same pair logs it under its own id, with "local" and "incoming" seen from there;
//! the winner is the same everywhere. `list` filters by time, kind, entity, table and whether an
//! operator resolved it; `show` prints one conflict with both versions side by side and the line
//! diff of the two values ([`ValueDiff`]).

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::diff::ValueDiff;
use super::layout::{one_line, or_dash, Table};
use super::{get, hlc_time, rfc3339, Report};

/// One side of a conflict.
#[derive(Debug, Clone)]
pub struct Version {
    pub region: String,
    pub counter: i64,
    pub hlc: i64,
    pub hlc_time: String,
    pub clock: Value,
    pub value: Option<String>,
}

impl Version {
    pub fn dot(&self) -> String {
        format!("{}:{}", self.region, self.counter)
    }

    /// The hlc as `wall_ms.logical`, as the `conflict` crate prints it.
    pub fn hlc_text(&self) -> String {
        conflict::Hlc::from_i64(self.hlc).map_or_else(|_| self.hlc.to_string(), |h| h.to_string())
    }

    fn to_json(&self) -> Value {
        json!({
            "region": self.region,
            "dot": self.dot(),
            "hlc": self.hlc,
            "hlc_text": self.hlc_text(),
            "hlc_time": self.hlc_time,
            "clock": self.clock,
            "value": self.value,
        })
    }
}

/// One logged conflict.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub id: i64,
    pub table: String,
    pub uuid: Uuid,
    pub field: String,
    /// `field` or `delete_update`.
    pub kind: String,
    /// The region whose transaction brought the incoming side.
    pub source: String,
    pub local: Version,
    pub incoming: Version,
    /// `local` or `incoming`.
    pub winner: String,
    pub commit_lsn: String,
    pub detected_at: String,
    pub resolved_at: Option<String>,
    pub resolved_keep: Option<String>,
}

impl Conflict {
    pub fn winning(&self) -> &Version {
        if self.winner == "local" {
            &self.local
        } else {
            &self.incoming
        }
    }

    pub fn losing(&self) -> &Version {
        if self.winner == "local" {
            &self.incoming
        } else {
            &self.local
        }
    }

    fn summary_json(&self) -> Value {
        json!({
            "id": self.id,
            "detected_at": self.detected_at,
            "table": self.table,
            "uuid": self.uuid.to_string(),
            "field": self.field,
            "kind": self.kind,
            "source": self.source,
            "winner": self.winner,
            "winner_region": self.winning().region,
            "local": self.local.to_json(),
            "incoming": self.incoming.to_json(),
            "commit_lsn": self.commit_lsn,
            "resolved_at": self.resolved_at,
            "resolved_keep": self.resolved_keep,
        })
    }
}

/// Which conflicts `list` shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<Since>,
    pub kind: Option<String>,
    pub entity: Option<Uuid>,
    pub table: Option<String>,
    pub unresolved: bool,
    pub limit: i64,
}

/// `--since`: a duration back from now, or a point in time (RFC 3339, checked by PostgreSQL).
#[derive(Debug, Clone)]
pub enum Since {
    Ago(Duration),
    At(String),
}

impl Since {
    /// `1h`, `30min`, `2d`, `90s`, or `2024-05-01T12:00:00Z`.
    pub fn parse(text: &str) -> Self {
        match pgrepl::parse_duration_setting(text, Duration::from_secs(1)) {
            Some(ago) => Since::Ago(ago),
            None => Since::At(text.trim().to_owned()),
        }
    }
}

fn select(filter_sql: &str) -> String {
    format!(
        "SELECT id, table_name, uuid, field, kind, source,
                local_value, local_region, local_counter, local_hlc, local_clock, {},
                incoming_value, incoming_region, incoming_counter, incoming_hlc, incoming_clock, {},
                winner, commit_lsn::text, {}, {}, resolved_keep
         FROM replicator.conflict {filter_sql}",
        hlc_time("local_hlc"),
        hlc_time("incoming_hlc"),
        rfc3339("detected_at"),
        rfc3339("resolved_at"),
    )
}

fn version(row: &Row, at: usize) -> Result<Version> {
    let what = "a conflict";
    Ok(Version {
        value: get(row, at, what)?,
        region: get(row, at + 1, what)?,
        counter: get(row, at + 2, what)?,
        hlc: get(row, at + 3, what)?,
        clock: get(row, at + 4, what)?,
        hlc_time: get(row, at + 5, what)?,
    })
}

fn conflict(row: &Row) -> Result<Conflict> {
    let what = "a conflict";
    Ok(Conflict {
        id: get(row, 0, what)?,
        table: get(row, 1, what)?,
        uuid: get(row, 2, what)?,
        field: get(row, 3, what)?,
        kind: get(row, 4, what)?,
        source: get(row, 5, what)?,
        local: version(row, 6)?,
        incoming: version(row, 12)?,
        winner: get(row, 18, what)?,
        commit_lsn: get(row, 19, what)?,
        detected_at: get(row, 20, what)?,
        resolved_at: get(row, 21, what)?,
        resolved_keep: get(row, 22, what)?,
    })
}

/// The conflicts `filter` selects, newest first.
pub async fn list(client: &Client, filter: &Filter) -> Result<ConflictList> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut param = |value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        params.len()
    };
    match &filter.since {
        Some(Since::Ago(ago)) => {
            let n = param(Box::new(ago.as_secs_f64()));
            conditions.push(format!(
                "detected_at >= now() - make_interval(secs => ${n}::float8)"
            ));
        }
        Some(Since::At(at)) => {
            check_time(client, at).await?;
            let n = param(Box::new(at.clone()));
            conditions.push(format!("detected_at >= ${n}::text::timestamptz"));
        }
        None => {}
    }
    if let Some(kind) = &filter.kind {
        let n = param(Box::new(kind.clone()));
        conditions.push(format!("kind = ${n}"));
    }
    if let Some(entity) = filter.entity {
        let n = param(Box::new(entity));
        conditions.push(format!("uuid = ${n}"));
    }
    if let Some(table) = &filter.table {
        let n = param(Box::new(table.clone()));
        conditions.push(format!("table_name = ${n}"));
    }
    if filter.unresolved {
        conditions.push("resolved_at IS NULL".into());
    }
    let n = param(Box::new(filter.limit.max(1)));
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!("{} ORDER BY id DESC LIMIT ${n}", select(&filter_sql));
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client
        .query(&sql, &refs)
        .await
        .map_err(Error::pg("read the conflict log"))?;
    let conflicts = rows.iter().map(conflict).collect::<Result<Vec<_>>>()?;
    Ok(ConflictList { conflicts })
}

/// Refuses a `--since` that is neither a duration nor a time PostgreSQL understands.
async fn check_time(client: &Client, at: &str) -> Result<()> {
    client
        .query_one("SELECT $1::text::timestamptz", &[&at])
        .await
        .map(|_| ())
        .map_err(|_| Error::Config {
            problem: format!(
                "--since {at:?} is neither a duration (`1h`, `30min`, `2d`) nor an RFC 3339 time (`2024-05-01T12:00:00Z`)"
            ),
        })
}

/// One conflict by id.
pub async fn get_one(client: &Client, id: i64) -> Result<Conflict> {
    let row = client
        .query_opt(&select("WHERE id = $1"), &[&id])
        .await
        .map_err(Error::pg("read a conflict"))?
        .ok_or(Error::NoSuchRecord {
            kind: "conflict",
            id,
        })?;
    conflict(&row)
}

/// `conflicts list`.
#[derive(Debug, Clone)]
pub struct ConflictList {
    pub conflicts: Vec<Conflict>,
}

impl Report for ConflictList {
    fn to_json(&self) -> Value {
        Value::Array(self.conflicts.iter().map(Conflict::summary_json).collect())
    }
}

impl fmt::Display for ConflictList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conflicts.is_empty() {
            return writeln!(f, "no conflicts");
        }
        let mut table = Table::new(&[
            "id", "detected", "table", "entity", "field", "kind", "winner", "loser", "resolved",
        ]);
        for c in &self.conflicts {
            let side = |v: &Version| {
                format!(
                    "{} {}",
                    v.dot(),
                    one_line(v.value.as_deref().unwrap_or("NULL"), 24)
                )
            };
            table.row(vec![
                c.id.to_string(),
                c.detected_at.clone(),
                c.table.clone(),
                c.uuid.to_string(),
                c.field.clone(),
                c.kind.clone(),
                side(c.winning()),
                side(c.losing()),
                match (&c.resolved_at, &c.resolved_keep) {
                    (Some(_), Some(keep)) => format!("kept {keep}"),
                    (Some(_), None) => "yes".into(),
                    _ => "no".into(),
                },
            ]);
        }
        write!(f, "{table}")
    }
}

/// `conflicts show`: one conflict with the diff of its values.
#[derive(Debug, Clone)]
pub struct ConflictDetail {
    pub conflict: Conflict,
    pub diff: ValueDiff,
}

impl ConflictDetail {
    pub fn new(conflict: Conflict) -> Self {
        let diff = ValueDiff::new(
            conflict.local.value.as_deref(),
            conflict.incoming.value.as_deref(),
        );
        ConflictDetail { conflict, diff }
    }
}

impl Report for ConflictDetail {
    fn to_json(&self) -> Value {
        let mut value = self.conflict.summary_json();
        if let Some(object) = value.as_object_mut() {
            object.insert("diff".into(), json!(self.diff.rendered()));
            object.insert("values_are_json".into(), json!(self.diff.json));
        }
        value
    }
}

impl fmt::Display for ConflictDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.conflict;
        writeln!(
            f,
            "conflict {} ({}): {} {} field {}",
            c.id, c.kind, c.table, c.uuid, c.field
        )?;
        writeln!(
            f,
            "detected {} applying source {} (commit {})",
            c.detected_at, c.source, c.commit_lsn
        )?;
        let mark = |side: &str| if c.winner == side { " (winner)" } else { "" };
        let mut table = Table::new(&[
            "",
            &format!("local {}{}", c.local.region, mark("local")),
            &format!("incoming {}{}", c.incoming.region, mark("incoming")),
        ]);
        let (l, i) = (&c.local, &c.incoming);
        table.row(vec!["dot".into(), l.dot(), i.dot()]);
        table.row(vec!["hlc".into(), l.hlc_text(), i.hlc_text()]);
        table.row(vec![
            "hlc time".into(),
            l.hlc_time.clone(),
            i.hlc_time.clone(),
        ]);
        table.row(vec![
            "clock".into(),
            l.clock.to_string(),
            i.clock.to_string(),
        ]);
        let value = |v: &Version| or_dash(v.value.as_deref().map(|t| one_line(t, 60)));
        table.row(vec!["value".into(), value(l), value(i)]);
        write!(f, "{table}")?;
        writeln!(
            f,
            "winner: {} ({}), by (hlc, region)",
            c.winner,
            c.winning().region
        )?;
        match (&c.resolved_at, &c.resolved_keep) {
            (Some(at), keep) => writeln!(f, "resolved {at}, kept {}", or_dash(keep.as_deref()))?,
            (None, _) => writeln!(
                f,
                "not resolved (`replicator conflicts resolve {} --keep <region|winner|loser>`)",
                c.id
            )?,
        }
        writeln!(f)?;
        writeln!(
            f,
            "--- local {} ({})\n+++ incoming {} ({}){}",
            l.region,
            if c.winner == "local" {
                "winner"
            } else {
                "loser"
            },
            i.region,
            if c.winner == "incoming" {
                "winner"
            } else {
                "loser"
            },
            if self.diff.json {
                ", JSON pretty-printed with sorted keys"
            } else {
                ""
            }
        )?;
        if self.diff.is_same() {
            writeln!(f, "  (the values are equal)")?;
        }
        for line in self.diff.rendered() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

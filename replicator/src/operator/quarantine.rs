//! `replicator quarantine list` and `show`: what the applier could not decode or apply here
//! (DESIGN §5: "nothing is dropped silently").
//!
//! **Contract.** Each row of `replicator.quarantine` is one run of records from one source's
//! topic, kept as raw bytes with the reason and the error chain (`detail`). `list` shows them
//! newest first; `show` prints one with its offsets and every record decoded with
//! [`envelope::Codec`] (as `replicator tail` prints records) when it decodes, in hex when it
//! does not — the bytes are what a bug report needs. Both only read.

use std::fmt;
use std::fmt::Write as _;

use envelope::Codec;
use serde_json::{json, Value};
use tokio_postgres::{Client, Row};

use crate::error::{Error, Result};

use super::layout::{one_line, or_dash, Table};
use super::{get, rfc3339, Report};

/// Hex shown per record in text output; JSON always has all of it.
pub const TEXT_HEX_BYTES: usize = 512;

/// One quarantined run of records.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub id: i64,
    pub source: String,
    pub topic: String,
    pub first_offset: i64,
    pub last_offset: i64,
    pub commit_lsn: Option<String>,
    pub reason: String,
    pub detail: String,
    pub quarantined_at: String,
    pub records: Vec<Vec<u8>>,
}

/// A record as `show` prints it.
#[derive(Debug, Clone)]
pub enum Record {
    Decoded(Value),
    Raw { error: String, bytes: Vec<u8> },
}

fn select(filter: &str, with_records: bool) -> String {
    format!(
        "SELECT id, source, topic, first_offset, last_offset, commit_lsn::text, reason, detail, {},
                {}, cardinality(records)
         FROM replicator.quarantine {filter}",
        rfc3339("quarantined_at"),
        if with_records {
            "records"
        } else {
            "'{}'::bytea[]"
        },
    )
}

fn quarantined(row: &Row) -> Result<Quarantined> {
    let what = "a quarantined record";
    Ok(Quarantined {
        id: get(row, 0, what)?,
        source: get(row, 1, what)?,
        topic: get(row, 2, what)?,
        first_offset: get(row, 3, what)?,
        last_offset: get(row, 4, what)?,
        commit_lsn: get(row, 5, what)?,
        reason: get(row, 6, what)?,
        detail: get(row, 7, what)?,
        quarantined_at: get(row, 8, what)?,
        records: get(row, 9, what)?,
    })
}

/// The newest `limit` quarantined runs, with how many records each holds.
pub async fn list(client: &Client, source: Option<&str>, limit: i64) -> Result<QuarantineList> {
    let rows = client
        .query(
            &format!(
                "{} ORDER BY id DESC LIMIT $2",
                select("WHERE $1::text IS NULL OR source = $1", false)
            ),
            &[&source, &limit.max(1)],
        )
        .await
        .map_err(Error::pg("read the quarantine"))?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok((
                quarantined(row)?,
                get::<Option<i32>>(row, 10, "a record count")?.unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(QuarantineList { entries })
}

/// One quarantined run, its records decoded where they decode.
pub async fn show(client: &Client, id: i64) -> Result<QuarantineDetail> {
    let row = client
        .query_opt(&select("WHERE id = $1", true), &[&id])
        .await
        .map_err(Error::pg("read a quarantined record"))?
        .ok_or(Error::NoSuchRecord {
            kind: "quarantined record",
            id,
        })?;
    let entry = quarantined(&row)?;
    let codec = Codec::new().map_err(|e| Error::StreamShape {
        problem: e.to_string(),
    })?;
    let contiguous = usize::try_from(entry.last_offset - entry.first_offset + 1)
        .is_ok_and(|n| n == entry.records.len());
    let records = entry
        .records
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let offset = i64::try_from(i)
                .ok()
                .filter(|_| contiguous)
                .map_or(-1, |i| entry.first_offset + i);
            match codec.decode(bytes) {
                Ok(envelope) => Record::Decoded(crate::tail::to_json(offset, &envelope)),
                Err(error) => Record::Raw {
                    error: error.to_string(),
                    bytes: bytes.clone(),
                },
            }
        })
        .collect();
    Ok(QuarantineDetail { entry, records })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn summary_json(q: &Quarantined, records: usize) -> Value {
    json!({
        "id": q.id,
        "quarantined_at": q.quarantined_at,
        "source": q.source,
        "topic": q.topic,
        "first_offset": q.first_offset,
        "last_offset": q.last_offset,
        "commit_lsn": q.commit_lsn,
        "reason": q.reason,
        "detail": q.detail,
        "records": records,
    })
}

/// `quarantine list`.
#[derive(Debug, Clone)]
pub struct QuarantineList {
    /// Each run with its number of records.
    pub entries: Vec<(Quarantined, i32)>,
}

impl Report for QuarantineList {
    fn to_json(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|(q, n)| summary_json(q, usize::try_from(*n).unwrap_or(0)))
                .collect(),
        )
    }
}

impl fmt::Display for QuarantineList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return writeln!(f, "the quarantine is empty");
        }
        let mut table = Table::new(&[
            "id",
            "quarantined",
            "source",
            "offsets",
            "records",
            "reason",
            "detail",
        ]);
        for (q, n) in &self.entries {
            table.row(vec![
                q.id.to_string(),
                q.quarantined_at.clone(),
                q.source.clone(),
                format!("{}..{}", q.first_offset, q.last_offset),
                n.to_string(),
                q.reason.clone(),
                one_line(&q.detail, 80),
            ]);
        }
        write!(f, "{table}")
    }
}

/// `quarantine show`.
#[derive(Debug, Clone)]
pub struct QuarantineDetail {
    pub entry: Quarantined,
    pub records: Vec<Record>,
}

impl Report for QuarantineDetail {
    fn to_json(&self) -> Value {
        let mut value = summary_json(&self.entry, self.records.len());
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| match r {
                Record::Decoded(v) => json!({"decoded": v}),
                Record::Raw { error, bytes } => json!({"error": error, "hex": hex(bytes)}),
            })
            .collect();
        if let Some(object) = value.as_object_mut() {
            object.insert("records".into(), Value::Array(records));
        }
        value
    }
}

impl fmt::Display for QuarantineDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &self.entry;
        writeln!(f, "quarantined {} at {}", q.id, q.quarantined_at)?;
        writeln!(f, "source:  {} (topic {:?})", q.source, q.topic)?;
        writeln!(f, "offsets: {}..{}", q.first_offset, q.last_offset)?;
        writeln!(f, "commit:  {}", or_dash(q.commit_lsn.as_deref()))?;
        writeln!(f, "reason:  {}", q.reason)?;
        writeln!(f, "detail:  {}", q.detail)?;
        writeln!(f, "records: {}", self.records.len())?;
        for (i, record) in self.records.iter().enumerate() {
            match record {
                Record::Decoded(v) => writeln!(f, "  [{i}] {v}")?,
                Record::Raw { error, bytes } => {
                    let shown = bytes.get(..TEXT_HEX_BYTES).unwrap_or(bytes);
                    let more = bytes.len() - shown.len();
                    writeln!(
                        f,
                        "  [{i}] does not decode ({error}); {} bytes:",
                        bytes.len()
                    )?;
                    for chunk in shown.chunks(32) {
                        writeln!(f, "      {}", hex(chunk))?;
                    }
                    if more > 0 {
                        writeln!(f, "      … {more} more bytes (see --output json)")?;
                    }
                }
            }
        }
        Ok(())
    }
}

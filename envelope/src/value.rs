//! Between the model and Avro's generic values. Decoding is total: every shape the schema allows
//! but the model does not (a negative counter, an invalid region id, bad JSON) is an error naming
//! the field.

use std::collections::HashMap;

use apache_avro::types::Value;
use conflict::{Counter, Dot, FieldPath, Hlc, RegionId, VersionVector};
use pgoutput::Lsn;

use crate::error::{shape, Error, Result};
use crate::{Body, EntityChange, Envelope, FieldWrite, Seq, UnixMicros};

/// Union branch indexes of `body` in the schema (append new branches; never reorder).
const BODY_CHANGE: u32 = 0;
const BODY_COMMIT: u32 = 1;
const BODY_HEARTBEAT: u32 = 2;

pub(crate) fn to_value(envelope: &Envelope) -> Result<Value> {
    let body = match &envelope.body {
        Body::Change(change) => Value::Union(BODY_CHANGE, Box::new(change_to_value(change)?)),
        Body::Commit { change_count } => Value::Union(
            BODY_COMMIT,
            Box::new(Value::Record(vec![(
                "change_count".into(),
                Value::Long(u64_to_long(*change_count)?),
            )])),
        ),
        Body::Heartbeat { beat, beat_time } => Value::Union(
            BODY_HEARTBEAT,
            Box::new(Value::Record(vec![
                ("beat".into(), Value::Long(u64_to_long(*beat)?)),
                ("beat_time".into(), Value::TimestampMicros(beat_time.0)),
            ])),
        ),
    };
    Ok(Value::Record(vec![
        (
            "source_region".into(),
            Value::String(envelope.source.to_string()),
        ),
        // An LSN is an unsigned 64-bit position: stored as the same bits in Avro's signed long.
        (
            "commit_lsn".into(),
            Value::Long(envelope.commit_lsn.0 as i64),
        ),
        (
            "commit_time".into(),
            Value::TimestampMicros(envelope.commit_time.0),
        ),
        ("seq".into(), Value::Long(u64_to_long(envelope.seq.0)?)),
        ("body".into(), body),
    ]))
}

fn change_to_value(change: &EntityChange) -> Result<Value> {
    let mut clock = HashMap::new();
    for (region, counter) in change.clock.iter() {
        clock.insert(region.to_string(), Value::Long(u64_to_long(counter.0)?));
    }
    let mut fields = Vec::with_capacity(change.fields.len());
    for field in &change.fields {
        fields.push(Value::Record(vec![
            ("path".into(), Value::String(field.path.as_str().to_owned())),
            ("region".into(), Value::String(field.dot.region.to_string())),
            (
                "counter".into(),
                Value::Long(u64_to_long(field.dot.counter.0)?),
            ),
            (
                "hlc".into(),
                Value::Long(field.hlc.to_i64().map_err(|source| Error::Clock {
                    field: "hlc",
                    source,
                })?),
            ),
            ("value_json".into(), Value::String(field.value.to_string())),
        ]));
    }
    Ok(Value::Record(vec![
        ("table".into(), Value::String(change.table.clone())),
        ("entity".into(), Value::Uuid(change.entity)),
        ("clock".into(), Value::Map(clock)),
        ("fields".into(), Value::Array(fields)),
    ]))
}

fn u64_to_long(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| shape("long", format!("{v} does not fit a long")))
}

pub(crate) fn from_value(value: Value) -> Result<Envelope> {
    let mut record = Fields::of(value, "envelope")?;
    let source = region(record.string("source_region")?, "source_region")?;
    let commit_lsn = Lsn(record.long("commit_lsn")? as u64);
    let commit_time = UnixMicros(record.timestamp("commit_time")?);
    let seq = Seq(non_negative(record.long("seq")?, "seq")?);
    let body = match record.take("body")? {
        Value::Union(BODY_CHANGE, inner) => Body::Change(change_from_value(*inner)?),
        Value::Union(BODY_COMMIT, inner) => {
            let mut commit = Fields::of(*inner, "body")?;
            Body::Commit {
                change_count: non_negative(commit.long("change_count")?, "change_count")?,
            }
        }
        Value::Union(BODY_HEARTBEAT, inner) => {
            let mut beat = Fields::of(*inner, "body")?;
            Body::Heartbeat {
                beat: non_negative(beat.long("beat")?, "beat")?,
                beat_time: UnixMicros(beat.timestamp("beat_time")?),
            }
        }
        other => return Err(shape("body", format!("unknown body {other:?}"))),
    };
    Ok(Envelope {
        source,
        commit_lsn,
        commit_time,
        seq,
        body,
    })
}

fn change_from_value(value: Value) -> Result<EntityChange> {
    let mut record = Fields::of(value, "body")?;
    let table = record.string("table")?;
    let entity = match record.take("entity")? {
        Value::Uuid(u) => u,
        Value::String(s) => s.parse().map_err(|e| shape("entity", format!("{e}")))?,
        other => return Err(shape("entity", format!("not a uuid: {other:?}"))),
    };
    let mut clock = VersionVector::new();
    match record.take("clock")? {
        Value::Map(entries) => {
            for (name, counter) in entries {
                let Value::Long(counter) = counter else {
                    return Err(shape("clock", "counter is not a long"));
                };
                clock.observe(&Dot::new(
                    region(name, "clock")?,
                    Counter(non_negative(counter, "clock")?),
                ));
            }
        }
        _ => return Err(shape("clock", "not a map")),
    }
    let Value::Array(items) = record.take("fields")? else {
        return Err(shape("fields", "not an array"));
    };
    let mut fields = Vec::with_capacity(items.len());
    for item in items {
        let mut f = Fields::of(item, "fields")?;
        let path_text = f.string("path")?;
        let path = if path_text == FieldPath::existence().as_str() {
            FieldPath::existence()
        } else {
            FieldPath::new(&path_text).map_err(|source| Error::Clock {
                field: "path",
                source,
            })?
        };
        let dot = Dot::new(
            region(f.string("region")?, "region")?,
            Counter(non_negative(f.long("counter")?, "counter")?),
        );
        let hlc = Hlc::from_i64(f.long("hlc")?).map_err(|source| Error::Clock {
            field: "hlc",
            source,
        })?;
        let value =
            serde_json::from_str(&f.string("value_json")?).map_err(|source| Error::ValueJson {
                path: path_text,
                source,
            })?;
        fields.push(FieldWrite {
            path,
            dot,
            hlc,
            value,
        });
    }
    Ok(EntityChange {
        table,
        entity,
        clock,
        fields,
    })
}

fn region(name: String, field: &'static str) -> Result<RegionId> {
    RegionId::new(&name).map_err(|source| Error::Clock { field, source })
}

fn non_negative(v: i64, field: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| shape(field, format!("{v} is negative")))
}

/// The fields of one decoded record, taken by name.
struct Fields {
    what: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn of(value: Value, what: &'static str) -> Result<Fields> {
        match value {
            Value::Record(fields) => Ok(Fields { what, fields }),
            other => Err(shape(what, format!("not a record: {other:?}"))),
        }
    }

    fn take(&mut self, name: &'static str) -> Result<Value> {
        let at = self.fields.iter().position(|(n, _)| n == name);
        at.map(|i| self.fields.swap_remove(i).1)
            .ok_or_else(|| shape(name, format!("missing from {}", self.what)))
    }

    fn string(&mut self, name: &'static str) -> Result<String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(shape(name, format!("not a string: {other:?}"))),
        }
    }

    fn long(&mut self, name: &'static str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(v) => Ok(v),
            other => Err(shape(name, format!("not a long: {other:?}"))),
        }
    }

    fn timestamp(&mut self, name: &'static str) -> Result<i64> {
        match self.take(name)? {
            Value::TimestampMicros(v) | Value::Long(v) => Ok(v),
            other => Err(shape(name, format!("not a timestamp: {other:?}"))),
        }
    }
}

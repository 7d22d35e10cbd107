//! Row changes and type descriptions: `Insert`, `Update`, `Delete`, `Type`.
//!
//! Changes name their table by oid; resolve them against the latest `Relation` message with
//! [`RelationCache`](crate::RelationCache). What an `Update` or `Delete` carries of the old row
//! depends on the table's replica identity: nothing extra for an update that did not change the
//! key, the key columns (`K`, other columns null), or the whole old row (`O`, identity FULL).
//! Unchanged TOASTed columns of the new row arrive as [`ColumnValue::UnchangedToast`].
//!
//! [`ColumnValue::UnchangedToast`]: crate::ColumnValue::UnchangedToast

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Oid, Result, TupleData, Xid};

const TUPLE_NEW: u8 = b'N';
const TUPLE_KEY: u8 = b'K';
const TUPLE_OLD: u8 = b'O';

/// `Y`: a non-builtin data type used by a published column (sent before its first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// The type's oid.
    pub id: Oid,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// `I`: a row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// The table's oid.
    pub relation: Oid,
    /// The new row.
    pub new: TupleData,
}

/// The old-row image carried by an `Update` or `Delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity key columns (the other columns are null).
    Key(TupleData),
    /// `O`: the whole old row (replica identity FULL).
    Full(TupleData),
}

impl OldTuple {
    /// The row image, whichever kind.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// `U`: a row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// The table's oid.
    pub relation: Oid,
    /// The old key or row; `None` when the key did not change and identity is not FULL.
    pub old: Option<OldTuple>,
    /// The new row (unchanged TOASTed columns as `UnchangedToast`).
    pub new: TupleData,
}

/// `D`: a row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// The table's oid.
    pub relation: Oid,
    /// The deleted row's key or whole row.
    pub old: OldTuple,
}

impl Type {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        Ok(Type {
            xid: cur.stream_xid(streamed)?,
            id: cur.oid("type oid")?,
            namespace: cur.cstring("namespace")?,
            name: cur.cstring("type name")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.oid(self.id);
        w.cstring(&self.namespace, "namespace")?;
        w.cstring(&self.name, "type name")
    }
}

/// Reads a tuple marker byte and checks it is one of `allowed`.
fn marker(cur: &mut Cursor, allowed: &[u8]) -> Result<u8> {
    let offset = cur.offset();
    let tag = cur.u8("tuple marker")?;
    if allowed.contains(&tag) {
        Ok(tag)
    } else {
        Err(cur.unknown_tag("tuple marker", offset, tag))
    }
}

impl Insert {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let relation = cur.oid("relation oid")?;
        marker(cur, &[TUPLE_NEW])?;
        Ok(Insert {
            xid,
            relation,
            new: TupleData::decode(cur)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.oid(self.relation);
        w.u8(TUPLE_NEW);
        self.new.encode(w)
    }
}

impl Update {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let relation = cur.oid("relation oid")?;
        let old = match marker(cur, &[TUPLE_KEY, TUPLE_OLD, TUPLE_NEW])? {
            TUPLE_KEY => Some(OldTuple::Key(TupleData::decode(cur)?)),
            TUPLE_OLD => Some(OldTuple::Full(TupleData::decode(cur)?)),
            _ => None,
        };
        if old.is_some() {
            marker(cur, &[TUPLE_NEW])?;
        }
        Ok(Update {
            xid,
            relation,
            old,
            new: TupleData::decode(cur)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.oid(self.relation);
        if let Some(old) = &self.old {
            encode_old(old, w)?;
        }
        w.u8(TUPLE_NEW);
        self.new.encode(w)
    }
}

fn encode_old(old: &OldTuple, w: &mut Writer<'_>) -> Result<()> {
    match old {
        OldTuple::Key(t) => {
            w.u8(TUPLE_KEY);
            t.encode(w)
        }
        OldTuple::Full(t) => {
            w.u8(TUPLE_OLD);
            t.encode(w)
        }
    }
}

impl Delete {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let relation = cur.oid("relation oid")?;
        let old = match marker(cur, &[TUPLE_KEY, TUPLE_OLD])? {
            TUPLE_KEY => OldTuple::Key(TupleData::decode(cur)?),
            _ => OldTuple::Full(TupleData::decode(cur)?),
        };
        Ok(Delete { xid, relation, old })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.oid(self.relation);
        encode_old(&self.old, w)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{ColumnValue, DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;

    fn decode(bytes: &[u8], ctx: DecodeContext) -> Result<LogicalMessage> {
        LogicalMessage::decode(Bytes::copy_from_slice(bytes), ctx)
    }

    fn roundtrip(bytes: &[u8], ctx: DecodeContext, expected: LogicalMessage) {
        assert_eq!(decode(bytes, ctx).unwrap(), expected);
        assert_eq!(expected.encode().unwrap(), bytes);
    }

    const V1: DecodeContext = DecodeContext::new(ProtocolVersion::V1);

    fn text(s: &'static str) -> ColumnValue {
        ColumnValue::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn type_message() {
        roundtrip(
            b"Y\0\0\x40\x10public\0mood\0",
            V1,
            LogicalMessage::Type(Type {
                xid: None,
                id: Oid(16400),
                namespace: "public".into(),
                name: "mood".into(),
            }),
        );
    }

    #[test]
    fn insert() {
        roundtrip(
            b"I\0\0\x40\0N\0\x02t\0\0\0\x017n",
            V1,
            LogicalMessage::Insert(Insert {
                xid: None,
                relation: Oid(16384),
                new: TupleData::new(vec![text("7"), ColumnValue::Null]),
            }),
        );
        assert!(matches!(
            decode(b"I\0\0\x40\0K\0\0", V1),
            Err(Error::UnknownTag {
                message: "Insert",
                field: "tuple marker",
                offset: 5,
                tag: b'K'
            })
        ));
    }

    #[test]
    fn update_forms() {
        let new = TupleData::new(vec![text("7"), ColumnValue::UnchangedToast]);
        roundtrip(
            b"U\0\0\x40\0N\0\x02t\0\0\0\x017u",
            V1,
            LogicalMessage::Update(Update {
                xid: None,
                relation: Oid(16384),
                old: None,
                new: new.clone(),
            }),
        );
        roundtrip(
            b"U\0\0\x40\0K\0\x02t\0\0\0\x016nN\0\x02t\0\0\0\x017u",
            V1,
            LogicalMessage::Update(Update {
                xid: None,
                relation: Oid(16384),
                old: Some(OldTuple::Key(TupleData::new(vec![
                    text("6"),
                    ColumnValue::Null,
                ]))),
                new: new.clone(),
            }),
        );
        roundtrip(
            b"U\0\0\x40\0O\0\x01nN\0\x02t\0\0\0\x017u",
            V1,
            LogicalMessage::Update(Update {
                xid: None,
                relation: Oid(16384),
                old: Some(OldTuple::Full(TupleData::new(vec![ColumnValue::Null]))),
                new,
            }),
        );
        // An old tuple must be followed by 'N'.
        assert!(matches!(
            decode(b"U\0\0\x40\0O\0\x01nO\0\0", V1),
            Err(Error::UnknownTag {
                field: "tuple marker",
                offset: 9,
                ..
            })
        ));
        assert!(matches!(
            decode(b"U\0\0\x40\0O\0\x01n", V1),
            Err(Error::Truncated {
                field: "tuple marker",
                ..
            })
        ));
    }

    #[test]
    fn streamed_update_has_xid() {
        let ctx = DecodeContext::streaming(ProtocolVersion::V2);
        roundtrip(
            b"U\0\0\x03\xE8\0\0\x40\0N\0\0",
            ctx,
            LogicalMessage::Update(Update {
                xid: Some(Xid(1000)),
                relation: Oid(16384),
                old: None,
                new: TupleData::default(),
            }),
        );
    }

    #[test]
    fn delete() {
        roundtrip(
            b"D\0\0\x40\0K\0\x01t\0\0\0\x017",
            V1,
            LogicalMessage::Delete(Delete {
                xid: None,
                relation: Oid(16384),
                old: OldTuple::Key(TupleData::new(vec![text("7")])),
            }),
        );
        roundtrip(
            b"D\0\0\x40\0O\0\0",
            V1,
            LogicalMessage::Delete(Delete {
                xid: None,
                relation: Oid(16384),
                old: OldTuple::Full(TupleData::default()),
            }),
        );
        assert!(matches!(
            decode(b"D\0\0\x40\0N\0\0", V1),
            Err(Error::UnknownTag { tag: b'N', .. })
        ));
    }
}

//! The `Relation` message: a table's schema as the publisher sees it.
//!
//! pgoutput sends a Relation message before the first change to a table in a session (and in
//! each streamed transaction), and again after the table's schema changes. Changes then refer to
//! the table by oid only, so a consumer must keep the latest Relation message per oid; see
//! [`RelationCache`](crate::RelationCache). Generated columns are not listed, and tuples have
//! exactly the listed columns, in this order.

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Oid, Result, Xid};

/// Bit 0 of a column's flags: the column is part of the replica identity key.
const COLUMN_FLAG_KEY: u8 = 1;

/// `R`: the schema of a published table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// The table's oid, by which changes refer to it.
    pub id: Oid,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// `pg_class.relreplident`: which old values `Update` and `Delete` carry.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// Oid of the column's data type.
    pub type_oid: Oid,
    /// `atttypmod` (e.g. varchar length + 4), -1 when none.
    pub type_modifier: i32,
}

/// A table's replica identity setting (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key, if any.
    Default,
    /// `n`: nothing; updates and deletes carry no old values.
    Nothing,
    /// `f`: all columns; old tuples come as `O`.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The `relreplident` character.
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    /// From the `relreplident` character.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

impl Relation {
    /// `namespace.name`, as used in error messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The position of the column called `name`, if any.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let id = cur.oid("relation oid")?;
        let namespace = cur.cstring("namespace")?;
        let name = cur.cstring("relation name")?;
        let offset = cur.offset();
        let ident = cur.u8("replica identity")?;
        let replica_identity = ReplicaIdentity::from_byte(ident)
            .ok_or_else(|| cur.unknown_tag("replica identity", offset, ident))?;
        let count = cur.len_u16("column count")?;
        // A column is at least flags + empty name + type oid + typmod.
        let mut columns = Vec::with_capacity(cur.capacity_for(count, 10));
        for _ in 0..count {
            let offset = cur.offset();
            let is_key = match cur.u8("column flags")? {
                0 => false,
                COLUMN_FLAG_KEY => true,
                other => {
                    return Err(cur.invalid(
                        "column flags",
                        offset,
                        other.into(),
                        "expected 0 or 1",
                    ))
                }
            };
            columns.push(RelationColumn {
                is_key,
                name: cur.cstring("column name")?,
                type_oid: cur.oid("column type oid")?,
                type_modifier: cur.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            xid,
            id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.oid(self.id);
        w.cstring(&self.namespace, "namespace")?;
        w.cstring(&self.name, "relation name")?;
        w.u8(self.replica_identity.as_byte());
        w.len_u16(self.columns.len(), "column count")?;
        for c in &self.columns {
            w.u8(if c.is_key { COLUMN_FLAG_KEY } else { 0 });
            w.cstring(&c.name, "column name")?;
            w.oid(c.type_oid);
            w.i32(c.type_modifier);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;
    use bytes::Bytes;

    /// `public.dashboards (id int4 key, slug varchar(255))`, replica identity default.
    const DASHBOARDS: &[u8] = b"R\x00\x00\x40\x00public\0dashboards\0d\x00\x02\
        \x01id\0\x00\x00\x00\x17\xFF\xFF\xFF\xFF\
        \x00slug\0\x00\x00\x04\x13\x00\x00\x01\x03";

    fn dashboards(xid: Option<Xid>) -> Relation {
        Relation {
            xid,
            id: Oid(16384),
            namespace: "public".into(),
            name: "dashboards".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                RelationColumn {
                    is_key: true,
                    name: "id".into(),
                    type_oid: Oid(23),
                    type_modifier: -1,
                },
                RelationColumn {
                    is_key: false,
                    name: "slug".into(),
                    type_oid: Oid(1043),
                    type_modifier: 259,
                },
            ],
        }
    }

    #[test]
    fn decodes_relation() {
        let ctx = DecodeContext::new(ProtocolVersion::V1);
        let msg = LogicalMessage::decode(Bytes::from_static(DASHBOARDS), ctx).unwrap();
        assert_eq!(msg, LogicalMessage::Relation(dashboards(None)));
        assert_eq!(msg.encode().unwrap(), DASHBOARDS);
        let LogicalMessage::Relation(r) = msg else {
            unreachable!()
        };
        assert_eq!(r.qualified_name(), "public.dashboards");
        assert_eq!(r.column_index("slug"), Some(1));
    }

    #[test]
    fn decodes_streamed_relation_with_xid() {
        let mut bytes = vec![b'R', 0, 0, 0x02, 0xD2];
        bytes.extend_from_slice(DASHBOARDS.get(1..).unwrap());
        let ctx = DecodeContext::streaming(ProtocolVersion::V2);
        let msg = LogicalMessage::decode(Bytes::from(bytes.clone()), ctx).unwrap();
        assert_eq!(msg, LogicalMessage::Relation(dashboards(Some(Xid(722)))));
        assert_eq!(msg.encode().unwrap(), bytes);
    }

    #[test]
    fn rejects_unknown_identity_and_flags() {
        let ctx = DecodeContext::new(ProtocolVersion::V1);
        // Tag, oid, "public\0", "dashboards\0": the replica identity byte is at 23.
        let ident = 1 + 4 + 7 + 11;
        assert_eq!(DASHBOARDS[ident], b'd');
        let mut bad = DASHBOARDS.to_vec();
        bad[ident] = b'x';
        assert!(matches!(
            LogicalMessage::decode(Bytes::from(bad), ctx),
            Err(Error::UnknownTag {
                field: "replica identity",
                ..
            })
        ));
        let mut bad = DASHBOARDS.to_vec();
        bad[ident + 3] = 2;
        assert!(matches!(
            LogicalMessage::decode(Bytes::from(bad), ctx),
            Err(Error::InvalidValue {
                field: "column flags",
                value: 2,
                ..
            })
        ));
    }
}

//! `Truncate`: one message for all tables of a `TRUNCATE` statement that are published with
//! `publish = 'truncate'`. Option bits other than CASCADE and RESTART IDENTITY are refused.

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Oid, Result, Xid};

/// Truncate option bit: `CASCADE`.
const TRUNCATE_CASCADE: u8 = 1;
/// Truncate option bit: `RESTART IDENTITY`.
const TRUNCATE_RESTART_IDENTITY: u8 = 2;

/// `T`: tables were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// `TRUNCATE` options.
    pub options: TruncateOptions,
    /// The truncated tables' oids.
    pub relations: Vec<Oid>,
}

/// Options of a `TRUNCATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TruncateOptions {
    /// `CASCADE`.
    pub cascade: bool,
    /// `RESTART IDENTITY`.
    pub restart_identity: bool,
}

impl Truncate {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let count = cur.len_i32("relation count")?;
        let offset = cur.offset();
        let bits = cur.u8("options")?;
        if bits & !(TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY) != 0 {
            return Err(cur.invalid("options", offset, bits.into(), "unknown option bits"));
        }
        let options = TruncateOptions {
            cascade: bits & TRUNCATE_CASCADE != 0,
            restart_identity: bits & TRUNCATE_RESTART_IDENTITY != 0,
        };
        let mut relations = Vec::with_capacity(cur.capacity_for(count, 4));
        for _ in 0..count {
            relations.push(cur.oid("relation oid")?);
        }
        Ok(Truncate {
            xid,
            options,
            relations,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.len_i32(self.relations.len(), "relation count")?;
        let mut bits = 0;
        if self.options.cascade {
            bits |= TRUNCATE_CASCADE;
        }
        if self.options.restart_identity {
            bits |= TRUNCATE_RESTART_IDENTITY;
        }
        w.u8(bits);
        for oid in &self.relations {
            w.oid(*oid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;

    const V1: DecodeContext = DecodeContext::new(ProtocolVersion::V1);

    fn decode(bytes: &[u8], ctx: DecodeContext) -> Result<LogicalMessage> {
        LogicalMessage::decode(Bytes::copy_from_slice(bytes), ctx)
    }

    fn roundtrip(bytes: &[u8], ctx: DecodeContext, expected: LogicalMessage) {
        assert_eq!(decode(bytes, ctx).unwrap(), expected);
        assert_eq!(expected.encode().unwrap(), bytes);
    }

    #[test]
    fn truncate() {
        roundtrip(
            b"T\0\0\0\x02\x03\0\0\x40\0\0\0\x40\x01",
            V1,
            LogicalMessage::Truncate(Truncate {
                xid: None,
                options: TruncateOptions {
                    cascade: true,
                    restart_identity: true,
                },
                relations: vec![Oid(16384), Oid(16385)],
            }),
        );
        assert!(matches!(
            decode(b"T\0\0\0\0\x04", V1),
            Err(Error::InvalidValue {
                field: "options",
                value: 4,
                offset: 5,
                ..
            })
        ));
        assert!(matches!(
            decode(b"T\x7F\xFF\xFF\xFF\0", V1),
            Err(Error::Truncated {
                field: "relation oid",
                ..
            })
        ));
    }
}

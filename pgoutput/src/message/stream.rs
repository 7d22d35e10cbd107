//! Streamed in-progress transactions (`streaming` on, protocol ≥ 2): `Stream Start`,
//! `Stream Stop`, `Stream Commit`, `Stream Abort`.
//!
//! A large transaction is sent in blocks before it commits: `Stream Start` (xid), changes each
//! prefixed with the xid of the (sub)transaction that made them, `Stream Stop`. Blocks of
//! different transactions may interleave with each other and with ordinary transactions. The
//! outcome comes later, outside any block: `Stream Commit` (apply everything spooled for the
//! xid) or `Stream Abort` (drop the subtransaction's changes, or the whole transaction's when
//! `subxact_xid == xid`). PostgreSQL 16's protocol 4 adds fields to `Stream Abort`; this crate
//! decodes protocol 1–3 exactly and rejects them as trailing bytes.

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Lsn, PgTimestamp, Result, Xid};

/// `S`: a block of a streamed transaction begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// The top-level transaction's xid.
    pub xid: Xid,
    /// Whether this is the transaction's first block.
    pub first_segment: bool,
}

/// `c`: a streamed transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// The top-level transaction's xid.
    pub xid: Xid,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: once applied, acknowledge this as flushed.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// `A`: a streamed transaction or one of its subtransactions aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction's xid.
    pub xid: Xid,
    /// The aborted subtransaction's xid (equal to `xid` when the whole transaction aborted).
    pub subxact_xid: Xid,
}

impl StreamAbort {
    /// Whether the whole transaction aborted (not just a subtransaction).
    pub fn is_toplevel(&self) -> bool {
        self.xid == self.subxact_xid
    }
}

impl StreamStart {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        Ok(StreamStart {
            xid: cur.xid("xid")?,
            first_segment: cur.bool("first segment flag")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.xid(self.xid);
        w.bool(self.first_segment);
    }
}

impl StreamCommit {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        let xid = cur.xid("xid")?;
        cur.zero_flags("flags")?;
        Ok(StreamCommit {
            xid,
            commit_lsn: cur.lsn("commit lsn")?,
            end_lsn: cur.lsn("end lsn")?,
            commit_time: cur.timestamp("commit timestamp")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.xid(self.xid);
        w.u8(0);
        w.lsn(self.commit_lsn);
        w.lsn(self.end_lsn);
        w.timestamp(self.commit_time);
    }
}

impl StreamAbort {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        Ok(StreamAbort {
            xid: cur.xid("xid")?,
            subxact_xid: cur.xid("subtransaction xid")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.xid(self.xid);
        w.xid(self.subxact_xid);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;

    const V2: DecodeContext = DecodeContext::new(ProtocolVersion::V2);

    fn decode(bytes: &[u8], ctx: DecodeContext) -> Result<LogicalMessage> {
        LogicalMessage::decode(Bytes::copy_from_slice(bytes), ctx)
    }

    fn roundtrip(bytes: &[u8], ctx: DecodeContext, expected: LogicalMessage) {
        assert_eq!(decode(bytes, ctx).unwrap(), expected);
        assert_eq!(expected.encode().unwrap(), bytes);
    }

    #[test]
    fn stream_start_and_stop() {
        roundtrip(
            b"S\0\0\x03\xE8\x01",
            V2,
            LogicalMessage::StreamStart(StreamStart {
                xid: Xid(1000),
                first_segment: true,
            }),
        );
        roundtrip(
            b"E",
            DecodeContext::streaming(ProtocolVersion::V2),
            LogicalMessage::StreamStop,
        );
        assert!(matches!(
            decode(b"S\0\0\x03\xE8\x02", V2),
            Err(Error::InvalidValue {
                field: "first segment flag",
                value: 2,
                offset: 5,
                ..
            })
        ));
    }

    #[test]
    fn stream_commit() {
        roundtrip(
            b"c\0\0\x03\xE8\0\0\0\0\0\0\0\0\x10\0\0\0\0\0\0\0\x40\0\0\0\0\0\0\0\x05",
            V2,
            LogicalMessage::StreamCommit(StreamCommit {
                xid: Xid(1000),
                commit_lsn: Lsn(16),
                end_lsn: Lsn(64),
                commit_time: PgTimestamp(5),
            }),
        );
    }

    #[test]
    fn stream_abort_v1_to_v3_only() {
        let abort = StreamAbort {
            xid: Xid(1000),
            subxact_xid: Xid(1001),
        };
        assert!(!abort.is_toplevel());
        roundtrip(
            b"A\0\0\x03\xE8\0\0\x03\xE9",
            V2,
            LogicalMessage::StreamAbort(abort),
        );
        // PostgreSQL 16's protocol 4 appends abort lsn and time: refused, not misread.
        let v4 = b"A\0\0\x03\xE8\0\0\x03\xE9\0\0\0\0\0\0\0\x10\0\0\0\0\0\0\0\x05";
        assert!(matches!(
            decode(v4, V2),
            Err(Error::TrailingBytes {
                message: "Stream Abort",
                offset: 9,
                remaining: 16
            })
        ));
    }

    #[test]
    fn needs_protocol_2() {
        let v1 = DecodeContext::new(ProtocolVersion::V1);
        for bytes in [
            &b"S\0\0\x03\xE8\x01"[..],
            b"E",
            b"A\0\0\x03\xE8\0\0\x03\xE9",
        ] {
            assert!(matches!(
                decode(bytes, v1),
                Err(Error::ProtocolTooOld {
                    required: 2,
                    actual: 1,
                    ..
                })
            ));
        }
    }
}

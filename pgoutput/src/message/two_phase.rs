//! Two-phase commit (`two_phase` on, protocol 3): `Begin Prepare`, `Prepare`, `Commit Prepared`,
//! `Rollback Prepared`, and `Stream Prepare` for a streamed transaction.
//!
//! With `two_phase`, a `PREPARE TRANSACTION` is decoded at prepare time: `Begin Prepare`, the
//! changes, `Prepare`; the outcome follows later as `Commit Prepared` or `Rollback Prepared`,
//! matched by `gid`. A streamed transaction that is prepared ends with `Stream Prepare` instead.

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Lsn, PgTimestamp, Result, Xid};

/// `b`, `P` and `p`: a prepared transaction (they share a layout; `b` has no flags byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTransaction {
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// End of the prepared transaction (of the prepare record).
    pub end_lsn: Lsn,
    /// Prepare time.
    pub prepare_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: Xid,
    /// The user-given global transaction id.
    pub gid: String,
}

/// `K`: a prepared transaction was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: Xid,
    /// The user-given global transaction id.
    pub gid: String,
}

/// `r`: a prepared transaction was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// End of the prepare record.
    pub prepare_end_lsn: Lsn,
    /// End of the rollback record.
    pub rollback_end_lsn: Lsn,
    /// Prepare time.
    pub prepare_time: PgTimestamp,
    /// Rollback time.
    pub rollback_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: Xid,
    /// The user-given global transaction id.
    pub gid: String,
}

impl PreparedTransaction {
    /// `with_flags` is false for `Begin Prepare`, which has no flags byte.
    pub(crate) fn decode(cur: &mut Cursor, with_flags: bool) -> Result<Self> {
        if with_flags {
            cur.zero_flags("flags")?;
        }
        Ok(PreparedTransaction {
            prepare_lsn: cur.lsn("prepare lsn")?,
            end_lsn: cur.lsn("end lsn")?,
            prepare_time: cur.timestamp("prepare timestamp")?,
            xid: cur.xid("xid")?,
            gid: cur.cstring("gid")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>, with_flags: bool) -> Result<()> {
        if with_flags {
            w.u8(0);
        }
        w.lsn(self.prepare_lsn);
        w.lsn(self.end_lsn);
        w.timestamp(self.prepare_time);
        w.xid(self.xid);
        w.cstring(&self.gid, "gid")
    }
}

impl CommitPrepared {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        cur.zero_flags("flags")?;
        Ok(CommitPrepared {
            commit_lsn: cur.lsn("commit lsn")?,
            end_lsn: cur.lsn("end lsn")?,
            commit_time: cur.timestamp("commit timestamp")?,
            xid: cur.xid("xid")?,
            gid: cur.cstring("gid")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.u8(0);
        w.lsn(self.commit_lsn);
        w.lsn(self.end_lsn);
        w.timestamp(self.commit_time);
        w.xid(self.xid);
        w.cstring(&self.gid, "gid")
    }
}

impl RollbackPrepared {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        cur.zero_flags("flags")?;
        Ok(RollbackPrepared {
            prepare_end_lsn: cur.lsn("prepare end lsn")?,
            rollback_end_lsn: cur.lsn("rollback end lsn")?,
            prepare_time: cur.timestamp("prepare timestamp")?,
            rollback_time: cur.timestamp("rollback timestamp")?,
            xid: cur.xid("xid")?,
            gid: cur.cstring("gid")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.u8(0);
        w.lsn(self.prepare_end_lsn);
        w.lsn(self.rollback_end_lsn);
        w.timestamp(self.prepare_time);
        w.timestamp(self.rollback_time);
        w.xid(self.xid);
        w.cstring(&self.gid, "gid")
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;

    const V3: DecodeContext = DecodeContext::new(ProtocolVersion::V3);
    const LSN_16: &[u8] = b"\0\0\0\0\0\0\0\x10";
    const LSN_32: &[u8] = b"\0\0\0\0\0\0\0\x20";
    const TIME_5: &[u8] = b"\0\0\0\0\0\0\0\x05";
    const TIME_9: &[u8] = b"\0\0\0\0\0\0\0\x09";
    const XID: &[u8] = b"\0\0\x03\xE8";

    fn bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn roundtrip(bytes: &[u8], expected: LogicalMessage) {
        let got = LogicalMessage::decode(Bytes::copy_from_slice(bytes), V3).unwrap();
        assert_eq!(got, expected);
        assert_eq!(expected.encode().unwrap(), bytes);
    }

    fn prepared() -> PreparedTransaction {
        PreparedTransaction {
            prepare_lsn: Lsn(16),
            end_lsn: Lsn(32),
            prepare_time: PgTimestamp(5),
            xid: Xid(1000),
            gid: "g1".into(),
        }
    }

    #[test]
    fn begin_prepare_prepare_stream_prepare() {
        let body = bytes(&[LSN_16, LSN_32, TIME_5, XID, b"g1\0"]);
        roundtrip(
            &bytes(&[b"b", &body]),
            LogicalMessage::BeginPrepare(prepared()),
        );
        roundtrip(
            &bytes(&[b"P\0", &body]),
            LogicalMessage::Prepare(prepared()),
        );
        roundtrip(
            &bytes(&[b"p\0", &body]),
            LogicalMessage::StreamPrepare(prepared()),
        );
    }

    #[test]
    fn commit_prepared() {
        roundtrip(
            &bytes(&[b"K\0", LSN_16, LSN_32, TIME_5, XID, b"g1\0"]),
            LogicalMessage::CommitPrepared(CommitPrepared {
                commit_lsn: Lsn(16),
                end_lsn: Lsn(32),
                commit_time: PgTimestamp(5),
                xid: Xid(1000),
                gid: "g1".into(),
            }),
        );
    }

    #[test]
    fn rollback_prepared() {
        roundtrip(
            &bytes(&[b"r\0", LSN_16, LSN_32, TIME_5, TIME_9, XID, b"g1\0"]),
            LogicalMessage::RollbackPrepared(RollbackPrepared {
                prepare_end_lsn: Lsn(16),
                rollback_end_lsn: Lsn(32),
                prepare_time: PgTimestamp(5),
                rollback_time: PgTimestamp(9),
                xid: Xid(1000),
                gid: "g1".into(),
            }),
        );
    }

    #[test]
    fn needs_protocol_3() {
        let body = bytes(&[b"b", LSN_16, LSN_32, TIME_5, XID, b"g1\0"]);
        let v2 = DecodeContext::new(ProtocolVersion::V2);
        assert!(matches!(
            LogicalMessage::decode(Bytes::from(body), v2),
            Err(Error::ProtocolTooOld {
                message: "Begin Prepare",
                required: 3,
                actual: 2
            })
        ));
    }
}

//! Transaction boundaries and annotations: `Begin`, `Commit`, `Origin`, and logical decoding
//! messages (`M`, from `pg_logical_emit_message`).
//!
//! A non-streamed transaction arrives whole, after it committed: `Begin`, optionally `Origin`
//! (when the changes were themselves replayed by an apply worker with a replication origin — this
//! is how PostgreSQL 15, which lacks the `origin` publication option, lets a consumer recognise
//! its own applier's writes), the changes, then `Commit`. `Begin.final_lsn`, `Commit.commit_lsn`
//! and `Commit.end_lsn` are the positions to acknowledge.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Lsn, PgTimestamp, Result, Xid};

/// `B`: start of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: Xid,
}

/// `C`: end of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// LSN of the commit record (equals the `Begin`'s `final_lsn`).
    pub commit_lsn: Lsn,
    /// End of the commit record: once applied, acknowledge this as flushed.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// `O`: the transaction was replayed from a replication origin (sent after `Begin` or the first
/// `Stream Start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server (0 when sent at a stream start).
    pub commit_lsn: Lsn,
    /// The replication origin's name (`pg_replication_origin.roname`).
    pub name: String,
}

/// `M`: a logical decoding message emitted with `pg_logical_emit_message` (needs the `messages`
/// option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodingMessage {
    /// Xid of the streamed (sub)transaction, present only inside a stream block.
    pub xid: Option<Xid>,
    /// Whether the message was emitted transactionally (then it arrives inside its transaction).
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The content, uninterpreted.
    pub content: Bytes,
}

impl Begin {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        Ok(Begin {
            final_lsn: cur.lsn("final lsn")?,
            commit_time: cur.timestamp("commit timestamp")?,
            xid: cur.xid("xid")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.lsn(self.final_lsn);
        w.timestamp(self.commit_time);
        w.xid(self.xid);
    }
}

impl Commit {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        cur.zero_flags("flags")?;
        Ok(Commit {
            commit_lsn: cur.lsn("commit lsn")?,
            end_lsn: cur.lsn("end lsn")?,
            commit_time: cur.timestamp("commit timestamp")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u8(0);
        w.lsn(self.commit_lsn);
        w.lsn(self.end_lsn);
        w.timestamp(self.commit_time);
    }
}

impl Origin {
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        Ok(Origin {
            commit_lsn: cur.lsn("origin commit lsn")?,
            name: cur.cstring("origin name")?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.lsn(self.commit_lsn);
        w.cstring(&self.name, "origin name")
    }
}

impl DecodingMessage {
    pub(crate) fn decode(cur: &mut Cursor, streamed: bool) -> Result<Self> {
        let xid = cur.stream_xid(streamed)?;
        let transactional = cur.bool("transactional flag")?;
        let lsn = cur.lsn("message lsn")?;
        let prefix = cur.cstring("prefix")?;
        let len = cur.len_i32("content length")?;
        let content = cur.bytes(len, "content")?;
        Ok(DecodingMessage {
            xid,
            transactional,
            lsn,
            prefix,
            content,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.stream_xid(self.xid);
        w.bool(self.transactional);
        w.lsn(self.lsn);
        w.cstring(&self.prefix, "prefix")?;
        w.bytes_i32(&self.content, "content")
    }
}

#[cfg(test)]
mod tests {
    use crate::{DecodeContext, Error, LogicalMessage, ProtocolVersion};

    use super::*;

    fn v1(bytes: &[u8]) -> Result<LogicalMessage> {
        LogicalMessage::decode(
            Bytes::copy_from_slice(bytes),
            DecodeContext::new(ProtocolVersion::V1),
        )
    }

    fn roundtrip(bytes: &[u8], expected: LogicalMessage) {
        assert_eq!(v1(bytes).unwrap(), expected);
        assert_eq!(expected.encode().unwrap(), bytes);
    }

    #[test]
    fn begin() {
        // B, final lsn 0/16B3748, commit time 1 s after 2000-01-01, xid 734.
        roundtrip(
            b"B\0\0\0\0\x01\x6B\x37\x48\0\0\0\0\0\x0F\x42\x40\0\0\x02\xDE",
            LogicalMessage::Begin(Begin {
                final_lsn: Lsn(0x16B_3748),
                commit_time: PgTimestamp(1_000_000),
                xid: Xid(734),
            }),
        );
    }

    #[test]
    fn commit() {
        roundtrip(
            b"C\0\0\0\0\0\x01\x6B\x37\x48\0\0\0\0\x01\x6B\x37\x78\0\0\0\0\0\x0F\x42\x40",
            LogicalMessage::Commit(Commit {
                commit_lsn: Lsn(0x16B_3748),
                end_lsn: Lsn(0x16B_3778),
                commit_time: PgTimestamp(1_000_000),
            }),
        );
        let bad = b"C\x01\0\0\0\0\x01\x6B\x37\x48\0\0\0\0\x01\x6B\x37\x78\0\0\0\0\0\x0F\x42\x40";
        assert!(matches!(
            v1(bad),
            Err(Error::InvalidValue {
                message: "Commit",
                field: "flags",
                offset: 1,
                ..
            })
        ));
    }

    #[test]
    fn origin() {
        roundtrip(
            b"O\0\0\0\0\0\0\0\x10pg_16395\0",
            LogicalMessage::Origin(Origin {
                commit_lsn: Lsn(16),
                name: "pg_16395".into(),
            }),
        );
        assert!(matches!(
            v1(b"O\0\0\0\0\0\0\0\x10pg"),
            Err(Error::UnterminatedString {
                field: "origin name",
                offset: 9,
                ..
            })
        ));
    }

    #[test]
    fn decoding_message() {
        roundtrip(
            b"M\x01\0\0\0\0\0\0\0\x20app\0\0\0\0\x02hi",
            LogicalMessage::Message(DecodingMessage {
                xid: None,
                transactional: true,
                lsn: Lsn(32),
                prefix: "app".into(),
                content: Bytes::from_static(b"hi"),
            }),
        );
        // Inside a stream block the xid comes first.
        let streamed = b"M\0\0\x02\xDE\0\0\0\0\0\0\0\0\x20app\0\0\0\0\0";
        let msg = LogicalMessage::decode(
            Bytes::from_static(streamed),
            DecodeContext::streaming(ProtocolVersion::V2),
        )
        .unwrap();
        assert_eq!(
            msg,
            LogicalMessage::Message(DecodingMessage {
                xid: Some(Xid(734)),
                transactional: false,
                lsn: Lsn(32),
                prefix: "app".into(),
                content: Bytes::new(),
            })
        );
        assert_eq!(msg.encode().unwrap(), &streamed[..]);
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let begin = b"B\0\0\0\0\x01\x6B\x37\x48\0\0\0\0\0\x0F\x42\x40\0\0\x02\xDE";
        assert!(matches!(
            v1(&begin[..20]),
            Err(Error::Truncated {
                message: "Begin",
                field: "xid",
                offset: 17,
                ..
            })
        ));
        let mut long = begin.to_vec();
        long.push(0);
        assert!(matches!(
            v1(&long),
            Err(Error::TrailingBytes {
                message: "Begin",
                offset: 21,
                remaining: 1
            })
        ));
    }
}

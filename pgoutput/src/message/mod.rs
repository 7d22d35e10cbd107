//! Logical replication messages (pgoutput protocol versions 1 to 3, PostgreSQL 15).
//!
//! Contract: [`LogicalMessage::decode`] takes one XLogData payload — exactly one message — and
//! the [`DecodeContext`] it was sent in, and returns the message or an [`Error`]; it never panics
//! and never accepts trailing bytes. The context matters for two reasons. Inside a stream block
//! (between `Stream Start` and `Stream Stop`) the change messages `R Y I U D T M` carry a leading
//! xid that is otherwise absent, and nothing in the message says which; and messages that a
//! protocol version cannot carry (streaming needs 2, two-phase needs 3) are refused, so a
//! misnegotiated version fails loudly instead of misparsing. [`StreamDecoder`](crate::StreamDecoder)
//! tracks the stream-block state for you.
//!
//! Decoding is canonical: an accepted payload re-encodes to the same bytes with
//! [`LogicalMessage::encode`]. The encoders are public for tests, benchmarks and test servers.

mod change;
mod context;
mod kind;
mod stream;
mod transaction;
mod truncate;
mod two_phase;

use bytes::{Bytes, BytesMut};

pub use self::change::{Delete, Insert, OldTuple, Type, Update};
pub use self::context::{DecodeContext, ProtocolVersion};
pub use self::kind::MessageKind;
pub use self::stream::{StreamAbort, StreamCommit, StreamStart};
pub use self::transaction::{Begin, Commit, DecodingMessage, Origin};
pub use self::truncate::{Truncate, TruncateOptions};
pub use self::two_phase::{CommitPrepared, PreparedTransaction, RollbackPrepared};
use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Error, Relation, Result, Xid};

/// One decoded logical replication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalMessage {
    /// `B`
    Begin(Begin),
    /// `M`
    Message(DecodingMessage),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin),
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(Type),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `S`
    StreamStart(StreamStart),
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit(StreamCommit),
    /// `A`
    StreamAbort(StreamAbort),
    /// `b`
    BeginPrepare(PreparedTransaction),
    /// `P`
    Prepare(PreparedTransaction),
    /// `K`
    CommitPrepared(CommitPrepared),
    /// `r`
    RollbackPrepared(RollbackPrepared),
    /// `p`
    StreamPrepare(PreparedTransaction),
}

impl LogicalMessage {
    /// Decodes one XLogData payload. See the module documentation for the contract.
    pub fn decode(payload: Bytes, ctx: DecodeContext) -> Result<LogicalMessage> {
        let mut cur = Cursor::new(payload, "logical replication message");
        let tag = cur.u8("message tag")?;
        let kind =
            MessageKind::from_tag(tag).ok_or_else(|| cur.unknown_tag("message tag", 0, tag))?;
        cur.set_message(kind.name());
        let actual = ctx.protocol_version;
        let required = kind.min_protocol_version();
        if actual < required {
            return Err(too_old(kind.name(), required, actual));
        }
        if ctx.in_stream && actual < ProtocolVersion::V2 {
            return Err(too_old("a stream block", ProtocolVersion::V2, actual));
        }
        let streamed = ctx.in_stream;
        let message = match kind {
            MessageKind::Begin => LogicalMessage::Begin(Begin::decode(&mut cur)?),
            MessageKind::Message => {
                LogicalMessage::Message(DecodingMessage::decode(&mut cur, streamed)?)
            }
            MessageKind::Commit => LogicalMessage::Commit(Commit::decode(&mut cur)?),
            MessageKind::Origin => LogicalMessage::Origin(Origin::decode(&mut cur)?),
            MessageKind::Relation => {
                LogicalMessage::Relation(Relation::decode(&mut cur, streamed)?)
            }
            MessageKind::Type => LogicalMessage::Type(Type::decode(&mut cur, streamed)?),
            MessageKind::Insert => LogicalMessage::Insert(Insert::decode(&mut cur, streamed)?),
            MessageKind::Update => LogicalMessage::Update(Update::decode(&mut cur, streamed)?),
            MessageKind::Delete => LogicalMessage::Delete(Delete::decode(&mut cur, streamed)?),
            MessageKind::Truncate => {
                LogicalMessage::Truncate(Truncate::decode(&mut cur, streamed)?)
            }
            MessageKind::StreamStart => LogicalMessage::StreamStart(StreamStart::decode(&mut cur)?),
            MessageKind::StreamStop => LogicalMessage::StreamStop,
            MessageKind::StreamCommit => {
                LogicalMessage::StreamCommit(StreamCommit::decode(&mut cur)?)
            }
            MessageKind::StreamAbort => LogicalMessage::StreamAbort(StreamAbort::decode(&mut cur)?),
            MessageKind::BeginPrepare => {
                LogicalMessage::BeginPrepare(PreparedTransaction::decode(&mut cur, false)?)
            }
            MessageKind::Prepare => {
                LogicalMessage::Prepare(PreparedTransaction::decode(&mut cur, true)?)
            }
            MessageKind::CommitPrepared => {
                LogicalMessage::CommitPrepared(CommitPrepared::decode(&mut cur)?)
            }
            MessageKind::RollbackPrepared => {
                LogicalMessage::RollbackPrepared(RollbackPrepared::decode(&mut cur)?)
            }
            MessageKind::StreamPrepare => {
                LogicalMessage::StreamPrepare(PreparedTransaction::decode(&mut cur, true)?)
            }
        };
        cur.finish()?;
        Ok(message)
    }

    /// Encodes the message as pgoutput would (for tests, benchmarks and test servers). The xid
    /// prefix of a change is written when its `xid` is `Some`, i.e. for stream-block contexts.
    pub fn encode(&self) -> Result<Bytes> {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Appends the encoding to `buf`. On error `buf` may hold a partial message.
    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<()> {
        let kind = self.kind();
        let mut w = Writer::new(buf, kind.name());
        w.u8(kind.tag());
        match self {
            LogicalMessage::Begin(m) => m.encode(&mut w),
            LogicalMessage::Message(m) => m.encode(&mut w)?,
            LogicalMessage::Commit(m) => m.encode(&mut w),
            LogicalMessage::Origin(m) => m.encode(&mut w)?,
            LogicalMessage::Relation(m) => m.encode(&mut w)?,
            LogicalMessage::Type(m) => m.encode(&mut w)?,
            LogicalMessage::Insert(m) => m.encode(&mut w)?,
            LogicalMessage::Update(m) => m.encode(&mut w)?,
            LogicalMessage::Delete(m) => m.encode(&mut w)?,
            LogicalMessage::Truncate(m) => m.encode(&mut w)?,
            LogicalMessage::StreamStart(m) => m.encode(&mut w),
            LogicalMessage::StreamStop => {}
            LogicalMessage::StreamCommit(m) => m.encode(&mut w),
            LogicalMessage::StreamAbort(m) => m.encode(&mut w),
            LogicalMessage::BeginPrepare(m) => m.encode(&mut w, false)?,
            LogicalMessage::Prepare(m) | LogicalMessage::StreamPrepare(m) => {
                m.encode(&mut w, true)?
            }
            LogicalMessage::CommitPrepared(m) => m.encode(&mut w)?,
            LogicalMessage::RollbackPrepared(m) => m.encode(&mut w)?,
        }
        Ok(())
    }

    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            LogicalMessage::Begin(_) => MessageKind::Begin,
            LogicalMessage::Message(_) => MessageKind::Message,
            LogicalMessage::Commit(_) => MessageKind::Commit,
            LogicalMessage::Origin(_) => MessageKind::Origin,
            LogicalMessage::Relation(_) => MessageKind::Relation,
            LogicalMessage::Type(_) => MessageKind::Type,
            LogicalMessage::Insert(_) => MessageKind::Insert,
            LogicalMessage::Update(_) => MessageKind::Update,
            LogicalMessage::Delete(_) => MessageKind::Delete,
            LogicalMessage::Truncate(_) => MessageKind::Truncate,
            LogicalMessage::StreamStart(_) => MessageKind::StreamStart,
            LogicalMessage::StreamStop => MessageKind::StreamStop,
            LogicalMessage::StreamCommit(_) => MessageKind::StreamCommit,
            LogicalMessage::StreamAbort(_) => MessageKind::StreamAbort,
            LogicalMessage::BeginPrepare(_) => MessageKind::BeginPrepare,
            LogicalMessage::Prepare(_) => MessageKind::Prepare,
            LogicalMessage::CommitPrepared(_) => MessageKind::CommitPrepared,
            LogicalMessage::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            LogicalMessage::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }

    /// The xid prefix of a change decoded inside a stream block: the (sub)transaction that made
    /// it. `None` outside stream blocks and for messages without the prefix.
    pub fn stream_xid(&self) -> Option<Xid> {
        match self {
            LogicalMessage::Message(m) => m.xid,
            LogicalMessage::Relation(m) => m.xid,
            LogicalMessage::Type(m) => m.xid,
            LogicalMessage::Insert(m) => m.xid,
            LogicalMessage::Update(m) => m.xid,
            LogicalMessage::Delete(m) => m.xid,
            LogicalMessage::Truncate(m) => m.xid,
            _ => None,
        }
    }

    /// The context this message decodes in: the oldest protocol version that carries it, inside
    /// a stream block iff it has a stream xid. Useful for roundtrip tests and test servers.
    pub fn natural_context(&self) -> DecodeContext {
        let version = self.kind().min_protocol_version();
        match self.stream_xid() {
            Some(_) => DecodeContext::streaming(version.max(ProtocolVersion::V2)),
            None => DecodeContext::new(version),
        }
    }
}

fn too_old(message: &'static str, required: ProtocolVersion, actual: ProtocolVersion) -> Error {
    Error::ProtocolTooOld {
        message,
        required: required.number(),
        actual: actual.number(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_empty() {
        let ctx = DecodeContext::new(ProtocolVersion::V3);
        assert!(matches!(
            LogicalMessage::decode(Bytes::from_static(b"Z"), ctx),
            Err(Error::UnknownTag {
                field: "message tag",
                offset: 0,
                tag: b'Z',
                ..
            })
        ));
        assert!(matches!(
            LogicalMessage::decode(Bytes::new(), ctx),
            Err(Error::Truncated {
                field: "message tag",
                offset: 0,
                ..
            })
        ));
        assert!(matches!(
            LogicalMessage::decode(Bytes::from_static(b"EX"), ctx),
            Err(Error::TrailingBytes {
                message: "Stream Stop",
                offset: 1,
                remaining: 1
            })
        ));
    }

    #[test]
    fn stream_block_needs_protocol_2() {
        let ctx = DecodeContext::streaming(ProtocolVersion::V1);
        assert!(matches!(
            LogicalMessage::decode(Bytes::from_static(b"I\0\0\0\x01\0\0\0\x01N\0\0"), ctx),
            Err(Error::ProtocolTooOld {
                message: "a stream block",
                required: 2,
                actual: 1
            })
        ));
    }
}

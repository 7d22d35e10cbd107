//! A stateful decoder that tracks stream blocks for the caller.
//!
//! Whether a change carries an xid prefix depends on whether it sits between `Stream Start` and
//! `Stream Stop`, which only the message sequence tells. [`StreamDecoder`] keeps that one bit of
//! state (and the open block's xid) so a replication client can feed it every XLogData payload
//! in order. It also refuses sequences pgoutput never produces — a nested `Stream Start`, a
//! `Stream Stop` outside a block, a transaction boundary (`Begin`, `Commit`, `Stream Commit`,
//! ...) inside a block — because decoding past such a desynchronisation would silently read xid
//! prefixes as oids. A refused message leaves the state unchanged. The decoder does not check
//! `Begin`/`Commit` pairing: that is the consumer's business, and the server is trusted on it.

use bytes::Bytes;

use crate::{
    DecodeContext, Error, LogicalMessage, MessageKind, ProtocolVersion, Result, StreamStart, Xid,
};

/// Decodes a sequence of XLogData payloads, tracking stream blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDecoder {
    protocol_version: ProtocolVersion,
    /// The top-level xid of the open stream block, if any.
    open_block: Option<Xid>,
}

impl StreamDecoder {
    /// A decoder for a replication session with the given `proto_version`, outside any block.
    pub fn new(protocol_version: ProtocolVersion) -> Self {
        StreamDecoder {
            protocol_version,
            open_block: None,
        }
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.protocol_version
    }

    /// Whether a stream block is open.
    pub fn in_stream(&self) -> bool {
        self.open_block.is_some()
    }

    /// The top-level xid of the open stream block (from its `Stream Start`).
    pub fn stream_xid(&self) -> Option<Xid> {
        self.open_block
    }

    /// The context the next message will be decoded in.
    pub fn context(&self) -> DecodeContext {
        DecodeContext {
            protocol_version: self.protocol_version,
            in_stream: self.in_stream(),
        }
    }

    /// Forgets any open block, e.g. after reconnecting (the server restarts from a commit).
    pub fn reset(&mut self) {
        self.open_block = None;
    }

    /// Decodes the next XLogData payload and advances the stream-block state.
    pub fn decode(&mut self, payload: Bytes) -> Result<LogicalMessage> {
        if let Some(kind) = payload.first().copied().and_then(MessageKind::from_tag) {
            self.check_sequence(kind)?;
        }
        let message = LogicalMessage::decode(payload, self.context())?;
        match &message {
            LogicalMessage::StreamStart(StreamStart { xid, .. }) => self.open_block = Some(*xid),
            LogicalMessage::StreamStop => self.open_block = None,
            _ => {}
        }
        Ok(message)
    }

    fn check_sequence(&self, kind: MessageKind) -> Result<()> {
        let state = if self.in_stream() {
            (!kind.allowed_in_stream_block()).then_some("inside a stream block")
        } else {
            (kind == MessageKind::StreamStop).then_some("outside a stream block")
        };
        match state {
            Some(state) => Err(Error::UnexpectedMessage {
                message: kind.name(),
                state,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Insert, Oid, TupleData};

    fn insert(xid: Option<Xid>) -> Bytes {
        LogicalMessage::Insert(Insert {
            xid,
            relation: Oid(16384),
            new: TupleData::default(),
        })
        .encode()
        .unwrap()
    }

    #[test]
    fn tracks_blocks_and_xid_prefixes() {
        let mut d = StreamDecoder::new(ProtocolVersion::V2);
        // Outside a block, an Insert has no xid.
        assert_eq!(d.decode(insert(None)).unwrap().stream_xid(), None);
        d.decode(Bytes::from_static(b"S\0\0\x03\xE8\x01")).unwrap();
        assert_eq!(d.stream_xid(), Some(Xid(1000)));
        assert!(d.context().in_stream);
        // Inside, it has one (here a subtransaction's).
        assert_eq!(
            d.decode(insert(Some(Xid(1001)))).unwrap().stream_xid(),
            Some(Xid(1001))
        );
        d.decode(Bytes::from_static(b"O\0\0\0\0\0\0\0\0o\0"))
            .unwrap();
        d.decode(Bytes::from_static(b"E")).unwrap();
        assert!(!d.in_stream());
        d.decode(Bytes::from_static(b"A\0\0\x03\xE8\0\0\x03\xE8"))
            .unwrap();
    }

    #[test]
    fn refuses_impossible_sequences_without_changing_state() {
        let mut d = StreamDecoder::new(ProtocolVersion::V2);
        assert_eq!(
            d.decode(Bytes::from_static(b"E")),
            Err(Error::UnexpectedMessage {
                message: "Stream Stop",
                state: "outside a stream block"
            })
        );
        d.decode(Bytes::from_static(b"S\0\0\x03\xE8\x00")).unwrap();
        assert!(matches!(
            d.decode(Bytes::from_static(b"S\0\0\x03\xE9\x01")),
            Err(Error::UnexpectedMessage {
                message: "Stream Start",
                ..
            })
        ));
        let begin = b"B\0\0\0\0\0\0\0\x10\0\0\0\0\0\0\0\0\0\0\0\x01";
        assert!(matches!(
            d.decode(Bytes::from_static(begin)),
            Err(Error::UnexpectedMessage {
                message: "Begin",
                state: "inside a stream block"
            })
        ));
        assert_eq!(d.stream_xid(), Some(Xid(1000)));
        // A malformed message inside the block leaves it open.
        assert!(d.decode(Bytes::from_static(b"I\0")).is_err());
        assert!(d.in_stream());
        d.reset();
        assert!(!d.in_stream());
        d.decode(Bytes::from_static(begin)).unwrap();
    }

    #[test]
    fn protocol_1_has_no_streams() {
        let mut d = StreamDecoder::new(ProtocolVersion::V1);
        assert!(matches!(
            d.decode(Bytes::from_static(b"S\0\0\x03\xE8\x01")),
            Err(Error::ProtocolTooOld { .. })
        ));
        assert!(!d.in_stream());
    }
}

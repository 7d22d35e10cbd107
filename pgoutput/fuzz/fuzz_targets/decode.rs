//! Fuzzes the pgoutput decoders: the logical message decoder (every context), the CopyData
//! framing (server and client messages), the stateful stream decoder and relation-cache
//! resolution over a sequence of frames.
//!
//! Input format (also used by `cargo run -p pgoutput --example fuzz_seeds`):
//! byte 0 selects the context: bits 0-1 the protocol version (0 → 1, 1 → 2, else 3), bit 2
//! whether the one-shot logical decode runs inside a stream block. The rest is a sequence of
//! frames, each a big-endian u16 length then that many bytes (a short last frame is taken as is).
//!
//! Besides "no panic", the target asserts that every accepted input re-encodes to itself and
//! that resolved tuples have the relation's width.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgoutput::{
    ClientCopyMessage, DecodeContext, LogicalMessage, Oid, ProtocolVersion, RelationCache,
    ServerCopyMessage, StreamDecoder, TupleData,
};

fn frames(mut data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (len, rest) = match data {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            [_] => break,
            [] => break,
        };
        let take = len.min(rest.len());
        out.push(Bytes::copy_from_slice(&rest[..take]));
        data = &rest[take..];
    }
    out
}

fn resolve(cache: &RelationCache, oid: Oid, tuple: &TupleData) {
    if let Ok(resolved) = cache.resolve(oid, tuple) {
        assert_eq!(resolved.columns.len(), tuple.columns.len());
        assert_eq!(resolved.relation.columns.len(), tuple.columns.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let version = match selector & 0b11 {
        0 => ProtocolVersion::V1,
        1 => ProtocolVersion::V2,
        _ => ProtocolVersion::V3,
    };
    let ctx = DecodeContext {
        protocol_version: version,
        in_stream: selector & 0b100 != 0,
    };
    let mut decoder = StreamDecoder::new(version);
    let mut cache = RelationCache::new();

    for frame in frames(rest) {
        if let Ok(message) = LogicalMessage::decode(frame.clone(), ctx) {
            assert_eq!(
                message.encode().expect("accepted message must encode"),
                frame
            );
        }
        if let Ok(message) = ClientCopyMessage::decode(frame.clone()) {
            assert_eq!(message.encode(), frame);
        }
        let Ok(server) = ServerCopyMessage::decode(frame.clone()) else {
            continue;
        };
        assert_eq!(server.encode(), frame);
        let ServerCopyMessage::XLogData(xlog) = server else {
            continue;
        };
        let Ok(message) = decoder.decode(xlog.data.clone()) else {
            continue;
        };
        assert_eq!(
            message.encode().expect("accepted message must encode"),
            xlog.data
        );
        cache.observe(&message);
        match &message {
            LogicalMessage::Insert(m) => resolve(&cache, m.relation, &m.new),
            LogicalMessage::Update(m) => {
                if let Some(old) = &m.old {
                    resolve(&cache, m.relation, old.tuple());
                }
                resolve(&cache, m.relation, &m.new);
            }
            LogicalMessage::Delete(m) => resolve(&cache, m.relation, m.old.tuple()),
            _ => {}
        }
    }
});

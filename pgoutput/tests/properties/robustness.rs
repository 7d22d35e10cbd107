//! No input makes a decoder panic; any input a decoder accepts re-encodes to itself; every
//! strict prefix of a valid encoding is refused.

use bytes::Bytes;
use pgoutput::{
    ClientCopyMessage, DecodeContext, LogicalMessage, MessageKind, ProtocolVersion, RelationCache,
    ServerCopyMessage, StreamDecoder,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::strategies::{
    client_copy_message, logical_message, relation, server_copy_message, tuple, xid,
};

fn contexts() -> impl Iterator<Item = DecodeContext> {
    [
        ProtocolVersion::V1,
        ProtocolVersion::V2,
        ProtocolVersion::V3,
    ]
    .into_iter()
    .flat_map(|v| [DecodeContext::new(v), DecodeContext::streaming(v)])
}

/// Decodes `bytes` every way the crate can; accepted inputs must re-encode to themselves.
fn decode_every_way(bytes: &[u8]) -> Result<(), TestCaseError> {
    let input = Bytes::copy_from_slice(bytes);
    for ctx in contexts() {
        if let Ok(message) = LogicalMessage::decode(input.clone(), ctx) {
            let encoded = message
                .encode()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(encoded, input.clone());
        }
    }
    if let Ok(message) = ServerCopyMessage::decode(input.clone()) {
        prop_assert_eq!(message.encode(), input.clone());
    }
    if let Ok(message) = ClientCopyMessage::decode(input.clone()) {
        prop_assert_eq!(message.encode(), input);
    }
    Ok(())
}

/// Arbitrary bytes, half of them starting with a real tag so decoding gets past the first byte.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let tags: Vec<u8> = MessageKind::ALL
        .iter()
        .map(|k| k.tag())
        .chain(*b"wkrh")
        .collect();
    prop_oneof![
        vec(any::<u8>(), 0..128),
        (proptest::sample::select(tags), vec(any::<u8>(), 0..128)).prop_map(|(tag, mut rest)| {
            rest.insert(0, tag);
            rest
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in payload()) {
        decode_every_way(&bytes)?;
    }

    #[test]
    fn truncations_are_refused(message in logical_message()) {
        let bytes = message.encode().unwrap();
        let ctx = message.natural_context();
        for len in 0..bytes.len() {
            prop_assert!(LogicalMessage::decode(bytes.slice(..len), ctx).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn copy_truncations_are_refused(
        server in server_copy_message(),
        client in client_copy_message(),
    ) {
        let bytes = server.encode();
        // XLogData's payload runs to the end, so only its 25-byte header must be whole.
        let header = if bytes.first() == Some(&b'w') { 25 } else { bytes.len() };
        for len in 0..header {
            prop_assert!(ServerCopyMessage::decode(bytes.slice(..len)).is_err());
        }
        let bytes = client.encode();
        for len in 0..bytes.len() {
            prop_assert!(ClientCopyMessage::decode(bytes.slice(..len)).is_err());
        }
    }

    #[test]
    fn single_byte_mutations_never_panic(
        message in logical_message(),
        position in any::<proptest::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = message.encode().unwrap().to_vec();
        let at = position.index(bytes.len());
        bytes[at] = value;
        decode_every_way(&bytes)?;
        // Also with a byte inserted or removed, which shifts every later field.
        let mut longer = bytes.clone();
        longer.insert(at, value);
        decode_every_way(&longer)?;
        bytes.remove(at);
        decode_every_way(&bytes)?;
    }

    #[test]
    fn stream_decoder_survives_any_sequence(
        payloads in vec(payload(), 0..16),
        version in prop_oneof![
            Just(ProtocolVersion::V1), Just(ProtocolVersion::V2), Just(ProtocolVersion::V3)
        ],
    ) {
        let mut decoder = StreamDecoder::new(version);
        let mut cache = RelationCache::new();
        for p in payloads {
            if let Ok(message) = decoder.decode(Bytes::from(p)) {
                cache.observe(&message);
            }
        }
    }

    #[test]
    fn resolution_is_total(
        rel in relation(proptest::option::of(xid()).boxed()),
        t in tuple(),
    ) {
        let mut cache = RelationCache::new();
        prop_assert!(cache.resolve(rel.id, &t).is_err());
        cache.insert(rel.clone());
        match cache.resolve(rel.id, &t) {
            Ok(resolved) => {
                prop_assert_eq!(resolved.columns.len(), t.columns.len());
                for (c, (rc, v)) in resolved.columns.iter().zip(rel.columns.iter().zip(&t.columns)) {
                    prop_assert_eq!(c.name, rc.name.as_str());
                    prop_assert_eq!(c.type_oid, rc.type_oid);
                    prop_assert_eq!(c.is_key, rc.is_key);
                    prop_assert_eq!(c.value, v);
                }
            }
            Err(_) => prop_assert_ne!(rel.columns.len(), t.columns.len()),
        }
    }
}

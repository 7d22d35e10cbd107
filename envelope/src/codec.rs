//! Single-object encoding of [`Envelope`]s against the schemas in `schemas/`.
//!
//! The codec knows every schema version ever published (`KNOWN_SCHEMAS`, oldest first) by its
//! Rabin fingerprint; it always writes the newest and reads any of them, resolving an older writer
//! schema to the newest by Avro's rules. A new version is a new `.avsc` file appended to the list,
//! with defaults for every added field, and a test that decodes a record written with the old one.

use std::collections::HashMap;

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use crate::error::{Error, Result};
use crate::value::{from_value, to_value};
use crate::Envelope;

/// The two bytes that open every single-object encoded record.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// Every envelope schema version, oldest first; the last one is written.
const KNOWN_SCHEMAS: &[(&str, &str)] = &[(
    "change_envelope.v1",
    include_str!("../../schemas/change_envelope.v1.avsc"),
)];

/// The most a single record may make the Avro decoder allocate. A record is one entity's changed
/// fields (a dashboard layout is tens of KB); a corrupt length prefix must not allocate gigabytes.
/// Avro's limit is process-wide and set once, by the first codec.
pub const MAX_RECORD_ALLOCATION: usize = 64 * 1024 * 1024;

/// Encoder and decoder of envelopes. Cheap to share; build one per process.
#[derive(Debug)]
pub struct Codec {
    current: Schema,
    current_fingerprint: u64,
    known: HashMap<u64, Schema>,
}

impl Codec {
    /// Parses the embedded schemas.
    pub fn new() -> Result<Codec> {
        Codec::with_schemas(KNOWN_SCHEMAS)
    }

    /// A codec over `schemas` (oldest first, the last one written): how tests stand in for a
    /// future version.
    pub(crate) fn with_schemas(schemas: &[(&'static str, &str)]) -> Result<Codec> {
        apache_avro::util::max_allocation_bytes(MAX_RECORD_ALLOCATION);
        let mut known = HashMap::new();
        let mut current = None;
        for (name, text) in schemas {
            let schema = Schema::parse_str(text).map_err(|source| Error::Schema {
                name,
                source: Box::new(source),
            })?;
            let fingerprint = fingerprint(&schema);
            current = Some((schema.clone(), fingerprint));
            known.insert(fingerprint, schema);
        }
        let (current, current_fingerprint) =
            current.ok_or(Error::UnknownSchema { fingerprint: 0 })?;
        Ok(Codec {
            current,
            current_fingerprint,
            known,
        })
    }

    /// The fingerprint written into every record.
    pub fn fingerprint(&self) -> u64 {
        self.current_fingerprint
    }

    /// Encodes with the newest schema: magic, fingerprint (little-endian), datum.
    pub fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>> {
        let datum = GenericDatumWriter::builder(&self.current)
            .build()?
            .write_value_to_vec(to_value(envelope)?)?;
        let mut out = Vec::with_capacity(10 + datum.len());
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&self.current_fingerprint.to_le_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a record written with any known schema version.
    pub fn decode(&self, bytes: &[u8]) -> Result<Envelope> {
        let (header, mut datum) = bytes
            .split_at_checked(10)
            .ok_or(Error::TooShort { len: bytes.len() })?;
        let (magic, print) = header.split_at(2);
        if magic != SINGLE_OBJECT_MAGIC {
            return Err(Error::NotSingleObject);
        }
        let mut le = [0u8; 8];
        le.copy_from_slice(print);
        let fingerprint = u64::from_le_bytes(le);
        let writer = self
            .known
            .get(&fingerprint)
            .ok_or(Error::UnknownSchema { fingerprint })?;
        let resolve_to = (fingerprint != self.current_fingerprint).then_some(&self.current);
        let value = GenericDatumReader::builder(writer)
            .maybe_reader_schema(resolve_to)
            .build()?
            .read_value(&mut datum)?;
        if !datum.is_empty() {
            return Err(Error::TrailingBytes {
                trailing: datum.len(),
            });
        }
        from_value(value)
    }
}

/// The schema's 64-bit Rabin fingerprint (of its parsing canonical form), as a number.
fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut le = [0u8; 8];
    for (slot, byte) in le.iter_mut().zip(bytes) {
        *slot = byte;
    }
    u64::from_le_bytes(le)
}

#[cfg(test)]
mod tests {
    use conflict::{Counter, Dot, FieldPath, Hlc, RegionId, VersionVector};
    use pgoutput::Lsn;
    use proptest::prelude::*;

    use super::*;
    use crate::{Body, EntityChange, FieldWrite, Seq, UnixMicros};

    fn region(s: &str) -> RegionId {
        RegionId::new(s).unwrap()
    }

    fn change() -> Envelope {
        let mut clock = VersionVector::new();
        clock.observe(&Dot::new(region("us"), Counter(3)));
        clock.observe(&Dot::new(region("eu"), Counter(7)));
        Envelope {
            source: region("us"),
            commit_lsn: Lsn(0x1_6B37_4D48),
            commit_time: UnixMicros(1_790_000_000_000_000),
            seq: Seq(0),
            body: Body::Change(EntityChange {
                table: "dashboards".into(),
                entity: "0b4c6d0e-8d1f-4f6a-9a57-3f0f5d6c7e21".parse().unwrap(),
                clock,
                fields: vec![FieldWrite {
                    path: FieldPath::new("dashboard_title").unwrap(),
                    dot: Dot::new(region("us"), Counter(3)),
                    hlc: Hlc::new(1_790_000_000_000, 2).unwrap(),
                    value: serde_json::json!("Sales"),
                }],
            }),
        }
    }

    #[test]
    fn every_body_round_trips() {
        let codec = Codec::new().unwrap();
        let commit = Envelope {
            seq: Seq(1),
            body: Body::Commit { change_count: 1 },
            ..change()
        };
        let beat = Envelope {
            body: Body::Heartbeat {
                beat: 42,
                beat_time: UnixMicros(5),
            },
            ..change()
        };
        for envelope in [change(), commit, beat] {
            let bytes = codec.encode(&envelope).unwrap();
            assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
            assert_eq!(bytes[2..10], codec.fingerprint().to_le_bytes());
            assert_eq!(codec.decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn framing_errors_are_errors() {
        let codec = Codec::new().unwrap();
        let good = codec.encode(&change()).unwrap();
        assert!(matches!(
            codec.decode(&good[..5]),
            Err(Error::TooShort { len: 5 })
        ));
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            codec.decode(&bad_magic),
            Err(Error::NotSingleObject)
        ));
        let mut unknown = good.clone();
        unknown[5] ^= 0xFF;
        assert!(matches!(
            codec.decode(&unknown),
            Err(Error::UnknownSchema { .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            codec.decode(&trailing),
            Err(Error::TrailingBytes { trailing: 1 })
        ));
        assert!(codec.decode(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn a_record_of_an_older_version_decodes_with_a_newer_codec() {
        // A stand-in v2: v1 plus a field with a default, as evolution rules require.
        let v1 = KNOWN_SCHEMAS[0].1;
        let v2 = v1.replacen(
            r#""fields": [
    {"name": "source_region""#,
            r#""fields": [
    {"name": "trace_id", "type": "string", "default": ""},
    {"name": "source_region""#,
            1,
        );
        assert_ne!(v1, v2, "the stand-in v2 must differ from v1");
        let old = Codec::new().unwrap().encode(&change()).unwrap();
        let newer = Codec::with_schemas(&[("v1", v1), ("v2", &v2)]).unwrap();
        assert_ne!(newer.fingerprint(), Codec::new().unwrap().fingerprint());
        assert_eq!(newer.decode(&old).unwrap(), change());
    }

    #[test]
    fn values_the_model_forbids_are_shape_errors() {
        let codec = Codec::new().unwrap();
        let mut value = crate::value::to_value(&change()).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields[0].1 = apache_avro::types::Value::String("NOT A REGION".into());
        }
        let datum = GenericDatumWriter::builder(&codec.current)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
        bytes.extend_from_slice(&codec.fingerprint().to_le_bytes());
        bytes.extend_from_slice(&datum);
        assert!(matches!(
            codec.decode(&bytes),
            Err(Error::Clock {
                field: "source_region",
                ..
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decoding_any_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let codec = Codec::new().unwrap();
            let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
            bytes.extend_from_slice(&codec.fingerprint().to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = codec.decode(&bytes);
            let _ = codec.decode(&body);
        }

        #[test]
        fn mutated_records_never_panic(at in 0usize..400, byte in any::<u8>()) {
            let codec = Codec::new().unwrap();
            let mut bytes = codec.encode(&change()).unwrap();
            let len = bytes.len();
            bytes[at % len] = byte;
            let _ = codec.decode(&bytes);
        }

        #[test]
        fn generated_changes_round_trip(
            lsn in any::<u64>(),
            seq in 0u64..1_000_000,
            title in ".*",
            counter in 1u64..1_000_000,
            wall in 0u64..(1u64 << 47),
            logical in any::<u16>(),
        ) {
            let codec = Codec::new().unwrap();
            let mut envelope = change();
            envelope.commit_lsn = Lsn(lsn);
            envelope.seq = Seq(seq);
            if let Body::Change(c) = &mut envelope.body {
                c.fields[0].value = serde_json::json!({ "title": title, "n": counter });
                c.fields[0].dot = Dot::new(region("eu"), Counter(counter));
                c.fields[0].hlc = Hlc::new(wall, logical).unwrap();
            }
            let decoded = codec.decode(&codec.encode(&envelope).unwrap()).unwrap();
            prop_assert_eq!(decoded, envelope);
        }
    }
}

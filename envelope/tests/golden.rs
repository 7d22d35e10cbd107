//! Records published by earlier releases must stay decodable forever: topics keep them, and a
//! region that was down catches up from them. Each `tests/fixtures/*.hex` is one record exactly as
//! a released version wrote it. Editing a published `.avsc` in place changes its fingerprint and
//! fails this test — add a new version instead.
//!
//! `BLESS=1 cargo test -p envelope --test golden` writes the fixture of the newest version when it
//! does not exist yet; it never overwrites one.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code: a failure is the test failing

use conflict::{Counter, Dot, FieldPath, Hlc, RegionId, VersionVector};
use envelope::{Body, Codec, EntityChange, Envelope, FieldWrite, Seq, UnixMicros};
use pgoutput::Lsn;

fn v1_dashboard_title_change() -> Envelope {
    let us = RegionId::new("us").unwrap();
    let mut clock = VersionVector::new();
    clock.observe(&Dot::new(us, Counter(3)));
    clock.observe(&Dot::new(RegionId::new("eu").unwrap(), Counter(7)));
    Envelope {
        source: us,
        commit_lsn: Lsn(0x1_6B37_4D48),
        commit_time: UnixMicros(1_790_000_000_000_000),
        seq: Seq(0),
        body: Body::Change(EntityChange {
            table: "dashboards".into(),
            entity: "0b4c6d0e-8d1f-4f6a-9a57-3f0f5d6c7e21".parse().unwrap(),
            clock,
            fields: vec![
                FieldWrite {
                    path: FieldPath::new("dashboard_title").unwrap(),
                    dot: Dot::new(us, Counter(3)),
                    hlc: Hlc::new(1_790_000_000_000, 2).unwrap(),
                    value: serde_json::json!("Sales"),
                },
                FieldWrite {
                    path: FieldPath::existence(),
                    dot: Dot::new(us, Counter(3)),
                    hlc: Hlc::new(1_790_000_000_000, 2).unwrap(),
                    value: serde_json::json!(true),
                },
            ],
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_v1_record_still_decodes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v1_dashboard_title_change.hex"
    );
    let codec = Codec::new().unwrap();
    if std::env::var_os("BLESS").is_some() && !std::path::Path::new(path).exists() {
        std::fs::write(
            path,
            hex(&codec.encode(&v1_dashboard_title_change()).unwrap()) + "\n",
        )
        .unwrap();
    }
    let recorded = unhex(&std::fs::read_to_string(path).unwrap());
    assert_eq!(
        codec.decode(&recorded).unwrap(),
        v1_dashboard_title_change()
    );
}

//! Unit tests of the assembler: message sequences as the BEFORE triggers produce them.

use bytes::Bytes;
use pgoutput::{
    Begin, Commit, Delete, Insert, OldTuple, Origin, PgTimestamp, Relation, RelationColumn,
    ReplicaIdentity, Update, Xid,
};

use super::*;

const TEXT: Oid = Oid(25);

fn relation(id: u32, schema: &str, name: &str, columns: &[&str]) -> LogicalMessage {
    LogicalMessage::Relation(Relation {
        xid: None,
        id: Oid(id),
        namespace: schema.into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|c| RelationColumn {
                is_key: *c == "id",
                name: (*c).into(),
                type_oid: TEXT,
                type_modifier: -1,
            })
            .collect(),
    })
}

fn tuple(values: &[Option<&str>]) -> TupleData {
    TupleData {
        columns: values
            .iter()
            .map(|v| match v {
                Some(text) => ColumnValue::Text(Bytes::copy_from_slice(text.as_bytes())),
                None => ColumnValue::Null,
            })
            .collect(),
    }
}

fn insert(rel: u32, values: &[Option<&str>]) -> LogicalMessage {
    LogicalMessage::Insert(Insert {
        xid: None,
        relation: Oid(rel),
        new: tuple(values),
    })
}

fn update(rel: u32, values: &[Option<&str>]) -> LogicalMessage {
    LogicalMessage::Update(Update {
        xid: None,
        relation: Oid(rel),
        old: None,
        new: tuple(values),
    })
}

fn begin(lsn: u64) -> LogicalMessage {
    LogicalMessage::Begin(Begin {
        final_lsn: Lsn(lsn),
        commit_time: PgTimestamp(1_000),
        xid: Xid(7),
    })
}

fn commit(lsn: u64, end: u64) -> LogicalMessage {
    LogicalMessage::Commit(Commit {
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(end),
        commit_time: PgTimestamp(1_000),
    })
}

const ENTITY: u32 = 1;
const FIELD: u32 = 2;
const DASHBOARDS: u32 = 3;
const REGISTRY: u32 = 4;
const HEARTBEAT: u32 = 5;
const DASH: &str = "0b4c6d0e-8d1f-4f6a-9a57-3f0f5d6c7e21";

fn relations() -> Vec<LogicalMessage> {
    vec![
        relation(
            ENTITY,
            "replicator",
            "entity",
            &[
                "table_name",
                "uuid",
                "clock",
                "max_hlc",
                "alive",
                "last_local_xid",
            ],
        ),
        relation(
            FIELD,
            "replicator",
            "field_version",
            &[
                "table_name",
                "uuid",
                "field",
                "region",
                "counter",
                "hlc",
                "xid",
            ],
        ),
        relation(
            DASHBOARDS,
            "public",
            "dashboards",
            &["id", "dashboard_title", "uuid"],
        ),
        relation(
            REGISTRY,
            "replicator",
            "registry",
            &["table_name", "local_id", "uuid"],
        ),
        relation(
            HEARTBEAT,
            "replicator",
            "heartbeat",
            &["region", "seq", "beat_unix_micros"],
        ),
    ]
}

fn entity_row(clock: &str, alive: bool) -> LogicalMessage {
    insert(
        ENTITY,
        &[
            Some("dashboards"),
            Some(DASH),
            Some(clock),
            Some("65536"),
            Some(if alive { "t" } else { "f" }),
            Some("7"),
        ],
    )
}

fn field_row(field: &str, counter: &str, hlc: &str) -> LogicalMessage {
    insert(
        FIELD,
        &[
            Some("dashboards"),
            Some(DASH),
            Some(field),
            Some("us"),
            Some(counter),
            Some(hlc),
            Some("7"),
        ],
    )
}

fn run(messages: &[LogicalMessage]) -> (Assembler, Vec<Captured>) {
    let mut assembler = Assembler::new();
    let mut out = Vec::new();
    for m in relations().iter().chain(messages) {
        assembler.feed(m, &mut out).unwrap();
    }
    (assembler, out)
}

#[test]
fn an_insert_carries_its_stamps_clock_and_row() {
    let (assembler, out) = run(&[
        begin(100),
        insert(REGISTRY, &[Some("dashboards"), Some("12"), Some(DASH)]),
        entity_row(r#"{"us": 1}"#, true),
        field_row("dashboard_title", "1", "65536"),
        field_row("$exists", "1", "65536"),
        insert(DASHBOARDS, &[Some("12"), Some("Sales"), Some(DASH)]),
        commit(100, 120),
    ]);
    assert_eq!(out.len(), 4, "{out:#?}");
    assert!(matches!(
        out[0],
        Captured::Begin {
            commit_lsn: Lsn(100),
            ..
        }
    ));
    assert!(matches!(&out[1], Captured::Registered { local_id: 12, .. }));
    let Captured::Change(change) = &out[2] else {
        panic!("{:?}", out[2])
    };
    assert_eq!(change.table, "dashboards");
    assert_eq!(change.entity.to_string(), DASH);
    assert_eq!(
        change
            .stamps
            .iter()
            .map(|s| s.field.as_str())
            .collect::<Vec<_>>(),
        ["dashboard_title", "$exists"]
    );
    assert_eq!(change.clock.get(RegionId::new("us").unwrap()), Counter(1));
    let row = change.row.as_ref().unwrap();
    assert_eq!(
        row.get("dashboard_title").unwrap().value,
        ColumnValue::Text(Bytes::from_static(b"Sales"))
    );
    assert_eq!(
        out[3],
        Captured::Commit {
            commit_lsn: Lsn(100),
            end_lsn: Lsn(120)
        }
    );
    assert_eq!(assembler.orphans(), 0);
}

#[test]
fn two_writes_in_one_transaction_are_two_changes_of_one_dot() {
    let (_, out) = run(&[
        begin(200),
        entity_row(r#"{"us": 2}"#, true),
        field_row("dashboard_title", "2", "70000"),
        update(DASHBOARDS, &[Some("12"), Some("First"), Some(DASH)]),
        entity_row(r#"{"us": 2}"#, true),
        field_row("dashboard_title", "2", "70001"),
        update(DASHBOARDS, &[Some("12"), Some("Second"), Some(DASH)]),
        commit(200, 220),
    ]);
    let changes: Vec<&CapturedChange> = out
        .iter()
        .filter_map(|c| {
            if let Captured::Change(c) = c {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].stamps[0].dot, changes[1].stamps[0].dot);
    assert!(changes[0].stamps[0].hlc < changes[1].stamps[0].hlc);
}

#[test]
fn a_delete_has_no_row_and_an_unversioned_update_publishes_nothing() {
    let (_, out) = run(&[
        begin(300),
        update(DASHBOARDS, &[Some("12"), Some("local only"), Some(DASH)]),
        entity_row(r#"{"us": 3}"#, false),
        field_row("$exists", "3", "80000"),
        LogicalMessage::Delete(Delete {
            xid: None,
            relation: Oid(DASHBOARDS),
            old: OldTuple::Key(tuple(&[Some("12"), None, None])),
        }),
        commit(300, 320),
    ]);
    assert_eq!(out.len(), 3, "{out:#?}");
    let Captured::Change(change) = &out[1] else {
        panic!()
    };
    assert!(change.row.is_none());
    assert_eq!(change.stamps[0].field, "$exists");
}

#[test]
fn the_appliers_transactions_are_skipped_whole() {
    let (_, out) = run(&[
        begin(400),
        LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(9),
            name: "replicator_eu".into(),
        }),
        insert(REGISTRY, &[Some("dashboards"), Some("13"), Some(DASH)]),
        insert(DASHBOARDS, &[Some("13"), Some("From eu"), Some(DASH)]),
        commit(400, 420),
    ]);
    assert_eq!(out, [Captured::Skipped { end_lsn: Lsn(420) }]);
}

#[test]
fn heartbeats_and_orphaned_versioning() {
    let (assembler, out) = run(&[
        begin(500),
        insert(
            HEARTBEAT,
            &[Some("us"), Some("41"), Some("1790000000000000")],
        ),
        entity_row(r#"{"us": 4}"#, true),
        field_row("dashboard_title", "4", "90000"),
        commit(500, 520),
    ]);
    assert_eq!(
        out[1],
        Captured::Heartbeat {
            beat: 41,
            beat_time_unix_micros: 1_790_000_000_000_000
        }
    );
    assert_eq!(out.len(), 3);
    assert_eq!(assembler.orphans(), 1);
}

#[test]
fn malformed_streams_are_errors() {
    let mut assembler = Assembler::new();
    let mut out = Vec::new();
    for m in relations() {
        assembler.feed(&m, &mut out).unwrap();
    }
    assert!(
        assembler.feed(&commit(1, 2), &mut out).is_err(),
        "commit without begin"
    );
    assert!(assembler
        .feed(&insert(DASHBOARDS, &[Some("1"), None, None]), &mut out)
        .is_err());
    assembler.feed(&begin(1), &mut out).unwrap();
    assert!(
        assembler.feed(&field_row("x", "1", "1"), &mut out).is_err(),
        "field before entity"
    );
    assert!(
        assembler
            .feed(&insert(ENTITY, &[Some("dashboards")]), &mut out)
            .is_err(),
        "short row"
    );
    assert!(assembler
        .feed(&entity_row("not json", true), &mut out)
        .is_err());
    assert!(
        assembler.feed(&insert(99, &[]), &mut out).is_err(),
        "unknown relation"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of these messages, in any order, is handled without a panic.
        #[test]
        fn any_message_order_is_total(picks in proptest::collection::vec(0usize..9, 0..40)) {
            let menu = [
                begin(1),
                commit(1, 2),
                entity_row(r#"{"us": 1}"#, true),
                field_row("dashboard_title", "1", "65536"),
                insert(DASHBOARDS, &[Some("1"), Some("t"), Some(DASH)]),
                LogicalMessage::Origin(Origin { commit_lsn: Lsn(1), name: "o".into() }),
                insert(REGISTRY, &[Some("dashboards"), Some("x"), Some(DASH)]),
                insert(HEARTBEAT, &[Some("us"), Some("1"), Some("2")]),
                insert(ENTITY, &[Some("dashboards"), Some("not-a-uuid"), None, None, None, None]),
            ];
            let mut assembler = Assembler::new();
            let mut out = Vec::new();
            for m in relations() {
                assembler.feed(&m, &mut out).unwrap();
            }
            for pick in picks {
                let _ = assembler.feed(&menu[pick], &mut out);
            }
        }
    }
}

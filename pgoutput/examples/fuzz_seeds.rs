//! Writes a seed corpus for the `decode` fuzz target (see `fuzz/README.md`) into the directory
//! given as the only argument. Each seed is a realistic session built with the crate's encoders,
//! in the target's input format: a context byte, then frames of (u16 big-endian length, bytes).

use std::error::Error;
use std::path::PathBuf;

use bytes::Bytes;
use pgoutput::{
    Begin, ClientCopyMessage, ColumnValue, Commit, CommitPrepared, DecodingMessage, Delete,
    HotStandbyFeedback, Insert, LogicalMessage, Lsn, Oid, OldTuple, Origin, PgTimestamp,
    PreparedTransaction, PrimaryKeepalive, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, ServerCopyMessage, StandbyStatusUpdate, StreamAbort, StreamCommit,
    StreamStart, Truncate, TruncateOptions, TupleData, Type, Update, XLogData, Xid,
};

const TABLE: Oid = Oid(16384);

fn text(s: &'static str) -> ColumnValue {
    ColumnValue::Text(Bytes::from_static(s.as_bytes()))
}

fn relation(xid: Option<Xid>) -> LogicalMessage {
    let column = |is_key, name: &str, type_oid| RelationColumn {
        is_key,
        name: name.into(),
        type_oid: Oid(type_oid),
        type_modifier: -1,
    };
    LogicalMessage::Relation(Relation {
        xid,
        id: TABLE,
        namespace: "public".into(),
        name: "dashboards".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column(true, "id", 23),
            column(false, "json_metadata", 25),
            column(false, "uuid", 2950),
        ],
    })
}

fn row(id: &'static str) -> TupleData {
    TupleData::new(vec![text(id), text("{}"), ColumnValue::Null])
}

fn insert(xid: Option<Xid>, id: &'static str) -> LogicalMessage {
    LogicalMessage::Insert(Insert {
        xid,
        relation: TABLE,
        new: row(id),
    })
}

fn prepared(gid: &str) -> PreparedTransaction {
    PreparedTransaction {
        prepare_lsn: Lsn(0x300),
        end_lsn: Lsn(0x330),
        prepare_time: PgTimestamp(7),
        xid: Xid(900),
        gid: gid.into(),
    }
}

fn commit(lsn: u64) -> LogicalMessage {
    LogicalMessage::Commit(Commit {
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 0x30),
        commit_time: PgTimestamp(1_000_000),
    })
}

fn begin(lsn: u64, xid: u32) -> LogicalMessage {
    LogicalMessage::Begin(Begin {
        final_lsn: Lsn(lsn),
        commit_time: PgTimestamp(1_000_000),
        xid: Xid(xid),
    })
}

fn plain_session() -> Vec<LogicalMessage> {
    let unchanged = TupleData::new(vec![
        text("1"),
        ColumnValue::UnchangedToast,
        ColumnValue::Null,
    ]);
    let key = TupleData::new(vec![text("1"), ColumnValue::Null, ColumnValue::Null]);
    vec![
        begin(0x100, 700),
        LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(0x90),
            name: "pg_16395".into(),
        }),
        relation(None),
        LogicalMessage::Type(Type {
            xid: None,
            id: Oid(16500),
            namespace: "public".into(),
            name: "mood".into(),
        }),
        insert(None, "1"),
        LogicalMessage::Update(Update {
            xid: None,
            relation: TABLE,
            old: None,
            new: unchanged,
        }),
        LogicalMessage::Update(Update {
            xid: None,
            relation: TABLE,
            old: Some(OldTuple::Key(key.clone())),
            new: row("2"),
        }),
        LogicalMessage::Update(Update {
            xid: None,
            relation: TABLE,
            old: Some(OldTuple::Full(row("2"))),
            new: TupleData::new(vec![
                text("2"),
                ColumnValue::Binary(Bytes::from_static(&[1, 2])),
                ColumnValue::Null,
            ]),
        }),
        LogicalMessage::Delete(Delete {
            xid: None,
            relation: TABLE,
            old: OldTuple::Key(key),
        }),
        LogicalMessage::Truncate(Truncate {
            xid: None,
            options: TruncateOptions {
                cascade: true,
                restart_identity: false,
            },
            relations: vec![TABLE],
        }),
        LogicalMessage::Message(DecodingMessage {
            xid: None,
            transactional: true,
            lsn: Lsn(0xF0),
            prefix: "replicator".into(),
            content: Bytes::from_static(b"hello"),
        }),
        commit(0x100),
    ]
}

fn streamed_session() -> Vec<LogicalMessage> {
    let top = Xid(800);
    vec![
        LogicalMessage::StreamStart(StreamStart {
            xid: top,
            first_segment: true,
        }),
        LogicalMessage::Origin(Origin {
            commit_lsn: Lsn::INVALID,
            name: "pg_16395".into(),
        }),
        relation(Some(top)),
        insert(Some(top), "3"),
        insert(Some(Xid(801)), "4"),
        LogicalMessage::StreamStop,
        begin(0x200, 799),
        insert(None, "5"),
        commit(0x200),
        LogicalMessage::StreamStart(StreamStart {
            xid: top,
            first_segment: false,
        }),
        insert(Some(top), "6"),
        LogicalMessage::StreamStop,
        LogicalMessage::StreamAbort(StreamAbort {
            xid: top,
            subxact_xid: Xid(801),
        }),
        LogicalMessage::StreamCommit(StreamCommit {
            xid: top,
            commit_lsn: Lsn(0x280),
            end_lsn: Lsn(0x2B0),
            commit_time: PgTimestamp(2_000_000),
        }),
    ]
}

fn two_phase_session() -> Vec<LogicalMessage> {
    vec![
        LogicalMessage::BeginPrepare(prepared("g1")),
        relation(None),
        insert(None, "7"),
        LogicalMessage::Prepare(prepared("g1")),
        LogicalMessage::CommitPrepared(CommitPrepared {
            commit_lsn: Lsn(0x400),
            end_lsn: Lsn(0x430),
            commit_time: PgTimestamp(9),
            xid: Xid(900),
            gid: "g1".into(),
        }),
        LogicalMessage::RollbackPrepared(RollbackPrepared {
            prepare_end_lsn: Lsn(0x330),
            rollback_end_lsn: Lsn(0x460),
            prepare_time: PgTimestamp(7),
            rollback_time: PgTimestamp(11),
            xid: Xid(900),
            gid: "g1".into(),
        }),
        LogicalMessage::StreamPrepare(prepared("g2")),
    ]
}

/// A CopyData sequence: each message in XLogData, then a keepalive and client replies.
fn frames(session: &[LogicalMessage]) -> Result<Vec<Bytes>, Box<dyn Error>> {
    let mut out = Vec::new();
    for (i, m) in session.iter().enumerate() {
        let xlog = ServerCopyMessage::XLogData(XLogData {
            wal_start: Lsn(0x100 + i as u64),
            wal_end: Lsn::INVALID,
            server_time: PgTimestamp(1),
            data: m.encode()?,
        });
        out.push(xlog.encode());
    }
    out.push(
        ServerCopyMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: Lsn(0x500),
            server_time: PgTimestamp(2),
            reply_requested: true,
        })
        .encode(),
    );
    out.push(StandbyStatusUpdate::acknowledging(Lsn(0x500), PgTimestamp(3), false).encode());
    out.push(
        ClientCopyMessage::HotStandbyFeedback(HotStandbyFeedback {
            client_time: PgTimestamp(3),
            xmin: Xid(0),
            xmin_epoch: 0,
            catalog_xmin: Xid(0),
            catalog_xmin_epoch: 0,
        })
        .encode(),
    );
    Ok(out)
}

fn seed(selector: u8, frames: &[Bytes]) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut out = vec![selector];
    for f in frames {
        out.extend_from_slice(&u16::try_from(f.len())?.to_be_bytes());
        out.extend_from_slice(f);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds <corpus dir>")?,
    );
    std::fs::create_dir_all(&dir)?;
    let sessions = [
        ("plain", 0u8, plain_session()),
        ("streamed", 1, streamed_session()),
        ("two_phase", 2, two_phase_session()),
    ];
    for (name, selector, session) in &sessions {
        std::fs::write(
            dir.join(format!("session_{name}")),
            seed(*selector, &frames(session)?)?,
        )?;
        // Raw messages for the one-shot decoder, in the context each was made for.
        for (i, m) in session.iter().enumerate() {
            let ctx = m.natural_context();
            let selector = match ctx.protocol_version.number() {
                1 => 0,
                2 => 1,
                _ => 2,
            } | if ctx.in_stream { 0b100 } else { 0 };
            std::fs::write(
                dir.join(format!("raw_{name}_{i:02}")),
                seed(selector, &[m.encode()?])?,
            )?;
        }
    }
    Ok(())
}

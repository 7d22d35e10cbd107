//! Proptest strategies producing arbitrary, well-formed protocol values.

use bytes::Bytes;
use pgoutput::{
    Begin, ClientCopyMessage, ColumnValue, Commit, CommitPrepared, DecodingMessage, Delete,
    HotStandbyFeedback, Insert, LogicalMessage, Lsn, Oid, OldTuple, Origin, PgTimestamp,
    PreparedTransaction, PrimaryKeepalive, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, ServerCopyMessage, StandbyStatusUpdate, StreamAbort, StreamCommit,
    StreamStart, Truncate, TruncateOptions, TupleData, Type, Update, XLogData, Xid,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

pub(crate) fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

pub(crate) fn xid() -> impl Strategy<Value = Xid> {
    any::<u32>().prop_map(Xid)
}

pub(crate) fn oid() -> impl Strategy<Value = Oid> {
    any::<u32>().prop_map(Oid)
}

pub(crate) fn time() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

/// Identifiers: any printable Unicode (so no NUL), including empty.
pub(crate) fn name() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

pub(crate) fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub(crate) fn column_value() -> impl Strategy<Value = ColumnValue> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::UnchangedToast),
        bytes().prop_map(ColumnValue::Text),
        bytes().prop_map(ColumnValue::Binary),
    ]
}

pub(crate) fn tuple() -> impl Strategy<Value = TupleData> {
    vec(column_value(), 0..6).prop_map(TupleData::new)
}

pub(crate) fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

pub(crate) fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

pub(crate) fn relation_column() -> impl Strategy<Value = RelationColumn> {
    (any::<bool>(), name(), oid(), any::<i32>()).prop_map(
        |(is_key, name, type_oid, type_modifier)| RelationColumn {
            is_key,
            name,
            type_oid,
            type_modifier,
        },
    )
}

/// A Relation message; `stream_xid` decides whether it carries a stream xid.
pub(crate) fn relation(stream_xid: BoxedStrategy<Option<Xid>>) -> impl Strategy<Value = Relation> {
    (
        stream_xid,
        oid(),
        name(),
        name(),
        replica_identity(),
        vec(relation_column(), 0..6),
    )
        .prop_map(
            |(xid, id, namespace, name, replica_identity, columns)| Relation {
                xid,
                id,
                namespace,
                name,
                replica_identity,
                columns,
            },
        )
}

fn prepared() -> impl Strategy<Value = PreparedTransaction> {
    (lsn(), lsn(), time(), xid(), name()).prop_map(
        |(prepare_lsn, end_lsn, prepare_time, xid, gid)| PreparedTransaction {
            prepare_lsn,
            end_lsn,
            prepare_time,
            xid,
            gid,
        },
    )
}

/// A change message (`R Y I U D T M`), with a stream xid drawn from `stream_xid`.
pub(crate) fn change(stream_xid: BoxedStrategy<Option<Xid>>) -> BoxedStrategy<LogicalMessage> {
    let x = || stream_xid.clone();
    prop_oneof![
        (x(), any::<bool>(), lsn(), name(), bytes()).prop_map(
            |(xid, transactional, lsn, prefix, content)| {
                LogicalMessage::Message(DecodingMessage {
                    xid,
                    transactional,
                    lsn,
                    prefix,
                    content,
                })
            }
        ),
        relation(x()).prop_map(LogicalMessage::Relation),
        (x(), oid(), name(), name()).prop_map(|(xid, id, namespace, name)| {
            LogicalMessage::Type(Type {
                xid,
                id,
                namespace,
                name,
            })
        }),
        (x(), oid(), tuple()).prop_map(|(xid, relation, new)| LogicalMessage::Insert(Insert {
            xid,
            relation,
            new
        })),
        (x(), oid(), option::of(old_tuple()), tuple()).prop_map(|(xid, relation, old, new)| {
            LogicalMessage::Update(Update {
                xid,
                relation,
                old,
                new,
            })
        }),
        (x(), oid(), old_tuple()).prop_map(|(xid, relation, old)| LogicalMessage::Delete(Delete {
            xid,
            relation,
            old
        })),
        (x(), any::<bool>(), any::<bool>(), vec(oid(), 0..5)).prop_map(
            |(xid, cascade, restart_identity, relations)| {
                LogicalMessage::Truncate(Truncate {
                    xid,
                    options: TruncateOptions {
                        cascade,
                        restart_identity,
                    },
                    relations,
                })
            }
        ),
    ]
    .boxed()
}

/// Every message kind, changes with or without a stream xid.
pub(crate) fn logical_message() -> BoxedStrategy<LogicalMessage> {
    prop_oneof![
        (lsn(), time(), xid()).prop_map(|(final_lsn, commit_time, xid)| {
            LogicalMessage::Begin(Begin {
                final_lsn,
                commit_time,
                xid,
            })
        }),
        (lsn(), lsn(), time()).prop_map(|(commit_lsn, end_lsn, commit_time)| {
            LogicalMessage::Commit(Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            })
        }),
        (lsn(), name())
            .prop_map(|(commit_lsn, name)| { LogicalMessage::Origin(Origin { commit_lsn, name }) }),
        change(option::of(xid()).boxed()),
        (xid(), any::<bool>()).prop_map(|(xid, first_segment)| {
            LogicalMessage::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(LogicalMessage::StreamStop),
        (xid(), lsn(), lsn(), time()).prop_map(|(xid, commit_lsn, end_lsn, commit_time)| {
            LogicalMessage::StreamCommit(StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        }),
        (xid(), xid()).prop_map(|(xid, subxact_xid)| {
            LogicalMessage::StreamAbort(StreamAbort { xid, subxact_xid })
        }),
        prepared().prop_map(LogicalMessage::BeginPrepare),
        prepared().prop_map(LogicalMessage::Prepare),
        (lsn(), lsn(), time(), xid(), name()).prop_map(
            |(commit_lsn, end_lsn, commit_time, xid, gid)| {
                LogicalMessage::CommitPrepared(CommitPrepared {
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }
        ),
        (lsn(), lsn(), time(), time(), xid(), name()).prop_map(
            |(prepare_end_lsn, rollback_end_lsn, prepare_time, rollback_time, xid, gid)| {
                LogicalMessage::RollbackPrepared(RollbackPrepared {
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                })
            }
        ),
        prepared().prop_map(LogicalMessage::StreamPrepare),
    ]
    .boxed()
}

pub(crate) fn server_copy_message() -> impl Strategy<Value = ServerCopyMessage> {
    prop_oneof![
        (lsn(), lsn(), time(), bytes()).prop_map(|(wal_start, wal_end, server_time, data)| {
            ServerCopyMessage::XLogData(XLogData {
                wal_start,
                wal_end,
                server_time,
                data,
            })
        }),
        (lsn(), time(), any::<bool>()).prop_map(|(wal_end, server_time, reply_requested)| {
            ServerCopyMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end,
                server_time,
                reply_requested,
            })
        }),
    ]
}

pub(crate) fn client_copy_message() -> impl Strategy<Value = ClientCopyMessage> {
    prop_oneof![
        (lsn(), lsn(), lsn(), time(), any::<bool>()).prop_map(
            |(written, flushed, applied, client_time, reply_requested)| {
                ClientCopyMessage::StandbyStatusUpdate(StandbyStatusUpdate {
                    written,
                    flushed,
                    applied,
                    client_time,
                    reply_requested,
                })
            }
        ),
        (time(), xid(), any::<u32>(), xid(), any::<u32>()).prop_map(
            |(client_time, xmin, xmin_epoch, catalog_xmin, catalog_xmin_epoch)| {
                ClientCopyMessage::HotStandbyFeedback(HotStandbyFeedback {
                    client_time,
                    xmin,
                    xmin_epoch,
                    catalog_xmin,
                    catalog_xmin_epoch,
                })
            }
        ),
    ]
}

/// One unit of a replication session as pgoutput (protocol 2) would send it: a committed
/// transaction, or a stream block followed (maybe) by its outcome.
pub(crate) fn session_segment() -> BoxedStrategy<Vec<LogicalMessage>> {
    let plain = (
        lsn(),
        time(),
        xid(),
        vec(change(Just(None).boxed()), 0..4),
        lsn(),
    )
        .prop_map(|(lsn, time, xid, changes, end_lsn)| {
            let mut v = vec![LogicalMessage::Begin(Begin {
                final_lsn: lsn,
                commit_time: time,
                xid,
            })];
            v.extend(changes);
            v.push(LogicalMessage::Commit(Commit {
                commit_lsn: lsn,
                end_lsn,
                commit_time: time,
            }));
            v
        });
    let streamed = (
        xid(),
        any::<bool>(),
        option::of(name()),
        vec(change(xid().prop_map(Some).boxed()), 0..4),
        prop_oneof![
            Just(None),
            (lsn(), lsn(), time()).prop_map(|(c, e, t)| Some((c, e, t, true))),
            (lsn(), lsn(), time()).prop_map(|(c, e, t)| Some((c, e, t, false))),
        ],
    )
        .prop_map(|(xid, first_segment, origin, changes, outcome)| {
            let mut v = vec![LogicalMessage::StreamStart(StreamStart {
                xid,
                first_segment,
            })];
            if let Some(name) = origin {
                v.push(LogicalMessage::Origin(Origin {
                    commit_lsn: Lsn::INVALID,
                    name,
                }));
            }
            v.extend(changes);
            v.push(LogicalMessage::StreamStop);
            match outcome {
                Some((commit_lsn, end_lsn, commit_time, true)) => {
                    v.push(LogicalMessage::StreamCommit(StreamCommit {
                        xid,
                        commit_lsn,
                        end_lsn,
                        commit_time,
                    }))
                }
                Some(_) => v.push(LogicalMessage::StreamAbort(StreamAbort {
                    xid,
                    subxact_xid: xid,
                })),
                None => {}
            }
            v
        });
    prop_oneof![plain, streamed].boxed()
}

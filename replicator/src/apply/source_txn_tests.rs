use conflict::VersionVector;
use envelope::{Seq, UnixMicros};
use proptest::prelude::*;

use super::*;

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn env(lsn: u64, seq: u64, body: Body) -> Envelope {
    Envelope {
        source: region("us"),
        commit_lsn: Lsn(lsn),
        commit_time: UnixMicros(lsn as i64),
        seq: Seq(seq),
        body,
    }
}

fn change(n: u8) -> Body {
    Body::Change(EntityChange {
        table: "dashboards".into(),
        entity: uuid::Uuid::from_bytes([n; 16]),
        clock: VersionVector::new(),
        fields: Vec::new(),
    })
}

fn commit(count: u64) -> Body {
    Body::Commit {
        change_count: count,
    }
}

fn raw(offset: i64) -> RawRecord {
    RawRecord {
        offset: Offset(offset),
        bytes: vec![offset as u8],
    }
}

/// Pushes `(lsn, seq, body)` at offsets from `start`, returning what came out.
fn run(assembler: &mut Assembler, start: i64, input: Vec<(u64, u64, Body)>) -> Vec<Assembled> {
    input
        .into_iter()
        .enumerate()
        .filter_map(|(i, (lsn, seq, body))| {
            assembler.push(raw(start + i as i64), env(lsn, seq, body))
        })
        .collect()
}

fn txn(out: &Assembled) -> &SourceTxn {
    match out {
        Assembled::Txn(t) => t,
        other => panic!("expected a transaction, got {other:?}"),
    }
}

#[test]
fn one_transaction_is_yielded_at_its_commit_and_the_resume_offset_follows() {
    let mut a = Assembler::new(region("us"), Offset(10));
    assert_eq!(a.resume_offset(), Offset(10));
    let out = run(&mut a, 10, vec![(100, 0, change(1)), (100, 1, change(2))]);
    assert!(out.is_empty());
    assert_eq!(
        a.resume_offset(),
        Offset(10),
        "the open transaction holds it back"
    );
    let out = run(&mut a, 12, vec![(100, 2, commit(2))]);
    let t = txn(&out[0]);
    assert_eq!(t.changes.len(), 2);
    assert_eq!(
        (t.first_offset(), t.last_offset()),
        (Some(Offset(10)), Some(Offset(12)))
    );
    assert_eq!(a.resume_offset(), Offset(13));
}

#[test]
fn interleaved_snapshot_and_live_transactions_are_told_apart_by_lsn() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let out = run(
        &mut a,
        0,
        vec![
            (50, 0, change(1)),  // snapshot transaction 1
            (200, 0, change(9)), // live
            (50, 1, commit(1)),
            (50, 0, change(2)), // snapshot transaction 2, same lsn
            (200, 1, commit(1)),
            (50, 1, change(3)),
            (50, 2, commit(2)),
        ],
    );
    let lsns: Vec<(u64, usize)> = out
        .iter()
        .map(|o| (txn(o).commit_lsn.0, txn(o).changes.len()))
        .collect();
    assert_eq!(lsns, vec![(50, 1), (200, 1), (50, 2)]);
    assert_eq!(a.resume_offset(), Offset(7));
}

#[test]
fn the_resume_offset_waits_for_the_oldest_open_transaction() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let out = run(
        &mut a,
        0,
        vec![(50, 0, change(1)), (200, 0, change(9)), (200, 1, commit(1))],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(a.resume_offset(), Offset(0));
}

#[test]
fn a_transaction_published_again_from_seq_0_replaces_the_partial_one() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let out = run(
        &mut a,
        0,
        vec![
            (100, 0, change(1)),
            (100, 1, change(2)),
            (100, 0, change(1)),
            (100, 1, change(2)),
            (100, 2, commit(2)),
        ],
    );
    let t = txn(&out[0]);
    assert_eq!(t.changes.len(), 2);
    assert_eq!(t.first_offset(), Some(Offset(2)));
}

#[test]
fn heartbeats_alone_or_inside_a_transaction() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let beat = |n| Body::Heartbeat {
        beat: n,
        beat_time: UnixMicros(n as i64),
    };
    let out = run(
        &mut a,
        0,
        vec![
            (10, 0, beat(1)),
            (20, 0, change(1)),
            (20, 1, beat(2)),
            (20, 2, commit(1)),
        ],
    );
    assert_eq!(out.len(), 2);
    assert!(txn(&out[0]).changes.is_empty());
    assert_eq!(txn(&out[0]).heartbeat.map(|h| h.beat), Some(1));
    assert_eq!(txn(&out[1]).changes.len(), 1);
    assert_eq!(txn(&out[1]).heartbeat.map(|h| h.beat), Some(2));
}

#[test]
fn gaps_bad_counts_and_foreign_records_are_broken() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let out = run(&mut a, 0, vec![(10, 0, change(1)), (10, 2, commit(1))]);
    assert!(matches!(
        &out[0],
        Assembled::Broken { reason: BrokenReason::Incomplete, records, .. } if records.len() == 2
    ));
    let out = run(&mut a, 2, vec![(11, 0, change(1)), (11, 1, commit(5))]);
    assert!(matches!(
        &out[0],
        Assembled::Broken {
            reason: BrokenReason::Incomplete,
            ..
        }
    ));
    let out = run(&mut a, 4, vec![(12, 3, commit(3))]);
    assert!(matches!(
        &out[0],
        Assembled::Broken {
            reason: BrokenReason::Incomplete,
            ..
        }
    ));
    let mut foreign = env(13, 0, change(1));
    foreign.source = region("eu");
    let out = a.push(raw(5), foreign);
    assert!(matches!(
        out,
        Some(Assembled::Broken {
            reason: BrokenReason::WrongSource,
            ..
        })
    ));
    assert_eq!(a.open_transactions(), 0);
    assert_eq!(a.resume_offset(), Offset(6));
}

#[test]
fn duplicates_of_held_records_are_ignored() {
    let mut a = Assembler::new(region("us"), Offset(0));
    let out = run(
        &mut a,
        0,
        vec![
            (10, 0, change(1)),
            (10, 1, change(2)),
            (10, 1, change(2)),
            (10, 2, commit(2)),
        ],
    );
    assert_eq!(txn(&out[0]).changes.len(), 2);
}

proptest! {
    /// Whatever the interleaving of complete transactions, each is yielded once, whole, and the
    /// resume offset never passes the first record of a transaction not yet yielded.
    #[test]
    fn interleavings_yield_every_transaction_and_never_skip_one(
        sizes in proptest::collection::vec(0u64..4, 1..6),
        picks in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Streams of records per transaction, each in seq order.
        let mut streams: Vec<Vec<(u64, u64, Body)>> = sizes
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                let lsn = 100 + t as u64;
                let mut s: Vec<(u64, u64, Body)> = (0..n).map(|i| (lsn, i, change(i as u8))).collect();
                s.push((lsn, n, commit(n)));
                s
            })
            .collect();
        let mut a = Assembler::new(region("us"), Offset(0));
        let mut offset = 0i64;
        let mut first: BTreeMap<u64, i64> = BTreeMap::new();
        let mut done = Vec::new();
        let mut pick = picks.into_iter().cycle();
        while streams.iter().any(|s| !s.is_empty()) {
            let live: Vec<usize> = (0..streams.len()).filter(|&i| !streams[i].is_empty()).collect();
            let i = live[pick.next().unwrap_or(0) as usize % live.len()];
            let (lsn, seq, body) = streams[i].remove(0);
            first.entry(lsn).or_insert(offset);
            if let Some(out) = a.push(raw(offset), env(lsn, seq, body)) {
                let t = txn(&out);
                done.push(t.commit_lsn.0);
                prop_assert_eq!(t.changes.len() as u64, sizes[(t.commit_lsn.0 - 100) as usize]);
            }
            offset += 1;
            let pending_min = first.iter().filter(|(l, _)| !done.contains(l)).map(|(_, o)| *o).min();
            prop_assert_eq!(a.resume_offset().0, pending_min.unwrap_or(offset));
        }
        prop_assert_eq!(done.len(), sizes.len());
    }
}

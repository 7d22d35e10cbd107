//! The merge is a join-semilattice on reachable states (DESIGN §3): commutative, associative,
//! idempotent; duplicates and replays change nothing and report nothing; and a pair of versions
//! is reported the same way whichever side is local.
//!
//! States are not generated field by field (that would break the hlc invariant real histories
//! keep) but sampled from simulated histories (`history/mod.rs`): every full state and every
//! partial state of one entity that the history produced.

#[cfg(test)]
mod history;

use conflict::{merge, Conflict, EntityState, Side};
use history::{Config, Rng, Value, World};
use proptest::prelude::*;
use proptest::sample::Index;

type Checked<T> = Result<T, TestCaseError>;

/// Samples of one entity from the history grown from `seed`.
fn samples(seed: u64) -> Checked<Vec<EntityState<Value>>> {
    let mut rng = Rng::new(seed);
    let cfg = Config {
        entities: 1,
        ..Config::random(&mut rng)
    };
    let mut world = World::new(rng.next_u64(), cfg).map_err(TestCaseError::fail)?;
    world.keep_samples = true;
    world.run().map_err(TestCaseError::fail)?;
    world.samples.push(EntityState::new());
    Ok(world.samples)
}

fn join(a: &EntityState<Value>, b: &EntityState<Value>) -> Checked<EntityState<Value>> {
    Ok(merge(a, b)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .state)
}

/// A conflict seen from the other side.
fn flipped(conflict: &Conflict<Value>) -> Conflict<Value> {
    Conflict {
        local: conflict.incoming.clone(),
        incoming: conflict.local.clone(),
        local_clock: conflict.incoming_clock.clone(),
        incoming_clock: conflict.local_clock.clone(),
        winner: match conflict.winner {
            Side::Local => Side::Incoming,
            Side::Incoming => Side::Local,
        },
        ..conflict.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_a_semilattice(seed: u64, i: Index, j: Index, k: Index) {
        let pool = samples(seed)?;
        let (a, b, c) = (i.get(&pool), j.get(&pool), k.get(&pool));
        prop_assert_eq!(join(a, b)?, join(b, a)?, "commutative");
        prop_assert_eq!(join(&join(a, b)?, c)?, join(a, &join(b, c)?)?, "associative");
        let aa = merge(a, a).unwrap();
        prop_assert_eq!(&aa.state, a, "idempotent");
        prop_assert!(aa.conflicts.is_empty() && aa.replaced.is_empty());
    }

    #[test]
    fn duplicates_and_replays_change_and_report_nothing(seed: u64, i: Index, j: Index) {
        let pool = samples(seed)?;
        let (a, b) = (i.get(&pool), j.get(&pool));
        let once = join(a, b)?;
        let again = merge(&once, b).unwrap();
        prop_assert_eq!(&again.state, &once);
        prop_assert!(again.conflicts.is_empty(), "replay reported {:?}", again.conflicts);
        prop_assert!(again.replaced.is_empty());
        let replay_old = merge(&once, a).unwrap();
        prop_assert_eq!(&replay_old.state, &once);
        prop_assert!(replay_old.conflicts.is_empty());
    }

    #[test]
    fn report_does_not_depend_on_which_side_is_local(seed: u64, i: Index, j: Index) {
        let pool = samples(seed)?;
        let (a, b) = (i.get(&pool), j.get(&pool));
        let ab = merge(a, b).unwrap().conflicts;
        let ba: Vec<_> = merge(b, a).unwrap().conflicts.iter().map(flipped).collect();
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn any_delivery_order_gives_the_same_state(seed: u64, order_seed: u64) {
        let pool = samples(seed)?;
        let mut rng = Rng::new(order_seed);
        let mut forward = EntityState::new();
        for s in &pool {
            forward = join(&forward, s)?;
        }
        let mut shuffled: Vec<_> = pool.iter().collect();
        for n in (1..shuffled.len()).rev() {
            shuffled.swap(n, rng.below(n + 1));
        }
        // Duplicate a few on the way.
        let mut acc = EntityState::new();
        for (n, s) in shuffled.iter().enumerate() {
            acc = join(&acc, s)?;
            if n % 3 == 0 {
                acc = join(&acc, s)?;
            }
        }
        prop_assert_eq!(acc, forward);
    }
}

//! Deterministic simulation of 3–5 regions exchanging partial states with reordering,
//! duplication and replay (see `history/mod.rs` for the world and its checks).
//!
//! `CONFLICT_SIM_HISTORIES` sets the number of histories (default 10 000; CI nightly: 100 000),
//! `CONFLICT_SIM_SEED` the first seed. A failure prints the seed that reproduces it alone.

#[cfg(test)]
mod history;

use history::{Config, Rng, World};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One history: the world's shape and its events both come from `seed`.
fn run_history(seed: u64) -> Result<(usize, usize), String> {
    let mut rng = Rng::new(seed);
    let cfg = Config::random(&mut rng);
    let mut world = World::new(rng.next_u64(), cfg)?;
    world.run().map_err(|e| format!("{e}\n  config: {cfg:?}"))?;
    Ok((world.writes.len(), world.conflicts_logged))
}

#[test]
fn regions_converge_and_agree_on_conflicts() {
    let histories = env_u64("CONFLICT_SIM_HISTORIES", 10_000);
    let first = env_u64("CONFLICT_SIM_SEED", 0x5EED_0000);
    let (mut writes, mut conflicts) = (0, 0);
    for i in 0..histories {
        let seed = first.wrapping_add(i);
        match run_history(seed) {
            Ok((w, c)) => {
                writes += w;
                conflicts += c;
            }
            Err(e) => panic!(
                "history with seed {seed} failed: {e}\n  reproduce: CONFLICT_SIM_SEED={seed} \
                 CONFLICT_SIM_HISTORIES=1 cargo test -p conflict --test simulation"
            ),
        }
    }
    // The histories must actually exercise conflicts.
    assert!(
        conflicts > usize::try_from(histories).unwrap_or(0),
        "only {conflicts} conflicts"
    );
    eprintln!("{histories} histories, {writes} writes, {conflicts} conflicts logged");
}

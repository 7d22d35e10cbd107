//! A deterministic world of regions exchanging partial states, shared by `lattice.rs` and
//! `simulation.rs`.
//!
//! Each region holds a state per entity and makes random local writes, deletes, undeletes and
//! resolutions; each write's partial state goes onto a queue per (source, target) link, from which
//! deliveries pick any message (reordering), sometimes leave a copy behind (duplication) or push an
//! old one back (replay). In *causal* mode only causally ready messages are delivered.
//!
//! Besides the library's own state, the world keeps ground truth: the causal context (the writer's
//! clock) of every write and the set of writes each region has merged. Every merge is checked
//! against it: reported conflicts must be truly concurrent pairs with the greater stamp winning,
//! never reported twice in a region, with the same winner in every region; in causal mode the
//! report must also be complete. At the end every region must hold the join of all writes.

use std::collections::{BTreeMap, BTreeSet};

use conflict::{
    merge, resolve, resolve_existence, Cell, Conflict, ConflictKind, Dot, EntityState, FieldPath,
    RegionId, VersionVector,
};

/// The value type of the simulated fields: few values, so equal concurrent writes happen.
pub(crate) type Value = u8;
/// A failure, with enough context to debug it (the caller adds the seed).
pub(crate) type Outcome<T = ()> = Result<T, String>;

/// SplitMix64: tiny, fast, good enough, and stable across platforms and versions.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 == 0 {
            0
        } else {
            usize::try_from(self.next_u64() % n64).unwrap_or(0)
        }
    }

    pub(crate) fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

/// The shape of one history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) regions: usize,
    pub(crate) entities: usize,
    pub(crate) fields: usize,
    pub(crate) steps: usize,
    pub(crate) causal: bool,
    pub(crate) duplicate_percent: usize,
    pub(crate) replay_percent: usize,
}

impl Config {
    pub(crate) fn random(rng: &mut Rng) -> Self {
        Self {
            regions: 3 + rng.below(3),
            entities: 1 + rng.below(3),
            fields: 2 + rng.below(3),
            steps: 20 + rng.below(41),
            causal: rng.percent(50),
            duplicate_percent: rng.below(20),
            replay_percent: rng.below(10),
        }
    }
}

/// One write's partial state in flight.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) entity: usize,
    pub(crate) dot: Dot,
    pub(crate) delta: EntityState<Value>,
}

/// A reported pair, independent of which side was local: (entity, kind, field, dots sorted).
type PairKey = (usize, ConflictKind, FieldPath, Dot, Dot);

#[derive(Debug)]
struct Region {
    id: RegionId,
    wall: u64,
    states: Vec<EntityState<Value>>,
    log: Vec<(usize, Conflict<Value>)>,
    logged: BTreeSet<PairKey>,
    /// Ground truth: writes (per entity) whose partial state this region merged or made.
    merged: Vec<BTreeSet<Dot>>,
}

#[derive(Debug)]
pub(crate) struct World {
    rng: Rng,
    cfg: Config,
    fields: Vec<FieldPath>,
    regions: Vec<Region>,
    /// `links[from][to]`: messages in flight; `delivered[from][to]`: for replays.
    links: Vec<Vec<Vec<Message>>>,
    delivered: Vec<Vec<Vec<Message>>>,
    /// Ground truth: the writer's clock right after each write.
    contexts: BTreeMap<(usize, Dot), VersionVector>,
    /// The winner every region reported for each pair.
    winners: BTreeMap<PairKey, Dot>,
    pub(crate) writes: Vec<Message>,
    /// Every state and partial state of entity 0 seen (if `keep_samples`), for the lattice
    /// properties.
    pub(crate) samples: Vec<EntityState<Value>>,
    pub(crate) keep_samples: bool,
    pub(crate) conflicts_logged: usize,
}

fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl World {
    pub(crate) fn new(seed: u64, cfg: Config) -> Outcome<Self> {
        let mut rng = Rng::new(seed);
        let fields = (0..cfg.fields)
            .map(|i| FieldPath::new(&format!("col{}/part{i}", i % 2)).map_err(fail))
            .collect::<Outcome<Vec<_>>>()?;
        let mut regions = Vec::new();
        for i in 0..cfg.regions {
            regions.push(Region {
                id: RegionId::new(&format!("r{i}")).map_err(fail)?,
                wall: 1_000 + u64::try_from(rng.below(300)).unwrap_or(0),
                states: vec![EntityState::new(); cfg.entities],
                log: Vec::new(),
                logged: BTreeSet::new(),
                merged: vec![BTreeSet::new(); cfg.entities],
            });
        }
        let grid = vec![vec![Vec::new(); cfg.regions]; cfg.regions];
        Ok(Self {
            rng,
            cfg,
            fields,
            regions,
            links: grid.clone(),
            delivered: grid,
            contexts: BTreeMap::new(),
            winners: BTreeMap::new(),
            writes: Vec::new(),
            samples: Vec::new(),
            keep_samples: false,
            conflicts_logged: 0,
        })
    }

    /// Runs the configured number of random steps, delivers everything, checks convergence.
    pub(crate) fn run(&mut self) -> Outcome {
        for _ in 0..self.cfg.steps {
            self.step()?;
        }
        self.flush()?;
        self.check_converged()
    }

    /// One random local operation or delivery.
    pub(crate) fn step(&mut self) -> Outcome {
        let in_flight = self.links.iter().flatten().any(|queue| !queue.is_empty());
        if !in_flight || self.rng.percent(45) {
            self.local_op()
        } else {
            self.deliver_one(true)
        }
    }

    /// Delivers every message still in flight (no more duplicates or replays).
    pub(crate) fn flush(&mut self) -> Outcome {
        while self.links.iter().flatten().any(|queue| !queue.is_empty()) {
            self.deliver_one(false)?;
        }
        Ok(())
    }
}

mod check;
mod ops;

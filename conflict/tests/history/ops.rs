//! Local operations and deliveries.

use super::*;

/// What a local operation does.
enum Op {
    Insert,
    Update,
    Delete,
    Undelete,
    Resolve,
}

impl World {
    pub(super) fn local_op(&mut self) -> Outcome {
        let r = self.rng.below(self.cfg.regions);
        let e = self.rng.below(self.cfg.entities);
        let region = self.regions.get_mut(r).ok_or("no region")?;
        region.wall += u64::try_from(self.rng.below(4)).unwrap_or(0);
        let state = region.states.get(e).ok_or("no entity")?;
        let roll = self.rng.below(100);
        let op = match state.existence().map(|version| version.value) {
            None => Op::Insert,
            Some(true) if roll < 65 => Op::Update,
            Some(true) if roll < 80 => Op::Delete,
            Some(false) if roll < 40 => Op::Undelete,
            Some(false) if roll < 70 => Op::Insert,
            _ => Op::Resolve,
        };
        let dot = match op {
            Op::Insert => self.write(r, e, self.cfg.fields)?,
            Op::Update => {
                let count = 1 + self.rng.below(2);
                self.write(r, e, count)?
            }
            Op::Delete => {
                let region = self.regions.get_mut(r).ok_or("no region")?;
                let state = region.states.get_mut(e).ok_or("no entity")?;
                let hlc = state.next_hlc(region.wall).map_err(fail)?;
                state.delete(region.id, hlc).map_err(fail)?
            }
            Op::Undelete => {
                let region = self.regions.get_mut(r).ok_or("no region")?;
                let state = region.states.get_mut(e).ok_or("no entity")?;
                resolve_existence(state, true, region.id, region.wall).map_err(fail)?
            }
            Op::Resolve => match self.resolve(r, e)? {
                Some(dot) => dot,
                None => return Ok(()),
            },
        };
        self.publish(r, e, dot)
    }

    /// A local write of `count` random fields (all fields for an insert).
    fn write(&mut self, r: usize, e: usize, count: usize) -> Outcome<Dot> {
        let mut changes = Vec::new();
        let mut chosen: Vec<usize> = (0..self.cfg.fields).collect();
        for _ in 0..count.min(self.cfg.fields) {
            let pick = chosen.swap_remove(self.rng.below(chosen.len()));
            let field = self.fields.get(pick).ok_or("no field")?.clone();
            changes.push((field, u8::try_from(self.rng.below(4)).unwrap_or(0)));
        }
        let region = self.regions.get_mut(r).ok_or("no region")?;
        let state = region.states.get_mut(e).ok_or("no entity")?;
        let hlc = state.next_hlc(region.wall).map_err(fail)?;
        state.local_write(region.id, hlc, changes).map_err(fail)
    }

    /// Resolves one conflict this region logged for `e`, if any; checks that the resolution
    /// dominates both versions.
    fn resolve(&mut self, r: usize, e: usize) -> Outcome<Option<Dot>> {
        let region = self.regions.get_mut(r).ok_or("no region")?;
        let mine: Vec<&Conflict<Value>> = region
            .log
            .iter()
            .filter(|(entity, _)| *entity == e)
            .map(|(_, c)| c)
            .collect();
        let Some(conflict) = mine.get(self.rng.below(mine.len())).map(|c| (*c).clone()) else {
            return Ok(None);
        };
        let state = region.states.get_mut(e).ok_or("no entity")?;
        let dot = match (&conflict.kind, &conflict.losing().value) {
            (ConflictKind::DeleteUpdate, _) => {
                resolve_existence(state, true, region.id, region.wall)
            }
            (ConflictKind::Field, Cell::Existence(alive)) => {
                resolve_existence(state, *alive, region.id, region.wall)
            }
            (ConflictKind::Field, Cell::Value(value)) => {
                resolve(state, &conflict.field, *value, region.id, region.wall)
            }
        }
        .map_err(fail)?;
        let hlc = state.max_hlc();
        for side in [&conflict.local, &conflict.incoming] {
            if !(state.clock().covers(&side.dot) && hlc > side.hlc) {
                return Err(format!("resolution {dot} does not dominate {side:?}"));
            }
        }
        Ok(Some(dot))
    }

    /// Records ground truth for a local write and sends its partial state on every link.
    fn publish(&mut self, r: usize, e: usize, dot: Dot) -> Outcome {
        let region = self.regions.get_mut(r).ok_or("no region")?;
        let state = region.states.get(e).ok_or("no entity")?;
        self.contexts.insert((e, dot), state.clock().clone());
        region.merged.get_mut(e).ok_or("no entity")?.insert(dot);
        let message = Message {
            entity: e,
            dot,
            delta: state.transaction_delta(&dot),
        };
        if e == 0 && self.keep_samples {
            self.samples.push(state.clone());
            self.samples.push(message.delta.clone());
        }
        let queues = self.links.get_mut(r).ok_or("no links")?;
        for (to, queue) in queues.iter_mut().enumerate() {
            if to != r {
                queue.push(message.clone());
            }
        }
        self.writes.push(message);
        Ok(())
    }

    /// Delivers one message: any message of any link, or a causally ready one in causal mode.
    pub(super) fn deliver_one(&mut self, noisy: bool) -> Outcome {
        let (from, to, i) = self.pick_message()?;
        let queue = self
            .links
            .get_mut(from)
            .and_then(|q| q.get_mut(to))
            .ok_or("no link")?;
        let message = if noisy && self.rng.percent(self.cfg.duplicate_percent) {
            queue.get(i).ok_or("no message")?.clone()
        } else {
            queue.swap_remove(i)
        };
        let old = self
            .delivered
            .get_mut(from)
            .and_then(|d| d.get_mut(to))
            .ok_or("no link")?;
        if noisy && !old.is_empty() && self.rng.percent(self.cfg.replay_percent) {
            let replay = old
                .get(self.rng.below(old.len()))
                .ok_or("no message")?
                .clone();
            queue.push(replay);
        }
        old.push(message.clone());
        self.apply(to, &message)
    }

    /// A uniformly random deliverable message `(from, to, index)`.
    fn pick_message(&mut self) -> Outcome<(usize, usize, usize)> {
        let mut ready = Vec::new();
        for (from, queues) in self.links.iter().enumerate() {
            for (to, queue) in queues.iter().enumerate() {
                if !self.cfg.causal {
                    ready.extend((0..queue.len()).map(|i| (from, to, i)));
                    continue;
                }
                let region = self.regions.get(to).ok_or("no region")?;
                for (i, m) in queue.iter().enumerate() {
                    let state = region.states.get(m.entity).ok_or("no entity")?;
                    if state.clock().causally_ready(m.delta.clock(), &m.dot) {
                        ready.push((from, to, i));
                    }
                }
            }
        }
        ready
            .get(self.rng.below(ready.len()))
            .copied()
            .ok_or_else(|| "nothing deliverable".into())
    }
}

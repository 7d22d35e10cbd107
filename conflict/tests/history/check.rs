//! Merging a delivered message, and every check against ground truth.

use super::*;
use conflict::FieldVersion;

/// The reported pair of a conflict, independent of orientation.
fn pair_key(entity: usize, conflict: &Conflict<Value>) -> PairKey {
    let (a, b) = (conflict.local.dot, conflict.incoming.dot);
    (
        entity,
        conflict.kind,
        conflict.field.clone(),
        a.min(b),
        a.max(b),
    )
}

impl World {
    /// Ground truth: neither write had the other in its causal past.
    fn concurrent(&self, e: usize, a: &Dot, b: &Dot) -> Outcome<bool> {
        let context = |dot: &Dot| {
            self.contexts
                .get(&(e, *dot))
                .ok_or_else(|| format!("unknown write {dot}"))
        };
        Ok(!context(a)?.covers(b) && !context(b)?.covers(a))
    }

    /// Merges `message` into region `to` and checks the report.
    pub(super) fn apply(&mut self, to: usize, message: &Message) -> Outcome {
        let e = message.entity;
        let region = self.regions.get_mut(to).ok_or("no region")?;
        // Taken out (not cloned) for the checks; the merged state goes back in at the end.
        let before = std::mem::take(region.states.get_mut(e).ok_or("no entity")?);
        let seen = region
            .merged
            .get(e)
            .ok_or("no entity")?
            .contains(&message.dot);
        let merged = merge(&before, &message.delta).map_err(fail)?;
        let after = &merged.state;

        // `replaced` lists exactly the fields whose version changed.
        let mut changed: Vec<FieldPath> = Vec::new();
        if before.existence().map(|v| v.dot) != after.existence().map(|v| v.dot) {
            changed.push(FieldPath::existence());
        }
        for (field, version) in after.fields() {
            if before.field(field).map(|v| v.dot) != Some(version.dot) {
                changed.push(field.clone());
            }
        }
        if changed != merged.replaced {
            return Err(format!(
                "replaced {:?}, expected {changed:?}",
                merged.replaced
            ));
        }
        if seen && (!merged.conflicts.is_empty() || *after != before) {
            return Err(format!("duplicate of {} changed something", message.dot));
        }

        // Soundness: concurrent pairs, greater stamp (or the delete) wins, once per region,
        // same winner everywhere.
        let mut reported = BTreeSet::new();
        for conflict in &merged.conflicts {
            let (win, lose) = (conflict.winning(), conflict.losing());
            if !self.concurrent(e, &win.dot, &lose.dot)? {
                return Err(format!("reported a causal pair: {conflict:?}"));
            }
            let winner_ok = match conflict.kind {
                ConflictKind::Field => win.stamp() > lose.stamp() && win.value != lose.value,
                ConflictKind::DeleteUpdate => win.value == Cell::Existence(false),
            };
            if !winner_ok {
                return Err(format!("wrong winner: {conflict:?}"));
            }
            let key = pair_key(e, conflict);
            let region = self.regions.get_mut(to).ok_or("no region")?;
            if !region.logged.insert(key.clone()) {
                return Err(format!(
                    "pair reported twice in {}: {conflict:?}",
                    region.id
                ));
            }
            if *self.winners.entry(key.clone()).or_insert(win.dot) != win.dot {
                return Err(format!("regions disagree on the winner of {key:?}"));
            }
            reported.insert(key);
        }

        // Completeness, where causal delivery makes it exact.
        if self.cfg.causal {
            let expected = self.expected_pairs(e, &before, message, after, seen)?;
            if expected != reported {
                return Err(format!("reported {reported:?}, expected {expected:?}"));
            }
        }

        self.conflicts_logged += merged.conflicts.len();
        let region = self.regions.get_mut(to).ok_or("no region")?;
        region
            .merged
            .get_mut(e)
            .ok_or("no entity")?
            .insert(message.dot);
        region
            .log
            .extend(merged.conflicts.into_iter().map(|c| (e, c)));
        *region.states.get_mut(e).ok_or("no entity")? = merged.state;
        if e == 0 && self.keep_samples {
            self.samples
                .push(region.states.first().ok_or("no entity")?.clone());
        }
        Ok(())
    }

    /// What a region must report when it merges a new write in causal order: each field whose
    /// held version and incoming version are different, concurrent writes with different values;
    /// and, if the result is deleted, each field version concurrent with the delete that this
    /// merge brings together with it.
    fn expected_pairs(
        &self,
        e: usize,
        before: &EntityState<Value>,
        message: &Message,
        after: &EntityState<Value>,
        seen: bool,
    ) -> Outcome<BTreeSet<PairKey>> {
        let mut expected = BTreeSet::new();
        if seen {
            return Ok(expected);
        }
        let mut field_pair = |field: FieldPath,
                              held: Option<(Dot, Cell<Value>)>,
                              new: (Dot, Cell<Value>)| {
            match held {
                Some((dot, value)) if dot != new.0 && value != new.1 => {
                    if self.concurrent(e, &dot, &new.0)? {
                        expected.insert((
                            e,
                            ConflictKind::Field,
                            field,
                            dot.min(new.0),
                            dot.max(new.0),
                        ));
                    }
                    Ok::<_, String>(())
                }
                _ => Ok(()),
            }
        };
        let cell_of = |v: &FieldVersion<bool>| (v.dot, Cell::Existence(v.value));
        if let Some(new) = message.delta.existence() {
            field_pair(
                FieldPath::existence(),
                before.existence().map(cell_of),
                cell_of(new),
            )?;
        }
        for (field, new) in message.delta.fields() {
            let held = before.field(field).map(|v| (v.dot, Cell::Value(v.value)));
            field_pair(field.clone(), held, (new.dot, Cell::Value(new.value)))?;
        }
        if let Some(delete) = after.existence().filter(|v| !v.value) {
            let held_delete = before.existence().is_some_and(|v| v.dot == delete.dot);
            for (field, update) in after.fields() {
                let held_both =
                    held_delete && before.field(field).is_some_and(|v| v.dot == update.dot);
                if update.dot != delete.dot
                    && !held_both
                    && self.concurrent(e, &delete.dot, &update.dot)?
                {
                    let (a, b) = (delete.dot.min(update.dot), delete.dot.max(update.dot));
                    expected.insert((e, ConflictKind::DeleteUpdate, field.clone(), a, b));
                }
            }
        }
        Ok(expected)
    }

    /// After full delivery: every region holds, for every entity, the join of all its writes.
    pub(super) fn check_converged(&self) -> Outcome {
        for e in 0..self.cfg.entities {
            let mut join = EntityState::new();
            for write in self.writes.iter().filter(|w| w.entity == e) {
                join = merge(&join, &write.delta).map_err(fail)?.state;
            }
            for region in &self.regions {
                if region.states.get(e) != Some(&join) {
                    return Err(format!(
                        "region {} entity {e} diverged:\n  {:?}\n  join {join:?}",
                        region.id,
                        region.states.get(e)
                    ));
                }
            }
        }
        Ok(())
    }
}

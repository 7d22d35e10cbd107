//! Natural-key collisions (DESIGN §3, last bullet).
//!
//! Unique natural keys (dashboard `slug`, `dbs.database_name`, dataset `(database, schema,
//! table_name)`, tag `name`, ...) can be claimed by two different uuids in two regions. Resolution
//! is a pure function of the *set* of claims: sorted internally, so every region that knows the
//! same claims decides the same thing, whatever the order they arrived in, and it never fails for
//! want of information (it cannot stall apply). The earliest claim by `(hlc, region, uuid)` keeps
//! the key. Losers are either renamed ([`resolve_renames`], for keys that are just labels, like
//! slugs and tag names) or become aliases of the winner ([`resolve_aliases`], for keys that name
//! the same physical thing, like datasets and database connections, whose references then follow
//! the alias). When a new claim arrives, recompute from the grown set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hlc::Hlc;
use crate::region::RegionId;

/// An entity's uuid, as its 16 bytes (`uuid::Uuid::as_bytes` / `from_bytes`).
///
/// **Ordering.** By bytes — the last tie-breaker of claims; two claims never tie on it unless
/// they are the same entity's.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityId(pub [u8; 16]);

impl EntityId {
    /// The 32 lowercase hex digits, without hyphens.
    pub fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Display for EntityId {
    /// Hyphenated uuid form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default();
        write!(
            f,
            "{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({self})")
    }
}

/// `entity` holds natural key `key` since the write stamped `(hlc, region)` that set it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim<K> {
    /// The natural key.
    pub key: K,
    /// The claiming entity.
    pub entity: EntityId,
    /// Hlc of the write that set the key (the key field's [`FieldVersion`](crate::FieldVersion)).
    pub hlc: Hlc,
    /// Region of that write.
    pub region: RegionId,
}

impl<K> Claim<K> {
    /// Sort key: the smallest claim keeps the key.
    pub fn precedence(&self) -> (Hlc, RegionId, EntityId) {
        (self.hlc, self.region, self.entity)
    }
}

/// What happens to one claim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOutcome<K> {
    /// The claim keeps its key (earliest claim, or no collision).
    Keeps,
    /// The claim lost; the entity takes this new key.
    Renamed(K),
    /// The claim lost; the entity becomes an alias of this winner.
    AliasOf(EntityId),
}

/// The decision for one `(key, entity)` claim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyDecision<K> {
    /// The claimed key.
    pub key: K,
    /// The claiming entity.
    pub entity: EntityId,
    /// What happens to it.
    pub outcome: KeyOutcome<K>,
}

/// Groups claims by key, keeping each entity's earliest claim, each group sorted by precedence.
fn contests<K: Ord + Clone>(claims: &[Claim<K>]) -> BTreeMap<K, Vec<Claim<K>>> {
    let mut by_key: BTreeMap<K, BTreeMap<EntityId, Claim<K>>> = BTreeMap::new();
    for claim in claims {
        let entities = by_key.entry(claim.key.clone()).or_default();
        match entities.get(&claim.entity) {
            Some(held) if held.precedence() <= claim.precedence() => {}
            _ => {
                entities.insert(claim.entity, claim.clone());
            }
        }
    }
    by_key
        .into_iter()
        .map(|(key, entities)| {
            let mut contest: Vec<Claim<K>> = entities.into_values().collect();
            contest.sort_by_key(Claim::precedence);
            (key, contest)
        })
        .collect()
}

/// Alias policy: one decision per distinct `(key, entity)`, ordered by key then precedence;
/// each loser becomes an alias of its key's winner.
pub fn resolve_aliases<K: Ord + Clone>(claims: &[Claim<K>]) -> Vec<KeyDecision<K>> {
    let mut decisions = Vec::new();
    for (key, contest) in contests(claims) {
        let Some(winner) = contest.first().map(|claim| claim.entity) else {
            continue;
        };
        for claim in contest {
            let outcome = if claim.entity == winner {
                KeyOutcome::Keeps
            } else {
                KeyOutcome::AliasOf(winner)
            };
            decisions.push(KeyDecision {
                key: key.clone(),
                entity: claim.entity,
                outcome,
            });
        }
    }
    decisions
}

/// Rename policy for text keys: one decision per distinct `(key, entity)`, ordered by key then
/// precedence; each loser is renamed to `<key>-<first 8 hex digits of its uuid>`, or, if that is
/// taken (claimed or already given), `-<16 hex>`, `-<32 hex>`, then `-<32 hex>-2`, `-3`, ...
/// The key part is cut (at a character boundary) so the result has at most `max_len` characters
/// (e.g. 255 for `dashboards.slug`). Fails only if `max_len` cannot hold a free suffix.
pub fn resolve_renames(
    claims: &[Claim<String>],
    max_len: usize,
) -> Result<Vec<KeyDecision<String>>> {
    let contests = contests(claims);
    let mut taken: BTreeSet<String> = contests.keys().cloned().collect();
    let mut decisions = Vec::new();
    for (key, contest) in contests {
        let Some(winner) = contest.first().map(|claim| claim.entity) else {
            continue;
        };
        for claim in contest {
            let outcome = if claim.entity == winner {
                KeyOutcome::Keeps
            } else {
                let renamed = free_name(&key, &claim.entity, max_len, &taken)?;
                taken.insert(renamed.clone());
                KeyOutcome::Renamed(renamed)
            };
            decisions.push(KeyDecision {
                key: key.clone(),
                entity: claim.entity,
                outcome,
            });
        }
    }
    Ok(decisions)
}

/// The first candidate new key for `entity` that is not in `taken`.
fn free_name(
    key: &str,
    entity: &EntityId,
    max_len: usize,
    taken: &BTreeSet<String>,
) -> Result<String> {
    let hex = entity.hex();
    let short = |n: usize| hex.get(..n).unwrap_or(&hex).to_owned();
    let suffixes = [short(8), short(16), hex.clone()]
        .into_iter()
        .chain((2..).map(|n: usize| format!("{hex}-{n}")));
    // Candidates are pairwise distinct, so at most |taken| of them can be taken.
    for suffix in suffixes.take(taken.len().saturating_add(4)) {
        let Some(room) = max_len.checked_sub(suffix.chars().count()) else {
            break;
        };
        let base: String = key.chars().take(room.saturating_sub(1)).collect();
        let candidate = if base.is_empty() {
            suffix
        } else {
            format!("{base}-{suffix}")
        };
        if !taken.contains(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::KeyTooLong { max_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claim<K>(key: K, id: u8, hlc: u64, region: &str) -> Claim<K> {
        let mut bytes = [0_u8; 16];
        bytes[0] = id;
        bytes[15] = 0xab;
        let region = RegionId::new(region).unwrap();
        Claim {
            key,
            entity: EntityId(bytes),
            hlc: Hlc::from_u64(hlc),
            region,
        }
    }

    #[test]
    fn earliest_keeps_slug_losers_renamed() {
        let claims = vec![
            claim("sales".to_owned(), 2, 20, "eu"),
            claim("sales".to_owned(), 1, 10, "us"),
            claim("other".to_owned(), 3, 5, "us"),
            claim("sales-02000000".to_owned(), 4, 1, "us"), // squats the first rename
        ];
        let decisions = resolve_renames(&claims, 255).unwrap();
        let sales: Vec<_> = decisions.iter().filter(|d| d.key == "sales").collect();
        assert_eq!(sales[0].entity, claims[1].entity);
        assert_eq!(sales[0].outcome, KeyOutcome::Keeps);
        assert_eq!(
            sales[1].outcome,
            KeyOutcome::Renamed("sales-0200000000000000".to_owned())
        );
        assert_eq!(decisions.len(), 4);
    }

    #[test]
    fn ties_on_hlc_break_by_region_then_uuid_and_renames_fit() {
        let claims = vec![
            claim("k".repeat(300), 9, 10, "us"),
            claim("k".repeat(300), 8, 10, "eu"),
        ];
        let decisions = resolve_renames(&claims, 255).unwrap();
        assert_eq!(decisions[0].entity, claims[1].entity, "eu < us");
        let KeyOutcome::Renamed(new_key) = &decisions[1].outcome else {
            panic!("not renamed")
        };
        assert_eq!(new_key.chars().count(), 255);
        assert!(new_key.ends_with("-09000000"));
        assert_eq!(
            resolve_renames(&claims, 5),
            Err(Error::KeyTooLong { max_len: 5 })
        );
        assert_eq!(
            resolve_renames(&claims, 8).unwrap()[1].outcome,
            KeyOutcome::Renamed("09000000".to_owned())
        );
    }

    #[test]
    fn datasets_alias_the_winner() {
        let key = ("db".to_owned(), "public".to_owned(), "orders".to_owned());
        let claims = vec![
            claim(key.clone(), 2, 20, "eu"),
            claim(key.clone(), 1, 10, "us"),
            claim(key, 1, 30, "eu"),
        ];
        let decisions = resolve_aliases(&claims);
        assert_eq!(decisions.len(), 2, "one decision per (key, entity)");
        assert_eq!(decisions[0].outcome, KeyOutcome::Keeps);
        assert_eq!(decisions[1].outcome, KeyOutcome::AliasOf(claims[1].entity));
        assert_eq!(
            claims[1].entity.to_string(),
            "01000000-0000-0000-0000-0000000000ab"
        );
    }

    proptest! {
        #[test]
        fn order_of_claims_does_not_matter(
            raw in prop::collection::vec((0..3_u8, 0..6_u8, 0..4_u64, 0..2_usize), 0..12),
            seed: u64,
        ) {
            let keys = ["a", "a-00000000", "b"];
            let regions = ["eu", "us"];
            let claims: Vec<_> = raw.iter().map(|(k, id, hlc, reg)| {
                claim(keys[usize::from(*k)].to_owned(), *id, *hlc, regions[*reg])
            }).collect();
            let mut shuffled = claims.clone();
            let len = shuffled.len();
            for i in 0..len {
                let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap()) % len as u64).unwrap();
                shuffled.swap(i, j);
            }
            let a = resolve_renames(&claims, 64).unwrap();
            prop_assert_eq!(&a, &resolve_renames(&shuffled, 64).unwrap());
            prop_assert_eq!(resolve_aliases(&claims), resolve_aliases(&shuffled));
            let final_keys: BTreeSet<_> = a.iter().map(|d| match &d.outcome {
                KeyOutcome::Renamed(k) => (k.clone(), d.entity),
                _ => (d.key.clone(), d.entity),
            }).collect();
            let distinct: BTreeSet<_> = final_keys.iter().map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(distinct.len(), final_keys.len(), "renamed keys collide");
        }
    }
}

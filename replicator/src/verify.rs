//! Verify: a region's canonical state, to compare regions with each other (DESIGN §1: canonical
//! form is "an entity as the same bytes in every region").
//!
//! **Contract.** [`canonical_state`] reads, in one `REPEATABLE READ, READ ONLY` transaction, every
//! replicated entity of a region exactly as `replicator snapshot` would publish it — the same
//! reader and the same canonical form: live entities with every stamped field's value, dot and
//! hlc and the entity clock; tombstones with their existence stamp. Two regions that applied the
//! same writes have equal states, entity for entity; [`diff`] lists the entities that differ.
//!
//! [`table_digests`] condenses a state to one md5 per table (over each entity's
//! [`canonical_text`], sorted keys, in uuid order), which `replicator verify` prints so two regions
//! can be compared at a glance, and [`differing_fields`] names what differs in one entity.
//!
//! **Why the stamps are compared too.** Equal values with different stamps still diverge later
//! (the next concurrent write would be decided differently), so a region is only in agreement
//! when its versions agree as well.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use conflict::RegionId;
use envelope::EntityChange;
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::capture::canonical_form::CanonicalForm;
use crate::capture::registry::{PgRegistry, RegistryCache, DEFAULT_CAPACITY};
use crate::capture::snapshot::{snapshot_table, EntitySink};
use crate::error::{Error, Result};
use crate::policy;

/// One region's entities, by `(table, uuid)`, each as canonical JSON.
pub type CanonicalState = BTreeMap<(String, Uuid), Value>;

#[derive(Default)]
struct Collect {
    entities: CanonicalState,
}

impl EntitySink for Collect {
    async fn change(&mut self, change: EntityChange) -> Result<()> {
        let key = (change.table.clone(), change.entity);
        self.entities.insert(key, canonical_json(&change));
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An entity's state as JSON with sorted fields: clock, and per field its value, dot and hlc.
pub fn canonical_json(change: &EntityChange) -> Value {
    let clock: BTreeMap<String, u64> = change
        .clock
        .iter()
        .map(|(region, counter)| (region.to_string(), counter.0))
        .collect();
    let fields: BTreeMap<&str, Value> = change
        .fields
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                json!({"value": f.value, "dot": f.dot.to_string(), "hlc": f.hlc.as_u64()}),
            )
        })
        .collect();
    json!({"clock": clock, "fields": fields})
}

/// Reads `region`'s canonical state through `client` (module docs). The client must not be in
/// a transaction; it is left outside one.
pub async fn canonical_state(client: Arc<Client>, region: RegionId) -> Result<CanonicalState> {
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
             SET LOCAL statement_timeout = 0;",
        )
        .await
        .map_err(Error::pg("begin the verify transaction"))?;
    let registry = RegistryCache::new(PgRegistry::shared(client.clone()), DEFAULT_CAPACITY);
    let mut canonical = CanonicalForm::new(region, registry);
    let mut out = Collect::default();
    let mut result = Ok(());
    for (table, policy) in policy::superset().replicated() {
        if let Err(error) = snapshot_table(&client, table, policy, &mut canonical, &mut out).await {
            result = Err(error);
            break;
        }
    }
    let end = client
        .batch_execute("COMMIT")
        .await
        .map_err(Error::pg("end the verify transaction"));
    result?;
    end?;
    Ok(out.entities)
}

/// The entities on which two states disagree (present in one only, or different), sorted.
pub fn diff(a: &CanonicalState, b: &CanonicalState) -> Vec<(String, Uuid)> {
    let keys: BTreeSet<&(String, Uuid)> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .cloned()
        .collect()
}

/// One table of one region's state: how many entities, and the md5 (hex) of their canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    pub entities: usize,
    pub md5: String,
}

/// `value` as compact JSON with every object's keys sorted, whatever map order serde_json keeps,
/// so equal states give equal bytes (and equal digests) in every region: the same writer as the
/// translated JSON columns ([`canonical::sorted_json`]).
pub fn canonical_text(value: &Value) -> String {
    canonical::sorted_json(value)
}

/// Per table, the digest of its entities: md5 over `uuid SP canonical-json LF` in uuid order.
/// Every replicated table of the policy is present, empty ones included.
pub fn table_digests(state: &CanonicalState) -> BTreeMap<String, TableDigest> {
    use md5::{Digest, Md5};
    let mut hashers: BTreeMap<String, (usize, Md5)> = policy::superset()
        .replicated()
        .map(|(table, _)| (table.to_owned(), (0, Md5::new())))
        .collect();
    for ((table, uuid), value) in state {
        let (count, hasher) = hashers
            .entry(table.clone())
            .or_insert_with(|| (0, Md5::new()));
        *count += 1;
        hasher.update(format!("{uuid} {}\n", canonical_text(value)).as_bytes());
    }
    hashers
        .into_iter()
        .map(|(table, (entities, hasher))| {
            let md5 = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (table, TableDigest { entities, md5 })
        })
        .collect()
}

/// What differs between two versions of one entity: `clock`, the names of the fields whose
/// value or stamp differ, or `missing` when one side has no such entity.
pub fn differing_fields(a: Option<&Value>, b: Option<&Value>) -> Vec<String> {
    let (Some(a), Some(b)) = (a, b) else {
        return if a == b {
            Vec::new()
        } else {
            vec!["missing".to_owned()]
        };
    };
    let mut out = Vec::new();
    if a.get("clock") != b.get("clock") {
        out.push("clock".to_owned());
    }
    let empty = serde_json::Map::new();
    let fields = |v: &'_ Value| {
        v.get("fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (fa, fb) = (fields(a), fields(b));
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    for name in names {
        if fa.get(name) != fb.get(name) {
            out.push(name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_sorts_keys_and_digests_cover_every_table() {
        let value = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": null}], "c": "x"}});
        assert_eq!(
            canonical_text(&value),
            r#"{"a":{"c":"x","d":[1,{"y":null,"z":0}]},"b":1}"#
        );
        let mut state = CanonicalState::new();
        state.insert(("dashboards".into(), Uuid::nil()), value.clone());
        let digests = table_digests(&state);
        assert_eq!(digests.get("dashboards").map(|d| d.entities), Some(1));
        assert_eq!(
            digests.get("slices").map(|d| d.md5.as_str()),
            Some("d41d8cd98f00b204e9800998ecf8427e"),
            "an empty table has the md5 of nothing"
        );
        let mut other = state.clone();
        other.insert(("dashboards".into(), Uuid::nil()), json!({"b": 1}));
        assert_ne!(table_digests(&other), digests);
    }

    #[test]
    fn differing_fields_name_the_clock_and_fields() {
        let a = json!({"clock": {"us": 2}, "fields": {"t": {"value": "a"}, "c": {"value": 1}}});
        let b = json!({"clock": {"us": 3}, "fields": {"t": {"value": "b"}, "c": {"value": 1}}});
        assert_eq!(differing_fields(Some(&a), Some(&b)), ["clock", "t"]);
        assert_eq!(differing_fields(Some(&a), None), ["missing"]);
        assert!(differing_fields(Some(&a), Some(&a)).is_empty());
    }
}

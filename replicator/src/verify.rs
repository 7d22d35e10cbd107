//! Verify: a region's canonical state, to compare regions with each other (DESIGN §1: canonical
//! form is "an entity as the same bytes in every region").
//!
//! **Contract.** [`canonical_state`] reads, in one `REPEATABLE READ, READ ONLY` transaction, every
//! replicated entity of a region exactly as `replicator snapshot` would publish it — the same
//! reader and the same canonical form: live entities with every stamped field's value, dot and
//! hlc and the entity clock; tombstones with their existence stamp. Two regions that applied the
//! same writes have equal states, entity for entity; [`diff`] lists the entities that differ.
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

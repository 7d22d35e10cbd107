//! `replicator setup`: installs capture into one region's Superset metadata database, idempotently.
//!
//! **Contract.** [`run`] brings the database to the state the table [`policy`](crate::policy::Policy) asks for and
//! reports what it changed; running it again reports nothing to do. [`plan`] computes the same
//! steps without changing anything (it reads inside a `READ ONLY` transaction): that is
//! `--dry-run`, and [`Plan`]'s `Display` is the SQL script it prints. In order:
//!
//! 1. **migrations** of schema `replicator` (module `migrations`), one transaction each;
//! 2. **the local region**, set once and refused if it would change ([`Error::RegionMismatch`]);
//! 3. **capture triggers** on every replicated and registry table (module `capture`), replacing any
//!    older generated version, and removing ours from tables the policy no longer captures;
//! 4. **backfill** (module `backfill`): uuids for rows without one, a registry entry for every row, an
//!    entity with clock `{region: 1}` for every existing replicated row. Triggers go in first, so
//!    a row Superset writes meanwhile is never missed;
//! 5. **replica identity** (module `replica_identity`) `FULL` for published tables without a primary key,
//!    *before* they are published, or Superset's own updates and deletes fail;
//! 6. **the publication** (module `publication`), created or made to match exactly;
//! 7. **the slot** (module `slot`), `pgoutput`, created last so it never sees setup's own backfill.
//!
//! Setup must run as the owner of Superset's tables with the `REPLICATION` attribute (or as a
//! superuser). A session advisory lock keeps two setups from interleaving; `lock_timeout` keeps a
//! long Superset transaction from stalling setup (and Superset behind it) indefinitely.

mod backfill;
mod capture;
mod identity;
mod inspect;
mod migrations;
mod names;
mod plan;
mod publication;
mod replica_identity;
mod slot;
pub(crate) mod sql;

use tokio_postgres::Client;

pub use names::{PublicationName, SlotName};
pub use plan::{Outcome, Plan, Report, Statement, Step, StepReport};

use crate::error::{Error, Result};
use crate::policy::{self, Policy};
use crate::RegionId;

/// The advisory lock key setup holds while it changes a database ("replicat").
const SETUP_LOCK: i64 = 0x7265_706c_6963_6174;

/// How long setup waits for a table lock before giving up (and trying again later).
const LOCK_TIMEOUT: &str = "30s";

/// What setup installs, and for which region.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub region: RegionId,
    pub slot: SlotName,
    pub publication: PublicationName,
    pub policy: &'static Policy,
}

impl SetupOptions {
    /// Options with Superset 6.1's policy.
    pub fn new(region: RegionId, slot: SlotName, publication: PublicationName) -> Self {
        SetupOptions {
            region,
            slot,
            publication,
            policy: policy::superset(),
        }
    }
}

/// The steps that would bring the database to the wanted state; changes nothing.
pub async fn plan(client: &mut Client, options: &SetupOptions) -> Result<Plan> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(Error::pg("begin a read-only transaction"))?;
    let state = inspect::State::load(&tx, options).await?;
    state.check_schema(options.policy)?;
    let mut steps = migrations::steps(&state.migrations)?;
    steps.extend(region_step(&state, options)?);
    steps.extend(capture_steps(&state, options.policy));
    steps.extend(backfill::steps(&tx, &state, options.policy).await?);
    steps.extend(replica_identity::steps(&state, options.policy));
    steps.extend(publication::step(&state, options)?);
    steps.extend(slot::step(&state, options)?);
    tx.commit()
        .await
        .map_err(Error::pg("end the read-only transaction"))?;
    Ok(Plan::new(steps))
}

/// Runs every step of `plan`, each atomic step in a transaction of its own.
pub async fn apply(client: &mut Client, plan: &Plan) -> Result<Report> {
    plan::apply(client, plan).await
}

/// Plans and applies under the setup lock: the whole of `replicator setup`.
pub async fn run(client: &mut Client, options: &SetupOptions) -> Result<Report> {
    let locked = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SETUP_LOCK])
        .await
        .map_err(Error::pg("take the setup lock"))?;
    let locked: bool = inspect::column(&locked, 0)?;
    if !locked {
        return Err(Error::SetupBusy);
    }
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(Error::pg("set lock_timeout"))?;
    let outcome = async {
        let plan = plan(client, options).await?;
        apply(client, &plan).await
    }
    .await;
    let released = client
        .batch_execute(&format!(
            "RESET lock_timeout; SELECT pg_advisory_unlock({SETUP_LOCK})"
        ))
        .await
        .map_err(Error::pg("release the setup lock"));
    let report = outcome?;
    released?;
    Ok(report)
}

fn region_step(state: &inspect::State, options: &SetupOptions) -> Result<Option<Step>> {
    let wanted = options.region.as_str();
    match state.region.as_deref() {
        Some(stored) if stored == wanted => Ok(None),
        Some(stored) => Err(Error::RegionMismatch {
            stored: stored.to_owned(),
            requested: wanted.to_owned(),
        }),
        None => Ok(Some(Step::atomic(
            format!("set the local region to {wanted}"),
            vec![Statement::silent(format!(
                "INSERT INTO replicator.local_region (region) VALUES ({})",
                sql::literal(wanted)
            ))],
        ))),
    }
}

fn capture_steps(state: &inspect::State, policy: &Policy) -> Vec<Step> {
    let wanted = capture::captures(policy);
    let mut steps: Vec<Step> = wanted
        .iter()
        .filter(|capture| !state.has_capture(capture))
        .map(|capture| {
            let statements = capture
                .statements()
                .into_iter()
                .map(Statement::silent)
                .collect();
            Step::atomic(format!("install capture on {}", capture.table), statements)
        })
        .collect();
    let stale = state.stale_capture(&wanted);
    if !stale.is_empty() {
        let statements = stale.into_iter().map(Statement::silent).collect();
        steps.push(Step::atomic(
            "remove capture the policy no longer asks for",
            statements,
        ));
    }
    steps
}

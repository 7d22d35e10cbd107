//! `replicator teardown`: removes from one region's database everything `replicator setup`
//! installed, so Superset runs on without the sidecar.
//!
//! **Contract.** [`plan`] reads what is there (changing nothing) and lists the statements, in the
//! order [`run`] executes them:
//!
//! 1. the capture triggers on Superset's tables (`replicator_version`, `replicator_uuid`,
//!    `replicator_register` — only triggers of that name whose function is in schema
//!    `replicator`), each table locked briefly (`lock_timeout`);
//! 2. the publication;
//! 3. the applier's replication origin (`replicator_apply_<database oid>`, see
//!    [`origin_name`]);
//! 4. schema `replicator` with everything in it: the state tables (registry, clocks, positions,
//!    conflict log, quarantine, parked transactions) and the functions;
//!
//! all in one transaction, then 5. the replication slot (which cannot be dropped in one).
//!
//! It refuses while a sidecar is connected ([`Error::TeardownBlocked`]): the reader streaming the
//! slot or the applier holding the origin. The `REPLICA IDENTITY FULL` setup gave tables without
//! a primary key (`embedded_dashboards`) is left as it is: it is harmless, and taking it away
//! could break a publication someone else made. Superset's own rows (and the uuids setup filled
//! in) are untouched. Nothing of it can be undone: the clocks and the registry are what let this
//! region rejoin; after teardown it can only be set up again as a new region state (bootstrap
//! from a snapshot).

use std::fmt;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::apply::applier::origin_name;
use crate::error::{Error, Result};
use crate::setup::sql::{ident, literal, public};
use crate::setup::{PublicationName, SlotName};

use super::{get, Report};

/// The advisory lock `replicator setup` holds while it changes a database (the same key), so a
/// setup and a teardown never interleave.
const SETUP_LOCK: i64 = 0x7265_706c_6963_6174;

/// What teardown would drop, and how.
#[derive(Debug, Clone)]
pub struct TeardownPlan {
    pub database: String,
    pub dbname: String,
    pub region: Option<String>,
    /// `(what, sql)` run in one transaction.
    pub statements: Vec<(String, String)>,
    /// The slot to drop afterwards, when it exists in this database.
    pub slot: Option<String>,
    /// Sessions of a sidecar still connected (application name and pid).
    pub blockers: Vec<(String, i32)>,
}

impl TeardownPlan {
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty() && self.slot.is_none()
    }

    /// What the operator types to confirm: the region id, or the database's name when no region
    /// is set.
    pub fn confirmation(&self) -> &str {
        self.region.as_deref().unwrap_or(&self.dbname)
    }

    fn slot_sql(slot: &str) -> String {
        format!("SELECT pg_drop_replication_slot({})", literal(slot))
    }
}

/// Reads what setup installed (module docs); changes nothing.
pub async fn plan(
    client: &Client,
    database: String,
    slot: &SlotName,
    publication: &PublicationName,
) -> Result<TeardownPlan> {
    let origin = origin_name(client).await?;
    let row = client
        .query_one(
            "SELECT current_database()::text,
                    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replicator'),
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
                    EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $2),
                    EXISTS (SELECT 1 FROM pg_replication_slots
                            WHERE slot_name = $3 AND database = current_database())",
            &[&publication.as_str(), &origin, &slot.as_str()],
        )
        .await
        .map_err(Error::pg("read what setup installed"))?;
    let what = "the installed objects";
    let dbname: String = get(&row, 0, what)?;
    let schema: bool = get(&row, 1, what)?;
    let has_publication: bool = get(&row, 2, what)?;
    let has_origin: bool = get(&row, 3, what)?;
    let has_slot: bool = get(&row, 4, what)?;
    let region = super::local_region(client).await?;
    let mut statements = Vec::new();
    let triggers = client
        .query(
            r"SELECT c.relname::text, t.tgname::text
              FROM pg_trigger AS t
              JOIN pg_class AS c ON c.oid = t.tgrelid
              JOIN pg_namespace AS n ON n.oid = c.relnamespace
              JOIN pg_proc AS p ON p.oid = t.tgfoid
              JOIN pg_namespace AS pn ON pn.oid = p.pronamespace
              WHERE n.nspname = 'public' AND NOT t.tgisinternal
                AND t.tgname IN ('replicator_version', 'replicator_uuid', 'replicator_register')
                AND pn.nspname = 'replicator'
              ORDER BY c.relname, t.tgname",
            &[],
        )
        .await
        .map_err(Error::pg("read the capture triggers"))?;
    for row in &triggers {
        let table: String = get(row, 0, "a trigger")?;
        let name: String = get(row, 1, "a trigger")?;
        statements.push((
            format!("trigger {name} on {table}"),
            format!("DROP TRIGGER {} ON {}", ident(&name), public(&table)),
        ));
    }
    if has_publication {
        statements.push((
            format!("publication {publication}"),
            format!("DROP PUBLICATION {}", ident(publication.as_str())),
        ));
    }
    if has_origin {
        statements.push((
            format!("replication origin {origin}"),
            format!("SELECT pg_replication_origin_drop({})", literal(&origin)),
        ));
    }
    if schema {
        statements.push((
            "schema replicator (state tables and functions)".into(),
            "DROP SCHEMA replicator CASCADE".into(),
        ));
    }
    let blockers = client
        .query(
            "SELECT coalesce(application_name, ''), pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name IN ('replicator-reader', 'replicator-apply')
             UNION
             SELECT 'slot reader', active_pid FROM pg_replication_slots
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot.as_str()],
        )
        .await
        .map_err(Error::pg("look for a running sidecar"))?
        .iter()
        .map(|row| Ok((get(row, 0, "a session")?, get(row, 1, "a session")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(TeardownPlan {
        database,
        dbname,
        region,
        statements,
        slot: has_slot.then(|| slot.as_str().to_owned()),
        blockers,
    })
}

/// Runs `plan` (module docs). The caller has asked for confirmation.
pub async fn run(client: &mut Client, plan: &TeardownPlan) -> Result<TeardownReport> {
    if let Some((name, pid)) = plan.blockers.first() {
        return Err(Error::TeardownBlocked {
            reason: format!("a sidecar is connected ({name}, pid {pid})"),
        });
    }
    let locked = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SETUP_LOCK])
        .await
        .map_err(Error::pg("take the setup lock"))?;
    if !get::<bool>(&locked, 0, "the setup lock")? {
        return Err(Error::SetupBusy);
    }
    let outcome = drop_all(client, plan).await;
    let released = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({SETUP_LOCK})"))
        .await
        .map_err(Error::pg("release the setup lock"));
    let report = outcome?;
    released?;
    Ok(report)
}

async fn drop_all(client: &mut Client, plan: &TeardownPlan) -> Result<TeardownReport> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::pg("begin the teardown"))?;
    tx.batch_execute("SET LOCAL lock_timeout = '30s'")
        .await
        .map_err(Error::pg("set lock_timeout"))?;
    for (what, sql) in &plan.statements {
        tx.batch_execute(sql)
            .await
            .map_err(Error::pg(format!("drop {what}")))?;
    }
    tx.commit()
        .await
        .map_err(Error::pg("commit the teardown"))?;
    let mut dropped: Vec<String> = plan
        .statements
        .iter()
        .map(|(what, _)| what.clone())
        .collect();
    if let Some(slot) = &plan.slot {
        client
            .batch_execute(&TeardownPlan::slot_sql(slot))
            .await
            .map_err(Error::pg(format!("drop replication slot {slot}")))?;
        dropped.push(format!("replication slot {slot}"));
    }
    Ok(TeardownReport {
        database: plan.database.clone(),
        region: plan.region.clone(),
        dropped,
    })
}

const KEPT: &str = "REPLICA IDENTITY FULL on tables without a primary key (embedded_dashboards) is kept: it is harmless. Superset's rows are untouched.";

impl fmt::Display for TeardownPlan {
    /// The SQL script teardown runs (`--dry-run`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "-- replicator teardown --dry-run against {} (region {})",
            self.database,
            self.region.as_deref().unwrap_or("not set")
        )?;
        if self.is_empty() {
            return writeln!(f, "-- nothing to tear down");
        }
        for (name, pid) in &self.blockers {
            writeln!(
                f,
                "-- REFUSED while a sidecar is connected: {name} (pid {pid}); stop it first"
            )?;
        }
        writeln!(f, "BEGIN;\nSET LOCAL lock_timeout = '30s';")?;
        for (what, sql) in &self.statements {
            writeln!(f, "-- {what}\n{sql};")?;
        }
        writeln!(f, "COMMIT;")?;
        if let Some(slot) = &self.slot {
            writeln!(
                f,
                "-- replication slot {slot}\n{};",
                TeardownPlan::slot_sql(slot)
            )?;
        }
        writeln!(f, "-- {KEPT}")
    }
}

impl Report for TeardownPlan {
    fn to_json(&self) -> Value {
        json!({
            "database": self.database,
            "region": self.region,
            "statements": self.statements.iter().map(|(what, sql)| json!({"drops": what, "sql": sql})).collect::<Vec<_>>(),
            "slot": self.slot,
            "blocked_by": self.blockers.iter().map(|(name, pid)| json!({"session": name, "pid": pid})).collect::<Vec<_>>(),
        })
    }
}

/// What teardown dropped.
#[derive(Debug, Clone)]
pub struct TeardownReport {
    pub database: String,
    pub region: Option<String>,
    pub dropped: Vec<String>,
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "teardown of {} (region {}):",
            self.database,
            self.region.as_deref().unwrap_or("not set")
        )?;
        if self.dropped.is_empty() {
            writeln!(f, "  nothing to tear down")?;
        }
        for what in &self.dropped {
            writeln!(f, "  dropped {what}")?;
        }
        writeln!(f, "{KEPT}")
    }
}

impl Report for TeardownReport {
    fn to_json(&self) -> Value {
        json!({"database": self.database, "region": self.region, "dropped": self.dropped})
    }
}

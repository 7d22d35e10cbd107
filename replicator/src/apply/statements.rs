//! The statements the applier sends for every change, prepared once per database session.
//!
//! **Why.** tokio-postgres prepares a statement given as text on every call: a Parse/Describe
//! round trip before the Bind/Execute one, and PostgreSQL plans an unnamed statement again at
//! every Bind. Sent as text, these four cost two round trips and a plan per change (profile in
//! docs/benchmarks.md, P1). Prepared here they cost one round trip, and PostgreSQL caches their
//! plans for the session.
//!
//! **Contract.** A [`Statements`] belongs to the connection that prepared it (the applier's
//! session): a new session prepares again. Prepared statements live outside transactions, so a
//! rolled-back batch or savepoint leaves them usable.

use tokio_postgres::{Client, Statement};

use crate::error::{Error, Result};

use super::{local_form, versions};

/// Registers a new row's local id for its entity.
const REGISTER_SQL: &str = "SELECT replicator.register($1, $2, $3)";

/// The applier's per-change statements, prepared on one connection.
#[derive(Debug, Clone)]
pub struct Statements {
    /// [`versions::LOAD_SQL`].
    pub load_versions: Statement,
    /// [`versions::SAVE_SQL`].
    pub save_versions: Statement,
    /// The registry lookup of `local_form` (uuids to their newest local ids).
    pub local_ids: Statement,
    /// `replicator.register(table, local_id, uuid)`.
    pub register: Statement,
}

impl Statements {
    /// Prepares every statement on `client` (one round trip each, once per session).
    pub async fn prepare(client: &Client) -> Result<Self> {
        let prepare = |sql: &'static str, what: &'static str| async move {
            client
                .prepare(sql)
                .await
                .map_err(Error::pg(format!("prepare the applier's {what}")))
        };
        Ok(Statements {
            load_versions: prepare(versions::LOAD_SQL, "versions read").await?,
            save_versions: prepare(versions::SAVE_SQL, "versions write").await?,
            local_ids: prepare(local_form::LOCAL_IDS_SQL, "registry lookup").await?,
            register: prepare(REGISTER_SQL, "registration of new rows").await?,
        })
    }
}

//! The operator's commands: what a person on call runs against one region's database to see how
//! replication is doing and to act on what it reports.
//!
//! **Contract.** Every command here works on this region's metadata database only (`verify`
//! also reads its peers'), through an ordinary connection, and never through the sidecar: it
//! works while the sidecar is down, and it needs no broker. Read commands
//! ([`status`], [`conflicts`] list and show, [`quarantine`]) change nothing; each returns a
//! report that renders both as text for a terminal (`Display`) and as JSON for scripts
//! ([`Report::to_json`]), with the same facts in both. Times are RFC 3339 in UTC.
//!
//! The commands that change things say exactly what they change: [`resolution`] writes one
//! ordinary, versioned update of one column (so it replicates like a user's edit), and
//! [`teardown`] drops what `replicator setup` installed, after confirmation.
//!
//! **Why no password is ever shown.** Reports name databases by [`DatabaseUrl`]'s redacted form;
//! errors carry the same; values of region-local columns (a database connection's URI, encrypted
//! columns) are never versioned, so they are in no conflict and no canonical state to print.

pub mod agreement;
pub mod conflicts;
pub mod diff;
pub mod layout;
pub mod quarantine;
pub mod resolution;
pub mod status;
pub mod teardown;

use serde_json::Value;
use tokio_postgres::Client;

use crate::database::DatabaseUrl;
use crate::error::{Error, Result};

/// What a command found, for a person or a script.
pub trait Report: std::fmt::Display {
    /// The same facts as the text, as one JSON value.
    fn to_json(&self) -> Value;
}

/// `expr` (a `timestamptz`) as RFC 3339 text in UTC, in SQL.
pub(crate) fn rfc3339(expr: &str) -> String {
    format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// The wall time of an hlc column (milliseconds since the epoch in its high 48 bits), in SQL.
pub(crate) fn hlc_time(column: &str) -> String {
    rfc3339(&format!("to_timestamp(({column} >> 16) / 1000.0)"))
}

/// A connection to a region's database that has been set up: its region id and the client.
/// The session's `TimeZone` is UTC, like the applier's, so values print the same way.
pub async fn connect(database: &DatabaseUrl) -> Result<(Client, String)> {
    let client = database.connect().await?;
    client
        .batch_execute("SET TimeZone = 'UTC'; SET application_name = 'replicator-operator'")
        .await
        .map_err(Error::pg("set up the session"))?;
    let region = local_region(&client).await?.ok_or(Error::NotSetUp)?;
    Ok((client, region))
}

/// This database's region, or `None` when setup never ran (or was torn down).
pub async fn local_region(client: &Client) -> Result<Option<String>> {
    let exists = client
        .query_one(
            "SELECT to_regclass('replicator.local_region') IS NOT NULL",
            &[],
        )
        .await
        .map_err(Error::pg("look for replicator.local_region"))?;
    let exists: bool = exists
        .try_get(0)
        .map_err(Error::pg("look for replicator.local_region"))?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT region FROM replicator.local_region", &[])
        .await
        .map_err(Error::pg("read the local region"))?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(Error::pg("read the local region"))
}

/// A column of a row, with the query's context on failure.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
    what: &str,
) -> Result<T> {
    row.try_get(index)
        .map_err(Error::pg(format!("read {what}")))
}

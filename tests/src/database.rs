//! Per-test metadata databases. Each is a clone of the region's `superset_template` (the real
//! Superset 6.1 schema), named `it_<label>_<unique>`, and is dropped with its replication slots
//! when the handle drops, so tests never see each other's rows, slots or publications.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::{unique_name, HarnessError, Region};

/// A metadata database owned by one test.
#[derive(Debug)]
pub struct TestDb {
    region: Region,
    name: String,
}

impl Region {
    /// A connection to `dbname` in this region; its driver task runs on the caller's runtime.
    pub async fn connect_to(&self, dbname: &str) -> Result<Client, HarnessError> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(dbname), NoTls)
            .await
            .map_err(HarnessError::pg(format!(
                "connect to {dbname} in region {}",
                self.name
            )))?;
        tokio::spawn(async move {
            // The connection ends when the client drops or the database goes; both are normal here.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A new database with the full Superset 6.1 schema, for this test only.
    pub async fn fresh_db(&self, label: &str) -> Result<TestDb, HarnessError> {
        let name = unique_name(&format!("it_{label}"));
        let admin = self.connect_to("postgres").await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
                self.template
            ))
            .await
            .map_err(HarnessError::pg(format!("create database {name}")))?;
        Ok(TestDb {
            region: self.clone(),
            name,
        })
    }
}

impl TestDb {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    /// A libpq-style connection string for this database.
    pub fn conninfo(&self) -> String {
        self.region.conninfo(&self.name)
    }

    pub async fn connect(&self) -> Result<Client, HarnessError> {
        self.region.connect_to(&self.name).await
    }

    /// The least-privilege role a sidecar runs as for this database (`<database>_sidecar`):
    /// created with REPLICATION, granted exactly `compose/postgres/grant-sidecar.sql` (the grants
    /// docs/security.md prescribes), and dropped with the database. Call after `replicator setup`.
    pub async fn sidecar_role(&self) -> Result<String, HarnessError> {
        let role = format!("{}_sidecar", self.name);
        let admin = self.region.connect_to("postgres").await?;
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN REPLICATION PASSWORD '{}'",
                self.region.password().replace('\'', "''")
            ))
            .await
            .map_err(HarnessError::pg(format!("create role {role}")))?;
        let grants = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../compose/postgres/grant-sidecar.sql"
        );
        let psql = std::env::var("PG_BIN")
            .map(|bin| format!("{bin}/psql"))
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/psql".into());
        let output = std::process::Command::new(psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v"])
            .arg(format!("role={role}"))
            .arg("-f")
            .arg(grants)
            .arg(self.conninfo())
            .output()
            .map_err(|e| HarnessError::Other(format!("run psql for the sidecar's grants: {e}")))?;
        if !output.status.success() {
            return Err(HarnessError::Other(format!(
                "the sidecar's grants failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(role)
    }

    /// A connection string for this database as `role`.
    pub fn conninfo_as(&self, role: &str) -> String {
        self.region.conninfo_as(role, &self.name)
    }

    /// A slot, publication or origin name owned by this test (lowercase, ≤ 48 characters).
    pub fn unique_name(&self, kind: &str) -> String {
        unique_name(&format!("it_{kind}"))
    }

    async fn drop_everything(region: &Region, name: &str) -> Result<(), HarnessError> {
        let admin = region.connect_to("postgres").await?;
        // Slots pin a database: stop whoever streams them, then drop them, then the database.
        for attempt in 0..50 {
            admin
                .execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
                     WHERE database = $1 AND active_pid IS NOT NULL",
                    &[&name],
                )
                .await
                .map_err(HarnessError::pg("terminate slot readers"))?;
            let dropped = admin
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                     WHERE database = $1 AND NOT active",
                    &[&name],
                )
                .await;
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                    &[&name],
                )
                .await
                .map_err(HarnessError::pg("count slots"))?
                .get(0);
            if left == 0 {
                break;
            }
            if attempt == 49 {
                dropped.map_err(HarnessError::pg(format!("drop slots of {name}")))?;
                return Err(HarnessError::Other(format!(
                    "{left} slot(s) of {name} would not drop"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .map_err(HarnessError::pg(format!("drop database {name}")))?;
        // Replication origins and roles are cluster-wide and outlive the database.
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}_sidecar\""))
            .await
            .map_err(HarnessError::pg(format!("drop role {name}_sidecar")))?;
        admin
            .batch_execute(SWEEP_ORIGINS)
            .await
            .map_err(HarnessError::pg("drop the origins of dropped databases"))
    }
}

/// Drops the appliers' replication origins (`replicator_apply_<database oid>`) whose database is
/// gone; one still held by a dying session is left for the next sweep.
const SWEEP_ORIGINS: &str = "DO $$ DECLARE o text; BEGIN
    FOR o IN SELECT roname FROM pg_replication_origin
             WHERE roname ~ '^replicator_apply_[0-9]+$'
               AND substring(roname FROM 18)::oid NOT IN (SELECT oid FROM pg_database) LOOP
        BEGIN
            PERFORM pg_replication_origin_drop(o);
        EXCEPTION WHEN object_in_use THEN NULL;
        END;
    END LOOP;
END $$";

impl Drop for TestDb {
    /// Drops the database on a thread of its own with its own runtime, so that it works from any
    /// context (async test, sync test, unwinding panic). A failure is reported, not raised: the
    /// next `dev/lab --name test up` sweeps whatever is left.
    fn drop(&mut self) {
        let region = self.region.clone();
        let name = std::mem::take(&mut self.name);
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt
                    .block_on(TestDb::drop_everything(&region, &name))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("harness: could not drop a test database: {e}"),
            Err(_) => eprintln!("harness: the thread dropping a test database panicked"),
        }
    }
}

//! Crashes: a sidecar killed with SIGKILL ten times while two regions write a mixed workload of
//! about ten thousand row changes. Afterwards every region's canonical state is identical and no
//! row was applied twice (no duplicate association rows, the same row counts everywhere, no
//! conflict logged twice).

mod scenario;

use std::error::Error;
use std::time::Duration;

use harness::Mesh;
use scenario::{allow_databases, create_shared, users};
use tokio_postgres::Client;

type TestResult = Result<(), Box<dyn Error>>;

/// A small deterministic generator (the workload must not depend on luck to be mixed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// One writer: `txns` transactions of inserts, updates and deletes of dashboards, charts and
/// their links; returns how many row changes it made.
async fn write(
    client: &Client,
    seed: u64,
    txns: usize,
    tag: &str,
) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let mut rng = Lcg(seed);
    let mut changes = 0u64;
    for t in 0..txns {
        let sql = match rng.next(6) {
            0 | 1 => {
                changes += 4;
                format!(
                    "WITH d AS (INSERT INTO dashboards (dashboard_title, slug) VALUES ('{tag} board {t}', '{tag}-{t}') RETURNING id),
                          s AS (INSERT INTO slices (slice_name, datasource_type, datasource_id)
                                SELECT '{tag} chart {t}', 'table', (SELECT min(id) FROM tables) RETURNING id)
                     INSERT INTO dashboard_slices (dashboard_id, slice_id) SELECT d.id, s.id FROM d, s;
                     INSERT INTO dashboard_user (dashboard_id, user_id)
                       SELECT (SELECT max(id) FROM dashboards), id FROM ab_user WHERE username = 'admin';"
                )
            }
            2 | 3 => {
                changes += 10;
                format!(
                    "UPDATE dashboards SET dashboard_title = '{tag} edit {t} ' || id, css = '.t{t} {{}}'
                     WHERE id IN (SELECT id FROM dashboards ORDER BY random() LIMIT 5);"
                )
            }
            4 => {
                changes += 5;
                format!(
                    "UPDATE slices SET slice_name = '{tag} chart edit {t}', params = '{{\"t\": {t}}}'
                     WHERE id IN (SELECT id FROM slices ORDER BY random() LIMIT 5);"
                )
            }
            _ => {
                changes += 3;
                "DELETE FROM dashboards WHERE id IN (
                     SELECT id FROM dashboards WHERE dashboard_title <> 'Sales' ORDER BY random() LIMIT 1);"
                    .to_owned()
            }
        };
        // A deadlock with the applier is a user's retry, as it would be in Superset.
        let mut attempts = 0;
        loop {
            match client.batch_execute(&format!("BEGIN; {sql} COMMIT;")).await {
                Ok(()) => break,
                Err(e) if attempts < 5 && e.code().is_some_and(|c| c.code().starts_with("40")) => {
                    client.batch_execute("ROLLBACK").await?;
                    attempts += 1;
                }
                Err(e) => {
                    return Err(format!(
                        "{tag} txn {t}: {:?}",
                        e.as_db_error().map(|d| d.message().to_owned())
                    )
                    .into())
                }
            }
        }
    }
    Ok(changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_sigkills_during_a_mixed_workload_leave_every_region_identical() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu", "ap"], "apply_crash").await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    allow_databases(&mut mesh)?;
    mesh.start_all()?;
    create_shared(mesh.client("us")).await?;
    mesh.converged(Duration::from_secs(120)).await?;

    let us = mesh.member("us").db.connect().await?;
    let eu = mesh.member("eu").db.connect().await?;
    let writers = tokio::spawn(async move {
        let (a, b) = tokio::join!(write(&us, 7, 850, "us"), write(&eu, 11, 850, "eu"));
        Ok::<u64, Box<dyn Error + Send + Sync>>(a? + b?)
    });
    let mut rng = Lcg(3);
    for kill in 0..10 {
        tokio::time::sleep(Duration::from_millis(500 + rng.next(2000))).await;
        // The applier of ap every time; every third kill also hits a writing region's sidecar.
        mesh.restart("ap")?;
        if kill % 3 == 2 {
            mesh.restart(if kill % 2 == 0 { "us" } else { "eu" })?;
        }
    }
    let changes = writers.await?.map_err(|e| e.to_string())?;
    assert!(
        changes >= 9_000,
        "a workload of about 10k changes ({changes})"
    );
    mesh.converged(Duration::from_secs(300)).await?;

    let mut counts = Vec::new();
    for member in &mesh.members {
        let region = member.region.as_str();
        let duplicates = mesh
            .count(
                region,
                "SELECT (SELECT count(*) - count(DISTINCT (dashboard_id, user_id)) FROM dashboard_user)
                      + (SELECT count(*) - count(DISTINCT (dashboard_id, slice_id)) FROM dashboard_slices)
                      + (SELECT count(*) - count(DISTINCT uuid) FROM slices)
                      + (SELECT count(*) - count(DISTINCT uuid) FROM dashboards)",
            )
            .await?;
        assert_eq!(duplicates, 0, "no row applied twice in {region}");
        let twice = mesh
            .count(
                region,
                "SELECT count(*) FROM (SELECT 1 FROM replicator.conflict
                   GROUP BY table_name, uuid, field, local_region, local_counter, incoming_region, incoming_counter
                   HAVING count(*) > 1) AS d",
            )
            .await?;
        assert_eq!(twice, 0, "no conflict logged twice in {region}");
        let rows = mesh
            .count(
                region,
                "SELECT (SELECT count(*) FROM dashboards) * 1000000 + (SELECT count(*) FROM slices) * 1000
                      + (SELECT count(*) FROM dashboard_user)",
            )
            .await?;
        counts.push(rows);
        assert_eq!(
            mesh.count(region, "SELECT count(*) FROM replicator.quarantine")
                .await?,
            0
        );
        assert_eq!(
            mesh.count(region, "SELECT count(*) FROM replicator.parked")
                .await?,
            0
        );
    }
    assert!(
        counts.iter().all(|c| *c == counts[0]),
        "row counts per region: {counts:?}"
    );
    Ok(())
}

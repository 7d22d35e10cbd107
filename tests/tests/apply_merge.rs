//! Apply under concurrency: edits made in two regions while they are cut off from each other
//! (every sidecar stopped), then reconnected. Every region must end in the same state, with the
//! conflicts DESIGN §3 says are conflicts logged once in each region, and nothing else logged.

mod scenario;

use std::error::Error;
use std::time::Duration;

use harness::{wait_until, Lab, Mesh};
use scenario::{allow_databases, create_shared, users, Shared};

type TestResult = Result<(), Box<dyn Error>>;

const CONVERGE: Duration = Duration::from_secs(120);

/// Three regions with the shared objects of `scenario` created in us and replicated everywhere.
async fn mesh_with_shared(label: &str) -> Result<(Mesh, Shared), Box<dyn Error>> {
    let mut mesh = Mesh::new(&["us", "eu", "ap"], label).await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    allow_databases(&mut mesh)?;
    mesh.start_all()?;
    let shared = create_shared(mesh.client("us")).await?;
    mesh.converged(CONVERGE).await?;
    Ok((mesh, shared))
}

async fn conflicts(
    mesh: &Mesh,
    region: &str,
) -> Result<Vec<(String, String, String)>, Box<dyn Error>> {
    let rows = mesh
        .client(region)
        .query(
            "SELECT field, kind, winner || ':' || CASE winner WHEN 'local' THEN local_region ELSE incoming_region END
             FROM replicator.conflict ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The winning region of each logged conflict, per field.
fn winners(logged: &[(String, String, String)]) -> Vec<(String, String)> {
    logged
        .iter()
        .map(|(field, _, winner)| {
            let region = winner.split(':').nth(1).unwrap_or_default().to_owned();
            (field.clone(), region)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_of_different_columns_both_survive_without_a_conflict() -> TestResult {
    let (mut mesh, shared) = mesh_with_shared("apply_cols").await?;
    mesh.kill_all();
    mesh.client("us")
        .execute(
            "UPDATE dashboards SET dashboard_title = 'Title from us' WHERE uuid = $1",
            &[&shared.dashboard_uuid],
        )
        .await?;
    mesh.client("eu")
        .execute(
            "UPDATE dashboards SET css = '.from-eu {}' WHERE uuid = $1",
            &[&shared.dashboard_uuid],
        )
        .await?;
    mesh.start_all()?;
    mesh.converged(CONVERGE).await?;
    for member in &mesh.members {
        let row = member
            .client
            .query_one(
                "SELECT dashboard_title, css FROM dashboards WHERE uuid = $1",
                &[&shared.dashboard_uuid],
            )
            .await?;
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("Title from us".to_owned(), ".from-eu {}".to_owned()),
            "in {}",
            member.region
        );
        assert_eq!(
            conflicts(&mesh, &member.region).await?,
            vec![],
            "in {}",
            member.region
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_of_one_column_end_with_one_winner_and_one_conflict_in_each_region(
) -> TestResult {
    let (mut mesh, shared) = mesh_with_shared("apply_same").await?;
    mesh.kill_all();
    for region in ["us", "eu"] {
        mesh.client(region)
            .execute(
                "UPDATE dashboards SET dashboard_title = $2 WHERE uuid = $1",
                &[&shared.dashboard_uuid, &format!("Title from {region}")],
            )
            .await?;
    }
    mesh.start_all()?;
    mesh.converged(CONVERGE).await?;
    let mut titles = Vec::new();
    let mut all_winners = Vec::new();
    for member in &mesh.members {
        let title: String = member
            .client
            .query_one(
                "SELECT dashboard_title FROM dashboards WHERE uuid = $1",
                &[&shared.dashboard_uuid],
            )
            .await?
            .get(0);
        titles.push(title);
        let logged = wait_until("the conflict to be logged", CONVERGE, || async {
            let logged = conflicts(&mesh, &member.region)
                .await
                .map_err(|e| harness::HarnessError::Other(e.to_string()))?;
            Ok((!logged.is_empty()).then_some(logged))
        })
        .await?;
        assert_eq!(
            logged.len(),
            1,
            "one conflict in {}: {logged:?}",
            member.region
        );
        assert_eq!(logged[0].0, "dashboard_title");
        assert_eq!(logged[0].1, "field");
        all_winners.push(winners(&logged));
    }
    assert!(titles.iter().all(|t| *t == titles[0]), "{titles:?}");
    assert!(
        all_winners.iter().all(|w| *w == all_winners[0]),
        "{all_winners:?}"
    );
    let expected = format!("Title from {}", all_winners[0][0].1);
    assert_eq!(titles[0], expected);
    // Both values and both clocks are in the log.
    let row = mesh
        .client("ap")
        .query_one(
            "SELECT local_value, incoming_value, local_clock::text, incoming_clock::text FROM replicator.conflict",
            &[],
        )
        .await?;
    let values: Vec<Option<String>> = vec![row.get(0), row.get(1)];
    assert!(
        values.contains(&Some("Title from us".into()))
            && values.contains(&Some("Title from eu".into())),
        "{values:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_concurrent_with_an_update_ends_deleted_everywhere_and_is_logged() -> TestResult {
    let (mut mesh, shared) = mesh_with_shared("apply_del").await?;
    mesh.kill_all();
    let chart = shared.chart_uuids[2];
    mesh.client("us")
        .execute("DELETE FROM slices WHERE uuid = $1", &[&chart])
        .await?;
    mesh.client("eu")
        .execute(
            "UPDATE slices SET slice_name = 'renamed in eu' WHERE uuid = $1",
            &[&chart],
        )
        .await?;
    mesh.start_all()?;
    mesh.converged(CONVERGE).await?;
    for member in &mesh.members {
        let left: i64 = mesh
            .count(
                &member.region,
                &format!("SELECT count(*) FROM slices WHERE uuid = '{chart}'"),
            )
            .await?;
        assert_eq!(left, 0, "the chart is deleted in {}", member.region);
        let logged = wait_until("the delete/update conflict", CONVERGE, || async {
            let logged = conflicts(&mesh, &member.region)
                .await
                .map_err(|e| harness::HarnessError::Other(e.to_string()))?;
            Ok(logged
                .iter()
                .any(|(_, kind, _)| kind == "delete_update")
                .then_some(logged))
        })
        .await?;
        assert!(
            logged.iter().all(|(f, _, _)| f == "slice_name"),
            "{logged:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dashboards_with_one_slug_end_the_same_everywhere_and_apply_keeps_flowing() -> TestResult
{
    let mut mesh = Mesh::new(&["us", "eu", "ap"], "apply_slug").await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    for region in ["us", "eu"] {
        mesh.client(region)
            .execute(
                "INSERT INTO dashboards (dashboard_title, slug) VALUES ($1, 'sales-board')",
                &[&format!("Board of {region}")],
            )
            .await?;
    }
    mesh.start_all()?;
    mesh.converged(CONVERGE).await?;
    let mut boards = Vec::new();
    for member in &mesh.members {
        let rows = member
            .client
            .query(
                "SELECT dashboard_title, slug FROM dashboards ORDER BY dashboard_title",
                &[],
            )
            .await?;
        let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            rows.iter().filter(|(_, s)| s == "sales-board").count(),
            1,
            "{rows:?}"
        );
        boards.push(rows);
        let decisions: i64 = mesh
            .count(
                &member.region,
                "SELECT count(*) FROM replicator.key_collision",
            )
            .await?;
        assert!(decisions <= 1, "at most one decision in {}", member.region);
    }
    assert!(boards.iter().all(|b| *b == boards[0]), "{boards:?}");
    // Apply keeps flowing: a later write arrives everywhere.
    mesh.client("eu")
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('after the collision')",
            &[],
        )
        .await?;
    mesh.converged(CONVERGE).await?;
    assert_eq!(
        mesh.count(
            "us",
            "SELECT count(*) FROM dashboards WHERE dashboard_title = 'after the collision'"
        )
        .await?,
        1
    );
    Ok(())
}

/// ap first applies only us's topic: us's chart on eu's dataset waits, parked, and is applied
/// once eu's topic brings the dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_whose_dataset_arrives_later_is_parked_then_applied() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu", "ap"], "apply_park").await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    allow_databases(&mut mesh)?;
    mesh.members[2].sources = Some(vec!["us".into()]);
    mesh.start_all()?;
    let eu = mesh.client("eu");
    eu.batch_execute(&format!(
        "INSERT INTO dbs (database_name, sqlalchemy_uri, uuid) VALUES ('examples', 'sqlite://', '{}');
         INSERT INTO tables (table_name, database_id) SELECT 'late', id FROM dbs WHERE database_name = 'examples';",
        scenario::DB_UUID
    ))
    .await?;
    let dataset: uuid::Uuid = eu
        .query_one("SELECT uuid FROM tables WHERE table_name = 'late'", &[])
        .await?
        .get(0);
    let us_dataset = wait_until("the dataset in us", CONVERGE, || async {
        let row = mesh
            .client("us")
            .query_opt("SELECT id FROM tables WHERE uuid = $1", &[&dataset])
            .await
            .map_err(harness::HarnessError::pg("find the dataset"))?;
        Ok(row.map(|r| r.get::<_, i32>(0)))
    })
    .await?;
    mesh.client("us")
        .execute(
            "INSERT INTO slices (slice_name, datasource_id, datasource_type, params)
             VALUES ('early chart', $1, 'table', $2)",
            &[
                &us_dataset,
                &format!(r#"{{"datasource": "{us_dataset}__table"}}"#),
            ],
        )
        .await?;
    let reason = wait_until("the chart to be parked in ap", CONVERGE, || async {
        let row = mesh
            .client("ap")
            .query_opt("SELECT reason FROM replicator.parked", &[])
            .await
            .map_err(harness::HarnessError::pg("read parked"))?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    })
    .await?;
    assert!(reason.contains("not here yet"), "{reason}");
    assert_eq!(
        mesh.count(
            "ap",
            "SELECT count(*) FROM slices WHERE slice_name = 'early chart'"
        )
        .await?,
        0
    );
    mesh.members[2].sources = None;
    mesh.restart("ap")?;
    mesh.converged(CONVERGE).await?;
    let row = mesh
        .client("ap")
        .query_one(
            "SELECT t.uuid FROM slices s JOIN tables t ON t.id = s.datasource_id
             WHERE s.slice_name = 'early chart'",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, uuid::Uuid>(0), dataset);
    assert_eq!(
        mesh.count("ap", "SELECT count(*) FROM replicator.parked")
            .await?,
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_quarantined_and_the_records_after_it_are_applied() -> TestResult {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut mesh = Mesh::new(&["us", "eu"], "apply_bad").await?;
    mesh.start_all()?;
    mesh.client("us")
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('before')",
            &[],
        )
        .await?;
    mesh.converged(CONVERGE).await?;
    let producer: FutureProducer = harness::producer_config(Lab::get()?).create()?;
    let topic = format!("{}us", mesh.prefix);
    let garbage = b"\xc3\x01not an envelope at all".to_vec();
    producer
        .send(
            FutureRecord::<(), Vec<u8>>::to(&topic).payload(&garbage),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    mesh.client("us")
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('after')",
            &[],
        )
        .await?;
    mesh.converged(CONVERGE).await?;
    assert_eq!(
        mesh.count(
            "eu",
            "SELECT count(*) FROM dashboards WHERE dashboard_title = 'after'"
        )
        .await?,
        1
    );
    let row = mesh
        .client("eu")
        .query_one(
            "SELECT reason, detail, records FROM replicator.quarantine",
            &[],
        )
        .await?;
    let (reason, detail, records): (String, String, Vec<Vec<u8>>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(reason, "undecodable");
    assert!(!detail.is_empty());
    assert_eq!(records, vec![garbage]);
    Ok(())
}

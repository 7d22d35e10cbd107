//! Apply end to end: three regions, each with its own Superset database and a `replicator run`
//! sidecar, on the real broker. Objects created in one region appear in the others with every
//! reference in that region's ids; concurrent edits merge the same way everywhere.

mod scenario;

use std::error::Error;
use std::time::Duration;

use harness::Mesh;
use scenario::{create_shared, ids_to_uuids, local_noise, users, Shared};

type TestResult = Result<(), Box<dyn Error>>;

const CONVERGE: Duration = Duration::from_secs(120);

/// A dashboard with three charts on two datasets, native filters, cross-filters,
/// `expanded_slices` and owners, created in us, arrives in eu and ap, where other objects were
/// created first: every reference there names, through that region's ids, the same uuid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_arrives_with_every_reference_in_local_ids() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu", "ap"], "apply_refs").await?;
    for member in &mesh.members {
        users(&member.client).await?;
    }
    local_noise(mesh.client("eu"), 3).await?;
    local_noise(mesh.client("ap"), 7).await?;
    scenario::allow_databases(&mut mesh)?;
    for i in 0..mesh.members.len() {
        mesh.start_sidecar(i)?;
    }
    let shared: Shared = create_shared(mesh.client("us")).await?;
    mesh.converged(CONVERGE).await?;

    let us = ids_to_uuids(mesh.client("us"), shared.dashboard_uuid).await?;
    for region in ["eu", "ap"] {
        let there = ids_to_uuids(mesh.client(region), shared.dashboard_uuid).await?;
        assert_eq!(there, us, "references of the dashboard in {region}");
        assert!(
            there.charts.len() == 3 && there.datasets.len() == 2,
            "{there:?}"
        );
        // The ids differ between regions, so the check above translated something.
        let id: i32 = mesh
            .client(region)
            .query_one(
                "SELECT id FROM dashboards WHERE uuid = $1",
                &[&shared.dashboard_uuid],
            )
            .await?
            .get(0);
        assert_ne!(
            id, shared.dashboard_id,
            "ids differ between regions in {region}"
        );
    }
    // Superset's derived data is there, in local terms.
    let perm: Option<String> = mesh
        .client("eu")
        .query_one(
            "SELECT s.perm FROM slices s WHERE s.uuid = $1",
            &[&shared.chart_uuids[0]],
        )
        .await?
        .get(0);
    let dataset_id: i32 = mesh
        .client("eu")
        .query_one(
            "SELECT id FROM tables WHERE uuid = $1",
            &[&shared.dataset_uuids[0]],
        )
        .await?
        .get(0);
    assert_eq!(perm, Some(format!("[examples].[sales](id:{dataset_id})")));
    // One transaction that writes a field twice (Superset's dashboard save is two UPDATEs): the
    // later write of the shared dot is the one applied everywhere.
    mesh.client("us")
        .batch_execute(
            "BEGIN;
             INSERT INTO css_templates (template_name, css) VALUES ('twice', 'first');
             UPDATE css_templates SET css = 'second' WHERE template_name = 'twice';
             COMMIT;",
        )
        .await?;
    mesh.converged(CONVERGE).await?;
    for region in ["eu", "ap"] {
        let css: String = mesh
            .client(region)
            .query_one(
                "SELECT css FROM css_templates WHERE template_name = 'twice'",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(css, "second", "in {region}");
    }
    // Nothing is parked or quarantined.
    for member in &mesh.members {
        let parked: i64 = member
            .client
            .query_one("SELECT count(*) FROM replicator.parked", &[])
            .await?
            .get(0);
        let quarantined: i64 = member
            .client
            .query_one("SELECT count(*) FROM replicator.quarantine", &[])
            .await?
            .get(0);
        assert_eq!((parked, quarantined), (0, 0), "in {}", member.region);
    }
    Ok(())
}

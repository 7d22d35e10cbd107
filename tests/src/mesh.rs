//! A mesh: several regions of the lab, each with its own fresh Superset database set up for
//! capture and a sidecar (`replicator run`) beside it, all on topics of this test alone.
//!
//! Regions keep the lab's names (`us`, `eu`, `ap`); the test's topics are told apart by a unique
//! topic prefix. Killing and restarting a sidecar (SIGKILL) is how tests crash it.

use std::sync::Arc;
use std::time::Duration;

use conflict::RegionId;
use tokio_postgres::Client;

use crate::{unique_name, wait_until, HarnessError, Lab, Sidecar, TestDb};

/// One region of a mesh.
pub struct Member {
    pub region: String,
    pub db: TestDb,
    pub client: Client,
    pub slot: String,
    pub publication: String,
    /// The least-privilege role the sidecar runs as ([`TestDb::sidecar_role`]).
    pub role: String,
    pub sidecar: Option<Sidecar>,
    /// Extra arguments for this member's sidecar.
    pub extra_args: Vec<String>,
    /// The regions this member applies, when not every other member.
    pub sources: Option<Vec<String>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("region", &self.region)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Regions replicating to each other (module docs).
#[derive(Debug)]
pub struct Mesh {
    pub prefix: String,
    pub members: Vec<Member>,
}

impl Mesh {
    /// Fresh databases in `regions`, set up for capture, without sidecars yet.
    pub async fn new(regions: &[&str], label: &str) -> Result<Mesh, HarnessError> {
        let lab = Lab::get()?;
        let prefix = format!("{}.", unique_name(label));
        let mut members = Vec::new();
        for region in regions {
            let db = lab.region(region)?.fresh_db(label).await?;
            let (slot, publication) = (db.unique_name("slot"), db.unique_name("pub"));
            crate::run_setup(&db, &slot, &publication).await?;
            let role = db.sidecar_role().await?;
            let client = db.connect().await?;
            members.push(Member {
                region: (*region).to_owned(),
                db,
                client,
                slot,
                publication,
                role,
                sidecar: None,
                extra_args: Vec::new(),
                sources: None,
            });
        }
        Ok(Mesh { prefix, members })
    }

    /// [`Mesh::new`], with every sidecar started.
    pub async fn start(regions: &[&str], label: &str) -> Result<Mesh, HarnessError> {
        let mut mesh = Mesh::new(regions, label).await?;
        for i in 0..mesh.members.len() {
            mesh.start_sidecar(i)?;
        }
        Ok(mesh)
    }

    /// The member in `region`; a test naming a region it did not start is a bug in the test.
    #[allow(clippy::panic)]
    pub fn member(&self, region: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.region == region)
            .unwrap_or_else(|| panic!("no member {region}"))
    }

    pub fn client(&self, region: &str) -> &Client {
        &self.member(region).client
    }

    fn index(&self, region: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.region == region)
            .unwrap_or(usize::MAX)
    }

    /// Starts member `i`'s sidecar: `replicator run` applying every other member.
    pub fn start_sidecar(&mut self, i: usize) -> Result<(), HarnessError> {
        let lab = Lab::get()?;
        let sources: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m.region.clone())
            .collect();
        let Some(member) = self.members.get(i) else {
            return Err(HarnessError::Other(format!("no member {i}")));
        };
        let sources = member.sources.clone().unwrap_or(sources).join(",");
        let mut args: Vec<&str> = vec![
            "run",
            "--region",
            &member.region,
            "--sources",
            &sources,
            "--slot",
            &member.slot,
            "--publication",
            &member.publication,
            "--kafka-brokers",
            lab.broker(),
            "--topic-prefix",
            &self.prefix,
            "--heartbeat-interval",
            "200ms",
        ];
        args.extend(member.extra_args.iter().map(String::as_str));
        // The sidecar runs as the least-privilege role of docs/security.md, as in production.
        let url = member.db.conninfo_as(&member.role);
        let sidecar = Sidecar::start(&args, &[("REPLICATOR_DATABASE_URL", &url)])?;
        if let Some(member) = self.members.get_mut(i) {
            member.sidecar = Some(sidecar);
        }
        Ok(())
    }

    /// SIGKILLs a region's sidecar.
    pub fn kill(&mut self, region: &str) {
        let i = self.index(region);
        if let Some(mut sidecar) = self.members.get_mut(i).and_then(|m| m.sidecar.take()) {
            sidecar.kill();
        }
    }

    /// Starts a region's sidecar again.
    pub fn restart(&mut self, region: &str) -> Result<(), HarnessError> {
        let i = self.index(region);
        self.kill(region);
        self.start_sidecar(i)
    }

    /// Stops every sidecar (SIGKILL): a partition of everyone from everyone.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            if let Some(mut sidecar) = member.sidecar.take() {
                sidecar.kill();
            }
        }
    }

    /// Starts every sidecar that is not running.
    pub fn start_all(&mut self) -> Result<(), HarnessError> {
        for i in 0..self.members.len() {
            if self.members.get(i).is_some_and(|m| m.sidecar.is_none()) {
                self.start_sidecar(i)?;
            }
        }
        Ok(())
    }

    /// Counts rows of `sql` (a `SELECT count(*) ...`) in a region.
    pub async fn count(&self, region: &str, sql: &str) -> Result<i64, HarnessError> {
        let row = self
            .client(region)
            .query_one(sql, &[])
            .await
            .map_err(|e| HarnessError::Other(format!("{sql}: {e}")))?;
        row.try_get(0)
            .map_err(|e| HarnessError::Other(format!("{sql}: {e}")))
    }

    /// Every sidecar's log, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| {
                m.sidecar
                    .as_ref()
                    .map(|s| format!("--- {} ---\n{}", m.region, s.log()))
            })
            .collect()
    }

    /// A region's canonical state (`replicator::verify`), on a connection of its own.
    pub async fn canonical(
        &self,
        region: &str,
    ) -> Result<replicator::verify::CanonicalState, HarnessError> {
        let member = self.member(region);
        let client = Arc::new(member.db.connect().await?);
        let id = RegionId::new(region).map_err(|e| HarnessError::Other(e.to_string()))?;
        replicator::verify::canonical_state(client, id)
            .await
            .map_err(|e| HarnessError::Other(format!("canonical state of {region}: {e}")))
    }

    /// Waits until every region has the same canonical state, and returns it.
    pub async fn converged(
        &self,
        timeout: Duration,
    ) -> Result<replicator::verify::CanonicalState, HarnessError> {
        let regions: Vec<String> = self.members.iter().map(|m| m.region.clone()).collect();
        let result = wait_until("all regions to converge", timeout, || {
            let regions = regions.clone();
            async move {
                let mut states = Vec::new();
                for region in &regions {
                    states.push(self.canonical(region).await?);
                }
                let first = states.first().cloned().unwrap_or_default();
                let same = states.iter().all(|s| *s == first);
                Ok(same.then_some(first))
            }
        })
        .await;
        if result.is_err() {
            let mut report = String::new();
            if let Some(first) = self.members.first() {
                let a = self.canonical(&first.region).await?;
                for m in self.members.iter().skip(1) {
                    let b = self.canonical(&m.region).await?;
                    for key in replicator::verify::diff(&a, &b).into_iter().take(10) {
                        report.push_str(&format!(
                            "{} vs {}: {:?}\n  {}: {}\n  {}: {}\n",
                            first.region,
                            m.region,
                            key,
                            first.region,
                            a.get(&key).map(|v| v.to_string()).unwrap_or_default(),
                            m.region,
                            b.get(&key).map(|v| v.to_string()).unwrap_or_default(),
                        ));
                    }
                }
            }
            eprintln!("divergence:\n{report}\n{}", self.logs());
        }
        result
    }
}

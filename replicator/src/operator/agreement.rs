//! `replicator verify`: whether this region and its peers hold the same replicated state.
//!
//! **Contract.** Each region's canonical state is read with [`verify::canonical_state`] (every
//! entity, its values, dots, hlcs and clock, in one consistent snapshot of that database), under
//! the region id stored in its `replicator.local_region` — a `--peer eu=...` whose database says
//! otherwise is refused. The states are compared entity by entity; a region is in agreement only
//! when its versions agree as well as its values.
//!
//! **At comparable frontiers.** Replication is asynchronous, so two states read a moment apart
//! may differ only by what is still in flight. The comparison is therefore repeated (every
//! `poll`) until it is settled: equal states end it at once; different states end it once no
//! region's state changed for `stable_for` (nothing is moving, so the difference is real), or
//! when `settle` has passed since the start (reported as "still changing"). The report gives, per
//! table and region, the number of entities and an md5 of their canonical JSON
//! ([`verify::table_digests`]), and every divergent `(table, uuid)` with what differs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflict::RegionId;
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::database::DatabaseUrl;
use crate::error::{Error, Result};
use crate::verify::{self, CanonicalState, TableDigest};

use super::layout::Table;
use super::Report;

/// How long verify waits for the regions to settle.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    pub settle: Duration,
    pub stable_for: Duration,
    pub poll: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            settle: Duration::from_secs(30),
            stable_for: Duration::from_secs(5),
            poll: Duration::from_millis(500),
        }
    }
}

/// `region=url` from `--peer`; an error never repeats the url (it may hold a password).
pub fn parse_peer(text: &str) -> Result<(String, DatabaseUrl)> {
    let Some((region, url)) = text.split_once('=') else {
        return Err(Error::Config {
            problem: "--peer expects `<region>=<database url>`".into(),
        });
    };
    let region = RegionId::new(region.trim()).map_err(|_| Error::Config {
        problem: format!("--peer: {:?} is not a region id", region.trim()),
    })?;
    Ok((region.to_string(), DatabaseUrl::parse(url)?))
}

/// One region being compared.
#[derive(Debug)]
struct Region {
    id: String,
    database: String,
    client: Arc<Client>,
}

async fn open(database: &DatabaseUrl, expected: Option<&str>) -> Result<Region> {
    let (client, id) = super::connect(database).await?;
    if let Some(expected) = expected {
        if expected != id {
            return Err(Error::Config {
                problem: format!(
                    "--peer {expected}=...: that database ({}) belongs to region {id}",
                    database.redacted()
                ),
            });
        }
    }
    Ok(Region {
        id,
        database: database.redacted(),
        client: Arc::new(client),
    })
}

async fn read_all(regions: &[Region]) -> Result<Vec<CanonicalState>> {
    let reads = regions.iter().map(|r| async {
        let id = RegionId::new(&r.id).map_err(|_| Error::NotSetUp)?;
        verify::canonical_state(r.client.clone(), id).await
    });
    futures_util::future::try_join_all(reads).await
}

/// Compares this region (`local`) with its `peers` (module docs).
pub async fn verify(
    local: &DatabaseUrl,
    peers: &[(String, DatabaseUrl)],
    settle: Settle,
) -> Result<Agreement> {
    let mut regions = vec![open(local, None).await?];
    for (region, url) in peers {
        if regions.iter().any(|r| r.id == *region) {
            return Err(Error::Config {
                problem: format!("region {region} is named twice"),
            });
        }
        regions.push(open(url, Some(region)).await?);
    }
    let started = Instant::now();
    let mut previous: Option<Vec<CanonicalState>> = None;
    let mut unchanged_since = Instant::now();
    let mut reads = 0u32;
    loop {
        let states = read_all(&regions).await?;
        reads += 1;
        let divergent = divergent(&states);
        let stable = previous.as_ref() == Some(&states);
        if !stable {
            unchanged_since = Instant::now();
        }
        let settled = divergent.is_empty() || unchanged_since.elapsed() >= settle.stable_for;
        if settled || started.elapsed() >= settle.settle {
            return Ok(Agreement::new(
                &regions,
                &states,
                divergent,
                reads,
                started.elapsed(),
                settled,
            ));
        }
        previous = Some(states);
        tokio::time::sleep(settle.poll).await;
    }
}

/// Every `(table, uuid)` on which some region disagrees with another.
fn divergent(states: &[CanonicalState]) -> Vec<(String, Uuid)> {
    let keys: BTreeSet<&(String, Uuid)> = states.iter().flat_map(BTreeMap::keys).collect();
    keys.into_iter()
        .filter(|key| {
            let mut values = states.iter().map(|s| s.get(*key));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .cloned()
        .collect()
}

/// One divergent entity.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub table: String,
    pub uuid: Uuid,
    /// The regions that hold it.
    pub present_in: Vec<String>,
    /// What differs from this region's version (`clock`, field names, `missing`), per peer.
    pub differences: BTreeMap<String, Vec<String>>,
}

/// What verify found.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// This region first, then the peers.
    pub regions: Vec<(String, String)>,
    /// table -> region -> digest.
    pub tables: BTreeMap<String, BTreeMap<String, TableDigest>>,
    pub divergent: Vec<Divergence>,
    pub reads: u32,
    pub elapsed: Duration,
    /// Whether the states stopped changing (or agreed) before `settle` ran out.
    pub settled: bool,
}

impl Agreement {
    fn new(
        regions: &[Region],
        states: &[CanonicalState],
        divergent: Vec<(String, Uuid)>,
        reads: u32,
        elapsed: Duration,
        settled: bool,
    ) -> Self {
        let mut tables: BTreeMap<String, BTreeMap<String, TableDigest>> = BTreeMap::new();
        for (region, state) in regions.iter().zip(states) {
            for (table, digest) in verify::table_digests(state) {
                tables
                    .entry(table)
                    .or_default()
                    .insert(region.id.clone(), digest);
            }
        }
        let local = states.first();
        let divergent = divergent
            .into_iter()
            .map(|key| {
                let mine = local.and_then(|s| s.get(&key));
                let present_in = regions
                    .iter()
                    .zip(states)
                    .filter(|(_, s)| s.contains_key(&key))
                    .map(|(r, _)| r.id.clone())
                    .collect();
                let differences = regions
                    .iter()
                    .zip(states)
                    .skip(1)
                    .map(|(r, s)| (r.id.clone(), verify::differing_fields(mine, s.get(&key))))
                    .filter(|(_, d)| !d.is_empty())
                    .collect();
                Divergence {
                    table: key.0,
                    uuid: key.1,
                    present_in,
                    differences,
                }
            })
            .collect();
        Agreement {
            regions: regions
                .iter()
                .map(|r| (r.id.clone(), r.database.clone()))
                .collect(),
            tables,
            divergent,
            reads,
            elapsed,
            settled,
        }
    }

    /// Whether every region holds the same state.
    pub fn equal(&self) -> bool {
        self.divergent.is_empty()
    }
}

impl Report for Agreement {
    fn to_json(&self) -> Value {
        let tables: serde_json::Map<String, Value> = self
            .tables
            .iter()
            .map(|(table, regions)| {
                let per: serde_json::Map<String, Value> = regions
                    .iter()
                    .map(|(r, d)| (r.clone(), json!({"entities": d.entities, "md5": d.md5})))
                    .collect();
                (table.clone(), Value::Object(per))
            })
            .collect();
        json!({
            "equal": self.equal(),
            "settled": self.settled,
            "reads": self.reads,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "regions": self.regions.iter().map(|(id, db)| json!({"region": id, "database": db})).collect::<Vec<_>>(),
            "tables": tables,
            "divergent": self.divergent.iter().map(|d| json!({
                "table": d.table,
                "uuid": d.uuid.to_string(),
                "present_in": d.present_in,
                "differences": d.differences,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (id, db)) in self.regions.iter().enumerate() {
            writeln!(f, "{} {id}: {db}", if i == 0 { "region" } else { "peer  " })?;
        }
        writeln!(
            f,
            "compared {} time(s) over {:.1}s{}",
            self.reads,
            self.elapsed.as_secs_f64(),
            if self.settled {
                ""
            } else {
                "; states were STILL CHANGING when --settle ran out"
            }
        )?;
        writeln!(f)?;
        let ids: Vec<&str> = self.regions.iter().map(|(id, _)| id.as_str()).collect();
        let mut header = vec!["table"];
        header.extend(ids.iter().copied());
        header.push("");
        let mut table = Table::new(&header);
        for (name, per) in &self.tables {
            let mut row = vec![name.clone()];
            let mut digests = BTreeSet::new();
            for id in &ids {
                match per.get(*id) {
                    Some(d) => {
                        digests.insert(&d.md5);
                        row.push(format!(
                            "{} {}",
                            d.entities,
                            d.md5.get(..12).unwrap_or(&d.md5)
                        ));
                    }
                    None => row.push("-".into()),
                }
            }
            row.push(if digests.len() > 1 {
                "DIFFERS".into()
            } else {
                String::new()
            });
            table.row(row);
        }
        write!(f, "{table}")?;
        writeln!(f, "(entities, md5 of their canonical JSON)")?;
        writeln!(f)?;
        if self.divergent.is_empty() {
            return writeln!(f, "all {} regions agree", self.regions.len());
        }
        writeln!(
            f,
            "{} divergent entit{}:",
            self.divergent.len(),
            if self.divergent.len() == 1 {
                "y"
            } else {
                "ies"
            }
        )?;
        for d in &self.divergent {
            let differences: Vec<String> = d
                .differences
                .iter()
                .map(|(peer, what)| format!("{peer}: {}", what.join(", ")))
                .collect();
            writeln!(
                f,
                "  {} {} (in {}) {}",
                d.table,
                d.uuid,
                d.present_in.join(", "),
                differences.join("; ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_a_region_and_a_url_and_errors_never_repeat_the_url() {
        let (region, url) =
            parse_peer("eu=host=db.eu user=r password=s3cr3t-pw dbname=superset").expect("valid");
        assert_eq!(region, "eu");
        assert_eq!(url.redacted(), "r@db.eu/superset");
        for bad in [
            "eu",
            "EU!=host=x password=s3cr3t-pw",
            "eu=host=x password=s3cr3t-pw sslmode=bogus",
        ] {
            let error = parse_peer(bad).expect_err(bad);
            assert_eq!(error.action(), crate::Action::Operator);
            let shown = format!("{error} {:?}", std::error::Error::source(&error));
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        }
    }

    #[test]
    fn an_entity_diverges_when_any_region_differs_or_lacks_it() {
        let key = |n: u128| ("dashboards".to_owned(), Uuid::from_u128(n));
        let a: CanonicalState = [(key(1), json!(1)), (key(2), json!(2))].into();
        let b: CanonicalState = [(key(1), json!(1)), (key(2), json!(3))].into();
        let c: CanonicalState = [(key(1), json!(1))].into();
        assert!(divergent(&[a.clone(), a.clone()]).is_empty());
        assert_eq!(divergent(&[a.clone(), b]), [key(2)]);
        assert_eq!(divergent(&[c, a]), [key(2)]);
    }
}

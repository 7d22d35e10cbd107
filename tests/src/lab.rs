//! Where the lab's servers listen, read from the env file `dev/lab` writes (`lab.env`, shell
//! `KEY=value` lines). The file is found through `REPLICATOR_LAB_ENV`, else the test lab's default
//! place `.work/lab-test/lab.env` in the workspace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::HarnessError;

/// The running lab: its regions and its broker.
#[derive(Debug, Clone)]
pub struct Lab {
    regions: Vec<Region>,
    broker: String,
    scratch: PathBuf,
}

/// One region's PostgreSQL cluster (superuser access over TCP with a password).
#[derive(Debug, Clone)]
pub struct Region {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) template: String,
}

impl Lab {
    /// The lab this test process runs against (read once per process).
    pub fn get() -> Result<&'static Lab, HarnessError> {
        static LAB: OnceLock<Result<Lab, String>> = OnceLock::new();
        LAB.get_or_init(Lab::load)
            .as_ref()
            .map_err(|reason| HarnessError::LabNotUp {
                reason: reason.clone(),
            })
    }

    fn load() -> Result<Lab, String> {
        let path = std::env::var_os("REPLICATOR_LAB_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.work/lab-test/lab.env")
            });
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let vars = parse_env(&text);
        let get = |key: &str| {
            vars.get(key)
                .cloned()
                .ok_or_else(|| format!("{} has no {key}", path.display()))
        };
        let mut regions = Vec::new();
        for name in get("LAB_REGIONS")?.split(',').filter(|r| !r.is_empty()) {
            let port_key = format!("LAB_PG_PORT_{}", name.to_ascii_uppercase());
            let port = get(&port_key)?
                .parse()
                .map_err(|e| format!("{port_key}: {e}"))?;
            regions.push(Region {
                name: name.to_owned(),
                host: get("LAB_PG_HOST")?,
                port,
                user: get("LAB_PG_USER")?,
                password: get("LAB_PG_PASSWORD")?,
                template: get("LAB_TEMPLATE_DB")?,
            });
        }
        // Beside the env file, inside the lab's own directory: `dev/lab up` empties it, so logs of a
        // failed run stay there for a post-mortem and never pile up in the machine's temp dir.
        let scratch = path
            .parent()
            .map(|dir| dir.join("scratch"))
            .unwrap_or_else(std::env::temp_dir);
        Ok(Lab {
            regions,
            broker: get("LAB_BROKER")?,
            scratch,
        })
    }

    /// Every region, in the order the lab was brought up.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn region(&self, name: &str) -> Result<&Region, HarnessError> {
        self.regions
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| HarnessError::UnknownRegion(name.to_owned()))
    }

    /// `host:port` of the Kafka-protocol broker.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// A fresh path named after `file_name` in the lab's scratch directory (logs of the processes a
    /// test starts, files it hands them), which `dev/lab up` empties.
    pub fn scratch_file(&self, file_name: &str) -> Result<PathBuf, HarnessError> {
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| HarnessError::Other(format!("create {}: {e}", self.scratch.display())))?;
        Ok(self.scratch.join(file_name))
    }
}

impl Region {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style connection string for `dbname` in this region.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={} application_name=replicator-it",
            self.host, self.port, self.user, self.password, dbname
        )
    }

    /// A connection string for `dbname` as another role of this region (it has the lab's password).
    pub fn conninfo_as(&self, user: &str, dbname: &str) -> String {
        format!(
            "host={} port={} user={user} password={} dbname={dbname} application_name=replicator-it",
            self.host, self.port, self.password
        )
    }

    /// The password of the lab's superuser, for tests that check it never leaks.
    pub fn password(&self) -> &str {
        &self.password
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_env;

    #[test]
    fn parses_the_env_file_dev_lab_writes() {
        let vars = parse_env("# comment\nLAB_REGIONS=us,eu\nLAB_BROKER=127.0.0.1:1\n\n");
        assert_eq!(vars.get("LAB_REGIONS").map(String::as_str), Some("us,eu"));
        assert_eq!(
            vars.get("LAB_BROKER").map(String::as_str),
            Some("127.0.0.1:1")
        );
        assert_eq!(vars.len(), 2);
    }
}

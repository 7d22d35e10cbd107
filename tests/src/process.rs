//! The `replicator` binary as a subprocess: how operators run it, and the only way to SIGKILL it.
//!
//! The binary is the one cargo built beside the test executable (`cargo nextest run --workspace`
//! and `cargo test --workspace` build every binary of the workspace first). Its output goes to a
//! log file per process, printed when a test fails to find what it waits for.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::HarnessError;

/// Where cargo put the `replicator` binary for this test run.
pub fn replicator_binary() -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(|e| HarnessError::Other(e.to_string()))?;
    // target/<profile>/deps/<test exe> or target/<profile>/<bench binary> → target/<profile>/replicator
    let mut dir = exe
        .parent()
        .ok_or_else(|| HarnessError::Other("no target dir".into()))?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir
            .parent()
            .ok_or_else(|| HarnessError::Other("no target dir".into()))?;
    }
    let binary = dir.join("replicator");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(HarnessError::Other(format!(
            "{} is missing: build it with `cargo build --workspace --bins` (dev/lab test does)",
            binary.display()
        )))
    }
}

/// A running `replicator` process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Sidecar {
    child: Child,
    log: PathBuf,
}

impl Sidecar {
    /// Starts `replicator ARGS` with `envs`, logging to a temporary file.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Result<Sidecar, HarnessError> {
        let log =
            crate::Lab::get()?.scratch_file(&format!("{}.log", crate::unique_name("sidecar")))?;
        let file = std::fs::File::create(&log).map_err(|e| HarnessError::Other(e.to_string()))?;
        let stderr = file
            .try_clone()
            .map_err(|e| HarnessError::Other(e.to_string()))?;
        let child = Command::new(replicator_binary()?)
            .args(args)
            .envs(envs.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| HarnessError::Other(format!("spawn replicator: {e}")))?;
        Ok(Sidecar { child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL (no chance to flush or confirm anything) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status (bounded by `timeout`, then SIGKILL).
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// The exit code if it has exited.
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- replicator log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// Runs `replicator setup` against `db` (its region, `slot`, `publication`), as an operator would,
/// and fails with the command's log unless it exits 0.
pub async fn run_setup(
    db: &crate::TestDb,
    slot: &str,
    publication: &str,
) -> Result<(), HarnessError> {
    let region = db.region().name().to_owned();
    let mut setup = Sidecar::start(
        &[
            "setup",
            "--region",
            &region,
            "--slot",
            slot,
            "--publication",
            publication,
        ],
        &[("REPLICATOR_DATABASE_URL", &db.conninfo())],
    )?;
    let code = crate::wait_until(
        "setup to finish",
        std::time::Duration::from_secs(120),
        || {
            let code = setup.exited();
            async move { Ok(code) }
        },
    )
    .await?;
    if code == 0 {
        Ok(())
    } else {
        Err(HarnessError::Other(format!(
            "setup exited {code}:\n{}",
            setup.log()
        )))
    }
}

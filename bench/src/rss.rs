//! Memory and CPU time of a process, from /proc: the current and the peak resident set (VmRSS,
//! VmHWM) and the CPU seconds it has used (user + system). Read from /proc because that is what
//! the kernel accounts, with no agent in the measured process.

/// `(VmRSS, VmHWM)` of `pid` in bytes, if the process is alive.
pub(crate) fn of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) `pid` has used so far, if it is alive. Linux reports them in
/// clock ticks of `USER_HZ`, which is 100 on every architecture this runs on.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (state) comes first, so utime (14) and stime (15) are the 12th and 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Samples the VmRSS of some processes every `every` until stopped, keeping each one's maximum.
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl Sampler {
    pub(crate) fn start(pids: Vec<u32>, every: std::time::Duration) -> Sampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = vec![0u64; pids.len()];
            while !flag.load(Ordering::Relaxed) {
                for (pid, max) in pids.iter().zip(max.iter_mut()) {
                    if let Some((rss, _)) = of(*pid) {
                        *max = (*max).max(rss);
                    }
                }
                tokio::time::sleep(every).await;
            }
            max
        });
        Sampler { stop, task }
    }

    /// The largest VmRSS sampled of each process, in the order given to [`Sampler::start`].
    pub(crate) async fn stop(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

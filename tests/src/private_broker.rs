//! A Kafka-protocol broker owned by one test, for tests that make the broker fail (pause it, kill
//! it, restart it) without disturbing the lab's shared broker. It is the lab's broker program
//! (Tansu, in-memory storage) on a free loopback port of its own; killing it loses every topic,
//! as a restart of the lab's broker would.
//!
//! [`read_until`] reads a topic of any broker (this one or the lab's) up to a record the test
//! knows must come after the ones it checks, so a test can tell "everything is there" from
//! "nothing more came for a while".

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use crate::{unique_name, wait_until, HarnessError};

/// Tansu's version, as `dev/lab` installs it.
const TANSU_VERSION: &str = "0.6.0";
/// How long a broker process gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One record of a topic: `(offset, key, payload)`.
pub type TopicRecord = (i64, Option<Vec<u8>>, Vec<u8>);

/// Where `dev/lab install` put the broker program:
/// `${REPLICATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/replicator}/tansu-0.6.0/bin/tansu`.
pub fn tansu_binary() -> Result<PathBuf, HarnessError> {
    let cache = match std::env::var_os("REPLICATOR_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or_else(|| HarnessError::Other("neither XDG_CACHE_HOME nor HOME is set".into()))?
            .join("replicator"),
    };
    let binary = cache
        .join(format!("tansu-{TANSU_VERSION}"))
        .join("bin")
        .join("tansu");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(HarnessError::LabNotUp {
            reason: format!(
                "{} is missing (`dev/lab install` puts it there)",
                binary.display()
            ),
        })
    }
}

/// A broker process of this test's own; killed (SIGKILL) when dropped, even while paused.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    log: PathBuf,
    paused: bool,
}

impl PrivateBroker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Result<PrivateBroker, HarnessError> {
        let binary = tansu_binary()?;
        let log = crate::Lab::get()?.scratch_file(&format!("{}.log", unique_name("tansu")))?;
        let mut last_error = None;
        // A port found free can be taken by someone else before the broker binds it: try again.
        for _ in 0..5 {
            let mut broker = PrivateBroker {
                child: None,
                port: free_port()?,
                binary: binary.clone(),
                log: log.clone(),
                paused: false,
            };
            match broker.spawn_and_wait().await {
                Ok(()) => return Ok(broker),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::Other("no broker started".into())))
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the process stays, its port still accepts TCP connections (the kernel does), but
    /// nothing is answered: to a client, the broker is unreachable.
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        self.signal("STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT: the broker answers again, starting with whatever queued while it was paused.
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        self.signal("CONT")?;
        self.paused = false;
        Ok(())
    }

    /// SIGKILL and reap: the broker is gone, with every topic (in-memory storage).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Kills the broker if it runs, then starts a new one on the same port (empty: no topics)
    /// and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The old listener's port can linger for a moment after a kill: try until it binds.
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Everything the broker logged, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> Result<(), HarnessError> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::Other("the private broker is not running".into()))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|e| HarnessError::Other(format!("run kill -{signal}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Other(format!(
                "kill -{signal} {pid} failed: {status}"
            )))
        }
    }

    /// Spawns the broker on `self.port` and waits until the port accepts connections; fails
    /// (leaving nothing running) if the process exits first, e.g. because the port is taken.
    async fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::Other(format!("open {}: {e}", self.log.display())))?;
        let stderr = log
            .try_clone()
            .map_err(|e| HarnessError::Other(e.to_string()))?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .args(["broker", "--cluster-id"])
            .arg(unique_name("it_tansu"))
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| HarnessError::Other(format!("spawn {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        let port = self.port;
        let child = &mut self.child;
        let listening = wait_until(
            &format!("the private broker to listen on {port}"),
            START_TIMEOUT,
            || {
                let exited = child
                    .as_mut()
                    .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                    .unwrap_or(true);
                async move {
                    if exited {
                        return Err(HarnessError::Other(format!(
                            "the private broker exited before listening on {port}"
                        )));
                    }
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    Ok(tokio::net::TcpStream::connect(addr).await.ok().map(drop))
                }
            },
        )
        .await;
        if listening.is_err() {
            self.kill();
        }
        listening
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- private broker log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| HarnessError::Other(format!("find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::Other(format!("find a free port: {e}")))
}

/// The end offset of partition 0 of `topic` on `broker` as ListOffsets answers it: one round
/// trip, so it tells that the broker answers. **Not the end against Tansu 0.6**, which answers
/// with the base offset of the most recently written batch plus one (records of that batch after
/// its first are past it).
pub async fn end_offset(broker: &str, topic: &str, timeout: Duration) -> Result<i64, HarnessError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", unique_name("it_reader"))
        .create()
        .map_err(HarnessError::kafka("create a topic reader"))?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, 0, timeout)
            .map(|(_, high)| high)
            .map_err(HarnessError::kafka(format!(
                "read the watermarks of {topic}"
            )))
    })
    .await
    .map_err(|e| HarnessError::Other(e.to_string()))?
}

/// Every record of partition 0 of `topic` on `broker`, in offset order, from its first offset up
/// to and including the first record for which `last` is true. Fails if the topic does not
/// exist or that record does not arrive within `timeout`.
///
/// Why a record the caller knows must come, not "the end": Tansu 0.6 answers ListOffsets short
/// ([`end_offset`]), and the high watermark of its fetch responses is moved before the batch is
/// stored, so neither tells when everything acknowledged has been read. A record written after
/// the ones a test checks (a heartbeat committed after them, say) does: the topic is one
/// partition, read in order.
pub async fn read_until(
    broker: &str,
    topic: &str,
    timeout: Duration,
    last: impl Fn(&TopicRecord) -> bool + Send + 'static,
) -> Result<Vec<TopicRecord>, HarnessError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", unique_name("it_reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(HarnessError::kafka("create a topic reader"))?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        // Fails if the topic does not exist (assigning a missing topic would only wait).
        let metadata = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(HarnessError::kafka(format!("read the metadata of {topic}")))?;
        if let Some(error) = metadata.topics().first().and_then(|t| t.error()) {
            return Err(HarnessError::Other(format!("topic {topic}: {error:?}")));
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(HarnessError::kafka("assign"))?;
        consumer
            .assign(&assignment)
            .map_err(HarnessError::kafka("assign"))?;
        let mut records: Vec<TopicRecord> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "the awaited record of {topic} (read {} records, up to offset {:?})",
                        records.len(),
                        records.last().map(|r| r.0)
                    ),
                    after: timeout,
                });
            }
            match consumer.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(m)) => {
                    let record = (
                        m.offset(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().unwrap_or_default().to_vec(),
                    );
                    let done = last(&record);
                    records.push(record);
                    if done {
                        return Ok(records);
                    }
                }
                Some(Err(e)) => return Err(HarnessError::Other(format!("consume {topic}: {e}"))),
                None => {}
            }
        }
    })
    .await
    .map_err(|e| HarnessError::Other(e.to_string()))?
}

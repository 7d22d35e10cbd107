//! The `/metrics` endpoint: Prometheus scrapes the registry here.
//!
//! **Contract.** [`MetricsServer::bind`] binds the address before anything else starts, so a busy
//! or forbidden port is reported at startup; [`MetricsServer::serve`] answers until the
//! sidecar's cancellation token fires, then stops accepting and returns (connections still open
//! are dropped). HTTP/1.1, one request per connection (`Connection: close`): `GET /metrics` (or
//! `HEAD`) gives the text exposition, `GET /` a pointer to it, anything else 404 or 405. A client
//! gets 10 seconds to send its request head (at most 8 KiB), and at most 64 connections are
//! served at once, so a stuck or hostile client cannot hold the sidecar.
//!
//! **Why no framework.** One read-only endpoint on a port that should only be reachable by
//! Prometheus: a request line is all there is to parse. The default address is loopback
//! (`127.0.0.1:9464`); exposing it is a deliberate setting (`metrics.listen = "0.0.0.0:9464"` in
//! a container).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::registry::global;
use crate::error::{Error, Result};

/// Prometheus' conventional port for this kind of exporter.
pub const DEFAULT_PORT: u16 = 9464;
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;

/// A bound `/metrics` listener.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    address: SocketAddr,
}

impl MetricsServer {
    /// Binds `address` (port 0 picks a free one: see [`local_addr`](Self::local_addr)).
    pub async fn bind(address: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::MetricsListen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::MetricsListen { address, source })?;
        Ok(MetricsServer { listener, address })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Answers scrapes until `cancel` fires (module docs).
    pub async fn serve(self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(address = %self.address, "serving metrics on /metrics");
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pass, and accept the next one.
                    tracing::debug!(%error, "metrics: accept failed");
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            connections.spawn(async move {
                let _ = tokio::time::timeout(HEAD_TIMEOUT * 2, answer(stream)).await;
                drop(permit);
            });
        }
        connections.shutdown().await;
        Ok(())
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    let complete = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buffer.get(..n).unwrap_or_default());
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(complete, Ok(Ok(()))) {
        return Ok(());
    }
    let response = respond(&head);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The whole response to a request head.
fn respond(head: &[u8]) -> Vec<u8> {
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            global().render(),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "replicator: metrics are at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" },
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_metrics_and_refuses_the_rest() {
        let text = |head: &str| String::from_utf8_lossy(&respond(head.as_bytes())).into_owned();
        let ok = text("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("# TYPE replicator_lag_seconds gauge"), "{ok}");
        let head = text("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        assert!(text("GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(text("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(text("garbage").starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn serves_over_tcp_until_cancelled() -> Result<()> {
        let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = server.local_addr();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(cancel.clone()));
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|source| Error::MetricsListen { address, source })?;
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await;
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        assert!(
            response.contains("replicator_events_applied_total"),
            "{response}"
        );
        cancel.cancel();
        assert!(matches!(task.await, Ok(Ok(()))));
        Ok(())
    }

    #[tokio::test]
    async fn a_busy_port_is_an_operator_error() -> Result<()> {
        let first = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let Err(error) = MetricsServer::bind(first.local_addr()).await else {
            panic!("the port is taken");
        };
        assert_eq!(error.action(), crate::Action::Operator);
        assert!(error.hint().contains("metrics.listen"), "{}", error.hint());
        Ok(())
    }
}

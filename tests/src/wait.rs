//! Waiting on conditions. Servers are asynchronous (a slot fills after commit, a consumer group
//! takes seconds to join), so tests poll a condition until it holds or a deadline passes. The poll
//! interval grows from 10 ms to 250 ms: quick when things are quick, quiet when they are slow.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// Polls `probe` until it yields `Some`, or fails with [`HarnessError::Timeout`] naming `what`.
/// A probe error is not retried: it ends the wait and fails the test.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, HarnessError>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut calls = 0;
        let got = wait_until("third call", Duration::from_secs(5), || {
            calls += 1;
            let now = calls;
            async move { Ok((now >= 3).then_some(now)) }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
    }

    #[tokio::test]
    async fn times_out_naming_the_condition() {
        let got: Result<(), _> =
            wait_until("never", Duration::from_millis(50), || async { Ok(None) }).await;
        let message = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("waiting for never"), "{message}");
    }
}

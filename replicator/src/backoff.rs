//! Backoff: how the long-running halves of the sidecar (reader, applier) survive what passes.
//!
//! **Contract.** [`run_sessions`] runs `session` until it returns `Ok` (a clean stop) or an error
//! that is not [`Action::Retry`] (an operator or a bug must act), which it returns. A retryable
//! error starts a fresh session after an exponential pause (250 ms doubling up to `max`, back to
//! 250 ms after a session that lasted a minute), logged with its hint; cancellation during the
//! pause is a clean stop. One place, so the reader and the applier cannot drift apart.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Action, Result};

const FIRST: Duration = Duration::from_millis(250);

/// Runs `session` with backoff (module docs); `what` names it in the log (`reader`, `applier`).
pub async fn run_sessions<F, Fut>(
    what: &str,
    max: Duration,
    cancel: &CancellationToken,
    mut session: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut backoff = FIRST;
    loop {
        let started = Instant::now();
        match session().await {
            Ok(()) => return Ok(()),
            Err(error) if error.action() == Action::Retry => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = FIRST;
                }
                tracing::warn!(error = %error, hint = %error.hint(), retry_in = ?backoff, "{what} session failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max);
            }
            Err(error) => return Err(error),
        }
    }
}

//! Waiting for a condition by polling it, never by sleeping a fixed time.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

/// How long to wait for anything: `GATEWAY_TEST_PATIENCE_SECS` (default 30 s).
pub fn patience() -> Duration {
    let secs = std::env::var("GATEWAY_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(30.0);
    Duration::from_secs_f64(secs)
}

/// Polls `check` until it returns `Ok`, and returns that value; panics with `what` and the
/// last error once [`patience`] has run out.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match try_eventually(patience(), check).await {
        Ok(value) => value,
        Err(error) => panic!(
            "timed out after {:?} waiting for {what}; last error: {error:#}",
            patience()
        ),
    }
}

/// Polls `check` until it returns `Ok` or `within` has passed; returns the last error then.
pub async fn try_eventually<T, F, Fut>(within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        // A check that hangs must not outlive the deadline either.
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left.max(Duration::from_millis(50)), check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error,
            Err(_) => anyhow::anyhow!("the check itself did not finish in time"),
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Asserts that `check` keeps returning `Ok` for all of `during` (polled), e.g. that a data
/// plane keeps serving the old config. Use only after an event has been observed to have
/// happened; this is not a way to wait for something.
pub async fn holds_for<F, Fut>(what: &str, during: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let deadline = Instant::now() + during;
    loop {
        if let Err(error) = check().await {
            panic!("{what} stopped holding: {error:#}");
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The one way tests wait: poll something observable (an API answer, a
//! metric, a process's state) until it says yes, for a bounded time.

use std::fmt;
use std::time::{Duration, Instant};

/// Shortest and longest pause between two probes.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// Why [`within`] gave up.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// The last probe answered "not yet" with this.
    NotYet(E),
    /// The last probe itself did not answer before the limit.
    NoAnswer,
}

/// Calls `probe` until it returns `Ok`, for at most `limit`: its value, or
/// what the last probe said. A probe that hangs is cut off at the limit.
pub async fn within<T, E>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, GaveUp<E>> {
    let start = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let left = limit.saturating_sub(start.elapsed());
        let last = match tokio::time::timeout(left.max(FIRST_PAUSE), probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(last)) => last,
            Err(_) => return Err(GaveUp::NoAnswer),
        };
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(GaveUp::NotYet(last));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Waits until `probe` returns `Ok` and returns its value; after `limit`,
/// panics naming `what` was awaited and what the last probe saw (its `Err`).
/// A bound on a hang, not a timing assertion: pick a limit far above what
/// the wait normally takes.
pub async fn eventually<T, E: fmt::Debug>(
    what: impl fmt::Display,
    limit: Duration,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match within(limit, probe).await {
        Ok(value) => value,
        Err(GaveUp::NotYet(last)) => {
            panic!("gave up after {limit:?} waiting for {what}; last seen: {last:#?}")
        }
        Err(GaveUp::NoAnswer) => {
            panic!("gave up after {limit:?} waiting for {what}: the last check never answered")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_returns_the_first_yes() {
        let mut calls = 0;
        let got = eventually("three calls", Duration::from_secs(5), async || {
            calls += 1;
            if calls == 3 { Ok(calls) } else { Err(calls) }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn it_gives_up_with_the_last_answer() {
        let start = Instant::now();
        let gave_up = within(Duration::from_millis(200), async || Err::<(), _>("no")).await;
        assert!(matches!(gave_up, Err(GaveUp::NotYet("no"))));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_probe_that_hangs_is_cut_off() {
        let gave_up = within(Duration::from_millis(100), async || {
            std::future::pending::<Result<(), ()>>().await
        })
        .await;
        assert!(matches!(gave_up, Err(GaveUp::NoAnswer)));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the answer 42; last seen: 7")]
    async fn the_panic_says_what_was_awaited() {
        eventually("the answer 42", Duration::from_millis(50), async || {
            Err::<(), _>(7)
        })
        .await;
    }
}

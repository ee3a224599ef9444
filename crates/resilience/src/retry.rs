use std::future::Future;
use std::time::Duration;

/// Exponential backoff for idempotent calls: after a failure that `should_retry` accepts, wait
/// `first_delay`, then twice that, and so on (capped at `max_delay`), for at most `retries`
/// extra attempts.
///
/// Only wrap calls that are safe to repeat (GET, DELETE, token minting): a create that timed
/// out may have succeeded upstream, and repeating it would create twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three retries after 1 s, 2 s and 4 s.
    fn default() -> Self {
        Self {
            retries: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based).
    pub fn delay_before(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Calls `attempt` until it succeeds, fails with an error `should_retry` rejects, or the
    /// retries are used up; returns the last result.
    pub async fn retry_idempotent<T, E, F, Fut>(
        &self,
        mut attempt: F,
        should_retry: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if retry < self.retries && should_retry(&error) => {
                    tokio::time::sleep(self.delay_before(retry)).await;
                    retry += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    #[test]
    fn default_delays_are_one_two_four_seconds() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (0..policy.retries)
            .map(|n| policy.delay_before(n))
            .collect();
        assert_eq!(delays, [1, 2, 4].map(Duration::from_secs));
    }

    #[test]
    fn delays_are_capped() {
        let policy = RetryPolicy {
            retries: 40,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        assert_eq!(policy.delay_before(5), Duration::from_secs(10));
        assert_eq!(policy.delay_before(39), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_with_backoff_then_succeeds() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<&str, &str> = RetryPolicy::default()
            .retry_idempotent(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err("busy")
                    } else {
                        Ok("done")
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Ok("done"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // 1 s + 2 s of (paused, auto-advanced) backoff.
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_retry() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<(), &str> = RetryPolicy::default()
            .retry_idempotent(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("down")
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Err("down"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_errors_the_caller_marks_permanent() {
        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = RetryPolicy::default()
            .retry_idempotent(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("forbidden")
                },
                |error| *error != "forbidden",
            )
            .await;
        assert_eq!(result, Err("forbidden"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn none_makes_exactly_one_attempt() {
        let calls = AtomicU32::new(0);
        let _ = RetryPolicy::none()
            .retry_idempotent(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(())
                },
                |_| true,
            )
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

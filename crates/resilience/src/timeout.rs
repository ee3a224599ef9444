use std::future::Future;
use std::time::Duration;

/// A wait that ran past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    pub after: Duration,
}

impl TimedOut {
    pub fn after_ms(&self) -> u64 {
        u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {} ms", self.after_ms())
    }
}

impl std::error::Error for TimedOut {}

/// Runs `future` for at most `limit`; the future is dropped (cancelled) when time runs out.
pub async fn with_timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, TimedOut> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| TimedOut { after: limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_output_when_in_time() {
        let value = with_timeout(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(value, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn reports_the_limit_when_too_slow() {
        let slow = tokio::time::sleep(Duration::from_secs(10));
        let result = with_timeout(Duration::from_millis(250), slow).await;
        assert_eq!(
            result,
            Err(TimedOut {
                after: Duration::from_millis(250)
            })
        );
        assert_eq!(result.unwrap_err().to_string(), "timed out after 250 ms");
    }
}

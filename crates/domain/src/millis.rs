//! Durations as whole milliseconds, for logs, metrics and error bodies.

use std::time::Duration;

/// `duration` in whole milliseconds, saturating at `u64::MAX` instead of wrapping.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_milliseconds_that_never_wrap() {
        assert_eq!(millis(Duration::from_micros(1_999)), 1);
        assert_eq!(millis(Duration::from_secs(6)), 6_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}

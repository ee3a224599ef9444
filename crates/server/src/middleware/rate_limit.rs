//! Token-bucket rate limits, one bucket per client (IP address or user) per tier.
//!
//! A bucket holds up to `per_minute` requests and refills continuously at `per_minute / 60` per
//! second, so a client may burst up to its limit and then sustain the limit's rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use domain::UserId;

use crate::config::RateLimits;
use crate::error::ApiError;

/// Buckets idle long enough to be full again are dropped once the map grows past this.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter<K> {
    enabled: bool,
    capacity: f64,
    refill_per_sec: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn per_minute(limit: u32, enabled: bool) -> Self {
        Self {
            enabled,
            capacity: limit as f64,
            refill_per_sec: limit as f64 / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how many seconds until one is available.
    pub fn check(&self, key: K) -> Result<(), ApiError> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: K, now: Instant) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let full_after = self.capacity / self.refill_per_sec;
            buckets.retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let retry_after_secs = ((1.0 - bucket.tokens) / self.refill_per_sec)
                .ceil()
                .max(1.0) as u64;
            Err(ApiError::RateLimited { retry_after_secs })
        }
    }
}

/// The architecture document's tiers.
pub struct RateLimiters {
    /// Login, per client IP.
    pub auth: RateLimiter<IpAddr>,
    /// Login, per account named (whatever the address), so spreading guesses over many
    /// addresses buys nothing.
    pub auth_account: RateLimiter<domain::Username>,
    /// Voice/video session creation, per user.
    pub session_create: RateLimiter<UserId>,
    /// Session history listing, per user.
    pub history: RateLimiter<UserId>,
    /// Transcript view and download, per user.
    pub transcript: RateLimiter<UserId>,
    /// Every other authenticated endpoint, per user.
    pub default: RateLimiter<UserId>,
}

impl RateLimiters {
    pub fn new(limits: &RateLimits) -> Self {
        let on = limits.enabled;
        Self {
            auth: RateLimiter::per_minute(limits.auth_per_minute, on),
            auth_account: RateLimiter::per_minute(limits.auth_per_account_per_minute, on),
            session_create: RateLimiter::per_minute(limits.session_create_per_minute, on),
            history: RateLimiter::per_minute(limits.history_per_minute, on),
            transcript: RateLimiter::per_minute(limits.transcript_per_minute, on),
            default: RateLimiter::per_minute(limits.default_per_minute, on),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn retry_after(result: Result<(), ApiError>) -> u64 {
        match result {
            Err(ApiError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn allows_the_limit_then_refuses_with_retry_after() {
        let limiter = RateLimiter::per_minute(10, true);
        let t0 = Instant::now();
        for _ in 0..10 {
            limiter.check_at("a", t0).unwrap();
        }
        assert_eq!(retry_after(limiter.check_at("a", t0)), 6);
        limiter
            .check_at("b", t0)
            .expect("other clients have their own bucket");
    }

    #[test]
    fn refills_at_the_limit_rate() {
        let limiter = RateLimiter::per_minute(60, true);
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.check_at(1, t0).unwrap();
        }
        assert!(limiter.check_at(1, t0).is_err());
        limiter.check_at(1, t0 + Duration::from_secs(1)).unwrap();
        assert!(limiter.check_at(1, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn disabled_limiter_lets_everything_through() {
        let limiter = RateLimiter::per_minute(1, false);
        for _ in 0..100 {
            limiter.check("a").unwrap();
        }
    }
}

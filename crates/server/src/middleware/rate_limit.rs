//! Token-bucket rate limits, one bucket per client (IP address or user) per tier.
//!
//! A bucket holds up to `per_minute` requests and refills continuously at `per_minute / 60` per
//! second, so a client may burst up to its limit and then sustain the limit's rate.
//!
//! With PostgreSQL, which several nodes may share, the buckets are kept in the database so that a
//! limit holds for the whole deployment ([`store::Store::take_from_bucket`]: one statement per
//! request). With SQLite one node serves the database, and keeps them in memory.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;
use domain::UserId;
use store::{BucketSize, Store, Taken};

use crate::config::RateLimits;
use crate::error::ApiError;

/// Buckets idle long enough to be full again are dropped once the map grows past this.
const PRUNE_ABOVE: usize = 10_000;
/// How long an empty bucket takes to fill again: every tier is a limit per minute. A bucket idle
/// this long is as good as absent.
pub const FULL_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter<K> {
    enabled: bool,
    /// The tier's name, as the database's buckets are keyed.
    name: &'static str,
    size: BucketSize,
    buckets: Buckets<K>,
}

/// Where a limiter keeps its buckets.
enum Buckets<K> {
    InMemory(Mutex<HashMap<K, Bucket>>),
    /// Shared by every node of the deployment.
    InStore(Box<Store>),
}

impl<K: Hash + Eq + Clone + Display> RateLimiter<K> {
    /// A limiter whose buckets live in this process.
    pub fn per_minute(limit: u32, enabled: bool) -> Self {
        Self {
            enabled,
            name: "local",
            size: BucketSize::per_minute(limit),
            buckets: Buckets::InMemory(Mutex::new(HashMap::new())),
        }
    }

    /// A limiter whose buckets every node shares, kept in `store` under `name`.
    pub fn shared_per_minute(name: &'static str, limit: u32, enabled: bool, store: Store) -> Self {
        Self {
            enabled,
            name,
            size: BucketSize::per_minute(limit),
            buckets: Buckets::InStore(Box::new(store)),
        }
    }

    /// Takes one request from `key`'s bucket, or says how many seconds until one is available.
    pub async fn check(&self, key: K) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        match &self.buckets {
            Buckets::InMemory(buckets) => self.take_in_memory(buckets, key, Instant::now()),
            Buckets::InStore(store) => {
                let client = key.to_string();
                match store
                    .take_from_bucket(self.name, &client, self.size, Utc::now())
                    .await
                {
                    Ok(Taken::Allowed) => Ok(()),
                    Ok(Taken::Refused { retry_after_secs }) => Err(refused(retry_after_secs)),
                    // A limit the database cannot count lets the request through: the request
                    // needs the database too, and answers for its failure itself.
                    Err(error) => {
                        tracing::warn!(limit = self.name, %error, "rate limit not counted");
                        Ok(())
                    }
                }
            }
        }
    }

    fn take_in_memory(
        &self,
        buckets: &Mutex<HashMap<K, Bucket>>,
        key: K,
        now: Instant,
    ) -> Result<(), ApiError> {
        let BucketSize {
            capacity,
            refill_per_sec,
        } = self.size;
        let mut buckets = buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let full_after = self.size.full_after_secs();
            buckets.retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill_per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(refused((1.0 - bucket.tokens) / refill_per_sec))
        }
    }
}

/// The answer to a refused request: try again in whole seconds, at least one.
fn refused(retry_after_secs: f64) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: retry_after_secs.ceil().max(1.0) as u64,
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
    /// The tiers, counted in `store` when nodes may share it (PostgreSQL), else in memory.
    pub fn new(limits: &RateLimits, store: &Store) -> Self {
        let on = limits.enabled;
        let shared = store.kind().shared_by_nodes();
        fn tier<K: Hash + Eq + Clone + Display>(
            name: &'static str,
            limit: u32,
            on: bool,
            shared: Option<&Store>,
        ) -> RateLimiter<K> {
            match shared {
                Some(store) => RateLimiter::shared_per_minute(name, limit, on, store.clone()),
                None => RateLimiter::per_minute(limit, on),
            }
        }
        let shared = shared.then_some(store);
        Self {
            auth: tier("auth", limits.auth_per_minute, on, shared),
            auth_account: tier(
                "auth_account",
                limits.auth_per_account_per_minute,
                on,
                shared,
            ),
            session_create: tier(
                "session_create",
                limits.session_create_per_minute,
                on,
                shared,
            ),
            history: tier("history", limits.history_per_minute, on, shared),
            transcript: tier("transcript", limits.transcript_per_minute, on, shared),
            default: tier("default", limits.default_per_minute, on, shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl<K: Hash + Eq + Clone + Display> RateLimiter<K> {
        fn check_at(&self, key: K, now: Instant) -> Result<(), ApiError> {
            match &self.buckets {
                Buckets::InMemory(buckets) => self.take_in_memory(buckets, key, now),
                Buckets::InStore(_) => unreachable!("these tests keep buckets in memory"),
            }
        }
    }

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

    #[tokio::test]
    async fn disabled_limiter_lets_everything_through() {
        let limiter = RateLimiter::per_minute(1, false);
        for _ in 0..100 {
            limiter.check("a").await.unwrap();
        }
    }
}

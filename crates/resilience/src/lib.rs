//! Timeouts, retries with backoff and circuit breakers for calls to other services.
//!
//! - [`with_timeout`] bounds any future and says how long it waited.
//! - [`RetryPolicy`] retries an *idempotent* call with exponential backoff (1 s, 2 s, 4 s).
//! - [`CircuitBreaker`] turns a failing provider into fast rejections until it recovers:
//!   closed → open (after N failures in a window, or an error rate over a sliding window)
//!   → half-open (one probe) → closed or open again.
//!
//! The clock is injectable ([`Clock`], [`ManualClock`]) so breaker behaviour is tested without
//! waiting; retry and timeout use tokio's timer, which tests can pause.

mod breaker;
mod clock;
mod retry;
mod timeout;

pub use breaker::{
    BreakerConfig, BreakerOpen, BreakerState, CallError, CircuitBreaker, ErrorRateRule, Permit,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::RetryPolicy;
pub use timeout::{with_timeout, TimedOut};

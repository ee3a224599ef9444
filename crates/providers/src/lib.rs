//! Adapters for the cloud room services counsel's calls can run in, each behind the shared
//! resilience policy (`resilience`): a timeout on every request, retries with backoff for what is
//! safe to repeat, and a circuit breaker per provider.
//!
//! - [`daily`]: Daily's REST API — rooms for voice sessions and their meeting tokens.

pub mod daily;

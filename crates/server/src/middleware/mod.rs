//! Cross-cutting request handling: request ids and request logs, security headers, rate limits.

pub mod rate_limit;
pub mod request_id;
pub mod security_headers;

pub use rate_limit::{RateLimiter, RateLimiters};
pub use request_id::RequestId;

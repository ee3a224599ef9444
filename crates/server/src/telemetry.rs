//! Logging: JSON lines on stdout, each carrying the request's span (request id, user id).

use tracing_subscriber::EnvFilter;

/// Installs the global JSON logger. Calling it again (tests) is harmless.
pub fn init(log_level: &str) {
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .try_init();
}

//! Logging: JSON lines on stdout, each carrying the request's span (request id, user id).

use tracing_subscriber::EnvFilter;

/// Installs the global JSON logger. Calling it again (tests) is harmless.
pub fn init(log_level: &str) {
    // The WebRTC stack reports every connection's routine teardown as warnings; unless the operator
    // asks for it by name, only its errors are logged.
    let directives = if log_level.contains("webrtc") {
        log_level.to_owned()
    } else {
        format!("{log_level},webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_mdns=error")
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .try_init();
}

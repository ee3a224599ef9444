//! Local stand-ins for the cloud services, speaking their real wire protocols
//! (see the project's provider notes). Each checks auth, parameters and request bodies the
//! way the real service does and rejects what it would reject.
#![allow(dead_code)]

pub mod llm;
pub mod ws;

use std::future::Future;
use std::time::Duration;

/// Polls `condition` every 10 ms until it holds; panics after 5 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `future`, panicking if it takes over 5 s (a hang is a failure, not a stuck test).
pub async fn within_5s<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 5 s"))
}

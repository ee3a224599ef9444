//! Background jobs of a running server.

use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often transcript retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The first run waits a little after start-up, out of the way of the start itself (and of
/// deployments that restart nodes one after another), then runs daily.
pub const RETENTION_FIRST_RUN_AFTER: Duration = Duration::from_secs(5 * 60);

pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + RETENTION_FIRST_RUN_AFTER;
        let mut ticks = tokio::time::interval_at(first, RETENTION_INTERVAL);
        loop {
            ticks.tick().await;
            // Nodes sharing a database take turns: one purges while the others skip this run.
            let lock = match state.store.lock_job(store::Job::TranscriptRetention).await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tracing::info!("transcript retention is running on another node");
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "transcript retention could not start");
                    continue;
                }
            };
            if let Err(error) = purge_expired_transcripts(
                &state.store,
                state.config.transcript_retention_days,
                false,
            )
            .await
            {
                tracing::error!(%error, "transcript retention run failed");
            }
            lock.release().await;
        }
    })
}

/// Erases transcript text of sessions that started more than `retention_days` ago, keeping the
/// sessions' metadata. With `dry_run` it only counts.
pub async fn purge_expired_transcripts(
    store: &store::Store,
    retention_days: u32,
    dry_run: bool,
) -> Result<store::PurgeReport, store::StoreError> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(retention_days));
    let report = store.purge_transcripts_older_than(cutoff, dry_run).await?;
    tracing::info!(?report, %cutoff, dry_run, "transcript retention");
    Ok(report)
}

/// How often finished calls are forgotten and unconnected rooms closed.
pub const CALL_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A room whose browser has not connected by then is closed and its session deleted. A browser
/// offers within a few seconds of opening the room, microphone permission included; an unused
/// room holds call capacity until then (at most this plus one sweep).
pub const ROOM_CONNECT_WITHIN: Duration = Duration::from_secs(45);

/// Keeps the call registry tidy: forgets finished calls, closes rooms nobody joined.
pub fn spawn_call_housekeeping(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CALL_SWEEP_INTERVAL);
        loop {
            ticks.tick().await;
            let closed = state.calls.close_abandoned(ROOM_CONNECT_WITHIN).await;
            if closed > 0 {
                tracing::info!(closed, "closed rooms nobody connected to");
            }
        }
    })
}

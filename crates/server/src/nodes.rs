//! This server as one node of a deployment. Each node records itself in the store's registry
//! when it starts, beats every [`HEARTBEAT_INTERVAL`], and leaves when it stops after ending its
//! calls. A node silent for [`DEAD_AFTER`] is dead (a crash, `kill -9`, a lost machine): the first
//! node to notice closes the sessions it ran, each at its last stored line, within
//! `DEAD_AFTER + HEARTBEAT_INTERVAL` of its last beat.
//!
//! With SQLite there is one node per database, so a node that starts closes everything the
//! registry still holds at once; with PostgreSQL the other nodes may be running calls, so only
//! the silent ones' sessions are closed.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use store::{Job, LiveChange, LiveNotice, NodeRegistration, SessionRecord, Store, Unowned};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often a node says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a node may be silent before it is taken to be dead: three missed heartbeats, so a
/// slow database or a long pause does not end live calls.
pub const DEAD_AFTER: Duration = Duration::from_secs(15);

/// Records this node, closing first what stopped nodes left open. A failure is logged and the
/// server starts anyway: serving students matters more than tidying old records, and the
/// heartbeat registers the node again.
pub async fn join(state: &AppState, listening_on: SocketAddr) {
    let store = &state.store;
    let now = Utc::now();
    let alive_since = if store.kind().shared_by_nodes() {
        now - DEAD_AFTER
    } else {
        // No other node shares the database: every node recorded is one that stopped.
        now
    };
    match store
        .close_sessions_of_dead_nodes(alive_since, Unowned::Close)
        .await
    {
        Ok(closed) => closed_left_open(store, &closed).await,
        Err(error) => {
            tracing::error!(%error, "could not close the sessions stopped nodes left open")
        }
    }
    if let Err(error) = store
        .register_node(&registration(state, listening_on), now)
        .await
    {
        tracing::error!(%error, "could not record this node in the registry");
    }
}

/// Beats every [`HEARTBEAT_INTERVAL`] and closes the sessions of nodes found dead.
pub fn spawn_heartbeat(state: AppState, listening_on: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            beat(&state, listening_on).await;
            state.sockets.give_back_strays().await;
            if let Err(error) = sweep_dead_nodes(&state.store).await {
                tracing::error!(%error, "could not close the sessions of dead nodes");
            }
        }
    })
}

/// Leaves the registry, for a node that has ended its calls and is stopping.
pub async fn leave(state: &AppState) {
    if let Err(error) = state.store.remove_node(state.calls.node()).await {
        tracing::warn!(%error, "could not remove this node from the registry");
    }
}

async fn beat(state: &AppState, listening_on: SocketAddr) {
    let calls = &state.calls;
    match state
        .store
        .node_heartbeat(calls.node(), calls.active_calls(), Utc::now())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // Another node found this one silent for too long (or the first registration
            // failed) and closed its sessions; the calls still running here go on, and end as
            // they would.
            tracing::warn!("this node was missing from the registry; recording it again");
            let again = registration(state, listening_on);
            match state.store.register_node(&again, Utc::now()).await {
                Ok(()) => state.sockets.record_again().await,
                Err(error) => {
                    tracing::error!(%error, "could not record this node in the registry")
                }
            }
        }
        Err(error) => tracing::warn!(%error, "heartbeat not recorded"),
    }
}

/// One node at a time closes what dead nodes left open and forgets idle rate-limit buckets (the
/// others skip their turn).
async fn sweep_dead_nodes(store: &Store) -> store::Result<()> {
    let Some(lock) = store.lock_job(Job::DeadNodeSweep).await? else {
        return Ok(());
    };
    let swept = store
        .close_sessions_of_dead_nodes(Utc::now() - DEAD_AFTER, Unowned::Keep)
        .await;
    // The deployment's rate-limit buckets that are full again are forgotten by the same node.
    let forgotten = store
        .forget_idle_buckets(Utc::now() - crate::middleware::rate_limit::FULL_AFTER)
        .await;
    lock.release().await;
    closed_left_open(store, &swept?).await;
    forgotten?;
    Ok(())
}

fn registration(state: &AppState, listening_on: SocketAddr) -> NodeRegistration {
    NodeRegistration {
        id: state.calls.node(),
        address: state
            .config
            .node_address
            .clone()
            .unwrap_or_else(|| format!("http://{listening_on}")),
        capacity: u32::try_from(state.calls.capacity()).unwrap_or(u32::MAX),
    }
}

/// Logs the sessions closed for stopped nodes, and tells any screen following one, on any node,
/// that it has ended.
async fn closed_left_open(store: &Store, closed: &[SessionRecord]) {
    for session in closed {
        tracing::warn!(session_id = %session.id, ended_at = ?session.ended_at, "closed a session a stopped node left open");
        announce(store, session.id, LiveChange::Ended).await;
    }
}

/// Tells every node (this one too) what happened to a session. A notice that cannot be sent is
/// logged, not retried: what it names is stored, and a screen gets it when it reconnects.
pub async fn announce(store: &Store, session_id: domain::SessionId, change: LiveChange) {
    if let Err(error) = store.announce(LiveNotice { session_id, change }).await {
        tracing::warn!(%session_id, %error, "could not tell the other nodes about a session");
    }
}

/// Marks a request that a node passed on to the node running its call. That node answers it
/// itself: a request is passed on once at most.
pub const FORWARDED_BY: &str = "x-counsel-forwarded-by";
/// How long a node waits for the node it passed a request on to (a WebRTC answer takes a
/// moment: the call's speech services start with it).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether a request was passed on by another node.
pub fn was_forwarded(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(FORWARDED_BY)
}

/// The node other than this one that runs `session`'s call, if a live one does.
pub async fn runner_elsewhere(
    state: &AppState,
    session: domain::SessionId,
) -> Result<Option<store::NodeRecord>, crate::error::ApiError> {
    let runner = state
        .store
        .node_running(session, Utc::now() - DEAD_AFTER)
        .await?;
    Ok(runner.filter(|node| node.id != *state.calls.node().as_uuid()))
}

/// The live nodes other than this one with calls to spare, the most to spare first (by the
/// registry's counts, a heartbeat old at most, so the first may have filled up since).
pub async fn with_calls_to_spare(
    state: &AppState,
) -> Result<Vec<store::NodeRecord>, crate::error::ApiError> {
    let mut spare: Vec<store::NodeRecord> = state
        .store
        .nodes_alive_since(Utc::now() - DEAD_AFTER)
        .await?
        .into_iter()
        .filter(|node| node.id != *state.calls.node().as_uuid() && node.live_calls < node.capacity)
        .collect();
    spare.sort_by_key(|node| std::cmp::Reverse(node.capacity - node.live_calls));
    Ok(spare)
}

/// Why a request could not be passed on.
#[derive(Debug)]
pub enum ForwardError {
    /// No connection could be made: the node never saw the request (it died since its last
    /// heartbeat), so another node may be asked instead.
    NotConnected,
    /// The request may have reached the node, which did not answer in time or whose answer
    /// broke off; asking another could do the thing twice.
    NoAnswer,
}

impl From<ForwardError> for crate::error::ApiError {
    fn from(_: ForwardError) -> Self {
        crate::error::ApiError::NodeUnreachable
    }
}

/// Passes a request on to `node` (its path, the caller's credentials and its JSON body) and
/// returns the node's answer as it came. A node that does not answer within
/// [`FORWARD_TIMEOUT`] gets `502 NODE_001`.
pub async fn forward(
    state: &AppState,
    node: &store::NodeRecord,
    path: &str,
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
) -> Result<axum::response::Response, crate::error::ApiError> {
    Ok(try_forward(state, node, path, headers, body).await?)
}

/// [`forward`], saying whether the node saw the request at all when it did not answer.
pub async fn try_forward(
    state: &AppState,
    node: &store::NodeRecord,
    path: &str,
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
) -> Result<axum::response::Response, ForwardError> {
    use axum::http::header;
    let url = format!("{}{path}", node.address.trim_end_matches('/'));
    let mut request = state
        .peers
        .post(url)
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_BY, state.calls.node().to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    // The caller's credentials, and what a cookie-signed request is checked by: its Origin (or
    // Referer) against the Host it was sent to.
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::ORIGIN,
        header::REFERER,
        header::HOST,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    if let Some(id) = headers.get(&crate::middleware::request_id::REQUEST_ID_HEADER) {
        request = request.header(crate::middleware::request_id::REQUEST_ID_HEADER.clone(), id);
    }
    let unreachable = |error: reqwest::Error| {
        tracing::warn!(node = %node.id, %error, "the node running the call did not answer");
        if error.is_connect() {
            ForwardError::NotConnected
        } else {
            ForwardError::NoAnswer
        }
    };
    let answer = request.send().await.map_err(unreachable)?;
    let status = answer.status();
    let kept: Vec<_> = [header::CONTENT_TYPE, header::RETRY_AFTER]
        .into_iter()
        .filter_map(|name| Some((name.clone(), answer.headers().get(&name)?.clone())))
        .collect();
    let body = answer.bytes().await.map_err(unreachable)?;
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().extend(kept);
    Ok(response)
}

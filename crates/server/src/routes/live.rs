//! The live transcript WebSocket, `/ws/sessions/{id}/transcript`.
//!
//! Signed in by the `access_token` cookie, a bearer token, or `?token=<access token>`. Only the
//! session's owner can open it; anyone else gets the same 404 as for a session that does not
//! exist. A student may hold at most five sockets at once. A screen that reconnects after a
//! network blip passes `?after=<sequence>`, the last final line it saw, and resumes from there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use domain::{NodeId, UserId};
use serde::Deserialize;
use store::{SocketSlotId, Store};
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;

use crate::auth::AuthUser;
use crate::calls::LiveMessage;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// Concurrent transcript sockets per student (the architecture document's limit).
pub const SOCKETS_PER_USER: usize = 5;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/ws/sessions/{session_id}/transcript",
        get(transcript_socket),
    )
}

/// Taken as text and checked here, so that a bad value is reported with its parameter's name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SocketQuery {
    /// An access token, for clients that cannot set headers on a WebSocket.
    token: Option<String>,
    /// The `sequence` of the last final transcript line this screen received: the replay starts
    /// after it, so a reconnecting screen gets no line twice and misses none. Without it the
    /// socket first gets everything said so far.
    #[param(value_type = Option<u64>, minimum = 0)]
    after: Option<String>,
}

/// The resume point of `?after=`: a whole number, 0 or more.
fn resume_point(raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    raw.map(|raw| {
        raw.trim().parse().map_err(|_| {
            ApiError::validation(
                "after",
                "must be the sequence number of a transcript line (0 or more)",
            )
        })
    })
    .transpose()
}

/// Counts open sockets per student. With PostgreSQL, which several nodes may share, each socket
/// is also counted in the store, so the limit holds for the whole deployment; with SQLite (one
/// node) the count in memory is the limit.
#[derive(Clone, Default)]
pub struct SocketSlots(Arc<SlotsInner>);

#[derive(Default)]
struct SlotsInner {
    /// Sockets open on this node, per student.
    here: Mutex<HashMap<UserId, usize>>,
    /// The slots this node's open sockets hold in the store, and whose they are.
    held: Mutex<HashMap<SocketSlotId, UserId>>,
    /// Where the deployment's count is kept, and this node's name in it.
    shared: Option<(Store, NodeId)>,
}

/// One held slot; dropping it frees the slot.
pub struct SocketSlot {
    slots: SocketSlots,
    user: UserId,
    in_store: Option<SocketSlotId>,
}

impl SocketSlots {
    /// Slots counted in `store` as well when nodes may share it (PostgreSQL).
    pub fn new(store: &Store, node: NodeId) -> Self {
        let shared = store
            .kind()
            .shared_by_nodes()
            .then(|| (store.clone(), node));
        Self(Arc::new(SlotsInner {
            here: Mutex::default(),
            held: Mutex::default(),
            shared,
        }))
    }

    /// Student sockets open now on this node, all students together.
    pub fn open(&self) -> usize {
        self.0
            .here
            .lock()
            .expect("socket slots lock")
            .values()
            .sum()
    }

    /// A slot for one more of `user`'s sockets, or `None` when they hold
    /// [`SOCKETS_PER_USER`] already (on every node together).
    pub async fn take(&self, user: UserId) -> Option<SocketSlot> {
        let in_store = match &self.0.shared {
            None => None,
            Some((store, node)) => {
                match store
                    .take_socket_slot(user, *node, SOCKETS_PER_USER as u32, Utc::now())
                    .await
                {
                    Ok(Some(slot)) => Some(slot),
                    Ok(None) => return None,
                    // Not counted across nodes (the database is failing, or this node is not
                    // registered yet): this node's own count still holds.
                    Err(error) => {
                        tracing::warn!(%error, "socket not counted across nodes");
                        None
                    }
                }
            }
        };
        {
            let mut open = self.0.here.lock().expect("socket slots lock");
            let count = open.entry(user).or_default();
            if *count < SOCKETS_PER_USER {
                *count += 1;
                if let Some(slot) = in_store {
                    self.0
                        .held
                        .lock()
                        .expect("held slots lock")
                        .insert(slot, user);
                }
                return Some(SocketSlot {
                    slots: self.clone(),
                    user,
                    in_store,
                });
            }
        }
        if let (Some(slot), Some((store, _))) = (in_store, &self.0.shared) {
            if let Err(error) = store.release_socket_slot(slot).await {
                tracing::warn!(%error, "socket slot not given back");
            }
        }
        None
    }
}

impl SocketSlots {
    /// Gives back the slots the store counts for this node that no open socket holds (a
    /// handshake abandoned once its slot was counted, a release that failed). Slots younger than
    /// [`SLOT_SETTLE`] are left alone: their socket may be opening.
    pub async fn give_back_strays(&self) {
        let Some((store, node)) = &self.0.shared else {
            return;
        };
        let settled = Utc::now() - SLOT_SETTLE;
        let counted = match store.socket_slots_of(*node, settled).await {
            Ok(counted) => counted,
            Err(error) => {
                tracing::warn!(%error, "could not check this node's socket slots");
                return;
            }
        };
        let strays: Vec<SocketSlotId> = {
            let held = self.0.held.lock().expect("held slots lock");
            counted
                .into_iter()
                .filter(|s| !held.contains_key(s))
                .collect()
        };
        for stray in strays {
            if let Err(error) = store.release_socket_slot(stray).await {
                tracing::warn!(%error, "socket slot not given back");
            }
        }
    }

    /// Counts this node's open sockets in the store again, for a node that was taken for dead
    /// (its slots went with its registry row) and has just recorded itself again.
    pub async fn record_again(&self) {
        let Some((store, node)) = &self.0.shared else {
            return;
        };
        let held: Vec<(SocketSlotId, UserId)> = self
            .0
            .held
            .lock()
            .expect("held slots lock")
            .iter()
            .map(|(slot, user)| (*slot, *user))
            .collect();
        if let Err(error) = store.restore_socket_slots(*node, &held, Utc::now()).await {
            tracing::warn!(%error, "open sockets not counted again across nodes");
        }
    }
}

/// How old a slot must be before [`SocketSlots::give_back_strays`] may take it for a stray.
const SLOT_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        {
            let mut open = self.slots.0.here.lock().expect("socket slots lock");
            if let Some(count) = open.get_mut(&self.user) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.user);
                }
            }
        }
        if let (Some(slot), Some((store, _))) = (self.in_store.take(), &self.slots.0.shared) {
            self.slots
                .0
                .held
                .lock()
                .expect("held slots lock")
                .remove(&slot);
            let store = store.clone();
            // Outside a runtime (the process is ending) the node's slots go with its registry row.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = store.release_socket_slot(slot).await {
                        tracing::warn!(%error, "socket slot not given back");
                    }
                });
            }
        }
    }
}

/// The live transcript of one of the caller's calls, as a WebSocket.
///
/// JSON messages: `transcript` (`speaker`, `text`, `is_final`, `sequence`, `timestamp`,
/// `interrupted`), `crisis_alert`, `connection_quality`, `bot_state`, `session_ended`. A socket
/// first gets what was said so far (final lines, the crisis alert, the end), or with `after` only
/// what came after that line, then the live stream. A call running on another node of the
/// deployment is followed from any node (its final lines, not the words still being recognized).
/// A session that has ended is replayed from the store and the socket closes. A screen that falls behind the live stream is
/// closed with 1013 and reconnects with `after`; a blocked or signed-out account's socket is
/// closed with 1008.
#[utoipa::path(get, path = "/ws/sessions/{session_id}/transcript", tag = "Live Transcript",
    params(("session_id" = uuid::Uuid, Path, description = "The call's session id"), SocketQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Not signed in (AUTH_004)", body = ErrorBody),
        (status = 403, description = "Opened from a page of a foreign origin (AUTH_005)", body = ErrorBody),
        (status = 404, description = "No session of the caller's with this id (SESSION_001)", body = ErrorBody),
        (status = 422, description = "`after` is not a whole number (VALIDATION_001)", body = ErrorBody),
        (status = 429, description = "Five transcript sockets are open already (RATE_LIMIT_001)", body = ErrorBody),
    ))]
pub async fn transcript_socket(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(query): Query<SocketQuery>,
    upgrade: WebSocketUpgrade,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let after = resume_point(query.after.as_deref())?;
    // `?token=` is for clients that cannot set headers on a WebSocket; it is checked exactly
    // like a bearer token.
    if let Some(token) = query.token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::NotAuthenticated)?;
        parts
            .headers
            .insert(axum::http::header::AUTHORIZATION, bearer);
    }
    let account = AuthUser::from_request_parts(&mut parts, &state).await?;
    let user = account.id;
    // Browsers send cookies with cross-site WebSocket handshakes (and always an Origin): only our
    // own pages may open one.
    if parts.headers.contains_key(axum::http::header::ORIGIN)
        && !crate::auth::origin_allowed(&parts, &state.config.allowed_origins)
    {
        return Err(ApiError::OriginNotAllowed);
    }
    let id = crate::extract::session_id(&raw_id)?;
    let source = match state.calls.feed(user, id) {
        Some(feed) => Source::Live(feed),
        // No call of it runs here. Following starts before the store is read, so nothing said
        // in between is missed: a call on another node is followed through the live notices,
        // and a session that has ended (its node stopped, or it is over) is replayed, so a
        // screen that reconnects learns that it ended.
        None => {
            let following = state.remote.follow(id);
            match state.store.session_for_user(user, id).await? {
                Some(detail) if detail.record.is_active() => {
                    // A database no other node shares (SQLite): an open session with no call
                    // here has no call anywhere (a tool made it, or a crash left it).
                    if !state.store.kind().shared_by_nodes() {
                        return Err(ApiError::SessionNotFound);
                    }
                    let follower = crate::calls::Follower::start(
                        following,
                        state.store.clone(),
                        &detail,
                        after,
                    );
                    Source::Remote(Box::new(follower))
                }
                Some(detail) => Source::Ended(crate::calls::replay_of_stored(&detail, after)),
                None => return Err(ApiError::SessionNotFound),
            }
        }
    };
    let slot = state
        .sockets
        .take(user)
        .await
        .ok_or(ApiError::RateLimited {
            retry_after_secs: 5,
        })?;
    let store = state.store.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _slot = slot;
        // The socket lives no longer than the token that opened it: a block or a sign-out
        // closes it within about a second.
        let revoked = crate::auth::until_revoked(&store, user, account.token_epoch, false);
        match source {
            Source::Live(feed) => {
                let (history, live) = feed.resume(after);
                relay(socket, history, Stream::Local(live), user, revoked).await;
            }
            Source::Remote(remote) => {
                let (history, follower) = *remote;
                relay(
                    socket,
                    history,
                    Stream::Remote(Box::new(follower)),
                    user,
                    revoked,
                )
                .await;
            }
            Source::Ended(history) => replay_ended(socket, &history).await,
        }
    }))
}

/// Where a transcript socket's messages come from.
enum Source {
    /// A call running on this node.
    Live(Arc<crate::calls::Feed>),
    /// A call running on another node: what is stored so far, then its notices.
    Remote(Box<(Vec<LiveMessage>, crate::calls::Follower)>),
    /// A session that has ended, as stored: everything it will ever send.
    Ended(Vec<LiveMessage>),
}

/// The live messages after the replay, from this node's call or another's.
enum Stream {
    Local(broadcast::Receiver<LiveMessage>),
    Remote(Box<crate::calls::Follower>),
}

impl Stream {
    /// The next message, or `None` when the screen may have missed some and must resume.
    async fn next(&mut self) -> Option<LiveMessage> {
        match self {
            Stream::Local(live) => match live.recv().await {
                Ok(message) => Some(message),
                // A slow screen missed messages, perhaps final lines.
                Err(RecvError::Lagged(_)) => None,
                // The call's feed went away without its end (it cannot, while held).
                Err(RecvError::Closed) => None,
            },
            Stream::Remote(follower) => match follower.next().await {
                crate::calls::Next::Send(message) => Some(message),
                crate::calls::Next::Behind => None,
            },
        }
    }
}

/// Sends an ended session's stored replay, then closes.
async fn replay_ended(mut socket: WebSocket, history: &[LiveMessage]) {
    for message in history {
        if send(&mut socket, message).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The close frame of a socket whose account no longer honours the token that opened it:
/// 1008 (policy violation) with the reason in words.
pub(crate) fn revoked_close(why: crate::auth::Revocation) -> Message {
    Message::Close(Some(CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: why.close_reason().into(),
    }))
}

/// Sends what was said so far, then everything live, until the call ends, the socket closes or
/// the account revokes the token (`revoked` resolves).
async fn relay(
    mut socket: WebSocket,
    history: Vec<LiveMessage>,
    mut live: Stream,
    user: UserId,
    revoked: impl std::future::Future<Output = crate::auth::Revocation>,
) {
    tokio::pin!(revoked);
    for message in &history {
        if send(&mut socket, message).await.is_err() {
            return;
        }
    }
    if history
        .iter()
        .any(|m| matches!(m, LiveMessage::SessionEnded { .. }))
    {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    loop {
        tokio::select! {
            received = live.next() => match received {
                Some(message) => {
                    let ended = matches!(message, LiveMessage::SessionEnded { .. });
                    if send(&mut socket, &message).await.is_err() || ended {
                        break;
                    }
                }
                // The screen reconnects with `after` and gets what it missed from the replay,
                // so nothing is lost.
                None => {
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: axum::extract::ws::close_code::AGAIN,
                        reason: "fell behind; reconnect".into(),
                    }))).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            why = &mut revoked => {
                tracing::info!(user_id = %user, reason = why.close_reason(), "transcript socket closed: token revoked");
                let _ = socket.send(revoked_close(why)).await;
                return;
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn send(socket: &mut WebSocket, message: &LiveMessage) -> Result<(), axum::Error> {
    let json = serde_json::to_string(message).expect("live messages serialize");
    socket.send(Message::Text(json.into())).await
}

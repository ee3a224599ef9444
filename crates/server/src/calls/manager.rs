//! The calls this node is running.
//!
//! A call goes through three steps: the student asks for a room ([`CallManager::open`]: the
//! session is recorded and a one-time room token minted), their browser posts its WebRTC offer
//! with that token ([`CallManager::connect`]: the agent starts), and either side ends it
//! ([`CallManager::end`], idempotent; a closed tab or an idle student ends it from the agent's
//! side). Rooms nobody connects to are closed by [`CallManager::close_abandoned`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::transport::webrtc::{WebRtcConnection, WebRtcTransport};
use agent::{Call, CallConfig, CallHandle, Services};
use chrono::Utc;
use domain::{Category, NodeId, SessionId, SessionMode, UserId};
use store::{CounselorCategory, NewSession, SessionEndReason, SessionRecord, Store};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::feed::Feed;
use super::persona;
use super::providers::{build_voice_stack, VoiceSettings};
use super::recorder::Recorder;
use super::safety_hook::SafetyHook;
use crate::crisis_desk::CrisisDesk;

/// How long ending a call may wait for the agent to wind down and the session to be finalized.
const END_WAIT: Duration = Duration::from_secs(5);

/// Why a call operation failed; the HTTP layer maps these to responses.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Also for a room token that is not this room's: a wrong token must not tell that the
    /// room exists.
    #[error("session not found")]
    NotFound,
    #[error("this session is already connected")]
    AlreadyConnected,
    #[error("this session has already ended")]
    AlreadyEnded,
    #[error("this server is at its limit of {0} concurrent calls")]
    AtCapacity(usize),
    /// The server is shutting down: it opens no new rooms.
    #[error("this server is shutting down")]
    ShuttingDown,
    #[error("the browser's offer could not be answered: {0}")]
    Offer(String),
    #[error("the voice services could not be started")]
    VoiceUnavailable,
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// The speech stack every call on this node uses.
pub struct VoiceStack {
    pub services: Services,
    pub transport: WebRtcTransport,
    /// The small offline model needs short prompts; cloud models get the category's own.
    pub persona: persona::PersonaStyle,
    /// How long each stage of a turn may take (offline models on a small CPU need longer).
    pub timeouts: agent::Timeouts,
    /// Crisis detection, shared by every call.
    pub safety: Arc<safety::Classifier>,
    /// The circuit breakers guarding the cloud services, by service name, for `/metrics`
    /// (clones: they share state with the services' own).
    pub breakers: Vec<(&'static str, resilience::CircuitBreaker)>,
}

/// What the student's browser needs to join a room.
#[derive(Debug, Clone)]
pub struct OpenedRoom {
    pub session: SessionRecord,
    pub room_name: String,
    /// Secret for this room only: the browser presents it with its WebRTC offer.
    pub room_token: String,
}

struct LiveCall {
    owner: UserId,
    /// The owner's token epoch when the room was opened: the room token is revoked with the
    /// access token it was asked for (signed out, blocked).
    owner_epoch: i64,
    category: Category,
    persona: String,
    room_token: String,
    feed: Arc<Feed>,
    opened: Instant,
    state: CallState,
    /// The call's span: every task of the call (pipeline, media, recorder) runs inside it, so
    /// whatever any of them logs names the session.
    span: tracing::Span,
}

enum CallState {
    /// Room created; the browser has not sent its offer yet.
    Waiting,
    Running {
        handle: CallHandle,
        recorder: JoinHandle<()>,
        /// The call's media; it also answers the browser's later offers (an ICE restart).
        media: WebRtcConnection,
    },
}

pub struct CallManager {
    store: Store,
    /// This node in the deployment's registry: the sessions it opens name it.
    node: NodeId,
    /// How to build the voice stack; `None` when it was handed over ready-made.
    settings: Option<VoiceSettings>,
    voice: OnceCell<Arc<VoiceStack>>,
    max_calls: usize,
    calls: Mutex<HashMap<SessionId, LiveCall>>,
    /// Where the calls' recorders send stored crisis events.
    desk: CrisisDesk,
    /// Set once by [`CallManager::drain`]: no new rooms, and the calls it ends record
    /// [`SessionEndReason::ServerShutdown`].
    draining: Arc<AtomicBool>,
}

impl CallManager {
    /// Calls with the configured services, built on first use (or by [`warm_up`](Self::warm_up)).
    pub fn new(store: Store, settings: VoiceSettings, desk: CrisisDesk) -> Self {
        let max_calls = settings.max_calls;
        Self {
            store,
            node: NodeId::new(),
            settings: Some(settings),
            voice: OnceCell::new(),
            max_calls,
            calls: Mutex::new(HashMap::new()),
            desk,
            draining: Arc::default(),
        }
    }

    /// Calls with a ready-made voice stack (tests use fake services this way).
    pub fn with_voice(store: Store, voice: VoiceStack, max_calls: usize, desk: CrisisDesk) -> Self {
        Self {
            store,
            node: NodeId::new(),
            settings: None,
            voice: OnceCell::new_with(Some(Arc::new(voice))),
            max_calls,
            calls: Mutex::new(HashMap::new()),
            desk,
            draining: Arc::default(),
        }
    }

    /// Loads the speech services now rather than on the first call (`counsel serve` does this at
    /// start-up, so the first student does not wait for the models).
    pub async fn warm_up(&self) {
        if let Some(settings) = &self.settings {
            tracing::info!(services = %settings.describe(), "starting voice services");
        }
        if self.voice().await.is_ok() {
            tracing::info!("voice services ready");
        }
    }

    async fn voice(&self) -> Result<Arc<VoiceStack>, CallError> {
        self.voice
            .get_or_try_init(|| async {
                let settings = self.settings.clone().ok_or(CallError::VoiceUnavailable)?;
                build_voice_stack(settings)
                    .await
                    .map(Arc::new)
                    .map_err(|error| {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "voice services could not start"
                        );
                        CallError::VoiceUnavailable
                    })
            })
            .await
            .cloned()
    }

    /// The state of each cloud service's circuit breaker, once the services are built.
    pub fn breaker_states(&self) -> Vec<(&'static str, resilience::BreakerState)> {
        self.voice
            .get()
            .map(|voice| {
                voice
                    .breakers
                    .iter()
                    .map(|(service, breaker)| (*service, breaker.state()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This node's id in the registry (new each time the server starts).
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// How many calls this node runs at once.
    pub fn capacity(&self) -> usize {
        self.max_calls
    }

    /// Calls open or running on this node.
    pub fn active_calls(&self) -> usize {
        self.calls.lock().expect("calls lock").len()
    }

    /// Records a new session and reserves a room for it. `owner_epoch` is the token epoch of
    /// the access token the room is opened with; the room token dies with it.
    pub async fn open(
        &self,
        owner: UserId,
        owner_epoch: i64,
        category: &CounselorCategory,
        mode: SessionMode,
    ) -> Result<OpenedRoom, CallError> {
        if self.is_draining() {
            return Err(CallError::ShuttingDown);
        }
        if self.active_calls() >= self.max_calls {
            return Err(CallError::AtCapacity(self.max_calls));
        }
        let voice = self.voice().await?;
        // A student holds at most one room nobody has joined: a new one (a second click, a
        // reload) replaces it, so no one can fill the node with rooms they never use.
        let unjoined: Vec<SessionId> = {
            let calls = self.calls.lock().expect("calls lock");
            calls
                .iter()
                .filter(|(_, call)| call.owner == owner && matches!(call.state, CallState::Waiting))
                .map(|(id, _)| *id)
                .collect()
        };
        for earlier in unjoined {
            self.discard_unjoined(owner, earlier).await;
        }
        let id = SessionId::new();
        let room_name = format!("counsel-{}-{}", mode.as_str(), id);
        let session = self
            .store
            .create_session(NewSession {
                id,
                user_id: owner,
                category: category.category,
                mode,
                room_name: room_name.clone(),
                started_at: Utc::now(),
                node: Some(self.node),
            })
            .await?;
        let room_token = persona::room_token();
        let persona = voice.persona.system_prompt(category);
        self.calls.lock().expect("calls lock").insert(
            id,
            LiveCall {
                owner,
                owner_epoch,
                category: category.category,
                persona,
                room_token: room_token.clone(),
                feed: Arc::new(Feed::new()),
                opened: Instant::now(),
                state: CallState::Waiting,
                span: tracing::info_span!(
                    parent: None,
                    "call",
                    session_id = %id,
                    category = %category.category,
                    mode = %mode,
                    transport = "webrtc",
                ),
            },
        );
        tracing::info!(session_id = %id, user_id = %owner, category = %category.category, mode = %mode, "room opened");
        crate::metrics::Metrics::count(&crate::metrics::METRICS.rooms_opened);
        Ok(OpenedRoom {
            session,
            room_name,
            room_token,
        })
    }

    /// Answers the browser's WebRTC offer and starts the counselor.
    pub async fn connect(
        &self,
        id: SessionId,
        room_token: &str,
        offer_sdp: &str,
    ) -> Result<String, CallError> {
        let span = {
            let calls = self.calls.lock().expect("calls lock");
            calls.get(&id).map(|call| call.span.clone())
        };
        match span {
            Some(span) => {
                self.connect_in_span(id, room_token, offer_sdp)
                    .instrument(span)
                    .await
            }
            None => Err(CallError::NotFound),
        }
    }

    async fn connect_in_span(
        &self,
        id: SessionId,
        room_token: &str,
        offer_sdp: &str,
    ) -> Result<String, CallError> {
        let (category, persona, feed, owner, owner_epoch, running) = {
            let calls = self.calls.lock().expect("calls lock");
            // A wrong token gets the answer a missing room gets, so that nobody can learn which
            // ids are live rooms.
            let call = calls
                .get(&id)
                .filter(|call| constant_time_eq(call.room_token.as_bytes(), room_token.as_bytes()))
                .ok_or(CallError::NotFound)?;
            let running = match &call.state {
                CallState::Waiting => None,
                // The agent has ended; the sweep forgets the call shortly.
                CallState::Running { recorder, .. } if recorder.is_finished() => {
                    return Err(CallError::AlreadyEnded)
                }
                CallState::Running { media, .. } => Some(media.renegotiation()),
            };
            (
                call.category,
                call.persona.clone(),
                call.feed.clone(),
                call.owner,
                call.owner_epoch,
                running,
            )
        };
        // Looked up once here so that flagging an utterance later needs no query. A room token
        // outlives neither a block nor a sign-out: it gets the answer a wrong token gets, and the
        // room is closed.
        let student = self.store.user(owner).await?;
        if crate::auth::standing(student.as_ref(), owner_epoch, false).is_err() {
            tracing::info!(session_id = %id, user_id = %owner, "room token refused: account blocked or signed out");
            let _ = self.end(owner, id).await;
            return Err(CallError::NotFound);
        }
        let student = student.ok_or(CallError::NotFound)?;
        let unanswered = |e: agent::transport::webrtc::WebRtcError| {
            use agent::transport::webrtc::WebRtcError;
            match e {
                WebRtcError::CallOver => CallError::AlreadyEnded,
                WebRtcError::NotARestart => CallError::AlreadyConnected,
                e if e.is_bad_offer() => CallError::Offer(e.to_string()),
                e => {
                    tracing::error!(session_id = %id, error = %e, "answering a WebRTC offer failed");
                    CallError::VoiceUnavailable
                }
            }
        };
        // A later offer on a running call is the browser restarting ICE after a network
        // change: answered on the same connection, the call goes on.
        if let Some(renegotiation) = running {
            let answer = renegotiation.answer(offer_sdp).await.map_err(unanswered)?;
            tracing::info!(session_id = %id, "call renegotiated (ICE restart)");
            return Ok(answer);
        }
        let voice = self.voice().await?;
        let accepted = voice
            .transport
            .accept_offer(offer_sdp)
            .await
            .map_err(unanswered)?;

        let mut config = CallConfig::new(persona);
        config.greeting = Some(persona::greeting(category).to_owned());
        config.timeouts = voice.timeouts;
        // The agent times its lines from this moment.
        let call_started_at = Utc::now();
        let (verdicts_tx, verdicts) = tokio::sync::mpsc::unbounded_channel();
        let mut handle = Call::start(
            config,
            voice.services.clone(),
            Arc::new(SafetyHook::new(voice.safety.clone(), verdicts_tx)),
            accepted.io,
        );
        let events = handle.events().expect("a new call hands over its events");
        let recorder = Recorder {
            session_id: id,
            started_at: call_started_at,
            store: self.store.clone(),
            feed,
            student_id: student.id,
            student: student.username,
            desk: self.desk.clone(),
            node: self.node,
            draining: self.draining.clone(),
        };
        let recorder = tokio::spawn(
            async move {
                recorder.run(events, verdicts).await;
            }
            .in_current_span(),
        );

        let mut calls = self.calls.lock().expect("calls lock");
        match calls.get_mut(&id) {
            Some(call) if matches!(call.state, CallState::Waiting) => {
                call.state = CallState::Running {
                    handle,
                    recorder,
                    media: accepted.connection,
                };
                tracing::info!(session_id = %id, "call connected");
                crate::metrics::Metrics::count(&crate::metrics::METRICS.calls_connected);
                Ok(accepted.answer_sdp)
            }
            // Ended or connected by a racing request while we were answering: undo ours.
            Some(_) => {
                handle.end();
                Err(CallError::AlreadyConnected)
            }
            None => {
                handle.end();
                Err(CallError::AlreadyEnded)
            }
        }
    }

    /// Ends a session the caller owns: stops its call if running here, finalizes the record.
    /// Ending an ended session returns it unchanged. Another user's session is `NotFound`.
    pub async fn end(&self, owner: UserId, id: SessionId) -> Result<SessionRecord, CallError> {
        self.end_because(owner, id, SessionEndReason::Ended).await
    }

    /// Ends the call of `id` if it runs on this node (another node was asked to end it).
    pub async fn end_if_here(&self, id: SessionId) {
        let owner = {
            let calls = self.calls.lock().expect("calls lock");
            calls.get(&id).map(|call| call.owner)
        };
        if let Some(owner) = owner {
            if let Err(error) = self.end(owner, id).await {
                tracing::warn!(session_id = %id, %error, "could not end a call another node was asked to end");
            }
        }
    }

    /// [`CallManager::end`], recording `reason` unless the call's own end gets there first.
    async fn end_because(
        &self,
        owner: UserId,
        id: SessionId,
        reason: SessionEndReason,
    ) -> Result<SessionRecord, CallError> {
        let record = self.store.session(id).await?.ok_or(CallError::NotFound)?;
        if record.user_id != owner {
            return Err(CallError::NotFound);
        }
        let live = {
            let mut calls = self.calls.lock().expect("calls lock");
            match calls.get(&id) {
                Some(call) if call.owner == owner => calls.remove(&id),
                _ => None,
            }
        };
        let here = live.is_some();
        let mut recorder_ran = false;
        if let Some(LiveCall {
            state:
                CallState::Running {
                    handle,
                    recorder,
                    media,
                },
            ..
        }) = live
        {
            handle.end();
            // The recorder finalizes the session when the agent reports its end, and tells the
            // other nodes.
            let _ = tokio::time::timeout(END_WAIT, recorder).await;
            drop(media);
            recorder_ran = true;
        }
        let ended = self
            .store
            .end_session_because(id, Utc::now().max(record.started_at), None, reason)
            .await?;
        if record.is_active() {
            if !here {
                // Not running here: perhaps on another node, which ends the call when told.
                crate::nodes::announce(&self.store, id, store::LiveChange::EndRequested).await;
            }
            if !recorder_ran {
                // No recorder tells the screens elsewhere (a room nobody joined, or a call on
                // another node, whose own end may never come if that node is gone).
                crate::nodes::announce(&self.store, id, store::LiveChange::Ended).await;
            }
        }
        Ok(ended)
    }

    /// The live feed of a session the caller owns, if it is running on this node.
    pub fn feed(&self, owner: UserId, id: SessionId) -> Option<Arc<Feed>> {
        let calls = self.calls.lock().expect("calls lock");
        calls
            .get(&id)
            .filter(|call| call.owner == owner)
            .map(|call| call.feed.clone())
    }

    /// Forgets calls whose agent has ended on its own (closed tab, idle timeout) and ends rooms
    /// nobody connected to within `connect_within`. Returns how many were closed.
    pub async fn close_abandoned(&self, connect_within: Duration) -> usize {
        let abandoned: Vec<(SessionId, UserId)> = {
            let mut calls = self.calls.lock().expect("calls lock");
            let finished: Vec<SessionId> = calls
                .iter()
                .filter(|(_, call)| matches!(&call.state, CallState::Running { recorder, .. } if recorder.is_finished()))
                .map(|(id, _)| *id)
                .collect();
            for id in finished {
                calls.remove(&id);
            }
            calls
                .iter()
                .filter(|(_, call)| {
                    matches!(call.state, CallState::Waiting)
                        && call.opened.elapsed() > connect_within
                })
                .map(|(id, call)| (*id, call.owner))
                .collect()
        };
        let mut closed = 0;
        for (id, owner) in abandoned {
            if self.discard_unjoined(owner, id).await {
                closed += 1;
            }
        }
        closed
    }

    /// Closes a room nobody joined: its session is ended and deleted (it was never a
    /// conversation, so it has no place in the student's history). Returns whether a waiting
    /// room was closed; a room that connected meanwhile is left alone.
    async fn discard_unjoined(&self, owner: UserId, id: SessionId) -> bool {
        let removed = {
            let mut calls = self.calls.lock().expect("calls lock");
            let waiting = calls.get(&id).is_some_and(|call| {
                call.owner == owner && matches!(call.state, CallState::Waiting)
            });
            waiting.then(|| calls.remove(&id)).flatten()
        };
        let Some(room) = removed else {
            return false;
        };
        async {
            let ended = self
                .store
                .end_session_because(id, Utc::now(), None, SessionEndReason::Ended)
                .await;
            let deleted = self.store.soft_delete_session(owner, id).await;
            match (ended, deleted) {
                (Ok(_), Ok(_)) => tracing::info!("closed a room nobody joined"),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "could not close a room nobody joined")
                }
            }
        }
        .instrument(room.span)
        .await;
        true
    }
}

impl CallManager {
    /// Whether [`CallManager::drain`] has begun: no new rooms are opened.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// For a server shutting down: opens no more rooms, then ends every call on this node
    /// through the normal end path (the agent stops, the history keeps what the student heard,
    /// the session is finalized with [`SessionEndReason::ServerShutdown`], the room is gone),
    /// all at once, waiting at most `within`. Returns how many calls were still live when it
    /// gave up waiting (0 when all ended).
    pub async fn drain(&self, within: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let live: Vec<(SessionId, UserId)> = {
            let calls = self.calls.lock().expect("calls lock");
            calls.iter().map(|(id, call)| (*id, call.owner)).collect()
        };
        let ending = futures::future::join_all(live.iter().map(|(id, owner)| async move {
            if let Err(error) = self
                .end_because(*owner, *id, SessionEndReason::ServerShutdown)
                .await
            {
                tracing::error!(session_id = %id, %error, "could not end a call at shutdown");
            }
        }));
        if tokio::time::timeout(within, ending).await.is_err() {
            tracing::warn!(
                left = self.active_calls(),
                "shutdown: calls still ending when the wait ran out"
            );
        }
        self.active_calls()
    }
}

/// Compares secrets in time that depends on their length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

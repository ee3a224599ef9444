//! Starting and ending voice and video calls, and the WebRTC handshake of the in-process agent.
//!
//! `create-room` records the session and reserves a room; the browser then posts its WebRTC
//! offer to the room's URL with the room token, and the counselor starts. `end-session` is
//! idempotent: ending an ended session answers with the same record.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::{Category, CategoryId, SessionId, SessionMode};
use serde::{Deserialize, Serialize};
use store::{CounselorCategory, SessionRecord};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::calls::CallError;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{session_id, Json, SessionPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_voice_room))
        .routes(routes!(end_voice_session))
        .routes(routes!(create_video_room))
        .routes(routes!(end_video_session))
        .routes(routes!(answer_offer))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreateRoomRequest {
    /// The counselor: its name (`"Health"`, `"Personal Development"`) or its id.
    pub counselor_category: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateRoomResponse {
    /// Where the browser posts its WebRTC offer (with `user_token` as a bearer token).
    pub room_url: String,
    /// The room token: valid for this session's room only.
    pub user_token: String,
    pub room_name: String,
    #[schema(value_type = uuid::Uuid)]
    pub session_id: SessionId,
    /// The live transcript: `GET` with a WebSocket upgrade, signed in by cookie or `?token=`.
    pub websocket_url: String,
    /// How the browser connects: `local` (WebRTC straight to this server).
    pub transport: &'static str,
    /// STUN/TURN servers for the browser (empty: host candidates only).
    pub ice_servers: Vec<IceServerView>,
    /// Video sessions: the avatar that speaks. `null` when the browser draws it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IceServerView {
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EndSessionRequest {
    pub session_id: String,
    /// Accepted for compatibility and ignored: the server records the transcript itself as it is
    /// said, so a client cannot rewrite it.
    #[allow(dead_code)]
    pub transcript: Option<String>,
    /// Accepted for compatibility and ignored.
    #[allow(dead_code)]
    pub avatar_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndSessionResponse {
    #[schema(value_type = uuid::Uuid)]
    pub session_id: SessionId,
    pub status: &'static str,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SessionDescription {
    /// `offer` from the browser, `answer` from the server.
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

/// Creates a voice session: records it, reserves a room, and returns what the browser needs to
/// connect. Limited to 10 per minute per student.
#[utoipa::path(post, path = "/voice/create-room", tag = "Voice Sessions",
    request_body = CreateRoomRequest,
    responses(
        (status = 200, description = "Room ready", body = CreateRoomResponse),
        (status = 403, description = "The student has not accepted the current first-visit notice (NOTICE_002)", body = ErrorBody),
        (status = 404, description = "No such counselor (COUNSELOR_001)", body = ErrorBody),
        (status = 409, description = "The counselor is disabled (COUNSELOR_002)", body = ErrorBody),
        (status = 422, description = "`counselor_category` is neither a counselor's name nor an id (VALIDATION_001)", body = ErrorBody),
        (status = 429, description = "Too many sessions started (RATE_LIMIT_001)", body = ErrorBody),
        (status = 502, description = "This node was full and passed the request on to another, which did not answer in time (NODE_001)", body = ErrorBody),
        (status = 503, description = "Every node is at its call capacity (CAPACITY_001), or this one is shutting down (SHUTDOWN_001); `Retry-After` says when to try again", body = ErrorBody),
    ))]
pub async fn create_voice_room(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(request): Json<CreateRoomRequest>,
) -> Result<Response, ApiError> {
    create_room(state, user, &headers, request, SessionMode::Voice).await
}

/// Creates a video session with a talking avatar. Limited to 10 per minute per student.
#[utoipa::path(post, path = "/video/create-room", tag = "Video Sessions",
    request_body = CreateRoomRequest,
    responses(
        (status = 200, description = "Room ready", body = CreateRoomResponse),
        (status = 403, description = "The student has not accepted the current first-visit notice (NOTICE_002)", body = ErrorBody),
        (status = 404, description = "No such counselor (COUNSELOR_001)", body = ErrorBody),
        (status = 409, description = "The counselor is disabled (COUNSELOR_002)", body = ErrorBody),
        (status = 422, description = "`counselor_category` is neither a counselor's name nor an id (VALIDATION_001)", body = ErrorBody),
        (status = 429, description = "Too many sessions started (RATE_LIMIT_001)", body = ErrorBody),
        (status = 502, description = "This node was full and passed the request on to another, which did not answer in time (NODE_001)", body = ErrorBody),
        (status = 503, description = "Every node is at its call capacity (CAPACITY_001), or this one is shutting down (SHUTDOWN_001); `Retry-After` says when to try again", body = ErrorBody),
    ))]
pub async fn create_video_room(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(request): Json<CreateRoomRequest>,
) -> Result<Response, ApiError> {
    create_room(state, user, &headers, request, SessionMode::Video).await
}

/// Ends a voice session. Idempotent.
#[utoipa::path(post, path = "/voice/end-session", tag = "Voice Sessions",
    request_body = EndSessionRequest,
    responses(
        (status = 200, description = "Session ended", body = EndSessionResponse),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
    ))]
pub async fn end_voice_session(
    State(state): State<AppState>,
    user: AuthUser,
    Json(request): Json<EndSessionRequest>,
) -> Result<Json<EndSessionResponse>, ApiError> {
    end_session(state, user, request).await
}

/// Ends a video session. Idempotent.
#[utoipa::path(post, path = "/video/end-session", tag = "Video Sessions",
    request_body = EndSessionRequest,
    responses(
        (status = 200, description = "Session ended", body = EndSessionResponse),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
    ))]
pub async fn end_video_session(
    State(state): State<AppState>,
    user: AuthUser,
    Json(request): Json<EndSessionRequest>,
) -> Result<Json<EndSessionResponse>, ApiError> {
    end_session(state, user, request).await
}

/// The WebRTC handshake: the browser's SDP offer in, the server's answer out. Authenticated by
/// the room token from `create-room` (`Authorization: Bearer <user_token>`). Any node takes it: an
/// offer for a room on another node is passed on to that node, which answers. A later offer for
/// a call already connected is an ICE restart after a network change: answered on the same call.
#[utoipa::path(post, path = "/rtc/sessions/{session_id}/offer", tag = "Voice Sessions",
    params(("session_id" = uuid::Uuid, Path, description = "The session's id")),
    request_body = SessionDescription,
    responses(
        (status = 200, description = "The SDP answer; for a call already connected, the answer to its ICE restart", body = SessionDescription),
        (status = 401, description = "No room token (AUTH_004)", body = ErrorBody),
        (status = 404, description = "No such room, the token is not its room token, or the account has been blocked or signed out since the room was opened (the room is then closed): the same answer for all (SESSION_001)", body = ErrorBody),
        (status = 409, description = "Ended, or an offer from another browser for a call already connected (SESSION_002)", body = ErrorBody),
        (status = 422, description = "Not a usable offer (VALIDATION_001)", body = ErrorBody),
        (status = 502, description = "The room is on another node, which did not answer in time (NODE_001)", body = ErrorBody),
    ))]
pub async fn answer_offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionPath(id): SessionPath,
    Json(offer): Json<SessionDescription>,
) -> Result<Response, ApiError> {
    let token = crate::auth::bearer_token(&headers).ok_or(ApiError::NotAuthenticated)?;
    if offer.kind != "offer" {
        return Err(ApiError::validation("type", "must be \"offer\""));
    }
    if offer.sdp.trim().is_empty() {
        return Err(ApiError::validation(
            "sdp",
            "must be a WebRTC session description",
        ));
    }
    let answer = match state.calls.connect(id, token, &offer.sdp).await {
        Ok(answer) => answer,
        // The room may be on another node: it checks the token and answers, and the browser's
        // media then goes straight to that node.
        Err(CallError::NotFound) if !crate::nodes::was_forwarded(&headers) => {
            let Some(node) = crate::nodes::runner_elsewhere(&state, id).await? else {
                return Err(ApiError::SessionNotFound);
            };
            let body = serde_json::to_vec(&offer).expect("an offer serializes");
            let path = format!("/api/v1/rtc/sessions/{id}/offer");
            return crate::nodes::forward(&state, &node, &path, &headers, body).await;
        }
        Err(error) => return Err(call_error(error)),
    };
    Ok(Json(SessionDescription {
        kind: "answer".to_owned(),
        sdp: answer,
    })
    .into_response())
}

async fn create_room(
    state: AppState,
    user: AuthUser,
    headers: &HeaderMap,
    request: CreateRoomRequest,
    mode: SessionMode,
) -> Result<Response, ApiError> {
    // A node that runs all the calls it can, or is shutting down, passes the request on to one
    // with calls to spare, which counts it against the student's limit: it is counted once. A
    // node that has filled up since its last heartbeat (or is shutting down) answers 503, and a
    // node that died since its last heartbeat takes no connection: either way the next is
    // asked; when none can, this node answers as it would alone.
    let full = state.calls.active_calls() >= state.calls.capacity();
    if (full || state.calls.is_draining()) && !crate::nodes::was_forwarded(headers) {
        let path = match mode {
            SessionMode::Voice => "/api/v1/voice/create-room",
            SessionMode::Video => "/api/v1/video/create-room",
        };
        let body = serde_json::to_vec(&request).expect("a request serializes");
        for node in crate::nodes::with_calls_to_spare(&state).await? {
            match crate::nodes::try_forward(&state, &node, path, headers, body.clone()).await {
                Ok(answer) if answer.status() == StatusCode::SERVICE_UNAVAILABLE => continue,
                Ok(answer) => return Ok(answer),
                // It never saw the request; one that may have can't be asked twice.
                Err(crate::nodes::ForwardError::NotConnected) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
    state.rate_limits.session_create.check(user.id).await?;
    crate::routes::notice::require_accepted(&state, &user).await?;
    let category = resolve_category(&state, &request.counselor_category).await?;
    let room = state
        .calls
        .open(user.id, user.token_epoch, &category, mode)
        .await
        .map_err(call_error)?;
    let id = room.session.id;
    Ok(Json(CreateRoomResponse {
        room_url: format!("/api/v1/rtc/sessions/{id}/offer"),
        user_token: room.room_token,
        room_name: room.room_name,
        session_id: id,
        websocket_url: format!("/ws/sessions/{id}/transcript"),
        transport: "local",
        ice_servers: state
            .config
            .voice
            .webrtc
            .ice_servers
            .iter()
            .map(|server| IceServerView {
                urls: server.urls.clone(),
            })
            .collect(),
        avatar_id: None,
    })
    .into_response())
}

async fn end_session(
    state: AppState,
    user: AuthUser,
    request: EndSessionRequest,
) -> Result<Json<EndSessionResponse>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let id = session_id(&request.session_id)?;
    let record: SessionRecord = state.calls.end(user.id, id).await.map_err(call_error)?;
    Ok(Json(EndSessionResponse {
        session_id: record.id,
        status: "ended",
        ended_at: record.ended_at,
        duration_seconds: record.duration_seconds,
    }))
}

/// A counselor by name (`"Health"`, case-insensitive) or by id; disabled ones are not offered.
async fn resolve_category(state: &AppState, raw: &str) -> Result<CounselorCategory, ApiError> {
    let raw = raw.trim();
    let all = state.categories.all().await?;
    let found = if let Ok(id) = raw.parse::<CategoryId>() {
        all.iter().find(|c| c.id == id)
    } else if let Ok(category) = raw.parse::<Category>() {
        all.iter().find(|c| c.category == category)
    } else {
        return Err(ApiError::validation(
            "counselor_category",
            "must be a counselor's name (Health, Career, Academic, Financial, Social, Personal Development) or id",
        ));
    };
    match found {
        Some(c) if c.enabled => Ok(c.clone()),
        Some(_) => Err(ApiError::CategoryDisabled),
        None => Err(ApiError::CategoryNotFound),
    }
}

fn call_error(error: CallError) -> ApiError {
    match error {
        CallError::NotFound => ApiError::SessionNotFound,
        CallError::AlreadyConnected | CallError::AlreadyEnded => ApiError::SessionAlreadyEnded,
        CallError::AtCapacity(_) => ApiError::AtCapacity,
        CallError::ShuttingDown => ApiError::ShuttingDown,
        CallError::VoiceUnavailable => ApiError::VoiceUnavailable,
        CallError::Offer(reason) => ApiError::validation("sdp", reason),
        CallError::Store(e) => e.into(),
    }
}

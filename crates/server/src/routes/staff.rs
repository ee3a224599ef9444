//! Staff on duty: the crisis review queue and the live crisis feed.
//!
//! Only staff reach these routes; everyone else gets the unknown route's 404 (see
//! [`crate::auth::staff_gate`]). Staff read the student's words here under FERPA's
//! health-and-safety exception, so every event shown and every review is audited, and the words
//! never go to the logs.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::{CrisisLevel, CrisisSignal, DecidedBy, ReviewOutcome, SessionId, Username};
use serde::{Deserialize, Serialize};
use store::{
    AuditAction, AuditEntry, AuditResource, CrisisQueueItem, CrisisReview, ReviewStatusFilter,
    StoreError, MAX_REVIEW_NOTE_CHARS,
};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::StaffUser;
use crate::crisis_desk::{DeskNotice, FlaggedEvent};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ClientInfo, Json, Path, Query};
use crate::routes::sessions::{page_params, text};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_crisis_events))
        .routes(routes!(review_crisis_event))
}

/// The live feed, outside the API prefix like the transcript socket.
pub fn socket_routes() -> Router<AppState> {
    Router::new().route("/ws/staff/crisis", get(crisis_socket))
}

/// Whether an event still waits for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Open,
    Reviewed,
}

/// A crisis event as staff see it, in the queue and on the live feed alike.
#[derive(Debug, Serialize, ToSchema)]
pub struct CrisisEventView {
    pub id: Uuid,
    #[schema(value_type = uuid::Uuid)]
    pub session_id: SessionId,
    /// The student who said it.
    #[schema(value_type = String, example = "\\COLLEGE\\jdoe")]
    pub student_username: Username,
    /// `concern` or `crisis`.
    #[schema(value_type = String, example = "crisis")]
    pub level: CrisisLevel,
    #[schema(value_type = String, example = "suicidal_ideation")]
    pub signal: CrisisSignal,
    /// `rule`, `model` or `both`; null for events recorded before this was kept.
    #[schema(value_type = Option<String>, example = "rule")]
    pub decided_by: Option<DecidedBy>,
    pub created_at: DateTime<Utc>,
    /// The utterance that raised the event; null once the transcript was erased (deleted by
    /// the student or past retention).
    pub text: Option<String>,
    pub status: ReviewStatus,
    /// The reviewer's username.
    #[schema(value_type = Option<String>)]
    pub reviewed_by: Option<Username>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    #[schema(value_type = Option<String>, example = "contacted_student")]
    pub outcome: Option<ReviewOutcome>,
}

impl From<CrisisQueueItem> for CrisisEventView {
    fn from(item: CrisisQueueItem) -> Self {
        let review = item.event.review;
        CrisisEventView {
            id: item.event.id,
            session_id: item.event.session_id,
            student_username: item.student,
            level: item.event.level,
            signal: item.event.signal,
            decided_by: item.event.decided_by,
            created_at: item.event.created_at,
            text: item.text.map(|t| t.into_string()),
            status: if review.is_some() {
                ReviewStatus::Reviewed
            } else {
                ReviewStatus::Open
            },
            reviewed_by: item.reviewed_by,
            reviewed_at: review.as_ref().map(|r| r.reviewed_at),
            note: review.as_ref().and_then(|r| r.note.clone()),
            outcome: review.map(|r| r.outcome),
        }
    }
}

impl From<&FlaggedEvent> for CrisisEventView {
    fn from(event: &FlaggedEvent) -> Self {
        CrisisEventView {
            id: event.event_id,
            session_id: event.session_id,
            student_username: event.student.clone(),
            level: event.level,
            signal: event.signal,
            decided_by: event.decided_by,
            created_at: event.created_at,
            text: Some(event.text.as_str().to_owned()),
            status: ReviewStatus::Open,
            reviewed_by: None,
            reviewed_at: None,
            note: None,
            outcome: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrisisEventPage {
    pub events: Vec<CrisisEventView>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CrisisQueueQuery {
    /// `open` (default: not yet reviewed), `reviewed` or `all`.
    pub status: Option<String>,
    /// Page number, from 1 (default 1).
    pub page: Option<String>,
    /// Events per page, 1 to 100 (default 20).
    pub per_page: Option<String>,
}

impl CrisisQueueQuery {
    fn validate(&self) -> Result<(ReviewStatusFilter, u32, u32), ApiError> {
        let status = match text(&self.status) {
            None | Some("open") => ReviewStatusFilter::Open,
            Some("reviewed") => ReviewStatusFilter::Reviewed,
            Some("all") => ReviewStatusFilter::All,
            Some(_) => {
                return Err(ApiError::validation(
                    "status",
                    "must be open, reviewed or all",
                ))
            }
        };
        let (page, per_page) = page_params(&self.page, &self.per_page)?;
        Ok((status, page, per_page))
    }
}

/// A staff member's review. Reviews are final.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReviewRequest {
    /// `contacted_student`, `referred`, `false_alarm`, `no_action_needed` or
    /// `escalated_emergency`.
    #[schema(value_type = String, example = "contacted_student")]
    pub outcome: ReviewOutcome,
    /// What was done, at most 2000 characters.
    #[serde(default)]
    pub note: Option<String>,
}

fn audit_entry(
    staff: &StaffUser,
    client: &ClientInfo,
    action: AuditAction,
    resource_type: AuditResource,
    resource_id: Uuid,
) -> AuditEntry {
    AuditEntry {
        user_id: Some(staff.0.id),
        action,
        resource_type,
        resource_id,
        ip: Some(client.ip),
        user_agent: client.user_agent.clone(),
    }
}

/// The crisis review queue, newest first. Staff only; each event shown is audited.
#[utoipa::path(get, path = "/staff/crisis-events", tag = "Staff",
    params(CrisisQueueQuery),
    responses(
        (status = 200, description = "One page of crisis events, with the students' words", body = CrisisEventPage),
        (status = 404, description = "Not signed in as staff: answered like an unknown route (NOT_FOUND)", body = ErrorBody),
        (status = 422, description = "A parameter is invalid; the detail names it (VALIDATION_001)", body = ErrorBody),
    ))]
pub async fn list_crisis_events(
    State(state): State<AppState>,
    staff: StaffUser,
    client: ClientInfo,
    Query(query): Query<CrisisQueueQuery>,
) -> Result<Json<CrisisEventPage>, ApiError> {
    state.rate_limits.default.check(staff.0.id).await?;
    let (status, page, per_page) = query.validate()?;
    let (items, total) = state
        .store
        .list_crisis_events(status, page, per_page)
        .await?;
    // Recorded before the words leave the server.
    let shown: Vec<AuditEntry> = items
        .iter()
        .map(|item| {
            audit_entry(
                &staff,
                &client,
                AuditAction::ViewCrisisEvent,
                AuditResource::CrisisEvent,
                item.event.id,
            )
        })
        .collect();
    state.store.record_audits(&shown).await?;
    tracing::info!(shown = shown.len(), total, "crisis queue viewed");
    Ok(Json(CrisisEventPage {
        events: items.into_iter().map(CrisisEventView::from).collect(),
        total,
        page,
        per_page,
    }))
}

/// Records the outcome of a crisis event's review (once). Staff only; audited.
#[utoipa::path(post, path = "/staff/crisis-events/{event_id}/review", tag = "Staff",
    params(("event_id" = uuid::Uuid, Path, description = "The crisis event's id")),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "The event, now reviewed", body = CrisisEventView),
        (status = 403, description = "Cookie request from a foreign origin (AUTH_005)", body = ErrorBody),
        (status = 404, description = "No such event (CRISIS_001); for anyone but staff, an unknown route (NOT_FOUND)", body = ErrorBody),
        (status = 409, description = "Already reviewed (CRISIS_002)", body = ErrorBody),
        (status = 422, description = "Unknown outcome or a note over 2000 characters (VALIDATION_001)", body = ErrorBody),
    ))]
pub async fn review_crisis_event(
    State(state): State<AppState>,
    staff: StaffUser,
    client: ClientInfo,
    Path(raw_id): Path<String>,
    Json(request): Json<ReviewRequest>,
) -> Result<Json<CrisisEventView>, ApiError> {
    state.rate_limits.default.check(staff.0.id).await?;
    let id: Uuid = raw_id
        .parse()
        .map_err(|_| ApiError::validation("event_id", "must be a UUID"))?;
    if let Some(note) = &request.note {
        if note.chars().count() > MAX_REVIEW_NOTE_CHARS {
            return Err(ApiError::validation(
                "note",
                format!("must be at most {MAX_REVIEW_NOTE_CHARS} characters"),
            ));
        }
    }
    let review = CrisisReview {
        reviewer: staff.0.id,
        outcome: request.outcome,
        note: request.note,
    };
    let reviewed = state
        .store
        .review_crisis_event(id, review)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::CrisisEventNotFound,
            StoreError::Conflict(_) => ApiError::CrisisEventAlreadyReviewed,
            other => other.into(),
        })?;
    state
        .store
        .record_audit(audit_entry(
            &staff,
            &client,
            AuditAction::ReviewCrisisEvent,
            AuditResource::CrisisEvent,
            id,
        ))
        .await?;
    tracing::info!(event_id = %id, outcome = %request.outcome, "crisis event reviewed");
    Ok(Json(reviewed.into()))
}

/// One staff socket message, `{"type": "crisis_event", ...the event's fields}`; `resync` asks
/// the page to reload the queue (it missed events while too slow to keep up, or events flagged on
/// another node while this node's connection to the others' notices was down).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StaffMessage<'a> {
    CrisisEvent(&'a CrisisEventView),
    Resync,
}

/// `GET /ws/staff/crisis`: every event flagged from now on, on any node, as it is stored.
/// Signed in like the transcript socket (cookie, bearer or `?token=`); audited once per
/// connection.
async fn crisis_socket(
    State(state): State<AppState>,
    staff: StaffUser,
    client: ClientInfo,
    parts: Parts,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Browsers send cookies with cross-site WebSocket handshakes: only our own pages may open one.
    if parts.headers.contains_key(axum::http::header::ORIGIN)
        && !crate::auth::origin_allowed(&parts, &state.config.allowed_origins)
    {
        return Err(ApiError::OriginNotAllowed);
    }
    let connection = Uuid::new_v4();
    state
        .store
        .record_audit(audit_entry(
            &staff,
            &client,
            AuditAction::ViewCrisisFeed,
            AuditResource::CrisisFeed,
            connection,
        ))
        .await?;
    tracing::info!(%connection, "staff crisis feed opened");
    let live = state.crisis_desk.subscribe();
    Ok(upgrade.on_upgrade(move |socket| relay(socket, live, state, staff, connection)))
}

async fn relay(
    mut socket: WebSocket,
    mut live: tokio::sync::broadcast::Receiver<DeskNotice>,
    state: AppState,
    staff: StaffUser,
    connection: Uuid,
) {
    let account = &staff.0;
    // Blocked, signed out or no longer staff: the feed closes within about a second.
    let revoked = crate::auth::until_revoked(&state.store, account.id, account.token_epoch, true);
    tokio::pin!(revoked);
    let why = loop {
        tokio::select! {
            received = live.recv() => {
                let message = match received {
                    Ok(DeskNotice::Flagged(event)) => {
                        // No words go out to an account that has since lost staff access.
                        if let Err(why) = standing_now(&state, &staff).await {
                            break why;
                        }
                        serde_json::to_string(&StaffMessage::CrisisEvent(&CrisisEventView::from(&*event)))
                    }
                    Ok(DeskNotice::Missed) | Err(RecvError::Lagged(_)) => {
                        serde_json::to_string(&StaffMessage::Resync)
                    }
                    Err(RecvError::Closed) => {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                };
                let json = message.expect("staff messages serialize");
                if socket.send(Message::Text(json.into())).await.is_err() {
                    return;
                }
            }
            why = &mut revoked => break why,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    };
    tracing::info!(%connection, reason = why.close_reason(), "staff crisis feed closed: access withdrawn");
    let _ = socket.send(crate::routes::live::revoked_close(why)).await;
}

/// Whether the account behind a socket may still see the feed, read now (see
/// [`crate::auth::standing`]). A database blip does not cut staff off from alerts.
async fn standing_now(state: &AppState, staff: &StaffUser) -> Result<(), crate::auth::Revocation> {
    match state.store.user(staff.0.id).await {
        Ok(user) => crate::auth::standing(user.as_ref(), staff.0.token_epoch, true),
        Err(_) => Ok(()),
    }
}

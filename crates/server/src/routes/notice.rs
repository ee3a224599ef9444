//! The first-visit notice and its acceptance, once per account (see [`crate::notice`]).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::{AuditAction, AuditEntry, AuditResource};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ClientInfo, Json};
use crate::notice::{Notice, NoticeFacts};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_notice))
        .routes(routes!(accept_notice))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeSectionView {
    pub heading: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    /// Identifies this wording; send it back to accept it.
    #[schema(example = "3f9a0c1d27b4e815")]
    pub version: String,
    pub sections: Vec<NoticeSectionView>,
    /// When the signed-in student accepted this wording; null until they do.
    pub accepted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptNoticeRequest {
    /// The `version` of the notice the student read.
    #[schema(example = "3f9a0c1d27b4e815")]
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeAcceptanceView {
    #[schema(example = "3f9a0c1d27b4e815")]
    pub version: String,
    /// When it was first accepted.
    pub accepted_at: DateTime<Utc>,
}

/// The notice as this server words it now (staff alerts as the crisis desk delivers them).
async fn current_notice(state: &AppState) -> Result<Notice, ApiError> {
    let staff_alerts = state.crisis_desk.reaches_staff(&state.store).await?;
    Ok(Notice::for_facts(NoticeFacts {
        retention_days: state.config.transcript_retention_days,
        staff_alerts,
        all_in_process: state.config.voice.all_in_process(),
    }))
}

/// Refuses a student who has not accepted the notice as it is worded now: nobody starts a
/// session without having been told what is recorded and who sees it.
pub async fn require_accepted(state: &AppState, user: &AuthUser) -> Result<(), ApiError> {
    let notice = current_notice(state).await?;
    match state
        .store
        .notice_accepted_at(user.id, &notice.version)
        .await?
    {
        Some(_) => Ok(()),
        None => Err(ApiError::NoticeNotAccepted),
    }
}

/// What counsel records, who can see it, how long it is kept, that the counselor is an AI and
/// what happens in a crisis, with whether the signed-in student has accepted it.
#[utoipa::path(get, path = "/notice", tag = "Authentication",
    responses(
        (status = 200, description = "The notice, and when the student accepted it", body = NoticeView),
        (status = 401, description = "Not signed in (AUTH_004)", body = ErrorBody),
    ))]
pub async fn get_notice(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<NoticeView>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let notice = current_notice(&state).await?;
    let accepted_at = state
        .store
        .notice_accepted_at(user.id, &notice.version)
        .await?;
    Ok(Json(NoticeView {
        version: notice.version.to_string(),
        sections: notice
            .sections
            .into_iter()
            .map(|s| NoticeSectionView {
                heading: s.heading.to_owned(),
                text: s.text,
            })
            .collect(),
        accepted_at,
    }))
}

/// Accepts the notice the student was shown, once per wording; accepting again returns the
/// first acceptance. The acceptance and its time are audited.
#[utoipa::path(post, path = "/notice/acceptance", tag = "Authentication",
    request_body = AcceptNoticeRequest,
    responses(
        (status = 200, description = "Accepted (now or before)", body = NoticeAcceptanceView),
        (status = 401, description = "Not signed in (AUTH_004)", body = ErrorBody),
        (status = 403, description = "Cookie request from a foreign origin (AUTH_005)", body = ErrorBody),
        (status = 409, description = "The notice has changed since it was shown; read it again (NOTICE_001)", body = ErrorBody),
    ))]
pub async fn accept_notice(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientInfo,
    Json(request): Json<AcceptNoticeRequest>,
) -> Result<Json<NoticeAcceptanceView>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let notice = current_notice(&state).await?;
    // Only the words the student could have read can be accepted.
    if request.version.trim() != notice.version.as_str() {
        return Err(ApiError::NoticeChanged);
    }
    let acceptance = state
        .store
        .accept_notice(
            &notice.version,
            AuditEntry {
                user_id: Some(user.id),
                action: AuditAction::AcceptNotice,
                resource_type: AuditResource::Account,
                resource_id: *user.id.as_uuid(),
                ip: Some(client.ip),
                user_agent: client.user_agent,
            },
        )
        .await?;
    if acceptance.newly_recorded {
        tracing::info!(version = %acceptance.version, "notice accepted");
    }
    Ok(Json(NoticeAcceptanceView {
        version: acceptance.version.to_string(),
        accepted_at: acceptance.accepted_at,
    }))
}

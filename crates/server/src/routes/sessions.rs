//! Session history: list, read, download and delete one's own past sessions.
//!
//! A session that belongs to someone else, or that was deleted, is answered exactly like one that
//! never existed (404 `SESSION_001`): a student cannot even learn that another's session exists.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDate, Utc};
use domain::{Category, Rating, RatingComment, SessionId, SessionMode, Speaker};
use serde::{Deserialize, Serialize};
use store::{
    AuditAction, AuditEntry, AuditResource, NewRating, RateOutcome, SessionDetail, SessionFilter,
    SessionRecord,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{session_id, ClientInfo, Json, Path, Query, SessionPath};
use crate::state::AppState;

pub const DEFAULT_PER_PAGE: u32 = 20;
/// The store owns the largest page (it refuses bigger ones); the API checks against the same value.
pub use store::MAX_PER_PAGE;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(get_session, delete_session))
        .routes(routes!(download_session))
        .routes(routes!(rate_session))
}

/// Filters and paging, all optional. Every value is taken as text and checked here so that a bad
/// value is reported with its parameter's name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// Health, Career, Academic, Financial, Social or Personal Development.
    pub category: Option<String>,
    /// voice or video.
    pub mode: Option<String>,
    /// First day to include (YYYY-MM-DD, UTC).
    pub start_date: Option<String>,
    /// Last day to include (YYYY-MM-DD, UTC).
    pub end_date: Option<String>,
    /// Page number, from 1 (default 1).
    pub page: Option<String>,
    /// Sessions per page, 1 to 100 (default 20).
    pub per_page: Option<String>,
}

/// A validated [`SessionListQuery`].
#[derive(Debug, PartialEq)]
pub struct HistoryQuery {
    pub filter: SessionFilter,
    pub page: u32,
    pub per_page: u32,
}

/// A query parameter with its blanks trimmed; an empty one counts as absent.
pub(crate) fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Every listing's `page` (from 1, default 1) and `per_page` (1 to [`MAX_PER_PAGE`], default
/// [`DEFAULT_PER_PAGE`]) query parameters.
pub(crate) fn page_params(
    page: &Option<String>,
    per_page: &Option<String>,
) -> Result<(u32, u32), ApiError> {
    let number = |field: &'static str, v: &Option<String>, default: u32, max: u32| match text(v) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::validation(field, format!("must be a whole number from 1 to {max}"))
            }),
    };
    Ok((
        number("page", page, 1, 1_000_000)?,
        number("per_page", per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    ))
}

impl SessionListQuery {
    pub fn validate(&self) -> Result<HistoryQuery, ApiError> {
        let category = text(&self.category)
            .map(|c| {
                c.parse::<Category>()
                    .map_err(|e| ApiError::validation("category", e.to_string()))
            })
            .transpose()?;
        let mode = text(&self.mode)
            .map(|m| {
                m.parse::<SessionMode>()
                    .map_err(|e| ApiError::validation("mode", e.to_string()))
            })
            .transpose()?;
        let date = |field: &'static str, v: &Option<String>| {
            text(v)
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|_| ApiError::validation(field, "must be a date like 2026-09-01"))
                })
                .transpose()
        };
        let start_date = date("start_date", &self.start_date)?;
        let end_date = date("end_date", &self.end_date)?;
        if let (Some(start), Some(end)) = (start_date, end_date) {
            if end < start {
                return Err(ApiError::validation(
                    "end_date",
                    "must not be before start_date",
                ));
            }
        }
        let (page, per_page) = page_params(&self.page, &self.per_page)?;
        Ok(HistoryQuery {
            // Both dates are inclusive days in UTC.
            filter: SessionFilter {
                category,
                mode,
                start_date,
                end_date,
            },
            page,
            per_page,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    #[schema(value_type = uuid::Uuid)]
    pub id: SessionId,
    #[schema(value_type = uuid::Uuid)]
    pub user_id: domain::UserId,
    #[schema(value_type = String, example = "Health")]
    pub counselor_category: Category,
    #[schema(value_type = String, example = "voice")]
    pub mode: SessionMode,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i64>,
    #[schema(value_type = Option<String>, example = "good")]
    pub connection_quality: Option<domain::ConnectionQuality>,
    pub crisis_detected: bool,
    /// The student's rating, 1 to 5; null until they rate the session.
    #[schema(value_type = Option<u8>, minimum = 1, maximum = 5, example = 4)]
    pub rating: Option<Rating>,
    /// When they rated it.
    pub rated_at: Option<DateTime<Utc>>,
}

impl From<&SessionRecord> for SessionSummary {
    fn from(s: &SessionRecord) -> Self {
        SessionSummary {
            id: s.id,
            user_id: s.user_id,
            counselor_category: s.category,
            mode: s.mode,
            started_at: s.started_at,
            ended_at: s.ended_at,
            duration_seconds: s.duration_seconds,
            connection_quality: s.connection_quality,
            crisis_detected: s.crisis_detected,
            rating: s.rating.map(|r| r.rating),
            rated_at: s.rating.map(|r| r.rated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptMessageView {
    pub sequence: u32,
    #[schema(value_type = String, example = "student")]
    pub speaker: Speaker,
    pub text: String,
    pub spoken_at: DateTime<Utc>,
    /// Seconds since the session started.
    pub offset_seconds: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetailView {
    #[serde(flatten)]
    pub session: SessionSummary,
    /// The whole conversation as text, one `Speaker: words` line per message.
    pub transcript: String,
    pub messages: Vec<TranscriptMessageView>,
    /// What the student wrote beside their rating; null without one, and once it is erased
    /// with the transcript (deletion, retention).
    pub rating_comment: Option<String>,
}

impl From<SessionDetail> for SessionDetailView {
    fn from(detail: SessionDetail) -> Self {
        let started = detail.record.started_at;
        let messages: Vec<TranscriptMessageView> = detail
            .messages
            .into_iter()
            .filter(|m| m.is_final)
            .map(|m| TranscriptMessageView {
                sequence: m.sequence,
                speaker: m.speaker,
                offset_seconds: (m.timestamp - started).num_seconds().max(0),
                spoken_at: m.timestamp,
                text: m.text.into_string(),
            })
            .collect();
        let transcript = messages
            .iter()
            .map(|m| format!("{}: {}", m.speaker.label(), m.text))
            .collect::<Vec<_>>()
            .join("\n");
        SessionDetailView {
            session: SessionSummary::from(&detail.record),
            transcript,
            messages,
            rating_comment: detail.rating_comment.map(RatingComment::into_string),
        }
    }
}

async fn audit(
    state: &AppState,
    user: &AuthUser,
    session: SessionId,
    action: AuditAction,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    state
        .store
        .record_audit(AuditEntry {
            user_id: Some(user.id),
            action,
            resource_type: AuditResource::Session,
            resource_id: *session.as_uuid(),
            ip: Some(client.ip),
            user_agent: client.user_agent.clone(),
        })
        .await?;
    Ok(())
}

/// The signed-in student's past sessions, newest first.
#[utoipa::path(get, path = "/sessions", tag = "Session History",
    params(SessionListQuery),
    responses(
        (status = 200, description = "One page of sessions", body = SessionPage),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "A filter is invalid; the detail names it (VALIDATION_001)", body = ErrorBody),
        (status = 429, description = "More than the history limit per minute (RATE_LIMIT_001)", body = ErrorBody),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<SessionListQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    state.rate_limits.history.check(user.id).await?;
    let HistoryQuery {
        filter,
        page,
        per_page,
    } = query.validate()?;
    let (records, total) = state
        .store
        .list_sessions(user.id, &filter, page, per_page)
        .await?;
    Ok(Json(SessionPage {
        sessions: records.iter().map(SessionSummary::from).collect(),
        total,
        page,
        per_page,
    }))
}

/// One session with its full transcript. Audited.
#[utoipa::path(get, path = "/sessions/{session_id}", tag = "Session History",
    params(("session_id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session and its transcript", body = SessionDetailView),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
        (status = 429, description = "More than the transcript limit per minute (RATE_LIMIT_001)", body = ErrorBody),
    ))]
pub async fn get_session(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientInfo,
    Path(raw_id): Path<String>,
) -> Result<Json<SessionDetailView>, ApiError> {
    let detail =
        read_transcript(&state, &user, &client, &raw_id, AuditAction::ViewTranscript).await?;
    Ok(Json(detail.into()))
}

/// Every read of a transcript, whatever its form: within the per-student limit, only the
/// owner's, and audited.
async fn read_transcript(
    state: &AppState,
    user: &AuthUser,
    client: &ClientInfo,
    raw_id: &str,
    action: AuditAction,
) -> Result<SessionDetail, ApiError> {
    state.rate_limits.transcript.check(user.id).await?;
    let id = session_id(raw_id)?;
    let detail = state
        .store
        .session_for_user(user.id, id)
        .await?
        .ok_or(ApiError::SessionNotFound)?;
    audit(state, user, id, action, client).await?;
    Ok(detail)
}

/// Deletes a session: it leaves the history and its transcript text is erased. Audited.
#[utoipa::path(delete, path = "/sessions/{session_id}", tag = "Session History",
    params(("session_id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Cookie request from a foreign origin (AUTH_005)", body = ErrorBody),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
    ))]
pub async fn delete_session(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientInfo,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let id = session_id(&raw_id)?;
    if !state.store.soft_delete_session(user.id, id).await? {
        return Err(ApiError::SessionNotFound);
    }
    audit(&state, &user, id, AuditAction::DeleteTranscript, &client).await?;
    tracing::info!(session_id = %id, "session deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A student's rating of a finished session.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RatingRequest {
    /// How helpful the session was, 1 (not at all) to 5 (very).
    #[schema(value_type = u8, minimum = 1, maximum = 5, example = 4)]
    pub rating: Rating,
    /// Anything the student wants to add, at most 500 characters; blank is no comment. Kept as
    /// privately as the transcript.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub comment: Option<String>,
}

/// A session's rating, as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingView {
    #[schema(value_type = uuid::Uuid)]
    pub session_id: SessionId,
    #[schema(value_type = u8, minimum = 1, maximum = 5, example = 4)]
    pub rating: Rating,
    pub comment: Option<String>,
    pub rated_at: DateTime<Utc>,
}

/// Rates one of the student's own sessions after its call has ended, once: 1 to 5 with an
/// optional comment.
#[utoipa::path(post, path = "/sessions/{session_id}/rating", tag = "Session History",
    params(("session_id" = uuid::Uuid, Path, description = "The session's id")),
    request_body = RatingRequest,
    responses(
        (status = 201, description = "The rating, stored", body = RatingView),
        (status = 403, description = "Cookie request from a foreign origin (AUTH_005)", body = ErrorBody),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
        (status = 409, description = "Rated before (SESSION_003), or the call has not ended yet (SESSION_004)", body = ErrorBody),
        (status = 422, description = "A rating that is not a whole number from 1 to 5, or a comment over 500 characters; the detail names the field (VALIDATION_001)", body = ErrorBody),
    ))]
pub async fn rate_session(
    State(state): State<AppState>,
    user: AuthUser,
    SessionPath(id): SessionPath,
    Json(request): Json<RatingRequest>,
) -> Result<(StatusCode, Json<RatingView>), ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let comment = request
        .comment
        .as_deref()
        .map(RatingComment::parse)
        .transpose()
        .map_err(|e| ApiError::validation("comment", e.to_string()))?
        .flatten();
    let rating = NewRating {
        rating: request.rating,
        comment: comment.clone(),
    };
    let record = match state.store.rate_session(user.id, id, rating).await? {
        RateOutcome::Rated(record) => record,
        RateOutcome::NotFound => return Err(ApiError::SessionNotFound),
        RateOutcome::AlreadyRated => return Err(ApiError::SessionAlreadyRated),
        RateOutcome::StillActive => return Err(ApiError::SessionInProgress),
    };
    let stored = record
        .rating
        .ok_or_else(|| ApiError::internal("a rated session read back without its rating"))?;
    // The score and the comment are the student's own; neither goes to the log.
    tracing::info!(session_id = %id, "session rated");
    Ok((
        StatusCode::CREATED,
        Json(RatingView {
            session_id: id,
            rating: stored.rating,
            comment: comment.map(RatingComment::into_string),
            rated_at: stored.rated_at,
        }),
    ))
}

/// The transcript as a text file. Audited.
#[utoipa::path(get, path = "/sessions/{session_id}/download", tag = "Session History",
    params(("session_id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The transcript as an attachment", content_type = "text/plain", body = String),
        (status = 404, description = "No such session of yours (SESSION_001)", body = ErrorBody),
        (status = 429, description = "More than the transcript limit per minute (RATE_LIMIT_001)", body = ErrorBody),
    ))]
pub async fn download_session(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientInfo,
    Path(raw_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let detail = read_transcript(
        &state,
        &user,
        &client,
        &raw_id,
        AuditAction::DownloadTranscript,
    )
    .await?;
    let id = detail.record.id;
    let file_name = format!(
        "counsel-session-{}-{}.txt",
        detail.record.started_at.format("%Y-%m-%d"),
        id
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        transcript_file(&detail),
    ))
}

/// The downloadable transcript: a header, then `[hh:mm:ss] Speaker: words` per message, the time
/// counted from the start of the session.
pub fn transcript_file(detail: &SessionDetail) -> String {
    let s = &detail.record;
    let mut out = String::new();
    out.push_str("Counseling session transcript\n");
    out.push_str(&format!("Counselor: {}\n", s.category));
    out.push_str(&format!("Mode: {}\n", s.mode));
    out.push_str(&format!(
        "Date: {}\n",
        s.started_at.format("%Y-%m-%d %H:%M UTC")
    ));
    let duration = match s.ended_at {
        Some(end) => clock((end - s.started_at).num_seconds()),
        None => "in progress".to_owned(),
    };
    out.push_str(&format!("Duration: {duration}\n\n"));
    if !detail.messages.iter().any(|m| m.is_final) {
        out.push_str("(No transcript: it was deleted or is past the retention period.)\n");
    }
    for m in detail.messages.iter().filter(|m| m.is_final) {
        let offset = (m.timestamp - s.started_at).num_seconds();
        out.push_str(&format!(
            "[{}] {}: {}\n",
            clock(offset),
            m.speaker.label(),
            m.text.as_str()
        ));
    }
    out
}

fn clock(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> SessionListQuery {
        let encoded = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_urlencoded_query(&encoded)
    }

    fn serde_urlencoded_query(q: &str) -> SessionListQuery {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        axum::extract::Query::<SessionListQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    fn field_of(result: Result<HistoryQuery, ApiError>) -> String {
        match result {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_page_one_of_twenty() {
        let q = query(&[]).validate().unwrap();
        assert_eq!((q.page, q.per_page), (1, 20));
        assert_eq!(q.filter, SessionFilter::default());
    }

    #[test]
    fn filters_parse() {
        let q = query(&[
            ("category", "Personal%20Development"),
            ("mode", "video"),
            ("start_date", "2026-01-01"),
            ("end_date", "2026-01-31"),
        ])
        .validate()
        .unwrap();
        assert_eq!(q.filter.category, Some(Category::PersonalDevelopment));
        assert_eq!(q.filter.mode, Some(SessionMode::Video));
        assert_eq!(q.filter.start_date, NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(q.filter.end_date, NaiveDate::from_ymd_opt(2026, 1, 31));
    }

    #[test]
    fn each_bad_value_names_its_parameter() {
        assert_eq!(field_of(query(&[("page", "0")]).validate()), "page");
        assert_eq!(
            field_of(query(&[("per_page", "101")]).validate()),
            "per_page"
        );
        assert_eq!(
            field_of(query(&[("per_page", "ten")]).validate()),
            "per_page"
        );
        assert_eq!(field_of(query(&[("mode", "audio")]).validate()), "mode");
        assert_eq!(
            field_of(query(&[("category", "Dating")]).validate()),
            "category"
        );
        assert_eq!(
            field_of(query(&[("start_date", "01/02/2026")]).validate()),
            "start_date"
        );
        assert_eq!(
            field_of(query(&[("start_date", "2026-02-02"), ("end_date", "2026-02-01")]).validate()),
            "end_date"
        );
    }

    #[test]
    fn clock_formats_offsets() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(3725), "01:02:05");
    }
}

//! The one place where failures become HTTP responses.
//!
//! Every error body is `{"detail": "...", "code": "..."}`. The detail is written for the person
//! using the API; causes (SQL, paths, upstream bodies) are logged with the request id and never
//! sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"detail": "Session not found", "code": "SESSION_001"}))]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub detail: String,
    /// A stable machine-readable code; see the README's table of error codes.
    pub code: String,
}

/// Which external service is down (the seed's `EXTERNAL_00x` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalService {
    /// Daily.co (voice rooms).
    Daily,
    /// LiveKit (video rooms).
    LiveKit,
    /// The language model (Gemini, OpenAI or the offline model).
    Llm,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account blocked")]
    AccountBlocked,
    #[error("token expired")]
    TokenExpired,
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("session not found")]
    SessionNotFound,
    #[error("session already ended")]
    SessionAlreadyEnded,
    /// The student has rated this session before; ratings are final.
    #[error("session already rated")]
    SessionAlreadyRated,
    /// The call is still going on; a session is rated once it has ended.
    #[error("session still in progress")]
    SessionInProgress,
    #[error("counselor category not found")]
    CategoryNotFound,
    #[error("counselor category disabled")]
    CategoryDisabled,
    /// The first-visit notice the student accepted is not the one the server shows now.
    #[error("notice changed")]
    NoticeChanged,
    /// A call was asked for by a student who has not accepted the current first-visit notice.
    #[error("notice not accepted")]
    NoticeNotAccepted,
    /// Staff only: no crisis event with this id.
    #[error("crisis event not found")]
    CrisisEventNotFound,
    /// Staff only: someone has already recorded their review of this event.
    #[error("crisis event already reviewed")]
    CrisisEventAlreadyReviewed,
    #[error("external service unavailable: {service:?}")]
    External {
        service: ExternalService,
        retry_after_secs: Option<u64>,
    },
    /// A request field is invalid; `field` is named in the response.
    #[error("invalid {field}")]
    Validation { field: String, message: String },
    /// The body is not parseable JSON (or not JSON at all).
    #[error("malformed request body")]
    MalformedBody(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("database unavailable")]
    Unavailable,
    /// This node runs as many calls as it is configured for.
    #[error("at call capacity")]
    AtCapacity,
    /// The server is shutting down and opens no new rooms.
    #[error("shutting down")]
    ShuttingDown,
    /// The speech services could not be started (models missing, provider misconfigured).
    #[error("voice service unavailable")]
    VoiceUnavailable,
    /// The node that runs a call did not answer a request passed on to it.
    #[error("node unreachable")]
    NodeUnreachable,
    /// Anything unexpected. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `Retry-After` of a room asked for while the server shuts down: about a restart.
pub const SHUTDOWN_RETRY_AFTER_SECS: u64 = 15;

/// One row of the error table: what a kind of failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSpec {
    /// The stable machine-readable code in the body.
    pub code: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// What the code means, for the README's and the OpenAPI document's tables (Markdown).
    pub meaning: &'static str,
}

/// Declares [`ErrorKind`] and its table together, so a kind cannot exist without its row.
macro_rules! error_table {
    ($($(#[$doc:meta])* $kind:ident => $code:literal, $status:ident, $meaning:literal;)+) => {
        /// Every kind of failure the API answers with; [`ApiError::kind`] maps each error to one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)+
        }

        impl ErrorKind {
            /// Every kind, in the order of the documented table.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)+];

            /// This kind's row of the table.
            pub const fn spec(self) -> ErrorSpec {
                match self {
                    $(ErrorKind::$kind => ErrorSpec {
                        code: $code,
                        status: StatusCode::$status,
                        meaning: $meaning,
                    },)+
                }
            }
        }
    };
}

// The one owner of every error code and its status. The README's table and the OpenAPI
// document's listing are generated from it (`error_table_markdown`), and tests check that both,
// and every code a route's documentation names, agree with it.
error_table! {
    InvalidCredentials => "AUTH_001", UNAUTHORIZED,
        "Invalid username or password (the same answer, in about the same time, for unknown users)";
    AccountBlocked => "AUTH_002", FORBIDDEN, "Account blocked";
    TokenExpired => "AUTH_003", UNAUTHORIZED, "Token expired: sign in again";
    NotAuthenticated => "AUTH_004", UNAUTHORIZED, "Not authenticated: missing or invalid token";
    OriginNotAllowed => "AUTH_005", FORBIDDEN,
        "Cookie-authenticated request from an origin that is not allowed";
    SessionNotFound => "SESSION_001", NOT_FOUND, "Session not found";
    SessionAlreadyEnded => "SESSION_002", CONFLICT, "Session already ended";
    SessionAlreadyRated => "SESSION_003", CONFLICT, "Session already rated; ratings are final";
    SessionInProgress => "SESSION_004", CONFLICT,
        "Session still in progress; it can be rated once it has ended";
    CategoryNotFound => "COUNSELOR_001", NOT_FOUND, "Counselor category not found";
    CategoryDisabled => "COUNSELOR_002", CONFLICT, "Counselor category is disabled";
    NoticeChanged => "NOTICE_001", CONFLICT,
        "The notice has changed since it was shown; read the current one and accept it";
    NoticeNotAccepted => "NOTICE_002", FORBIDDEN,
        "The first-visit notice must be read and accepted before a session starts";
    CrisisEventNotFound => "CRISIS_001", NOT_FOUND, "Crisis event not found (staff only)";
    CrisisEventAlreadyReviewed => "CRISIS_002", CONFLICT,
        "Crisis event already reviewed; reviews are final (staff only)";
    DailyUnavailable => "EXTERNAL_001", SERVICE_UNAVAILABLE, "Voice service (Daily.co) unavailable";
    LiveKitUnavailable => "EXTERNAL_002", SERVICE_UNAVAILABLE,
        "Video service (LiveKit) unavailable";
    LlmUnavailable => "EXTERNAL_003", SERVICE_UNAVAILABLE, "Language model service unavailable";
    Validation => "VALIDATION_001", UNPROCESSABLE_ENTITY, "A field is invalid; the detail names it";
    MalformedBody => "VALIDATION_002", BAD_REQUEST, "The request body is not valid JSON";
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE,
        "The request body must be `application/json`";
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE, "The request body is too large";
    RateLimited => "RATE_LIMIT_001", TOO_MANY_REQUESTS, "Too many requests; see `Retry-After`";
    RouteNotFound => "NOT_FOUND", NOT_FOUND, "No such route";
    MethodNotAllowed => "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED,
        "The route does not accept this method";
    Unavailable => "SERVICE_UNAVAILABLE", SERVICE_UNAVAILABLE, "The database is unreachable";
    AtCapacity => "CAPACITY_001", SERVICE_UNAVAILABLE,
        "The server runs as many calls as it is configured for; see `Retry-After`";
    ShuttingDown => "SHUTDOWN_001", SERVICE_UNAVAILABLE,
        "The server is shutting down and opens no new calls; see `Retry-After`";
    VoiceUnavailable => "VOICE_001", SERVICE_UNAVAILABLE,
        "The voice services could not be started (see the server log)";
    NodeUnreachable => "NODE_001", BAD_GATEWAY,
        "The node that runs this call did not answer in time; try again";
    Internal => "INTERNAL", INTERNAL_SERVER_ERROR,
        "Unexpected server error (details are in the server log under the request id)";
}

impl ErrorKind {
    /// The kind whose code this is, if any.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.spec().code == code)
    }
}

/// The table of error codes as Markdown (`| code | status | meaning |`), as the README holds it
/// and the OpenAPI document's description lists it.
pub fn error_table_markdown() -> String {
    let mut table = String::from("| code | status | meaning |\n|---|---|---|\n");
    for kind in ErrorKind::ALL {
        let spec = kind.spec();
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            spec.code,
            spec.status.as_u16(),
            spec.meaning
        ));
    }
    table
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// Which row of the error table this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::InvalidCredentials => ErrorKind::InvalidCredentials,
            ApiError::AccountBlocked => ErrorKind::AccountBlocked,
            ApiError::TokenExpired => ErrorKind::TokenExpired,
            ApiError::NotAuthenticated => ErrorKind::NotAuthenticated,
            ApiError::OriginNotAllowed => ErrorKind::OriginNotAllowed,
            ApiError::SessionNotFound => ErrorKind::SessionNotFound,
            ApiError::SessionAlreadyEnded => ErrorKind::SessionAlreadyEnded,
            ApiError::SessionAlreadyRated => ErrorKind::SessionAlreadyRated,
            ApiError::SessionInProgress => ErrorKind::SessionInProgress,
            ApiError::CategoryNotFound => ErrorKind::CategoryNotFound,
            ApiError::CategoryDisabled => ErrorKind::CategoryDisabled,
            ApiError::NoticeChanged => ErrorKind::NoticeChanged,
            ApiError::NoticeNotAccepted => ErrorKind::NoticeNotAccepted,
            ApiError::CrisisEventNotFound => ErrorKind::CrisisEventNotFound,
            ApiError::CrisisEventAlreadyReviewed => ErrorKind::CrisisEventAlreadyReviewed,
            ApiError::External { service, .. } => match service {
                ExternalService::Daily => ErrorKind::DailyUnavailable,
                ExternalService::LiveKit => ErrorKind::LiveKitUnavailable,
                ExternalService::Llm => ErrorKind::LlmUnavailable,
            },
            ApiError::Validation { .. } => ErrorKind::Validation,
            ApiError::MalformedBody(_) => ErrorKind::MalformedBody,
            ApiError::UnsupportedMediaType => ErrorKind::UnsupportedMediaType,
            ApiError::PayloadTooLarge => ErrorKind::PayloadTooLarge,
            ApiError::RateLimited { .. } => ErrorKind::RateLimited,
            ApiError::RouteNotFound => ErrorKind::RouteNotFound,
            ApiError::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            ApiError::Unavailable => ErrorKind::Unavailable,
            ApiError::AtCapacity => ErrorKind::AtCapacity,
            ApiError::ShuttingDown => ErrorKind::ShuttingDown,
            ApiError::VoiceUnavailable => ErrorKind::VoiceUnavailable,
            ApiError::NodeUnreachable => ErrorKind::NodeUnreachable,
            ApiError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().spec().status
    }

    pub fn code(&self) -> &'static str {
        self.kind().spec().code
    }

    fn detail(&self) -> String {
        match self {
            ApiError::InvalidCredentials => "Invalid username or password".into(),
            ApiError::AccountBlocked => {
                "Your account has been blocked. Please contact support.".into()
            }
            ApiError::TokenExpired => "Your session has expired. Please sign in again.".into(),
            ApiError::NotAuthenticated => "Not authenticated".into(),
            ApiError::OriginNotAllowed => "Request origin is not allowed".into(),
            ApiError::SessionNotFound => "Session not found".into(),
            ApiError::SessionAlreadyEnded => "Session already ended".into(),
            ApiError::SessionAlreadyRated => {
                "You have already rated this session; ratings cannot be changed".into()
            }
            ApiError::SessionInProgress => {
                "This session is still in progress; rate it once the call has ended".into()
            }
            ApiError::CategoryNotFound => "Counselor category not found".into(),
            ApiError::CategoryDisabled => "This counselor is currently unavailable".into(),
            ApiError::NoticeChanged => {
                "This notice has changed since it was shown; please read it again".into()
            }
            ApiError::NoticeNotAccepted => {
                "Please read and accept the notice about your sessions before starting one".into()
            }
            ApiError::CrisisEventNotFound => "Crisis event not found".into(),
            ApiError::CrisisEventAlreadyReviewed => {
                "This crisis event has already been reviewed; reviews cannot be changed".into()
            }
            ApiError::External {
                service: ExternalService::Daily,
                ..
            } => "Voice service unavailable, please try again soon".into(),
            ApiError::External {
                service: ExternalService::LiveKit,
                ..
            } => "Video service unavailable, please try again soon".into(),
            ApiError::External {
                service: ExternalService::Llm,
                ..
            } => "Counselor service unavailable, please try again soon".into(),
            ApiError::Validation { field, message } => format!("{field}: {message}"),
            ApiError::MalformedBody(why) => format!("Request body is not valid JSON: {why}"),
            ApiError::UnsupportedMediaType => {
                "Request body must be JSON (Content-Type: application/json)".into()
            }
            ApiError::PayloadTooLarge => "Request body is too large".into(),
            ApiError::RateLimited { retry_after_secs } => {
                format!("Too many requests; try again in {retry_after_secs} s")
            }
            ApiError::RouteNotFound => "Not found".into(),
            ApiError::MethodNotAllowed => "Method not allowed".into(),
            ApiError::Unavailable => "Service temporarily unavailable".into(),
            ApiError::AtCapacity => {
                "All counselors are busy right now; please try again in a minute".into()
            }
            ApiError::ShuttingDown => {
                "This server is restarting; please try again in a moment".into()
            }
            ApiError::VoiceUnavailable => {
                "Voice counseling is unavailable on this server right now".into()
            }
            ApiError::NodeUnreachable => {
                "The server running this call did not answer; please try again".into()
            }
            ApiError::Internal(_) => "Internal server error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            ApiError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            ApiError::External {
                retry_after_secs, ..
            } => retry_after_secs,
            ApiError::AtCapacity => Some(30),
            ApiError::ShuttingDown => Some(SHUTDOWN_RETRY_AFTER_SECS),
            _ => None,
        };
        let body = ErrorBody {
            detail: self.detail(),
            code: self.code().to_owned(),
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        match error {
            store::StoreError::Unavailable(_) => ApiError::Unavailable,
            // The store's rule messages are written for people and hold no data.
            store::StoreError::Invalid(rule) => ApiError::validation("request", rule),
            other => ApiError::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::MalformedBody(without_location(&e.body_text()))
            }
            // Well-formed JSON of the wrong shape: serde names the field (`missing field `password``).
            JsonRejection::JsonDataError(e) => json_data_error(&e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::MalformedBody(without_location(&other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::validation("query", without_location(&rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::validation("path", "is not valid")
    }
}

/// Well-formed JSON of the wrong shape. axum reports `<prefix>: <path>: <reason>` (the path from
/// serde_path_to_error) or `<prefix>: missing field `x``; either way the field is named.
fn json_data_error(text: &str) -> ApiError {
    let rest = text.split_once(": ").map(|(_, rest)| rest).unwrap_or(text);
    let rest = without_location(rest);
    if let Some(field) = rest
        .strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f)
    {
        return ApiError::validation(field, "is required");
    }
    match rest.split_once(": ") {
        Some((path, why)) if !path.is_empty() && !path.contains(' ') && path != "." => {
            ApiError::validation(path, why)
        }
        // The root of the body has the wrong shape; serde's wording would name Rust types.
        _ => ApiError::validation("body", "must be a JSON object with the documented fields"),
    }
}

/// serde_json appends ` at line 1 column 17`; the field name already says where.
fn without_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Fallback for routes that do not exist.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// Fallback for existing routes called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.spec().code), "{} twice", kind.spec().code);
            assert_eq!(ErrorKind::from_code(kind.spec().code), Some(*kind));
        }
    }

    #[test]
    fn an_error_answers_with_its_row_of_the_table() {
        let error = ApiError::External {
            service: ExternalService::LiveKit,
            retry_after_secs: None,
        };
        assert_eq!(error.code(), "EXTERNAL_002");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ApiError::CategoryDisabled.code(), "COUNSELOR_002");
        assert_eq!(ApiError::CategoryDisabled.status(), StatusCode::CONFLICT);
        assert_eq!(ApiError::NotAuthenticated.code(), "AUTH_004");
    }

    /// The README's table of error codes is this table, row for row.
    #[test]
    fn the_readme_error_table_is_the_table() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split_once("### Error codes")
            .expect("the README has an error codes section")
            .1;
        let rows: Vec<&str> = section
            .lines()
            .skip_while(|line| !line.starts_with("| code |"))
            .take_while(|line| line.starts_with('|'))
            .collect();
        let expected = error_table_markdown();
        assert_eq!(
            rows,
            expected.lines().collect::<Vec<_>>(),
            "the README's error table drifted; it should read:\n{expected}"
        );
    }

    #[test]
    fn internal_causes_are_never_sent() {
        assert_eq!(
            ApiError::internal("SELECT * FROM users: /var/lib/db").detail(),
            "Internal server error"
        );
    }
}

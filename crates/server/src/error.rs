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
#[schema(example = json!({"detail": "Invalid username or password", "code": "AUTH_001"}))]
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
    #[error("counselor category not found")]
    CategoryNotFound,
    #[error("counselor category disabled")]
    CategoryDisabled,
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
    /// The speech services could not be started (models missing, provider misconfigured).
    #[error("voice service unavailable")]
    VoiceUnavailable,
    /// Anything unexpected. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every error code the API can return, with its status and meaning (README and OpenAPI list these).
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("AUTH_001", 401, "Invalid username or password"),
    ("AUTH_002", 403, "Account blocked"),
    ("AUTH_003", 401, "Token expired: sign in again"),
    (
        "AUTH_004",
        401,
        "Not authenticated: missing or invalid token",
    ),
    (
        "AUTH_005",
        403,
        "Cookie-authenticated request from an origin that is not allowed",
    ),
    ("SESSION_001", 404, "Session not found"),
    ("SESSION_002", 409, "Session already ended"),
    ("COUNSELOR_001", 404, "Counselor category not found"),
    ("COUNSELOR_002", 409, "Counselor category is disabled"),
    ("CRISIS_001", 404, "Crisis event not found (staff only)"),
    (
        "CRISIS_002",
        409,
        "Crisis event already reviewed; reviews are final (staff only)",
    ),
    ("EXTERNAL_001", 503, "Voice service (Daily.co) unavailable"),
    ("EXTERNAL_002", 503, "Video service (LiveKit) unavailable"),
    ("EXTERNAL_003", 503, "Language model service unavailable"),
    (
        "VALIDATION_001",
        422,
        "A field is invalid; the detail names it",
    ),
    ("VALIDATION_002", 400, "The request body is not valid JSON"),
    (
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "The request body must be application/json",
    ),
    ("PAYLOAD_TOO_LARGE", 413, "The request body is too large"),
    ("RATE_LIMIT_001", 429, "Too many requests; see Retry-After"),
    ("NOT_FOUND", 404, "No such route"),
    (
        "METHOD_NOT_ALLOWED",
        405,
        "The route does not accept this method",
    ),
    ("SERVICE_UNAVAILABLE", 503, "The database is unreachable"),
    (
        "CAPACITY_001",
        503,
        "The server is running as many calls as it can; see Retry-After",
    ),
    (
        "VOICE_001",
        503,
        "The voice services could not be started; see the server log",
    ),
    ("INTERNAL", 500, "Unexpected server error"),
];

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

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidCredentials | ApiError::TokenExpired | ApiError::NotAuthenticated => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::AccountBlocked | ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::SessionNotFound
            | ApiError::CategoryNotFound
            | ApiError::CrisisEventNotFound
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::SessionAlreadyEnded
            | ApiError::CategoryDisabled
            | ApiError::CrisisEventAlreadyReviewed => StatusCode::CONFLICT,
            ApiError::External { .. }
            | ApiError::Unavailable
            | ApiError::AtCapacity
            | ApiError::VoiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidCredentials => "AUTH_001",
            ApiError::AccountBlocked => "AUTH_002",
            ApiError::TokenExpired => "AUTH_003",
            ApiError::NotAuthenticated => "AUTH_004",
            ApiError::OriginNotAllowed => "AUTH_005",
            ApiError::SessionNotFound => "SESSION_001",
            ApiError::SessionAlreadyEnded => "SESSION_002",
            ApiError::CategoryNotFound => "COUNSELOR_001",
            ApiError::CategoryDisabled => "COUNSELOR_002",
            ApiError::CrisisEventNotFound => "CRISIS_001",
            ApiError::CrisisEventAlreadyReviewed => "CRISIS_002",
            ApiError::External {
                service: ExternalService::Daily,
                ..
            } => "EXTERNAL_001",
            ApiError::External {
                service: ExternalService::LiveKit,
                ..
            } => "EXTERNAL_002",
            ApiError::External {
                service: ExternalService::Llm,
                ..
            } => "EXTERNAL_003",
            ApiError::Validation { .. } => "VALIDATION_001",
            ApiError::MalformedBody(_) => "VALIDATION_002",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::RateLimited { .. } => "RATE_LIMIT_001",
            ApiError::RouteNotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::Unavailable => "SERVICE_UNAVAILABLE",
            ApiError::AtCapacity => "CAPACITY_001",
            ApiError::VoiceUnavailable => "VOICE_001",
            ApiError::Internal(_) => "INTERNAL",
        }
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
            ApiError::CategoryNotFound => "Counselor category not found".into(),
            ApiError::CategoryDisabled => "This counselor is currently unavailable".into(),
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
            ApiError::VoiceUnavailable => {
                "Voice counseling is unavailable on this server right now".into()
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
    fn every_variant_has_a_documented_code() {
        let samples = [
            ApiError::InvalidCredentials,
            ApiError::AccountBlocked,
            ApiError::TokenExpired,
            ApiError::NotAuthenticated,
            ApiError::OriginNotAllowed,
            ApiError::SessionNotFound,
            ApiError::SessionAlreadyEnded,
            ApiError::CategoryNotFound,
            ApiError::CategoryDisabled,
            ApiError::CrisisEventNotFound,
            ApiError::CrisisEventAlreadyReviewed,
            ApiError::External {
                service: ExternalService::Daily,
                retry_after_secs: None,
            },
            ApiError::External {
                service: ExternalService::LiveKit,
                retry_after_secs: None,
            },
            ApiError::External {
                service: ExternalService::Llm,
                retry_after_secs: Some(30),
            },
            ApiError::validation("x", "y"),
            ApiError::MalformedBody("z".into()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge,
            ApiError::RateLimited {
                retry_after_secs: 3,
            },
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::Unavailable,
            ApiError::internal("boom"),
        ];
        for error in samples {
            let listed = ERROR_CODES
                .iter()
                .find(|(code, _, _)| *code == error.code());
            let (_, status, _) =
                listed.unwrap_or_else(|| panic!("{} is not in ERROR_CODES", error.code()));
            assert_eq!(*status, error.status().as_u16(), "{}", error.code());
        }
    }

    #[test]
    fn internal_causes_are_never_sent() {
        assert_eq!(
            ApiError::internal("SELECT * FROM users: /var/lib/db").detail(),
            "Internal server error"
        );
    }
}

//! Daily's REST API: rooms for voice sessions and their meeting tokens.
//!
//! Every request carries `Authorization: Bearer <DAILY_API_KEY>` and has [`REQUEST_TIMEOUT`];
//! they all pass one circuit breaker ([`BreakerConfig::rooms_and_avatars`]: 5 failures in 60 s
//! open it for 60 s). Creating a room is never retried (a create that timed out may have
//! happened); deleting a room and minting a token are, with backoff. A room that is already
//! gone (404 on delete) is not an error. Daily's error bodies, `{"error": "<type>", "info":
//! "…"}`, become [`DailyError`]s that say what was wrong; the key never appears in one.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use resilience::{BreakerConfig, CallError, CircuitBreaker, RetryPolicy};
use serde::Deserialize;
use serde_json::{json, Value};

/// Daily's API, unless `DAILY_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.daily.co/v1";
/// How long one request to Daily may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A voice session's room holds the student and counsel's bot.
const MAX_PARTICIPANTS: u32 = 2;

/// A Daily API key: kept out of `Debug` and every error.
#[derive(Clone)]
pub struct DailyApiKey(String);

impl DailyApiKey {
    /// A key as the environment gives it; an empty one is refused.
    pub fn parse(raw: &str) -> Result<DailyApiKey, DailyError> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(DailyError::Configuration(
                "DAILY_API_KEY is empty".to_owned(),
            ));
        }
        Ok(DailyApiKey(key.to_owned()))
    }
}

impl fmt::Debug for DailyApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DailyApiKey(…)")
    }
}

/// Where and how counsel talks to Daily.
#[derive(Debug, Clone)]
pub struct DailySettings {
    pub api_key: DailyApiKey,
    /// `DAILY_API_URL` (default [`DEFAULT_API_URL`]), without a trailing slash.
    pub api_url: String,
    /// `DAILY_ROOM_EXPIRATION_MINUTES` (default 120): a room, and every token for it, expires
    /// this long after it is made, and Daily ejects whoever is still in it then.
    pub room_lifetime: Duration,
    /// How long one request may take ([`REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
}

impl DailySettings {
    pub fn new(api_key: DailyApiKey) -> DailySettings {
        DailySettings {
            api_key,
            api_url: DEFAULT_API_URL.to_owned(),
            room_lifetime: Duration::from_secs(120 * 60),
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// A room made for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRoom {
    pub name: String,
    /// Where the browser joins it (`https://<domain>.daily.co/<name>`).
    pub url: String,
    /// When Daily closes it and ejects everyone.
    pub expires_at: DateTime<Utc>,
}

/// Who a meeting token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Participant {
    /// The student: voice only, never an owner. `user_id` is an opaque id, never the username.
    Student { user_id: String },
    /// counsel's own bot, which owns the room.
    Counselor,
}

/// What deleting a room found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// Daily did not know the room (it expired, or an earlier delete went through).
    AlreadyGone,
}

/// Why a call to Daily failed.
#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    #[error("Daily settings: {0}")]
    Configuration(String),
    /// 401 `authentication-error` (or 400 `authorization-header-error`).
    #[error("Daily refused the API key (DAILY_API_KEY): {kind}")]
    Authentication { kind: String },
    /// 403 `forbidden-error`: the key may not do this (a plan limit, say).
    #[error("Daily forbids this for the account: {info}")]
    Forbidden { info: String },
    /// 400 `invalid-request-error` or `json-parsing-error`: counsel sent something Daily does not
    /// accept.
    #[error("Daily rejected the request ({kind}): {info}")]
    Rejected { kind: String, info: String },
    #[error("Daily found no such room")]
    NotFound,
    /// 429 `rate-limit-error`.
    #[error("Daily is rate limiting counsel")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx.
    #[error("Daily answered {status}")]
    Unavailable { status: u16 },
    #[error("Daily did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("Daily could not be reached")]
    Unreachable,
    /// After repeated failures counsel stops asking for a while.
    #[error("Daily is failing; counsel will try again in {} s", .retry_after.as_secs())]
    BreakerOpen { retry_after: Duration },
    #[error("Daily's answer was not what its API documents: {0}")]
    Malformed(String),
}

impl DailyError {
    /// Whether the same request may succeed if repeated after a pause.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            DailyError::RateLimited { .. }
                | DailyError::Unavailable { .. }
                | DailyError::TimedOut(_)
                | DailyError::Unreachable
        )
    }

    /// How long a caller should tell the student to wait, for errors that pass.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DailyError::BreakerOpen { retry_after } => Some(*retry_after),
            DailyError::RateLimited { retry_after } => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            error if error.is_transient() => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// Daily's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    info: Option<String>,
}

#[derive(Deserialize)]
struct RoomBody {
    name: String,
    url: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// Daily's REST API for one account.
#[derive(Clone)]
pub struct DailyClient {
    http: reqwest::Client,
    settings: DailySettings,
    breaker: CircuitBreaker,
    retry: RetryPolicy,
}

impl DailyClient {
    pub fn new(settings: DailySettings) -> Result<DailyClient, DailyError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|error| DailyError::Configuration(error.to_string()))?;
        Ok(DailyClient {
            http,
            settings: DailySettings {
                api_url: settings.api_url.trim_end_matches('/').to_owned(),
                ..settings
            },
            breaker: CircuitBreaker::new(BreakerConfig::rooms_and_avatars()),
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with another retry policy (tests keep their waits short).
    pub fn with_retry(mut self, retry: RetryPolicy) -> DailyClient {
        self.retry = retry;
        self
    }

    /// Checks the key at start-up: a wrong key is an error now, not at a student's first call.
    pub async fn check_key(&self) -> Result<(), DailyError> {
        let request = self.http.get(self.url("/rooms?limit=1"));
        self.send(request, true).await.map(|_| ())
    }

    /// Makes the session's room: private, for two, chat on, screen sharing off, expiring after
    /// the room lifetime with everyone ejected then. Never retried.
    pub async fn create_room(&self, name: &str) -> Result<DailyRoom, DailyError> {
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(DailyError::Configuration(format!(
                "a Daily room name is 1 to 128 of A-Z a-z 0-9 - _, not {name:?}"
            )));
        }
        let expires_at = Utc::now()
            + chrono::Duration::from_std(self.settings.room_lifetime).unwrap_or_default();
        let body = json!({
            "name": name,
            "privacy": "private",
            "properties": {
                "exp": expires_at.timestamp(),
                "eject_at_room_exp": true,
                "max_participants": MAX_PARTICIPANTS,
                "enable_chat": true,
                "enable_screenshare": false,
                "start_video_off": true,
            },
        });
        let request = self.http.post(self.url("/rooms")).json(&body);
        let answer = self.send(request, true).await?;
        let room: RoomBody = serde_json::from_value(answer)
            .map_err(|error| DailyError::Malformed(format!("a room: {error}")))?;
        Ok(DailyRoom {
            name: room.name,
            url: room.url,
            expires_at: DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at),
        })
    }

    /// A meeting token for `room`, expiring with it. Retried: a second token is harmless.
    pub async fn meeting_token(
        &self,
        room: &DailyRoom,
        participant: &Participant,
    ) -> Result<String, DailyError> {
        let mut properties = json!({
            "room_name": room.name,
            "exp": room.expires_at.timestamp(),
            "eject_at_token_exp": true,
            "enable_screenshare": false,
            "start_video_off": true,
        });
        match participant {
            Participant::Student { user_id } => {
                properties["is_owner"] = json!(false);
                properties["user_id"] = json!(user_id);
                properties["user_name"] = json!("Student");
                // Voice only: the student may send audio and nothing else.
                properties["permissions"] = json!({"canSend": ["audio"]});
            }
            Participant::Counselor => {
                properties["is_owner"] = json!(true);
                properties["user_name"] = json!("Counselor");
            }
        }
        let body = json!({ "properties": properties });
        let answer = self
            .retry
            .retry_idempotent(
                || {
                    let request = self.http.post(self.url("/meeting-tokens")).json(&body);
                    self.send(request, true)
                },
                DailyError::is_transient,
            )
            .await?;
        let token: TokenBody = serde_json::from_value(answer)
            .map_err(|error| DailyError::Malformed(format!("a meeting token: {error}")))?;
        Ok(token.token)
    }

    /// Deletes a room; one Daily no longer has is [`Deleted::AlreadyGone`]. Retried with backoff.
    pub async fn delete_room(&self, name: &str) -> Result<Deleted, DailyError> {
        let path = format!("/rooms/{name}");
        let answer = self
            .retry
            .retry_idempotent(
                || {
                    let request = self.http.delete(self.url(&path));
                    self.send(request, false)
                },
                DailyError::is_transient,
            )
            .await;
        match answer {
            Ok(_) => Ok(Deleted::Deleted),
            Err(DailyError::NotFound) => Ok(Deleted::AlreadyGone),
            Err(error) => Err(error),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_url)
    }

    /// Sends through the breaker; a 404 counts against it only when `missing_is_failure`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        missing_is_failure: bool,
    ) -> Result<Value, DailyError> {
        let request = request.bearer_auth(&self.settings.api_key.0);
        let timeout = self.settings.request_timeout;
        let outcome = self
            .breaker
            .call_classified(
                || async move {
                    let answer = request.send().await.map_err(|error| {
                        if error.is_timeout() {
                            DailyError::TimedOut(timeout)
                        } else {
                            DailyError::Unreachable
                        }
                    })?;
                    read_answer(answer).await
                },
                |error| match error {
                    DailyError::NotFound => missing_is_failure,
                    error => error.is_transient(),
                },
            )
            .await;
        match outcome {
            Ok(value) => Ok(value),
            Err(CallError::Failed(error)) => {
                tracing::warn!(%error, "a request to Daily failed");
                Err(error)
            }
            Err(CallError::Open(open)) => Err(DailyError::BreakerOpen {
                retry_after: open.retry_after,
            }),
        }
    }
}

/// Daily's answer as JSON, or the error its status and body say.
async fn read_answer(answer: reqwest::Response) -> Result<Value, DailyError> {
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = answer.text().await.map_err(|_| DailyError::Unreachable)?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text)
            .map_err(|error| DailyError::Malformed(format!("not JSON: {error}")));
    }
    let body: ErrorBody = serde_json::from_str(&text).unwrap_or(ErrorBody {
        error: None,
        info: None,
    });
    let kind = body.error.unwrap_or_default();
    let info = body.info.unwrap_or_default();
    Err(match status {
        401 => DailyError::Authentication { kind },
        400 if kind == "authorization-header-error" => DailyError::Authentication { kind },
        403 => DailyError::Forbidden { info },
        404 => DailyError::NotFound,
        429 => DailyError::RateLimited { retry_after },
        400..=499 => DailyError::Rejected { kind, info },
        _ => DailyError::Unavailable { status },
    })
}

#[cfg(test)]
mod tests {
    //! Against a fake Daily that checks what Daily checks (the Bearer key, paths, JSON bodies,
    //! room names and property names) and answers with Daily's shapes and error types.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{delete, get, post};
    use axum::{Json, Router};

    use super::*;

    const KEY: &str = "test-daily-key";
    const ROOM_PROPERTIES: &[&str] = &[
        "exp",
        "nbf",
        "max_participants",
        "enable_chat",
        "enable_screenshare",
        "start_video_off",
        "start_audio_off",
        "eject_at_room_exp",
        "enable_recording",
    ];
    const TOKEN_PROPERTIES: &[&str] = &[
        "room_name",
        "exp",
        "nbf",
        "is_owner",
        "user_name",
        "user_id",
        "eject_at_token_exp",
        "start_video_off",
        "start_audio_off",
        "enable_screenshare",
        "enable_recording",
        "permissions",
    ];

    /// What the fake holds and what the test tells it to do.
    #[derive(Default)]
    struct Daily {
        rooms: HashMap<String, Value>,
        requests: Vec<(String, Option<Value>)>,
        /// Statuses to answer the next requests with instead of serving them.
        fail_next: Vec<u16>,
        /// Answer nothing, ever.
        hang: bool,
    }

    type Shared = Arc<Mutex<Daily>>;

    fn daily_error(status: u16, kind: &str, info: &str) -> Response {
        (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": kind, "info": info})),
        )
            .into_response()
    }

    /// Daily's checks before any route: the key, then the test's scripted failures.
    async fn gate(
        daily: &Shared,
        headers: &HeaderMap,
        what: String,
        body: Option<Value>,
    ) -> Option<Response> {
        let hang = {
            let mut daily = daily.lock().unwrap();
            daily.requests.push((what, body));
            daily.hang
        };
        if hang {
            std::future::pending::<()>().await;
        }
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            None => {
                return Some(daily_error(
                    400,
                    "authorization-header-error",
                    "Authorization header missing",
                ))
            }
            Some(value) if value != format!("Bearer {KEY}") => {
                return Some(daily_error(401, "authentication-error", "Bad API key"))
            }
            Some(_) => {}
        }
        let scripted = {
            let mut daily = daily.lock().unwrap();
            (!daily.fail_next.is_empty()).then(|| daily.fail_next.remove(0))
        };
        scripted.map(|status| match status {
            429 => daily_error(429, "rate-limit-error", "Too many requests"),
            status => daily_error(status, "server-error", "Something went wrong"),
        })
    }

    fn unknown_property(properties: &Value, known: &[&str]) -> Option<String> {
        properties
            .as_object()?
            .keys()
            .find(|k| !known.contains(&k.as_str()))
            .cloned()
    }

    /// Daily's checks for a request with a JSON body: it parses (`json-parsing-error`), passes
    /// [`gate`], and its `properties` name only what Daily knows (`invalid-request-error`).
    async fn admit_json(
        daily: &Shared,
        headers: &HeaderMap,
        what: &str,
        raw: &str,
        known: &[&str],
    ) -> Result<Value, Box<Response>> {
        let body: Value = serde_json::from_str(raw)
            .map_err(|_| Box::new(daily_error(400, "json-parsing-error", "Invalid JSON")))?;
        if let Some(refused) = gate(daily, headers, what.to_owned(), Some(body.clone())).await {
            return Err(Box::new(refused));
        }
        if let Some(unknown) = unknown_property(&body["properties"], known) {
            return Err(Box::new(daily_error(
                400,
                "invalid-request-error",
                &format!("unknown property {unknown}"),
            )));
        }
        Ok(body)
    }

    async fn list_rooms(State(daily): State<Shared>, headers: HeaderMap) -> Response {
        if let Some(refused) = gate(&daily, &headers, "GET /rooms".into(), None).await {
            return refused;
        }
        let count = daily.lock().unwrap().rooms.len();
        Json(json!({"total_count": count, "data": []})).into_response()
    }

    async fn create_room(
        State(daily): State<Shared>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let body = match admit_json(&daily, &headers, "POST /rooms", &body, ROOM_PROPERTIES).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        if name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return daily_error(
                400,
                "invalid-request-error",
                "name must be [A-Za-z0-9_-], at most 128",
            );
        }
        let mut daily = daily.lock().unwrap();
        if daily.rooms.contains_key(&name) {
            return daily_error(
                400,
                "invalid-request-error",
                &format!("a room named {name} already exists"),
            );
        }
        daily.rooms.insert(name.clone(), body["properties"].clone());
        Json(json!({
            "id": "2d2f6b40-0000-4000-8000-000000000000",
            "name": name,
            "api_created": true,
            "privacy": body["privacy"].as_str().unwrap_or("public"),
            "url": format!("https://counsel-test.daily.co/{name}"),
            "created_at": "2026-12-04T12:00:00.000Z",
            "config": body["properties"],
        }))
        .into_response()
    }

    async fn delete_room(
        State(daily): State<Shared>,
        headers: HeaderMap,
        Path(name): Path<String>,
    ) -> Response {
        if let Some(refused) = gate(&daily, &headers, format!("DELETE /rooms/{name}"), None).await {
            return refused;
        }
        match daily.lock().unwrap().rooms.remove(&name) {
            Some(_) => Json(json!({"deleted": true, "name": name})).into_response(),
            None => daily_error(404, "not-found", &format!("room {name} not found")),
        }
    }

    async fn meeting_token(
        State(daily): State<Shared>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let what = "POST /meeting-tokens";
        let body = match admit_json(&daily, &headers, what, &body, TOKEN_PROPERTIES).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &body["properties"],
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        Json(json!({"token": token})).into_response()
    }

    async fn fake_daily() -> (String, Shared) {
        let daily = Shared::default();
        let app = Router::new()
            .route("/v1/rooms", get(list_rooms).post(create_room))
            .route("/v1/rooms/{name}", delete(delete_room))
            .route("/v1/meeting-tokens", post(meeting_token))
            .with_state(daily.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}/v1"), daily)
    }

    fn client(url: &str, key: &str) -> DailyClient {
        let mut settings = DailySettings::new(DailyApiKey::parse(key).unwrap());
        settings.api_url = url.to_owned();
        settings.request_timeout = Duration::from_millis(300);
        DailyClient::new(settings).unwrap().with_retry(RetryPolicy {
            retries: 3,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        })
    }

    fn requests(daily: &Shared) -> Vec<String> {
        daily
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(what, _)| what.clone())
            .collect()
    }

    fn claims(token: &str) -> Value {
        let mut validation = jsonwebtoken::Validation::default();
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims
    }

    #[tokio::test]
    async fn a_session_room_has_the_seeds_properties_and_tokens_that_expire_with_it() {
        let (url, daily) = fake_daily().await;
        let daily_api = client(&url, KEY);
        daily_api.check_key().await.unwrap();

        let room = daily_api
            .create_room("counsel-voice-abc_123")
            .await
            .unwrap();
        assert_eq!(
            room.url,
            "https://counsel-test.daily.co/counsel-voice-abc_123"
        );
        let lifetime = room.expires_at - Utc::now();
        assert!((119..=120).contains(&lifetime.num_minutes()), "{lifetime}");
        let sent = daily.lock().unwrap().requests[1].1.clone().unwrap();
        assert_eq!(sent["privacy"], "private");
        let properties = &sent["properties"];
        assert_eq!(properties["exp"], room.expires_at.timestamp());
        assert_eq!(properties["eject_at_room_exp"], true);
        assert_eq!(properties["max_participants"], 2);
        assert_eq!(properties["enable_chat"], true);
        assert_eq!(properties["enable_screenshare"], false);
        assert!(
            properties.get("enable_recording").is_none(),
            "recording stays off"
        );

        let student = claims(
            &daily_api
                .meeting_token(
                    &room,
                    &Participant::Student {
                        user_id: "u-7f3a".into(),
                    },
                )
                .await
                .unwrap(),
        );
        assert_eq!(student["room_name"], "counsel-voice-abc_123");
        assert_eq!(student["is_owner"], false);
        assert_eq!(student["user_id"], "u-7f3a");
        assert_eq!(student["permissions"]["canSend"], json!(["audio"]));
        assert_eq!(student["exp"], room.expires_at.timestamp());
        let bot = claims(
            &daily_api
                .meeting_token(&room, &Participant::Counselor)
                .await
                .unwrap(),
        );
        assert_eq!(bot["is_owner"], true);
        assert_eq!(bot["exp"], room.expires_at.timestamp());
    }

    #[tokio::test]
    async fn a_room_already_gone_is_not_an_error_and_a_duplicate_name_is_refused() {
        let (url, _daily) = fake_daily().await;
        let daily_api = client(&url, KEY);
        daily_api.create_room("room-1").await.unwrap();
        let again = daily_api.create_room("room-1").await.unwrap_err();
        assert!(
            matches!(again, DailyError::Rejected { ref kind, .. } if kind == "invalid-request-error"),
            "{again}"
        );
        assert_eq!(
            daily_api.delete_room("room-1").await.unwrap(),
            Deleted::Deleted
        );
        assert_eq!(
            daily_api.delete_room("room-1").await.unwrap(),
            Deleted::AlreadyGone
        );
        let bad_name = daily_api.create_room("room one").await.unwrap_err();
        assert!(
            matches!(bad_name, DailyError::Configuration(_)),
            "{bad_name}"
        );
    }

    #[tokio::test]
    async fn a_wrong_key_is_found_at_start_up_and_never_shown() {
        let (url, _daily) = fake_daily().await;
        let error = client(&url, "not-the-key").check_key().await.unwrap_err();
        assert!(
            matches!(error, DailyError::Authentication { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("not-the-key"));
        assert!(!format!("{:?}", client(&url, "not-the-key").settings).contains("not-the-key"));
        assert!(DailyApiKey::parse("  ").is_err());
    }

    #[tokio::test]
    async fn a_create_that_fails_is_not_repeated_but_a_delete_is() {
        let (url, daily) = fake_daily().await;
        let daily_api = client(&url, KEY);
        daily.lock().unwrap().fail_next = vec![500];
        let error = daily_api.create_room("room-2").await.unwrap_err();
        assert!(
            matches!(error, DailyError::Unavailable { status: 500 }),
            "{error}"
        );
        assert!(error.retry_after().is_some());
        assert_eq!(requests(&daily), ["POST /rooms"], "a create is asked once");

        daily_api.create_room("room-2").await.unwrap();
        daily.lock().unwrap().fail_next = vec![429, 503];
        assert_eq!(
            daily_api.delete_room("room-2").await.unwrap(),
            Deleted::Deleted
        );
        assert_eq!(
            requests(&daily)[2..],
            [
                "DELETE /rooms/room-2",
                "DELETE /rooms/room-2",
                "DELETE /rooms/room-2"
            ]
        );
    }

    #[tokio::test]
    async fn a_daily_that_does_not_answer_times_out_and_opens_the_breaker() {
        let (url, daily) = fake_daily().await;
        let daily_api = client(&url, KEY).with_retry(RetryPolicy::none());
        daily.lock().unwrap().hang = true;
        let started = std::time::Instant::now();
        let error = daily_api.create_room("room-3").await.unwrap_err();
        assert!(matches!(error, DailyError::TimedOut(_)), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a fast, honest error"
        );

        for _ in 0..4 {
            let _ = daily_api.create_room("room-3").await;
        }
        let asked = requests(&daily).len();
        assert_eq!(asked, 5);
        let error = daily_api.create_room("room-3").await.unwrap_err();
        assert!(matches!(error, DailyError::BreakerOpen { .. }), "{error}");
        assert_eq!(
            requests(&daily).len(),
            asked,
            "an open breaker does not ask Daily"
        );
        assert!(error.retry_after().unwrap() > Duration::ZERO);
    }
}

//! Fake Gemini (`streamGenerateContent?alt=sse`) and OpenAI-compatible (`/chat/completions`)
//! servers over real HTTP.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// What the fake does with the next request that passes its checks.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200, these body pieces written one after another, then the body ends.
    Stream(Vec<String>),
    /// 200, these pieces, then silence with the connection held open.
    StreamThenStall(Vec<String>),
    /// This status with this JSON body.
    Status(u16, String),
    /// Takes the request and never answers.
    NeverAnswer,
}

#[derive(Clone, Debug)]
pub enum Flavor {
    Gemini {
        key: String,
    },
    /// `key: None` is a local server that takes no key.
    OpenAi {
        key: Option<String>,
    },
}

pub struct FakeLlm {
    pub base_url: String,
    state: Arc<FakeState>,
}

struct FakeState {
    flavor: Flavor,
    /// Served in order; the last one repeats.
    replies: Mutex<VecDeque<Reply>>,
    /// Requests that passed validation and got a scripted reply.
    served: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    authorization_headers: Mutex<Vec<Option<String>>>,
}

impl FakeLlm {
    pub async fn start(flavor: Flavor, replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty());
        let state = Arc::new(FakeState {
            flavor: flavor.clone(),
            replies: Mutex::new(replies.into()),
            served: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
            authorization_headers: Mutex::new(Vec::new()),
        });
        let router = match flavor {
            Flavor::Gemini { .. } => Router::new().route("/v1beta/models/{target}", post(gemini)),
            Flavor::OpenAi { .. } => Router::new().route("/v1/chat/completions", post(openai)),
        }
        .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let base_url = match state.flavor {
            Flavor::Gemini { .. } => format!("http://{addr}/v1beta"),
            Flavor::OpenAi { .. } => format!("http://{addr}/v1"),
        };
        Self { base_url, state }
    }

    /// Requests that passed the checks (auth, URL, body).
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    pub fn last_body(&self) -> Value {
        self.state
            .bodies
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request served")
    }

    pub fn authorization_headers(&self) -> Vec<Option<String>> {
        self.state.authorization_headers.lock().unwrap().clone()
    }
}

impl FakeState {
    fn next_reply(&self) -> Reply {
        let mut replies = self.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        }
    }

    async fn serve(&self, body: Value) -> Response {
        self.bodies.lock().unwrap().push(body);
        self.served.fetch_add(1, Ordering::SeqCst);
        match self.next_reply() {
            Reply::Stream(pieces) => event_stream(pieces, false),
            Reply::StreamThenStall(pieces) => event_stream(pieces, true),
            Reply::Status(status, body) => json_response(status, body),
            Reply::NeverAnswer => std::future::pending().await,
        }
    }
}

fn event_stream(pieces: Vec<String>, stall: bool) -> Response {
    use futures::StreamExt;
    let pieces = futures::stream::iter(pieces).then(|piece| async move {
        // Separate writes, so the client sees events split across reads.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        Ok::<_, std::io::Error>(piece)
    });
    let body = if stall {
        Body::from_stream(pieces.chain(futures::stream::pending()))
    } else {
        Body::from_stream(pieces)
    };
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn json_response(status: u16, body: impl Into<String>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------

fn google_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}).to_string(),
    )
}

async fn gemini(
    State(state): State<Arc<FakeState>>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Flavor::Gemini { key } = &state.flavor else {
        unreachable!()
    };
    let Some(model) = target.strip_suffix(":streamGenerateContent") else {
        return google_error(404, "NOT_FOUND", "Requested entity was not found.");
    };
    if model.is_empty() {
        return google_error(404, "NOT_FOUND", "Requested entity was not found.");
    }
    if query.get("alt").map(String::as_str) != Some("sse") {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "this fake only streams with alt=sse",
        );
    }
    match headers
        .get("x-goog-api-key")
        .and_then(|value| value.to_str().ok())
    {
        None => {
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers",
            )
        }
        Some(sent) if sent != key => {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
            )
        }
        Some(_) => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    if let Err(problem) = check_gemini_body(&body) {
        return google_error(400, "INVALID_ARGUMENT", &problem);
    }
    state.serve(body).await
}

fn check_gemini_body(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("body must be an object")?;
    for field in object.keys() {
        if ![
            "contents",
            "systemInstruction",
            "generationConfig",
            "safetySettings",
            "tools",
        ]
        .contains(&field.as_str())
        {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{field}\""
            ));
        }
    }
    let contents = object
        .get("contents")
        .and_then(Value::as_array)
        .ok_or("contents is required")?;
    if contents.is_empty() {
        return Err("contents is not specified".into());
    }
    for content in contents {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .ok_or("content.role is required")?;
        if role != "user" && role != "model" {
            return Err(format!("Please use a valid role: user, model (got {role})"));
        }
        check_parts(content)?;
    }
    if let Some(instruction) = object.get("systemInstruction") {
        check_parts(instruction)?;
    }
    if let Some(config) = object.get("generationConfig") {
        let config = config
            .as_object()
            .ok_or("generationConfig must be an object")?;
        for field in config.keys() {
            if ![
                "temperature",
                "maxOutputTokens",
                "topP",
                "topK",
                "stopSequences",
                "candidateCount",
            ]
            .contains(&field.as_str())
            {
                return Err(format!("Invalid JSON payload received. Unknown name \"{field}\" at 'generation_config'"));
            }
        }
    }
    Ok(())
}

fn check_parts(content: &Value) -> Result<(), String> {
    let parts = content
        .get("parts")
        .and_then(Value::as_array)
        .ok_or("parts is required")?;
    if parts.is_empty()
        || parts
            .iter()
            .any(|part| !part.get("text").is_some_and(Value::is_string))
    {
        return Err("each content needs parts with text".into());
    }
    Ok(())
}

/// One `data:` record of a Gemini stream.
pub fn gemini_chunk(text: &str, finish_reason: Option<&str>) -> String {
    let mut candidate =
        json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if let Some(reason) = finish_reason {
        candidate["finishReason"] = json!(reason);
    }
    let chunk = json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "fake-response",
    });
    format!("data: {chunk}\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible
// ---------------------------------------------------------------------------------------------

fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_response(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string(),
    )
}

async fn openai(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Flavor::OpenAi { key } = &state.flavor else {
        unreachable!()
    };
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    state
        .authorization_headers
        .lock()
        .unwrap()
        .push(authorization.clone());
    if let Some(key) = key {
        match authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
        {
            None => {
                return openai_error(
                    401,
                    "You didn't provide an API key.",
                    "invalid_request_error",
                    None,
                )
            }
            Some(sent) if sent != key => {
                return openai_error(
                    401,
                    &format!("Incorrect API key provided: {sent}."),
                    "invalid_request_error",
                    Some("invalid_api_key"),
                )
            }
            Some(_) => {}
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            400,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        );
    };
    if let Err(problem) = check_openai_body(&body) {
        return openai_error(400, &problem, "invalid_request_error", None);
    }
    state.serve(body).await
}

fn check_openai_body(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("body must be an object")?;
    for field in object.keys() {
        if ![
            "model",
            "messages",
            "stream",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "stop",
            "stream_options",
        ]
        .contains(&field.as_str())
        {
            return Err(format!("Unrecognized request argument supplied: {field}"));
        }
    }
    if object
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("you must provide a model parameter".into());
    }
    let messages = object
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("'messages' is a required property")?;
    if messages.is_empty() {
        return Err("'messages' must contain at least one message".into());
    }
    for message in messages {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !["system", "user", "assistant"].contains(&role)
            || !message.get("content").is_some_and(Value::is_string)
        {
            return Err("invalid message".into());
        }
    }
    if object.get("stream") != Some(&Value::Bool(true)) {
        return Err("this fake only serves streams".into());
    }
    Ok(())
}

/// One `data:` record of a chat-completions stream.
pub fn openai_chunk(text: &str, finish_reason: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}],
    });
    format!("data: {chunk}\n\n")
}

pub const OPENAI_DONE: &str = "data: [DONE]\n\n";

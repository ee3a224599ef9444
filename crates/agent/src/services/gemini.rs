//! Google Gemini through `models/{model}:streamGenerateContent?alt=sse`.
//!
//! The SSE stream has no end marker: it just ends, so a reply is complete only if a candidate
//! carried a `finishReason`. Errors can arrive as a bare JSON body without `data:`.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::cloud::{self, SseProtocol, SseStep, StreamLimits};
use super::{BoxStream, ChatRequest, ChatRole, LanguageModel, ServiceError};

const SERVICE: &str = "gemini";

/// How to reach Gemini. Built by the server's configuration; nothing here reads the
/// environment.
#[derive(Clone)]
pub struct GeminiConfig {
    pub api_key: String,
    /// API root up to and including the version; default
    /// `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: String,
    /// Default `gemini-2.0-flash`.
    pub model: String,
    /// TCP + TLS connect; default 5 s.
    pub connect_timeout: Duration,
    /// Until the response headers arrive; default 10 s.
    pub first_byte_timeout: Duration,
    /// Longest silence between two pieces of the reply; default 10 s.
    pub between_chunks_timeout: Duration,
    /// The whole reply; default 30 s.
    pub overall_timeout: Duration,
}

impl GeminiConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            model: "gemini-2.0-flash".into(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            between_chunks_timeout: Duration::from_secs(10),
            overall_timeout: Duration::from_secs(30),
        }
    }

    fn limits(&self) -> StreamLimits {
        StreamLimits {
            first_byte: self.first_byte_timeout,
            between_chunks: self.between_chunks_timeout,
            overall: self.overall_timeout,
        }
    }
}

impl std::fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

pub struct GeminiLanguageModel {
    config: GeminiConfig,
    http: reqwest::Client,
}

impl GeminiLanguageModel {
    pub fn new(config: GeminiConfig) -> Result<Self, ServiceError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|_| ServiceError::Unavailable {
                service: SERVICE,
                reason: "HTTP client setup failed".into(),
            })?;
        Ok(Self { config, http })
    }

    fn url(&self) -> String {
        format!(
            "{}/models/{}:streamGenerateContent?alt=sse",
            self.config.base_url.trim_end_matches('/'),
            self.config.model
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Instruction<'a>>,
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Instruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    temperature: f32,
    max_output_tokens: u32,
}

/// Gemini's body for a chat. Consecutive turns of one role become one content with several
/// parts, since Gemini expects the roles to alternate.
fn request_body(request: &ChatRequest) -> GenerateRequest<'_> {
    let mut contents: Vec<Content<'_>> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "model",
        };
        match contents.last_mut() {
            Some(last) if last.role == role => last.parts.push(Part {
                text: &message.content,
            }),
            _ => contents.push(Content {
                role,
                parts: vec![Part {
                    text: &message.content,
                }],
            }),
        }
    }
    GenerateRequest {
        contents,
        system_instruction: (!request.system.is_empty()).then(|| Instruction {
            parts: vec![Part {
                text: &request.system,
            }],
        }),
        generation_config: GenerationConfig {
            temperature: request.temperature,
            max_output_tokens: request.max_tokens,
        },
    }
}

#[async_trait]
impl LanguageModel for GeminiLanguageModel {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn stream_reply(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        if request.messages.is_empty() {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: "a chat needs at least one message".into(),
            });
        }
        let limits = self.config.limits();
        let deadline = Instant::now() + limits.overall;
        let http_request = self
            .http
            .post(self.url())
            .header("x-goog-api-key", &self.config.api_key)
            .json(&request_body(&request));
        let response = cloud::send_for_stream(SERVICE, http_request, limits, deadline).await?;
        Ok(cloud::sse_text_stream(
            SERVICE,
            response,
            GeminiStream::default(),
            limits,
            deadline,
        ))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<CandidatePart>,
}

#[derive(Deserialize)]
struct CandidatePart {
    text: Option<String>,
    /// Thinking models mark their reasoning; it is not part of the reply.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

/// Finish reasons that mean the reply was withheld, not completed.
const BLOCKING_FINISH_REASONS: [&str; 6] = [
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

/// Longest bare (non-SSE) body kept to read an error code from.
const MAX_STRAY_BODY: usize = 16 * 1024;

#[derive(Default)]
struct GeminiStream {
    produced_text: bool,
    finished: bool,
    stray_body: String,
}

impl SseProtocol for GeminiStream {
    fn on_event(&mut self, data: &str) -> Result<SseStep, ServiceError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|_| ServiceError::Protocol {
            service: SERVICE,
            reason: "malformed stream chunk".into(),
        })?;
        if let Some(error) = &chunk.error {
            return Err(in_stream_error(error));
        }
        if let Some(reason) = chunk
            .prompt_feedback
            .and_then(|feedback| feedback.block_reason)
        {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: format!("prompt blocked: {}", cloud::short_code(&reason)),
            });
        }
        let Some(candidate) = chunk.candidates.into_iter().next() else {
            return Ok(SseStep::Nothing);
        };
        let text: String = candidate
            .content
            .into_iter()
            .flat_map(|content| content.parts)
            .filter(|part| !part.thought)
            .filter_map(|part| part.text)
            .collect();
        self.produced_text |= !text.is_empty();
        if let Some(reason) = candidate.finish_reason {
            self.finished = true;
            if !self.produced_text && BLOCKING_FINISH_REASONS.contains(&reason.as_str()) {
                return Err(ServiceError::Rejected {
                    service: SERVICE,
                    reason: format!("reply blocked: {}", cloud::short_code(&reason)),
                });
            }
        }
        Ok(SseStep::Text(text))
    }

    fn on_stray_line(&mut self, line: &str) {
        if self.stray_body.len() + line.len() <= MAX_STRAY_BODY {
            self.stray_body.push_str(line);
            self.stray_body.push('\n');
        }
    }

    fn on_end(&mut self) -> Result<(), ServiceError> {
        if !self.stray_body.trim().is_empty() {
            let value: Option<serde_json::Value> = serde_json::from_str(&self.stray_body).ok();
            let value = match value {
                Some(serde_json::Value::Array(mut items)) if !items.is_empty() => {
                    Some(items.swap_remove(0))
                }
                other => other,
            };
            return Err(match value {
                Some(value) if value.get("error").is_some() => in_stream_error(&value["error"]),
                _ => ServiceError::Protocol {
                    service: SERVICE,
                    reason: "unexpected non-event body".into(),
                },
            });
        }
        if !self.finished {
            return Err(ServiceError::Protocol {
                service: SERVICE,
                reason: "stream ended before the reply finished".into(),
            });
        }
        Ok(())
    }
}

/// An `{code, message, status}` error object that came inside a 200 response.
fn in_stream_error(error: &serde_json::Value) -> ServiceError {
    let status = error
        .get("code")
        .and_then(|code| code.as_u64())
        .and_then(|code| u16::try_from(code).ok())
        .unwrap_or(500);
    let code = error.get("status").and_then(|status| status.as_str());
    cloud::error_for_status(SERVICE, status, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ChatMessage;

    #[test]
    fn body_uses_gemini_roles_and_merges_consecutive_turns() {
        let request = ChatRequest {
            system: "Be kind.".into(),
            messages: vec![
                ChatMessage::assistant("Hi, I'm here."),
                ChatMessage::user("Hello"),
                ChatMessage::user("Are you there?"),
            ],
            max_tokens: 200,
            temperature: 0.5,
            first_text_by: None,
        };
        let body = serde_json::to_value(request_body(&request)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "contents": [
                    {"role": "model", "parts": [{"text": "Hi, I'm here."}]},
                    {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
                ],
                "systemInstruction": {"parts": [{"text": "Be kind."}]},
                "generationConfig": {"temperature": 0.5, "maxOutputTokens": 200},
            })
        );
    }

    #[test]
    fn thoughts_are_not_part_of_the_reply() {
        let mut stream = GeminiStream::default();
        let step = stream
            .on_event(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hmm","thought":true},{"text":"Hello"}]}}]}"#)
            .unwrap();
        assert!(matches!(step, SseStep::Text(text) if text == "Hello"));
    }

    #[test]
    fn a_safety_stop_without_text_is_a_rejection() {
        let mut stream = GeminiStream::default();
        let error = stream
            .on_event(r#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#)
            .err()
            .unwrap();
        assert_eq!(
            error,
            ServiceError::Rejected {
                service: SERVICE,
                reason: "reply blocked: SAFETY".into()
            }
        );
    }
}

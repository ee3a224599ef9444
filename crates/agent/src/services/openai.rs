//! OpenAI-compatible chat completions with `stream: true`: OpenAI itself, or any local server
//! that speaks the same API (Ollama, llama.cpp server, vLLM) through `base_url`.
//!
//! The stream ends with `data: [DONE]`; a body that stops before it (or before a
//! `finish_reason`) was cut off.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::cloud::{self, SseProtocol, SseStep, StreamLimits};
use super::{BoxStream, ChatRequest, ChatRole, LanguageModel, ServiceError};

const SERVICE: &str = "openai";

/// How to reach an OpenAI-compatible server. Built by the server's configuration; nothing
/// here reads the environment.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Sent as `Authorization: Bearer`; `None` for local servers that need no key.
    pub api_key: Option<String>,
    /// API root; default `https://api.openai.com/v1` (Ollama: `http://localhost:11434/v1`).
    pub base_url: String,
    /// Default `gpt-4o-mini`.
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

impl OpenAiConfig {
    pub fn new(api_key: Option<String>) -> Self {
        Self {
            api_key,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
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

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

pub struct OpenAiLanguageModel {
    config: OpenAiConfig,
    http: reqwest::Client,
}

impl OpenAiLanguageModel {
    pub fn new(config: OpenAiConfig) -> Result<Self, ServiceError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|_| ServiceError::Unavailable {
                service: SERVICE,
                reason: "HTTP client setup failed".into(),
            })?;
        Ok(Self { config, http })
    }
}

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    stream: bool,
    max_tokens: u32,
    temperature: f32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

fn request_body<'a>(model: &'a str, request: &'a ChatRequest) -> CompletionRequest<'a> {
    let system = (!request.system.is_empty()).then(|| Message {
        role: "system",
        content: &request.system,
    });
    let turns = request.messages.iter().map(|message| Message {
        role: match message.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        },
        content: &message.content,
    });
    CompletionRequest {
        model,
        messages: system.into_iter().chain(turns).collect(),
        stream: true,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    }
}

#[async_trait]
impl LanguageModel for OpenAiLanguageModel {
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
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut http_request = self
            .http
            .post(url)
            .json(&request_body(&self.config.model, &request));
        if let Some(key) = &self.config.api_key {
            http_request = http_request.bearer_auth(key);
        }
        let response = cloud::send_for_stream(SERVICE, http_request, limits, deadline).await?;
        Ok(cloud::sse_text_stream(
            SERVICE,
            response,
            OpenAiStream::default(),
            limits,
            deadline,
        ))
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Default)]
struct OpenAiStream {
    produced_text: bool,
    finished: bool,
}

impl SseProtocol for OpenAiStream {
    fn on_event(&mut self, data: &str) -> Result<SseStep, ServiceError> {
        if data.trim() == "[DONE]" {
            return Ok(SseStep::Finished);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|_| ServiceError::Protocol {
            service: SERVICE,
            reason: "malformed stream chunk".into(),
        })?;
        if let Some(error) = &chunk.error {
            let code = cloud::error_code_in_value(error);
            return Err(ServiceError::Unavailable {
                service: SERVICE,
                reason: format!(
                    "error mid-stream{}",
                    code.map(|code| format!(": {code}")).unwrap_or_default()
                ),
            });
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            // Usage-only chunks carry no choices.
            return Ok(SseStep::Nothing);
        };
        let text = choice
            .delta
            .and_then(|delta| delta.content)
            .unwrap_or_default();
        self.produced_text |= !text.is_empty();
        if let Some(reason) = choice.finish_reason {
            self.finished = true;
            if reason == "content_filter" && !self.produced_text {
                return Err(ServiceError::Rejected {
                    service: SERVICE,
                    reason: "reply blocked: content_filter".into(),
                });
            }
        }
        Ok(SseStep::Text(text))
    }

    fn on_end(&mut self) -> Result<(), ServiceError> {
        if self.finished {
            Ok(())
        } else {
            Err(ServiceError::Protocol {
                service: SERVICE,
                reason: "stream ended before [DONE]".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ChatMessage;

    #[test]
    fn body_puts_the_system_prompt_first_and_asks_for_a_stream() {
        let request = ChatRequest {
            system: "Be kind.".into(),
            messages: vec![
                ChatMessage::user("Hello"),
                ChatMessage::assistant("Hi"),
                ChatMessage::user("How are you?"),
            ],
            max_tokens: 100,
            temperature: 0.25,
            first_text_by: None,
        };
        let body = serde_json::to_value(request_body("gpt-4o-mini", &request)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi"},
                    {"role": "user", "content": "How are you?"},
                ],
                "stream": true,
                "max_tokens": 100,
                "temperature": 0.25,
            })
        );
    }

    #[test]
    fn a_finish_reason_completes_the_reply_even_without_done() {
        let mut stream = OpenAiStream::default();
        stream
            .on_event(
                r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
            )
            .unwrap();
        assert!(stream.on_end().is_ok());
        assert!(OpenAiStream::default().on_end().is_err());
    }
}

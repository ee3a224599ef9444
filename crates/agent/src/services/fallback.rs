//! A language model that answers with a primary provider (Gemini) and falls back to a
//! secondary one (OpenAI) when the primary cannot start a reply.
//!
//! The primary is skipped without trying when its circuit breaker is open. It counts as
//! failed, and the secondary is asked, when it errors or times out *before its first piece of
//! text*, or ends without any. Once text has reached the caller the reply stays with that
//! provider: an error after that ends the reply with the error (never two half answers).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use resilience::{BreakerConfig, CircuitBreaker, ErrorRateRule, Permit};
use tokio::time::Instant;

use super::cloud::millis;
use super::{BoxStream, ChatRequest, LanguageModel, ServiceError};

const SERVICE: &str = "llm";

#[derive(Debug, Clone, Copy)]
pub struct FallbackConfig {
    /// From asking a provider to its first piece of text; past it the next provider is asked.
    /// Default 8 s.
    pub first_token_timeout: Duration,
    /// The whole reply, fallback included; default 30 s.
    pub reply_timeout: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            first_token_timeout: Duration::from_secs(8),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// The breaker the primary gets by default: 3 failures in a minute, or more than 10 % of
/// replies failing over 5 minutes, open it for 45 s.
pub fn default_primary_breaker() -> CircuitBreaker {
    CircuitBreaker::new(
        BreakerConfig::speech_and_language()
            .with_error_rate(ErrorRateRule::ten_percent_over_five_minutes()),
    )
}

pub struct FallbackLanguageModel {
    primary: Arc<dyn LanguageModel>,
    primary_breaker: CircuitBreaker,
    secondary: Arc<dyn LanguageModel>,
    config: FallbackConfig,
}

impl FallbackLanguageModel {
    pub fn new(
        primary: Arc<dyn LanguageModel>,
        primary_breaker: CircuitBreaker,
        secondary: Arc<dyn LanguageModel>,
        config: FallbackConfig,
    ) -> Self {
        Self {
            primary,
            primary_breaker,
            secondary,
            config,
        }
    }
}

type TextStream = BoxStream<Result<String, ServiceError>>;

/// A reply that has produced its first piece of text.
struct Started {
    first: String,
    rest: TextStream,
}

/// Asks `model` and waits (until `first_token_deadline`) for its first non-empty text.
async fn start_reply(
    model: &dyn LanguageModel,
    request: ChatRequest,
    first_token_deadline: Instant,
    limit: Duration,
) -> Result<Started, ServiceError> {
    let service = model.name();
    let attempt = async {
        let mut stream = model.stream_reply(request).await?;
        loop {
            match stream.next().await {
                Some(Ok(text)) if text.is_empty() => continue,
                Some(Ok(first)) => {
                    return Ok(Started {
                        first,
                        rest: stream,
                    })
                }
                Some(Err(error)) => return Err(error),
                None => {
                    return Err(ServiceError::Protocol {
                        service,
                        reason: "reply ended without text".into(),
                    })
                }
            }
        }
    };
    tokio::time::timeout_at(first_token_deadline, attempt)
        .await
        .unwrap_or(Err(ServiceError::Timeout {
            service,
            after_ms: millis(limit),
        }))
}

#[async_trait]
impl LanguageModel for FallbackLanguageModel {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn stream_reply(&self, request: ChatRequest) -> Result<TextStream, ServiceError> {
        let started_at = Instant::now();
        let reply_deadline = started_at + self.config.reply_timeout;
        let first_token =
            |now: Instant| (now + self.config.first_token_timeout).min(reply_deadline);

        match self.primary_breaker.try_acquire() {
            Ok(permit) => match start_reply(
                self.primary.as_ref(),
                request.clone(),
                first_token(started_at),
                self.config.first_token_timeout,
            )
            .await
            {
                Ok(started) => {
                    return Ok(finish_reply(
                        started,
                        Some(permit),
                        reply_deadline,
                        self.config.reply_timeout,
                    ))
                }
                Err(error) => {
                    permit.failure();
                    tracing::warn!(provider = self.primary.name(), %error, "primary language model failed; falling back");
                }
            },
            Err(open) => {
                tracing::debug!(
                    provider = self.primary.name(),
                    retry_after_s = open.retry_after.as_secs(),
                    "primary breaker open; using fallback"
                );
            }
        }

        let now = Instant::now();
        if now >= reply_deadline {
            return Err(ServiceError::Timeout {
                service: SERVICE,
                after_ms: millis(self.config.reply_timeout),
            });
        }
        let started = start_reply(
            self.secondary.as_ref(),
            request,
            first_token(now),
            self.config.first_token_timeout,
        )
        .await?;
        Ok(finish_reply(
            started,
            None,
            reply_deadline,
            self.config.reply_timeout,
        ))
    }
}

/// The rest of a started reply, held to the overall deadline. The primary's permit is
/// settled by how the reply ends; a reply dropped by the caller (an interruption) counts
/// for nothing.
fn finish_reply(
    started: Started,
    permit: Option<Permit>,
    deadline: Instant,
    limit: Duration,
) -> TextStream {
    struct State {
        first: Option<String>,
        rest: TextStream,
        permit: Option<Permit>,
        done: bool,
    }
    let state = State {
        first: Some(started.first),
        rest: started.rest,
        permit,
        done: false,
    };
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            if let Some(first) = state.first.take() {
                return Some((Ok(first), state));
            }
            if state.done {
                return None;
            }
            let item = match tokio::time::timeout_at(deadline, state.rest.next()).await {
                Ok(item) => item,
                Err(_) => Some(Err(ServiceError::Timeout {
                    service: SERVICE,
                    after_ms: millis(limit),
                })),
            };
            match item {
                Some(Ok(text)) => Some((Ok(text), state)),
                Some(Err(error)) => {
                    state.done = true;
                    if let Some(permit) = state.permit.take() {
                        permit.failure();
                    }
                    Some((Err(error), state))
                }
                None => {
                    if let Some(permit) = state.permit.take() {
                        permit.success();
                    }
                    None
                }
            }
        },
    ))
}

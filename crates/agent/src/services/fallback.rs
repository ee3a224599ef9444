//! A language model that answers with a primary provider (Gemini) and falls back to a
//! secondary one (OpenAI) when the primary cannot start a reply.
//!
//! The primary is skipped without trying when its circuit breaker is open. It counts as
//! failed, and the secondary is asked, when it errors or times out *before its first piece of
//! text*, or ends without any. Once text has reached the caller the reply stays with that
//! provider: an error after that ends the reply with the error (never two half answers).
//!
//! The wait for the first text is the caller's (the request's `first_text_by`): the primary
//! gets a share of it and the secondary the rest, so a hung primary is counted as failed by its
//! breaker and the secondary still answers before the caller gives up.

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
    /// The share of the first-text budget (what is left of it when the request arrives) the
    /// primary gets; the secondary gets the rest. Default one half.
    pub primary_share: f64,
    /// The first-text budget of a request that names no deadline of its own; default 6 s.
    pub first_text_timeout: Duration,
    /// The whole reply, fallback included; default 30 s.
    pub reply_timeout: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            primary_share: 0.5,
            first_text_timeout: Duration::from_secs(6),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// The breaker the primary gets: 3 failures in a minute, or more than 10 % of replies failing
/// over 5 minutes, open it for 45 s.
pub fn primary_breaker_config() -> BreakerConfig {
    BreakerConfig::speech_and_language()
        .with_error_rate(ErrorRateRule::ten_percent_over_five_minutes())
}

pub fn default_primary_breaker() -> CircuitBreaker {
    CircuitBreaker::new(primary_breaker_config())
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

/// Asks `model` and waits (until `first_text_by`) for its first non-empty text.
async fn start_reply(
    model: &dyn LanguageModel,
    request: ChatRequest,
    first_text_by: Instant,
) -> Result<Started, ServiceError> {
    let service = model.name();
    let limit = first_text_by.saturating_duration_since(Instant::now());
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
    tokio::time::timeout_at(first_text_by, attempt)
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
        let first_text_by = request
            .first_text_by
            .unwrap_or(started_at + self.config.first_text_timeout)
            .min(reply_deadline);
        let budget = first_text_by.saturating_duration_since(started_at);
        let primary_by = started_at + budget.mul_f64(self.config.primary_share.clamp(0.0, 1.0));

        match self.primary_breaker.try_acquire() {
            Ok(permit) => {
                match start_reply(self.primary.as_ref(), request.clone(), primary_by).await {
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
                }
            }
            Err(open) => {
                tracing::debug!(
                    provider = self.primary.name(),
                    retry_after_s = open.retry_after.as_secs(),
                    "primary breaker open; using fallback"
                );
            }
        }

        if Instant::now() >= first_text_by {
            return Err(ServiceError::Timeout {
                service: SERVICE,
                after_ms: millis(budget),
            });
        }
        let started = start_reply(self.secondary.as_ref(), request, first_text_by).await?;
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

//! Gemini, OpenAI-compatible and fallback language models against local fakes that speak
//! the real streaming protocols.

mod cloud_fakes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::services::fallback::{primary_breaker_config, FallbackConfig, FallbackLanguageModel};
use agent::services::gemini::{GeminiConfig, GeminiLanguageModel};
use agent::services::openai::{OpenAiConfig, OpenAiLanguageModel};
use agent::services::{BoxStream, ChatMessage, ChatRequest, LanguageModel, ServiceError};
use cloud_fakes::llm::{gemini_chunk, openai_chunk, FakeLlm, Flavor, Reply, OPENAI_DONE};
use cloud_fakes::within_5s;
use futures::StreamExt;
use resilience::{BreakerConfig, CircuitBreaker, ManualClock};

const GEMINI_KEY: &str = "gemini-test-key";
const OPENAI_KEY: &str = "sk-openai-test-key";

fn request() -> ChatRequest {
    ChatRequest {
        system: "You are a calm counselor.".into(),
        messages: vec![
            ChatMessage::user("I feel stressed about exams."),
            ChatMessage::assistant("That sounds hard."),
            ChatMessage::user("What can I do?"),
        ],
        max_tokens: 150,
        temperature: 0.7,
        first_text_by: None,
    }
}

fn quick_gemini_config(base_url: &str, key: &str) -> GeminiConfig {
    let mut config = GeminiConfig::new(key);
    config.base_url = base_url.into();
    config.first_byte_timeout = Duration::from_millis(300);
    config.between_chunks_timeout = Duration::from_millis(300);
    config.overall_timeout = Duration::from_secs(3);
    config
}

fn gemini(fake: &FakeLlm) -> GeminiLanguageModel {
    GeminiLanguageModel::new(quick_gemini_config(&fake.base_url, GEMINI_KEY)).unwrap()
}

fn quick_openai_config(base_url: &str, key: Option<&str>) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(key.map(str::to_owned));
    config.base_url = base_url.into();
    config.first_byte_timeout = Duration::from_millis(300);
    config.between_chunks_timeout = Duration::from_millis(300);
    config.overall_timeout = Duration::from_secs(3);
    config
}

fn openai(fake: &FakeLlm) -> OpenAiLanguageModel {
    OpenAiLanguageModel::new(quick_openai_config(&fake.base_url, Some(OPENAI_KEY))).unwrap()
}

async fn gemini_fake(replies: Vec<Reply>) -> FakeLlm {
    FakeLlm::start(
        Flavor::Gemini {
            key: GEMINI_KEY.into(),
        },
        replies,
    )
    .await
}

async fn openai_fake(replies: Vec<Reply>) -> FakeLlm {
    FakeLlm::start(
        Flavor::OpenAi {
            key: Some(OPENAI_KEY.into()),
        },
        replies,
    )
    .await
}

/// Everything the stream yields: the text so far and the error that ended it, if any.
async fn drain(
    mut stream: BoxStream<Result<String, ServiceError>>,
) -> (String, Option<ServiceError>) {
    let mut text = String::new();
    while let Some(item) = within_5s("the next piece of the reply", stream.next()).await {
        match item {
            Ok(piece) => text.push_str(&piece),
            Err(error) => {
                assert!(
                    stream.next().await.is_none(),
                    "the first error must end the stream"
                );
                return (text, Some(error));
            }
        }
    }
    (text, None)
}

async fn reply_of(
    model: &dyn LanguageModel,
) -> Result<(String, Option<ServiceError>), ServiceError> {
    let stream = within_5s("the reply to start", model.stream_reply(request())).await?;
    Ok(drain(stream).await)
}

fn gemini_reply(pieces: &[&str]) -> Reply {
    let last = pieces.len() - 1;
    Reply::Stream(
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| gemini_chunk(piece, (i == last).then_some("STOP")))
            .collect(),
    )
}

fn openai_reply(pieces: &[&str]) -> Reply {
    let mut events: Vec<String> = pieces
        .iter()
        .map(|piece| openai_chunk(piece, None))
        .collect();
    events.push(openai_chunk("", Some("stop")));
    events.push(OPENAI_DONE.into());
    Reply::Stream(events)
}

// ---------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gemini_streams_the_reply_and_sends_what_the_api_expects() {
    let fake = gemini_fake(vec![gemini_reply(&["Try ", "short breaks ", "and sleep."])]).await;
    let (text, error) = reply_of(&gemini(&fake)).await.unwrap();
    assert_eq!(text, "Try short breaks and sleep.");
    assert_eq!(error, None);
    let body = fake.last_body();
    assert_eq!(
        body["systemInstruction"]["parts"][0]["text"],
        "You are a calm counselor."
    );
    let roles: Vec<_> = body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|content| content["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 150);
}

#[tokio::test]
async fn gemini_wrong_key_is_rejected_without_echoing_key_or_body() {
    let fake = gemini_fake(vec![gemini_reply(&["unused"])]).await;
    let model =
        GeminiLanguageModel::new(quick_gemini_config(&fake.base_url, "wrong-key-123")).unwrap();
    let error = reply_of(&model).await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Rejected {
            service: "gemini",
            reason: "HTTP 400 INVALID_ARGUMENT".into()
        }
    );
    let message = error.to_string();
    assert!(
        !message.contains("wrong-key-123") && !message.contains("API key not valid"),
        "{message}"
    );
    assert_eq!(fake.served(), 0);
}

#[tokio::test]
async fn gemini_rate_limit_and_server_errors_map_to_their_classes() {
    let quota = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let down =
        r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
    let fake = gemini_fake(vec![
        Reply::Status(429, quota.into()),
        Reply::Status(503, down.into()),
    ])
    .await;
    let model = gemini(&fake);
    assert_eq!(
        reply_of(&model).await.unwrap_err(),
        ServiceError::RateLimited { service: "gemini" }
    );
    assert_eq!(
        reply_of(&model).await.unwrap_err(),
        ServiceError::Unavailable {
            service: "gemini",
            reason: "HTTP 503 UNAVAILABLE".into()
        }
    );
}

#[tokio::test]
async fn gemini_error_body_without_data_prefix_inside_a_stream_is_an_error() {
    let bare_error = "[{\n  \"error\": {\n    \"code\": 500,\n    \"message\": \"Internal error encountered.\",\n    \"status\": \"INTERNAL\"\n  }\n}\n]\n";
    let fake = gemini_fake(vec![Reply::Stream(vec![bare_error.into()])]).await;
    let (text, error) = reply_of(&gemini(&fake)).await.unwrap();
    assert_eq!(text, "");
    assert_eq!(
        error,
        Some(ServiceError::Unavailable {
            service: "gemini",
            reason: "HTTP 500 INTERNAL".into()
        })
    );
}

#[tokio::test]
async fn gemini_malformed_chunk_is_a_protocol_error() {
    let fake = gemini_fake(vec![Reply::Stream(vec![
        gemini_chunk("Hello", None),
        "data: {\"candidates\": [\n\n".into(),
    ])])
    .await;
    let (text, error) = reply_of(&gemini(&fake)).await.unwrap();
    assert_eq!(text, "Hello");
    assert!(
        matches!(
            error,
            Some(ServiceError::Protocol {
                service: "gemini",
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn gemini_stream_that_ends_before_finishing_is_a_protocol_error() {
    let fake = gemini_fake(vec![Reply::Stream(vec![gemini_chunk("Half a tho", None)])]).await;
    let (text, error) = reply_of(&gemini(&fake)).await.unwrap();
    assert_eq!(text, "Half a tho");
    assert!(
        matches!(error, Some(ServiceError::Protocol { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn gemini_that_never_answers_times_out() {
    let fake = gemini_fake(vec![Reply::NeverAnswer]).await;
    let started = Instant::now();
    let error = reply_of(&gemini(&fake)).await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Timeout {
            service: "gemini",
            after_ms: 300
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn gemini_stalling_mid_stream_times_out() {
    let fake = gemini_fake(vec![Reply::StreamThenStall(vec![gemini_chunk(
        "I hear ", None,
    )])])
    .await;
    let (text, error) = reply_of(&gemini(&fake)).await.unwrap();
    assert_eq!(text, "I hear ");
    assert_eq!(
        error,
        Some(ServiceError::Timeout {
            service: "gemini",
            after_ms: 300
        })
    );
}

#[tokio::test]
async fn gemini_that_cannot_be_reached_is_unavailable() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1beta", listener.local_addr().unwrap());
    drop(listener);
    let model = GeminiLanguageModel::new(quick_gemini_config(&base_url, GEMINI_KEY)).unwrap();
    let error = reply_of(&model).await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Unavailable {
            service: "gemini",
            reason: "could not connect".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_streams_until_done_with_bearer_auth() {
    let fake = openai_fake(vec![openai_reply(&["One step ", "at a time."])]).await;
    let (text, error) = reply_of(&openai(&fake)).await.unwrap();
    assert_eq!((text.as_str(), error), ("One step at a time.", None));
    assert_eq!(
        fake.authorization_headers(),
        [Some(format!("Bearer {OPENAI_KEY}"))]
    );
    let body = fake.last_body();
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "system", "content": "You are a calm counselor."})
    );
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn openai_compatible_local_server_needs_no_key() {
    let fake = FakeLlm::start(
        Flavor::OpenAi { key: None },
        vec![openai_reply(&["Local ", "reply."])],
    )
    .await;
    let mut config = quick_openai_config(&fake.base_url, None);
    config.model = "llama3.2".into();
    let model = OpenAiLanguageModel::new(config).unwrap();
    let (text, _) = reply_of(&model).await.unwrap();
    assert_eq!(text, "Local reply.");
    assert_eq!(
        fake.authorization_headers(),
        [None],
        "no key, no Authorization header"
    );
    assert_eq!(fake.last_body()["model"], "llama3.2");
}

#[tokio::test]
async fn openai_wrong_key_is_rejected_with_its_code_only() {
    let fake = openai_fake(vec![openai_reply(&["unused"])]).await;
    let model = OpenAiLanguageModel::new(quick_openai_config(&fake.base_url, Some("sk-wrong-999")))
        .unwrap();
    let error = reply_of(&model).await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Rejected {
            service: "openai",
            reason: "HTTP 401 invalid_api_key".into()
        }
    );
    assert!(!error.to_string().contains("sk-wrong-999"));
}

#[tokio::test]
async fn openai_stream_cut_before_done_is_a_protocol_error() {
    let fake = openai_fake(vec![Reply::Stream(vec![openai_chunk("Partial", None)])]).await;
    let (text, error) = reply_of(&openai(&fake)).await.unwrap();
    assert_eq!(text, "Partial");
    assert_eq!(
        error,
        Some(ServiceError::Protocol {
            service: "openai",
            reason: "stream ended before [DONE]".into()
        })
    );
}

#[tokio::test]
async fn openai_server_error_and_malformed_chunk() {
    let fake = openai_fake(vec![
        Reply::Status(500, r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#.into()),
        Reply::Stream(vec!["data: {not json}\n\n".into()]),
    ])
    .await;
    let model = openai(&fake);
    assert_eq!(
        reply_of(&model).await.unwrap_err(),
        ServiceError::Unavailable {
            service: "openai",
            reason: "HTTP 500 server_error".into()
        }
    );
    let (_, error) = reply_of(&model).await.unwrap();
    assert!(
        matches!(
            error,
            Some(ServiceError::Protocol {
                service: "openai",
                ..
            })
        ),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fallback
// ---------------------------------------------------------------------------------------------

struct Fallback {
    model: FallbackLanguageModel,
    gemini: FakeLlm,
    openai: FakeLlm,
}

async fn fallback(gemini_replies: Vec<Reply>, breaker: CircuitBreaker) -> Fallback {
    let gemini_fake = gemini_fake(gemini_replies).await;
    let openai_fake = openai_fake(vec![openai_reply(&["Fallback ", "answer."])]).await;
    // Gemini's own header wait is generous, so the fallback's first-token limit decides.
    let mut primary_config = quick_gemini_config(&gemini_fake.base_url, GEMINI_KEY);
    primary_config.first_byte_timeout = Duration::from_secs(3);
    primary_config.between_chunks_timeout = Duration::from_millis(400);
    let primary = Arc::new(GeminiLanguageModel::new(primary_config).unwrap());
    let secondary = Arc::new(openai(&openai_fake));
    // Requests name no deadline here, so Gemini gets half of 600 ms to start.
    let config = FallbackConfig {
        primary_share: 0.5,
        first_text_timeout: Duration::from_millis(600),
        reply_timeout: Duration::from_secs(3),
    };
    Fallback {
        model: FallbackLanguageModel::new(primary, breaker, secondary, config),
        gemini: gemini_fake,
        openai: openai_fake,
    }
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::with_clock(BreakerConfig::speech_and_language(), ManualClock::new())
}

#[tokio::test]
async fn fallback_uses_the_primary_when_it_works() {
    let setup = fallback(vec![gemini_reply(&["Primary ", "answer."])], breaker()).await;
    let (text, error) = reply_of(&setup.model).await.unwrap();
    assert_eq!((text.as_str(), error), ("Primary answer.", None));
    assert_eq!((setup.gemini.served(), setup.openai.served()), (1, 0));
}

#[tokio::test]
async fn fallback_switches_to_openai_when_gemini_errors() {
    let down = r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#;
    let setup = fallback(vec![Reply::Status(503, down.into())], breaker()).await;
    let (text, error) = reply_of(&setup.model).await.unwrap();
    assert_eq!((text.as_str(), error), ("Fallback answer.", None));
    assert_eq!((setup.gemini.served(), setup.openai.served()), (1, 1));
}

#[tokio::test]
async fn fallback_switches_when_gemini_gives_no_first_token_in_time() {
    for silent in [
        Reply::NeverAnswer,
        Reply::StreamThenStall(vec![": connected\n\n".into()]),
    ] {
        let setup = fallback(vec![silent], breaker()).await;
        let started = Instant::now();
        let (text, error) = reply_of(&setup.model).await.unwrap();
        assert_eq!((text.as_str(), error), ("Fallback answer.", None));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn fallback_skips_gemini_at_once_while_its_breaker_is_open() {
    let down = r#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#;
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::with_clock(BreakerConfig::speech_and_language(), clock.clone());
    let setup = fallback(vec![Reply::Status(500, down.into())], breaker).await;
    for _ in 0..3 {
        reply_of(&setup.model).await.unwrap();
    }
    assert_eq!(setup.gemini.served(), 3, "three failures open the breaker");

    let started = Instant::now();
    let (text, _) = reply_of(&setup.model).await.unwrap();
    assert_eq!(text, "Fallback answer.");
    assert_eq!(
        setup.gemini.served(),
        3,
        "an open breaker must not call Gemini"
    );
    assert!(started.elapsed() < Duration::from_millis(300));

    // After the reset time one probe goes to Gemini again.
    clock.advance(Duration::from_secs(45));
    reply_of(&setup.model).await.unwrap();
    assert_eq!(setup.gemini.served(), 4);
}

#[tokio::test]
async fn fallback_never_switches_provider_mid_reply() {
    let setup = fallback(
        vec![Reply::StreamThenStall(vec![gemini_chunk(
            "I understand ",
            None,
        )])],
        breaker(),
    )
    .await;
    let (text, error) = reply_of(&setup.model).await.unwrap();
    assert_eq!(text, "I understand ");
    assert_eq!(
        error,
        Some(ServiceError::Timeout {
            service: "gemini",
            after_ms: 400
        })
    );
    assert_eq!(setup.openai.served(), 0);
}

#[tokio::test]
async fn fallback_reports_the_secondary_error_when_both_fail() {
    let down = r#"{"error":{"code":503,"message":"x","status":"UNAVAILABLE"}}"#;
    let gemini_fake = gemini_fake(vec![Reply::Status(503, down.into())]).await;
    let openai_fake = openai_fake(vec![Reply::Status(
        429,
        r#"{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}"#
            .into(),
    )])
    .await;
    let model = FallbackLanguageModel::new(
        Arc::new(gemini(&gemini_fake)),
        breaker(),
        Arc::new(openai(&openai_fake)),
        FallbackConfig::default(),
    );
    assert_eq!(
        reply_of(&model).await.unwrap_err(),
        ServiceError::RateLimited { service: "openai" }
    );
}

/// The production chain as a call uses it: default adapters (whose own waits are longer than
/// the turn's), the default fallback and breaker.
async fn production_chain(gemini_replies: Vec<Reply>) -> (FallbackLanguageModel, FakeLlm) {
    let gemini_fake = gemini_fake(gemini_replies).await;
    let openai_fake = openai_fake(vec![openai_reply(&["Fallback ", "answer."])]).await;
    let mut gemini_config = GeminiConfig::new(GEMINI_KEY);
    gemini_config.base_url = gemini_fake.base_url.clone();
    let mut openai_config = OpenAiConfig::new(Some(OPENAI_KEY.into()));
    openai_config.base_url = openai_fake.base_url.clone();
    let model = FallbackLanguageModel::new(
        Arc::new(GeminiLanguageModel::new(gemini_config).unwrap()),
        CircuitBreaker::with_clock(primary_breaker_config(), ManualClock::new()),
        Arc::new(OpenAiLanguageModel::new(openai_config).unwrap()),
        FallbackConfig::default(),
    );
    (model, gemini_fake)
}

/// A request carrying a turn's first-text deadline.
fn request_due_in(budget: Duration) -> ChatRequest {
    let mut request = request();
    request.first_text_by = Some(tokio::time::Instant::now() + budget);
    request
}

/// Whatever Gemini does wrong, OpenAI's reply starts before the turn's deadline.
#[tokio::test]
async fn the_fallback_answers_within_the_turns_budget_whatever_gemini_does() {
    let budget = Duration::from_millis(1500);
    for failure in [
        Reply::NeverAnswer,
        Reply::Status(
            500,
            r#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#.into(),
        ),
        Reply::Status(
            429,
            r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#.into(),
        ),
        Reply::StreamThenStall(vec![": connected\n\n".into()]),
    ] {
        let (model, gemini) = production_chain(vec![failure.clone()]).await;
        let started = Instant::now();
        let mut stream = within_5s(
            "the reply to start",
            model.stream_reply(request_due_in(budget)),
        )
        .await
        .unwrap_or_else(|e| panic!("{failure:?}: no reply: {e}"));
        let first = stream.next().await.expect("text").expect("no error");
        assert!(
            started.elapsed() < budget,
            "{failure:?}: first text after {:?}",
            started.elapsed()
        );
        let (rest, error) = drain(stream).await;
        assert_eq!((first + &rest, error), ("Fallback answer.".into(), None));
        assert_eq!(gemini.served(), 1, "{failure:?}: Gemini was asked once");
    }
}

/// A Gemini that hangs is counted as failed (not dropped with the turn), so its breaker opens
/// after three turns and the next turns go straight to OpenAI.
#[tokio::test]
async fn a_hung_gemini_opens_its_breaker() {
    let (model, gemini) = production_chain(vec![Reply::NeverAnswer]).await;
    let budget = Duration::from_millis(600);
    for _ in 0..3 {
        let (text, _) = drain(model.stream_reply(request_due_in(budget)).await.unwrap()).await;
        assert_eq!(text, "Fallback answer.");
    }
    let started = Instant::now();
    let (text, _) = drain(model.stream_reply(request_due_in(budget)).await.unwrap()).await;
    assert_eq!(text, "Fallback answer.");
    assert_eq!(
        gemini.served(),
        3,
        "Gemini was asked while its breaker was open"
    );
    assert!(started.elapsed() < budget / 2, "{:?}", started.elapsed());
}

//! What the cloud LLM adapters add on top of the provider: time to first text and to the end
//! of a streamed reply through the Gemini and OpenAI adapters against a local server that
//! answers at once with a canned stream (so everything measured is ours: HTTP, SSE decoding,
//! JSON parsing, timeouts), plus how fast the fallback skips a primary whose breaker is open.
//!
//!     cargo run -p agent --release --example cloud_llm_overhead
//!
//! Prints one JSON line with the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::services::fallback::{FallbackConfig, FallbackLanguageModel};
use agent::services::gemini::{GeminiConfig, GeminiLanguageModel};
use agent::services::openai::{OpenAiConfig, OpenAiLanguageModel};
use agent::services::{ChatMessage, ChatRequest, LanguageModel};
use futures::StreamExt;
use resilience::{BreakerConfig, CircuitBreaker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REPLIES: usize = 300;
/// Text pieces per reply: a typical two-sentence counselor answer streams in about this many.
const PIECES: usize = 40;

/// An HTTP/1.1 server that answers every request with `status` and `body`, one connection per
/// request.
async fn canned_server(status: &'static str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let body: Arc<str> = body.into();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request head and body (small; one read usually holds it all).
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let Ok(read) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    if let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

fn gemini_body() -> String {
    (0..PIECES)
        .map(|i| {
            let finish = if i + 1 == PIECES { r#","finishReason":"STOP""# } else { "" };
            format!("data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"word{i} \"}}]}}{finish},\"index\":0}}]}}\r\n\r\n")
        })
        .collect()
}

fn openai_body() -> String {
    let mut body: String = (0..PIECES)
        .map(|i| format!("data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n"))
        .collect();
    body.push_str("data: [DONE]\n\n");
    body
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "You are a calm, supportive counselor for college students.".into(),
        messages: vec![ChatMessage::user(
            "I have three exams next week and I can't sleep.",
        )],
        max_tokens: 200,
        temperature: 0.7,
        first_text_by: None,
    }
}

struct Timings {
    first_text_ms: Vec<f64>,
    whole_reply_ms: Vec<f64>,
}

async fn measure(model: &dyn LanguageModel) -> Timings {
    let mut timings = Timings {
        first_text_ms: Vec::new(),
        whole_reply_ms: Vec::new(),
    };
    for _ in 0..REPLIES {
        let started = Instant::now();
        let mut stream = model.stream_reply(request()).await.expect("reply starts");
        let mut pieces = 0;
        while let Some(piece) = stream.next().await {
            piece.expect("reply streams");
            if pieces == 0 {
                timings
                    .first_text_ms
                    .push(started.elapsed().as_secs_f64() * 1000.0);
            }
            pieces += 1;
        }
        assert_eq!(pieces, PIECES);
        timings
            .whole_reply_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
    }
    timings
}

fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    (sorted[index] * 1000.0).round() / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gemini_url = canned_server("200 OK", gemini_body()).await;
    let openai_url = canned_server("200 OK", openai_body()).await;
    let failing_url = canned_server(
        "503 Service Unavailable",
        r#"{"error":{"code":503,"message":"x","status":"UNAVAILABLE"}}"#.into(),
    )
    .await;

    let mut gemini_config = GeminiConfig::new("bench-key");
    gemini_config.base_url = format!("{gemini_url}/v1beta");
    let gemini = GeminiLanguageModel::new(gemini_config).unwrap();
    let mut openai_config = OpenAiConfig::new(Some("bench-key".into()));
    openai_config.base_url = format!("{openai_url}/v1");
    let openai = Arc::new(OpenAiLanguageModel::new(openai_config).unwrap());

    // Warm up connections and code paths.
    let _ = measure(&gemini).await;
    let gemini_timings = measure(&gemini).await;
    let openai_timings = measure(openai.as_ref()).await;

    // Fallback with a failing primary: the first three replies pay for the failed attempt,
    // then the breaker opens and the primary is skipped.
    let mut failing_config = GeminiConfig::new("bench-key");
    failing_config.base_url = format!("{failing_url}/v1beta");
    let failing = Arc::new(GeminiLanguageModel::new(failing_config).unwrap());
    let breaker = CircuitBreaker::new(BreakerConfig::speech_and_language());
    let fallback = FallbackLanguageModel::new(failing, breaker, openai, FallbackConfig::default());
    for _ in 0..3 {
        let _ = measure_one(&fallback).await;
    }
    let open_timings = measure(&fallback).await;

    // The breaker's own cost per guarded call.
    let breaker = CircuitBreaker::new(BreakerConfig::speech_and_language());
    let calls = 1_000_000u32;
    let started = Instant::now();
    for _ in 0..calls {
        breaker.try_acquire().unwrap().success();
    }
    let breaker_ns = started.elapsed().as_nanos() as f64 / calls as f64;

    println!(
        "{}",
        serde_json::json!({
            "benchmark": "cloud_llm_overhead",
            "replies": REPLIES,
            "pieces_per_reply": PIECES,
            "gemini_first_text_ms_p50": percentile(&gemini_timings.first_text_ms, 0.5),
            "gemini_first_text_ms_p95": percentile(&gemini_timings.first_text_ms, 0.95),
            "gemini_whole_reply_ms_p50": percentile(&gemini_timings.whole_reply_ms, 0.5),
            "openai_first_text_ms_p50": percentile(&openai_timings.first_text_ms, 0.5),
            "openai_first_text_ms_p95": percentile(&openai_timings.first_text_ms, 0.95),
            "openai_whole_reply_ms_p50": percentile(&openai_timings.whole_reply_ms, 0.5),
            "fallback_breaker_open_first_text_ms_p50": percentile(&open_timings.first_text_ms, 0.5),
            "fallback_breaker_open_first_text_ms_p95": percentile(&open_timings.first_text_ms, 0.95),
            "breaker_ns_per_call": (breaker_ns * 10.0).round() / 10.0,
        })
    );
}

async fn measure_one(model: &dyn LanguageModel) -> Duration {
    let started = Instant::now();
    if let Ok(mut stream) = model.stream_reply(request()).await {
        while stream.next().await.is_some() {}
    }
    started.elapsed()
}

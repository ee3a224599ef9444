//! Offline language model speed on one thread: time to first token for a student's first
//! question (cold, and with the counselor's system prompt already read), for a follow-up
//! question in the same conversation, and the generation rate.
//!
//! `cargo run --release -p offline --example llm_bench [f32|q8_0]` (weight format, default
//! f32; models from `$COUNSEL_MODELS_DIR`, else installed into `target/models`). Ends with
//! one JSON line.

use std::time::{Duration, Instant};

use agent::services::{ChatMessage, ChatRequest};
use domain::Category;
use offline::llm::{LlmConfig, LocalLanguageModel, WeightFormat};
use offline::prompts::compact_persona;

const RUNS: usize = 3;
const MAX_TOKENS: u32 = 96;
const QUESTION: &str =
    "I only sleep four hours a night because I am so stressed. What should I do?";
const FOLLOW_UP: &str = "I tried that but I still wake up at night. What else can I do?";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Reply {
    text: String,
    tokens: usize,
    first_token: Duration,
    tokens_per_s: f64,
}

fn generate(model: &LocalLanguageModel, request: &ChatRequest) -> Reply {
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut text = String::new();
    let tokens = model
        .generate_blocking(request, |piece| {
            first.get_or_insert_with(Instant::now);
            text.push_str(&piece);
            true
        })
        .expect("generate");
    let end = Instant::now();
    let first = first.expect("at least one token");
    Reply {
        text,
        tokens,
        first_token: first - start,
        tokens_per_s: tokens.saturating_sub(1) as f64 / (end - first).as_secs_f64(),
    }
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round()
}

fn main() {
    let paths = offline::testing::model_paths();
    let weights = match std::env::args().nth(1).as_deref() {
        None | Some("f32") => WeightFormat::Float32,
        Some("q8_0") => WeightFormat::Q8_0,
        Some(other) => panic!("unknown weight format {other:?}; expected f32 or q8_0"),
    };
    let config = LlmConfig {
        weights,
        seed: Some(11),
        ..LlmConfig::default()
    };
    let threads = config.threads;
    let load_start = Instant::now();
    let cached = LocalLanguageModel::load(&paths.llm_gguf, config.clone()).expect("load the model");
    let load_ms = ms(load_start.elapsed());
    let uncached = LocalLanguageModel::load(
        &paths.llm_gguf,
        LlmConfig {
            cached_prefixes: 0,
            ..config
        },
    )
    .expect("load the model");

    let first_turn = ChatRequest {
        system: compact_persona(Category::Health).to_string(),
        messages: vec![ChatMessage::user(QUESTION)],
        max_tokens: MAX_TOKENS,
        temperature: 0.5,
        first_text_by: None,
    };
    let prompt_tokens = cached
        .prompt_tokens(&first_turn)
        .expect("prompt")
        .tokens
        .len();

    let (mut cold, mut warm, mut follow_up, mut rates, mut counts) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut follow_up_prompt_tokens = 0;
    for run in 0..RUNS {
        let reply = generate(&uncached, &first_turn);
        cold.push(ms(reply.first_token));
        rates.push(reply.tokens_per_s);
        counts.push(reply.tokens as f64);
        eprintln!(
            "run {run} cold: {} tokens, first after {:?}: {:?}",
            reply.tokens, reply.first_token, reply.text
        );

        // The counselor's system prompt has been read before (by an earlier call).
        let reply = generate(&cached, &first_turn);
        if run > 0 {
            warm.push(ms(reply.first_token));
        }
        // The student's next turn: the conversation so far is cached up to the reply.
        let mut second_turn = first_turn.clone();
        second_turn
            .messages
            .push(ChatMessage::assistant(reply.text.trim()));
        second_turn.messages.push(ChatMessage::user(FOLLOW_UP));
        follow_up_prompt_tokens = cached
            .prompt_tokens(&second_turn)
            .expect("prompt")
            .tokens
            .len();
        let second = generate(&cached, &second_turn);
        follow_up.push(ms(second.first_token));
        eprintln!(
            "run {run} follow-up: first after {:?}: {:?}",
            second.first_token, second.text
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "llm",
            "model": "SmolLM2-135M-Instruct Q4_1 (candle)",
            "weights": format!("{weights:?}"),
            "threads": threads,
            "runs": RUNS,
            "load_ms": load_ms,
            "prompt_tokens": prompt_tokens,
            "follow_up_prompt_tokens": follow_up_prompt_tokens,
            "time_to_first_token_cold_ms_median": median(cold),
            "time_to_first_token_system_prompt_cached_ms_median": median(warm),
            "time_to_first_token_follow_up_ms_median": median(follow_up),
            "generated_tokens_median": median(counts),
            "tokens_per_s_median": (median(rates) * 10.0).round() / 10.0,
        })
    );
}

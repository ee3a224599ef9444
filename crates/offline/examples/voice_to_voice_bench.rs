//! Voice-to-voice latency of one offline turn, everything local: from the moment the student
//! stops speaking to the counselor's first audio. That is Whisper on the utterance, the
//! language model up to the end of its first sentence, and the voice's first piece.
//!
//! The student's utterance is made by the voice itself (resampled to 16 kHz), so the program
//! needs nothing but the models. `cargo run --release -p offline --example voice_to_voice_bench`
//! (models from `$COUNSEL_MODELS_DIR`, else installed into `target/models`). Ends with one JSON line.

use std::time::{Duration, Instant};

use agent::services::{ChatMessage, ChatRequest, LanguageModel, TextToSpeech};
use domain::Category;
use futures::StreamExt;
use offline::llm::{LlmConfig, LocalLanguageModel};
use offline::piper::{PiperConfig, PiperVoice};
use offline::prompts::compact_persona;
use offline::whisper::WhisperModel;

const RUNS: usize = 3;
const STUDENT_SAYS: &str = "I have an exam tomorrow and I feel really anxious. What should I do?";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round()
}

/// Linear-interpolation resampling to 16 kHz floats, Whisper's input.
fn to_16k(samples: &[i16], rate: u32) -> Vec<f32> {
    let out_len = (samples.len() as u64 * 16_000 / rate as u64) as usize;
    let step = rate as f64 / 16_000.0;
    (0..out_len)
        .map(|i| {
            let position = i as f64 * step;
            let index = position as usize;
            let frac = (position - index as f64) as f32;
            let a = samples[index] as f32;
            let b = *samples.get(index + 1).unwrap_or(&samples[index]) as f32;
            (a + (b - a) * frac) / 32768.0
        })
        .collect()
}

/// The end of the first complete sentence in `text`, if there is one yet.
fn first_sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .find(|&i| {
            matches!(bytes[i], b'.' | b'!' | b'?')
                && bytes.get(i + 1).is_some_and(|b| b.is_ascii_whitespace())
                && i > 10
        })
        .map(|i| i + 1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let paths = offline::testing::model_paths();
    // The language model goes first: it sets candle's (process-wide) thread count.
    let llm = LocalLanguageModel::load(
        &paths.llm_gguf,
        LlmConfig {
            seed: Some(5),
            ..LlmConfig::default()
        },
    )
    .expect("load the model");
    let whisper = WhisperModel::load(&paths.whisper_dir).expect("load Whisper");
    let voice = PiperVoice::load(
        &paths.piper_voice,
        &paths.piper_voice_config,
        &paths.onnxruntime_lib,
        PiperConfig::default(),
    )
    .expect("load the voice");

    let utterance: Vec<i16> = voice
        .speak(STUDENT_SAYS)
        .await
        .expect("speak")
        .flat_map(|chunk| futures::stream::iter(chunk.expect("synthesis").samples))
        .collect()
        .await;
    let utterance = to_16k(&utterance, voice.sample_rate());
    let system = compact_persona(Category::Academic).to_string();
    // Warm-up turn: each counselor's system prompt is read once per process, not per turn.
    let _ = whisper.transcribe(&utterance).expect("transcribe");
    let _ = llm
        .generate_blocking(
            &ChatRequest {
                system: system.clone(),
                messages: vec![ChatMessage::user("Hello.")],
                max_tokens: 1,
                temperature: 0.5,
                first_text_by: None,
            },
            |_| true,
        )
        .expect("warm-up");

    let (mut stt, mut llm_first_sentence, mut tts_first, mut total) =
        (vec![], vec![], vec![], vec![]);
    let mut heard = String::new();
    let mut said = String::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        heard = whisper.transcribe(&utterance).expect("transcribe").text;
        let after_stt = Instant::now();

        let request = ChatRequest {
            system: system.clone(),
            messages: vec![ChatMessage::user(heard.trim())],
            max_tokens: 80,
            temperature: 0.5,
            first_text_by: None,
        };
        let mut reply_stream = llm.stream_reply(request).await.expect("reply");
        let mut reply = String::new();
        let sentence = loop {
            match reply_stream.next().await {
                Some(piece) => {
                    reply.push_str(&piece.expect("generation"));
                    if let Some(end) = first_sentence_end(&reply) {
                        break reply[..end].trim().to_string();
                    }
                }
                None => break reply.trim().to_string(),
            }
        };
        drop(reply_stream);
        let after_llm = Instant::now();

        let mut audio = voice.speak(&sentence).await.expect("speak");
        let first_chunk = audio.next().await.expect("audio").expect("synthesis");
        assert!(!first_chunk.samples.is_empty());
        let after_tts = Instant::now();
        drop(audio);
        said = sentence;

        stt.push(ms(after_stt - start));
        llm_first_sentence.push(ms(after_llm - after_stt));
        tts_first.push(ms(after_tts - after_llm));
        total.push(ms(after_tts - start));
    }
    eprintln!("heard: {heard:?}\nfirst sentence: {said:?}");
    let total_median = median(total);
    println!(
        "{}",
        serde_json::json!({
            "bench": "voice_to_voice",
            "runs": RUNS,
            "utterance_seconds": (utterance.len() as f64 / 16_000.0 * 100.0).round() / 100.0,
            "stt_ms_median": median(stt),
            "llm_first_sentence_ms_median": median(llm_first_sentence),
            "tts_first_audio_ms_median": median(tts_first),
            "total_ms_median": total_median,
            "target_ms": 1500,
            "met": total_median <= 1500.0,
        })
    );
}

//! Offline voice speed: time to first audio and real-time factor for one counselor sentence,
//! through the `TextToSpeech` service as the call pipeline uses it (one onnxruntime thread).
//!
//! `cargo run --release -p offline --example tts_bench` (models from `$COUNSEL_MODELS_DIR`,
//! else installed into `target/models`). Ends with one JSON line.

use std::time::Instant;

use agent::services::TextToSpeech;
use futures::StreamExt;
use offline::piper::{PiperConfig, PiperVoice};

const RUNS: usize = 5;
const SENTENCE: &str = "That sounds really stressful, and it makes sense that you feel tired; \
                        let's look at one small change you could try this week.";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let paths = offline::testing::model_paths();
    let load_start = Instant::now();
    let voice = PiperVoice::load(
        &paths.piper_voice,
        &paths.piper_voice_config,
        &paths.onnxruntime_lib,
        PiperConfig::default(),
    )
    .expect("load the voice");
    let load_ms = load_start.elapsed().as_secs_f64() * 1000.0;
    // Warm-up: the first run pays for onnxruntime's lazy initialisation.
    let _ = voice
        .speak("Hello.")
        .await
        .expect("speak")
        .collect::<Vec<_>>()
        .await;

    let (mut first_audio_ms, mut rtf, mut audio_s, mut pieces) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut stream = voice.speak(SENTENCE).await.expect("speak");
        let mut first = None;
        let mut seconds = 0.0;
        let mut count = 0.0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("synthesis");
            first.get_or_insert_with(|| start.elapsed());
            seconds += chunk.duration_secs();
            count += 1.0;
        }
        let total = start.elapsed().as_secs_f64();
        first_audio_ms.push(first.expect("audio").as_secs_f64() * 1000.0);
        rtf.push(total / seconds);
        audio_s.push(seconds);
        pieces.push(count);
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "tts",
            "voice": "piper en_US-joe-medium (onnxruntime 1.31.1)",
            "threads": 1,
            "runs": RUNS,
            "load_ms": load_ms.round(),
            "characters": SENTENCE.chars().count(),
            "audio_seconds": (median(audio_s) * 100.0).round() / 100.0,
            "pieces": median(pieces),
            "time_to_first_audio_ms_median": median(first_audio_ms).round(),
            "real_time_factor_median": (median(rtf) * 1000.0).round() / 1000.0,
        })
    );
}

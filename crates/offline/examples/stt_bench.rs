//! Offline speech-to-text speed: Whisper tiny.en on 3 s and 5 s utterances spoken by the
//! offline Piper voice. Prints one JSON line.
//!
//! cargo run --release -p offline --example stt_bench

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{normalized_words, piper_16k, word_errors};
use offline::whisper::WhisperModel;

const RUNS: usize = 7;

/// Sentences that Piper speaks in a little under the target length; silence pads them to it.
const UTTERANCES: [(f64, &str); 2] = [
    (3.0, "I have a big exam tomorrow morning."),
    (
        5.0,
        "I have been feeling overwhelmed with my classes and my part time job.",
    ),
];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let paths = offline::testing::model_paths();
    let started = Instant::now();
    let model = WhisperModel::load(&paths.whisper_dir).expect("whisper model loads");
    let load_s = started.elapsed().as_secs_f64();

    let mut results = Vec::new();
    for (seconds, sentence) in UTTERANCES {
        let mut speech = piper_16k(sentence).await;
        let target = (seconds * 16_000.0) as usize;
        assert!(
            speech.len() <= target,
            "{sentence:?} lasts {:.2} s, over {seconds} s",
            speech.len() as f64 / 16_000.0
        );
        speech.resize(target, 0);
        let audio: Vec<f32> = speech.iter().map(|&s| s as f32 / 32768.0).collect();

        model.transcribe(&audio).expect("warm-up transcription");
        let mut times = Vec::with_capacity(RUNS);
        let mut text = String::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            text = model.transcribe(&audio).expect("transcription").text;
            times.push(started.elapsed().as_secs_f64());
        }
        let reference = normalized_words(sentence);
        let errors = word_errors(&reference, &normalized_words(&text));
        let time_to_text = median(times.clone());
        results.push(format!(
            "{{\"audio_s\":{seconds:.1},\"time_to_text_s\":{time_to_text:.3},\"min_s\":{:.3},\"rtf\":{:.3},\"word_errors\":{errors},\"words\":{}}}",
            times.iter().copied().fold(f64::INFINITY, f64::min),
            time_to_text / seconds,
            reference.len()
        ));
    }
    println!(
        "{{\"bench\":\"offline_stt\",\"model\":\"whisper-tiny.en (CTranslate2 f16 weights, candle f32 CPU)\",\"threads\":{},\"runs\":{RUNS},\"load_s\":{load_s:.3},\"utterances\":[{}]}}",
        candle_core::utils::get_num_threads(),
        results.join(",")
    );
}

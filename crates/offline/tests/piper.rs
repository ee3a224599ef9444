//! The offline voice: real speech at the voice's rate, as long as the text needs, streamed in
//! clause-sized pieces.

use std::sync::OnceLock;

use agent::audio::AudioChunk;
use agent::services::{ServiceError, TextToSpeech};
use futures::StreamExt;
use offline::piper::{PiperConfig, PiperVoice};

fn voice() -> &'static PiperVoice {
    static VOICE: OnceLock<PiperVoice> = OnceLock::new();
    VOICE.get_or_init(|| {
        let paths = offline::testing::model_paths();
        PiperVoice::load(
            &paths.piper_voice,
            &paths.piper_voice_config,
            &paths.onnxruntime_lib,
            PiperConfig::default(),
        )
        .expect("load the Piper voice")
    })
}

async fn speak(text: &str) -> Vec<AudioChunk> {
    let voice: &dyn TextToSpeech = voice();
    voice
        .speak(text)
        .await
        .expect("speak")
        .map(|chunk| chunk.expect("no synthesis error"))
        .collect()
        .await
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

#[tokio::test]
async fn a_sentence_becomes_audible_speech_of_plausible_length() {
    let text = "It sounds like this week has been really hard for you.";
    let chunks = speak(text).await;
    assert!(!chunks.is_empty());
    assert!(chunks.iter().all(|chunk| chunk.sample_rate == 22_050));
    let samples: Vec<i16> = chunks
        .iter()
        .flat_map(|chunk| chunk.samples.iter().copied())
        .collect();
    let seconds = samples.len() as f64 / 22_050.0;
    let per_char = seconds / text.chars().count() as f64;
    assert!(
        (0.04..=0.15).contains(&per_char),
        "{seconds:.2} s for {} characters",
        text.len()
    );
    let level = rms(&samples);
    assert!(level > 500.0, "too quiet to be speech: RMS {level:.0}");
    let clipped = samples
        .iter()
        .filter(|s| s.unsigned_abs() >= i16::MAX as u16)
        .count();
    assert!(clipped * 100 < samples.len(), "{clipped} clipped samples");
}

#[tokio::test]
async fn a_long_sentence_streams_in_clause_pieces() {
    let text = "When you feel overwhelmed, take a short walk outside, drink some water, \
                and then pick the single smallest task on your list.";
    let chunks = speak(text).await;
    assert!(
        chunks.len() >= 2,
        "expected several pieces, got {}",
        chunks.len()
    );
    let total: f64 = chunks.iter().map(AudioChunk::duration_secs).sum();
    assert!(
        chunks[0].duration_secs() < total / 2.0,
        "the first piece should be a clause, not most of the sentence"
    );
    assert!(chunks.iter().all(|chunk| rms(&chunk.samples) > 300.0));
}

#[tokio::test]
async fn each_piece_is_speech_not_silence() {
    let chunk = voice()
        .synthesize_phonemes("həlˈoʊ wˈɜːld.")
        .expect("synthesis");
    assert_eq!(chunk.sample_rate, 22_050);
    assert!(
        (0.4..3.0).contains(&chunk.duration_secs()),
        "{} s",
        chunk.duration_secs()
    );
    assert!(rms(&chunk.samples) > 500.0);
}

#[tokio::test]
async fn text_with_a_nul_is_rejected() {
    let voice: &dyn TextToSpeech = voice();
    let error = voice.speak("hello\0world").await.err().expect("rejected");
    assert!(matches!(error, ServiceError::Rejected { .. }), "{error}");
}

#[tokio::test]
async fn dropping_the_stream_frees_the_voice() {
    let voice: &dyn TextToSpeech = voice();
    let mut stream = voice
        .speak("First, this. Then, that. Finally, the rest of it.")
        .await
        .expect("speak");
    assert!(stream.next().await.expect("a chunk").is_ok());
    drop(stream);
    let chunks = speak("Still here.").await;
    assert!(!chunks.is_empty());
}

#[test]
fn a_missing_voice_file_is_a_clear_error() {
    let paths = offline::testing::model_paths();
    let missing = paths
        .piper_voice_config
        .with_file_name("no-such-voice.onnx.json");
    let error = PiperVoice::load(
        &paths.piper_voice,
        &missing,
        &paths.onnxruntime_lib,
        PiperConfig::default(),
    )
    .err()
    .expect("load must fail");
    assert!(
        error.to_string().contains("no-such-voice.onnx.json"),
        "{error}"
    );
}

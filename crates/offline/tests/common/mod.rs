//! Helpers shared by the offline tests and the STT benchmark: speech made at run time (by the
//! offline Piper voice, or espeak-ng), and word error rate.
#![allow(dead_code)]

use std::process::Command;
use std::sync::OnceLock;

use agent::audio::AudioChunk;
use agent::services::TextToSpeech;
use futures::StreamExt;
use offline::piper::{PiperConfig, PiperVoice};

/// `text` spoken by espeak-ng (American English), as 16 kHz mono PCM16.
pub fn espeak_16k(text: &str) -> Vec<i16> {
    let output = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "160", "--stdout", text])
        .output()
        .expect("espeak-ng must be installed (Debian package espeak-ng)");
    assert!(
        output.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (rate, samples) = parse_wav(&output.stdout);
    to_16k(AudioChunk::new(samples, rate))
}

/// `text` spoken by the offline Piper voice, as 16 kHz mono PCM16.
pub async fn piper_16k(text: &str) -> Vec<i16> {
    let voice: &dyn TextToSpeech = piper_voice();
    let mut stream = voice.speak(text).await.expect("Piper accepts the sentence");
    let mut samples = Vec::new();
    while let Some(chunk) = stream.next().await {
        samples.extend(to_16k(chunk.expect("Piper synthesises the sentence")));
    }
    samples
}

fn piper_voice() -> &'static PiperVoice {
    static VOICE: OnceLock<PiperVoice> = OnceLock::new();
    VOICE.get_or_init(|| {
        let paths = offline::testing::model_paths();
        PiperVoice::load(
            &paths.piper_voice,
            &paths.piper_voice_config,
            &paths.onnxruntime_lib,
            PiperConfig::default(),
        )
        .expect("the Piper voice loads")
    })
}

fn to_16k(chunk: AudioChunk) -> Vec<i16> {
    chunk
        .resampled(16_000)
        .expect("resampling to 16 kHz")
        .samples
}

/// The sample rate and samples of a PCM16 mono WAV file.
pub fn parse_wav(bytes: &[u8]) -> (u32, Vec<i16>) {
    assert!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file"
    );
    let mut at = 12;
    let mut rate = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let declared = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..];
        match id {
            b"fmt " => {
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                assert_eq!((channels, bits), (1, 16), "expected mono PCM16");
                rate = Some(u32::from_le_bytes(body[4..8].try_into().unwrap()));
            }
            b"data" => {
                // espeak-ng writing to a pipe cannot seek back to fill in the length.
                let len = if declared == 0 || declared > body.len() {
                    body.len()
                } else {
                    declared
                };
                let samples = body[..len & !1]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return (rate.expect("fmt chunk before data"), samples);
            }
            _ => {}
        }
        at += 8 + declared + (declared & 1);
    }
    panic!("WAV file has no data chunk");
}

/// Lower-case words without punctuation, so that "Hello," and "hello" match.
pub fn normalized_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance between a reference and a hypothesis.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut current = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(r != h);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[hypothesis.len()]
}

//! Whisper tiny.en end to end: real model files, speech synthesised at test time.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agent::services::{SpeechToText, SttEvent, SttInput};
use common::{espeak_16k, normalized_words, piper_16k, word_errors};
use offline::whisper::{WhisperModel, WhisperStt};

fn model() -> Arc<WhisperModel> {
    static MODEL: OnceLock<Arc<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let paths = offline::testing::model_paths();
            Arc::new(WhisperModel::load(&paths.whisper_dir).expect("whisper model loads"))
        })
        .clone()
}

fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| s as f32 / 32768.0).collect()
}

#[tokio::test]
async fn transcribes_a_known_sentence() {
    let sentence = "I have been feeling really stressed about my exams this week.";
    let transcript = model()
        .transcribe(&to_f32(&piper_16k(sentence).await))
        .unwrap();
    assert_eq!(
        normalized_words(&transcript.text),
        normalized_words(sentence),
        "got {:?}",
        transcript.text
    );
    assert!(transcript.no_speech_probability < 0.5);
}

#[test]
fn transcribes_a_second_synthetic_voice() {
    let sentence = "Can we talk about my anxiety?";
    let transcript = model().transcribe(&to_f32(&espeak_16k(sentence))).unwrap();
    assert_eq!(
        normalized_words(&transcript.text),
        normalized_words(sentence),
        "got {:?}",
        transcript.text
    );
}

#[test]
fn silence_gives_no_text() {
    let transcript = model().transcribe(&vec![0.0; 16_000 * 2]).unwrap();
    assert_eq!(
        transcript.text, "",
        "hallucinated {:?}: {transcript:?}",
        transcript.text
    );
}

const SENTENCES: [&str; 20] = [
    "I can't sleep because I keep worrying about my grades.",
    "My roommate and I had a big argument last night.",
    "I feel like nobody in my classes really knows me.",
    "The deadline for my research paper is on Friday.",
    "I want to talk about how to manage my time better.",
    "My parents expect me to become a doctor.",
    "I have been skipping meals when I get anxious.",
    "Sometimes I feel homesick and I miss my family.",
    "I am thinking about changing my major to biology.",
    "It is hard to focus when I study in the library.",
    "I got a part time job and now I am always tired.",
    "My friends want to go out but I would rather stay home.",
    "I failed my chemistry midterm and I feel terrible.",
    "Could you help me make a plan for the next few weeks?",
    "I have a presentation tomorrow and I am very nervous.",
    "Exercise usually helps me feel calmer.",
    "I broke up with my girlfriend a month ago.",
    "I don't know who to ask for help with money.",
    "My professor said my essay was well written.",
    "Thank you for listening to me today.",
];

/// Text → Piper → Whisper.
#[tokio::test]
async fn round_trip_of_twenty_spoken_sentences_has_word_error_rate_under_ten_percent() {
    let model = model();
    let (mut errors, mut words) = (0, 0);
    let mut report = String::new();
    for sentence in SENTENCES {
        let transcript = model
            .transcribe(&to_f32(&piper_16k(sentence).await))
            .unwrap();
        let (reference, hypothesis) = (
            normalized_words(sentence),
            normalized_words(&transcript.text),
        );
        let sentence_errors = word_errors(&reference, &hypothesis);
        errors += sentence_errors;
        words += reference.len();
        if sentence_errors > 0 {
            report.push_str(&format!("\n  {sentence:?} -> {:?}", transcript.text));
        }
    }
    let wer = errors as f64 / words as f64;
    eprintln!(
        "word error rate {:.1}% ({errors}/{words}){report}",
        wer * 100.0
    );
    assert!(
        wer <= 0.10,
        "word error rate {:.1}% over 10%:{report}",
        wer * 100.0
    );
}

async fn next_event(session: &mut agent::services::SttSession) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(60), session.events.recv())
        .await
        .expect("a transcript within a minute")
        .expect("session still open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_transcribes_each_vad_delimited_turn_including_its_pre_roll() {
    let stt = WhisperStt::new(model(), 1);
    let mut session = stt.open().await.unwrap();
    let silence = vec![0i16; 16_000];
    for (turn, sentence) in [
        "Can we talk about my anxiety?",
        "Thank you for listening to me today.",
    ]
    .iter()
    .enumerate()
    {
        let speech = piper_16k(sentence).await;
        let frames: Vec<&[i16]> = silence
            .chunks(320)
            .chain(speech.chunks(320))
            .chain(silence[..8000].chunks(320))
            .collect();
        // VAD notices speech late: SpeechStarted arrives 0.2 s into the words.
        let started_at = silence.len() / 320 + 10;
        for (i, frame) in frames.iter().enumerate() {
            if i == started_at {
                session.input.send(SttInput::SpeechStarted).await.unwrap();
            }
            session
                .input
                .send(SttInput::Audio(frame.to_vec()))
                .await
                .unwrap();
        }
        session.input.send(SttInput::SpeechEnded).await.unwrap();
        match next_event(&mut session).await {
            SttEvent::Final { text } => {
                assert_eq!(
                    normalized_words(&text),
                    normalized_words(sentence),
                    "turn {turn}: got {text:?}"
                )
            }
            other => panic!("turn {turn}: expected a final transcript, got {other:?}"),
        }
    }
    // A blip too short to hold words still closes its turn, with empty text.
    session.input.send(SttInput::SpeechStarted).await.unwrap();
    session.input.send(SttInput::SpeechEnded).await.unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final {
            text: String::new()
        }
    );

    drop(session.input);
    assert!(
        session.events.recv().await.is_none(),
        "events close after the input is dropped"
    );
}

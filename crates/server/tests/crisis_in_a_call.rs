//! A student in crisis gets the crisis message as the very next reply, even with the language
//! model down — through the whole live-call path: real VAD and turn detection on spoken audio,
//! the safety hook, and the recorder writing to a real database and the student's screen. Once
//! for a statement the phrase rules catch, once for one only the risk model catches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::audio::{resample, AudioChunk, FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::services::{
    BoxStream, ChatRequest, LanguageModel, ServiceError, SpeechToText, SttEvent, SttInput,
    SttSession, TextToSpeech,
};
use agent::transport::memory::memory_transport;
use agent::vad::EarshotVadFactory;
use agent::{Call, CallConfig, Services};
use async_trait::async_trait;
use chrono::Utc;
use domain::{Category, CrisisLevel, DecidedBy, SessionId, SessionMode, Speaker, Username};
use futures::StreamExt;
use safety::Classifier;
use server::calls::{Feed, LiveMessage, Recorder, SafetyHook};
use server::crisis_desk::CrisisDesk;
use store::{NewSession, Store, TranscriptCipher};
use tokio::sync::mpsc;

const FIRST_LINES: [&str; 2] = [
    "i have three exams next week and i am behind",
    "and i have not been sleeping much either",
];
/// A crisis every phrase rule knows.
const RULE_CRISIS: &str = "honestly i just want to kill myself";
/// A crisis no phrase rule names: only the risk model reads it.
const MODEL_CRISIS: &str = "i keep going up to the top floor of the parking garage";

/// Recognises the next scripted line each time the student's turn ends.
struct ScriptedStt(Arc<Mutex<VecDeque<&'static str>>>);

#[async_trait]
impl SpeechToText for ScriptedStt {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn open(&self) -> Result<SttSession, ServiceError> {
        let (input, mut audio) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(16);
        let lines = self.0.clone();
        tokio::spawn(async move {
            while let Some(input) = audio.recv().await {
                if let SttInput::SpeechEnded = input {
                    let text = lines
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or_default()
                        .to_owned();
                    if events_tx.send(SttEvent::Final { text }).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(SttSession { input, events })
    }
}

/// A language model that is down for the whole call.
struct DownLlm;

#[async_trait]
impl LanguageModel for DownLlm {
    fn name(&self) -> &'static str {
        "down"
    }
    async fn stream_reply(
        &self,
        _: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        Err(ServiceError::Unavailable {
            service: "down",
            reason: "outage for the test".into(),
        })
    }
}

/// Speaks a quiet tone, a little audio per sentence, in real time.
struct ToneTts;

#[async_trait]
impl TextToSpeech for ToneTts {
    fn name(&self) -> &'static str {
        "tone"
    }
    async fn speak(
        &self,
        _sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        Ok(futures::stream::iter(0..10)
            .then(|k| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let samples = (0..320)
                    .map(|i| ((((k * 320 + i) as f32) * 0.157).sin() * 3000.0) as i16)
                    .collect();
                Ok(AudioChunk::new(samples, PIPELINE_SAMPLE_RATE))
            })
            .boxed())
    }
}

/// Real speech for the VAD to hear, from espeak-ng.
fn spoken(text: &str) -> Vec<Vec<i16>> {
    let output = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", "-s", "170", text])
        .output()
        .expect("espeak-ng must be installed (apt-get install espeak-ng)");
    let wav = output.stdout;
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap());
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let samples = resample(&samples, rate, PIPELINE_SAMPLE_RATE).unwrap();
    samples
        .chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut frame = c.to_vec();
            frame.resize(FRAME_SAMPLES, 0);
            frame
        })
        .collect()
}

fn risk_model() -> Arc<Classifier> {
    let model = safety::model::RiskModel::load(&offline::testing::models_dir())
        .expect("the risk model is installed (counsel models install)");
    Arc::new(Classifier::with_model(model))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_turn_in_crisis_gets_the_crisis_message_even_with_the_llm_down() {
    third_turn_in_crisis(RULE_CRISIS, Arc::new(Classifier::rules_only())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_only_the_risk_model_reads_gets_the_crisis_message_too() {
    assert_eq!(
        safety::assess_by_rules(MODEL_CRISIS, &[]).level,
        CrisisLevel::None,
        "the statement must be one the rules miss"
    );
    third_turn_in_crisis(MODEL_CRISIS, risk_model()).await;
}

async fn third_turn_in_crisis(crisis_line: &'static str, classifier: Arc<Classifier>) {
    let student_lines = [FIRST_LINES[0], FIRST_LINES[1], crisis_line];
    let classifier_has_model = classifier.has_model();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("calls.db").display()),
        TranscriptCipher::new([7; 32]),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let student = store
        .create_user(
            &Username::parse(r"\campus\alex").unwrap(),
            "not-a-real-hash",
            false,
        )
        .await
        .unwrap();
    let session = store
        .create_session(NewSession {
            id: SessionId::new(),
            user_id: student.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: "test-room".into(),
            started_at: Utc::now(),
            node: None,
        })
        .await
        .unwrap();

    let (io, mut peer) = memory_transport();
    let services = Services {
        stt: Arc::new(ScriptedStt(Arc::new(Mutex::new(
            student_lines.into_iter().collect(),
        )))),
        llm: Arc::new(DownLlm),
        tts: Arc::new(ToneTts),
        vad: Arc::new(EarshotVadFactory),
    };
    let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
    let mut call = Call::start(
        CallConfig::new("You are a health counselor."),
        services,
        Arc::new(SafetyHook::new(classifier, verdicts_tx)),
        io,
    );
    let feed = Arc::new(Feed::new());
    let (_, mut screen) = feed.subscribe();
    let desk = CrisisDesk::new(None);
    let mut staff_page = desk.subscribe();
    let recorder = Recorder {
        session_id: session.id,
        started_at: session.started_at,
        store: store.clone(),
        feed: feed.clone(),
        student_id: student.id,
        student: student.username.clone(),
        desk,
        node: domain::NodeId::new(),
        draining: Default::default(),
    };
    let recording = tokio::spawn(recorder.run(call.events().unwrap(), verdicts));

    // The student says each line, then waits for the counselor's reply before the next one.
    let mut screen_log = Vec::new();
    for line in student_lines {
        let mut frames: VecDeque<Vec<i16>> = spoken(line).into();
        frames.extend(std::iter::repeat_n(vec![0; FRAME_SAMPLES], 60));
        let mut clock = tokio::time::interval(Duration::from_millis(20));
        let replied = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                tokio::select! {
                    _ = clock.tick() => {
                        let frame = frames.pop_front().unwrap_or_else(|| vec![0; FRAME_SAMPLES]);
                        peer.student_audio.send(frame).await.unwrap();
                        while peer.played.try_recv().is_ok() {}
                    }
                    message = screen.recv() => {
                        let message = message.unwrap();
                        let done = matches!(&message, LiveMessage::Transcript { speaker: Speaker::Counselor, is_final: true, .. });
                        screen_log.push(message);
                        if done {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        assert!(replied.is_ok(), "no counselor reply to {line:?}");
    }
    call.end();
    recording.await.unwrap();

    let counselor_lines: Vec<&str> = screen_log
        .iter()
        .filter_map(|m| match m {
            LiveMessage::Transcript {
                speaker: Speaker::Counselor,
                is_final: true,
                text,
                ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(counselor_lines.len(), 3, "one reply per student turn");
    assert!(
        !counselor_lines[0].contains("988") && !counselor_lines[1].contains("988"),
        "no crisis message before the crisis"
    );
    assert_eq!(
        counselor_lines[2],
        safety::policy::CRISIS_MESSAGE,
        "the reply to the crisis turn is the crisis message"
    );

    // The alert reached the screen before the counselor's reply was complete.
    let alert = screen_log.iter().position(|m| {
        matches!(
            m,
            LiveMessage::CrisisAlert {
                level: CrisisLevel::Crisis,
                ..
            }
        )
    });
    let reply = screen_log.iter().rposition(|m| {
        matches!(
            m,
            LiveMessage::Transcript {
                speaker: Speaker::Counselor,
                is_final: true,
                ..
            }
        )
    });
    assert!(
        alert.is_some() && alert < reply,
        "crisis alert shown before the reply finished"
    );

    // Everything said was stored as it was said, and the crisis is flagged for review.
    let detail = store
        .session_for_user(student.id, session.id)
        .await
        .unwrap()
        .unwrap();
    assert!(detail.record.crisis_detected);
    assert!(
        detail.record.ended_at.is_some(),
        "the session was finalized when the call ended"
    );
    let said: Vec<(Speaker, &str)> = detail
        .messages
        .iter()
        .map(|m| (m.speaker, m.text.as_str()))
        .collect();
    assert_eq!(
        said.len(),
        6,
        "three student lines and three replies: {:?}",
        said.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert_eq!(said[4], (Speaker::Student, crisis_line));
    assert_eq!(
        said[5],
        (Speaker::Counselor, safety::policy::CRISIS_MESSAGE)
    );
    let events = store.crisis_events(session.id).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.level == CrisisLevel::Crisis && e.flagged_for_review));

    // Staff on duty were told of exactly the stored events, with who said what.
    let mut told = Vec::new();
    while let Ok(notice) = staff_page.try_recv() {
        told.push(notice.flagged().expect("a flagged event").clone());
    }
    assert_eq!(told.len(), events.len(), "one alert per stored event");
    let stored = events
        .iter()
        .find(|e| e.level == CrisisLevel::Crisis)
        .unwrap();
    let told = told
        .iter()
        .find(|t| t.event_id == stored.id)
        .expect("the crisis reached the desk");
    assert_eq!(told.student, student.username);
    assert_eq!(told.text.as_str(), crisis_line);
    let expected_path = if classifier_has_model {
        DecidedBy::Model
    } else {
        DecidedBy::Rule
    };
    assert_eq!(
        told.decided_by,
        Some(expected_path),
        "the desk is told which path decided"
    );
    assert_eq!(
        stored.decided_by,
        Some(expected_path),
        "the stored event says which path decided"
    );
}

//! In-process stand-ins for the speech and language services, a simulated student, and speech
//! audio made with espeak-ng, shared by the call tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::audio::{resample, AudioChunk, FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::services::{
    BoxStream, ChatRequest, LanguageModel, ServiceError, SpeechToText, SttEvent, SttInput,
    SttSession, TextToSpeech,
};
use agent::transport::memory::{memory_transport, MemoryPeer, PlayedFrame};
use agent::vad::EarshotVadFactory;
use agent::{AgentEvent, Call, CallConfig, CallHandle, Services, UtteranceHook};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

/// Speech for `text` as 16 kHz frames, synthesised by espeak-ng (US English, 160 words/min).
pub fn speech_frames(text: &str) -> Vec<Vec<i16>> {
    let output = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", "-s", "160", text])
        .output()
        .expect("espeak-ng is installed");
    assert!(output.status.success(), "espeak-ng failed");
    let wav = output.stdout;
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap());
    // espeak streams its WAV with a placeholder length; the samples are everything after the header.
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let samples = resample(&samples, rate, PIPELINE_SAMPLE_RATE).unwrap();
    samples
        .chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(FRAME_SAMPLES, 0);
            f
        })
        .collect()
}

/// A recogniser that, at the end of each turn, "recognises" the next of its scripted lines after
/// `final_delay`. It reports what it was sent.
pub struct ScriptedStt {
    lines: Arc<Mutex<VecDeque<String>>>,
    final_delay: Duration,
}

impl ScriptedStt {
    pub fn new(lines: &[&str], final_delay: Duration) -> Self {
        Self {
            lines: Arc::new(Mutex::new(lines.iter().map(|l| l.to_string()).collect())),
            final_delay,
        }
    }
}

#[async_trait]
impl SpeechToText for ScriptedStt {
    fn name(&self) -> &'static str {
        "scripted-stt"
    }

    async fn open(&self) -> Result<SttSession, ServiceError> {
        let (input, mut audio) = mpsc::channel::<SttInput>(64);
        let (events_tx, events) = mpsc::channel(16);
        let lines = self.lines.clone();
        let delay = self.final_delay;
        tokio::spawn(async move {
            let mut heard_frames = 0usize;
            while let Some(input) = audio.recv().await {
                match input {
                    SttInput::Audio(_) => heard_frames += 1,
                    SttInput::SpeechStarted => {
                        let _ = events_tx.send(SttEvent::Interim { text: "…".into() }).await;
                    }
                    SttInput::SpeechEnded => {
                        sleep(delay).await;
                        let text = lines.lock().unwrap().pop_front().unwrap_or_default();
                        if heard_frames > 0
                            && events_tx.send(SttEvent::Final { text }).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ok(SttSession { input, events })
    }
}

/// How the fake language model answers.
#[derive(Debug, Clone)]
pub enum LlmBehaviour {
    /// Streams `reply` word by word: first word after `first_token`, then one per `per_word`.
    Reply {
        reply: String,
        first_token: Duration,
        per_word: Duration,
    },
    /// Refuses the request.
    Fail,
    /// Accepts the request and then never says anything.
    Hang,
}

/// A language model with a fixed answer; it records every request it gets.
pub struct FakeLlm {
    pub behaviour: Mutex<LlmBehaviour>,
    pub requests: Mutex<Vec<ChatRequest>>,
}

impl FakeLlm {
    pub fn new(behaviour: LlmBehaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
        })
    }

    pub fn replying(reply: &str) -> Arc<Self> {
        Self::new(LlmBehaviour::Reply {
            reply: reply.into(),
            first_token: Duration::from_millis(150),
            per_word: Duration::from_millis(15),
        })
    }

    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl LanguageModel for FakeLlm {
    fn name(&self) -> &'static str {
        "fake-llm"
    }

    async fn stream_reply(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        self.requests.lock().unwrap().push(request);
        match self.behaviour.lock().unwrap().clone() {
            LlmBehaviour::Fail => Err(ServiceError::Unavailable {
                service: "fake-llm",
                reason: "down for the test".into(),
            }),
            LlmBehaviour::Hang => Ok(futures::stream::pending().boxed()),
            LlmBehaviour::Reply {
                reply,
                first_token,
                per_word,
            } => {
                let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
                Ok(futures::stream::iter(words.into_iter().enumerate())
                    .then(move |(i, word)| async move {
                        sleep(if i == 0 { first_token } else { per_word }).await;
                        Ok(word)
                    })
                    .boxed())
            }
        }
    }
}

/// Speech synthesis that "speaks" a 400 Hz tone at 24 kHz, `per_char` of audio per character of
/// the sentence, in real time (20 ms chunks), after `first_audio`. It records the sentences.
pub struct ToneTts {
    pub first_audio: Duration,
    pub per_char: Duration,
    pub fail: bool,
    pub sentences: Mutex<Vec<String>>,
}

impl ToneTts {
    pub fn new(first_audio: Duration, per_char: Duration) -> Arc<Self> {
        Arc::new(Self {
            first_audio,
            per_char,
            fail: false,
            sentences: Mutex::new(Vec::new()),
        })
    }

    pub fn failing() -> Arc<Self> {
        Arc::new(Self {
            first_audio: Duration::ZERO,
            per_char: Duration::ZERO,
            fail: true,
            sentences: Mutex::new(Vec::new()),
        })
    }

    pub fn sentences(&self) -> Vec<String> {
        self.sentences.lock().unwrap().clone()
    }
}

pub const TTS_RATE: u32 = 24_000;

#[async_trait]
impl TextToSpeech for ToneTts {
    fn name(&self) -> &'static str {
        "tone-tts"
    }

    async fn speak(
        &self,
        sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        self.sentences.lock().unwrap().push(sentence.to_string());
        if self.fail {
            return Err(ServiceError::Unavailable {
                service: "tone-tts",
                reason: "down for the test".into(),
            });
        }
        let chunk_samples = TTS_RATE as usize / 50;
        let chunks = (self.per_char * sentence.chars().count() as u32).as_millis() as usize / 20;
        let first = self.first_audio;
        Ok(futures::stream::iter(0..chunks)
            .then(move |k| async move {
                sleep(if k == 0 {
                    first
                } else {
                    Duration::from_millis(20)
                })
                .await;
                let samples = (0..chunk_samples)
                    .map(|i| {
                        let t = (k * chunk_samples + i) as f64 / TTS_RATE as f64;
                        (9_000.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()) as i16
                    })
                    .collect();
                Ok(AudioChunk::new(samples, TTS_RATE))
            })
            .boxed())
    }
}

/// A student on the other end of an in-memory transport: a microphone that sends a frame every
/// 20 ms (silence unless something is being said), and a log of what the bot played.
pub struct Student {
    say: mpsc::Sender<Vec<Vec<i16>>>,
    pub played: mpsc::Receiver<PlayedFrame>,
    pub hang_up: mpsc::Sender<agent::transport::TransportEvent>,
}

impl Student {
    pub fn connect() -> (agent::transport::TransportIo, Student) {
        let (
            io,
            MemoryPeer {
                student_audio,
                played,
                events,
            },
        ) = memory_transport();
        let (say, mut lines) = mpsc::channel::<Vec<Vec<i16>>>(4);
        tokio::spawn(async move {
            let mut queued: VecDeque<Vec<i16>> = VecDeque::new();
            let mut clock = tokio::time::interval(Duration::from_millis(20));
            loop {
                clock.tick().await;
                while let Ok(line) = lines.try_recv() {
                    queued.extend(line);
                }
                let frame = queued.pop_front().unwrap_or_else(|| vec![0; FRAME_SAMPLES]);
                if student_audio.send(frame).await.is_err() {
                    return;
                }
            }
        });
        (
            io,
            Student {
                say,
                played,
                hang_up: events,
            },
        )
    }

    /// Starts saying these frames (after anything still being said).
    pub async fn say(&self, frames: Vec<Vec<i16>>) {
        self.say.send(frames).await.unwrap();
    }

    /// Bot frames played so far (without waiting).
    pub fn drain_played(&mut self) -> Vec<PlayedFrame> {
        let mut frames = Vec::new();
        while let Ok(frame) = self.played.try_recv() {
            frames.push(frame);
        }
        frames
    }
}

/// An event and when the test saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: AgentEvent,
    pub at: Instant,
}

/// Collects a call's events with their arrival times.
pub struct EventLog {
    rx: mpsc::Receiver<AgentEvent>,
    pub seen: Vec<Seen>,
}

impl EventLog {
    pub fn new(handle: &mut CallHandle) -> Self {
        Self {
            rx: handle.events().expect("events taken once"),
            seen: Vec::new(),
        }
    }

    /// Waits (up to `within`) for an event matching `wanted`, logging everything on the way.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&AgentEvent) -> bool,
    ) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("event not seen within {within:?}; saw {:#?}", self.seen)
                })
                .expect("event stream ended");
            let seen = Seen {
                event,
                at: Instant::now(),
            };
            self.seen.push(seen.clone());
            if wanted(&seen.event) {
                return seen;
            }
        }
    }
}

pub fn services(stt: ScriptedStt, llm: Arc<FakeLlm>, tts: Arc<ToneTts>) -> Services {
    Services {
        stt: Arc::new(stt),
        llm,
        tts,
        vad: Arc::new(EarshotVadFactory),
    }
}

/// A call configuration for tests: no greeting, no idle handling unless a test turns it on.
pub fn quiet_config() -> CallConfig {
    let mut config = CallConfig::new("You are Sam, a calm study-skills counselor.");
    config.idle.prompt_after = None;
    config.idle.end_after = None;
    config
}

pub fn start(
    config: CallConfig,
    services: Services,
    hook: Arc<dyn UtteranceHook>,
) -> (CallHandle, EventLog, Student) {
    let (io, student) = Student::connect();
    let mut handle = Call::start(config, services, hook, io);
    let log = EventLog::new(&mut handle);
    (handle, log, student)
}

//! The WebRTC transport against a real browser: headless Chromium, driven by
//! `e2e/webrtc-call.mjs`, calls a tiny server with a spoken WAV file as its microphone.
//!
//! - Transport alone: the server checks that what arrives on `audio_in` is that speech (loud
//!   enough, in the speech band, as long as the recording's speech); the page checks that the
//!   bot's tone, sent on `audio_out`, plays in the browser at its pitch.
//! - Through the call pipeline (real VAD and turn detection, stand-in STT / LLM / TTS): the
//!   speech-to-text stand-in judges the audio it is given, and the page hears the spoken reply.
//!
//! Needs `node`, `espeak-ng`, Chromium (`/usr/bin/chromium` or `CHROMIUM_PATH`) and
//! `npm ci --prefix e2e`; the tests fail naming whichever is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::audio::{AudioChunk, FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::services::{
    BoxStream, ChatRequest, LanguageModel, ServiceError, SpeechToText, SttEvent, SttInput,
    SttSession, TextToSpeech,
};
use agent::transport::webrtc::{AcceptedOffer, WebRtcConfig, WebRtcTransport};
use agent::transport::TransportEvent;
use agent::vad::EarshotVadFactory;
use agent::{AgentEvent, Call, CallConfig, NoHook, Services};
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::Speaker;
use futures::StreamExt;
use tokio::process::Child;
use tokio::sync::mpsc;

mod speech;

use speech::{speech_band_fraction, speech_segments, write_wav, Recording};

const SENTENCE: &str = "I have been feeling really stressed about my exams this week.";

/// One browser at a time: two would compete for the CI machine's two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_tool(program: &str, install_hint: &str) {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "`{program}` is needed by this test: {install_hint}");
}

fn chromium_path() -> String {
    require_tool("node", "install Node.js (Debian package `nodejs`)");
    require_tool("espeak-ng", "install the Debian package `espeak-ng`");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is needed by this test: install the Debian package `chromium` or set CHROMIUM_PATH"
    );
    assert!(
        repo_root()
            .join("e2e/node_modules/playwright-core")
            .exists(),
        "playwright-core is needed by this test: run `npm ci --prefix e2e` in the repository root"
    );
    chromium
}

struct Server {
    transport: WebRtcTransport,
    calls: mpsc::Sender<AcceptedOffer>,
}

async fn offer(State(server): State<Arc<Server>>, offer_sdp: String) -> Response {
    match server.transport.accept_offer(&offer_sdp).await {
        Ok(accepted) => {
            let answer = accepted.answer_sdp.clone();
            server
                .calls
                .send(accepted)
                .await
                .expect("test is waiting for the call");
            ([(header::CONTENT_TYPE, "application/sdp")], answer).into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    }
}

async fn start_server() -> (SocketAddr, mpsc::Receiver<AcceptedOffer>) {
    let config = WebRtcConfig {
        disconnect_grace: Duration::from_secs(1),
        quality_interval: Duration::from_secs(1),
        ..WebRtcConfig::default()
    };
    let transport = WebRtcTransport::new(config).expect("transport");
    let (calls_tx, calls) = mpsc::channel(1);
    let page =
        std::fs::read_to_string(repo_root().join("e2e/webrtc-call.html")).expect("test page");
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/offer", post(offer))
        .with_state(Arc::new(Server {
            transport,
            calls: calls_tx,
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (address, calls)
}

/// Speaks [`SENTENCE`] with espeak-ng, followed by `pause_secs` of silence, so that the looping
/// fake microphone gives clearly separated utterances. Returns the 48 kHz file Chromium plays
/// and the utterance at the pipeline's rate, for reference.
fn speak_sentence(dir: &Path, pause_secs: f64) -> (PathBuf, Recording) {
    let raw = dir.join("espeak.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(SENTENCE)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed: {status}");
    let spoken = Recording::read_wav(&raw);
    let padded = spoken.with_silence(0.3, pause_secs);
    let microphone = dir.join("microphone.wav");
    write_wav(&microphone, &padded.resampled(48_000));
    (microphone, spoken.resampled(PIPELINE_SAMPLE_RATE))
}

/// A call from headless Chromium, answered by the transport.
struct BrowserCall {
    accepted: AcceptedOffer,
    browser: Child,
    /// Length of the sentence's speech in the microphone file.
    spoken_secs: f64,
    scratch: PathBuf,
}

impl BrowserCall {
    /// Opens the page, which calls in and then listens for `listen_ms`, expecting a tone of
    /// `tone_hz` from the bot.
    async fn start(pause_secs: f64, listen_ms: u64, tone_hz: f64) -> Self {
        let chromium = chromium_path();
        let scratch = std::env::temp_dir().join(format!(
            "counsel-webrtc-browser-{}-{}",
            std::process::id(),
            listen_ms
        ));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let (microphone, spoken) = speak_sentence(&scratch, pause_secs);
        let spoken_segments = speech_segments(&spoken.samples);
        assert_eq!(
            spoken_segments.len(),
            1,
            "espeak-ng's sentence should be one utterance"
        );

        let (address, mut calls) = start_server().await;
        let browser = tokio::process::Command::new("node")
            .arg(repo_root().join("e2e/webrtc-call.mjs"))
            .arg(format!("http://{address}/?listen_ms={listen_ms}"))
            .arg(&microphone)
            .arg(tone_hz.to_string())
            .env("CHROMIUM_PATH", &chromium)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let accepted = tokio::time::timeout(Duration::from_secs(30), calls.recv())
            .await
            .expect("the browser never posted an offer")
            .expect("server stopped");
        Self {
            accepted,
            browser,
            spoken_secs: spoken_segments[0].duration_secs(),
            scratch,
        }
    }
}

/// Waits for the page's verdict; panics with its report if it failed.
async fn browser_verdict(browser: Child) {
    let output = tokio::time::timeout(Duration::from_secs(60), browser.wait_with_output())
        .await
        .expect("the browser script did not finish")
        .expect("node");
    assert!(
        output.status.success(),
        "the browser side failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const BOT_TONE_HZ: f64 = 660.0;

fn tone_frame(tone_hz: f64, rate: u32, samples: usize, frame_index: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let n = (frame_index * samples + i) as f64;
            (8_000.0 * (2.0 * std::f64::consts::PI * tone_hz * n / rate as f64).sin()) as i16
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_carries_speech_in_and_the_bot_out() {
    let _one_browser = ONE_BROWSER.lock().await;
    // The page listens long enough for one whole utterance of the looping file to arrive too.
    let BrowserCall {
        accepted,
        browser,
        spoken_secs,
        scratch,
    } = BrowserCall::start(1.2, 7_000, BOT_TONE_HZ).await;
    let AcceptedOffer { io, connection, .. } = accepted;
    let (mut audio_in, audio_out, mut events) = (io.audio_in, io.audio_out, io.events);

    // The bot: a steady tone while the call lasts, paced by the transport's queue.
    let bot = tokio::spawn(async move {
        for frame_index in 0.. {
            let frame = tone_frame(
                BOT_TONE_HZ,
                PIPELINE_SAMPLE_RATE,
                FRAME_SAMPLES,
                frame_index,
            );
            if audio_out.send(frame).await.is_err() {
                break;
            }
        }
    });

    let first_event = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("no transport event within 20 s");
    assert_eq!(first_event, Some(TransportEvent::Connected));

    // The student: everything that arrives until the browser hangs up.
    let mut heard = Vec::new();
    let mut disconnected = false;
    let mut quality_reports = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        tokio::select! {
            frame = audio_in.recv() => match frame {
                Some(frame) => {
                    assert_eq!(frame.len(), FRAME_SAMPLES);
                    heard.extend(frame);
                }
                None => break,
            },
            event = events.recv() => match event {
                Some(TransportEvent::Disconnected) | None => { disconnected = true; break; }
                Some(TransportEvent::Quality(_)) => quality_reports += 1,
                Some(TransportEvent::Connected) => panic!("connected twice"),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    browser_verdict(browser).await;
    assert!(disconnected, "closing the page should disconnect the call");
    // Chromium's receiver reports on the bot's stream give the round-trip time.
    assert!(
        quality_reports > 0,
        "no link quality report during the call"
    );
    connection.close().await;
    bot.await.expect("bot task");

    // At least one whole utterance (silence before and after) reached the server.
    let heard_secs = heard.len() as f64 / PIPELINE_SAMPLE_RATE as f64;
    let segments = speech_segments(&heard);
    let whole: Vec<_> = segments.iter().filter(|segment| segment.whole).collect();
    assert!(
        !whole.is_empty(),
        "no whole utterance in {heard_secs:.1} s of student audio; segments: {segments:?}"
    );
    for segment in whole {
        let ratio = segment.duration_secs() / spoken_secs;
        assert!(
            (0.8..1.25).contains(&ratio),
            "utterance lasted {:.2} s, the recording's speech {spoken_secs:.2} s",
            segment.duration_secs()
        );
        let band = speech_band_fraction(&heard[segment.samples.clone()]);
        assert!(
            band > 0.9,
            "only {:.0}% of the utterance's energy is in 100-4000 Hz",
            band * 100.0
        );
    }
    std::fs::remove_dir_all(&scratch).ok();
}

/// What the speech-to-text stand-in made of one turn's audio.
#[derive(Debug, Clone, Copy)]
struct TurnAudio {
    voiced_secs: f64,
    speech_band: f64,
}

impl TurnAudio {
    fn is_speech(&self) -> bool {
        self.voiced_secs > 1.0 && self.speech_band > 0.9
    }
}

/// Stands in for a recogniser: at the end of each turn it measures the audio it was sent and
/// "recognises" [`SENTENCE`] if that audio was speech, nothing otherwise.
#[derive(Default)]
struct JudgingStt {
    turns: Arc<Mutex<Vec<TurnAudio>>>,
}

#[async_trait]
impl SpeechToText for JudgingStt {
    fn name(&self) -> &'static str {
        "judging-stt"
    }

    async fn open(&self) -> Result<SttSession, ServiceError> {
        let (input, mut audio) = mpsc::channel::<SttInput>(64);
        let (events_tx, events) = mpsc::channel(16);
        let turns = Arc::clone(&self.turns);
        tokio::spawn(async move {
            let mut turn = Vec::new();
            while let Some(input) = audio.recv().await {
                match input {
                    SttInput::Audio(frame) => turn.extend(frame),
                    SttInput::SpeechStarted => {}
                    SttInput::SpeechEnded => {
                        let segments = speech_segments(&turn);
                        let longest = segments.iter().max_by_key(|segment| segment.samples.len());
                        let judged = TurnAudio {
                            voiced_secs: longest.map_or(0.0, |segment| segment.duration_secs()),
                            speech_band: longest.map_or(0.0, |segment| {
                                speech_band_fraction(&turn[segment.samples.clone()])
                            }),
                        };
                        turns.lock().unwrap().push(judged);
                        turn.clear();
                        let text = if judged.is_speech() {
                            SENTENCE.to_owned()
                        } else {
                            String::new()
                        };
                        if events_tx.send(SttEvent::Final { text }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(SttSession { input, events })
    }
}

const REPLY: &str = "That sounds like a lot to carry. What worries you most about them?";

/// Stands in for a language model: always the same short reply.
struct FixedReplyLlm;

#[async_trait]
impl LanguageModel for FixedReplyLlm {
    fn name(&self) -> &'static str {
        "fixed-reply-llm"
    }

    async fn stream_reply(
        &self,
        _request: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        let words: Vec<Result<String, ServiceError>> = REPLY
            .split_inclusive(' ')
            .map(|word| Ok(word.to_owned()))
            .collect();
        Ok(futures::stream::iter(words).boxed())
    }
}

const TTS_TONE_HZ: f64 = 520.0;
const TTS_RATE: u32 = 24_000;

/// Stands in for speech synthesis: "speaks" each sentence as a tone, 60 ms per character, at
/// 24 kHz like a cloud voice, so the pipeline's resampling is on the way too.
struct ToneTts;

#[async_trait]
impl TextToSpeech for ToneTts {
    fn name(&self) -> &'static str {
        "tone-tts"
    }

    async fn speak(
        &self,
        sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        let chunk_samples = TTS_RATE as usize / 50;
        let chunks = sentence.chars().count() * 3;
        Ok(futures::stream::iter((0..chunks).map(move |k| {
            Ok(AudioChunk::new(
                tone_frame(TTS_TONE_HZ, TTS_RATE, chunk_samples, k),
                TTS_RATE,
            ))
        }))
        .boxed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_through_the_pipeline_gets_a_spoken_reply() {
    let _one_browser = ONE_BROWSER.lock().await;
    // A long pause after the sentence lets the reply play before the student speaks again.
    let BrowserCall {
        accepted,
        browser,
        scratch,
        ..
    } = BrowserCall::start(4.0, 12_000, TTS_TONE_HZ).await;
    let AcceptedOffer { io, connection, .. } = accepted;

    let stt = JudgingStt::default();
    let turns = Arc::clone(&stt.turns);
    let services = Services {
        stt: Arc::new(stt),
        llm: Arc::new(FixedReplyLlm),
        tts: Arc::new(ToneTts),
        vad: Arc::new(EarshotVadFactory),
    };
    let mut config = CallConfig::new("You are a calm counselor for college students.");
    config.idle.prompt_after = None;
    config.idle.end_after = None;
    let mut call = Call::start(config, services, Arc::new(NoHook), io);
    let mut events = call.events().expect("events");

    let mut student_lines = Vec::new();
    let mut bot_lines = Vec::new();
    let collect = async {
        while let Some(event) = events.recv().await {
            match event {
                AgentEvent::Transcript(line) if line.is_final => match line.speaker {
                    Speaker::Student => student_lines.push(line.text),
                    Speaker::Counselor => bot_lines.push(line.text),
                },
                AgentEvent::Ended(_) => break,
                _ => {}
            }
        }
    };
    // The call ends by itself when the page hangs up.
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("the call did not end");
    browser_verdict(browser).await;
    call.ended().await;
    connection.close().await;

    let turns = turns.lock().unwrap().clone();
    assert!(
        turns.iter().any(TurnAudio::is_speech),
        "speech-to-text never got speech-like audio: {turns:?}"
    );
    assert!(
        student_lines.iter().any(|line| line == SENTENCE),
        "student lines: {student_lines:?}"
    );
    assert!(
        bot_lines
            .iter()
            .any(|line| line.starts_with("That sounds like a lot to carry.")),
        "counselor lines: {bot_lines:?}"
    );
    std::fs::remove_dir_all(&scratch).ok();
}

//! The WebRTC transport against a real browser: headless Chromium, driven by
//! `e2e/webrtc-call.mjs`, calls a tiny server with a spoken WAV file as its microphone.
//!
//! The server side checks that what arrives on `audio_in` is that speech (loud enough, in the
//! speech band, as long as the recording's speech); the page checks that the bot's tone, sent on
//! `audio_out`, plays in the browser at its pitch.
//!
//! Needs `node`, `espeak-ng`, Chromium (`/usr/bin/chromium` or `CHROMIUM_PATH`) and
//! `npm ci --prefix e2e`; the test fails naming whichever is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agent::audio::{FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::transport::webrtc::{AcceptedOffer, WebRtcConfig, WebRtcTransport};
use agent::transport::TransportEvent;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::mpsc;

mod speech;

use speech::{speech_band_fraction, speech_segments, write_wav, Recording};

const BOT_TONE_HZ: f64 = 660.0;
/// The page listens to the bot this long once connected; long enough for one whole utterance
/// of the looping microphone file to arrive at the server too.
const LISTEN_MS: u64 = 7_000;
const SENTENCE: &str = "I have been feeling really stressed about my exams this week.";

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

/// Speaks [`SENTENCE`] with espeak-ng, between stretches of silence so that the looping fake
/// microphone gives clearly separated utterances. Returns the 48 kHz file Chromium plays and
/// the utterance at the pipeline's rate, for reference.
fn speak_sentence(dir: &Path) -> (PathBuf, Recording) {
    let raw = dir.join("espeak.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(SENTENCE)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed: {status}");
    let spoken = Recording::read_wav(&raw);
    let padded = spoken.with_silence(0.3, 1.2);
    let microphone = dir.join("microphone.wav");
    write_wav(&microphone, &padded.resampled(48_000));
    (microphone, spoken.resampled(PIPELINE_SAMPLE_RATE))
}

fn bot_tone_frame(frame_index: usize) -> Vec<i16> {
    (0..FRAME_SAMPLES)
        .map(|i| {
            let n = (frame_index * FRAME_SAMPLES + i) as f64;
            let phase = 2.0 * std::f64::consts::PI * BOT_TONE_HZ * n / PIPELINE_SAMPLE_RATE as f64;
            (8_000.0 * phase.sin()) as i16
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_carries_speech_in_and_the_bot_out() {
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

    let scratch =
        std::env::temp_dir().join(format!("counsel-webrtc-browser-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let (microphone, spoken) = speak_sentence(&scratch);
    let spoken_segments = speech_segments(&spoken.samples);
    assert_eq!(
        spoken_segments.len(),
        1,
        "espeak-ng's sentence should be one utterance"
    );
    let spoken_secs = spoken_segments[0].duration_secs();

    let (address, mut calls) = start_server().await;
    let url = format!("http://{address}/?listen_ms={LISTEN_MS}");
    let browser = tokio::process::Command::new("node")
        .arg(repo_root().join("e2e/webrtc-call.mjs"))
        .arg(&url)
        .arg(&microphone)
        .arg(BOT_TONE_HZ.to_string())
        .env("CHROMIUM_PATH", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");

    let call = tokio::time::timeout(Duration::from_secs(30), calls.recv())
        .await
        .expect("the browser never posted an offer")
        .expect("server stopped");
    let AcceptedOffer { io, connection, .. } = call;
    let (mut audio_in, audio_out, mut events) = (io.audio_in, io.audio_out, io.events);

    // The bot: a steady tone while the call lasts, paced by the transport's queue.
    let bot = tokio::spawn(async move {
        for frame_index in 0.. {
            if audio_out.send(bot_tone_frame(frame_index)).await.is_err() {
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
    let listen_deadline = tokio::time::Instant::now() + Duration::from_millis(LISTEN_MS + 15_000);
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
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(listen_deadline) => break,
        }
    }

    let output = tokio::time::timeout(Duration::from_secs(30), browser.wait_with_output())
        .await
        .expect("the browser script did not finish")
        .expect("node");
    let page_report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser side failed ({}):\n{}\n{}",
        output.status,
        page_report,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(disconnected, "closing the page should disconnect the call");
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

//! Deepgram live STT and Cartesia TTS against local WebSocket fakes that speak their real
//! protocols.

mod cloud_fakes;

use std::sync::Arc;
use std::time::Duration;

use agent::audio::AudioChunk;
use agent::services::cartesia::{CartesiaConfig, CartesiaTextToSpeech};
use agent::services::deepgram::{DeepgramConfig, DeepgramSpeechToText};
use agent::services::{ServiceError, SpeechToText, SttEvent, SttInput, SttSession, TextToSpeech};
use base64::Engine;
use cloud_fakes::ws::{header, query_pairs, silent_listener, Check, Conn, FakeWsServer, Handler};
use cloud_fakes::{eventually, within_5s};
use futures::StreamExt;
use resilience::{BreakerConfig, CircuitBreaker, ManualClock};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// Deepgram
// ---------------------------------------------------------------------------------------------

const DEEPGRAM_KEY: &str = "dg-test-key";

/// Deepgram's upgrade checks: `Token` auth, and the audio format this adapter must declare.
fn deepgram_check() -> Check {
    Arc::new(|request| {
        if header(request, "authorization") != Some(&format!("Token {DEEPGRAM_KEY}")) {
            return Err((
                401,
                r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}"#.into(),
            ));
        }
        let query = query_pairs(request);
        let has = |name: &str, value: &str| query.iter().any(|(n, v)| n == name && v == value);
        let required = [
            ("model", "nova-2"),
            ("encoding", "linear16"),
            ("sample_rate", "16000"),
            ("channels", "1"),
            ("interim_results", "true"),
            ("vad_events", "true"),
        ];
        if required.iter().any(|(name, value)| !has(name, value))
            || !query
                .iter()
                .any(|(n, v)| n == "endpointing" && v.parse::<u32>().is_ok())
            || !query
                .iter()
                .any(|(n, v)| n == "utterance_end_ms" && v.parse::<u32>().is_ok())
        {
            return Err((
                400,
                r#"{"err_code":"Bad Request","err_msg":"invalid query"}"#.into(),
            ));
        }
        Ok(())
    })
}

fn results(transcript: &str, is_final: bool, from_finalize: bool) -> String {
    json!({
        "type": "Results",
        "channel_index": [0, 1],
        "start": 0.0,
        "duration": 1.0,
        "is_final": is_final,
        "speech_final": is_final,
        "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.98, "words": []}]},
        "metadata": {"request_id": "fake", "model_info": {}, "model_uuid": "fake"},
    })
    .to_string()
}

/// What the fake Deepgram does with each client frame. Control messages other than
/// KeepAlive / Finalize / CloseStream, or odd-length audio, close the socket like the real one.
enum Script {
    /// Audio frame 1 → SpeechStarted + interim "hello"; 2 → final "hello there"; 3 → interim
    /// "how are"; Finalize → final "how are you" (from_finalize).
    Conversation,
    /// Every Finalize → final `text` (from_finalize).
    FinalizeReplies(&'static str),
    /// Sends a SpeechStarted at once (so the client knows the link is up), then like FinalizeReplies.
    AnnounceThenFinalizeReplies(&'static str),
    /// Drops the TCP connection after the first audio frame.
    DropAfterFirstAudio,
    /// Garbage, then a Deepgram Error message, then like FinalizeReplies.
    GarbageThenFinalizeReplies(&'static str),
    /// Final segment "so tired" after audio, never answers Finalize.
    IgnoresFinalize,
}

async fn run_deepgram(mut conn: Conn, script: Arc<dyn Fn(usize) -> Script + Send + Sync>) {
    let script = script(conn.index);
    let mut audio_frames = 0;
    match script {
        Script::AnnounceThenFinalizeReplies(_) => {
            conn.send_text(
                json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.0}).to_string(),
            )
            .await
        }
        Script::GarbageThenFinalizeReplies(_) => {
            conn.send_text("this is not json").await;
            conn.send_text(json!({"type": "Error", "variant": "DATA-0000", "description": "x", "message": "y"}).to_string()).await;
        }
        _ => {}
    }
    while let Some(message) = conn.recv().await {
        match message {
            Message::Binary(bytes) => {
                if bytes.len() % 2 != 0 {
                    return;
                }
                audio_frames += 1;
                match (&script, audio_frames) {
                    (Script::DropAfterFirstAudio, _) => return,
                    (Script::Conversation, 1) => {
                        conn.send_text(
                            json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.1})
                                .to_string(),
                        )
                        .await;
                        conn.send_text(results("hello", false, false)).await;
                    }
                    (Script::Conversation, 2) => {
                        conn.send_text(results("hello there", true, false)).await
                    }
                    (Script::Conversation, 3) => {
                        conn.send_text(results("how are", false, false)).await
                    }
                    (Script::IgnoresFinalize, 1) => {
                        conn.send_text(results("so tired", true, false)).await
                    }
                    _ => {}
                }
            }
            Message::Text(text) => {
                let kind = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_owned));
                match kind.as_deref() {
                    Some("KeepAlive") => {}
                    Some("CloseStream") => {
                        conn.send_text(json!({"type": "Metadata", "request_id": "fake", "created": "", "duration": 1.0, "channels": 1}).to_string()).await;
                        let _ = conn.socket.close(None).await;
                        return;
                    }
                    Some("Finalize") => match &script {
                        Script::Conversation => {
                            conn.send_text(results("how are you", true, true)).await
                        }
                        Script::FinalizeReplies(text)
                        | Script::AnnounceThenFinalizeReplies(text)
                        | Script::GarbageThenFinalizeReplies(text) => {
                            conn.send_text(results(text, true, true)).await
                        }
                        _ => {}
                    },
                    _ => {
                        let _ = conn.socket.close(None).await;
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

async fn fake_deepgram(script: impl Fn(usize) -> Script + Send + Sync + 'static) -> FakeWsServer {
    let script: Arc<dyn Fn(usize) -> Script + Send + Sync> = Arc::new(script);
    let handler: Handler = Arc::new(move |conn| Box::pin(run_deepgram(conn, script.clone())));
    FakeWsServer::start("/v1/listen", deepgram_check(), handler).await
}

fn deepgram_config(url: &str) -> DeepgramConfig {
    let mut config = DeepgramConfig::new(DEEPGRAM_KEY);
    config.base_url = url.into();
    config.connect_timeout = Duration::from_millis(500);
    config.keepalive_interval = Duration::from_secs(10);
    config.finalize_timeout = Duration::from_secs(2);
    config.reconnect.first_delay = Duration::from_millis(20);
    config
}

async fn next_event(session: &mut SttSession) -> SttEvent {
    within_5s("the next transcript event", session.events.recv())
        .await
        .expect("session ended early")
}

#[tokio::test]
async fn deepgram_transcribes_an_utterance_into_one_final() {
    let fake = fake_deepgram(|_| Script::Conversation).await;
    let mut session = DeepgramSpeechToText::new(deepgram_config(&fake.url))
        .open()
        .await
        .unwrap();
    session
        .input
        .send(SttInput::Audio(vec![1, -2, 300]))
        .await
        .unwrap();
    assert_eq!(next_event(&mut session).await, SttEvent::SpeechStarted);
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Interim {
            text: "hello".into()
        }
    );
    session
        .input
        .send(SttInput::Audio(vec![0; 320]))
        .await
        .unwrap();
    session
        .input
        .send(SttInput::Audio(vec![0; 320]))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Interim {
            text: "hello there how are".into()
        }
    );
    session.input.send(SttInput::SpeechEnded).await.unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final {
            text: "hello there how are you".into()
        }
    );
    // Audio goes out as little-endian PCM16.
    assert_eq!(
        fake.record.binaries.lock().unwrap()[0],
        [1, 0, 0xfe, 0xff, 0x2c, 0x01]
    );
    assert_eq!(fake.record.count_texts(r#"{"type":"Finalize"}"#), 1);
}

#[tokio::test]
async fn deepgram_sends_keepalive_while_no_audio_flows_and_closestream_at_the_end() {
    let fake = fake_deepgram(|_| Script::FinalizeReplies("")).await;
    let mut config = deepgram_config(&fake.url);
    config.keepalive_interval = Duration::from_millis(40);
    let session = DeepgramSpeechToText::new(config).open().await.unwrap();
    let record = fake.record.clone();
    eventually("two KeepAlive messages", || {
        record.count_texts(r#"{"type":"KeepAlive"}"#) >= 2
    })
    .await;
    drop(session.input);
    eventually("CloseStream", || {
        record.count_texts(r#"{"type":"CloseStream"}"#) == 1
    })
    .await;
    let mut events = session.events;
    assert_eq!(within_5s("the session to end", events.recv()).await, None);
}

#[tokio::test]
async fn deepgram_wrong_key_is_rejected_at_open() {
    let fake = fake_deepgram(|_| Script::Conversation).await;
    let mut config = deepgram_config(&fake.url);
    config.api_key = "not-the-key".into();
    let error = DeepgramSpeechToText::new(config)
        .open()
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        ServiceError::Rejected {
            service: "deepgram",
            reason: "HTTP 401".into()
        }
    );
    assert_eq!(
        fake.record
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn deepgram_breaker_opens_after_three_failed_opens_and_then_fails_fast() {
    let fake = fake_deepgram(|_| Script::Conversation).await;
    let mut config = deepgram_config(&fake.url);
    config.api_key = "not-the-key".into();
    let clock = ManualClock::new();
    let stt = DeepgramSpeechToText::new(config).with_breaker(CircuitBreaker::with_clock(
        BreakerConfig::speech_and_language(),
        clock,
    ));
    for _ in 0..3 {
        assert!(matches!(
            stt.open().await,
            Err(ServiceError::Rejected { .. })
        ));
    }
    let error = stt.open().await.err().unwrap();
    assert_eq!(
        error,
        ServiceError::Unavailable {
            service: "deepgram",
            reason: "failing recently; retry in 45 s".into()
        }
    );
    assert_eq!(
        fake.record
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        3,
        "no fourth attempt"
    );
}

#[tokio::test]
async fn deepgram_connect_times_out_when_the_server_never_answers() {
    let url = silent_listener().await;
    let mut config = deepgram_config(&format!("{url}/v1/listen"));
    config.connect_timeout = Duration::from_millis(200);
    let error = within_5s("open", DeepgramSpeechToText::new(config).open())
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        ServiceError::Timeout {
            service: "deepgram",
            after_ms: 200
        }
    );
}

#[tokio::test]
async fn deepgram_reconnects_after_the_socket_drops_and_the_session_goes_on() {
    let fake = fake_deepgram(|index| {
        if index == 0 {
            Script::DropAfterFirstAudio
        } else {
            Script::AnnounceThenFinalizeReplies("still here")
        }
    })
    .await;
    let mut session = DeepgramSpeechToText::new(deepgram_config(&fake.url))
        .open()
        .await
        .unwrap();
    session
        .input
        .send(SttInput::Audio(vec![5; 320]))
        .await
        .unwrap();
    assert!(
        matches!(
            next_event(&mut session).await,
            SttEvent::Error(ServiceError::Unavailable {
                service: "deepgram",
                ..
            })
        ),
        "a dropped socket is reported"
    );
    // The second connection announces itself once the session is reading from it.
    assert_eq!(next_event(&mut session).await, SttEvent::SpeechStarted);
    assert_eq!(fake.record.connections(), 2);
    session
        .input
        .send(SttInput::Audio(vec![5; 320]))
        .await
        .unwrap();
    session.input.send(SttInput::SpeechEnded).await.unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final {
            text: "still here".into()
        }
    );
}

#[tokio::test]
async fn deepgram_malformed_and_error_messages_are_reported_and_the_session_continues() {
    let fake = fake_deepgram(|_| Script::GarbageThenFinalizeReplies("fine now")).await;
    let mut session = DeepgramSpeechToText::new(deepgram_config(&fake.url))
        .open()
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Error(ServiceError::Protocol {
            service: "deepgram",
            reason: "malformed message".into()
        })
    );
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Error(ServiceError::Unavailable {
            service: "deepgram",
            reason: "error message: DATA-0000".into()
        })
    );
    session.input.send(SttInput::SpeechEnded).await.unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final {
            text: "fine now".into()
        }
    );
    assert_eq!(fake.record.connections(), 1);
}

#[tokio::test]
async fn deepgram_emits_what_it_has_when_finalize_gets_no_reply() {
    let fake = fake_deepgram(|_| Script::IgnoresFinalize).await;
    let mut config = deepgram_config(&fake.url);
    config.finalize_timeout = Duration::from_millis(150);
    let mut session = DeepgramSpeechToText::new(config).open().await.unwrap();
    session
        .input
        .send(SttInput::Audio(vec![1; 320]))
        .await
        .unwrap();
    let record = fake.record.clone();
    // Let the final segment arrive before the turn ends.
    eventually("the audio to reach the fake", || {
        !record.binaries.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    session.input.send(SttInput::SpeechEnded).await.unwrap();
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final {
            text: "so tired".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Cartesia
// ---------------------------------------------------------------------------------------------

const CARTESIA_KEY: &str = "sk_car_test";

fn cartesia_check() -> Check {
    Arc::new(|request| {
        if header(request, "x-api-key") != Some(CARTESIA_KEY) {
            return Err((401, r#"{"error":"Invalid API key"}"#.into()));
        }
        if header(request, "cartesia-version").is_none_or(str::is_empty) {
            return Err((
                400,
                r#"{"error":"Cartesia-Version header is required"}"#.into(),
            ));
        }
        Ok(())
    })
}

/// The fake's audio for a transcript: its length, then 1, 2, 3 … so misrouted audio shows.
fn audio_for(transcript: &str, part: i16) -> Vec<i16> {
    vec![transcript.len() as i16, part, part + 1]
}

fn chunk_message(context_id: &str, samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"type": "chunk", "context_id": context_id, "data": data, "done": false, "status_code": 206, "step_time": 12.5}).to_string()
}

fn error_message(context_id: &str, status: u16, title: &str) -> String {
    json!({"type": "error", "context_id": context_id, "status_code": status, "title": title, "message": "details", "error_code": title, "done": true})
        .to_string()
}

/// Checks a generation request like Cartesia; `Err` is the error it would send back.
fn check_request(request: &Value) -> Result<(), String> {
    let text = |key: &str| {
        request
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    text("model_id").ok_or("model_id is required")?;
    text("context_id").ok_or("context_id is required")?;
    request
        .get("transcript")
        .and_then(Value::as_str)
        .ok_or("transcript is required")?;
    if request["voice"]["mode"] != "id" || !request["voice"]["id"].is_string() {
        return Err("voice must be {mode: id, id}".into());
    }
    let format = &request["output_format"];
    let rate_ok = format["sample_rate"]
        .as_u64()
        .is_some_and(|rate| [8000, 16000, 22050, 24000, 44100, 48000].contains(&rate));
    if format["container"] != "raw" || format["encoding"] != "pcm_s16le" || !rate_ok {
        return Err("invalid output_format".into());
    }
    Ok(())
}

/// Serves generation requests; behaviour keyed on the transcript:
/// "stall" → one chunk then silence; "slow" → a chunk every 20 ms until cancelled;
/// "fail" → a 500 error message; "garbage" → a malformed frame; "drop" → closes the TCP
/// connection; anything else → two chunks, a timestamps message, then done.
async fn run_cartesia(mut conn: Conn) {
    let mut slow: Option<String> = None;
    loop {
        let message = tokio::select! {
            message = conn.recv() => message,
            _ = tokio::time::sleep(Duration::from_millis(20)), if slow.is_some() => {
                let context_id = slow.clone().unwrap();
                conn.send_text(chunk_message(&context_id, &[9, 9])).await;
                continue;
            }
        };
        let Some(Message::Text(text)) = message else {
            return;
        };
        let Ok(request) = serde_json::from_str::<Value>(&text) else {
            conn.send_text(error_message("", 400, "invalid_json")).await;
            continue;
        };
        let context_id = request["context_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if request.get("cancel") == Some(&Value::Bool(true)) {
            if slow.as_deref() == Some(context_id.as_str()) {
                slow = None;
            }
            continue;
        }
        if let Err(problem) = check_request(&request) {
            conn.send_text(error_message(&context_id, 400, &problem.replace(' ', "_")))
                .await;
            continue;
        }
        let transcript = request["transcript"].as_str().unwrap().to_owned();
        match transcript.as_str() {
            "stall" => {
                conn.send_text(chunk_message(&context_id, &audio_for(&transcript, 1)))
                    .await
            }
            "slow" => slow = Some(context_id),
            "fail" => {
                conn.send_text(error_message(&context_id, 500, "internal_error"))
                    .await
            }
            "garbage" => conn.send_text("{{{").await,
            "drop" => return,
            _ => {
                conn.send_text(chunk_message(&context_id, &audio_for(&transcript, 1)))
                    .await;
                conn.send_text(json!({"type": "timestamps", "context_id": context_id, "word_timestamps": {"words": [], "start": [], "end": []}}).to_string()).await;
                conn.send_text(chunk_message(&context_id, &audio_for(&transcript, 3)))
                    .await;
                conn.send_text(json!({"type": "done", "context_id": context_id, "done": true, "status_code": 206}).to_string()).await;
            }
        }
    }
}

async fn fake_cartesia() -> FakeWsServer {
    let handler: Handler = Arc::new(|conn| Box::pin(run_cartesia(conn)));
    FakeWsServer::start("/tts/websocket", cartesia_check(), handler).await
}

fn cartesia(url: &str) -> CartesiaTextToSpeech {
    let mut config = CartesiaConfig::new(CARTESIA_KEY);
    config.base_url = url.into();
    config.connect_timeout = Duration::from_millis(500);
    config.first_chunk_timeout = Duration::from_millis(300);
    config.between_chunks_timeout = Duration::from_millis(300);
    CartesiaTextToSpeech::new(config).unwrap()
}

async fn speak_all(
    tts: &CartesiaTextToSpeech,
    sentence: &str,
) -> Result<Vec<AudioChunk>, ServiceError> {
    let mut stream = within_5s("speak", tts.speak(sentence)).await?;
    let mut chunks = Vec::new();
    while let Some(item) = within_5s("the next audio chunk", stream.next()).await {
        chunks.push(item?);
    }
    Ok(chunks)
}

#[tokio::test]
async fn cartesia_speaks_a_sentence_as_pcm_chunks() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let chunks = speak_all(&tts, "Take a breath.").await.unwrap();
    assert_eq!(
        chunks,
        [
            AudioChunk::new(vec![14, 1, 2], 16_000),
            AudioChunk::new(vec![14, 3, 4], 16_000)
        ]
    );
    let request: Value = serde_json::from_str(&fake.record.texts()[0]).unwrap();
    assert_eq!(request["model_id"], "sonic-3");
    assert_eq!(request["transcript"], "Take a breath.");
    assert_eq!(
        request["output_format"],
        json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000})
    );
    assert_eq!(request["voice"]["mode"], "id");
}

#[tokio::test]
async fn cartesia_sentences_share_one_socket_and_get_their_own_audio() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let (first, second) = tokio::join!(speak_all(&tts, "One."), speak_all(&tts, "And two."));
    assert_eq!(first.unwrap()[0].samples[0], 4);
    assert_eq!(second.unwrap()[0].samples[0], 8);
    speak_all(&tts, "Three.").await.unwrap();
    assert_eq!(fake.record.connections(), 1);
}

#[tokio::test]
async fn cartesia_dropping_the_stream_cancels_the_context() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let mut stream = tts.speak("slow").await.unwrap();
    assert!(within_5s("first chunk", stream.next())
        .await
        .unwrap()
        .is_ok());
    drop(stream);
    let record = fake.record.clone();
    eventually("a cancel message", || {
        record.texts().iter().any(|text| {
            let message: Value = serde_json::from_str(text).unwrap_or_default();
            message["cancel"] == true
                && message["context_id"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty())
        })
    })
    .await;
    // The socket is still good for the next sentence.
    speak_all(&tts, "Next.").await.unwrap();
    assert_eq!(fake.record.connections(), 1);
}

#[tokio::test]
async fn cartesia_error_message_fails_only_its_sentence() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let error = speak_all(&tts, "fail").await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Unavailable {
            service: "cartesia",
            reason: "HTTP 500 internal_error".into()
        }
    );
    assert_eq!(speak_all(&tts, "Fine.").await.unwrap().len(), 2);
}

#[tokio::test]
async fn cartesia_breaker_opens_after_three_failed_sentences() {
    let fake = fake_cartesia().await;
    let breaker =
        CircuitBreaker::with_clock(BreakerConfig::speech_and_language(), ManualClock::new());
    let tts = cartesia(&fake.url).with_breaker(breaker);
    for _ in 0..3 {
        assert!(speak_all(&tts, "fail").await.is_err());
    }
    let requests_before = fake.record.texts().len();
    let error = tts.speak("Hello.").await.err().unwrap();
    assert!(
        matches!(
            error,
            ServiceError::Unavailable {
                service: "cartesia",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        fake.record.texts().len(),
        requests_before,
        "nothing sent while open"
    );
}

#[tokio::test]
async fn cartesia_wrong_key_is_rejected() {
    let fake = fake_cartesia().await;
    let mut config = CartesiaConfig::new("wrong");
    config.base_url = fake.url.clone();
    let error = CartesiaTextToSpeech::new(config)
        .unwrap()
        .speak("Hello.")
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        ServiceError::Rejected {
            service: "cartesia",
            reason: "HTTP 401".into()
        }
    );
}

#[tokio::test]
async fn cartesia_stall_times_out() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let error = speak_all(&tts, "stall").await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Timeout {
            service: "cartesia",
            after_ms: 300
        }
    );
}

#[tokio::test]
async fn cartesia_malformed_frame_or_dropped_socket_fails_the_sentence_and_the_next_reconnects() {
    let fake = fake_cartesia().await;
    let tts = cartesia(&fake.url);
    let error = speak_all(&tts, "garbage").await.unwrap_err();
    assert_eq!(
        error,
        ServiceError::Protocol {
            service: "cartesia",
            reason: "malformed message".into()
        }
    );
    assert_eq!(speak_all(&tts, "Again.").await.unwrap().len(), 2);
    assert_eq!(fake.record.connections(), 2);

    let error = speak_all(&tts, "drop").await.unwrap_err();
    assert!(
        matches!(
            error,
            ServiceError::Unavailable {
                service: "cartesia",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(speak_all(&tts, "Once more.").await.unwrap().len(), 2);
    assert_eq!(fake.record.connections(), 3);
}

#[tokio::test]
async fn cartesia_connect_times_out_and_rejects_empty_sentences() {
    let url = silent_listener().await;
    let mut config = CartesiaConfig::new(CARTESIA_KEY);
    config.base_url = url;
    config.connect_timeout = Duration::from_millis(200);
    let tts = CartesiaTextToSpeech::new(config).unwrap();
    assert_eq!(
        tts.speak("Hello.").await.err().unwrap(),
        ServiceError::Timeout {
            service: "cartesia",
            after_ms: 200
        }
    );
    assert!(matches!(
        tts.speak("   ").await.err().unwrap(),
        ServiceError::Rejected { .. }
    ));
}

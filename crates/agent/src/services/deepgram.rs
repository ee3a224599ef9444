//! Deepgram live transcription over a WebSocket (`/v1/listen`).
//!
//! One socket per session. Audio goes out as binary linear16 frames; a `KeepAlive` text frame
//! goes out whenever no audio has flowed for a while (Deepgram closes an idle socket after
//! 10 s). Turn-taking belongs to the pipeline's VAD: on [`SttInput::SpeechEnded`] the session
//! sends `Finalize` and emits the utterance's `is_final` segments, joined, as one
//! [`SttEvent::Final`] once Deepgram's `from_finalize` result arrives (or after
//! `finalize_timeout`). Deepgram's own `UtteranceEnd` only completes a pending finalize early.
//! If the socket drops mid-call the session reports [`SttEvent::Error`] and reconnects with
//! backoff; audio sent while reconnecting is lost.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use resilience::{BreakerConfig, CircuitBreaker, RetryPolicy};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::cloud::{self, WebSocket};

/// Boxed: the socket is large and moves between the session's states.
type Socket = Box<WebSocket>;
use super::{ServiceError, SpeechToText, SttEvent, SttInput, SttSession};
use crate::audio::PIPELINE_SAMPLE_RATE;

const SERVICE: &str = "deepgram";

/// How to reach Deepgram. Built by the server's configuration; nothing here reads the
/// environment.
#[derive(Clone)]
pub struct DeepgramConfig {
    pub api_key: String,
    /// The listen endpoint; default `wss://api.deepgram.com/v1/listen`.
    pub base_url: String,
    /// Default `nova-2`.
    pub model: String,
    /// BCP-47 language; default `en-US`.
    pub language: String,
    /// Silence (ms) after which Deepgram marks speech final; default 300.
    pub endpointing_ms: u32,
    /// Gap (ms) between words after which Deepgram sends `UtteranceEnd`; default 1000.
    pub utterance_end_ms: u32,
    /// TCP + TLS + upgrade; default 5 s.
    pub connect_timeout: Duration,
    /// A `KeepAlive` goes out after this long without audio; default 4 s.
    pub keepalive_interval: Duration,
    /// How long to wait for the reply to `Finalize` before emitting what was heard; default 2 s.
    pub finalize_timeout: Duration,
    /// Reconnect attempts after the socket drops, and their backoff; default 5 retries from
    /// 250 ms doubling up to 4 s.
    pub reconnect: RetryPolicy,
}

impl DeepgramConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: "wss://api.deepgram.com/v1/listen".into(),
            model: "nova-2".into(),
            language: "en-US".into(),
            endpointing_ms: 300,
            utterance_end_ms: 1000,
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(4),
            finalize_timeout: Duration::from_secs(2),
            reconnect: RetryPolicy {
                retries: 5,
                first_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(4),
            },
        }
    }

    fn listen_url(&self) -> String {
        format!(
            "{}?model={}&language={}&encoding=linear16&sample_rate={}&channels=1&interim_results=true&endpointing={}&utterance_end_ms={}&vad_events=true&smart_format=true&punctuate=true",
            self.base_url,
            query_value(&self.model),
            query_value(&self.language),
            PIPELINE_SAMPLE_RATE,
            self.endpointing_ms,
            self.utterance_end_ms,
        )
    }
}

/// Model and language names are plain tokens; anything else is dropped rather than escaped.
fn query_value(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

impl std::fmt::Debug for DeepgramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepgramConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

pub struct DeepgramSpeechToText {
    config: DeepgramConfig,
    breaker: CircuitBreaker,
}

impl DeepgramSpeechToText {
    /// Opening sessions goes through a breaker with the speech-service thresholds
    /// (3 failures, 45 s open); [`with_breaker`](Self::with_breaker) replaces it.
    pub fn new(config: DeepgramConfig) -> Self {
        cloud::install_default_crypto_provider();
        Self {
            config,
            breaker: CircuitBreaker::new(BreakerConfig::speech_and_language()),
        }
    }

    pub fn with_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// The breaker guarding this service (a clone shares its state), for monitoring.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// Room for ~1.3 s of 20 ms audio frames before the pipeline waits.
const INPUT_QUEUE: usize = 64;
const EVENT_QUEUE: usize = 64;

#[async_trait]
impl SpeechToText for DeepgramSpeechToText {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn open(&self) -> Result<SttSession, ServiceError> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|open| cloud::breaker_open(SERVICE, open))?;
        let socket = match connect(&self.config).await {
            Ok(socket) => {
                permit.success();
                socket
            }
            Err(error) => {
                permit.failure();
                return Err(error);
            }
        };
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let session = Session::new(self.config.clone(), socket, events_tx);
        tokio::spawn(session.run(input_rx));
        Ok(SttSession {
            input: input_tx,
            events: events_rx,
        })
    }
}

async fn connect(config: &DeepgramConfig) -> Result<Socket, ServiceError> {
    let headers = [("authorization", format!("Token {}", config.api_key))];
    cloud::connect_websocket(
        SERVICE,
        &config.listen_url(),
        &headers,
        config.connect_timeout,
    )
    .await
    .map(Box::new)
}

type Reconnecting = Pin<Box<dyn Future<Output = Result<Socket, ServiceError>> + Send>>;

enum Link {
    Up(Socket),
    Reconnecting(Reconnecting),
}

struct Session {
    config: DeepgramConfig,
    link: Link,
    events: mpsc::Sender<SttEvent>,
    /// `is_final` segments of the utterance in progress.
    segments: Vec<String>,
    /// Set while waiting for the reply to `Finalize`.
    finalize_deadline: Option<Instant>,
    keepalive_due: Instant,
}

/// Why the session loop stopped.
enum End {
    InputClosed,
    EventsClosed,
    GaveUp,
}

impl Session {
    fn new(config: DeepgramConfig, socket: Socket, events: mpsc::Sender<SttEvent>) -> Self {
        let keepalive_due = Instant::now() + config.keepalive_interval;
        Self {
            config,
            link: Link::Up(socket),
            events,
            segments: Vec::new(),
            finalize_deadline: None,
            keepalive_due,
        }
    }

    async fn run(mut self, mut input: mpsc::Receiver<SttInput>) {
        let end = self.serve(&mut input).await;
        if let (End::InputClosed | End::EventsClosed, Link::Up(socket)) = (end, &mut self.link) {
            // The call is over: ask Deepgram to flush and close, and wait for nothing more.
            let _ = socket
                .send(Message::text(r#"{"type":"CloseStream"}"#))
                .await;
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                WebSocketStream::close(socket.as_mut(), None),
            )
            .await;
        }
    }

    async fn serve(&mut self, input: &mut mpsc::Receiver<SttInput>) -> End {
        loop {
            let finalize_deadline = self.finalize_deadline;
            let step = match &mut self.link {
                Link::Up(socket) => tokio::select! {
                    message = input.recv() => Step::Input(message),
                    frame = socket.next() => Step::Frame(frame),
                    _ = sleep_until(self.keepalive_due) => Step::KeepAlive,
                    _ = sleep_until(finalize_deadline.unwrap_or_else(Instant::now)), if finalize_deadline.is_some() => Step::FinalizeTimedOut,
                },
                Link::Reconnecting(attempt) => tokio::select! {
                    message = input.recv() => Step::Input(message),
                    result = attempt => Step::Reconnected(result),
                    _ = sleep_until(finalize_deadline.unwrap_or_else(Instant::now)), if finalize_deadline.is_some() => Step::FinalizeTimedOut,
                },
            };
            let outcome = match step {
                Step::Input(None) => return End::InputClosed,
                Step::Input(Some(message)) => self.on_input(message).await,
                Step::Frame(frame) => self.on_frame(frame).await,
                Step::KeepAlive => self.send(Message::text(r#"{"type":"KeepAlive"}"#)).await,
                Step::FinalizeTimedOut => self.emit_final().await,
                Step::Reconnected(Ok(socket)) => {
                    self.link = Link::Up(socket);
                    self.keepalive_due = Instant::now() + self.config.keepalive_interval;
                    Ok(())
                }
                Step::Reconnected(Err(error)) => {
                    // Every attempt failed: say so and end the session.
                    let _ = self.events.send(SttEvent::Error(error)).await;
                    return End::GaveUp;
                }
            };
            if let Err(end) = outcome {
                return end;
            }
        }
    }

    async fn on_input(&mut self, message: SttInput) -> Result<(), End> {
        match message {
            SttInput::Audio(samples) => {
                let bytes: Vec<u8> = samples
                    .iter()
                    .flat_map(|sample| sample.to_le_bytes())
                    .collect();
                self.send(Message::binary(bytes)).await
            }
            // Deepgram detects speech itself (vad_events); nothing to tell it.
            SttInput::SpeechStarted => Ok(()),
            SttInput::SpeechEnded => {
                if matches!(self.link, Link::Up(_)) {
                    self.finalize_deadline = Some(Instant::now() + self.config.finalize_timeout);
                    self.send(Message::text(r#"{"type":"Finalize"}"#)).await
                } else {
                    // No socket to flush: what was heard is all there is.
                    self.emit_final().await
                }
            }
        }
    }

    /// Sends a frame if the socket is up (audio during a reconnect is dropped). Any frame
    /// counts as activity for the keep-alive.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        let Link::Up(socket) = &mut self.link else {
            return Ok(());
        };
        self.keepalive_due = Instant::now() + self.config.keepalive_interval;
        if socket.send(message).await.is_err() {
            return self.connection_lost().await;
        }
        Ok(())
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), End> {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_message(text.as_str()).await,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => self.connection_lost().await,
            // Pings are answered by the socket itself; Deepgram sends no binary frames.
            Some(Ok(_)) => Ok(()),
        }
    }

    async fn on_message(&mut self, text: &str) -> Result<(), End> {
        let Ok(message) = serde_json::from_str::<ServerMessage>(text) else {
            return self
                .emit(SttEvent::Error(ServiceError::Protocol {
                    service: SERVICE,
                    reason: "malformed message".into(),
                }))
                .await;
        };
        match message {
            ServerMessage::Results {
                is_final,
                from_finalize,
                channel,
            } => {
                let transcript = channel
                    .alternatives
                    .into_iter()
                    .next()
                    .map(|alternative| alternative.transcript)
                    .unwrap_or_default();
                let transcript = transcript.trim();
                if is_final {
                    if !transcript.is_empty() {
                        self.segments.push(transcript.to_owned());
                    }
                    if from_finalize && self.finalize_deadline.is_some() {
                        return self.emit_final().await;
                    }
                    Ok(())
                } else if transcript.is_empty() {
                    Ok(())
                } else {
                    let mut text = self.segments.join(" ");
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(transcript);
                    self.emit(SttEvent::Interim { text }).await
                }
            }
            ServerMessage::SpeechStarted => self.emit(SttEvent::SpeechStarted).await,
            ServerMessage::UtteranceEnd => {
                if self.finalize_deadline.is_some() {
                    self.emit_final().await
                } else {
                    Ok(())
                }
            }
            ServerMessage::Error { variant } => {
                let reason = match variant.as_deref().map(cloud::short_code) {
                    Some(code) if !code.is_empty() => format!("error message: {code}"),
                    _ => "error message".into(),
                };
                self.emit(SttEvent::Error(ServiceError::Unavailable {
                    service: SERVICE,
                    reason,
                }))
                .await
            }
            ServerMessage::Metadata | ServerMessage::Other => Ok(()),
        }
    }

    async fn emit_final(&mut self) -> Result<(), End> {
        self.finalize_deadline = None;
        let text = std::mem::take(&mut self.segments).join(" ");
        self.emit(SttEvent::Final { text }).await
    }

    async fn emit(&mut self, event: SttEvent) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::EventsClosed)
    }

    async fn connection_lost(&mut self) -> Result<(), End> {
        let config = self.config.clone();
        self.link = Link::Reconnecting(Box::pin(async move {
            config
                .reconnect
                .retry_idempotent(|| connect(&config), ServiceError::is_transient)
                .await
        }));
        self.emit(SttEvent::Error(ServiceError::Unavailable {
            service: SERVICE,
            reason: "connection lost; reconnecting".into(),
        }))
        .await
    }
}

enum Step {
    Input(Option<SttInput>),
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    KeepAlive,
    FinalizeTimedOut,
    Reconnected(Result<Socket, ServiceError>),
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Results {
        #[serde(default)]
        is_final: bool,
        #[serde(default)]
        from_finalize: bool,
        channel: Channel,
    },
    SpeechStarted,
    UtteranceEnd,
    Metadata,
    Error {
        variant: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_url_asks_for_the_pipeline_audio_format_and_events() {
        let url = DeepgramConfig::new("key").listen_url();
        assert!(url.starts_with("wss://api.deepgram.com/v1/listen?model=nova-2&"));
        for part in [
            "encoding=linear16",
            "sample_rate=16000",
            "channels=1",
            "interim_results=true",
            "endpointing=300",
            "utterance_end_ms=1000",
            "vad_events=true",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
    }

    #[test]
    fn config_debug_never_shows_the_key() {
        assert!(!format!("{:?}", DeepgramConfig::new("dg-secret")).contains("dg-secret"));
    }
}

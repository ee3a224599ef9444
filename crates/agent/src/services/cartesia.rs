//! Cartesia text-to-speech over its WebSocket (`/tts/websocket`).
//!
//! One socket per service instance, shared by every sentence: each [`TextToSpeech::speak`] is
//! its own `context_id`, and replies are routed by it. The socket is opened on first use and
//! again after it drops. Dropping a sentence's stream before it is done sends
//! `{context_id, cancel: true}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use resilience::{BreakerConfig, CircuitBreaker, Permit};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::cloud::{self, WebSocket};
use super::{BoxStream, ServiceError, TextToSpeech};
use crate::audio::AudioChunk;

const SERVICE: &str = "cartesia";

/// Longest sentence accepted. It also bounds the audio one sentence can queue.
pub const MAX_SENTENCE_CHARS: usize = 2_000;

/// How to reach Cartesia. Built by the server's configuration; nothing here reads the
/// environment.
#[derive(Clone)]
pub struct CartesiaConfig {
    pub api_key: String,
    /// Default `wss://api.cartesia.ai/tts/websocket`.
    pub base_url: String,
    /// The `Cartesia-Version` header; default `2025-04-16`.
    pub api_version: String,
    /// Default `sonic-3`.
    pub model: String,
    /// A voice id from Cartesia's library or your own; default
    /// `694f9389-aac1-45b6-b726-9d9369183238`.
    pub voice_id: String,
    /// Default `en`.
    pub language: String,
    /// Raw PCM rate asked for: 16000 (the pipeline's own, default) or 24000.
    pub sample_rate: u32,
    /// TCP + TLS + upgrade; default 5 s.
    pub connect_timeout: Duration,
    /// From sending a sentence to its first audio; default 5 s.
    pub first_chunk_timeout: Duration,
    /// Longest gap between two pieces of one sentence's audio; default 5 s.
    pub between_chunks_timeout: Duration,
}

impl CartesiaConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: "wss://api.cartesia.ai/tts/websocket".into(),
            api_version: "2025-04-16".into(),
            model: "sonic-3".into(),
            voice_id: "694f9389-aac1-45b6-b726-9d9369183238".into(),
            language: "en".into(),
            sample_rate: 16_000,
            connect_timeout: Duration::from_secs(5),
            first_chunk_timeout: Duration::from_secs(5),
            between_chunks_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for CartesiaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CartesiaConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("voice_id", &self.voice_id)
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

pub struct CartesiaTextToSpeech {
    config: CartesiaConfig,
    connection: Mutex<Option<mpsc::Sender<Command>>>,
    next_context: AtomicU64,
    /// Makes context ids unique across instances and restarts.
    instance_tag: u64,
    breaker: CircuitBreaker,
}

impl CartesiaTextToSpeech {
    pub fn new(config: CartesiaConfig) -> Result<Self, ServiceError> {
        if !matches!(
            config.sample_rate,
            8_000 | 16_000 | 22_050 | 24_000 | 44_100 | 48_000
        ) {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: format!("unsupported sample rate {}", config.sample_rate),
            });
        }
        cloud::install_default_crypto_provider();
        let instance_tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or_default();
        Ok(Self {
            config,
            connection: Mutex::new(None),
            next_context: AtomicU64::new(1),
            instance_tag,
            breaker: CircuitBreaker::new(BreakerConfig::speech_and_language()),
        })
    }

    /// Replaces the default breaker (speech-service thresholds: 3 failed sentences, 45 s open).
    pub fn with_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// The breaker guarding this service (a clone shares its state), for monitoring.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The live connection's command queue, opening a socket if there is none.
    async fn connection(&self) -> Result<mpsc::Sender<Command>, ServiceError> {
        let mut connection = self.connection.lock().await;
        if let Some(commands) = connection.as_ref().filter(|commands| !commands.is_closed()) {
            return Ok(commands.clone());
        }
        let headers = [
            ("x-api-key", self.config.api_key.clone()),
            ("cartesia-version", self.config.api_version.clone()),
        ];
        let socket = cloud::connect_websocket(
            SERVICE,
            &self.config.base_url,
            &headers,
            self.config.connect_timeout,
        )
        .await?;
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(
            Connection {
                socket,
                routes: HashMap::new(),
                sample_rate: self.config.sample_rate,
            }
            .run(queue),
        );
        *connection = Some(commands.clone());
        Ok(commands)
    }
}

const COMMAND_QUEUE: usize = 32;

#[derive(Serialize)]
struct SpeakRequest<'a> {
    model_id: &'a str,
    transcript: &'a str,
    voice: Voice<'a>,
    output_format: OutputFormat,
    context_id: &'a str,
    #[serde(rename = "continue")]
    continues: bool,
    language: &'a str,
}

#[derive(Serialize)]
struct Voice<'a> {
    mode: &'static str,
    id: &'a str,
}

#[derive(Serialize)]
struct OutputFormat {
    container: &'static str,
    encoding: &'static str,
    sample_rate: u32,
}

#[async_trait]
impl TextToSpeech for CartesiaTextToSpeech {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn speak(
        &self,
        sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        let sentence = sentence.trim();
        if sentence.is_empty() {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: "nothing to say".into(),
            });
        }
        if sentence.chars().count() > MAX_SENTENCE_CHARS {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: format!("sentence longer than {MAX_SENTENCE_CHARS} characters"),
            });
        }
        let context_id = format!(
            "counsel-{:x}-{}",
            self.instance_tag,
            self.next_context.fetch_add(1, Ordering::Relaxed)
        );
        let request = serde_json::to_string(&SpeakRequest {
            model_id: &self.config.model,
            transcript: sentence,
            voice: Voice {
                mode: "id",
                id: &self.config.voice_id,
            },
            output_format: OutputFormat {
                container: "raw",
                encoding: "pcm_s16le",
                sample_rate: self.config.sample_rate,
            },
            context_id: &context_id,
            continues: false,
            language: &self.config.language,
        })
        .map_err(|_| ServiceError::Protocol {
            service: SERVICE,
            reason: "could not encode the request".into(),
        })?;

        let permit = self
            .breaker
            .try_acquire()
            .map_err(|open| cloud::breaker_open(SERVICE, open))?;
        let commands = match self.connection().await {
            Ok(commands) => commands,
            Err(error) => {
                permit.failure();
                return Err(error);
            }
        };
        // Unbounded on purpose: one sentence's audio is bounded by MAX_SENTENCE_CHARS, and a
        // slow listener must not stall the other sentences sharing the socket.
        let (audio_tx, audio_rx) = mpsc::unbounded_channel();
        commands
            .send(Command::Speak {
                context_id: context_id.clone(),
                request,
                audio: audio_tx,
            })
            .await
            .map_err(|_| ServiceError::Closed { service: SERVICE })?;

        let sentence_audio = SentenceAudio {
            audio: audio_rx,
            cancel: CancelOnDrop {
                context_id,
                commands: Some(commands),
            },
            first_chunk_timeout: self.config.first_chunk_timeout,
            between_chunks_timeout: self.config.between_chunks_timeout,
            received_any: false,
            permit: Some(permit),
        };
        Ok(Box::pin(futures::stream::unfold(
            sentence_audio,
            |mut sentence| async move {
                let item = sentence.next().await?;
                Some((item, sentence))
            },
        )))
    }
}

struct SentenceAudio {
    audio: mpsc::UnboundedReceiver<Result<AudioChunk, ServiceError>>,
    cancel: CancelOnDrop,
    first_chunk_timeout: Duration,
    between_chunks_timeout: Duration,
    received_any: bool,
    /// Settled by how the sentence ends; a sentence dropped by the listener counts for nothing.
    permit: Option<Permit>,
}

impl SentenceAudio {
    async fn next(&mut self) -> Option<Result<AudioChunk, ServiceError>> {
        self.cancel.commands.as_ref()?;
        let wait = if self.received_any {
            self.between_chunks_timeout
        } else {
            self.first_chunk_timeout
        };
        match tokio::time::timeout(wait, self.audio.recv()).await {
            Err(_) => {
                self.cancel.cancel();
                self.settle(false);
                Some(Err(ServiceError::Timeout {
                    service: SERVICE,
                    after_ms: cloud::millis(wait),
                }))
            }
            Ok(None) => {
                // The connection finished this context (done), nothing to cancel.
                self.cancel.commands = None;
                self.settle(true);
                None
            }
            Ok(Some(Err(error))) => {
                self.cancel.commands = None;
                self.settle(false);
                Some(Err(error))
            }
            Ok(Some(Ok(chunk))) => {
                self.received_any = true;
                Some(Ok(chunk))
            }
        }
    }
}

impl SentenceAudio {
    fn settle(&mut self, succeeded: bool) {
        match self.permit.take() {
            Some(permit) if succeeded => permit.success(),
            Some(permit) => permit.failure(),
            None => {}
        }
    }
}

/// Cancels a sentence still being synthesised when its stream goes away.
struct CancelOnDrop {
    context_id: String,
    /// `None` once the sentence is finished or cancelled.
    commands: Option<mpsc::Sender<Command>>,
}

impl CancelOnDrop {
    fn cancel(&mut self) {
        if let Some(commands) = self.commands.take() {
            // If the queue is full or gone the connection is busy failing; nothing to add.
            let _ = commands.try_send(Command::Cancel {
                context_id: std::mem::take(&mut self.context_id),
            });
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancel();
    }
}

enum Command {
    Speak {
        context_id: String,
        request: String,
        audio: mpsc::UnboundedSender<Result<AudioChunk, ServiceError>>,
    },
    Cancel {
        context_id: String,
    },
}

/// Owns the socket: writes requests, routes replies to their sentence by `context_id`.
struct Connection {
    socket: WebSocket,
    routes: HashMap<String, mpsc::UnboundedSender<Result<AudioChunk, ServiceError>>>,
    sample_rate: u32,
}

/// An idle socket is closed after this long; the next sentence opens a new one.
const IDLE_CLOSE: Duration = Duration::from_secs(120);

impl Connection {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut idle_since = Instant::now();
        let failure = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    // The service was dropped.
                    None => break None,
                    Some(Command::Speak { context_id, request, audio }) => {
                        self.routes.insert(context_id, audio);
                        if self.socket.send(Message::text(request)).await.is_err() {
                            break Some(ServiceError::Unavailable { service: SERVICE, reason: "connection lost".into() });
                        }
                    }
                    Some(Command::Cancel { context_id }) => {
                        if self.routes.remove(&context_id).is_some() {
                            let cancel = serde_json::json!({ "context_id": context_id, "cancel": true }).to_string();
                            if self.socket.send(Message::text(cancel)).await.is_err() {
                                break Some(ServiceError::Unavailable { service: SERVICE, reason: "connection lost".into() });
                            }
                        }
                    }
                },
                frame = self.socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(error) = self.on_message(text.as_str()) {
                            break Some(error);
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        break Some(ServiceError::Unavailable { service: SERVICE, reason: "connection lost".into() });
                    }
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(idle_since + IDLE_CLOSE), if self.routes.is_empty() => break None,
            }
            if !self.routes.is_empty() {
                idle_since = Instant::now();
            }
        };
        // Stop taking sentences before failing the ones in flight, so none is left hanging.
        commands.close();
        let error = failure.unwrap_or(ServiceError::Closed { service: SERVICE });
        for (_, audio) in self.routes.drain() {
            let _ = audio.send(Err(error.clone()));
        }
        while let Ok(Command::Speak { audio, .. }) = commands.try_recv() {
            let _ = audio.send(Err(error.clone()));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.socket.close(None)).await;
    }

    /// Routes one reply. An error return means the connection can no longer be trusted.
    fn on_message(&mut self, text: &str) -> Result<(), ServiceError> {
        let reply: Reply = serde_json::from_str(text).map_err(|_| ServiceError::Protocol {
            service: SERVICE,
            reason: "malformed message".into(),
        })?;
        let Some(context_id) = reply.context_id.as_deref() else {
            // An error that belongs to no sentence (e.g. an unreadable request) fails them all.
            return match reply.kind.as_str() {
                "error" => Err(reply_error(&reply)),
                _ => Ok(()),
            };
        };
        let Some(route) = self.routes.get(context_id) else {
            // Late replies for a cancelled sentence.
            return Ok(());
        };
        match reply.kind.as_str() {
            "chunk" => {
                let data = reply.data.as_deref().unwrap_or_default();
                let chunk = decode_pcm(data, self.sample_rate)?;
                if !chunk.samples.is_empty() {
                    let _ = route.send(Ok(chunk));
                }
                if reply.done {
                    self.routes.remove(context_id);
                }
            }
            "done" => {
                self.routes.remove(context_id);
            }
            "error" => {
                let _ = route.send(Err(reply_error(&reply)));
                self.routes.remove(context_id);
            }
            // timestamps, flush_done and whatever else comes along carry no audio.
            _ => {}
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "type")]
    kind: String,
    context_id: Option<String>,
    data: Option<String>,
    #[serde(default)]
    done: bool,
    status_code: Option<u16>,
    error_code: Option<String>,
    title: Option<String>,
}

fn reply_error(reply: &Reply) -> ServiceError {
    let code = reply.error_code.as_deref().or(reply.title.as_deref());
    match reply.status_code {
        Some(status) if status >= 400 => cloud::error_for_status(SERVICE, status, code),
        _ => ServiceError::Unavailable {
            service: SERVICE,
            reason: code
                .map(cloud::short_code)
                .unwrap_or_else(|| "error message".into()),
        },
    }
}

fn decode_pcm(data: &str, sample_rate: u32) -> Result<AudioChunk, ServiceError> {
    let malformed = || ServiceError::Protocol {
        service: SERVICE,
        reason: "malformed audio chunk".into(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| malformed())?;
    if bytes.len() % 2 != 0 {
        return Err(malformed());
    }
    let samples = bytes
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Ok(AudioChunk::new(samples, sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_little_endian_pcm() {
        let data =
            base64::engine::general_purpose::STANDARD.encode([0x01, 0x00, 0xff, 0x7f, 0x00, 0x80]);
        assert_eq!(
            decode_pcm(&data, 16_000).unwrap(),
            AudioChunk::new(vec![1, i16::MAX, i16::MIN], 16_000)
        );
    }

    #[test]
    fn rejects_odd_byte_counts_and_bad_base64() {
        let odd = base64::engine::general_purpose::STANDARD.encode([1, 2, 3]);
        assert!(decode_pcm(&odd, 16_000).is_err());
        assert!(decode_pcm("not base64!", 16_000).is_err());
    }

    #[test]
    fn rejects_sample_rates_cartesia_does_not_offer() {
        let mut config = CartesiaConfig::new("key");
        config.sample_rate = 11_025;
        assert!(CartesiaTextToSpeech::new(config).is_err());
    }
}

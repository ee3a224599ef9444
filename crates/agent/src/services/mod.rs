//! The speech and language services a call uses, behind traits so that cloud providers,
//! offline models and test fakes are interchangeable.
//!
//! Conventions every implementation follows:
//! - every network wait has a timeout and ends in a [`ServiceError`], never a hang;
//! - dropping a stream or a session cancels the work behind it and frees what it held;
//! - channels are bounded: a slow consumer slows the producer, nothing buffers without limit.

pub mod cartesia;
pub mod cloud;
pub mod deepgram;
pub mod fallback;
pub mod gemini;
pub mod openai;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::mpsc;

use crate::audio::AudioChunk;

/// Why a service call failed. Messages are safe to log: they never carry transcript text,
/// keys or upstream bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{service} timed out after {after_ms} ms")]
    Timeout {
        service: &'static str,
        after_ms: u64,
    },
    #[error("{service} is rate limiting requests")]
    RateLimited { service: &'static str },
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
    #[error("{service} rejected the request: {reason}")]
    Rejected {
        service: &'static str,
        reason: String,
    },
    #[error("{service} sent something we could not understand: {reason}")]
    Protocol {
        service: &'static str,
        reason: String,
    },
    #[error("{service} closed the stream")]
    Closed { service: &'static str },
}

impl ServiceError {
    /// Whether trying again (or falling back to another provider) may help.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ServiceError::Rejected { .. })
    }
}

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

// ---------------------------------------------------------------------------------------------
// Speech to text
// ---------------------------------------------------------------------------------------------

/// What the pipeline sends into a speech-to-text session.
#[derive(Debug, Clone)]
pub enum SttInput {
    /// Student audio, 16 kHz mono PCM16, normally 20 ms at a time.
    Audio(Vec<i16>),
    /// VAD heard the student start speaking.
    SpeechStarted,
    /// VAD decided the student's turn ended: finish the utterance and emit a final transcript.
    SpeechEnded,
}

/// What a speech-to-text session reports back.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A partial hypothesis; later events may revise it.
    Interim { text: String },
    /// The recognised text of a finished utterance. Empty text means nothing intelligible.
    Final { text: String },
    /// The provider itself detected speech (Deepgram's `SpeechStarted`), if it does.
    SpeechStarted,
    /// The session failed; a streaming provider may recover (reconnect) and keep going.
    Error(ServiceError),
}

/// One live speech-to-text session: send audio in, read transcripts out.
/// Dropping `input` ends the session; the service's task then closes `events`.
pub struct SttSession {
    pub input: mpsc::Sender<SttInput>,
    pub events: mpsc::Receiver<SttEvent>,
}

#[async_trait]
pub trait SpeechToText: Send + Sync {
    /// A short name for logs and metrics (`"deepgram"`, `"whisper"`).
    fn name(&self) -> &'static str;
    /// Opens a session for one call.
    async fn open(&self) -> Result<SttSession, ServiceError>;
}

// ---------------------------------------------------------------------------------------------
// Language model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// A conversation to continue: the system prompt, then alternating turns ending with the
/// student's.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
    /// When the caller stops waiting for the first text. A model with a fallback shares what
    /// is left of it between its providers, so the last one is still asked in time.
    pub first_text_by: Option<tokio::time::Instant>,
}

#[async_trait]
pub trait LanguageModel: Send + Sync {
    fn name(&self) -> &'static str;
    /// Streams the reply as text deltas. The first error ends the stream; dropping the stream
    /// cancels generation.
    async fn stream_reply(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError>;
}

// ---------------------------------------------------------------------------------------------
// Text to speech
// ---------------------------------------------------------------------------------------------

#[async_trait]
pub trait TextToSpeech: Send + Sync {
    fn name(&self) -> &'static str;
    /// Speaks one sentence, streaming audio as it is made. Chunks may be at any sample rate
    /// (each says which); the pipeline resamples. Dropping the stream cancels synthesis.
    async fn speak(
        &self,
        sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError>;
}

// ---------------------------------------------------------------------------------------------
// Voice activity detection
// ---------------------------------------------------------------------------------------------

/// Scores frames of 16 kHz audio for speech. One instance per call (models keep state).
pub trait VoiceActivityDetector: Send {
    /// How many 16 kHz samples one call to [`speech_probability`](Self::speech_probability) takes.
    fn frame_samples(&self) -> usize;
    /// Probability (0..1) that this frame holds speech.
    fn speech_probability(&mut self, frame: &[i16]) -> f32;
    /// Forgets all state (between calls, or after a long silence).
    fn reset(&mut self);
}

/// Makes a fresh detector for each call.
pub trait VadFactory: Send + Sync {
    fn create(&self) -> Box<dyn VoiceActivityDetector>;
}

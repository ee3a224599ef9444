//! Offline speech-to-text: Whisper tiny.en on the CPU.
//!
//! [`WhisperStt`] turns the pipeline's VAD-delimited audio into one final transcript per turn:
//! it buffers audio from `SpeechStarted` (plus a short pre-roll, since VAD fires after speech
//! has begun) to `SpeechEnded`, then transcribes the utterance on a blocking thread. One model
//! is shared by every call, and a semaphore bounds how many transcriptions run at once so that
//! many calls queue instead of thrashing a small machine's cores.

pub mod ct2;
pub mod mel;
mod model;
pub mod vocabulary;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use agent::services::{ServiceError, SpeechToText, SttEvent, SttInput, SttSession};
use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};

pub use model::{Transcript, WhisperError, WhisperModel};

const SERVICE: &str = "whisper";
/// Audio kept from before `SpeechStarted`.
const PRE_ROLL_SAMPLES: usize = mel::SAMPLE_RATE * 3 / 10;
/// A turn this long is transcribed and emitted without waiting for its end, so memory and
/// latency stay bounded when a student speaks for a long time.
const MAX_UTTERANCE_SAMPLES: usize = mel::SAMPLE_RATE * 30;
/// Shorter utterances are clicks or breaths, not words.
const MIN_UTTERANCE_SAMPLES: usize = mel::SAMPLE_RATE / 10;

pub struct WhisperStt {
    model: Arc<WhisperModel>,
    transcription_slots: Arc<Semaphore>,
}

impl WhisperStt {
    /// Loads the model from a CTranslate2 Whisper directory (`ModelPaths::whisper_dir`).
    /// `max_concurrent` transcriptions run at once across all calls; on a 2-core machine, 1.
    pub fn load(model_dir: &Path, max_concurrent: usize) -> Result<Self, WhisperError> {
        Ok(Self::new(
            Arc::new(WhisperModel::load(model_dir)?),
            max_concurrent,
        ))
    }

    pub fn new(model: Arc<WhisperModel>, max_concurrent: usize) -> Self {
        Self {
            model,
            transcription_slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// Transcribes one utterance of 16 kHz PCM16, waiting for a free slot.
    pub async fn transcribe(&self, samples: Vec<i16>) -> Result<Transcript, ServiceError> {
        transcribe_shared(&self.model, &self.transcription_slots, samples).await
    }
}

async fn transcribe_shared(
    model: &Arc<WhisperModel>,
    slots: &Arc<Semaphore>,
    samples: Vec<i16>,
) -> Result<Transcript, ServiceError> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| ServiceError::Closed { service: SERVICE })?;
    let model = Arc::clone(model);
    tokio::task::spawn_blocking(move || {
        let audio: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        model.transcribe(&audio)
    })
    .await
    .map_err(|e| ServiceError::Unavailable {
        service: SERVICE,
        reason: format!("transcription task failed: {e}"),
    })?
    .map_err(|e| ServiceError::Unavailable {
        service: SERVICE,
        reason: e.to_string(),
    })
}

#[async_trait]
impl SpeechToText for WhisperStt {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn open(&self) -> Result<SttSession, ServiceError> {
        // 64 frames of 20 ms: the pipeline may run 1.3 s ahead before it waits.
        let (input_tx, input_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(16);
        // Utterances queue here so that a long transcription never stalls the audio input.
        let (utterance_tx, utterance_rx) = mpsc::channel(4);
        tokio::spawn(collect_utterances(input_rx, utterance_tx));
        tokio::spawn(transcribe_utterances(
            Arc::clone(&self.model),
            Arc::clone(&self.transcription_slots),
            utterance_rx,
            events_tx,
        ));
        Ok(SttSession {
            input: input_tx,
            events: events_rx,
        })
    }
}

/// Cuts the input stream into utterances; ends when the input is dropped.
async fn collect_utterances(
    mut input: mpsc::Receiver<SttInput>,
    utterances: mpsc::Sender<Vec<i16>>,
) {
    let mut pre_roll: VecDeque<i16> = VecDeque::with_capacity(PRE_ROLL_SAMPLES);
    let mut utterance: Option<Vec<i16>> = None;
    // Whether the current turn already had a 30 s stretch transcribed (then an empty rest
    // needs no final of its own).
    let mut flushed = false;
    while let Some(message) = input.recv().await {
        match message {
            SttInput::SpeechStarted => {
                if utterance.is_none() {
                    utterance = Some(pre_roll.drain(..).collect());
                }
            }
            SttInput::Audio(samples) => match utterance.as_mut() {
                Some(buffer) => {
                    buffer.extend_from_slice(&samples);
                    if buffer.len() >= MAX_UTTERANCE_SAMPLES {
                        let full = std::mem::take(buffer);
                        flushed = true;
                        if utterances.send(full).await.is_err() {
                            return;
                        }
                    }
                }
                None => {
                    pre_roll.extend(samples);
                    let excess = pre_roll.len().saturating_sub(PRE_ROLL_SAMPLES);
                    pre_roll.drain(..excess);
                }
            },
            SttInput::SpeechEnded => {
                if let Some(done) = utterance.take() {
                    let already_reported = std::mem::take(&mut flushed) && done.is_empty();
                    if !already_reported && utterances.send(done).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Transcribes utterances in order and reports each as a final transcript.
async fn transcribe_utterances(
    model: Arc<WhisperModel>,
    slots: Arc<Semaphore>,
    mut utterances: mpsc::Receiver<Vec<i16>>,
    events: mpsc::Sender<SttEvent>,
) {
    while let Some(samples) = utterances.recv().await {
        let event = if samples.len() < MIN_UTTERANCE_SAMPLES {
            SttEvent::Final {
                text: String::new(),
            }
        } else {
            match transcribe_shared(&model, &slots, samples).await {
                Ok(transcript) => SttEvent::Final {
                    text: transcript.text,
                },
                Err(error) => SttEvent::Error(error),
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

//! The offline counselor's voice: a Piper VITS model (`en_US-joe-medium`, 22 050 Hz mono) run
//! by onnxruntime, fed espeak-ng phonemes.
//!
//! onnxruntime is a shared library shipped with the models and loaded at run time from the
//! path we are given. A sentence is spoken in pieces cut at clause boundaries so the first
//! audio is ready after the first clause, not after the whole sentence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent::audio::AudioChunk;
use agent::services::{BoxStream, ServiceError, TextToSpeech};
use async_trait::async_trait;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use crate::phonemize::{phonemize, Clause};

const SERVICE: &str = "piper";

/// The parts of a Piper voice's `.onnx.json` that synthesis uses.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    pub espeak: EspeakConfig,
    pub inference: InferenceConfig,
    /// Each phoneme (one Unicode scalar) → its model input id(s).
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    pub phoneme_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

/// VITS sampling knobs as the voice was tuned.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct InferenceConfig {
    pub noise_scale: f32,
    /// Above 1 speaks slower.
    pub length_scale: f32,
    pub noise_w: f32,
}

const PAD: &str = "_";
const BOS: &str = "^";
const EOS: &str = "$";

impl VoiceConfig {
    pub fn from_json(json: &str) -> Result<Self, String> {
        let config: VoiceConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if let Some(kind) = config.phoneme_type.as_deref() {
            if kind != "espeak" {
                return Err(format!(
                    "phoneme_type {kind:?} is not supported; only espeak voices are"
                ));
            }
        }
        for symbol in [PAD, BOS, EOS] {
            if config
                .phoneme_id_map
                .get(symbol)
                .is_none_or(|ids| ids.is_empty())
            {
                return Err(format!("phoneme_id_map lacks the {symbol:?} symbol"));
            }
        }
        if config.audio.sample_rate == 0 {
            return Err("audio.sample_rate must be positive".into());
        }
        Ok(config)
    }

    /// Model input ids for a phoneme string, as Piper builds them: start marker, then every
    /// phoneme followed by a pad, then the end marker. Phonemes the voice does not know are
    /// skipped.
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let map = &self.phoneme_id_map;
        let pad = &map[PAD];
        let mut ids = Vec::with_capacity(phonemes.chars().count() * 2 + 3);
        ids.extend(&map[BOS]);
        ids.extend(pad);
        let mut buffer = [0u8; 4];
        for phoneme in phonemes.chars() {
            if let Some(phoneme_ids) = map.get(&*phoneme.encode_utf8(&mut buffer)) {
                ids.extend(phoneme_ids);
                ids.extend(pad);
            }
        }
        ids.extend(&map[EOS]);
        ids
    }
}

/// How the voice runs.
#[derive(Debug, Clone)]
pub struct PiperConfig {
    /// onnxruntime intra-op threads per synthesis. One keeps a two-core machine responsive.
    pub threads: usize,
    /// Syntheses at the same time (one model session each); further callers wait.
    pub max_concurrent: usize,
    /// How long a caller waits for a turn before getting an error instead.
    pub queue_timeout: Duration,
    /// A sentence is cut after a clause once the piece so far has this many phonemes.
    pub min_piece_phonemes: usize,
}

impl Default for PiperConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_secs(20),
            min_piece_phonemes: 24,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PiperLoadError {
    #[error("cannot load onnxruntime from {}: {reason}", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot read the voice config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("cannot load the voice model {}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
}

/// The one onnxruntime environment a process may have; the first caller's library wins.
static ONNX_ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
static ONNX_ENVIRONMENT_INIT: Mutex<()> = Mutex::new(());

/// Loads onnxruntime from `dylib` (once per process) and returns its environment. Everything
/// in this process that runs ONNX models must get its environment here.
pub fn onnx_environment(dylib: &Path) -> Result<ort::environment::Environment, PiperLoadError> {
    if let Some(environment) = ONNX_ENVIRONMENT.get() {
        return Ok(environment.clone());
    }
    let _init = ONNX_ENVIRONMENT_INIT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(environment) = ONNX_ENVIRONMENT.get() {
        return Ok(environment.clone());
    }
    let runtime_error = |reason: String| PiperLoadError::Runtime {
        path: dylib.to_path_buf(),
        reason,
    };
    if !dylib.is_file() {
        return Err(runtime_error("no such file".into()));
    }
    let environment = ort::init_from(dylib)
        .map_err(|e| runtime_error(e.to_string()))?
        .with_name("counsel")
        .build()
        .map_err(|e| runtime_error(e.to_string()))?;
    Ok(ONNX_ENVIRONMENT.get_or_init(|| environment).clone())
}

/// The loaded voice. Cheap to share: wrap it in an `Arc`.
pub struct PiperVoice {
    config: Arc<VoiceConfig>,
    settings: PiperConfig,
    /// One session per concurrent synthesis (`Session::run` needs exclusive access).
    sessions: Arc<Vec<Mutex<Session>>>,
    turns: Arc<Semaphore>,
}

impl PiperVoice {
    pub fn load(
        model_path: &Path,
        config_path: &Path,
        onnxruntime_dylib: &Path,
        settings: PiperConfig,
    ) -> Result<Self, PiperLoadError> {
        let config_error = |reason: String| PiperLoadError::Config {
            path: config_path.to_path_buf(),
            reason,
        };
        let json = std::fs::read_to_string(config_path).map_err(|e| config_error(e.to_string()))?;
        let config = VoiceConfig::from_json(&json).map_err(config_error)?;
        let environment = onnx_environment(onnxruntime_dylib)?;
        let model_error = |reason: String| PiperLoadError::Model {
            path: model_path.to_path_buf(),
            reason,
        };
        if !model_path.is_file() {
            return Err(model_error("no such file".into()));
        }
        let sessions = (0..settings.max_concurrent.max(1))
            .map(|_| {
                Session::builder(&environment)
                    .and_then(|b| {
                        b.with_optimization_level(GraphOptimizationLevel::Level3)
                            .map_err(Into::into)
                    })
                    .and_then(|b| {
                        b.with_intra_threads(settings.threads.max(1))
                            .map_err(Into::into)
                    })
                    .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                    .and_then(|mut b| b.commit_from_file(model_path))
                    .map(Mutex::new)
                    .map_err(|e| model_error(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let turns = Arc::new(Semaphore::new(sessions.len()));
        Ok(Self {
            config: Arc::new(config),
            settings,
            sessions: Arc::new(sessions),
            turns,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// Cuts text into the pieces synthesised one at a time: sentence ends always cut, and a
    /// clause ends a piece once the piece is long enough to be worth a model call.
    pub fn pieces(&self, text: &str) -> Result<Vec<String>, ServiceError> {
        let clauses =
            phonemize(text, &self.config.espeak.voice).map_err(|e| ServiceError::Unavailable {
                service: SERVICE,
                reason: e.to_string(),
            })?;
        Ok(group_clauses(&clauses, self.settings.min_piece_phonemes))
    }

    /// Synthesises one phoneme string on the calling thread.
    pub fn synthesize_phonemes(&self, phonemes: &str) -> Result<AudioChunk, ServiceError> {
        synthesize(&mut lock_a_session(&self.sessions), &self.config, phonemes)
    }
}

/// A free session if there is one, else waits for the first. Callers holding a semaphore
/// permit normally find one free; direct blocking callers may have to wait.
fn lock_a_session(sessions: &[Mutex<Session>]) -> std::sync::MutexGuard<'_, Session> {
    sessions
        .iter()
        .find_map(|session| session.try_lock().ok())
        .unwrap_or_else(|| {
            sessions[0]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        })
}

fn group_clauses(clauses: &[Clause], min_piece_phonemes: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for clause in clauses {
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&clause.piper_phonemes());
        if clause.ends_sentence() || current.chars().count() >= min_piece_phonemes {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn inference_error(error: ort::Error) -> ServiceError {
    ServiceError::Unavailable {
        service: SERVICE,
        reason: format!("voice model failure: {error}"),
    }
}

fn synthesize(
    session: &mut Session,
    config: &VoiceConfig,
    phonemes: &str,
) -> Result<AudioChunk, ServiceError> {
    let ids = config.phoneme_ids(phonemes);
    let length = ids.len() as i64;
    let scales = vec![
        config.inference.noise_scale,
        config.inference.length_scale,
        config.inference.noise_w,
    ];
    let input = Tensor::from_array(([1usize, ids.len()], ids)).map_err(inference_error)?;
    let input_lengths = Tensor::from_array(([1usize], vec![length])).map_err(inference_error)?;
    let scales = Tensor::from_array(([3usize], scales)).map_err(inference_error)?;
    let outputs = session
        .run(ort::inputs!["input" => input, "input_lengths" => input_lengths, "scales" => scales])
        .map_err(inference_error)?;
    let (_, audio) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(inference_error)?;
    if audio.iter().any(|sample| !sample.is_finite()) {
        return Err(ServiceError::Protocol {
            service: SERVICE,
            reason: "the voice model produced non-finite samples".into(),
        });
    }
    let samples = audio
        .iter()
        .map(|&sample| (sample.clamp(-1.0, 1.0) * i16::MAX as f32) as i16)
        .collect();
    Ok(AudioChunk::new(samples, config.audio.sample_rate))
}

#[async_trait]
impl TextToSpeech for PiperVoice {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn speak(
        &self,
        sentence: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        if sentence.contains('\0') {
            return Err(ServiceError::Rejected {
                service: SERVICE,
                reason: "text contains a NUL character".into(),
            });
        }
        let permit = tokio::time::timeout(
            self.settings.queue_timeout,
            self.turns.clone().acquire_owned(),
        )
        .await
        .map_err(|_| ServiceError::Timeout {
            service: SERVICE,
            after_ms: domain::millis(self.settings.queue_timeout),
        })?
        .map_err(|_| ServiceError::Closed { service: SERVICE })?;
        let text = sentence.to_string();
        let config = self.config.clone();
        let sessions = self.sessions.clone();
        let min_piece_phonemes = self.settings.min_piece_phonemes;
        let (sender, mut receiver) = mpsc::channel::<Result<AudioChunk, ServiceError>>(4);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pieces = match phonemize(&text, &config.espeak.voice) {
                Ok(clauses) => group_clauses(&clauses, min_piece_phonemes),
                Err(error) => {
                    let _ = sender.blocking_send(Err(ServiceError::Unavailable {
                        service: SERVICE,
                        reason: error.to_string(),
                    }));
                    return;
                }
            };
            let mut session = lock_a_session(&sessions);
            for piece in pieces {
                let result = synthesize(&mut session, &config, &piece);
                let failed = result.is_err();
                // A failed send means the stream was dropped: stop synthesising.
                if sender.blocking_send(result).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VoiceConfig {
        VoiceConfig::from_json(
            r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},
                "inference":{"noise_scale":0.667,"length_scale":1,"noise_w":0.8},
                "phoneme_type":"espeak",
                "phoneme_id_map":{"_":[0],"^":[1],"$":[2]," ":[3],",":[8],"h":[20],"i":[21]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn phoneme_ids_are_padded_and_framed_like_piper() {
        assert_eq!(
            config().phoneme_ids("hi, h"),
            [1, 0, 20, 0, 21, 0, 8, 0, 3, 0, 20, 0, 2]
        );
    }

    #[test]
    fn unknown_phonemes_are_skipped() {
        assert_eq!(config().phoneme_ids("hXi"), [1, 0, 20, 0, 21, 0, 2]);
    }

    #[test]
    fn config_without_markers_is_rejected() {
        let error = VoiceConfig::from_json(
            r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},
                "inference":{"noise_scale":0.667,"length_scale":1,"noise_w":0.8},
                "phoneme_id_map":{"_":[0],"^":[1]}}"#,
        )
        .unwrap_err();
        assert!(error.contains("\"$\""), "{error}");
    }

    fn clause(phonemes: &str, punctuation: Option<char>) -> Clause {
        Clause {
            phonemes: phonemes.into(),
            punctuation,
        }
    }

    #[test]
    fn short_clauses_join_until_long_enough_and_sentences_always_cut() {
        let clauses = [
            clause("aa", Some(',')),
            clause("bbbbbbbbbb", Some(',')),
            clause("cc", Some(',')),
            clause("dd", Some('.')),
            clause("ee", None),
        ];
        assert_eq!(
            group_clauses(&clauses, 10),
            ["aa, bbbbbbbbbb,", "cc, dd.", "ee"]
        );
    }
}

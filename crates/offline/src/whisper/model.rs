//! Whisper tiny.en from CTranslate2 weights, run by candle-transformers' Whisper, with greedy
//! decoding.
//!
//! Speed: Whisper was trained on 30 s windows, but the encoder's cost grows with its input, so
//! the mel frames (and with them the encoder's positional embedding, which candle narrows to
//! the input) are cut to the audio's length plus a margin, as whisper.cpp's `audio_ctx` does.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{model::Whisper, Config};
use std::collections::HashMap;

use super::ct2::{Ct2Error, Ct2Model};
use super::mel::{LogMel, HOP, N_MELS, SAMPLE_RATE};
use super::vocabulary::Vocabulary;

/// Whisper's window: 30 s, 3000 mel frames, 1500 encoder positions.
const WINDOW_FRAMES: usize = 3000;
/// Silence the encoder sees after the audio. Too little and tiny.en stops recognising the
/// last word; a second costs little.
const MARGIN_FRAMES: usize = 100;
/// No-speech detection, as Whisper does it: a likely `<|nocaptions|>` and an unsure transcript.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
/// Above this, `<|nocaptions|>` alone is trusted (tiny.en says "you" to pure silence with a
/// middling log-probability).
const CERTAIN_NO_SPEECH: f32 = 0.9;

#[cfg(test)]
mod tests {
    use super::repeated_tail;

    #[test]
    fn a_repeated_tail_block_is_found() {
        assert_eq!(repeated_tail(&[1, 2, 3, 4, 5, 1, 2, 3, 4, 5]), Some(5));
        assert_eq!(repeated_tail(&[9, 1, 2, 3, 1, 2, 3]), Some(3));
        assert_eq!(repeated_tail(&[1, 2, 3, 4, 1, 2, 3]), None);
        assert_eq!(
            repeated_tail(&[7, 7, 7, 7]),
            None,
            "short repeats are ordinary speech"
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error("whisper model: {0}")]
    Weights(#[from] Ct2Error),
    #[error("whisper model file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("whisper inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}

/// A transcript of one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// Probability that the audio held no speech at all.
    pub no_speech_probability: f32,
    /// Mean log-probability of the chosen tokens.
    pub average_logprob: f32,
}

struct SpecialTokens {
    end_of_text: u32,
    start_of_transcript: u32,
    no_timestamps: u32,
    no_speech: u32,
}

/// The loaded model. Cheap to share: `transcribe` takes `&self` and clones the weights' handles.
pub struct WhisperModel {
    model: Whisper,
    vocabulary: Vocabulary,
    special: SpecialTokens,
    /// Tokens never to emit (non-speech symbols, and all special tokens above end-of-text).
    suppressed: Vec<u32>,
    /// Tokens not to start with (a bare space, end-of-text).
    suppressed_at_start: Vec<u32>,
    log_mel: LogMel,
    device: Device,
}

#[derive(serde::Deserialize)]
struct Ct2WhisperConfig {
    suppress_ids: Vec<u32>,
    suppress_ids_begin: Vec<u32>,
}

impl WhisperModel {
    /// Loads `model.bin`, `config.json` and `vocabulary.txt` from a CTranslate2 Whisper directory.
    pub fn load(dir: &Path) -> Result<Self, WhisperError> {
        let device = Device::Cpu;
        let ct2 = Ct2Model::read(&dir.join("model.bin"))?;
        if ct2.spec_name != "WhisperSpec" {
            return Err(WhisperError::File {
                path: dir.join("model.bin").display().to_string(),
                reason: format!("holds a {} model, not Whisper", ct2.spec_name),
            });
        }
        let (weights, config) = candle_weights(&ct2, &device)?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = Whisper::load(&vb, config)?;

        let vocab_path = dir.join("vocabulary.txt");
        let vocabulary = Vocabulary::read(&vocab_path).map_err(|e| WhisperError::File {
            path: vocab_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let special_id = |token: &str| {
            vocabulary.id(token).ok_or_else(|| WhisperError::File {
                path: vocab_path.display().to_string(),
                reason: format!("lacks the special token {token}"),
            })
        };
        let special = SpecialTokens {
            end_of_text: special_id("<|endoftext|>")?,
            start_of_transcript: special_id("<|startoftranscript|>")?,
            no_timestamps: special_id("<|notimestamps|>")?,
            no_speech: special_id("<|nocaptions|>").or_else(|_| special_id("<|nospeech|>"))?,
        };

        let config_path = dir.join("config.json");
        let settings: Ct2WhisperConfig = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            .map_err(|reason| WhisperError::File {
                path: config_path.display().to_string(),
                reason,
            })?;
        let mut suppressed = settings.suppress_ids;
        suppressed.extend(special.end_of_text + 1..vocabulary.len() as u32);
        Ok(Self {
            model,
            vocabulary,
            special,
            suppressed,
            suppressed_at_start: settings.suppress_ids_begin,
            log_mel: LogMel::new(&device)?,
            device,
        })
    }

    /// Transcribes 16 kHz mono audio in [-1, 1]. Audio longer than 30 s is transcribed in
    /// consecutive 30 s windows.
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, WhisperError> {
        let window_samples = WINDOW_FRAMES * HOP;
        let mut parts = Vec::new();
        for window in samples.chunks(window_samples) {
            parts.push(self.transcribe_window(window)?);
        }
        Ok(match parts.len() {
            0 => Transcript {
                text: String::new(),
                no_speech_probability: 1.0,
                average_logprob: 0.0,
            },
            1 => parts.pop().expect("one part"),
            n => Transcript {
                text: parts
                    .iter()
                    .map(|p| p.text.as_str())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
                no_speech_probability: parts
                    .iter()
                    .map(|p| p.no_speech_probability)
                    .fold(1.0, f32::min),
                average_logprob: parts.iter().map(|p| p.average_logprob).sum::<f32>() / n as f32,
            },
        })
    }

    fn transcribe_window(&self, samples: &[f32]) -> Result<Transcript, WhisperError> {
        let audio_frames = samples.len().div_ceil(HOP);
        // Even, because the encoder's second convolution halves the frame count.
        let n_frames = (audio_frames + MARGIN_FRAMES)
            .min(WINDOW_FRAMES)
            .next_multiple_of(2);
        let mel = self.log_mel.compute(samples, n_frames)?;
        debug_assert_eq!(mel.dims(), &[1, N_MELS, n_frames]);

        let mut model = self.model.clone();
        let audio_features = model.encoder.forward(&mel, true)?;

        // About 3 tokens a word and at most ~4 words a second, with room to spare.
        let seconds = samples.len() as f32 / SAMPLE_RATE as f32;
        let max_tokens =
            ((seconds * 16.0) as usize + 16).min(model.config.max_target_positions / 2);
        let mut tokens = vec![self.special.start_of_transcript, self.special.no_timestamps];
        let prompt_len = tokens.len();
        let mut no_speech_probability = 0.0;
        let mut logprob_sum = 0.0;
        for step in 0..max_tokens {
            let input = Tensor::new(tokens.as_slice(), &self.device)?.unsqueeze(0)?;
            let hidden = model.decoder.forward(&input, &audio_features, step == 0)?;
            if step == 0 {
                let at_start = model
                    .decoder
                    .final_linear(&hidden.i((.., 0..1))?)?
                    .i((0, 0))?;
                let probs = candle_nn::ops::softmax(&at_start, D::Minus1)?;
                no_speech_probability = probs
                    .i(self.special.no_speech as usize)?
                    .to_scalar::<f32>()?;
            }
            let last = hidden.i((.., tokens.len() - 1..))?;
            let mut logits = model
                .decoder
                .final_linear(&last)?
                .i((0, 0))?
                .to_vec1::<f32>()?;
            for &id in &self.suppressed {
                logits[id as usize] = f32::NEG_INFINITY;
            }
            if step == 0 {
                for &id in &self.suppressed_at_start {
                    logits[id as usize] = f32::NEG_INFINITY;
                }
            }
            let (next, logprob) = argmax_with_logprob(&logits);
            logprob_sum += logprob;
            if next == self.special.end_of_text {
                break;
            }
            tokens.push(next);
            if let Some(repeat) = repeated_tail(&tokens[prompt_len..]) {
                tokens.truncate(tokens.len() - repeat);
                break;
            }
        }
        let generated = &tokens[prompt_len..];
        let average_logprob = logprob_sum / (generated.len() + 1) as f32;
        let no_speech = no_speech_probability > CERTAIN_NO_SPEECH
            || (no_speech_probability > NO_SPEECH_THRESHOLD && average_logprob < LOGPROB_THRESHOLD);
        let text = if no_speech {
            String::new()
        } else {
            self.vocabulary.decode(generated).trim().to_string()
        };
        Ok(Transcript {
            text,
            no_speech_probability,
            average_logprob,
        })
    }
}

/// The length of a block of at least 3 tokens that the tail of `generated` repeats right after
/// itself. With its encoder input cut short, tiny.en sometimes transcribes the utterance and
/// then starts over instead of ending; the second copy is dropped. (A genuinely repeated phrase
/// of 3+ tokens is lost too, a price worth paying against a runaway transcript.)
fn repeated_tail(generated: &[u32]) -> Option<usize> {
    let n = generated.len();
    (3..=n / 2).find(|&k| generated[n - k..] == generated[n - 2 * k..n - k])
}

fn argmax_with_logprob(logits: &[f32]) -> (u32, f32) {
    let (best, &max) = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("non-empty vocabulary");
    let log_sum_exp = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    (best as u32, max - log_sum_exp)
}

/// Renames CTranslate2's Whisper variables to the names candle-transformers' Whisper loads,
/// splitting the fused projections (self-attention QKV; cross-attention KV). Whisper's key
/// projections have no bias (CTranslate2 stores zeros there), so those bias slices are dropped.
fn candle_weights(
    ct2: &Ct2Model,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, Config), WhisperError> {
    let mut out = HashMap::new();
    let get = |name: &str| ct2.tensor(name, device);
    let layer_count = |prefix: &str| {
        (0..)
            .take_while(|i| {
                ct2.variable(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
                    .is_ok()
            })
            .count()
    };
    let copy =
        |out: &mut HashMap<String, Tensor>, from: &str, to: &str| -> Result<(), WhisperError> {
            out.insert(to.to_string(), get(from)?);
            Ok(())
        };
    let copy_linear =
        |out: &mut HashMap<String, Tensor>, from: &str, to: &str| -> Result<(), WhisperError> {
            out.insert(format!("{to}.weight"), get(&format!("{from}/weight"))?);
            out.insert(format!("{to}.bias"), get(&format!("{from}/bias"))?);
            Ok(())
        };
    let copy_norm =
        |out: &mut HashMap<String, Tensor>, from: &str, to: &str| -> Result<(), WhisperError> {
            out.insert(format!("{to}.weight"), get(&format!("{from}/gamma"))?);
            out.insert(format!("{to}.bias"), get(&format!("{from}/beta"))?);
            Ok(())
        };
    // Splits a fused projection into equal parts along the output dimension.
    let split_linear =
        |out: &mut HashMap<String, Tensor>, from: &str, to: &[&str]| -> Result<(), WhisperError> {
            let weight = get(&format!("{from}/weight"))?;
            let bias = get(&format!("{from}/bias"))?;
            let part = weight.dim(0)? / to.len();
            for (i, name) in to.iter().enumerate() {
                out.insert(
                    format!("{name}.weight"),
                    weight.narrow(0, i * part, part)?.contiguous()?,
                );
                if !name.ends_with("k_proj") {
                    out.insert(
                        format!("{name}.bias"),
                        bias.narrow(0, i * part, part)?.contiguous()?,
                    );
                }
            }
            Ok(())
        };

    let encoder_layers = layer_count("encoder");
    let decoder_layers = layer_count("decoder");
    for side in ["encoder", "decoder"] {
        let layers = if side == "encoder" {
            encoder_layers
        } else {
            decoder_layers
        };
        for i in 0..layers {
            let (from, to) = (
                format!("{side}/layer_{i}"),
                format!("model.{side}.layers.{i}"),
            );
            copy_norm(
                &mut out,
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            split_linear(
                &mut out,
                &format!("{from}/self_attention/linear_0"),
                &[
                    &format!("{to}.self_attn.q_proj"),
                    &format!("{to}.self_attn.k_proj"),
                    &format!("{to}.self_attn.v_proj"),
                ],
            )?;
            copy_linear(
                &mut out,
                &format!("{from}/self_attention/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            if side == "decoder" {
                copy_norm(
                    &mut out,
                    &format!("{from}/attention/layer_norm"),
                    &format!("{to}.encoder_attn_layer_norm"),
                )?;
                copy_linear(
                    &mut out,
                    &format!("{from}/attention/linear_0"),
                    &format!("{to}.encoder_attn.q_proj"),
                )?;
                split_linear(
                    &mut out,
                    &format!("{from}/attention/linear_1"),
                    &[
                        &format!("{to}.encoder_attn.k_proj"),
                        &format!("{to}.encoder_attn.v_proj"),
                    ],
                )?;
                copy_linear(
                    &mut out,
                    &format!("{from}/attention/linear_2"),
                    &format!("{to}.encoder_attn.out_proj"),
                )?;
            }
            copy_norm(
                &mut out,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
            copy_linear(
                &mut out,
                &format!("{from}/ffn/linear_0"),
                &format!("{to}.fc1"),
            )?;
            copy_linear(
                &mut out,
                &format!("{from}/ffn/linear_1"),
                &format!("{to}.fc2"),
            )?;
        }
        copy_norm(
            &mut out,
            &format!("{side}/layer_norm"),
            &format!("model.{side}.layer_norm"),
        )?;
    }
    copy_linear(&mut out, "encoder/conv1", "model.encoder.conv1")?;
    copy_linear(&mut out, "encoder/conv2", "model.encoder.conv2")?;
    copy(
        &mut out,
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    copy(
        &mut out,
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;

    let embeddings = ct2.variable("decoder/embeddings/weight")?;
    let conv1 = ct2.variable("encoder/conv1/weight")?;
    let positions = |name: &str| ct2.variable(name).map(|v| v.shape[0]);
    let config = Config {
        num_mel_bins: conv1.shape[1],
        max_source_positions: positions("encoder/position_encodings/encodings")?,
        d_model: embeddings.shape[1],
        encoder_attention_heads: ct2.integer("encoder/num_heads")? as usize,
        encoder_layers,
        vocab_size: embeddings.shape[0],
        max_target_positions: positions("decoder/position_encodings/encodings")?,
        decoder_attention_heads: ct2.integer("decoder/num_heads")? as usize,
        decoder_layers,
        suppress_tokens: Vec::new(),
    };
    Ok((out, config))
}

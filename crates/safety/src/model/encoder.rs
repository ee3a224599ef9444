//! The sentence encoder: all-MiniLM-L6-v2 (a 6-layer BERT), mean-pooled over the tokens and
//! L2-normalised, exactly as the sentence-transformers model it ships as defines. Its files are
//! read with candle; its forward pass is `bert`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::Config;

use super::adapters::Adapters;
use super::bert::Bert;
use super::wordpiece::WordPiece;

/// Size of one sentence embedding.
pub const DIMENSIONS: usize = 384;
/// Tokens per sentence, `[CLS]` and `[SEP]` included. The model was trained on at most 256;
/// utterances are split into shorter windows long before this matters.
const MAX_TOKENS: usize = 256;

/// The files the encoder is made of, as `counsel models install` lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderFiles {
    pub weights: PathBuf,
    pub config: PathBuf,
    pub vocab: PathBuf,
}

impl EncoderFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            weights: dir.join("model.safetensors"),
            config: dir.join("config.json"),
            vocab: dir.join("vocab.txt"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a BERT configuration", path.display())]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is not a usable vocabulary", path.display())]
    Vocab {
        path: PathBuf,
        source: super::wordpiece::VocabError,
    },
    #[error("the sentence encoder's weights are unusable: {0}")]
    Weights(String),
    #[error("the sentence encoder failed: {0}")]
    Inference(String),
}

pub struct SentenceEncoder {
    bert: Bert,
    tokenizer: WordPiece,
}

/// The encoder's files, read and checked: its configuration, vocabulary and weights.
pub struct EncoderParts {
    pub config: Config,
    tokenizer: WordPiece,
    weights: HashMap<String, Tensor>,
}

impl EncoderParts {
    pub fn read(files: &EncoderFiles) -> Result<Self, EncoderError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| EncoderError::Read {
                path: path.clone(),
                source,
            })
        };
        let config: Config =
            serde_json::from_str(&read(&files.config)?).map_err(|source| EncoderError::Config {
                path: files.config.clone(),
                source,
            })?;
        if config.hidden_size != DIMENSIONS {
            return Err(EncoderError::Weights(format!(
                "hidden size {} where {DIMENSIONS} is expected",
                config.hidden_size
            )));
        }
        let tokenizer =
            WordPiece::from_vocab(&read(&files.vocab)?).map_err(|source| EncoderError::Vocab {
                path: files.vocab.clone(),
                source,
            })?;
        let bytes = std::fs::read(&files.weights).map_err(|source| EncoderError::Read {
            path: files.weights.clone(),
            source,
        })?;
        let weights = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| EncoderError::Weights(e.to_string()))?
            .into_iter()
            // Some exports name every weight under `bert.`; both layouts read the same.
            .map(|(name, tensor)| {
                let name = name
                    .strip_prefix("bert.")
                    .map(str::to_owned)
                    .unwrap_or(name);
                tensor.to_dtype(DType::F32).map(|t| (name, t))
            })
            .collect::<candle_core::Result<HashMap<_, _>>>()
            .map_err(|e| EncoderError::Weights(e.to_string()))?;
        Ok(Self {
            config,
            tokenizer,
            weights,
        })
    }

    /// One of the encoder's weights, by its name in the safetensors file.
    pub fn weight(&self, name: &str) -> candle_core::Result<Tensor> {
        self.weights
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("the encoder has no weight {name}")))
    }

    /// The token ids and attention mask of `texts` as one padded batch.
    pub fn batch_inputs(&self, texts: &[&str]) -> candle_core::Result<(Tensor, Tensor)> {
        batch_inputs(&self.tokenizer, texts, &Device::Cpu)
    }
}

fn batch_inputs(
    tokenizer: &WordPiece,
    texts: &[&str],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let encoded: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.encode(t, MAX_TOKENS))
        .collect();
    let width = encoded.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(texts.len() * width);
    let mut mask = Vec::with_capacity(texts.len() * width);
    for sentence in &encoded {
        ids.extend(sentence.iter().copied());
        ids.extend(std::iter::repeat_n(0, width - sentence.len()));
        mask.extend(std::iter::repeat_n(1u32, sentence.len()));
        mask.extend(std::iter::repeat_n(0u32, width - sentence.len()));
    }
    let shape = (texts.len(), width);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

impl SentenceEncoder {
    /// The plain encoder, as its files define it.
    pub fn load(files: &EncoderFiles) -> Result<Self, EncoderError> {
        Self::new(EncoderParts::read(files)?, None)
    }

    /// The encoder with `adapters` merged into its weights (or the plain one).
    pub fn new(parts: EncoderParts, adapters: Option<&Adapters>) -> Result<Self, EncoderError> {
        let EncoderParts {
            config,
            tokenizer,
            mut weights,
        } = parts;
        if let Some(adapters) = adapters {
            adapters
                .merge_into(&mut weights)
                .map_err(|e| EncoderError::Weights(e.to_string()))?;
        }
        let bert = Bert::new(&config, weights).map_err(|e| EncoderError::Weights(e.to_string()))?;
        Ok(Self { bert, tokenizer })
    }

    /// One unit-length embedding per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<[f32; DIMENSIONS]>, EncoderError> {
        let sentences: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, MAX_TOKENS))
            .collect();
        self.bert.embed(&sentences).map_err(EncoderError::Inference)
    }
}

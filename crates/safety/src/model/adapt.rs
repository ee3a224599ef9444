//! Learning the encoder's [`Adapters`] from the corpus: low-rank corrections to the top layers,
//! trained together with a throwaway linear classifier on the encoder's unit embeddings, so that
//! sentences at the same risk level move closer together and the levels apart. The shipped head
//! is then fitted, as always, to what the adapted encoder makes of the corpus.
//!
//! Only the top layers change, so the layers below are run once per sentence and their output
//! kept; each training step runs the top layers forward and back. The run is deterministic for
//! one machine: fixed initial values from a seeded generator, a fixed batch order.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use domain::CrisisLevel;

use super::adapters::{Adapters, LowRank};
use super::encoder::{EncoderParts, DIMENSIONS};
use super::head::LEVELS;
use super::random::SplitMix64;
use crate::corpus::Example;
use crate::normalize::canonical_text;

/// How the adapters are learned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptSettings {
    /// How many of the encoder's top layers are adapted.
    pub layers: usize,
    pub rank: usize,
    /// The corrections are multiplied by `alpha / rank`.
    pub alpha: f32,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl AdaptSettings {
    pub const CHOSEN: AdaptSettings = AdaptSettings {
        layers: 2,
        rank: 8,
        alpha: 16.0,
        epochs: 4,
        batch: 32,
        learning_rate: 1e-3,
        weight_decay: 1e-2,
        seed: 1,
    };
}

/// The weight matrices of one BERT layer that get a correction, by their names in the layer.
const ADAPTED: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// Learns adapters from the examples `keep` accepts (their whole utterances; conversations are
/// left to the head, which reads a turn in the light of the previous one). `progress` hears
/// each epoch's mean loss.
pub fn learn(
    parts: &EncoderParts,
    settings: &AdaptSettings,
    examples: &[Example<'_>],
    keep: impl Fn(usize) -> bool,
    corpus_fingerprint: [u8; 32],
    mut progress: impl FnMut(usize, f64),
) -> candle_core::Result<Adapters> {
    let bert = Bert::new(parts, settings)?;
    let chosen: Vec<(String, usize)> = examples
        .iter()
        .enumerate()
        .filter(|(i, e)| keep(*i) && e.earlier.is_empty())
        .map(|(_, e)| (canonical_text(e.text), class_of(e.level)))
        .collect();
    let class_weights = class_weights(chosen.iter().map(|(_, c)| *c));
    // Length-sorted batches, their lower layers computed once.
    let mut order: Vec<usize> = (0..chosen.len()).collect();
    order.sort_by_key(|&i| (chosen[i].0.len(), i));
    let mut batches = Vec::new();
    for chunk in order.chunks(settings.batch) {
        let texts: Vec<&str> = chunk.iter().map(|&i| chosen[i].0.as_str()).collect();
        let (ids, mask) = parts.batch_inputs(&texts)?;
        let lower = bert.lower(&ids, &mask)?;
        let mut target = vec![0f32; chunk.len() * LEVELS.len()];
        for (row, &i) in chunk.iter().enumerate() {
            let class = chosen[i].1;
            target[row * LEVELS.len() + class] = class_weights[class];
        }
        let target = Tensor::from_vec(target, (chunk.len(), LEVELS.len()), &Device::Cpu)?;
        batches.push((lower, mask, target));
    }
    let classifier_weight = Var::zeros((LEVELS.len(), DIMENSIONS), DType::F32, &Device::Cpu)?;
    let classifier_bias = Var::zeros(LEVELS.len(), DType::F32, &Device::Cpu)?;
    let mut vars = bert.trainable();
    vars.push(classifier_weight.clone());
    vars.push(classifier_bias.clone());
    let mut optimizer = AdamW::new(
        vars,
        ParamsAdamW {
            lr: settings.learning_rate,
            weight_decay: settings.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut random = SplitMix64::new(settings.seed ^ 0x5eed);
    for epoch in 0..settings.epochs {
        let mut batch_order: Vec<usize> = (0..batches.len()).collect();
        random.shuffle(&mut batch_order);
        let mut total = 0.0;
        for &b in &batch_order {
            let (lower, mask, target) = &batches[b];
            let embedding = bert.upper(lower, mask)?;
            let logits = embedding
                .matmul(&classifier_weight.as_tensor().t()?)?
                .broadcast_add(classifier_bias.as_tensor())?;
            let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let rows = target.dim(0)? as f64;
            let loss = ((log_p * target)?.sum_all()? * (-1.0 / rows))?;
            total += f64::from(loss.to_scalar::<f32>()?);
            optimizer.backward_step(&loss)?;
        }
        progress(epoch + 1, total / batches.len().max(1) as f64);
    }
    bert.adapters(settings, corpus_fingerprint)
}

fn class_of(level: CrisisLevel) -> usize {
    LEVELS
        .iter()
        .position(|l| *l == level)
        .expect("three levels")
}

/// Inverse-frequency class weights, as the head uses.
fn class_weights(classes: impl Iterator<Item = usize>) -> [f32; 3] {
    let mut counts = [0usize; 3];
    for c in classes {
        counts[c] += 1;
    }
    let total: usize = counts.iter().sum();
    counts.map(|c| {
        if c == 0 {
            0.0
        } else {
            total as f32 / (3.0 * c as f32)
        }
    })
}

/// A weight matrix with its bias and, in the adapted layers, a trainable correction.
struct Dense {
    name: String,
    weight_t: Tensor,
    bias: Tensor,
    correction: Option<(Var, Var)>,
    scale: f64,
}

impl Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x
            .broadcast_matmul(&self.weight_t)?
            .broadcast_add(&self.bias)?;
        match &self.correction {
            None => Ok(y),
            Some((down, up)) => {
                let low = x
                    .broadcast_matmul(&down.as_tensor().t()?)?
                    .broadcast_matmul(&up.as_tensor().t()?)?;
                y + (low * self.scale)?
            }
        }
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    out: Dense,
    out_norm: Norm,
}

/// BERT written out with tensor operations, so gradients flow through the adapted layers. It
/// computes what candle's `BertModel` computes (a test holds the two together).
struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    /// Layers from this index up carry corrections.
    first_adapted: usize,
    heads: usize,
}

impl Bert {
    fn new(parts: &EncoderParts, settings: &AdaptSettings) -> candle_core::Result<Bert> {
        let config = &parts.config;
        let get = |name: &str| parts.weight(name);
        let eps = config.layer_norm_eps;
        let norm = |prefix: &str| -> candle_core::Result<Norm> {
            Ok(Norm {
                weight: get(&format!("{prefix}.weight"))?,
                bias: get(&format!("{prefix}.bias"))?,
                eps,
            })
        };
        let first_adapted = config.num_hidden_layers.saturating_sub(settings.layers);
        let mut random = SplitMix64::new(settings.seed);
        let scale = f64::from(settings.alpha) / settings.rank as f64;
        let mut dense = |name: String, adapted: bool| -> candle_core::Result<Dense> {
            let weight = get(&format!("{name}.weight"))?;
            let (outputs, inputs) = weight.dims2()?;
            let correction = if adapted {
                // The usual start: a random `down`, a zero `up`, so training starts from the
                // plain encoder.
                let bound = 1.0 / (inputs as f32).sqrt();
                let down: Vec<f32> = (0..settings.rank * inputs)
                    .map(|_| random.symmetric() * bound)
                    .collect();
                let down = Var::from_vec(down, (settings.rank, inputs), &Device::Cpu)?;
                let up = Var::zeros((outputs, settings.rank), DType::F32, &Device::Cpu)?;
                Some((down, up))
            } else {
                None
            };
            Ok(Dense {
                name: format!("{name}.weight"),
                weight_t: weight.t()?.contiguous()?,
                bias: get(&format!("{name}.bias"))?,
                correction,
                scale,
            })
        };
        let mut layers = Vec::new();
        for index in 0..config.num_hidden_layers {
            let adapted = index >= first_adapted;
            let p = format!("encoder.layer.{index}");
            let mut part = |n: &str| dense(format!("{p}.{n}"), adapted && ADAPTED.contains(&n));
            layers.push(Layer {
                query: part("attention.self.query")?,
                key: part("attention.self.key")?,
                value: part("attention.self.value")?,
                attention_out: part("attention.output.dense")?,
                intermediate: part("intermediate.dense")?,
                out: part("output.dense")?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word: get("embeddings.word_embeddings.weight")?,
            position: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            first_adapted,
            heads: config.num_attention_heads,
        })
    }

    /// The token states after the layers that are not adapted.
    fn lower(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, width) = ids.dims2()?;
        let words = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((batch, width, DIMENSIONS))?;
        let positions = self.position.narrow(0, 0, width)?;
        let kind = self.token_type.narrow(0, 0, 1)?;
        let x = words.broadcast_add(&positions)?.broadcast_add(&kind)?;
        let mut x = self.embedding_norm.forward(&x)?;
        let additive = additive_mask(mask)?;
        for layer in &self.layers[..self.first_adapted] {
            x = self.layer(layer, &x, &additive)?;
        }
        Ok(x)
    }

    /// The unit sentence embeddings from the lower layers' output, through the adapted layers.
    fn upper(&self, lower: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let additive = additive_mask(mask)?;
        let mut x = lower.clone();
        for layer in &self.layers[self.first_adapted..] {
            x = self.layer(layer, &x, &additive)?;
        }
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let mean = x
            .broadcast_mul(&mask)?
            .sum(1)?
            .broadcast_div(&mask.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        mean.broadcast_div(&norm)
    }

    fn layer(&self, l: &Layer, x: &Tensor, additive: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, width, hidden) = x.dims3()?;
        let head_size = hidden / self.heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, width, self.heads, head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(l.query.forward(x)?)?;
        let k = split(l.key.forward(x)?)?;
        let v = split(l.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_size as f64).sqrt())?.broadcast_add(additive)?;
        let attention = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = attention
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, width, hidden))?;
        let attended = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward(&attended)?.gelu_erf()?;
        l.out_norm.forward(&(l.out.forward(&inner)? + attended)?)
    }

    fn dense(&self) -> impl Iterator<Item = &Dense> {
        self.layers.iter().flat_map(|l| {
            [
                &l.query,
                &l.key,
                &l.value,
                &l.attention_out,
                &l.intermediate,
                &l.out,
            ]
        })
    }

    fn trainable(&self) -> Vec<Var> {
        self.dense()
            .filter_map(|d| d.correction.as_ref())
            .flat_map(|(down, up)| [down.clone(), up.clone()])
            .collect()
    }

    fn adapters(
        &self,
        settings: &AdaptSettings,
        corpus_fingerprint: [u8; 32],
    ) -> candle_core::Result<Adapters> {
        let mut matrices = Vec::new();
        for d in self.dense() {
            let Some((down, up)) = &d.correction else {
                continue;
            };
            let (outputs, inputs) = (up.dim(0)?, down.dim(1)?);
            matrices.push(LowRank {
                weight: d.name.clone(),
                outputs,
                inputs,
                down: down.as_tensor().flatten_all()?.to_vec1()?,
                up: up.as_tensor().flatten_all()?.to_vec1()?,
            });
        }
        Ok(Adapters {
            corpus_fingerprint,
            rank: settings.rank,
            scale: settings.alpha / settings.rank as f32,
            matrices,
        })
    }
}

/// 0 where a token is real, a large negative number where it is padding.
fn additive_mask(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, width) = mask.dims2()?;
    ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, width))
}

/// The layer-by-layer forward pass of an [`EncoderParts`] with no corrections, for the test that
/// holds it to candle's model.
pub fn plain_embeddings(parts: &EncoderParts, texts: &[&str]) -> candle_core::Result<Tensor> {
    let settings = AdaptSettings {
        layers: 1,
        ..AdaptSettings::CHOSEN
    };
    let bert = Bert::new(parts, &settings)?;
    let (ids, mask) = parts.batch_inputs(texts)?;
    bert.upper(&bert.lower(&ids, &mask)?, &mask)
}

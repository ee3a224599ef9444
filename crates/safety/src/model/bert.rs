//! The encoder's forward pass for reading utterances: BERT over contiguous rows of token
//! states, the matrix products done by `gemm`, everything else in plain loops.
//!
//! It computes what candle's `BertModel` computes (the tests hold it to the training pass in
//! `adapt`, which is written with candle's tensor operations), in about half the time: the
//! sentences of a batch are laid end to end instead of padded to the longest, the three
//! attention projections are one product, the bias is the product's starting value, and no
//! intermediate tensor is allocated per operation. The matrix products run on the calling
//! thread for one utterance (a call's turn is judged while other calls use the other cores)
//! and spread over the thread pool only for bulk reading.

use std::collections::HashMap;

use candle_core::Tensor;
use candle_transformers::models::bert::Config;

use super::encoder::DIMENSIONS;

/// Rows (tokens) above which a matrix product is worth spreading over threads: the reviewers'
/// bulk checks and the training vectors, never one turn of a call.
const PARALLEL_ROWS: usize = 256;

/// A linear layer, its weight stored transposed (`inputs × outputs`, row-major).
struct Dense {
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// From weights in the files' layout (`outputs × inputs`), stacked along the outputs
    /// when there are several (the query, key and value projections read as one).
    fn stacked(weights: &[Tensor], biases: &[Tensor]) -> candle_core::Result<Dense> {
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for weight in weights {
            rows.extend(weight.to_vec2::<f32>()?);
        }
        let mut bias = Vec::new();
        for b in biases {
            bias.extend(b.to_vec1::<f32>()?);
        }
        let outputs = rows.len();
        let inputs = rows.first().map_or(0, Vec::len);
        if bias.len() != outputs || rows.iter().any(|r| r.len() != inputs) {
            return Err(candle_core::Error::Msg(format!(
                "a layer of {outputs} outputs with {} biases, or rows of unequal width",
                bias.len()
            )));
        }
        let mut weight_t = vec![0f32; inputs * outputs];
        for (o, row) in rows.iter().enumerate() {
            for (i, w) in row.iter().enumerate() {
                weight_t[i * outputs + o] = *w;
            }
        }
        Ok(Dense {
            weight_t,
            bias,
            inputs,
            outputs,
        })
    }

    /// `x · Wᵀ + b` for `rows` rows of `x`.
    // gemm's API takes raw pointers and strides; the lengths are checked before the call.
    #[allow(unsafe_code)]
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.inputs, "rows of the wrong width");
        assert_eq!(self.weight_t.len(), self.inputs * self.outputs);
        let mut out = Vec::with_capacity(rows * self.outputs);
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        let parallelism = if rows > PARALLEL_ROWS {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `out` is rows × outputs, `x` rows × inputs and `weight_t` inputs × outputs,
        // all row-major and contiguous, as the strides below say; `out` is written only.
        unsafe {
            gemm::gemm(
                rows,
                self.outputs,
                self.inputs,
                out.as_mut_ptr(),
                1,
                self.outputs as isize,
                true,
                x.as_ptr(),
                1,
                self.inputs as isize,
                self.weight_t.as_ptr(),
                1,
                self.outputs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        out
    }
}

/// Layer normalisation over each row of `DIMENSIONS` values, in place.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn apply(&self, x: &mut [f32]) {
        for row in x.chunks_exact_mut(DIMENSIONS) {
            let mean = row.iter().sum::<f32>() / DIMENSIONS as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let variance = row.iter().map(|v| v * v).sum::<f32>() / DIMENSIONS as f32;
            let scale = 1.0 / (variance + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = *v * scale * w + b;
            }
        }
    }
}

struct Layer {
    /// Query, key and value, side by side in each output row.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    out: Dense,
    out_norm: Norm,
}

pub(super) struct Bert {
    /// Row-major tables of `DIMENSIONS` per entry.
    word: Vec<f32>,
    position: Vec<f32>,
    /// The one token type every sentence is read as.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
}

/// Where one sentence's tokens lie among the rows.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// The weights not yet copied into the encoder's own layout.
struct Weights {
    tensors: HashMap<String, Tensor>,
    eps: f32,
}

impl Weights {
    fn take(&mut self, name: &str) -> candle_core::Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("the encoder has no weight {name}")))
    }

    fn table(&mut self, name: &str) -> candle_core::Result<Vec<f32>> {
        self.take(name)?.flatten_all()?.to_vec1()
    }

    fn norm(&mut self, prefix: &str) -> candle_core::Result<Norm> {
        Ok(Norm {
            weight: self.table(&format!("{prefix}.weight"))?,
            bias: self.table(&format!("{prefix}.bias"))?,
            eps: self.eps,
        })
    }

    /// Linear layers read as one, their outputs side by side.
    fn dense(&mut self, names: &[String]) -> candle_core::Result<Dense> {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for name in names {
            weights.push(self.take(&format!("{name}.weight"))?);
            biases.push(self.take(&format!("{name}.bias"))?);
        }
        Dense::stacked(&weights, &biases)
    }
}

impl Bert {
    /// The encoder from its weights, as the safetensors file names them. Each tensor is
    /// dropped as soon as it is copied, so the process never holds the model twice over.
    pub(super) fn new(
        config: &Config,
        weights: HashMap<String, Tensor>,
    ) -> candle_core::Result<Bert> {
        if !DIMENSIONS.is_multiple_of(config.num_attention_heads) {
            return Err(candle_core::Error::Msg(format!(
                "{} attention heads do not divide {DIMENSIONS}",
                config.num_attention_heads
            )));
        }
        let mut weights = Weights {
            tensors: weights,
            eps: config.layer_norm_eps as f32,
        };
        let word = weights.table("embeddings.word_embeddings.weight")?;
        let position = weights.table("embeddings.position_embeddings.weight")?;
        let mut token_type = weights.table("embeddings.token_type_embeddings.weight")?;
        token_type.truncate(DIMENSIONS);
        let embedding_norm = weights.norm("embeddings.LayerNorm")?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let p = format!("encoder.layer.{index}");
                Ok(Layer {
                    qkv: weights.dense(&[
                        format!("{p}.attention.self.query"),
                        format!("{p}.attention.self.key"),
                        format!("{p}.attention.self.value"),
                    ])?,
                    attention_out: weights.dense(&[format!("{p}.attention.output.dense")])?,
                    attention_norm: weights.norm(&format!("{p}.attention.output.LayerNorm"))?,
                    intermediate: weights.dense(&[format!("{p}.intermediate.dense")])?,
                    out: weights.dense(&[format!("{p}.output.dense")])?,
                    out_norm: weights.norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            heads: config.num_attention_heads,
        })
    }

    /// One unit-length, mean-pooled embedding per sentence of token ids.
    pub(super) fn embed(&self, sentences: &[Vec<u32>]) -> Result<Vec<[f32; DIMENSIONS]>, String> {
        if sentences.is_empty() {
            return Ok(Vec::new());
        }
        let mut spans = Vec::with_capacity(sentences.len());
        let mut rows = 0;
        for sentence in sentences {
            if sentence.is_empty() || sentence.len() * DIMENSIONS > self.position.len() {
                return Err(format!("a sentence of {} tokens", sentence.len()));
            }
            spans.push(Span {
                start: rows,
                len: sentence.len(),
            });
            rows += sentence.len();
        }
        let mut x = self.embeddings(sentences, rows)?;
        for layer in &self.layers {
            x = self.layer(layer, x, rows, &spans);
        }
        Ok(spans.iter().map(|span| mean_unit(&x, *span)).collect())
    }

    fn embeddings(&self, sentences: &[Vec<u32>], rows: usize) -> Result<Vec<f32>, String> {
        let mut x = Vec::with_capacity(rows * DIMENSIONS);
        for sentence in sentences {
            for (position, &id) in sentence.iter().enumerate() {
                let word = self
                    .word
                    .get(id as usize * DIMENSIONS..(id as usize + 1) * DIMENSIONS)
                    .ok_or_else(|| format!("token {id} is outside the vocabulary"))?;
                let place = &self.position[position * DIMENSIONS..(position + 1) * DIMENSIONS];
                x.extend(
                    word.iter()
                        .zip(&self.token_type)
                        .zip(place)
                        .map(|((w, t), p)| (w + t) + p),
                );
            }
        }
        self.embedding_norm.apply(&mut x);
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: Vec<f32>, rows: usize, spans: &[Span]) -> Vec<f32> {
        let qkv = l.qkv.forward(&x, rows);
        let context = self.attention(&qkv, rows, spans);
        let mut attended = l.attention_out.forward(&context, rows);
        attended.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
        l.attention_norm.apply(&mut attended);
        let mut inner = l.intermediate.forward(&attended, rows);
        inner.iter_mut().for_each(|v| *v = gelu(*v));
        let mut out = l.out.forward(&inner, rows);
        out.iter_mut().zip(&attended).for_each(|(o, a)| *o += a);
        l.out_norm.apply(&mut out);
        out
    }

    /// Each sentence's tokens attend to that sentence's tokens only, head by head.
    fn attention(&self, qkv: &[f32], rows: usize, spans: &[Span]) -> Vec<f32> {
        let size = DIMENSIONS / self.heads;
        let scale = 1.0 / (size as f32).sqrt();
        let width = 3 * DIMENSIONS;
        let mut context = vec![0f32; rows * DIMENSIONS];
        let mut weights = Vec::new();
        for span in spans {
            let tokens = span.start..span.start + span.len;
            for head in 0..self.heads {
                let (q, k, v) = (
                    head * size,
                    DIMENSIONS + head * size,
                    2 * DIMENSIONS + head * size,
                );
                for i in tokens.clone() {
                    let query = &qkv[i * width + q..i * width + q + size];
                    weights.clear();
                    weights.extend(tokens.clone().map(|j| {
                        let key = &qkv[j * width + k..j * width + k + size];
                        dot(query, key) * scale
                    }));
                    softmax(&mut weights);
                    let out = &mut context[i * DIMENSIONS + head * size..][..size];
                    for (j, w) in tokens.clone().zip(&weights) {
                        let value = &qkv[j * width + v..j * width + v + size];
                        out.iter_mut().zip(value).for_each(|(o, v)| *o += w * v);
                    }
                }
            }
        }
        context
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    values.iter_mut().for_each(|v| *v = (*v - max).exp());
    let sum: f32 = values.iter().sum();
    values.iter_mut().for_each(|v| *v /= sum);
}

/// The exact GELU the model was trained with (not the tanh approximation).
fn gelu(v: f32) -> f32 {
    (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v
}

/// The mean of a sentence's token states, scaled to unit length.
fn mean_unit(x: &[f32], span: Span) -> [f32; DIMENSIONS] {
    let mut mean = [0f32; DIMENSIONS];
    for row in
        x[span.start * DIMENSIONS..(span.start + span.len) * DIMENSIONS].chunks_exact(DIMENSIONS)
    {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= span.len as f32);
    let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|m| *m /= norm);
    mean
}

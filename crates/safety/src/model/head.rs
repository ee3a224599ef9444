//! The classifier on top of the sentence embeddings: a softmax regression over the three levels,
//! fitted to the labeled corpus, plus the corpus's own embeddings so every model verdict can name
//! the reviewed example it is nearest to.
//!
//! Fitting is deterministic: zero initial weights, full-batch gradient descent with a fixed
//! step and iteration count, sums taken in corpus order. The same corpus and the same encoder
//! give the same head, bit for bit.

use domain::CrisisLevel;

use super::encoder::DIMENSIONS;

pub const LEVELS: [CrisisLevel; 3] = [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis];
const CLASSES: usize = LEVELS.len();
const MAGIC: &[u8; 16] = b"counsel-riskhead";
const FORMAT_VERSION: u32 = 1;

/// How the head is fitted. L2 keeps the weights small so that a phrasing far from everything in
/// the corpus lands near the prior instead of at a confident extreme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    pub iterations: usize,
    pub learning_rate: f64,
    pub l2: f64,
}

impl FitSettings {
    pub const CHOSEN: FitSettings = FitSettings {
        iterations: 1500,
        learning_rate: 0.05,
        l2: 1e-4,
    };
}

/// What [`Head::reading_difference`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadingDifference {
    /// The largest difference in any level's probability.
    pub largest: f64,
    /// How many embeddings the two heads give different most likely levels.
    pub other_level: usize,
}

/// A reviewed example's embedding, stored at 8 bits per dimension (plenty for ranking).
#[derive(Debug, Clone, PartialEq)]
pub struct BankEntry {
    pub vector: [i8; DIMENSIONS],
    /// Index of the example in `corpus::examples()`.
    pub example: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub fitted_to: [u8; 32],
    /// `weights[class][dimension]`, the bias last.
    weights: Vec<[f64; DIMENSIONS + 1]>,
    pub bank: Vec<BankEntry>,
}

/// Probabilities of each level for one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelScores {
    pub none: f32,
    pub concern: f32,
    pub crisis: f32,
}

impl LevelScores {
    /// Probability that the text signals any risk (concern or crisis).
    pub fn risk(&self) -> f32 {
        self.concern + self.crisis
    }

    /// The level with the highest probability (ties go to the graver level).
    pub fn most_likely(&self) -> CrisisLevel {
        if self.crisis >= self.concern.max(self.none) {
            CrisisLevel::Crisis
        } else if self.concern >= self.none {
            CrisisLevel::Concern
        } else {
            CrisisLevel::None
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("not a risk head file (bad magic bytes)")]
    Magic,
    #[error("risk head format {0} is not supported (expected {FORMAT_VERSION})")]
    Version(u32),
    #[error("risk head file is truncated or malformed")]
    Truncated,
}

/// One labeled training vector.
pub struct TrainingVector {
    pub embedding: [f32; DIMENSIONS],
    pub level: CrisisLevel,
}

fn class_of(level: CrisisLevel) -> usize {
    LEVELS
        .iter()
        .position(|l| *l == level)
        .expect("three levels")
}

impl Head {
    /// Fits the softmax regression. Classes are weighted by inverse frequency so the smaller
    /// crisis and concern parts of the corpus count as much as ordinary talk.
    pub fn fit(training: &[TrainingVector], bank: Vec<BankEntry>, fitted_to: [u8; 32]) -> Head {
        Self::fit_with(&FitSettings::CHOSEN, training, bank, fitted_to)
    }

    /// Full-batch Adam on the class-weighted cross-entropy.
    pub fn fit_with(
        settings: &FitSettings,
        training: &[TrainingVector],
        bank: Vec<BankEntry>,
        fitted_to: [u8; 32],
    ) -> Head {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        const EPSILON: f64 = 1e-8;
        let mut counts = [0usize; CLASSES];
        for t in training {
            counts[class_of(t.level)] += 1;
        }
        let class_weight: Vec<f64> = counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    0.0
                } else {
                    training.len() as f64 / (CLASSES as f64 * c as f64)
                }
            })
            .collect();
        let n = training.len().max(1) as f64;
        let mut weights = vec![[0f64; DIMENSIONS + 1]; CLASSES];
        let mut first = vec![[0f64; DIMENSIONS + 1]; CLASSES];
        let mut second = vec![[0f64; DIMENSIONS + 1]; CLASSES];
        for step in 1..=settings.iterations {
            let mut gradient = vec![[0f64; DIMENSIONS + 1]; CLASSES];
            for t in training {
                let probabilities = softmax(&logits(&weights, &t.embedding));
                let target = class_of(t.level);
                let w = class_weight[target];
                for (class, g) in gradient.iter_mut().enumerate() {
                    let error =
                        w * (probabilities[class] - if class == target { 1.0 } else { 0.0 });
                    for (d, x) in t.embedding.iter().enumerate() {
                        g[d] += error * f64::from(*x);
                    }
                    g[DIMENSIONS] += error;
                }
            }
            let correction1 = 1.0 - BETA1.powi(step as i32);
            let correction2 = 1.0 - BETA2.powi(step as i32);
            for class in 0..CLASSES {
                for d in 0..=DIMENSIONS {
                    let regular = if d < DIMENSIONS {
                        settings.l2 * weights[class][d]
                    } else {
                        0.0
                    };
                    let g = gradient[class][d] / n + regular;
                    first[class][d] = BETA1 * first[class][d] + (1.0 - BETA1) * g;
                    second[class][d] = BETA2 * second[class][d] + (1.0 - BETA2) * g * g;
                    let m = first[class][d] / correction1;
                    let v = second[class][d] / correction2;
                    weights[class][d] -= settings.learning_rate * m / (v.sqrt() + EPSILON);
                }
            }
        }
        Head {
            fitted_to,
            weights,
            bank,
        }
    }

    /// How far two heads' readings of the same embeddings lie apart. Fitting the same corpus
    /// on another processor differs in the last bits of the encoder's sums, and full-batch Adam
    /// turns those into small weight differences along directions the corpus barely constrains;
    /// what must agree is what the heads read.
    pub fn reading_difference(
        &self,
        other: &Head,
        embeddings: &[[f32; DIMENSIONS]],
    ) -> ReadingDifference {
        let mut difference = ReadingDifference::default();
        for embedding in embeddings {
            let (a, b) = (self.scores(embedding), other.scores(embedding));
            for (x, y) in [
                (a.none, b.none),
                (a.concern, b.concern),
                (a.crisis, b.crisis),
            ] {
                difference.largest = difference.largest.max(f64::from((x - y).abs()));
            }
            if a.most_likely() != b.most_likely() {
                difference.other_level += 1;
            }
        }
        difference
    }

    pub fn scores(&self, embedding: &[f32; DIMENSIONS]) -> LevelScores {
        let p = softmax(&logits(&self.weights, embedding));
        LevelScores {
            none: p[0] as f32,
            concern: p[1] as f32,
            crisis: p[2] as f32,
        }
    }

    /// The bank entry most similar to `embedding` among those `keep` accepts, with its cosine.
    pub fn nearest(
        &self,
        embedding: &[f32; DIMENSIONS],
        keep: impl Fn(u32) -> bool,
    ) -> Option<(u32, f32)> {
        self.bank
            .iter()
            .filter(|entry| keep(entry.example))
            .map(|entry| {
                (
                    entry.example,
                    quantized_dot(&entry.vector, embedding) / 127.0,
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + CLASSES * (DIMENSIONS + 1) * 8 + self.bank.len() * (DIMENSIONS + 4),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.fitted_to);
        for row in &self.weights {
            for w in row {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.bank.len() as u32).to_le_bytes());
        for entry in &self.bank {
            out.extend_from_slice(&entry.example.to_le_bytes());
            out.extend(entry.vector.iter().map(|v| *v as u8));
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Head, HeadError> {
        let mut reader = super::bytes::Reader::new(bytes);
        reader.header(MAGIC, FORMAT_VERSION)?;
        let fitted_to: [u8; 32] = reader.digest()?;
        let mut weights = vec![[0f64; DIMENSIONS + 1]; CLASSES];
        for row in &mut weights {
            for w in row.iter_mut() {
                *w = f64::from_le_bytes(reader.take(8)?.try_into().expect("8 bytes"));
            }
        }
        let entries = reader.u32()? as usize;
        let mut bank = Vec::with_capacity(entries);
        for _ in 0..entries {
            let example = reader.u32()?;
            let mut vector = [0i8; DIMENSIONS];
            for (v, b) in vector.iter_mut().zip(reader.take(DIMENSIONS)?) {
                *v = *b as i8;
            }
            bank.push(BankEntry { vector, example });
        }
        if !reader.is_done() {
            return Err(HeadError::Truncated);
        }
        Ok(Head {
            fitted_to,
            weights,
            bank,
        })
    }
}

/// Quantises a unit vector for the bank.
pub fn quantize(embedding: &[f32; DIMENSIONS]) -> [i8; DIMENSIONS] {
    let mut q = [0i8; DIMENSIONS];
    for (out, x) in q.iter_mut().zip(embedding) {
        *out = (x * 127.0).round().clamp(-127.0, 127.0) as i8;
    }
    q
}

fn logits(weights: &[[f64; DIMENSIONS + 1]], x: &[f32; DIMENSIONS]) -> [f64; CLASSES] {
    let mut out = [0f64; CLASSES];
    for (class, row) in weights.iter().enumerate() {
        let dot: f64 = row[..DIMENSIONS]
            .iter()
            .zip(x)
            .map(|(w, x)| w * f64::from(*x))
            .sum();
        out[class] = dot + row[DIMENSIONS];
    }
    out
}

fn softmax(logits: &[f64; CLASSES]) -> [f64; CLASSES] {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp = logits.map(|l| (l - max).exp());
    let sum: f64 = exp.iter().sum();
    exp.map(|e| e / sum)
}

impl From<super::bytes::BadHeader> for HeadError {
    fn from(bad: super::bytes::BadHeader) -> Self {
        match bad {
            super::bytes::BadHeader::Truncated => HeadError::Truncated,
            super::bytes::BadHeader::Magic => HeadError::Magic,
            super::bytes::BadHeader::Version(found) => HeadError::Version(found),
        }
    }
}

impl From<super::bytes::Truncated> for HeadError {
    fn from(_: super::bytes::Truncated) -> Self {
        HeadError::Truncated
    }
}

/// The dot product of a bank vector with an embedding, summed in sixteen lanes so the
/// compiler keeps it in vector registers (the bank is searched on every reading).
fn quantized_dot(vector: &[i8; DIMENSIONS], embedding: &[f32; DIMENSIONS]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    for (q, x) in vector
        .chunks_exact(LANES)
        .zip(embedding.chunks_exact(LANES))
    {
        for ((lane, q), x) in lanes.iter_mut().zip(q).zip(x) {
            *lane += f32::from(*q) * x;
        }
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(d: usize) -> [f32; DIMENSIONS] {
        let mut v = [0f32; DIMENSIONS];
        v[d] = 1.0;
        v
    }

    #[test]
    fn fitting_separates_levels_and_round_trips() {
        let training: Vec<TrainingVector> = (0..3)
            .flat_map(|class| {
                (0..5).map(move |_| TrainingVector {
                    embedding: axis(class),
                    level: LEVELS[class],
                })
            })
            .collect();
        let bank = vec![BankEntry {
            vector: quantize(&axis(2)),
            example: 7,
        }];
        let head = Head::fit(&training, bank, [9; 32]);
        assert!(head.scores(&axis(2)).crisis > 0.9);
        assert!(head.scores(&axis(0)).none > 0.9);
        assert_eq!(head.nearest(&axis(2), |_| true), Some((7, 1.0)));
        assert_eq!(Head::from_bytes(&head.to_bytes()).unwrap(), head);
        assert_eq!(Head::fit(&training, vec![], [9; 32]).weights, head.weights);
    }

    #[test]
    fn damaged_files_are_refused() {
        assert_eq!(
            Head::from_bytes(b"nonsense").unwrap_err(),
            HeadError::Truncated
        );
        assert_eq!(Head::from_bytes(&[0u8; 64]).unwrap_err(), HeadError::Magic);
        let head = Head::fit(&[], vec![], [0; 32]);
        let bytes = head.to_bytes();
        assert_eq!(
            Head::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(),
            HeadError::Truncated
        );
    }
}

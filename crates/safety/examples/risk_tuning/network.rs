//! A candidate head for comparison with the shipped linear one (`RISK_SCORERS=mlp`): one hidden
//! layer of rectified units, then a softmax over the three levels. Cross-validation on the
//! corpus found it no better than the linear head at the same rate of false crises (see
//! docs/benchmarks/safety.md), so it stays here, where the next idea can be compared with it.
//!
//! Fitting is deterministic: weights start from a fixed-seed generator, mini-batches are drawn
//! in an order from the same generator, and every sum runs in a fixed order in f32.

use safety::model::random::SplitMix64;
use safety::model::DIMENSIONS;

pub const CLASSES: usize = 3;

/// How the network is shaped and fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkSettings {
    pub hidden: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    /// Decoupled weight decay (AdamW), which keeps a phrasing far from everything in the corpus
    /// near the prior instead of at a confident extreme.
    pub weight_decay: f32,
    pub seed: u64,
}

/// A labeled training vector: the embedding and the class (0 none, 1 concern, 2 crisis).
pub struct Sample<'a> {
    pub input: &'a [f32; DIMENSIONS],
    pub class: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    hidden: usize,
    /// `hidden × (DIMENSIONS + 1)`, each row's bias last.
    first: Vec<f32>,
    /// `CLASSES × (hidden + 1)`, each row's bias last.
    second: Vec<f32>,
}

impl Network {
    /// Class probabilities for one input.
    pub fn probabilities(&self, input: &[f32; DIMENSIONS]) -> [f32; CLASSES] {
        let mut activations = vec![0f32; self.hidden];
        self.hidden_layer(input, &mut activations);
        softmax(self.output_layer(&activations))
    }

    fn hidden_layer(&self, input: &[f32; DIMENSIONS], out: &mut [f32]) {
        for (unit, out) in out.iter_mut().enumerate() {
            let row = &self.first[unit * (DIMENSIONS + 1)..(unit + 1) * (DIMENSIONS + 1)];
            let sum = dot(&row[..DIMENSIONS], input) + row[DIMENSIONS];
            *out = sum.max(0.0);
        }
    }

    fn output_layer(&self, activations: &[f32]) -> [f32; CLASSES] {
        let width = self.hidden + 1;
        let mut logits = [0f32; CLASSES];
        for (class, logit) in logits.iter_mut().enumerate() {
            let row = &self.second[class * width..(class + 1) * width];
            *logit = dot(&row[..self.hidden], activations) + row[self.hidden];
        }
        logits
    }

    /// Mini-batch AdamW on cross-entropy, each class weighted by the inverse of its frequency so
    /// the smaller crisis and concern parts of a corpus count as much as ordinary talk.
    pub fn fit(settings: &NetworkSettings, samples: &[Sample<'_>]) -> Network {
        const BETA1: f32 = 0.9;
        const BETA2: f32 = 0.999;
        const EPSILON: f32 = 1e-8;
        let hidden = settings.hidden;
        let mut random = SplitMix64::new(settings.seed);
        let mut network = Network {
            hidden,
            first: glorot(&mut random, hidden, DIMENSIONS),
            second: glorot(&mut random, CLASSES, hidden),
        };
        let mut counts = [0usize; CLASSES];
        for s in samples {
            counts[s.class] += 1;
        }
        let class_weight = counts.map(|c| {
            if c == 0 {
                0.0
            } else {
                samples.len() as f32 / (CLASSES as f32 * c as f32)
            }
        });
        let mut moments = [
            Moments::new(network.first.len()),
            Moments::new(network.second.len()),
        ];
        let mut order: Vec<usize> = (0..samples.len()).collect();
        let mut gradient_first = vec![0f32; network.first.len()];
        let mut gradient_second = vec![0f32; network.second.len()];
        let mut activations = vec![0f32; hidden];
        let mut hidden_error = vec![0f32; hidden];
        let mut step = 0;
        for _ in 0..settings.epochs {
            random.shuffle(&mut order);
            for batch in order.chunks(settings.batch.max(1)) {
                gradient_first.fill(0.0);
                gradient_second.fill(0.0);
                for &i in batch {
                    let sample = &samples[i];
                    network.hidden_layer(sample.input, &mut activations);
                    let p = softmax(network.output_layer(&activations));
                    let w = class_weight[sample.class];
                    hidden_error.fill(0.0);
                    for class in 0..CLASSES {
                        let target = if class == sample.class { 1.0 } else { 0.0 };
                        let error = w * (p[class] - target);
                        let row = class * (hidden + 1);
                        for unit in 0..hidden {
                            gradient_second[row + unit] += error * activations[unit];
                            hidden_error[unit] += error * network.second[row + unit];
                        }
                        gradient_second[row + hidden] += error;
                    }
                    for unit in 0..hidden {
                        if activations[unit] <= 0.0 {
                            continue;
                        }
                        let error = hidden_error[unit];
                        let row = unit * (DIMENSIONS + 1);
                        let g = &mut gradient_first[row..row + DIMENSIONS];
                        for (g, x) in g.iter_mut().zip(sample.input) {
                            *g += error * x;
                        }
                        gradient_first[row + DIMENSIONS] += error;
                    }
                }
                step += 1;
                let scale = 1.0 / batch.len() as f32;
                let correction1 = 1.0 - BETA1.powi(step);
                let correction2 = 1.0 - BETA2.powi(step);
                for ((weights, gradient), moments) in [
                    (&mut network.first, &gradient_first),
                    (&mut network.second, &gradient_second),
                ]
                .into_iter()
                .zip(moments.iter_mut())
                {
                    for (j, w) in weights.iter_mut().enumerate() {
                        let g = gradient[j] * scale;
                        let m = &mut moments.first[j];
                        let v = &mut moments.second[j];
                        *m = BETA1 * *m + (1.0 - BETA1) * g;
                        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                        let update = (*m / correction1) / ((*v / correction2).sqrt() + EPSILON);
                        *w -= settings.learning_rate * (update + settings.weight_decay * *w);
                    }
                }
            }
        }
        network
    }
}

struct Moments {
    first: Vec<f32>,
    second: Vec<f32>,
}

impl Moments {
    fn new(len: usize) -> Self {
        Self {
            first: vec![0.0; len],
            second: vec![0.0; len],
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums in a fixed order: fast (the compiler vectorises it) and the same result
    // on every machine.
    let mut sums = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for k in 0..8 {
            sums[k] += a[c * 8 + k] * b[c * 8 + k];
        }
    }
    let mut total =
        ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
    for k in chunks * 8..a.len() {
        total += a[k] * b[k];
    }
    total
}

fn softmax(logits: [f32; CLASSES]) -> [f32; CLASSES] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp = logits.map(|l| (l - max).exp());
    let sum: f32 = exp.iter().sum();
    exp.map(|e| e / sum)
}

/// `rows × (columns + 1)` weights drawn uniformly within the Glorot bound, biases zero.
fn glorot(random: &mut SplitMix64, rows: usize, columns: usize) -> Vec<f32> {
    let bound = (6.0 / (rows + columns) as f64).sqrt();
    let mut out = Vec::with_capacity(rows * (columns + 1));
    for _ in 0..rows {
        for _ in 0..columns {
            out.push(((random.unit() * 2.0 - 1.0) * bound) as f32);
        }
        out.push(0.0);
    }
    out
}

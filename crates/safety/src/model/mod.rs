//! The semantic risk model: a sentence encoder (all-MiniLM-L6-v2, run in process on candle) and
//! a small head fitted to the reviewed corpus in `corpus/`. It reads what no phrase rule names
//! ("i gave my cat to my sister so nobody has to deal with it") and scores it by meaning.
//!
//! The head is compiled into the binary (`corpus/risk-head.bin`, written by
//! `counsel safety train`); the encoder's weights are installed by `counsel models install`.

pub mod adapt;
pub mod adapters;
mod bert;
mod bytes;
pub mod encoder;
pub mod head;
pub mod random;
pub mod wordpiece;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::CrisisLevel;

pub use adapters::{Adapters, AdaptersError};
pub use encoder::{EncoderError, EncoderFiles, EncoderParts, SentenceEncoder, DIMENSIONS};
pub use head::{Head, HeadError, LevelScores, ReadingDifference};

use crate::corpus::{self, Example};
use crate::normalize::canonical_text;

/// Where `counsel models install` puts the encoder's files, under the models directory.
pub const ENCODER_DIR: &str = "minilm-l6-v2";

/// The head fitted to the compiled-in corpus.
pub const HEAD_BYTES: &[u8] = include_bytes!("../../corpus/risk-head.bin");

/// Utterances longer than this many words are also read in overlapping windows, so a risk
/// statement in the middle of a long ramble is not averaged away by the rest of it.
const WINDOW_WORDS: usize = 16;
const WINDOW_STRIDE: usize = 8;
const LONG_UTTERANCE_WORDS: usize = 24;
/// A long utterance is read window by window only when the whole of it carries this much risk
/// (concern and crisis together). Out of its ramble, a window of everyday talk can read like
/// anything ("i dont want to be difficult but i also need sleep"); a risk statement buried in a
/// ramble still lends the whole of it risk. Chosen on the corpus's cross-validation and the spent
/// evaluation sets: the same crises found, a third to a half fewer false crises from long talk
/// (docs/benchmarks/safety.md).
pub const WINDOWS_GATE: f32 = 0.5;

/// Whether a long utterance whose whole reads `whole` is read in windows too.
pub fn reads_windows(whole: LevelScores) -> bool {
    whole.risk() >= WINDOWS_GATE
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Adapters(#[from] AdaptersError),
    #[error(
        "the risk head was fitted to another version of the corpus or of the encoder's adapters; run `counsel safety train`"
    )]
    StaleHead,
}

/// The reviewed example a reading is closest to, for the people who review verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    pub text: &'static str,
    pub level: CrisisLevel,
    pub signal: Option<domain::CrisisSignal>,
    pub similarity: f32,
}

/// What the model makes of one utterance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The utterance on its own: for a long one, the window with the most crisis in it.
    pub alone: LevelScores,
    /// The utterance read after the student's previous turn, when there is one.
    pub with_context: Option<LevelScores>,
    /// The nearest reviewed example at the level the reading points to.
    pub nearest: Option<Nearest>,
}

pub struct RiskModel {
    encoder: SentenceEncoder,
    head: Head,
    examples: Vec<Example<'static>>,
    recent: Mutex<RecentEmbeddings>,
}

/// Embeddings of the utterances read lately, so a call's previous turn, read when it was said,
/// costs no encoder pass when the next one is judged in its light. It holds no transcript text:
/// an utterance is known by a digest of its words, and is forgotten after a few minutes (a
/// turn's embedding is only needed until the call's next turn) or when newer ones crowd it out.
#[derive(Default)]
struct RecentEmbeddings {
    by_digest: HashMap<[u8; 32], ([f32; DIMENSIONS], Instant)>,
    order: VecDeque<[u8; 32]>,
}

impl RecentEmbeddings {
    /// Enough for the previous turns of hundreds of calls judged at once.
    const CAPACITY: usize = 1024;
    /// Longer than any pause between two turns of a call.
    const KEEP: Duration = Duration::from_secs(300);

    fn digest(text: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(text.as_bytes()).into()
    }

    fn get(&self, text: &str, now: Instant) -> Option<[f32; DIMENSIONS]> {
        let (embedding, at) = self.by_digest.get(&Self::digest(text))?;
        (now.duration_since(*at) < Self::KEEP).then_some(*embedding)
    }

    fn remember(&mut self, text: &str, embedding: [f32; DIMENSIONS], now: Instant) {
        let digest = Self::digest(text);
        if self.by_digest.insert(digest, (embedding, now)).is_none() {
            self.order.push_back(digest);
        }
        while let Some(oldest) = self.order.front() {
            let expired = self
                .by_digest
                .get(oldest)
                .is_none_or(|(_, at)| now.duration_since(*at) >= Self::KEEP);
            if self.order.len() <= Self::CAPACITY && !expired {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.by_digest.remove(&oldest);
            }
        }
    }
}

impl RiskModel {
    /// Loads the encoder from the models directory (as `counsel models install` lays it out)
    /// with the head compiled into this binary.
    pub fn load(models_dir: &Path) -> Result<Self, ModelError> {
        let head = Head::from_bytes(HEAD_BYTES)?;
        if head.fitted_to != head_fingerprint() {
            return Err(ModelError::StaleHead);
        }
        Ok(Self::with_head(load_encoder(models_dir)?, head))
    }

    pub fn with_head(encoder: SentenceEncoder, head: Head) -> Self {
        Self {
            encoder,
            head,
            examples: corpus::examples(),
            recent: Mutex::default(),
        }
    }

    pub fn encoder(&self) -> &SentenceEncoder {
        &self.encoder
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Reads `utterance`, with the student's previous turn (the last of `earlier`) as context
    /// when `wants_context` says the utterance's own reading calls for it.
    pub fn read(
        &self,
        utterance: &str,
        earlier: &[&str],
        wants_context: impl Fn(LevelScores) -> bool,
    ) -> Result<Reading, EncoderError> {
        let inputs = Inputs::of(utterance, earlier);
        let texts = inputs.texts();
        // The whole utterance first, then its windows when it calls for them, in a batch of
        // their own: one padded batch would pad every short window to the length of the whole.
        let mut own = self.encoder.embed(&texts[..1])?;
        if texts.len() > 1 && reads_windows(self.head.scores(&own[0])) {
            own.extend(self.encoder.embed(&texts[1..])?);
        }
        self.recent_embeddings()
            .remember(&inputs.texts[0], own[0], Instant::now());
        let alone = reading(&self.head, &self.examples, &own, None);
        let Some(previous) = inputs.previous.filter(|_| wants_context(alone.alone)) else {
            return Ok(alone);
        };
        let previous = self.embedding_of(&previous)?;
        Ok(reading(&self.head, &self.examples, &own, Some(&previous)))
    }

    /// The embedding of a text read lately, or a fresh one (after a restart, or when the
    /// previous turn was recorded as several lines joined).
    fn embedding_of(&self, text: &str) -> Result<[f32; DIMENSIONS], EncoderError> {
        if let Some(known) = self.recent_embeddings().get(text, Instant::now()) {
            return Ok(known);
        }
        let fresh = self.encoder.embed(&[text])?[0];
        self.recent_embeddings()
            .remember(text, fresh, Instant::now());
        Ok(fresh)
    }

    fn recent_embeddings(&self) -> std::sync::MutexGuard<'_, RecentEmbeddings> {
        // A panic while the map was held leaves it whole (every change is one insert or
        // remove), so its contents stay usable.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RiskModel {
    /// Reads many utterances, each on its own, in length-sorted batches (for reviewers' bulk
    /// checks: much faster per line than one at a time).
    pub fn read_each(&self, utterances: &[&str]) -> Result<Vec<Reading>, EncoderError> {
        let inputs: Vec<Inputs> = utterances.iter().map(|u| Inputs::of(u, &[])).collect();
        let wholes: Vec<String> = inputs.iter().map(|i| i.texts[0].clone()).collect();
        let wholes = embed_all(&self.encoder, &wholes)?;
        let windowed: Vec<bool> = inputs
            .iter()
            .zip(&wholes)
            .map(|(input, whole)| input.texts.len() > 1 && reads_windows(self.head.scores(whole)))
            .collect();
        let windows: Vec<String> = inputs
            .iter()
            .zip(&windowed)
            .filter(|(_, &windowed)| windowed)
            .flat_map(|(input, _)| input.texts[1..].iter().cloned())
            .collect();
        let mut windows = embed_all(&self.encoder, &windows)?.into_iter();
        Ok(inputs
            .iter()
            .zip(wholes)
            .zip(windowed)
            .map(|((input, whole), windowed)| {
                let mut own = vec![whole];
                if windowed {
                    own.extend(windows.by_ref().take(input.texts.len() - 1));
                }
                reading(&self.head, &self.examples, &own, None)
            })
            .collect())
    }
}

/// The texts the encoder reads for one utterance: the whole of it first, then its windows when
/// it is long; and the student's previous turn, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub texts: Vec<String>,
    pub previous: Option<String>,
}

impl Inputs {
    pub fn of(utterance: &str, earlier: &[&str]) -> Inputs {
        let utterance = canonical_text(utterance);
        let mut texts: Vec<String> = vec![utterance.clone()];
        texts.extend(windows(&utterance));
        let previous = earlier
            .last()
            .map(|p| canonical_text(p))
            .filter(|p| !p.is_empty());
        Inputs { texts, previous }
    }

    pub fn texts(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }
}

/// The head's reading of one utterance from the embeddings of its [`Inputs`]: `own` for its
/// texts, `previous` for the previous turn.
pub fn reading(
    head: &Head,
    examples: &[Example<'static>],
    own: &[[f32; DIMENSIONS]],
    previous: Option<&[f32; DIMENSIONS]>,
) -> Reading {
    reading_by(|e| head.scores(e), head, examples, own, previous)
}

/// [`reading`] with another way of scoring an embedding (cross-validation compares them). The
/// windows in `own` count only when the whole utterance calls for them ([`reads_windows`]).
pub fn reading_by(
    score: impl Fn(&[f32; DIMENSIONS]) -> LevelScores,
    head: &Head,
    examples: &[Example<'static>],
    own: &[[f32; DIMENSIONS]],
    previous: Option<&[f32; DIMENSIONS]>,
) -> Reading {
    let whole = score(&own[0]);
    let own = if reads_windows(whole) { own } else { &own[..1] };
    let scored: Vec<(LevelScores, &[f32; DIMENSIONS])> =
        own.iter().map(|e| (score(e), e)).collect();
    // The window with the most crisis in it; when none leans to crisis, the one with the most
    // risk of any kind.
    let (most_crisis, strongest) = scored
        .iter()
        .copied()
        .max_by(|a, b| a.0.crisis.total_cmp(&b.0.crisis))
        .expect("at least the whole utterance");
    let alone = if most_crisis.crisis >= 0.5 {
        most_crisis
    } else {
        scored
            .iter()
            .map(|s| s.0)
            .max_by(|a, b| a.risk().total_cmp(&b.risk()))
            .unwrap_or(most_crisis)
    };
    let with_context = previous.map(|p| score(&in_context(p, &own[0])));
    let pointed = alone.most_likely();
    let nearest = head
        .nearest(strongest, |i| {
            examples.get(i as usize).is_some_and(|e| e.level == pointed)
        })
        .and_then(|(index, similarity)| {
            let example = examples.get(index as usize)?;
            Some(Nearest {
                text: example.text,
                level: example.level,
                signal: example.signal,
                similarity,
            })
        });
    Reading {
        alone,
        with_context,
        nearest,
    }
}

/// The encoder as the risk model reads with it: the installed weights with the shipped
/// adapters merged in.
pub fn load_encoder(models_dir: &Path) -> Result<SentenceEncoder, ModelError> {
    let files = EncoderFiles::in_dir(&models_dir.join(ENCODER_DIR));
    let adapters = Adapters::shipped()?;
    Ok(SentenceEncoder::new(
        EncoderParts::read(&files)?,
        Some(&adapters),
    )?)
}

/// What a head records it was fitted to: the corpus, and the adapters (as their file's bytes) of
/// the encoder that read it. A head whose record differs from the binary's is stale.
pub fn fitted_to(adapters: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(corpus::fingerprint());
    hash.update(adapters);
    hash.finalize().into()
}

/// [`fitted_to`] for the corpus and adapters compiled into this binary.
pub fn head_fingerprint() -> [u8; 32] {
    fitted_to(adapters::SHIPPED_BYTES)
}

/// Fits a head to the compiled-in corpus as `encoder` reads it; `adapters` are the encoder's
/// adapters as their file's bytes.
pub fn fit_head(encoder: &SentenceEncoder, adapters: &[u8]) -> Result<Head, EncoderError> {
    let examples = corpus::examples();
    let training = training_vectors(encoder, &examples)?;
    Ok(fit_head_to(&examples, &training, adapters))
}

/// [`fit_head`] on vectors already embedded, for a caller that reads them again afterwards.
pub fn fit_head_to(examples: &[Example<'_>], training: &TrainingVectors, adapters: &[u8]) -> Head {
    let mut head = fit_on(examples, training, |_| true);
    head.fitted_to = fitted_to(adapters);
    head
}

/// What the head is fitted to, example by example.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingVectors {
    /// Each example read the way a call reads it: the whole utterance, and a conversation's last
    /// turn in the light of the one before it.
    pub whole: Vec<[f32; DIMENSIONS]>,
    /// The windows of each ordinary (`none`) example long enough to be read in windows; empty
    /// for the others. A call reads a long utterance window by window and takes the window with
    /// the most crisis in it, so a fragment of everyday talk ("i dont want to be difficult but i
    /// also need sleep") must read as everyday too. The windows of a risk example are left out:
    /// which of them holds the risk is not labelled.
    pub windows: Vec<Vec<[f32; DIMENSIONS]>>,
}

/// Whether the head learns `example`'s windows as well as the whole of it (see
/// [`TrainingVectors::windows`]): only ordinary talk, whose every window is ordinary.
pub fn learns_windows_of(example: &Example<'_>) -> bool {
    example.level == CrisisLevel::None
}

/// [`TrainingVectors`] for `examples`, embedded by `encoder`.
pub fn training_vectors(
    encoder: &SentenceEncoder,
    examples: &[Example<'_>],
) -> Result<TrainingVectors, EncoderError> {
    let inputs: Vec<Inputs> = examples
        .iter()
        .map(|e| Inputs::of(e.text, &e.earlier))
        .collect();
    let mut texts: Vec<String> = inputs.iter().map(|i| i.texts[0].clone()).collect();
    texts.extend(inputs.iter().filter_map(|i| i.previous.clone()));
    fn ordinary_windows<'a>((input, example): (&'a Inputs, &Example<'_>)) -> &'a [String] {
        if learns_windows_of(example) {
            &input.texts[1..]
        } else {
            &[]
        }
    }
    texts.extend(
        inputs
            .iter()
            .zip(examples)
            .flat_map(ordinary_windows)
            .cloned(),
    );
    let embeddings = embed_all(encoder, &texts)?;
    let (own, rest) = embeddings.split_at(inputs.len());
    let mut rest = rest.iter();
    let whole = inputs
        .iter()
        .zip(own)
        .map(|(input, own)| {
            let previous = input
                .previous
                .as_ref()
                .map(|_| rest.next().expect("one per previous turn"));
            training_vector(own, previous)
        })
        .collect();
    let windows = inputs
        .iter()
        .zip(examples)
        .map(|pair| {
            ordinary_windows(pair)
                .iter()
                .map(|_| *rest.next().expect("one per window"))
                .collect()
        })
        .collect();
    Ok(TrainingVectors { whole, windows })
}

/// Embeds many texts in batches of similar length (less padding).
pub fn embed_all(
    encoder: &SentenceEncoder,
    texts: &[String],
) -> Result<Vec<[f32; DIMENSIONS]>, EncoderError> {
    const BATCH: usize = 32;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (texts[i].len(), i));
    let mut out = vec![[0f32; DIMENSIONS]; texts.len()];
    for chunk in order.chunks(BATCH) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
        for (&i, embedding) in chunk.iter().zip(encoder.embed(&batch)?) {
            out[i] = embedding;
        }
    }
    Ok(out)
}

/// Fits a head to the examples `keep` accepts (all of them for the shipped head; the others
/// of a fold in cross-validation). The bank holds every kept example.
pub fn fit_on(
    examples: &[Example<'_>],
    training: &TrainingVectors,
    keep: impl Fn(usize) -> bool,
) -> Head {
    fit_on_with(&head::FitSettings::CHOSEN, examples, training, keep)
}

pub fn fit_on_with(
    settings: &head::FitSettings,
    examples: &[Example<'_>],
    training: &TrainingVectors,
    keep: impl Fn(usize) -> bool,
) -> Head {
    let kept: Vec<usize> = (0..examples.len()).filter(|&i| keep(i)).collect();
    let vectors: Vec<head::TrainingVector> = kept
        .iter()
        .flat_map(|&i| {
            std::iter::once(&training.whole[i])
                .chain(&training.windows[i])
                .map(move |embedding| head::TrainingVector {
                    embedding: *embedding,
                    level: examples[i].level,
                })
        })
        .collect();
    let bank = kept
        .iter()
        .map(|&i| head::BankEntry {
            vector: head::quantize(&training.whole[i]),
            example: i as u32,
        })
        .collect();
    Head::fit_with(settings, &vectors, bank, head_fingerprint())
}

/// The vector the head is fitted to for one example: its whole utterance, read in the light of
/// the previous turn when there is one.
pub fn training_vector(
    whole: &[f32; DIMENSIONS],
    previous: Option<&[f32; DIMENSIONS]>,
) -> [f32; DIMENSIONS] {
    previous.map_or(*whole, |p| in_context(p, whole))
}

/// What the head reads for an utterance in the light of the previous turn: the two meanings
/// together (the sum of the two embeddings at unit length). Summing what was already computed
/// keeps the context free; reading the two turns as one text would cost a second, longer pass.
pub fn in_context(
    previous: &[f32; DIMENSIONS],
    utterance: &[f32; DIMENSIONS],
) -> [f32; DIMENSIONS] {
    let mut sum = [0f32; DIMENSIONS];
    for ((s, p), u) in sum.iter_mut().zip(previous).zip(utterance) {
        *s = p + u;
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.map(|x| x / norm)
}

/// Overlapping word windows of a long utterance (none for a short one).
pub fn windows(utterance: &str) -> Vec<String> {
    let words: Vec<&str> = utterance.split_whitespace().collect();
    if words.len() <= LONG_UTTERANCE_WORDS {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + WINDOW_WORDS).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        start += WINDOW_STRIDE;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_head_was_fitted_to_this_corpus() {
        let head = Head::from_bytes(HEAD_BYTES).expect("corpus/risk-head.bin is a risk head");
        assert!(
            head.fitted_to == head_fingerprint(),
            "corpus/risk-head.bin is older than the corpus or the adapters: run `counsel safety train` and rebuild"
        );
        assert_eq!(head.bank.len(), corpus::examples().len());
    }

    #[test]
    fn recent_embeddings_keep_the_latest_and_forget_the_oldest() {
        let mut recent = RecentEmbeddings::default();
        let now = Instant::now();
        let mut marked = [0f32; DIMENSIONS];
        for i in 0..=RecentEmbeddings::CAPACITY {
            marked[0] = i as f32;
            recent.remember(&format!("turn {i}"), marked, now);
        }
        assert_eq!(recent.get("turn 0", now), None);
        assert_eq!(recent.get("turn 1", now).map(|e| e[0]), Some(1.0));
        let last = RecentEmbeddings::CAPACITY;
        let newest = format!("turn {last}");
        assert_eq!(recent.get(&newest, now).map(|e| e[0]), Some(last as f32));
        // Saying the same thing twice keeps one entry.
        recent.remember("turn 1", marked, now);
        assert_eq!(recent.order.len(), RecentEmbeddings::CAPACITY);
        // Minutes later everything is forgotten, and the next turn clears the old ones out.
        let later = now + RecentEmbeddings::KEEP;
        assert_eq!(recent.get(&newest, later), None);
        recent.remember("a new call", marked, later);
        assert_eq!(recent.order.len(), 1);
        assert_eq!(recent.by_digest.len(), 1);
    }

    #[test]
    fn a_turn_in_context_is_both_meanings_at_unit_length() {
        let (mut a, mut b) = ([0f32; DIMENSIONS], [0f32; DIMENSIONS]);
        a[0] = 1.0;
        b[1] = 1.0;
        let both = in_context(&a, &b);
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!((both[0] - half).abs() < 1e-6 && (both[1] - half).abs() < 1e-6);
    }

    #[test]
    fn short_utterances_are_read_whole_and_long_ones_in_windows() {
        assert!(windows("i have three exams next week").is_empty());
        let long = (1..=30)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let w = windows(&long);
        assert_eq!(w.len(), 3);
        assert!(w[0].starts_with("w1 ") && w[0].ends_with(" w16"));
        assert!(w[2].starts_with("w17 ") && w[2].ends_with(" w30"));
    }
}

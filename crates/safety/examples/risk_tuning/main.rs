//! Cross-validation of the risk model and its combination with the rules, on the corpus.
//!
//! `cargo run --release -p safety --example risk_tuning -- MODELS_DIR [SET.tsv …]`
//!
//! The corpus is split into five folds (example index mod 5). For each fold a head is fitted to
//! the other four and reads the fold, so every corpus example is scored by a head that never saw
//! it. The report gives per-level recall and precision for the rules alone, the model alone and
//! the combination at the chosen thresholds, then a small grid around them. Sets named on the
//! command line are scored with the head fitted to the whole corpus. Sets used here are tuning
//! sets: never pass a blind set.

use std::path::PathBuf;

use domain::CrisisLevel;
use safety::corpus::{self, Example};
use safety::model::{
    self, adapt, adapters, EncoderFiles, EncoderParts, Inputs, SentenceEncoder, DIMENSIONS,
};
use safety::verdict::{self, Thresholds};

const FOLDS: usize = 5;

struct Scored {
    expected: CrisisLevel,
    rules: safety::Assessment,
    dismissed: bool,
    /// One reading per scorer.
    readings: Vec<model::Reading>,
    text: String,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let models_dir = PathBuf::from(
        args.next()
            .expect("usage: risk_tuning MODELS_DIR [SET.tsv …]"),
    );
    let sets: Vec<String> = args.collect();
    let examples = corpus::examples();
    // `RISK_ADAPT_FOLD=k` learns adapters on the other folds and scores fold k alone, so the
    // adapters never saw what they are scored on; `RISK_FOLD_ONLY=k` scores fold k with the
    // shipped encoder, for comparison. Either may name a corpus file instead of a fold
    // (`RISK_ADAPT_FOLD=authors.tsv`): that file is held out, which asks how the model does on
    // phrasings by an author it never learned from.
    let held_out: Option<HeldOut> = std::env::var("RISK_ADAPT_FOLD")
        .or_else(|_| std::env::var("RISK_FOLD_ONLY"))
        .ok()
        .map(|spec| HeldOut::parse(&spec));
    let (encoder, adapter_bytes) = match std::env::var("RISK_ADAPT_FOLD") {
        Ok(_) => {
            let held = held_out.clone().expect("parsed above");
            let files = EncoderFiles::in_dir(&models_dir.join(safety::model::ENCODER_DIR));
            let parts = EncoderParts::read(&files).expect("encoder");
            let settings = adapt_settings();
            // `RISK_ADAPTERS_FILE` keeps the learned adapters, so a second run skips learning.
            let saved = std::env::var("RISK_ADAPTERS_FILE").ok();
            let known = saved
                .as_ref()
                .and_then(|path| std::fs::read(path).ok())
                .map(|bytes| adapters::Adapters::from_bytes(&bytes).expect("an adapters file"));
            eprintln!("learning adapters without {held:?}: {settings:?}");
            let started = std::time::Instant::now();
            let adapters = if let Some(known) = known {
                known
            } else {
                adapt::learn(
                    &parts,
                    &settings,
                    &examples,
                    |i| !held.holds(i, &examples[i]),
                    corpus::fingerprint(),
                    |epoch, loss| {
                        eprintln!(
                            "epoch {epoch}: loss {loss:.4} ({:.0}s)",
                            started.elapsed().as_secs_f64()
                        )
                    },
                )
                .expect("learning")
            };
            if let Some(path) = &saved {
                std::fs::write(path, adapters.to_bytes()).expect("saving the adapters");
            }
            let encoder = SentenceEncoder::new(parts, Some(&adapters)).expect("encoder");
            (encoder, adapters.to_bytes())
        }
        Err(_) => (
            model::load_encoder(&models_dir).expect("encoder"),
            adapters::SHIPPED_BYTES.to_vec(),
        ),
    };
    let _ = ENCODER_CACHE.set(cache_path(&adapter_bytes));
    let started = std::time::Instant::now();
    let embeddings = embed_examples(&encoder, &examples);
    eprintln!(
        "embedded {} corpus examples in {:.1}s",
        examples.len(),
        started.elapsed().as_secs_f64()
    );
    let training = model::TrainingVectors {
        whole: embeddings
            .iter()
            .map(|e| model::training_vector(&e.own[0], e.previous.as_ref()))
            .collect(),
        // `RISK_NO_WINDOWS` fits the head to whole utterances only, as the fourth version did.
        windows: embeddings
            .iter()
            .zip(&examples)
            .map(|(e, example)| {
                if model::learns_windows_of(example) && std::env::var("RISK_NO_WINDOWS").is_err() {
                    e.own[1..].to_vec()
                } else {
                    Vec::new()
                }
            })
            .collect(),
    };

    if std::env::var("RISK_TRAINFIT").is_ok() {
        let full = model::fit_on_with(&fit_settings(), &examples, &training, |_| true);
        let mut right = 0;
        for (i, e) in examples.iter().enumerate() {
            right += usize::from(full.scores(&training.whole[i]).most_likely() == e.level);
        }
        println!(
            "training accuracy of the full head: {:.3}",
            right as f64 / examples.len() as f64
        );
    }
    let scorers: Vec<&str> = std::env::var("RISK_SCORERS")
        .unwrap_or_else(|_| "head".into())
        .leak()
        .split(',')
        .collect();
    let mut scored: Vec<Scored> = Vec::new();
    let splits: Vec<HeldOut> = match &held_out {
        Some(held) => vec![held.clone()],
        None => (0..FOLDS).map(HeldOut::Fold).collect(),
    };
    for held in &splits {
        let in_training = |i: usize| !held.holds(i, &examples[i]);
        let head = model::fit_on_with(&fit_settings(), &examples, &training, in_training);
        let bank: Vec<(usize, [f32; DIMENSIONS])> = (0..examples.len())
            .filter(|&i| in_training(i))
            .map(|i| (i, training.whole[i]))
            .collect();
        for (i, example) in examples
            .iter()
            .enumerate()
            .filter(|&(i, e)| held.holds(i, e))
        {
            scored.push(score(
                &scorers,
                &head,
                &bank,
                &examples,
                example,
                &embeddings[i],
            ));
        }
    }
    for (which, name) in scorers.iter().enumerate() {
        println!(
            "== corpus, held out {} ({} examples), scorer {name}",
            held_out
                .as_ref()
                .map_or(format!("{FOLDS} folds in turn"), |h| format!("{h:?}")),
            scored.len()
        );
        report(&scored, which, &Thresholds::CHOSEN, true);
        if std::env::var("RISK_GRID").is_ok() {
            println!("-- grid (crisis, concern, in_context, gate, overrule)");
            for crisis in [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98] {
                for concern in [0.5, 0.7, 0.9] {
                    let t = Thresholds {
                        crisis,
                        concern,
                        ..Thresholds::CHOSEN
                    };
                    print!(
                        "{crisis:.2} {concern:.2} {:.2} {:.2} {:.2}  ",
                        t.crisis_in_context, t.context_gate, t.overrule_rules
                    );
                    report(&scored, which, &t, false);
                }
            }
        }
    }

    let full = model::fit_on_with(&fit_settings(), &examples, &training, |_| true);
    let bank: Vec<(usize, [f32; DIMENSIONS])> = (0..examples.len())
        .map(|i| (i, training.whole[i]))
        .collect();
    for set in sets {
        let text = std::fs::read_to_string(&set).expect("set");
        let name: &'static str = Box::leak(set.clone().into_boxed_str());
        let text: &'static str = Box::leak(text.into_boxed_str());
        let set_examples = corpus::parse(name, text).expect("set parses");
        let embeddings = embed_examples(&encoder, &set_examples);
        let scored: Vec<Scored> = set_examples
            .iter()
            .enumerate()
            .map(|(i, e)| score(&scorers, &full, &bank, &examples, e, &embeddings[i]))
            .collect();
        for (which, scorer) in scorers.iter().enumerate() {
            println!(
                "== {set} ({} examples, whole-corpus head), scorer {scorer}",
                scored.len()
            );
            report(&scored, which, &Thresholds::CHOSEN, true);
            if std::env::var("RISK_GRID").is_ok() {
                for crisis in [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9] {
                    let t = Thresholds {
                        crisis,
                        crisis_in_context: crisis,
                        ..Thresholds::CHOSEN
                    };
                    print!("  crisis at {crisis:.2}: ");
                    report(&scored, which, &t, false);
                }
            }
        }
    }
}

/// The corpus examples one head (and, with `RISK_ADAPT_FOLD`, one set of adapters) never sees.
#[derive(Debug, Clone)]
enum HeldOut {
    /// Example index mod `FOLDS`.
    Fold(usize),
    /// Every example of one corpus file.
    File(String),
}

impl HeldOut {
    fn parse(spec: &str) -> HeldOut {
        match spec.parse() {
            Ok(fold) if fold < FOLDS => HeldOut::Fold(fold),
            Ok(fold) => panic!("fold {fold} does not exist: there are {FOLDS}"),
            Err(_) => {
                assert!(
                    corpus::FILES.iter().any(|(name, _)| *name == spec),
                    "{spec} is neither a fold nor a corpus file"
                );
                HeldOut::File(spec.to_owned())
            }
        }
    }

    fn holds(&self, index: usize, example: &Example<'_>) -> bool {
        match self {
            HeldOut::Fold(fold) => index % FOLDS == *fold,
            HeldOut::File(file) => example.file == file,
        }
    }
}

/// The fitting settings, overridable as `RISK_FIT=iterations,learning_rate,l2`.
fn fit_settings() -> model::head::FitSettings {
    let mut settings = model::head::FitSettings::CHOSEN;
    if let Ok(spec) = std::env::var("RISK_FIT") {
        let parts: Vec<&str> = spec.split(',').collect();
        settings.iterations = parts[0].parse().unwrap();
        settings.learning_rate = parts[1].parse().unwrap();
        settings.l2 = parts[2].parse().unwrap();
    }
    settings
}

/// The adapters' settings, as `RISK_ADAPT=layers,rank,alpha,epochs,learning_rate,weight_decay[,seed]`.
fn adapt_settings() -> adapt::AdaptSettings {
    let mut settings = adapt::AdaptSettings::CHOSEN;
    if let Ok(spec) = std::env::var("RISK_ADAPT") {
        let p: Vec<&str> = spec.split(',').collect();
        settings.layers = p[0].parse().unwrap();
        settings.rank = p[1].parse().unwrap();
        settings.alpha = p[2].parse().unwrap();
        settings.epochs = p[3].parse().unwrap();
        settings.learning_rate = p[4].parse().unwrap();
        settings.weight_decay = p[5].parse().unwrap();
        if let Some(seed) = p.get(6) {
            settings.seed = seed.parse().unwrap();
        }
    }
    settings
}

/// Where the embeddings of one encoder (its adapters) are cached between runs.
static ENCODER_CACHE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn cache_path(adapters: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(adapters);
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let base =
        std::env::var("RISK_EMBED_CACHE").unwrap_or_else(|_| "target/risk-embeddings".into());
    format!("{base}-{tag}.cache")
}

/// k nearest neighbours, each weighted by exp(similarity / temperature).
fn knn(
    bank: &[(usize, [f32; DIMENSIONS])],
    examples: &[Example<'_>],
    e: &[f32; DIMENSIONS],
    k: usize,
    temperature: f32,
) -> model::LevelScores {
    let mut sims: Vec<(f32, usize)> = bank
        .iter()
        .map(|(i, v)| (v.iter().zip(e).map(|(a, b)| a * b).sum::<f32>(), *i))
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut w = [0f32; 3];
    for (sim, i) in sims.iter().take(k) {
        w[index(examples[*i].level)] += ((sim - 1.0) / temperature).exp();
    }
    let total: f32 = w.iter().sum();
    model::LevelScores {
        none: w[0] / total,
        concern: w[1] / total,
        crisis: w[2] / total,
    }
}

/// Embeddings already computed, kept between runs in `RISK_EMBED_CACHE` (a tuning aid only).
fn cached_embed(encoder: &SentenceEncoder, texts: &[String]) -> Vec<[f32; DIMENSIONS]> {
    use std::collections::HashMap;
    use std::io::Write;
    let path = ENCODER_CACHE.get().expect("set at start").clone();
    let mut cache: HashMap<String, [f32; DIMENSIONS]> = HashMap::new();
    if let Ok(bytes) = std::fs::read(&path) {
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += 4;
            let text = String::from_utf8(bytes[at..at + len].to_vec()).unwrap();
            at += len;
            let mut v = [0f32; DIMENSIONS];
            for (i, x) in v.iter_mut().enumerate() {
                *x = f32::from_le_bytes(bytes[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
            }
            at += 4 * DIMENSIONS;
            cache.insert(text, v);
        }
    }
    let missing: Vec<String> = texts
        .iter()
        .filter(|t| !cache.contains_key(*t))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let started = std::time::Instant::now();
        let fresh = model::embed_all(encoder, &missing).expect("embed");
        eprintln!(
            "embedded {} new texts in {:.1}s",
            missing.len(),
            started.elapsed().as_secs_f64()
        );
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir).expect("the embedding cache's folder");
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for (text, v) in missing.iter().zip(fresh) {
            file.write_all(&(text.len() as u32).to_le_bytes()).unwrap();
            file.write_all(text.as_bytes()).unwrap();
            for x in v {
                file.write_all(&x.to_le_bytes()).unwrap();
            }
            cache.insert(text.clone(), v);
        }
    }
    texts.iter().map(|t| cache[t]).collect()
}

/// One example's embeddings: its own texts (see `Inputs`) and its previous turn.
struct Embedded {
    own: Vec<[f32; DIMENSIONS]>,
    previous: Option<[f32; DIMENSIONS]>,
}

fn embed_examples(encoder: &SentenceEncoder, examples: &[Example<'_>]) -> Vec<Embedded> {
    let inputs: Vec<Inputs> = examples
        .iter()
        .map(|e| Inputs::of(e.text, &e.earlier))
        .collect();
    let flat: Vec<String> = inputs
        .iter()
        .flat_map(|i| i.texts.iter().chain(&i.previous).cloned())
        .collect();
    let all = cached_embed(encoder, &flat);
    let mut offset = 0;
    inputs
        .iter()
        .map(|input| {
            let own = all[offset..offset + input.texts.len()].to_vec();
            offset += input.texts.len();
            let previous = input.previous.as_ref().map(|_| {
                offset += 1;
                all[offset - 1]
            });
            Embedded { own, previous }
        })
        .collect()
}

fn score(
    scorers: &[&str],
    head: &model::Head,
    bank: &[(usize, [f32; DIMENSIONS])],
    examples: &[Example<'static>],
    example: &Example<'_>,
    embeddings: &Embedded,
) -> Scored {
    let (rules, dismissed) = verdict::rules_reading(example.text, &example.earlier);
    let readings = scorers
        .iter()
        .map(|name| {
            if let Some(spec) = name.strip_prefix("knn") {
                let (k, t) = spec.split_once('@').unwrap_or((spec, "0.05"));
                let (k, t): (usize, f32) = (k.parse().unwrap_or(10), t.parse().unwrap());
                model::reading_by(
                    |e| knn(bank, examples, e, k, t),
                    head,
                    examples,
                    &embeddings.own,
                    embeddings.previous.as_ref(),
                )
            } else if let Some(mix) = name.strip_prefix("mix") {
                let (k, t) = mix.split_once('@').unwrap_or((mix, "0.05"));
                let (k, t): (usize, f32) = (k.parse().unwrap_or(10), t.parse().unwrap());
                model::reading_by(
                    |e| {
                        let a = head.scores(e);
                        let b = knn(bank, examples, e, k, t);
                        model::LevelScores {
                            none: (a.none + b.none) / 2.0,
                            concern: (a.concern + b.concern) / 2.0,
                            crisis: (a.crisis + b.crisis) / 2.0,
                        }
                    },
                    head,
                    examples,
                    &embeddings.own,
                    embeddings.previous.as_ref(),
                )
            } else {
                model::reading(
                    head,
                    examples,
                    &embeddings.own,
                    embeddings.previous.as_ref(),
                )
            }
        })
        .collect();
    let text = if example.earlier.is_empty() {
        example.text.to_owned()
    } else {
        format!("{} || {}", example.earlier.join(" || "), example.text)
    };
    Scored {
        expected: example.level,
        rules,
        dismissed,
        readings,
        text,
    }
}

fn index(level: CrisisLevel) -> usize {
    match level {
        CrisisLevel::None => 0,
        CrisisLevel::Concern => 1,
        CrisisLevel::Crisis => 2,
    }
}

/// One way of reaching a level: the rules alone, the model alone, or both.
type Path<'a> = (&'static str, Box<dyn Fn(&Scored) -> CrisisLevel + 'a>);

fn report(scored: &[Scored], which: usize, thresholds: &Thresholds, verbose: bool) {
    let paths: [Path; 3] = [
        ("rules", Box::new(|s: &Scored| s.rules.level)),
        (
            "model",
            Box::new(|s: &Scored| {
                verdict::combine(
                    thresholds,
                    safety::Assessment::NONE,
                    false,
                    Some(s.readings[which]),
                )
                .level()
            }),
        ),
        (
            "combined",
            Box::new(|s: &Scored| {
                verdict::combine(thresholds, s.rules, s.dismissed, Some(s.readings[which])).level()
            }),
        ),
    ];
    for (name, predict) in &paths {
        if !verbose && *name != "combined" {
            continue;
        }
        let mut confusion = [[0usize; 3]; 3];
        for s in scored {
            confusion[index(s.expected)][index(predict(s))] += 1;
        }
        let row = |l: usize| confusion[l].iter().sum::<usize>().max(1) as f64;
        let col = |l: usize| (0..3).map(|e| confusion[e][l]).sum::<usize>().max(1) as f64;
        let crisis_recall = confusion[2][2] as f64 / row(2);
        let crisis_precision = confusion[2][2] as f64 / col(2);
        let concern_caught = (confusion[1][1] + confusion[1][2]) as f64 / row(1);
        let concern_precision = confusion[1][1] as f64 / col(1);
        let none_as_crisis = confusion[0][2] as f64 / row(0);
        let none_recall = confusion[0][0] as f64 / row(0);
        println!(
            "{name:>9}: crisis recall {crisis_recall:.3} precision {crisis_precision:.3} | concern caught {concern_caught:.3} precision {concern_precision:.3} | none kept {none_recall:.3}, as crisis {none_as_crisis:.3}"
        );
        if verbose && *name == "combined" {
            println!("           confusion (rows expected none/concern/crisis): {confusion:?}");
            for s in scored {
                let got = predict(s);
                let bad = (s.expected == CrisisLevel::Crisis && got != CrisisLevel::Crisis)
                    || (s.expected == CrisisLevel::None && got == CrisisLevel::Crisis)
                    || (s.expected == CrisisLevel::Concern && got == CrisisLevel::None);
                if bad && std::env::var("RISK_SHOW").is_ok() {
                    println!(
                        "  expected {:<7} got {:<7} model c={:.2} r={:.2} ctx={:?} rules={} | {}",
                        s.expected.as_str(),
                        got.as_str(),
                        s.readings[which].alone.crisis,
                        s.readings[which].alone.risk(),
                        s.readings[which]
                            .with_context
                            .map(|c| (c.crisis * 100.0).round() / 100.0),
                        s.rules.level.as_str(),
                        s.text
                    );
                }
            }
        }
    }
}

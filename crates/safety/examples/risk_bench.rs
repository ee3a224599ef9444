//! Time per utterance of the whole crisis check (phrase rules and risk model), and the memory the
//! model takes.
//!
//! `cargo run --release -p safety --example risk_bench -- MODELS_DIR`
//!
//! Every utterance of the evaluation sets is judged as a call judges it: with the two previous
//! utterances as the student's recent turns. Latency is per call of `Classifier::assess`; memory
//! is the process's resident set before and after loading the model. The last line is the result
//! as one JSON object.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

const SETS: [(&str, &str); 3] = [
    ("utterances.tsv", include_str!("../eval/utterances.tsv")),
    ("holdout.tsv", include_str!("../eval/holdout.tsv")),
    ("holdout2.tsv", include_str!("../eval/holdout2.tsv")),
];
const ROUNDS: usize = 3;
const TARGET_P99_MS: f64 = 20.0;

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let models_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: risk_bench MODELS_DIR"),
    );
    let before = resident_mib();
    let started = Instant::now();
    let model = safety::model::RiskModel::load(&models_dir).expect("risk model");
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let classifier = safety::Classifier::with_model(model);
    let loaded = resident_mib();

    let utterances: Vec<&str> = SETS
        .iter()
        .flat_map(|(name, set)| safety::corpus::parse(name, set).expect("the set parses"))
        .map(|example| example.text)
        .collect();
    black_box(classifier.assess("warm up", &[]));
    let mut samples_ms = Vec::with_capacity(utterances.len() * ROUNDS);
    let mut windowed = Vec::new();
    for _ in 0..ROUNDS {
        for (i, text) in utterances.iter().enumerate() {
            let recent: Vec<&str> = utterances[i.saturating_sub(2)..i].to_vec();
            let started = Instant::now();
            black_box(classifier.assess(black_box(text), &recent));
            samples_ms.push(started.elapsed().as_secs_f64() * 1e3);
            windowed.push(!safety::model::windows(&safety::canonical_text(text)).is_empty());
        }
    }
    let after = resident_mib();
    let mut sorted = samples_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        sorted[((sorted.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(sorted.len() - 1)]
    };
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let slowest = samples_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "utterances: {} x {ROUNDS} rounds, with two recent turns each",
        utterances.len()
    );
    println!("model load: {load_ms:.0} ms; resident memory {before:.0} MiB before, {loaded:.0} MiB loaded, {after:.0} MiB after the run");
    println!(
        "per utterance: mean {mean:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {slowest:.2} ms",
        pct(0.5),
        pct(0.99),
    );
    // Long utterances are also read in windows, so they cost more: their tail shown apart.
    for (name, long) in [("read whole", false), ("read in windows too", true)] {
        let mut part: Vec<f64> = samples_ms
            .iter()
            .zip(&windowed)
            .filter(|(_, w)| **w == long)
            .map(|(ms, _)| *ms)
            .collect();
        part.sort_by(f64::total_cmp);
        if let Some(last) = part.len().checked_sub(1) {
            let p99 = part[((part.len() as f64 * 0.99).ceil() as usize)
                .saturating_sub(1)
                .min(last)];
            let mean = part.iter().sum::<f64>() / part.len() as f64;
            println!(
                "  {name}: {} samples, mean {mean:.2} ms, p99 {p99:.2} ms",
                part.len()
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "risk_classifier",
            "utterances": utterances.len() * ROUNDS,
            "mean_ms": (mean * 100.0).round() / 100.0,
            "p50_ms": (pct(0.5) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "max_ms": (slowest * 100.0).round() / 100.0,
            "model_resident_mib": ((loaded - before) * 10.0).round() / 10.0,
            "resident_mib_after": after.round(),
            "target_p99_ms": TARGET_P99_MS,
            "met": pct(0.99) <= TARGET_P99_MS,
        })
    );
}

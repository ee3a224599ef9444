//! Time per utterance of `safety::assess` over the evaluation set.
//!
//! `cargo run --release -p safety --example classify_bench`
//!
//! Each utterance is classified `REPEATS` times per round; a sample is the mean time of one
//! call within a round, and mean / p50 / p99 are taken over all samples (every utterance,
//! every round). The last line is the result as one JSON object.

use std::hint::black_box;
use std::time::Instant;

const EVALUATION_SET: &str = include_str!("../eval/utterances.tsv");
const HOLDOUT_SET: &str = include_str!("../eval/holdout.tsv");
const ROUNDS: usize = 20;
const REPEATS: u32 = 50;
const TARGET_MICROS: f64 = 50.0;

fn texts(set: &'static str) -> impl Iterator<Item = &'static str> {
    set.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split('\t').nth(2))
}

fn main() {
    let utterances: Vec<&str> = texts(EVALUATION_SET).chain(texts(HOLDOUT_SET)).collect();

    // First call compiles the rule set; it is paid once per process, measured on its own.
    let started = Instant::now();
    black_box(safety::assess_by_rules(black_box("warm up"), &[]));
    let first_call_micros = started.elapsed().as_secs_f64() * 1e6;

    let mut samples_micros = Vec::with_capacity(utterances.len() * ROUNDS);
    for _ in 0..ROUNDS {
        for text in &utterances {
            let started = Instant::now();
            for _ in 0..REPEATS {
                black_box(safety::assess_by_rules(black_box(text), &[]));
            }
            samples_micros.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(REPEATS));
        }
    }
    // With context: three earlier turns are classified too.
    let context = [
        "i have been so stressed",
        "my roommate is annoying",
        "i feel hopeless",
    ];
    let started = Instant::now();
    for text in &utterances {
        black_box(safety::assess_by_rules(
            black_box(text),
            black_box(&context),
        ));
    }
    let with_context_mean = started.elapsed().as_secs_f64() * 1e6 / utterances.len() as f64;

    samples_micros.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let rank = ((samples_micros.len() - 1) as f64 * p).round() as usize;
        samples_micros[rank]
    };
    let mean = samples_micros.iter().sum::<f64>() / samples_micros.len() as f64;
    let (p50, p99, max) = (percentile(0.50), percentile(0.99), percentile(1.0));

    println!(
        "utterances: {} ({} samples)",
        utterances.len(),
        samples_micros.len()
    );
    println!("per utterance: mean {mean:.2} µs, p50 {p50:.2} µs, p99 {p99:.2} µs, max {max:.2} µs");
    println!("with three context turns: mean {with_context_mean:.2} µs");
    println!("first call (compiles the rules): {first_call_micros:.0} µs");
    let met = p99 < TARGET_MICROS;
    println!(
        "target: p99 under {TARGET_MICROS} µs: {}",
        if met { "met" } else { "missed" }
    );
    println!(
        "{{\"bench\":\"safety_classify\",\"utterances\":{},\"samples\":{},\"mean_us\":{mean:.3},\"p50_us\":{p50:.3},\"p99_us\":{p99:.3},\"max_us\":{max:.3},\"with_context_mean_us\":{with_context_mean:.3},\"first_call_us\":{first_call_micros:.0},\"target_us\":{TARGET_MICROS},\"met\":{met}}}",
        utterances.len(),
        samples_micros.len()
    );
}

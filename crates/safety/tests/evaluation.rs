//! Runs the labeled evaluation set (`eval/utterances.tsv`) through the classifier, prints
//! recall and precision per level, the confusion matrix and every misclassified line, and
//! fails when crisis recall or precision falls below the bar.
//!
//! `cargo test -p safety --test evaluation -- --nocapture` shows the report.

use domain::CrisisLevel;
use safety::corpus::{self, Example};

const EVALUATION_SET: &str = include_str!("../eval/utterances.tsv");
const HOLDOUT_SET: &str = include_str!("../eval/holdout.tsv");
const HELD_OUT_SET: &str = include_str!("../eval/holdout2.tsv");
const MIN_CRISIS_RECALL: f64 = 0.98;
const MIN_CRISIS_PRECISION: f64 = 0.90;
const LEVELS: [CrisisLevel; 3] = [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis];

/// The set's examples, parsed as the corpus is (one format, one parser).
fn examples(name: &'static str, set: &'static str) -> Vec<Example<'static>> {
    corpus::parse(name, set).unwrap_or_else(|e| panic!("{e}"))
}

fn index(level: CrisisLevel) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap()
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

#[test]
fn evaluation_set_meets_the_crisis_bar() {
    let examples = examples("eval/utterances.tsv", EVALUATION_SET);
    assert!(
        examples.len() >= 300,
        "the evaluation set must hold at least 300 utterances"
    );
    let (recall, precision) = report("eval/utterances.tsv", &examples);
    assert_meets_bar(recall, precision);
}

/// The second set was written after the rules were fitted to the first; its first score is
/// recorded in its header and in docs/benchmarks/safety.md.
#[test]
fn holdout_set_meets_the_crisis_bar() {
    let examples = examples("eval/holdout.tsv", HOLDOUT_SET);
    let (recall, precision) = report("eval/holdout.tsv", &examples);
    assert_meets_bar(recall, precision);
}

/// The held-out set was never used to change a rule. It estimates how the rules generalise to
/// new phrasings: precision must hold the bar; recall is reported (its first and only score
/// is recorded in docs/benchmarks/safety.md) because rules miss phrasings nobody wrote down.
#[test]
fn held_out_set_keeps_crisis_precision() {
    let examples = examples("eval/holdout2.tsv", HELD_OUT_SET);
    let (_, precision) = report("eval/holdout2.tsv (held out)", &examples);
    assert!(
        precision >= MIN_CRISIS_PRECISION,
        "held-out crisis precision {precision:.3} is below {MIN_CRISIS_PRECISION}"
    );
}

/// Classifies every example, prints the report and returns crisis (recall, precision).
fn report(name: &str, examples: &[Example]) -> (f64, f64) {
    // confusion[expected][predicted]
    let mut confusion = [[0usize; 3]; 3];
    let mut misclassified = Vec::new();
    let mut signal_right = 0;
    let mut signal_checked = 0;
    for example in examples {
        let assessment = safety::assess_by_rules(example.text, &[]);
        confusion[index(example.level)][index(assessment.level)] += 1;
        let predicted_signal = assessment.signal.map(|s| s.as_str());
        if assessment.level != example.level {
            misclassified.push(format!(
                "  line {:>3}: expected {:<7} got {:<7} ({}) {:?}",
                example.line,
                example.level.as_str(),
                assessment.level.as_str(),
                predicted_signal.unwrap_or("-"),
                example.text
            ));
        } else if example.level != CrisisLevel::None {
            signal_checked += 1;
            if predicted_signal == example.signal.map(|s| s.as_str()) {
                signal_right += 1;
            } else {
                println!(
                    "  signal differs at line {}: expected {} got {}",
                    example.line,
                    example.signal.map_or("-", |s| s.as_str()),
                    predicted_signal.unwrap_or("-")
                );
            }
        }
    }

    println!("\n{name}: {} utterances", examples.len());
    println!("confusion matrix (rows: expected, columns: predicted)");
    println!("{:>10} {:>8} {:>8} {:>8}", "", "none", "concern", "crisis");
    for level in LEVELS {
        let row = confusion[index(level)];
        println!(
            "{:>10} {:>8} {:>8} {:>8}",
            level.as_str(),
            row[0],
            row[1],
            row[2]
        );
    }
    let mut crisis = (0.0, 0.0);
    for level in LEVELS {
        let i = index(level);
        let true_positives = confusion[i][i];
        let expected: usize = confusion[i].iter().sum();
        let predicted: usize = confusion.iter().map(|row| row[i]).sum();
        let recall = ratio(true_positives, expected);
        let precision = ratio(true_positives, predicted);
        println!(
            "{:>10}: recall {recall:.3}  precision {precision:.3}",
            level.as_str()
        );
        if level == CrisisLevel::Crisis {
            crisis = (recall, precision);
        }
    }
    // Anything at risk (concern or crisis) that was classified as none: the costliest miss.
    let silent_misses =
        confusion[index(CrisisLevel::Crisis)][0] + confusion[index(CrisisLevel::Concern)][0];
    println!("at-risk utterances classified as none: {silent_misses}");
    println!(
        "signal agreement where the level is right: {signal_right}/{signal_checked} ({:.3})",
        ratio(signal_right, signal_checked)
    );
    println!("misclassified ({}):", misclassified.len());
    for line in &misclassified {
        println!("{line}");
    }

    crisis
}

fn assert_meets_bar(recall: f64, precision: f64) {
    assert!(
        recall >= MIN_CRISIS_RECALL,
        "crisis recall {recall:.3} is below {MIN_CRISIS_RECALL}"
    );
    assert!(
        precision >= MIN_CRISIS_PRECISION,
        "crisis precision {precision:.3} is below {MIN_CRISIS_PRECISION}"
    );
}

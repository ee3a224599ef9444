//! Runs the labeled evaluation set (`eval/utterances.tsv`) through the classifier, prints
//! recall and precision per level, the confusion matrix and every misclassified line, and
//! fails when crisis recall or precision falls below the bar.
//!
//! `cargo test -p safety --test evaluation -- --nocapture` shows the report.

use domain::CrisisLevel;

const EVALUATION_SET: &str = include_str!("../eval/utterances.tsv");
const HOLDOUT_SET: &str = include_str!("../eval/holdout.tsv");
const HELD_OUT_SET: &str = include_str!("../eval/holdout2.tsv");
const MIN_CRISIS_RECALL: f64 = 0.98;
const MIN_CRISIS_PRECISION: f64 = 0.90;
const LEVELS: [CrisisLevel; 3] = [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis];

struct Example {
    line: usize,
    level: CrisisLevel,
    signal: Option<&'static str>,
    text: &'static str,
}

fn parse_level(word: &str, line: usize) -> CrisisLevel {
    match word {
        "none" => CrisisLevel::None,
        "concern" => CrisisLevel::Concern,
        "crisis" => CrisisLevel::Crisis,
        other => panic!("line {line}: unknown level {other:?}"),
    }
}

fn examples(set: &'static str) -> Vec<Example> {
    set.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(index, l)| {
            let line = index + 1;
            let fields: Vec<&str> = l.split('\t').collect();
            let [level, signal, text] = fields[..] else {
                panic!("line {line}: expected level<TAB>signal<TAB>text, got {l:?}");
            };
            let level = parse_level(level, line);
            let signal = (signal != "-").then_some(signal);
            assert_eq!(
                signal.is_none(),
                level == CrisisLevel::None,
                "line {line}: a signal is required exactly when the level is not none"
            );
            Example {
                line,
                level,
                signal,
                text,
            }
        })
        .collect()
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
    let examples = examples(EVALUATION_SET);
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
    let examples = examples(HOLDOUT_SET);
    let (recall, precision) = report("eval/holdout.tsv", &examples);
    assert_meets_bar(recall, precision);
}

/// The held-out set was never used to change a rule. It estimates how the rules generalise to
/// new phrasings: precision must hold the bar; recall is reported (its first and only score
/// is recorded in docs/benchmarks/safety.md) because rules miss phrasings nobody wrote down.
#[test]
fn held_out_set_keeps_crisis_precision() {
    let examples = examples(HELD_OUT_SET);
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
            if predicted_signal == example.signal {
                signal_right += 1;
            } else {
                println!(
                    "  signal differs at line {}: expected {} got {}",
                    example.line,
                    example.signal.unwrap_or("-"),
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

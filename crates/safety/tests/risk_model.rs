//! The crisis check as calls run it (phrase rules and risk model together), scored on every
//! evaluation set, plus the guarantee that the shipped head is what the corpus gives.
//!
//! `cargo test -p safety --test risk_model -- --nocapture` shows the report. The models come from
//! `COUNSEL_MODELS_DIR` (as `scripts/test` installs them) or are installed once into
//! `target/models`.
//!
//! Which sets were used for what: `corpus/` is the training set. Fifteen of its files,
//! `corpus/retired-blind*.tsv`, were blind evaluation sets by other authors; each was scored once
//! (docs/benchmarks/safety.md), its misses then gave rules, and it joined the corpus.
//! `eval/utterances.tsv` and `eval/holdout.tsv` are the rules' tuning sets and were looked at
//! while choosing; `eval/holdout2.tsv` was a check. `eval/blind16.tsv` and `eval/blind17.tsv`,
//! each by another independent author, were scored once on the eleventh version, before any of
//! their lines were read. The bars below only guard against regressions.

use std::sync::OnceLock;

use domain::CrisisLevel;
use safety::corpus;
use safety::model::{RiskModel, HEAD_BYTES};
use safety::{Classifier, DecidedBy};

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| {
        let model = RiskModel::load(&offline::testing::models_dir()).expect("the risk model loads");
        Classifier::with_model(model)
    })
}

/// Per-level figures of one set.
#[derive(Debug)]
struct Score {
    crisis_recall: f64,
    crisis_precision: f64,
    concern_caught: f64,
    none_as_crisis: f64,
}

fn score(name: &str, contents: &'static str) -> Score {
    let examples = corpus::parse(name, contents).expect("the set parses");
    let mut confusion = [[0usize; 3]; 3];
    let index = |l: CrisisLevel| l as usize;
    let mut missed = Vec::new();
    for example in &examples {
        let verdict = classifier().assess(example.text, &example.earlier);
        confusion[index(example.level)][index(verdict.level())] += 1;
        let costly = (example.level == CrisisLevel::Crisis
            && verdict.level() != CrisisLevel::Crisis)
            || (example.level == CrisisLevel::None && verdict.level() == CrisisLevel::Crisis);
        if costly {
            missed.push(format!(
                "  line {:>3}: expected {:<7} got {:<7} by {:<5} {:?}",
                example.line,
                example.level.as_str(),
                verdict.level().as_str(),
                verdict.decided_by.map_or("-", |d| d.as_str()),
                example.text
            ));
        }
    }
    let row = |l: CrisisLevel| confusion[index(l)].iter().sum::<usize>().max(1) as f64;
    let column =
        |l: CrisisLevel| confusion.iter().map(|r| r[index(l)]).sum::<usize>().max(1) as f64;
    let (none, concern, crisis) = (CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis);
    let s = Score {
        crisis_recall: confusion[2][2] as f64 / row(crisis),
        crisis_precision: confusion[2][2] as f64 / column(crisis),
        concern_caught: (confusion[1][1] + confusion[1][2]) as f64 / row(concern),
        none_as_crisis: confusion[0][2] as f64 / row(none),
    };
    println!(
        "\n{name}: {} utterances; confusion (rows expected none/concern/crisis) {confusion:?}",
        examples.len()
    );
    println!(
        "  crisis recall {:.3} precision {:.3} | concern caught {:.3} precision {:.3} | none recall {:.3}, none as crisis {:.3}",
        s.crisis_recall,
        s.crisis_precision,
        s.concern_caught,
        confusion[1][1] as f64 / column(concern),
        confusion[0][0] as f64 / row(none),
        s.none_as_crisis
    );
    for line in &missed {
        println!("{line}");
    }
    s
}

fn assert_no_worse_than(s: &Score, bar: &Score) {
    assert!(s.crisis_recall >= bar.crisis_recall, "{s:?}");
    assert!(s.none_as_crisis <= bar.none_as_crisis, "{s:?}");
    assert!(s.concern_caught >= bar.concern_caught, "{s:?}");
}

#[test]
fn the_sixteenth_blind_set() {
    let s = score("eval/blind16.tsv", include_str!("../eval/blind16.tsv"));
    assert_no_worse_than(&s, &SIXTEENTH_BLIND);
}

#[test]
fn the_seventeenth_blind_set() {
    let s = score("eval/blind17.tsv", include_str!("../eval/blind17.tsv"));
    assert_no_worse_than(&s, &SEVENTEENTH_BLIND);
}

#[test]
fn the_held_out_set() {
    let s = score("eval/holdout2.tsv", include_str!("../eval/holdout2.tsv"));
    assert!(s.crisis_recall >= HELD_OUT.crisis_recall, "{s:?}");
    assert!(s.none_as_crisis <= HELD_OUT.none_as_crisis, "{s:?}");
}

/// The rules were fitted to these; the model must not cost them any crisis.
#[test]
fn the_rules_tuning_sets_keep_every_crisis() {
    for (name, contents) in [
        (
            "eval/utterances.tsv",
            include_str!("../eval/utterances.tsv"),
        ),
        ("eval/holdout.tsv", include_str!("../eval/holdout.tsv")),
    ] {
        let s = score(name, contents);
        assert!(s.crisis_recall >= 0.98, "{name}: {s:?}");
    }
}

#[test]
fn the_model_reads_what_no_rule_names() {
    for text in [
        "i keep going up to the top floor of the parking garage",
        "i just want to sleep and not wake up",
        "make it permanent",
    ] {
        assert_eq!(
            safety::assess_by_rules(text, &[]).level,
            CrisisLevel::None,
            "{text}"
        );
        let verdict = classifier().assess(text, &[]);
        assert_eq!(verdict.level(), CrisisLevel::Crisis, "{text}");
        assert_eq!(verdict.decided_by, Some(DecidedBy::Model), "{text}");
        let nearest = verdict
            .reading
            .and_then(|r| r.nearest)
            .expect("a nearest example");
        assert_eq!(nearest.level, CrisisLevel::Crisis);
    }
    // What the rules set aside stays aside.
    let idiom = classifier().assess("this exam is killing me", &[]);
    assert_eq!(idiom.level(), CrisisLevel::None);
    let negated = classifier().assess("i would never kill myself", &[]);
    assert_eq!(negated.level(), CrisisLevel::Concern);
}

#[test]
fn earlier_turns_make_a_follow_up_a_crisis() {
    let verdict = classifier().assess("i have the pills right here", &["i cant do this anymore"]);
    assert_eq!(verdict.level(), CrisisLevel::Crisis);
    let moved_on = classifier().assess(
        "can we talk about my resume now",
        &["i have been so hopeless"],
    );
    assert_eq!(moved_on.level(), CrisisLevel::None);
}

/// The head was fitted to what a call computes: a conversation's last turn read in the light of
/// the one before it scores as its training vector does.
#[test]
fn a_call_reads_a_conversation_as_the_head_was_fitted_to_it() {
    let model = RiskModel::load(&offline::testing::models_dir()).expect("the risk model loads");
    let conversation = corpus::examples()
        .into_iter()
        .find(|e| !e.earlier.is_empty())
        .expect("the corpus has conversations");
    let trained =
        safety::model::training_vectors(model.encoder(), std::slice::from_ref(&conversation))
            .expect("encoding")
            .whole[0];
    let expected = model.head().scores(&trained);
    let read = model
        .read(conversation.text, &conversation.earlier, |_| true)
        .expect("reading")
        .with_context
        .expect("read in context");
    for (got, want) in [
        (read.none, expected.none),
        (read.concern, expected.concern),
        (read.crisis, expected.crisis),
    ] {
        assert!((got - want).abs() < 1e-4, "{read:?} against {expected:?}");
    }
}

/// A clinician's change to the corpus reaches the shipped head only through `counsel safety
/// train`; this proves the shipped head is what that command makes of this corpus: the same
/// corpus and adapters, and the same reading of every example (bit for bit on the machine that
/// trained it; within a little on a processor whose vector units sum in another order).
#[test]
fn fitting_the_corpus_again_gives_the_shipped_head() {
    let encoder = safety::model::load_encoder(&offline::testing::models_dir()).expect("encoder");
    let examples = corpus::examples();
    let training = safety::model::training_vectors(&encoder, &examples).expect("embedding");
    let head =
        safety::model::fit_head_to(&examples, &training, safety::model::adapters::SHIPPED_BYTES);
    let shipped = safety::model::Head::from_bytes(HEAD_BYTES).expect("the shipped head");
    assert!(
        head.fitted_to == shipped.fitted_to && head.bank.len() == shipped.bank.len(),
        "corpus/risk-head.bin was fitted to another corpus: run `counsel safety train`"
    );
    let difference = head.reading_difference(&shipped, &training.whole);
    println!(
        "refitted against shipped, over {} examples: {difference:?}",
        examples.len()
    );
    assert!(
        difference.largest < 0.05 && difference.other_level * 500 <= examples.len(),
        "corpus/risk-head.bin is not what `counsel safety train` makes of the corpus ({difference:?})"
    );
}

/// The one blind score of `eval/blind16.tsv` (the eleventh version): crisis recall 0.959, crisis
/// precision 0.931, concern caught 0.920, ordinary talk as crisis 0.020 (3 of 150).
const SIXTEENTH_BLIND: Score = Score {
    crisis_recall: 0.95,
    crisis_precision: 0.92,
    concern_caught: 0.91,
    none_as_crisis: 0.03,
};
/// The one blind score of `eval/blind17.tsv` (the eleventh version): crisis recall 0.959, crisis
/// precision 0.948, concern caught 0.980, ordinary talk as crisis 0.027 (4 of 150).
const SEVENTEENTH_BLIND: Score = Score {
    crisis_recall: 0.95,
    crisis_precision: 0.94,
    concern_caught: 0.97,
    none_as_crisis: 0.03,
};
const HELD_OUT: Score = Score {
    crisis_recall: 0.96,
    crisis_precision: 0.9,
    concern_caught: 1.0,
    none_as_crisis: 0.05,
};

//! The reviewed, labeled corpus the risk model's head is derived from (`corpus/*.tsv`).
//!
//! Each line is `level<TAB>signal<TAB>text`; `signal` is `-` exactly when `level` is `none`.
//! In `context.tsv` the text is a short conversation, earlier student turns first, separated by
//! ` || `; its label is the label of the last turn given the earlier ones. A clinician improves
//! the model by adding reviewed lines here and running `counsel safety train`.

use domain::{CrisisLevel, CrisisSignal};

/// The corpus files, compiled into the binary so the head and its corpus always travel together.
pub const FILES: &[(&str, &str)] = &[
    ("crisis.tsv", include_str!("../corpus/crisis.tsv")),
    ("concern.tsv", include_str!("../corpus/concern.tsv")),
    ("none.tsv", include_str!("../corpus/none.tsv")),
    ("context.tsv", include_str!("../corpus/context.tsv")),
    ("boundaries.tsv", include_str!("../corpus/boundaries.tsv")),
    ("rambles.tsv", include_str!("../corpus/rambles.tsv")),
    ("gaps.tsv", include_str!("../corpus/gaps.tsv")),
    (
        "retired-blind.tsv",
        include_str!("../corpus/retired-blind.tsv"),
    ),
    (
        "retired-blind2.tsv",
        include_str!("../corpus/retired-blind2.tsv"),
    ),
    (
        "retired-blind3.tsv",
        include_str!("../corpus/retired-blind3.tsv"),
    ),
    (
        "retired-blind4.tsv",
        include_str!("../corpus/retired-blind4.tsv"),
    ),
    (
        "retired-blind5.tsv",
        include_str!("../corpus/retired-blind5.tsv"),
    ),
    (
        "retired-blind6.tsv",
        include_str!("../corpus/retired-blind6.tsv"),
    ),
    (
        "retired-blind7.tsv",
        include_str!("../corpus/retired-blind7.tsv"),
    ),
    (
        "retired-blind8.tsv",
        include_str!("../corpus/retired-blind8.tsv"),
    ),
    (
        "retired-blind9.tsv",
        include_str!("../corpus/retired-blind9.tsv"),
    ),
    (
        "retired-blind10.tsv",
        include_str!("../corpus/retired-blind10.tsv"),
    ),
    (
        "retired-blind11.tsv",
        include_str!("../corpus/retired-blind11.tsv"),
    ),
    (
        "retired-blind12.tsv",
        include_str!("../corpus/retired-blind12.tsv"),
    ),
    (
        "retired-blind13.tsv",
        include_str!("../corpus/retired-blind13.tsv"),
    ),
    (
        "retired-blind14.tsv",
        include_str!("../corpus/retired-blind14.tsv"),
    ),
    (
        "retired-blind15.tsv",
        include_str!("../corpus/retired-blind15.tsv"),
    ),
    ("voices-a.tsv", include_str!("../corpus/voices-a.tsv")),
    ("voices-b.tsv", include_str!("../corpus/voices-b.tsv")),
    ("voices-c.tsv", include_str!("../corpus/voices-c.tsv")),
];

/// Separates the turns of a conversation in `context.tsv`.
pub const TURN_SEPARATOR: &str = " || ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example<'a> {
    /// Which file and line it came from, for reports.
    pub file: &'a str,
    pub line: usize,
    pub level: CrisisLevel,
    pub signal: Option<CrisisSignal>,
    /// The last turn (the one the label is about).
    pub text: &'a str,
    /// Earlier student turns, oldest first; empty outside `context.tsv`.
    pub earlier: Vec<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {problem}")]
pub struct CorpusError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

/// Parses one labeled file; comments (`#`) and blank lines are skipped.
pub fn parse<'a>(file: &'a str, contents: &'a str) -> Result<Vec<Example<'a>>, CorpusError> {
    let mut examples = Vec::new();
    for (index, raw) in contents.lines().enumerate() {
        let line = index + 1;
        let error = |problem: String| CorpusError {
            file: file.to_owned(),
            line,
            problem,
        };
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.split('\t').collect();
        let [level, signal, text] = fields[..] else {
            return Err(error(format!(
                "expected level<TAB>signal<TAB>text, found {} fields",
                fields.len()
            )));
        };
        let level =
            CrisisLevel::parse(level).ok_or_else(|| error(format!("unknown level {level:?}")))?;
        let signal = match signal {
            "-" => None,
            name => Some(
                CrisisSignal::parse(name)
                    .ok_or_else(|| error(format!("unknown signal {name:?}")))?,
            ),
        };
        if signal.is_none() != (level == CrisisLevel::None) {
            return Err(error(
                "a signal is required exactly when the level is not none".into(),
            ));
        }
        let mut turns: Vec<&str> = text.split(TURN_SEPARATOR).map(str::trim).collect();
        let text = turns.pop().unwrap_or_default();
        if text.is_empty() || turns.iter().any(|t| t.is_empty()) {
            return Err(error("empty utterance".into()));
        }
        examples.push(Example {
            file,
            line,
            level,
            signal,
            text,
            earlier: turns,
        });
    }
    Ok(examples)
}

/// Every example of the compiled-in corpus, in file order.
pub fn examples() -> Vec<Example<'static>> {
    FILES
        .iter()
        .flat_map(|(name, contents)| {
            parse(name, contents).unwrap_or_else(|e| panic!("corpus: {e}"))
        })
        .collect()
}

/// A fingerprint of the corpus text, recorded in the head so a stale head is noticed.
pub fn fingerprint() -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, contents) in FILES {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(contents.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_conversations() {
        let text = "# a comment\n\ncrisis\tplan_or_means\ti have the pills here\n\
                    crisis\tplan_or_means\ti cant do this || tonight\nnone\t-\tsure thing\n";
        let examples = parse("t.tsv", text).unwrap();
        assert_eq!(examples.len(), 3);
        assert_eq!(examples[1].earlier, vec!["i cant do this"]);
        assert_eq!(examples[1].text, "tonight");
        assert_eq!(examples[2].signal, None);
    }

    #[test]
    fn bad_lines_name_the_file_the_line_and_the_problem() {
        let err = parse("t.tsv", "none\tself_harm\thi").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.tsv line 1: a signal is required exactly when the level is not none"
        );
        let err = parse("t.tsv", "ok\n").unwrap_err();
        assert!(err
            .to_string()
            .contains("expected level<TAB>signal<TAB>text"));
        assert!(parse("t.tsv", "bad\t-\thi")
            .unwrap_err()
            .problem
            .contains("unknown level"));
    }

    #[test]
    fn the_compiled_in_corpus_parses() {
        let examples = examples();
        assert!(
            examples.len() >= 2000,
            "the corpus has {} examples; at least 2000 are required",
            examples.len()
        );
        for level in [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis] {
            assert!(examples.iter().any(|e| e.level == level));
        }
    }
}

//! The reviewers' checker: utterances in, one JSON verdict per line out.

use std::io::{self, BufRead, Write};

use crate::{Classifier, Verdict};

/// Reads utterances one per line and writes one JSON object per line:
/// `{"text", "level": "none"|"concern"|"crisis", "signal": "suicidal_ideation"|…|null,
/// "decided_by": "rule"|"model"|"both"|null, "rule", "model": {"crisis", "concern", "nearest",
/// "nearest_level", "similarity"}|null}`.
///
/// Each line is judged on its own (no context from earlier lines). Blank lines are skipped;
/// a line that is not valid UTF-8 is an `InvalidData` error naming its line number.
pub fn check_lines(
    classifier: &Classifier,
    input: impl BufRead,
    mut output: impl Write,
) -> io::Result<()> {
    // Lines are judged in small batches: one pass of the encoder for several lines is much
    // cheaper than one each, and a reviewer piping a file in still sees output as it goes.
    const BATCH: usize = 16;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<String>, output: &mut dyn Write| -> io::Result<()> {
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        for (text, verdict) in texts.iter().zip(classifier.assess_each(&texts)) {
            writeln!(output, "{}", report(text, &verdict))?;
        }
        batch.clear();
        Ok(())
    };
    for (index, line) in input.split(b'\n').enumerate() {
        let bytes = line?;
        let text = String::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {} is not valid UTF-8", index + 1),
            )
        })?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        batch.push(text.to_owned());
        if batch.len() == BATCH {
            flush(&mut batch, &mut output)?;
        }
    }
    flush(&mut batch, &mut output)?;
    output.flush()
}

fn report(text: &str, verdict: &Verdict) -> serde_json::Value {
    let assessment = &verdict.assessment;
    let model = verdict.reading.map(|reading| {
        let round = |p: f32| (f64::from(p) * 1000.0).round() / 1000.0;
        serde_json::json!({
            "crisis": round(reading.alone.crisis),
            "concern": round(reading.alone.concern),
            "in_context_crisis": reading.with_context.map(|c| round(c.crisis)),
            "nearest": reading.nearest.map(|n| n.text),
            "nearest_level": reading.nearest.map(|n| n.level.as_str()),
            "similarity": reading.nearest.map(|n| round(n.similarity)),
        })
    });
    serde_json::json!({
        "text": text,
        "level": assessment.level.as_str(),
        "signal": assessment.signal.map(|s| s.as_str()),
        "decided_by": verdict.decided_by.map(|d| d.as_str()),
        "rule": assessment.rule,
        "model": model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8]) -> io::Result<String> {
        let mut out = Vec::new();
        check_lines(&Classifier::rules_only(), input, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn one_json_object_per_utterance() {
        let out =
            check(b"i want to die\n\nthis exam is killing me\r\nmy friend wants to die").unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["level"], "crisis");
        assert_eq!(lines[0]["signal"], "suicidal_ideation");
        assert_eq!(lines[0]["decided_by"], "rule");
        assert_eq!(lines[0]["model"], serde_json::Value::Null);
        assert_eq!(
            lines[1],
            serde_json::json!({"text": "this exam is killing me", "level": "none", "signal": null,
                "decided_by": null, "rule": null, "model": null})
        );
        assert_eq!(lines[2]["signal"], "third_party_risk");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = check(b"fine\n\xff\xfe\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2"));
    }
}

//! The reviewers' checker: utterances in, one JSON verdict per line out.

use std::io::{self, BufRead, Write};

use crate::classify::assess_alone;

/// Reads utterances one per line and writes one JSON object per line:
/// `{"text": "...", "level": "none"|"concern"|"crisis", "signal": "suicidal_ideation"|...|null}`.
///
/// Each line is judged on its own (no context from earlier lines). Blank lines are skipped;
/// a line that is not valid UTF-8 is an `InvalidData` error naming its line number.
pub fn check_lines(input: impl BufRead, mut output: impl Write) -> io::Result<()> {
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
        let assessment = assess_alone(text);
        let verdict = serde_json::json!({
            "text": text,
            "level": assessment.level.as_str(),
            "signal": assessment.signal.map(|s| s.as_str()),
        });
        writeln!(output, "{verdict}")?;
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8]) -> io::Result<String> {
        let mut out = Vec::new();
        check_lines(input, &mut out)?;
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
        assert_eq!(
            lines[0],
            serde_json::json!({"text": "i want to die", "level": "crisis", "signal": "suicidal_ideation"})
        );
        assert_eq!(
            lines[1],
            serde_json::json!({"text": "this exam is killing me", "level": "none", "signal": null})
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

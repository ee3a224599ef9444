use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::UnknownValue;

/// Who said a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Student,
    Counselor,
}

impl Speaker {
    pub const fn as_str(self) -> &'static str {
        match self {
            Speaker::Student => "student",
            Speaker::Counselor => "counselor",
        }
    }

    /// The label used in downloaded transcripts.
    pub const fn label(self) -> &'static str {
        match self {
            Speaker::Student => "Student",
            Speaker::Counselor => "Counselor",
        }
    }
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Speaker {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "student" => Ok(Speaker::Student),
            "counselor" => Ok(Speaker::Counselor),
            _ => Err(UnknownValue {
                kind: "speaker",
                value: s.to_owned(),
                expected: "student, counselor",
            }),
        }
    }
}

/// Words somebody said during a session.
///
/// Its `Debug` form never shows the words: transcript text is private to the student and must
/// not reach logs by accident (`{:?}` on a struct that holds one is safe).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TranscriptText(String);

impl TranscriptText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for TranscriptText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TranscriptText(<{} chars>)", self.0.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_words() {
        let t = TranscriptText::new("I feel hopeless");
        assert_eq!(format!("{t:?}"), "TranscriptText(<15 chars>)");
    }
}

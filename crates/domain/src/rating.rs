use serde::{Deserialize, Serialize};
use std::fmt;

use crate::TranscriptText;

/// How helpful a student found a finished session: 1 (not at all) to 5 (very). Only values in
/// range exist, so a stored or sent rating never needs checking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Rating(u8);

/// Why a rating or its comment was refused. The text is written for the student and names no
/// part of the comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("must be a whole number from {} to {}", Rating::MIN, Rating::MAX)]
    OutOfRange,
    #[error("must be at most {} characters", RatingComment::MAX_CHARS)]
    CommentTooLong,
}

impl Rating {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 5;

    pub fn new(value: i64) -> Result<Rating, RatingError> {
        u8::try_from(value)
            .ok()
            .filter(|v| (Self::MIN..=Self::MAX).contains(v))
            .map(Rating)
            .ok_or(RatingError::OutOfRange)
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Rating {
    type Error = RatingError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Rating::new(value)
    }
}

impl From<Rating> for u8 {
    fn from(rating: Rating) -> u8 {
        rating.0
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, Self::MAX)
    }
}

/// What a student wrote beside a rating: trimmed, not empty, at most [`RatingComment::MAX_CHARS`]
/// characters. It is as private as the transcript (stored encrypted, shown to its owner only),
/// so like [`TranscriptText`] its `Debug` form never shows the words.
#[derive(Clone, PartialEq, Eq)]
pub struct RatingComment(TranscriptText);

impl RatingComment {
    pub const MAX_CHARS: usize = 500;

    /// The comment as sent; a blank one is no comment (`None`).
    pub fn parse(raw: &str) -> Result<Option<RatingComment>, RatingError> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(RatingError::CommentTooLong);
        }
        Ok(Some(RatingComment(TranscriptText::new(text))))
    }

    /// The words, as the transcript cipher takes them.
    pub fn as_text(&self) -> &TranscriptText {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl fmt::Debug for RatingComment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RatingComment(<{} chars>)",
            self.0.as_str().chars().count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_to_five_is_a_rating() {
        for v in 1..=5 {
            assert_eq!(Rating::new(v).unwrap().get(), v as u8);
        }
        for v in [0, 6, -1, 256, 261, i64::MAX, i64::MIN] {
            assert_eq!(Rating::new(v), Err(RatingError::OutOfRange), "{v}");
        }
    }

    #[test]
    fn a_rating_is_a_plain_number_in_json() {
        assert_eq!(serde_json::to_value(Rating::new(4).unwrap()).unwrap(), 4);
        assert_eq!(
            serde_json::from_str::<Rating>("3").unwrap(),
            Rating::new(3).unwrap()
        );
        let refused = serde_json::from_str::<Rating>("9").unwrap_err().to_string();
        assert!(refused.contains("from 1 to 5"), "{refused}");
        assert!(serde_json::from_str::<Rating>("4.5").is_err());
        assert!(serde_json::from_str::<Rating>("\"4\"").is_err());
    }

    #[test]
    fn comments_are_trimmed_bounded_and_blank_is_none() {
        assert_eq!(RatingComment::parse("  \n "), Ok(None));
        let c = RatingComment::parse("  it helped  ").unwrap().unwrap();
        assert_eq!(c.as_str(), "it helped");
        let longest = "é".repeat(RatingComment::MAX_CHARS);
        assert!(RatingComment::parse(&longest).unwrap().is_some());
        assert_eq!(
            RatingComment::parse(&format!("{longest}x")),
            Err(RatingError::CommentTooLong)
        );
    }

    #[test]
    fn debug_hides_the_comment() {
        let c = RatingComment::parse("I feel hopeless").unwrap().unwrap();
        assert_eq!(format!("{c:?}"), "RatingComment(<15 chars>)");
    }
}

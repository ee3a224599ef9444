use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// How the student talks to the counselor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    Voice,
    Video,
}

impl SessionMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionMode::Voice => "voice",
            SessionMode::Video => "video",
        }
    }
}

impl fmt::Display for SessionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionMode {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "voice" => Ok(SessionMode::Voice),
            "video" => Ok(SessionMode::Video),
            _ => Err(UnknownValue {
                kind: "mode",
                value: s.to_owned(),
                expected: "voice, video",
            }),
        }
    }
}

/// Call quality as shown to the student, derived from round-trip time and packet loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionQuality {
    Excellent,
    Good,
    Fair,
    Poor,
}

impl ConnectionQuality {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionQuality::Excellent => "excellent",
            ConnectionQuality::Good => "good",
            ConnectionQuality::Fair => "fair",
            ConnectionQuality::Poor => "poor",
        }
    }

    /// Grades a link by round-trip time (ms) and packet loss (fraction 0..1).
    pub fn from_link(rtt_ms: f64, loss: f64) -> Self {
        if rtt_ms < 150.0 && loss < 0.01 {
            ConnectionQuality::Excellent
        } else if rtt_ms < 300.0 && loss < 0.03 {
            ConnectionQuality::Good
        } else if rtt_ms < 500.0 && loss < 0.08 {
            ConnectionQuality::Fair
        } else {
            ConnectionQuality::Poor
        }
    }
}

impl FromStr for ConnectionQuality {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "excellent" => Ok(Self::Excellent),
            "good" => Ok(Self::Good),
            "fair" => Ok(Self::Fair),
            "poor" => Ok(Self::Poor),
            _ => Err(UnknownValue {
                kind: "connection quality",
                value: s.to_owned(),
                expected: "excellent, good, fair, poor",
            }),
        }
    }
}

/// What the counselor bot is doing right now, shown on the call screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotState {
    Listening,
    Thinking,
    Speaking,
}

impl BotState {
    pub const fn as_str(self) -> &'static str {
        match self {
            BotState::Listening => "listening",
            BotState::Thinking => "thinking",
            BotState::Speaking => "speaking",
        }
    }
}

impl FromStr for BotState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "listening" => Ok(Self::Listening),
            "thinking" => Ok(Self::Thinking),
            "speaking" => Ok(Self::Speaking),
            _ => Err(UnknownValue {
                kind: "bot state",
                value: s.to_owned(),
                expected: "listening, thinking, speaking",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_grades() {
        assert_eq!(
            ConnectionQuality::from_link(40.0, 0.0),
            ConnectionQuality::Excellent
        );
        assert_eq!(
            ConnectionQuality::from_link(200.0, 0.0),
            ConnectionQuality::Good
        );
        assert_eq!(
            ConnectionQuality::from_link(100.0, 0.05),
            ConnectionQuality::Fair
        );
        assert_eq!(
            ConnectionQuality::from_link(900.0, 0.0),
            ConnectionQuality::Poor
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!("voice".parse::<SessionMode>().unwrap(), SessionMode::Voice);
        assert!("audio".parse::<SessionMode>().is_err());
    }
}

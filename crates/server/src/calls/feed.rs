//! What a call shows on the student's screen, fanned out to every open transcript WebSocket.
//!
//! A socket that connects late (a page reload mid-call) first gets everything that matters so
//! far — final transcript lines, a crisis alert, the end — and then the live stream.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::{BotState, ConnectionQuality, CrisisLevel, Speaker, TranscriptText};
use serde::Serialize;
use tokio::sync::broadcast;

/// Messages buffered per subscriber before a slow socket starts missing live ones.
const LIVE_BUFFER: usize = 256;
/// Replayable messages kept per call (a long session has a few hundred lines).
const HISTORY_LIMIT: usize = 4_000;

/// One WebSocket message, as JSON `{"type": ..., ...}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    Transcript {
        speaker: Speaker,
        text: TranscriptText,
        is_final: bool,
        sequence: u64,
        timestamp: DateTime<Utc>,
        /// A counselor line cut short by the student; the text is what was heard.
        interrupted: bool,
    },
    CrisisAlert {
        level: CrisisLevel,
        resources: CrisisResources,
    },
    ConnectionQuality {
        quality: ConnectionQuality,
    },
    BotState {
        state: BotState,
    },
    SessionEnded {
        reason: &'static str,
    },
}

/// The help a crisis alert puts on screen, kept beside the spoken crisis message's wording.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CrisisResources {
    pub lifeline: &'static str,
    pub call_or_text: &'static str,
    pub chat: &'static str,
    pub emergency: &'static str,
}

impl CrisisResources {
    pub const US: CrisisResources = CrisisResources {
        lifeline: "988 Suicide & Crisis Lifeline",
        call_or_text: "988",
        chat: "https://988lifeline.org",
        emergency: "911",
    };
}

impl LiveMessage {
    /// Whether a socket that connects later must still see this message.
    fn is_replayed(&self) -> bool {
        match self {
            LiveMessage::Transcript { is_final, .. } => *is_final,
            LiveMessage::CrisisAlert { .. } | LiveMessage::SessionEnded { .. } => true,
            LiveMessage::ConnectionQuality { .. } | LiveMessage::BotState { .. } => false,
        }
    }
}

/// A call's live feed.
pub struct Feed {
    inner: Mutex<FeedInner>,
}

struct FeedInner {
    history: Vec<LiveMessage>,
    live: broadcast::Sender<LiveMessage>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            inner: Mutex::new(FeedInner {
                history: Vec::new(),
                live,
            }),
        }
    }

    pub fn publish(&self, message: LiveMessage) {
        let mut inner = self.inner.lock().expect("feed lock");
        if message.is_replayed() && inner.history.len() < HISTORY_LIMIT {
            inner.history.push(message.clone());
        }
        // No subscribers is fine: nobody is watching right now.
        let _ = inner.live.send(message);
    }

    /// Everything replayable so far, and the live stream from exactly that point on (taken under
    /// one lock, so nothing falls between the two or arrives twice).
    pub fn subscribe(&self) -> (Vec<LiveMessage>, broadcast::Receiver<LiveMessage>) {
        let inner = self.inner.lock().expect("feed lock");
        (inner.history.clone(), inner.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sequence: u64, is_final: bool) -> LiveMessage {
        LiveMessage::Transcript {
            speaker: Speaker::Student,
            text: TranscriptText::new("hello"),
            is_final,
            sequence,
            timestamp: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            interrupted: false,
        }
    }

    #[test]
    fn a_late_subscriber_gets_final_lines_then_live_ones() {
        let feed = Feed::new();
        feed.publish(line(1, false));
        feed.publish(line(1, true));
        feed.publish(LiveMessage::BotState {
            state: BotState::Thinking,
        });
        let (history, mut live) = feed.subscribe();
        assert_eq!(history, vec![line(1, true)]);
        feed.publish(line(2, true));
        assert_eq!(live.try_recv().unwrap(), line(2, true));
    }

    #[test]
    fn messages_serialize_with_their_type() {
        let json = serde_json::to_value(LiveMessage::BotState {
            state: BotState::Speaking,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "bot_state", "state": "speaking"})
        );
        let json = serde_json::to_value(line(3, true)).unwrap();
        assert_eq!(json["type"], "transcript");
        assert_eq!(json["speaker"], "student");
        assert_eq!(json["text"], "hello");
        assert_eq!(json["sequence"], 3);
    }
}

//! What a call shows on the student's screen, fanned out to every open transcript WebSocket.
//!
//! A socket that connects late (a page reload mid-call) first gets everything that matters so
//! far — final transcript lines, a crisis alert, the end — and then the live stream. One that
//! reconnects after a network blip names the last final line it saw and gets only what came
//! after it.

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

    /// The sequence number of a final transcript line.
    fn final_sequence(&self) -> Option<u64> {
        match self {
            LiveMessage::Transcript {
                is_final: true,
                sequence,
                ..
            } => Some(*sequence),
            _ => None,
        }
    }
}

/// The part of a replay a screen has not seen, when the last final line it saw was `after`.
///
/// Lines are numbered when they start, so a counselor's line cut short by the student becomes
/// final just after the student's (higher-numbered) line: the resume point is where line `after`
/// stands in the replay, not its number. A number the replay does not hold (not a line of this
/// call, or one past the replay's limit) resumes with every final line numbered above it, the
/// crisis alert and the end.
fn replay_after(history: &[LiveMessage], after: u64) -> Vec<LiveMessage> {
    match history
        .iter()
        .position(|m| m.final_sequence() == Some(after))
    {
        Some(seen) => history[seen + 1..].to_vec(),
        None => history
            .iter()
            .filter(|m| m.final_sequence().is_none_or(|sequence| sequence > after))
            .cloned()
            .collect(),
    }
}

/// What a screen is first sent for one of its sessions whose call does not run on this node (it
/// runs on another, ran on a node that stopped, or finished long ago): the stored final lines
/// after `after`, the crisis alert when one was raised, and the end when it has ended, as a live
/// call's replay would have them.
pub fn replay_of_stored(detail: &store::SessionDetail, after: Option<u64>) -> Vec<LiveMessage> {
    let mut history: Vec<LiveMessage> = detail
        .messages
        .iter()
        .filter(|m| m.is_final)
        .map(|m| LiveMessage::Transcript {
            speaker: m.speaker,
            text: m.text.clone(),
            is_final: true,
            sequence: u64::from(m.sequence),
            timestamp: m.timestamp,
            interrupted: false,
        })
        .collect();
    if detail.record.crisis_detected {
        history.push(LiveMessage::CrisisAlert {
            level: CrisisLevel::Crisis,
            resources: CrisisResources::US,
        });
    }
    if !detail.record.is_active() {
        history.push(LiveMessage::SessionEnded {
            reason: detail
                .record
                .end_reason
                .unwrap_or(store::SessionEndReason::Ended)
                .as_str(),
        });
    }
    match after {
        Some(after) => replay_after(&history, after),
        None => history,
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
        self.resume(None)
    }

    /// As [`Feed::subscribe`], for a screen that already saw every message up to the final line
    /// numbered `after` (none: it saw nothing).
    pub fn resume(
        &self,
        after: Option<u64>,
    ) -> (Vec<LiveMessage>, broadcast::Receiver<LiveMessage>) {
        let inner = self.inner.lock().expect("feed lock");
        let replay = match after {
            Some(after) => replay_after(&inner.history, after),
            None => inner.history.clone(),
        };
        (replay, inner.live.subscribe())
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

    fn alert() -> LiveMessage {
        LiveMessage::CrisisAlert {
            level: CrisisLevel::Crisis,
            resources: CrisisResources::US,
        }
    }

    #[test]
    fn a_reconnecting_screen_gets_only_what_came_after_its_last_line() {
        let feed = Feed::new();
        for message in [
            line(1, true),
            line(2, true),
            alert(),
            line(3, false),
            line(3, true),
        ] {
            feed.publish(message);
        }
        assert_eq!(
            feed.resume(Some(1)).0,
            vec![line(2, true), alert(), line(3, true)]
        );
        assert_eq!(feed.resume(Some(2)).0, vec![alert(), line(3, true)]);
        assert_eq!(feed.resume(Some(3)).0, vec![]);
        assert_eq!(feed.resume(None).0, feed.subscribe().0);
        let (_, mut live) = feed.resume(Some(3));
        feed.publish(line(4, true));
        assert_eq!(live.try_recv().unwrap(), line(4, true));
    }

    #[test]
    fn the_resume_point_is_the_lines_place_not_its_number() {
        // Line 2 (the counselor's, cut short) became final after line 3 (the student's).
        let feed = Feed::new();
        for message in [line(1, true), line(3, true), line(2, true), line(4, true)] {
            feed.publish(message);
        }
        assert_eq!(feed.resume(Some(3)).0, vec![line(2, true), line(4, true)]);
        assert_eq!(feed.resume(Some(2)).0, vec![line(4, true)]);
    }

    #[test]
    fn an_unknown_resume_point_replays_the_lines_above_it_and_the_alert() {
        let feed = Feed::new();
        for message in [line(1, true), alert(), line(5, true)] {
            feed.publish(message);
        }
        assert_eq!(feed.resume(Some(3)).0, vec![alert(), line(5, true)]);
        assert_eq!(feed.resume(Some(99)).0, vec![alert()]);
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

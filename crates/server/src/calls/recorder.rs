//! Turns a call's events into the session record and the student's screen.
//!
//! Every final line is written the moment it arrives (idempotent on session + sequence), so a
//! crash loses nothing already said. A student line that signals crisis puts the crisis alert on
//! screen at once and is flagged for review. When the call ends, the session is finalized.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use agent::{AgentEvent, EndReason, TranscriptLine};
use chrono::{DateTime, Utc};
use domain::{
    ConnectionQuality, CrisisLevel, DecidedBy, SessionId, Speaker, TranscriptText, UserId, Username,
};
use store::{NewCrisisEvent, NewMessage, Store, StoreError};
use tokio::sync::mpsc;

use super::feed::{CrisisResources, Feed, LiveMessage};
use crate::crisis_desk::{CrisisDesk, FlaggedEvent};

/// Student turns kept as context for the safety assessment.
const SAFETY_CONTEXT_TURNS: usize = 4;
/// Pauses between attempts at a failed write (the database may be failing over).
const WRITE_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

pub struct Recorder {
    pub session_id: SessionId,
    /// When the agent started the call: its lines' times are offsets from this moment.
    pub started_at: DateTime<Utc>,
    pub store: Store,
    pub feed: Arc<Feed>,
    /// The session's student, named on the staff page.
    pub student_id: UserId,
    pub student: Username,
    /// Where stored crisis events go to staff on duty.
    pub desk: CrisisDesk,
}

impl Recorder {
    /// Consumes the call's events until it ends; returns why it ended.
    pub async fn run(self, mut events: mpsc::Receiver<AgentEvent>) -> EndReason {
        let mut recent_student_turns: VecDeque<String> = VecDeque::new();
        let mut quality: Option<ConnectionQuality> = None;
        let reason = loop {
            let Some(event) = events.recv().await else {
                // The call vanished without its final event (runtime shutdown).
                break EndReason::Failed("call stopped without reporting its end".into());
            };
            match event {
                AgentEvent::Transcript(line) => {
                    self.transcript(line, &mut recent_student_turns).await
                }
                AgentEvent::BotState(state) => self.feed.publish(LiveMessage::BotState { state }),
                AgentEvent::ConnectionQuality(q) => {
                    quality = Some(q);
                    self.feed
                        .publish(LiveMessage::ConnectionQuality { quality: q });
                }
                AgentEvent::TurnMetrics(m) => tracing::debug!(
                    session_id = %self.session_id,
                    llm_first_token_ms = m.llm_first_token.map(|d| d.as_millis() as u64),
                    tts_first_audio_ms = m.tts_first_audio.map(|d| d.as_millis() as u64),
                    voice_to_voice_ms = m.student_stop_to_bot_audio.map(|d| d.as_millis() as u64),
                    "turn"
                ),
                AgentEvent::Error(e) => {
                    tracing::warn!(session_id = %self.session_id, stage = ?e.stage, error = %e.message, "call error")
                }
                AgentEvent::Ended(reason) => break reason,
            }
        };
        self.finish(&reason, quality).await;
        reason
    }

    async fn transcript(&self, line: TranscriptLine, recent_student_turns: &mut VecDeque<String>) {
        let timestamp = self.started_at + chrono::Duration::from_std(line.at).unwrap_or_default();
        self.feed.publish(LiveMessage::Transcript {
            speaker: line.speaker,
            text: TranscriptText::new(line.text.clone()),
            is_final: line.is_final,
            sequence: line.seq,
            timestamp,
            interrupted: line.interrupted,
        });
        if !line.is_final {
            return;
        }
        let Ok(sequence) = u32::try_from(line.seq) else {
            tracing::error!(session_id = %self.session_id, seq = line.seq, "transcript sequence out of range; line not stored");
            return;
        };

        if line.speaker == Speaker::Student {
            let context: Vec<&str> = recent_student_turns.iter().map(String::as_str).collect();
            let assessment = safety::assess(&line.text, &context);
            if assessment.level == CrisisLevel::Crisis {
                // On screen first: storing can wait a few milliseconds, the student cannot.
                self.feed.publish(LiveMessage::CrisisAlert {
                    level: assessment.level,
                    resources: CrisisResources::US,
                });
            }
            if let (CrisisLevel::Concern | CrisisLevel::Crisis, Some(signal)) =
                (assessment.level, assessment.signal)
            {
                let event = NewCrisisEvent {
                    session_id: self.session_id,
                    sequence,
                    level: assessment.level,
                    signal,
                    // Until the classifier reports its verdict's source, the phrase rules decide.
                    decided_by: Some(DecidedBy::Rule),
                };
                let stored = self
                    .write("crisis event", || {
                        self.store.record_crisis_event(event.clone())
                    })
                    .await;
                if let Some(record) = stored {
                    self.desk.flagged(FlaggedEvent::stored(
                        &record,
                        self.student_id,
                        self.student.clone(),
                        TranscriptText::new(line.text.clone()),
                    ));
                }
                tracing::warn!(session_id = %self.session_id, level = %assessment.level, signal = %signal, "student utterance flagged for review");
            }
            recent_student_turns.push_back(line.text.clone());
            if recent_student_turns.len() > SAFETY_CONTEXT_TURNS {
                recent_student_turns.pop_front();
            }
        }

        let message = NewMessage {
            sequence,
            speaker: line.speaker,
            text: TranscriptText::new(line.text),
            is_final: true,
            timestamp,
        };
        self.write("transcript line", || {
            self.store.append_message(self.session_id, message.clone())
        })
        .await;
    }

    async fn finish(&self, reason: &EndReason, quality: Option<ConnectionQuality>) {
        let ended_at = Utc::now().max(self.started_at);
        self.write("session end", || {
            self.store.end_session(self.session_id, ended_at, quality)
        })
        .await;
        self.feed.publish(LiveMessage::SessionEnded {
            reason: reason.as_str(),
        });
        tracing::info!(session_id = %self.session_id, reason = reason.as_str(), "call ended");
    }

    /// Writes with a few retries; a write that still fails is logged (never with its text) and
    /// the call goes on. Returns what was stored, if it was.
    async fn write<T, F, Fut>(&self, what: &'static str, attempt: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut pauses = WRITE_RETRIES.iter();
        loop {
            match attempt().await {
                Ok(stored) => return Some(stored),
                Err(StoreError::Unavailable(_)) if pauses.len() > 0 => {
                    tokio::time::sleep(*pauses.next().expect("checked len")).await;
                }
                Err(error) => {
                    tracing::error!(session_id = %self.session_id, what, %error, "could not store call data");
                    return None;
                }
            }
        }
    }
}

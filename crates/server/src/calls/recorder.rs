//! Turns a call's events into the session record and the student's screen.
//!
//! Every final line is written the moment it arrives (idempotent on session + sequence), so a
//! crash loses nothing already said. The safety hook's verdict on each student line arrives on a
//! channel of its own: a crisis puts the crisis alert on screen at once, and a crisis or concern
//! is flagged for review. It is the verdict that chose the counselor's reply, never a second
//! opinion. When the call ends, the session is finalized. Each line stored, the alert, the bot's
//! state and the end are also announced to the other nodes, whose screens may follow the call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::{AgentEvent, EndReason, TranscriptLine};
use chrono::{DateTime, Utc};
use domain::{ConnectionQuality, CrisisLevel, NodeId, SessionId, TranscriptText, UserId, Username};
use store::{LiveChange, NewCrisisEvent, NewMessage, SessionEndReason, Store, StoreError};
use tokio::sync::mpsc;

use super::feed::{CrisisResources, Feed, LiveMessage};
use super::safety_hook::JudgedUtterance;
use crate::crisis_desk::{CrisisDesk, FlaggedEvent};

/// How long a call that has ended may still deliver verdicts on its last lines.
const VERDICT_DRAIN: Duration = Duration::from_secs(5);
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
    /// The node running the call: the other nodes' staff pages show its crisis events too.
    pub node: NodeId,
    /// Set while the server shuts down: a call that ends then ended for that reason.
    pub draining: Arc<AtomicBool>,
}

impl Recorder {
    /// Consumes the call's events and the safety verdicts on its lines until it ends; returns why
    /// it ended.
    pub async fn run(
        self,
        mut events: mpsc::Receiver<AgentEvent>,
        mut verdicts: mpsc::UnboundedReceiver<JudgedUtterance>,
    ) -> EndReason {
        let mut quality: Option<ConnectionQuality> = None;
        let reason = loop {
            let event = tokio::select! {
                // A verdict first: the alert is what the student must see soonest.
                biased;
                Some(judged) = verdicts.recv() => {
                    self.judged(judged).await;
                    continue;
                }
                event = events.recv() => event,
            };
            let Some(event) = event else {
                // The call vanished without its final event (runtime shutdown).
                break EndReason::Failed("call stopped without reporting its end".into());
            };
            match event {
                AgentEvent::Transcript(line) => self.transcript(line).await,
                AgentEvent::BotState(state) => {
                    self.feed.publish(LiveMessage::BotState { state });
                    self.announce(LiveChange::BotState(state)).await;
                }
                AgentEvent::ConnectionQuality(q) => {
                    quality = Some(q);
                    self.feed
                        .publish(LiveMessage::ConnectionQuality { quality: q });
                    self.announce(LiveChange::ConnectionQuality(q)).await;
                }
                AgentEvent::TurnMetrics(m) => {
                    crate::metrics::METRICS.turn(&m);
                    tracing::debug!(
                        session_id = %self.session_id,
                        llm_first_token_ms = m.llm_first_token.map(domain::millis),
                        tts_first_audio_ms = m.tts_first_audio.map(domain::millis),
                        voice_to_voice_ms = m.student_stop_to_bot_audio.map(domain::millis),
                        "turn"
                    )
                }
                AgentEvent::Error(e) => {
                    crate::metrics::METRICS.service_error(e.stage);
                    tracing::warn!(session_id = %self.session_id, stage = ?e.stage, error = %e.message, "call error")
                }
                AgentEvent::Ended(reason) => break reason,
            }
        };
        // The verdict on the last line may still be on its way: the hook finishes its review even
        // after the call ends, then lets go of the channel.
        while let Ok(Some(judged)) = tokio::time::timeout(VERDICT_DRAIN, verdicts.recv()).await {
            self.judged(judged).await;
        }
        self.finish(&reason, quality).await;
        reason
    }

    /// Stores a final line before any screen is sent it, so that a crash (kill -9, a lost
    /// machine) never takes a line the student saw; a line still being spoken is only shown.
    /// A line is shown even when it could not be stored (that is logged): the student heard it.
    async fn transcript(&self, line: TranscriptLine) {
        let timestamp = self.started_at + chrono::Duration::from_std(line.at).unwrap_or_default();
        let stored = if line.is_final {
            self.store_line(&line, timestamp).await
        } else {
            None
        };
        self.feed.publish(LiveMessage::Transcript {
            speaker: line.speaker,
            text: TranscriptText::new(line.text),
            is_final: line.is_final,
            sequence: line.seq,
            timestamp,
            interrupted: line.interrupted,
        });
        if let Some(sequence) = stored {
            self.announce(LiveChange::Line { sequence }).await;
        }
    }

    /// Writes a final line; its sequence number once it is stored.
    async fn store_line(&self, line: &TranscriptLine, timestamp: DateTime<Utc>) -> Option<u32> {
        let Ok(sequence) = u32::try_from(line.seq) else {
            tracing::error!(session_id = %self.session_id, seq = line.seq, "transcript sequence out of range; line not stored");
            return None;
        };
        let message = NewMessage {
            sequence,
            speaker: line.speaker,
            text: TranscriptText::new(line.text.clone()),
            is_final: true,
            timestamp,
        };
        self.write("transcript line", || {
            self.store.append_message(self.session_id, message.clone())
        })
        .await
        .map(|_| sequence)
    }

    /// Acts on the safety verdict for one student line.
    async fn judged(&self, judged: JudgedUtterance) {
        let assessment = judged.verdict.assessment;
        crate::metrics::METRICS.verdict(assessment.level);
        if assessment.level == CrisisLevel::Crisis {
            // On screen first: storing can wait a few milliseconds, the student cannot.
            self.feed.publish(LiveMessage::CrisisAlert {
                level: assessment.level,
                resources: CrisisResources::US,
            });
        }
        let (CrisisLevel::Concern | CrisisLevel::Crisis, Some(signal)) =
            (assessment.level, assessment.signal)
        else {
            return;
        };
        let Ok(sequence) = u32::try_from(judged.sequence) else {
            tracing::error!(session_id = %self.session_id, seq = judged.sequence, "verdict sequence out of range; not stored");
            return;
        };
        let event = NewCrisisEvent {
            session_id: self.session_id,
            sequence,
            level: assessment.level,
            signal,
            decided_by: judged.verdict.decided_by,
        };
        let stored = self
            .write("crisis event", || {
                self.store.record_crisis_event(event.clone())
            })
            .await;
        if assessment.level == CrisisLevel::Crisis {
            // After storing, so that a screen elsewhere that joins meanwhile finds it stored.
            self.announce(LiveChange::Crisis).await;
        }
        if let Some(record) = stored {
            self.desk.flagged(FlaggedEvent::stored(
                &record,
                self.student_id,
                self.student.clone(),
                judged.text,
            ));
            self.announce(LiveChange::Flagged {
                event: record.id,
                by: self.node,
            })
            .await;
        }
        tracing::warn!(
            session_id = %self.session_id,
            level = %assessment.level,
            signal = %signal,
            decided_by = judged.verdict.decided_by.map(|d| d.as_str()),
            "student utterance flagged for review"
        );
    }

    async fn finish(&self, reason: &EndReason, quality: Option<ConnectionQuality>) {
        let ended_at = Utc::now().max(self.started_at);
        let stored_reason = if self.draining.load(Ordering::SeqCst) {
            SessionEndReason::ServerShutdown
        } else {
            match reason {
                EndReason::Ended => SessionEndReason::Ended,
                EndReason::TransportClosed => SessionEndReason::TransportClosed,
                EndReason::IdleTimeout => SessionEndReason::IdleTimeout,
                EndReason::Failed(_) => SessionEndReason::Failed,
            }
        };
        let stored = self
            .write("session end", || {
                self.store
                    .end_session_because(self.session_id, ended_at, quality, stored_reason)
            })
            .await;
        // The reason the record keeps (an end that came first wins), as a replay and the other
        // nodes tell it: a screen learns that the server was stopping, not only that it ended.
        let kept = stored
            .and_then(|record| record.end_reason)
            .unwrap_or(stored_reason);
        self.feed.publish(LiveMessage::SessionEnded {
            reason: kept.as_str(),
        });
        self.announce(LiveChange::Ended).await;
        tracing::info!(session_id = %self.session_id, reason = reason.as_str(), "call ended");
    }

    /// Tells the other nodes, whose sockets may follow this call.
    async fn announce(&self, change: LiveChange) {
        crate::nodes::announce(&self.store, self.session_id, change).await;
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

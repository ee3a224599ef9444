//! What a call tells the platform: transcript lines, bot state, link quality, per-turn metrics,
//! errors and how it ended.

use std::time::Duration;

use domain::{BotState, ConnectionQuality, Speaker};

/// Capacity of a call's event channel. A platform that stops reading loses interim lines and
/// metrics first; final transcript lines and the end wait (briefly) for room.
pub const EVENT_QUEUE: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Transcript(TranscriptLine),
    BotState(BotState),
    ConnectionQuality(ConnectionQuality),
    TurnMetrics(TurnMetrics),
    Error(CallError),
    /// The last event of every call.
    Ended(EndReason),
}

/// One line of the live transcript.
///
/// `seq` numbers final lines 1, 2, 3… in the order they were said. An interim line carries the
/// `seq` its final version will have, so a display can replace it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    pub seq: u64,
    pub speaker: Speaker,
    pub text: String,
    pub is_final: bool,
    /// When the line was completed, measured from the start of the call.
    pub at: Duration,
    /// A counselor line cut short because the student spoke over it (the text is what was heard).
    pub interrupted: bool,
}

/// Timings of one bot reply. Absent values did not happen (no LLM for a scripted reply, no audio
/// when speech failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnMetrics {
    /// Request sent → first text delta.
    pub llm_first_token: Option<Duration>,
    /// First sentence sent to speech synthesis → its first audio.
    pub tts_first_audio: Option<Duration>,
    /// The student's last speech → the bot's first audio frame handed to the transport (includes
    /// the turn-end silence).
    pub student_stop_to_bot_audio: Option<Duration>,
}

/// Something went wrong but the call goes on (or, if followed by `Ended`, did not).
/// Messages never contain transcript text or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub stage: Stage,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    SpeechToText,
    LanguageModel,
    TextToSpeech,
    Hook,
    Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// `CallHandle::end` was called (the student or the platform ended the session).
    Ended,
    /// The transport went away (tab closed, network lost).
    TransportClosed,
    /// The student stayed silent past the idle limit.
    IdleTimeout,
    /// A service the call cannot go on without failed.
    Failed(String),
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::TransportClosed => "transport_closed",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Failed(_) => "failed",
        }
    }
}

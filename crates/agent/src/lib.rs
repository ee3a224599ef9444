//! The real-time voice counselor.
//!
//! A call is a pipeline that audio and text flow through:
//! transport in → VAD → speech-to-text → (utterance hook) → LLM → sentences → text-to-speech
//! → transport out. Each call is a few tokio tasks joined by bounded channels, not a process,
//! so one server holds hundreds of calls; [`Call::start`] is the entry point. The speech and
//! language services sit behind the traits in [`services`]; cloud adapters live here, offline
//! models in the `offline` crate.

pub mod audio;
pub mod call;
pub mod codec;
pub mod conversation;
pub mod events;
pub mod hook;
mod reply;
pub mod sentences;
pub mod services;
pub mod transport;
pub mod vad;

pub use call::{Call, CallConfig, CallHandle, IdlePolicy, Services};
pub use events::{AgentEvent, CallError, EndReason, Stage, TranscriptLine, TurnMetrics};
pub use hook::{HookDecision, NoHook, Utterance, UtteranceHook};
pub use reply::Timeouts;

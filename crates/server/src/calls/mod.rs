//! Live calls: a room per session, the counselor agent running in this process, what is said
//! stored as it is said, and the student's screen kept up to date over a WebSocket.

mod feed;
mod manager;
mod persona;
mod providers;
mod recorder;
mod remote;
mod safety_hook;

pub use feed::{replay_of_stored, CrisisResources, Feed, LiveMessage};
pub use manager::{constant_time_eq, CallError, CallManager, OpenedRoom, VoiceStack};
pub use persona::{greeting, PersonaStyle};
pub use providers::{build_voice_stack, LlmChoice, SttChoice, TtsChoice, VoiceSettings};
pub use recorder::Recorder;
pub use remote::{Follower, Following, Next, RemoteCalls};
pub use safety_hook::{JudgedUtterance, SafetyHook};

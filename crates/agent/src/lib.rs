//! The real-time voice counselor.
//!
//! A call is a pipeline of processors that audio and text frames flow through:
//! transport in → VAD → speech-to-text → (utterance hook) → LLM → sentences → text-to-speech
//! → transport out. Each call is a set of tokio tasks, not a process, so one server holds
//! hundreds of calls. The speech and language services sit behind the traits in [`services`];
//! cloud adapters live here, offline models in the `offline` crate.

pub mod audio;
pub mod services;
pub mod transport;

//! Everything counsel needs to run with no API key: the model installer, local speech-to-text
//! (Whisper tiny.en on candle), the local language model and the local voice.

pub mod install;
pub mod llm;
pub mod phonemize;
pub mod piper;
pub mod prompts;
pub mod testing;
pub mod whisper;

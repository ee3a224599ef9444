//! Text → IPA phonemes with espeak-ng, the phonemizer Piper voices were trained with.
//!
//! libespeak-ng keeps global state and is not thread-safe, so every call goes through one
//! process-wide lock, and the library is initialised once, lazily, inside it.

// espeak-ng is a C library: calling it is unsafe by nature; each call says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Mutex;

/// One clause as espeak-ng reads it: its phonemes and the punctuation that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// IPA, words separated by spaces, with stress marks.
    pub phonemes: String,
    /// The clause's closing punctuation (`.` `,` `?` `!` `;` `:`), if it had one.
    pub punctuation: Option<char>,
}

impl Clause {
    /// Whether the clause ends a sentence (`.`, `?`, `!`), where a voice may pause longest.
    pub fn ends_sentence(&self) -> bool {
        matches!(self.punctuation, Some('.' | '?' | '!'))
    }

    /// The phonemes with the punctuation Piper voices expect after them.
    pub fn piper_phonemes(&self) -> String {
        match self.punctuation {
            Some(mark) => format!("{}{mark}", self.phonemes),
            None => self.phonemes.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhonemizeError {
    #[error("espeak-ng could not be initialised (is the espeak-ng-data package installed?)")]
    Initialize,
    #[error("espeak-ng has no voice named {0:?}")]
    UnknownVoice(String),
    #[error("text for espeak-ng must not contain NUL characters")]
    NulInText,
}

// The few entry points of libespeak-ng's C API (speak_lib.h) that phonemization needs.
#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_TextToPhonemes(
        textptr: *mut *const c_void,
        textmode: c_int,
        phonememode: c_int,
    ) -> *const c_char;
}

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// Without this flag espeak-ng calls `exit()` when its data files are missing.
const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
const ESPEAK_CHARS_UTF8: c_int = 1;
const ESPEAK_PHONEMES_IPA: c_int = 0x02;
const EE_OK: c_int = 0;

struct Espeak {
    voice: Option<String>,
}

static ESPEAK: Mutex<Option<Espeak>> = Mutex::new(None);

/// Phonemizes `text` with the espeak-ng voice `voice` (e.g. `en-us`), clause by clause.
pub fn phonemize(text: &str, voice: &str) -> Result<Vec<Clause>, PhonemizeError> {
    let text_c = CString::new(text).map_err(|_| PhonemizeError::NulInText)?;
    let voice_c =
        CString::new(voice).map_err(|_| PhonemizeError::UnknownVoice(voice.to_string()))?;
    let mut guard = ESPEAK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        // SAFETY: called under the lock; a null path means espeak-ng's installed data.
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                std::ptr::null(),
                ESPEAK_INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(PhonemizeError::Initialize);
        }
        *guard = Some(Espeak { voice: None });
    }
    let espeak = guard.as_mut().expect("initialised above");
    if espeak.voice.as_deref() != Some(voice) {
        // SAFETY: under the lock; the name is a valid C string that outlives the call.
        if unsafe { espeak_SetVoiceByName(voice_c.as_ptr()) } != EE_OK {
            espeak.voice = None;
            return Err(PhonemizeError::UnknownVoice(voice.to_string()));
        }
        espeak.voice = Some(voice.to_string());
    }

    let bytes = text_c.as_bytes();
    let start = text_c.as_ptr() as *const c_void;
    let mut cursor: *const c_void = start;
    let mut clauses = Vec::new();
    while !cursor.is_null() {
        let clause_start = cursor as usize - start as usize;
        // SAFETY: under the lock; `cursor` points into `text_c`, which is NUL-terminated and
        // alive; espeak-ng advances it past the clause it read, or nulls it at the end.
        let phonemes_ptr =
            unsafe { espeak_TextToPhonemes(&mut cursor, ESPEAK_CHARS_UTF8, ESPEAK_PHONEMES_IPA) };
        let clause_end = if cursor.is_null() {
            bytes.len()
        } else {
            (cursor as usize - start as usize).min(bytes.len())
        };
        if phonemes_ptr.is_null() {
            break;
        }
        // SAFETY: espeak-ng returns a NUL-terminated string valid until its next call.
        let phonemes = unsafe { CStr::from_ptr(phonemes_ptr) }
            .to_string_lossy()
            .trim()
            .to_string();
        let consumed = String::from_utf8_lossy(&bytes[clause_start.min(clause_end)..clause_end]);
        // espeak-ng reads one character past a clause's end (it gives it back to the next
        // clause), so skip that before looking for the closing mark.
        let punctuation = consumed
            .trim_end_matches(|c: char| c.is_alphanumeric() || c.is_whitespace())
            .chars()
            .last()
            .filter(|c| matches!(c, '.' | ',' | '?' | '!' | ';' | ':'));
        if !phonemes.is_empty() {
            clauses.push(Clause {
                phonemes,
                punctuation,
            });
        } else if let (Some(mark), Some(previous)) = (punctuation, clauses.last_mut()) {
            // A stray mark on its own (say "...") belongs to the clause before it.
            previous.punctuation.get_or_insert(mark);
        }
    }
    Ok(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_become_ipa() {
        let clauses = phonemize("Hello world", "en-us").unwrap();
        assert_eq!(clauses.len(), 1);
        assert_eq!(clauses[0].phonemes, "həlˈoʊ wˈɜːld");
        assert_eq!(clauses[0].punctuation, None);
    }

    #[test]
    fn clauses_keep_their_punctuation() {
        let clauses = phonemize("Hi, how are you? I am fine.", "en-us").unwrap();
        let marks: Vec<Option<char>> = clauses.iter().map(|c| c.punctuation).collect();
        assert_eq!(marks, [Some(','), Some('?'), Some('.')], "{clauses:?}");
        assert!(clauses[1].ends_sentence());
        assert!(!clauses[0].ends_sentence());
        assert!(clauses[0].piper_phonemes().ends_with(','));
    }

    #[test]
    fn unknown_voice_is_a_clear_error() {
        assert_eq!(
            phonemize("hello", "no-such-voice"),
            Err(PhonemizeError::UnknownVoice("no-such-voice".into()))
        );
        // The lock and the library survive the failure.
        assert!(!phonemize("hello", "en-us").unwrap().is_empty());
    }

    #[test]
    fn nul_in_text_is_rejected() {
        assert_eq!(phonemize("a\0b", "en-us"), Err(PhonemizeError::NulInText));
    }

    #[test]
    fn concurrent_callers_are_serialised() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    phonemize("Take a deep breath, then start again.", "en-us").unwrap()
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(results.windows(2).all(|pair| pair[0] == pair[1]));
    }
}

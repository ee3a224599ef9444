//! Turns raw speech-recognition text into the token stream the rules match against.
//!
//! Transcripts arrive lowercase or capitalised, with or without punctuation, with contractions
//! written with or without apostrophes ("dont", "im"), with chat shorthand ("wanna", "kms") and
//! with recognition slips ("sucide", "my self", "dye"). Everything is mapped onto one spelling
//! so that each rule is written once.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Marks where a sentence or clause ended (".", "!", "?", ";", ","). Negation and subject
/// scans stop here; no word can equal it.
pub(crate) const BOUNDARY: &str = "|";

/// Lowercased words with contractions expanded and known misspellings fixed, plus
/// [`BOUNDARY`] tokens where the text had clause punctuation.
pub(crate) fn normalize(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::with_capacity(24);
    let mut word = String::new();
    for ch in text.chars() {
        match ch {
            c if c.is_alphanumeric() => word.extend(c.to_lowercase()),
            '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{02bc}' => {
                if !word.is_empty() {
                    word.push('\'');
                }
            }
            '.' | '!' | '?' | ';' | ',' | '\n' => {
                flush_word(&mut word, &mut words);
                if words.last().is_some_and(|w| w != BOUNDARY) {
                    words.push(BOUNDARY.to_owned());
                }
            }
            _ => flush_word(&mut word, &mut words),
        }
    }
    flush_word(&mut word, &mut words);
    join_split_words(words)
}

/// The same normalised words as one string, clause breaks as commas: what the risk model reads,
/// so that "im", "i'm" and "I am", or "kill my self" and "kill myself", look alike to it too.
pub fn canonical_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for token in normalize(text) {
        if token == BOUNDARY {
            out.push(',');
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&token);
    }
    out
}

fn flush_word(word: &mut String, out: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    let trimmed = word.trim_matches('\'');
    if !trimmed.is_empty() {
        expand(trimmed, out);
    }
    word.clear();
}

/// Words that carry no meaning for the rules; dropping them keeps pattern gaps and negation
/// windows short ("i do not really want to die" reads as "i do not want to die").
const FILLERS: &[&str] = &[
    "um",
    "umm",
    "uh",
    "uhh",
    "uhm",
    "er",
    "erm",
    "hmm",
    "mm",
    "just",
    "really",
    "so",
    "literally",
    "honestly",
    "actually",
    "seriously",
    "truly",
    "very",
    "totally",
    "basically",
];

/// Whole-word rewrites: contractions (with and without apostrophe), shorthand, and
/// misspellings that speech recognition and typing produce for the words that matter.
const REWRITES: &[(&str, &[&str])] = &[
    ("i'm", &["i", "am"]),
    ("im", &["i", "am"]),
    ("i've", &["i", "have"]),
    ("ive", &["i", "have"]),
    ("i'll", &["i", "will"]),
    ("i'd", &["i", "would"]),
    ("you're", &["you", "are"]),
    ("youre", &["you", "are"]),
    ("he's", &["he", "is"]),
    ("she's", &["she", "is"]),
    ("shes", &["she", "is"]),
    ("it's", &["it", "is"]),
    ("that's", &["that", "is"]),
    ("thats", &["that", "is"]),
    ("there's", &["there", "is"]),
    ("theres", &["there", "is"]),
    ("what's", &["what", "is"]),
    ("whats", &["what", "is"]),
    ("who's", &["who", "is"]),
    ("they're", &["they", "are"]),
    ("theyre", &["they", "are"]),
    ("let's", &["let", "us"]),
    ("can't", &["can", "not"]),
    ("cant", &["can", "not"]),
    ("cannot", &["can", "not"]),
    ("won't", &["will", "not"]),
    ("wont", &["will", "not"]),
    ("ain't", &["am", "not"]),
    ("aint", &["am", "not"]),
    ("dont", &["do", "not"]),
    ("doesnt", &["does", "not"]),
    ("didnt", &["did", "not"]),
    ("wouldnt", &["would", "not"]),
    ("shouldnt", &["should", "not"]),
    ("couldnt", &["could", "not"]),
    ("isnt", &["is", "not"]),
    ("arent", &["are", "not"]),
    ("wasnt", &["was", "not"]),
    ("werent", &["were", "not"]),
    ("havent", &["have", "not"]),
    ("hasnt", &["has", "not"]),
    ("hadnt", &["had", "not"]),
    ("wanna", &["want", "to"]),
    ("wana", &["want", "to"]),
    ("gonna", &["going", "to"]),
    ("gotta", &["got", "to"]),
    ("tryna", &["trying", "to"]),
    ("kinda", &["kind", "of"]),
    ("sorta", &["sort", "of"]),
    ("dunno", &["do", "not", "know"]),
    ("idk", &["i", "do", "not", "know"]),
    ("imma", &["i", "am", "going", "to"]),
    ("ima", &["i", "am", "going", "to"]),
    ("lemme", &["let", "me"]),
    ("cuz", &["because"]),
    ("cos", &["because"]),
    ("coz", &["because"]),
    ("bc", &["because"]),
    ("u", &["you"]),
    ("ur", &["your"]),
    ("r", &["are"]),
    ("rn", &["right", "now"]),
    ("tbh", &["to", "be", "honest"]),
    ("ok", &["okay"]),
    ("kms", &["kill", "myself"]),
    ("kys", &["kill", "yourself"]),
    ("unalive", &["kill"]),
    ("unalived", &["killed"]),
    ("unaliving", &["killing"]),
    ("sucide", &["suicide"]),
    ("suicde", &["suicide"]),
    ("suiside", &["suicide"]),
    ("suicid", &["suicide"]),
    ("suiscide", &["suicide"]),
    ("suecide", &["suicide"]),
    ("sewercide", &["suicide"]),
    ("sucidal", &["suicidal"]),
    ("suicidial", &["suicidal"]),
    ("suicdal", &["suicidal"]),
    ("suisidal", &["suicidal"]),
    ("sucidial", &["suicidal"]),
    ("suicidel", &["suicidal"]),
    ("myslef", &["myself"]),
    ("mysef", &["myself"]),
    ("myelf", &["myself"]),
    ("meself", &["myself"]),
    ("kil", &["kill"]),
    ("kll", &["kill"]),
    ("killin", &["killing"]),
    ("dyin", &["dying"]),
    ("livin", &["living"]),
    ("cuttin", &["cutting"]),
    ("nothin", &["nothing"]),
    ("goin", &["going"]),
    ("pils", &["pills"]),
    ("overdoze", &["overdose"]),
    ("everone", &["everyone"]),
    ("evryone", &["everyone"]),
    ("noone", &["nobody"]),
    ("goodby", &["goodbye"]),
    ("tho", &["though"]),
];

static REWRITE_TABLE: LazyLock<HashMap<&'static str, &'static [&'static str]>> =
    LazyLock::new(|| REWRITES.iter().copied().collect());
static FILLER_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| FILLERS.iter().copied().collect());

fn expand(word: &str, out: &mut Vec<String>) {
    if let Some(replacement) = REWRITE_TABLE.get(word) {
        out.extend(replacement.iter().map(|w| (*w).to_owned()));
        return;
    }
    // Generic contraction suffixes: "shouldn't", "they'll", "she'd", "roommate's".
    const SUFFIXES: &[(&str, &str)] = &[
        ("n't", "not"),
        ("'re", "are"),
        ("'ve", "have"),
        ("'ll", "will"),
        ("'d", "would"),
        ("'m", "am"),
    ];
    for (suffix, expansion) in SUFFIXES {
        if let Some(stem) = word.strip_suffix(suffix) {
            if !stem.is_empty() {
                push_plain(stem, out);
                out.push((*expansion).to_owned());
                return;
            }
        }
    }
    if let Some(stem) = word.strip_suffix("'s") {
        push_plain(stem, out);
        if matches!(
            stem,
            "he" | "she" | "it" | "that" | "there" | "what" | "who" | "where"
        ) {
            out.push("is".to_owned());
        }
        return;
    }
    push_plain(word, out);
}

fn push_plain(word: &str, out: &mut Vec<String>) {
    let word: String = word.chars().filter(|c| *c != '\'').collect();
    if word.is_empty() || FILLER_SET.contains(word.as_str()) {
        return;
    }
    if let Some(replacement) = REWRITE_TABLE.get(word.as_str()) {
        out.extend(replacement.iter().map(|w| (*w).to_owned()));
    } else {
        out.push(word);
    }
}

/// Two-word spellings of one word ("my self", "no one", "over dose"), the "dye"/"die"
/// confusion, and stuttered repeats ("i i want to to die").
fn join_split_words(words: Vec<String>) -> Vec<String> {
    const JOINS: &[(&str, &str, &str)] = &[
        ("my", "self", "myself"),
        ("him", "self", "himself"),
        ("her", "self", "herself"),
        ("them", "selves", "themselves"),
        ("them", "self", "themself"),
        ("your", "self", "yourself"),
        ("no", "one", "nobody"),
        ("any", "more", "anymore"),
        ("every", "one", "everyone"),
        ("every", "body", "everybody"),
        ("over", "dose", "overdose"),
        ("over", "dosed", "overdosed"),
        ("over", "dosing", "overdosing"),
        ("sewer", "slide", "suicide"),
        ("sewer", "sidal", "suicidal"),
        ("sewer", "cidal", "suicidal"),
        ("sue", "sidal", "suicidal"),
        ("good", "bye", "goodbye"),
        ("self", "harm", "self_harm"),
        ("self", "harming", "self_harming"),
        ("self", "harmed", "self_harmed"),
        ("self", "injury", "self_harm"),
        ("self", "injuring", "self_harming"),
        // The recognisers' usual slip for "self harm".
        ("self", "arm", "self_harm"),
        ("self", "arming", "self_harming"),
        ("s", "h", "sh"),
        ("tie", "lenol", "tylenol"),
        ("tie", "lynol", "tylenol"),
    ];
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let current = words[i].as_str();
        if let Some(next) = words.get(i + 1) {
            if let Some((_, _, joined)) = JOINS.iter().find(|(a, b, _)| *a == current && *b == next)
            {
                out.push((*joined).to_owned());
                i += 2;
                continue;
            }
        }
        if current == "selfharm" {
            out.push("self_harm".to_owned());
            i += 1;
            continue;
        }
        // "does" after a dose's adjective is a mis-hearing of "dose".
        if matches!(current, "lethal" | "fatal" | "deadly" | "toxic")
            && words.get(i + 1).is_some_and(|next| next == "does")
        {
            out.push(current.to_owned());
            out.push("dose".to_owned());
            i += 2;
            continue;
        }
        // "dye" is nearly always a mis-hearing of "die" unless something is being coloured.
        if current == "dye" {
            let coloured = words.get(i + 1).is_some_and(|next| {
                matches!(
                    next.as_str(),
                    "my" | "her" | "his" | "it" | "the" | "hair" | "them" | "their" | "your"
                )
            });
            out.push(if coloured { "dye" } else { "die" }.to_owned());
            i += 1;
            continue;
        }
        if out.last().is_some_and(|last| last == current) {
            i += 1;
            continue;
        }
        out.push(words[i].clone());
        i += 1;
    }
    while out.last().is_some_and(|w| w == BOUNDARY) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        normalize(text).join(" ")
    }

    #[test]
    fn lowercases_and_marks_clause_boundaries() {
        assert_eq!(norm("No, I want to DIE."), "no | i want to die");
    }

    #[test]
    fn expands_contractions_with_or_without_apostrophes() {
        assert_eq!(
            norm("I'm not gonna hurt myself"),
            "i am not going to hurt myself"
        );
        assert_eq!(
            norm("im not gonna hurt myself"),
            "i am not going to hurt myself"
        );
        assert_eq!(norm("i don’t wanna live"), "i do not want to live");
        assert_eq!(norm("i dont wanna live"), "i do not want to live");
        assert_eq!(norm("she'd never"), "she would never");
        assert_eq!(norm("my roommate's car"), "my roommate car");
    }

    #[test]
    fn fixes_recognition_slips_and_shorthand() {
        assert_eq!(norm("thinking about sucide"), "thinking about suicide");
        assert_eq!(norm("i want to kill my self"), "i want to kill myself");
        assert_eq!(norm("i i just wanna dye"), "i want to die");
        assert_eq!(norm("i want to dye my hair"), "i want to dye my hair");
        assert_eq!(norm("no one would care"), "nobody would care");
        assert_eq!(norm("i've been self-harming"), "i have been self_harming");
        assert_eq!(norm("im about to self arm"), "i am about to self_harm");
        assert_eq!(norm("the lethal does of it"), "the lethal dose of it");
        assert_eq!(norm("i bought tie lenol"), "i bought tylenol");
        assert_eq!(norm("the urge to s h"), "the urge to sh");
        assert_eq!(norm("honestly idk kms"), "i do not know kill myself");
    }
}

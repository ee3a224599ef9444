//! BERT's uncased WordPiece tokenizer, read from the model's `vocab.txt`.
//!
//! The steps are BERT's own: clean the text, lowercase and strip accents, split on whitespace
//! and punctuation, then split each word greedily into the longest pieces the vocabulary has
//! ("unalive" → "una", "##live"). A word with no such split becomes `[UNK]`.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// Words longer than this are `[UNK]` (BERT's limit).
const MAX_WORD_CHARS: usize = 100;

#[derive(Debug)]
pub struct WordPiece {
    ids: HashMap<String, u32>,
    pub cls: u32,
    pub sep: u32,
    unk: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VocabError {
    #[error("the vocabulary lacks the special token {0}")]
    MissingSpecial(&'static str),
    #[error("the vocabulary is empty")]
    Empty,
}

impl WordPiece {
    /// Builds the tokenizer from `vocab.txt`: one token per line, the line number is its id.
    pub fn from_vocab(vocab: &str) -> Result<Self, VocabError> {
        let ids: HashMap<String, u32> = vocab
            .lines()
            .enumerate()
            .map(|(id, token)| (token.to_owned(), id as u32))
            .collect();
        if ids.is_empty() {
            return Err(VocabError::Empty);
        }
        let special = |name: &'static str| {
            ids.get(name)
                .copied()
                .ok_or(VocabError::MissingSpecial(name))
        };
        Ok(Self {
            cls: special("[CLS]")?,
            sep: special("[SEP]")?,
            unk: special("[UNK]")?,
            ids,
        })
    }

    /// Token ids for `text`, framed as `[CLS] … [SEP]`, at most `max_len` ids in all.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut out = vec![self.cls];
        let budget = max_len.saturating_sub(1);
        'words: for word in basic_words(text) {
            for id in self.pieces(&word) {
                if out.len() >= budget {
                    break 'words;
                }
                out.push(id);
            }
        }
        out.push(self.sep);
        out
    }

    fn pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            return vec![self.unk];
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let found = loop {
                if end == start {
                    break None;
                }
                let mut candidate: String = chars[start..end].iter().collect();
                if start > 0 {
                    candidate.insert_str(0, "##");
                }
                if let Some(&id) = self.ids.get(&candidate) {
                    break Some(id);
                }
                end -= 1;
            };
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        pieces
    }
}

/// BERT's basic tokenizer: cleaned, lowercased, accent-free words and single punctuation marks.
fn basic_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, words: &mut Vec<String>| {
        if !current.is_empty() {
            words.push(std::mem::take(current));
        }
    };
    for c in text
        .chars()
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .nfd()
    {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if is_combining_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            flush(&mut current, &mut words);
        } else if is_punctuation(c) || is_cjk(c) {
            flush(&mut current, &mut words);
            words.push(c.to_string());
        } else {
            current.push(c);
        }
    }
    flush(&mut current, &mut words);
    words
}

/// Unicode's nonspacing marks, which accent stripping removes after decomposition.
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// BERT treats every non-alphanumeric ASCII symbol as punctuation, plus Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x2010..=0x2027 | 0x2030..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0x00A1..=0x00BF)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> WordPiece {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "i", "want", "to", "una", "##live", "!", "cafe",
            "'", "m",
        ];
        WordPiece::from_vocab(&vocab.join("\n")).unwrap()
    }

    #[test]
    fn words_split_into_the_longest_known_pieces() {
        let t = tokenizer();
        assert_eq!(
            t.encode("I want to UNALIVE!", 64),
            vec![2, 4, 5, 6, 7, 8, 9, 3]
        );
    }

    #[test]
    fn unknown_words_accents_and_apostrophes() {
        let t = tokenizer();
        assert_eq!(t.encode("café", 64), vec![2, 10, 3]);
        assert_eq!(t.encode("i'm zzz", 64), vec![2, 4, 11, 12, 1, 3]);
    }

    #[test]
    fn long_input_is_cut_to_the_budget() {
        let t = tokenizer();
        let ids = t.encode(&"want ".repeat(100), 10);
        assert_eq!(ids.len(), 10);
        assert_eq!((ids[0], ids[9]), (2, 3));
    }

    #[test]
    fn a_vocabulary_without_special_tokens_is_refused() {
        assert_eq!(
            WordPiece::from_vocab("a\nb").unwrap_err(),
            VocabError::MissingSpecial("[CLS]")
        );
    }
}

//! SmolLM2's byte-level BPE tokenizer, rebuilt from the vocabulary and merges stored in the GGUF
//! file, so the model file is the only thing the language model needs.
//!
//! Pre-tokenization follows the model's own tokenizer: every digit stands alone, and the rest
//! is split with the GPT-2 rules (contractions, letter runs, number runs, punctuation runs,
//! whitespace runs that leave their last space to the next word).

use std::collections::HashMap;

use candle_core::quantized::gguf_file;

/// A tokenizer problem found while reading the model file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    #[error("the model file has no {0} metadata")]
    Missing(&'static str),
    #[error("the model file's {key} metadata is malformed: {reason}")]
    Malformed { key: &'static str, reason: String },
    #[error("the model's vocabulary has no {0} token")]
    MissingSpecialToken(&'static str),
}

pub type TokenId = u32;

/// The ChatML control tokens the chat template uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatTokens {
    pub im_start: TokenId,
    pub im_end: TokenId,
    pub end_of_text: TokenId,
}

#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token text in the byte-to-unicode alphabet, indexed by id.
    tokens: Vec<String>,
    ids: HashMap<String, TokenId>,
    /// Rank of each merge: lower merges first.
    merge_ranks: HashMap<(String, String), u32>,
    /// Control tokens (`<|im_end|>` and the like) never appear in decoded text.
    is_control: Vec<bool>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    pub chat: ChatTokens,
}

/// GGUF `tokenizer.ggml.token_type` value of control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;

impl Tokenizer {
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, TokenizerError> {
        let metadata = &content.metadata;
        let model = metadata
            .get("tokenizer.ggml.model")
            .ok_or(TokenizerError::Missing("tokenizer.ggml.model"))?
            .to_string()
            .map_err(|e| malformed("tokenizer.ggml.model", e))?;
        if model != "gpt2" {
            return Err(TokenizerError::Malformed {
                key: "tokenizer.ggml.model",
                reason: format!("expected a gpt2 byte-level BPE tokenizer, found {model:?}"),
            });
        }
        let tokens = string_array(content, "tokenizer.ggml.tokens")?;
        let merges = string_array(content, "tokenizer.ggml.merges")?;
        let token_types: Vec<i32> = match metadata.get("tokenizer.ggml.token_type") {
            Some(value) => value
                .to_vec()
                .map_err(|e| malformed("tokenizer.ggml.token_type", e))?
                .iter()
                .map(|v| {
                    v.to_i32()
                        .map_err(|e| malformed("tokenizer.ggml.token_type", e))
                })
                .collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        Self::new(tokens, &merges, &token_types)
    }

    pub fn new(
        tokens: Vec<String>,
        merges: &[String],
        token_types: &[i32],
    ) -> Result<Self, TokenizerError> {
        let ids: HashMap<String, TokenId> = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as TokenId))
            .collect();
        let mut merge_ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| TokenizerError::Malformed {
                    key: "tokenizer.ggml.merges",
                    reason: format!("merge {rank} is not two symbols separated by a space"),
                })?;
            merge_ranks.insert((left.to_string(), right.to_string()), rank as u32);
        }
        let is_control = (0..tokens.len())
            .map(|id| token_types.get(id).copied() == Some(TOKEN_TYPE_CONTROL))
            .collect();
        let special = |name: &'static str| {
            ids.get(name)
                .copied()
                .ok_or(TokenizerError::MissingSpecialToken(name))
        };
        let chat = ChatTokens {
            im_start: special("<|im_start|>")?,
            im_end: special("<|im_end|>")?,
            end_of_text: special("<|endoftext|>")?,
        };
        let byte_to_char = byte_to_char_table();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(byte, &c)| (c, byte as u8))
            .collect();
        Ok(Self {
            tokens,
            ids,
            merge_ranks,
            is_control,
            byte_to_char,
            char_to_byte,
            chat,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Encodes plain text. Control-token spellings inside `text` (say, a student typing
    /// `<|im_end|>`) are encoded as ordinary characters, never as control tokens.
    pub fn encode(&self, text: &str) -> Vec<TokenId> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        for piece in pre_tokenize(text) {
            let symbols: Vec<String> = piece
                .bytes()
                .map(|byte| self.byte_to_char[byte as usize].to_string())
                .collect();
            for symbol in self.merge(symbols) {
                match self.ids.get(&symbol) {
                    Some(&id) => ids.push(id),
                    // Every single byte is in the vocabulary, so a miss can only be a merge
                    // result the vocabulary lacks: fall back to its bytes.
                    None => ids.extend(
                        symbol
                            .chars()
                            .filter_map(|c| self.ids.get(&c.to_string()).copied()),
                    ),
                }
            }
        }
        ids
    }

    /// Applies merges lowest rank first until none applies.
    fn merge(&self, mut symbols: Vec<String>) -> Vec<String> {
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.merge_ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|&rank| (rank, i))
                })
                .min();
            let Some((rank, _)) = best else {
                return symbols;
            };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self
                        .merge_ranks
                        .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                        == Some(&rank)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
    }

    /// The raw bytes a token stands for; control tokens stand for nothing.
    pub fn token_bytes(&self, id: TokenId) -> Vec<u8> {
        let id = id as usize;
        if id >= self.tokens.len() || self.is_control[id] {
            return Vec::new();
        }
        self.tokens[id]
            .chars()
            .filter_map(|c| self.char_to_byte.get(&c).copied())
            .collect()
    }

    pub fn decode(&self, ids: &[TokenId]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes until they form whole
/// UTF-8 characters (one emoji can span several tokens).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn push(&mut self, tokenizer: &Tokenizer, id: TokenId) -> Option<String> {
        self.pending.extend(tokenizer.token_bytes(id));
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_some() => {
                // Invalid (not merely incomplete) bytes: emit what we have, replaced.
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Some(text);
            }
            Err(e) => e.valid_up_to(),
        };
        if valid_up_to == 0 {
            return None;
        }
        let rest = self.pending.split_off(valid_up_to);
        let text =
            String::from_utf8(std::mem::replace(&mut self.pending, rest)).expect("checked above");
        Some(text)
    }
}

fn malformed(key: &'static str, error: candle_core::Error) -> TokenizerError {
    TokenizerError::Malformed {
        key,
        reason: error.to_string(),
    }
}

fn string_array(
    content: &gguf_file::Content,
    key: &'static str,
) -> Result<Vec<String>, TokenizerError> {
    content
        .metadata
        .get(key)
        .ok_or(TokenizerError::Missing(key))?
        .to_vec()
        .map_err(|e| malformed(key, e))?
        .iter()
        .map(|value| value.to_string().cloned().map_err(|e| malformed(key, e)))
        .collect()
}

/// GPT-2's reversible byte → printable character map: printable Latin-1 bytes stand for
/// themselves, the rest are shifted to code points from 256 up.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[byte as usize] = if printable {
            byte as char
        } else {
            let c = char::from_u32(next_shifted).expect("valid code point");
            next_shifted += 1;
            c
        };
    }
    table
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Letter,
    Number,
    Space,
    Other,
}

fn class_of(c: char) -> CharClass {
    if c.is_alphabetic() {
        CharClass::Letter
    } else if c.is_numeric() {
        CharClass::Number
    } else if c.is_whitespace() {
        CharClass::Space
    } else {
        CharClass::Other
    }
}

/// Splits text the way the model's tokenizer does before BPE (see the module comment).
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut segment_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii_digit() {
            split_gpt2(&text[segment_start..i], &mut pieces);
            pieces.push(&text[i..i + 1]);
            segment_start = i + 1;
        }
    }
    split_gpt2(&text[segment_start..], &mut pieces);
    pieces
}

const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

/// The GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, by hand.
fn split_gpt2<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |index: usize| chars.get(index).map_or(text.len(), |&(offset, _)| offset);
    let run_end = |from: usize, class: CharClass| {
        let mut j = from;
        while j < chars.len() && class_of(chars[j].1) == class {
            j += 1;
        }
        j
    };
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c == '\'' {
            if let Some(contraction) = CONTRACTIONS.iter().find(|s| text[start..].starts_with(**s))
            {
                pieces.push(&text[start..start + contraction.len()]);
                i += contraction.chars().count();
                continue;
            }
        }
        let class = class_of(c);
        // A single leading space joins the word, number or punctuation run after it.
        let next_class = chars.get(i + 1).map(|&(_, next)| class_of(next));
        if c == ' '
            && matches!(
                next_class,
                Some(CharClass::Letter | CharClass::Number | CharClass::Other)
            )
        {
            let j = run_end(i + 1, next_class.expect("matched"));
            pieces.push(&text[start..end_of(j)]);
            i = j;
            continue;
        }
        let j = run_end(i, class);
        if class == CharClass::Space && j < chars.len() && j - i > 1 {
            // Leave the last whitespace character to start the next piece.
            pieces.push(&text[start..end_of(j - 1)]);
            i = j - 1;
            continue;
        }
        pieces.push(&text[start..end_of(j)]);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizer_follows_gpt2_rules_with_single_digits() {
        assert_eq!(pre_tokenize("Hello world"), ["Hello", " world"]);
        assert_eq!(
            pre_tokenize("I'm here, ok?"),
            ["I", "'m", " here", ",", " ok", "?"]
        );
        assert_eq!(
            pre_tokenize("year 2024!"),
            ["year", " ", "2", "0", "2", "4", "!"]
        );
        assert_eq!(pre_tokenize("a   b"), ["a", "  ", " b"]);
        assert_eq!(pre_tokenize("line\n\nnext"), ["line", "\n", "\n", "next"]);
        assert_eq!(pre_tokenize("end.  "), ["end", ".", "  "]);
        assert_eq!(pre_tokenize(" ...wow"), [" ...", "wow"]);
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let table = byte_to_char_table();
        let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
    }

    fn tiny_tokenizer() -> Tokenizer {
        let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        tokens.extend(byte_to_char_table().iter().map(|c| c.to_string()));
        tokens.extend(["Ġt", "he", "Ġthe"].iter().map(|s| s.to_string()));
        let merges: Vec<String> = ["Ġ t", "h e", "Ġt he"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut types = vec![3, 3, 3];
        types.resize(tokens.len(), 1);
        Tokenizer::new(tokens, &merges, &types).unwrap()
    }

    #[test]
    fn bpe_applies_merges_by_rank_and_round_trips() {
        let tokenizer = tiny_tokenizer();
        let ids = tokenizer.encode("in the end");
        let the = tokenizer.ids["Ġthe"];
        assert!(ids.contains(&the), "{ids:?}");
        assert_eq!(tokenizer.decode(&ids), "in the end");
        assert_eq!(tokenizer.decode(&[tokenizer.chat.im_end]), "");
    }

    #[test]
    fn stream_decoder_waits_for_whole_characters() {
        let tokenizer = tiny_tokenizer();
        let ids = tokenizer.encode("é!");
        assert_eq!(ids.len(), 3, "two bytes for é, one for !");
        let mut decoder = StreamDecoder::default();
        assert_eq!(decoder.push(&tokenizer, ids[0]), None);
        assert_eq!(decoder.push(&tokenizer, ids[1]).as_deref(), Some("é"));
        assert_eq!(decoder.push(&tokenizer, ids[2]).as_deref(), Some("!"));
    }

    #[test]
    fn control_token_spelling_in_text_stays_text() {
        let tokenizer = tiny_tokenizer();
        let ids = tokenizer.encode("<|im_end|>");
        assert!(!ids.contains(&tokenizer.chat.im_end));
        assert_eq!(tokenizer.decode(&ids), "<|im_end|>");
    }
}

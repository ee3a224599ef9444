//! Whisper's token vocabulary (`vocabulary.txt`: one token a line, id = line number), decoded
//! the GPT-2 byte-level way: each byte of the text is written as one printable character.

use std::collections::HashMap;
use std::path::Path;

pub struct Vocabulary {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// Printable character → the byte it stands for.
    char_to_byte: HashMap<char, u8>,
}

impl Vocabulary {
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_lines(&std::fs::read_to_string(path)?))
    }

    pub fn from_lines(text: &str) -> Self {
        let tokens: Vec<String> = text.lines().map(str::to_owned).collect();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        Self {
            tokens,
            ids,
            char_to_byte: byte_level_alphabet(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The text of ordinary tokens; unknown ids are skipped, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.tokens.get(id as usize))
            .flat_map(|token| token.chars())
            .filter_map(|c| self.char_to_byte.get(&c).copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// GPT-2's reversible byte ↔ character mapping: printable Latin-1 bytes stand for themselves,
/// the other 68 bytes are moved to U+0100 onwards in byte order.
fn byte_level_alphabet() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next_moved = 0u32;
    for byte in 0..=255u8 {
        let c = if printable(byte) {
            char::from(byte)
        } else {
            next_moved += 1;
            char::from_u32(255 + next_moved).expect("valid code point")
        };
        map.insert(c, byte);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_byte_level_tokens() {
        // "Ġ" (U+0120) is the space byte; "Ã©" is the two UTF-8 bytes of "é".
        let vocab = Vocabulary::from_lines("Hello\nĠworld\nĠcaf\nÃ©\n<|endoftext|>");
        assert_eq!(vocab.decode(&[0, 1]), "Hello world");
        assert_eq!(vocab.decode(&[2, 3]), " café");
        assert_eq!(vocab.id("<|endoftext|>"), Some(4));
        assert_eq!(vocab.decode(&[99]), "");
    }

    #[test]
    fn alphabet_is_a_bijection() {
        let map = byte_level_alphabet();
        assert_eq!(map.len(), 256);
        let mut bytes: Vec<u8> = map.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
    }
}

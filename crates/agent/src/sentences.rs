//! Cutting a streamed reply into sentences, so that speech can start as soon as the first one is
//! complete instead of after the whole reply.

/// Words that end in a period without ending a sentence (compared lower-case, without the dot).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m",
    "approx", "dept", "no", "fig", "mt", "u.s", "inc", "ltd", "co",
];

/// A sentence that grows past this many characters without an end is cut at a comma or a space,
/// so that one run-on sentence cannot hold back speech for long.
const LONGEST_SENTENCE_CHARS: usize = 240;

/// Accumulates text deltas and hands out complete sentences.
///
/// A sentence ends at `.`, `!`, `?` or `…` (plus closing quotes or brackets) followed by
/// whitespace, or at a line break. Not at a decimal point (`3.5`), an abbreviation (`Dr.`), or an
/// initial (`J. Smith`); an ellipsis ends a sentence only when the next word is capitalised.
#[derive(Debug, Default, Clone)]
pub struct SentenceSplitter {
    buffer: String,
}

impl SentenceSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a piece of the reply; returns the sentences it completed.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.buffer.push_str(delta);
        let mut sentences = Vec::new();
        while let Some(end) = self.next_boundary() {
            let rest = self.buffer.split_off(end);
            let sentence = std::mem::replace(&mut self.buffer, rest);
            push_trimmed(&mut sentences, &sentence);
        }
        if self.buffer.chars().count() > LONGEST_SENTENCE_CHARS {
            let cut = self.long_sentence_cut();
            let rest = self.buffer.split_off(cut);
            let sentence = std::mem::replace(&mut self.buffer, rest);
            push_trimmed(&mut sentences, &sentence);
        }
        sentences
    }

    /// The rest of the reply, once the stream has ended.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        let rest = clean(&rest);
        (!rest.is_empty()).then_some(rest)
    }

    /// Byte offset just past the first sentence end in the buffer that can be decided now.
    fn next_boundary(&self) -> Option<usize> {
        let text = self.buffer.as_str();
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (at, c) = chars[i];
            if c == '\n' {
                if text[..at].trim().is_empty() {
                    i += 1;
                    continue;
                }
                return Some(at + 1);
            }
            if !matches!(c, '.' | '!' | '?' | '…') {
                i += 1;
                continue;
            }
            // Take the whole run of terminators and closing marks: `?!`, `...`, `."`, `.)`.
            let mut j = i;
            while j + 1 < chars.len()
                && matches!(
                    chars[j + 1].1,
                    '.' | '!' | '?' | '…' | '"' | '\'' | '”' | '’' | ')' | ']'
                )
            {
                j += 1;
            }
            let end = chars.get(j + 1).map_or(text.len(), |&(at, _)| at);
            let Some(&(_, after)) = chars.get(j + 1) else {
                return None; // the next delta decides (it may continue `3.` into `3.5`)
            };
            if !after.is_whitespace() {
                i = j + 1;
                continue;
            }
            let run = &text[at..end];
            let ellipsis = run.contains('…') || run.contains("..");
            if ellipsis
                || (c == '.' && run.len() == 1 && self.is_abbreviation_or_initial(&text[..at]))
            {
                // Decided by the next word: only a capital letter starts a new sentence.
                match chars[j + 1..].iter().find(|(_, ch)| !ch.is_whitespace()) {
                    None => return None,
                    Some(&(_, next)) if next.is_uppercase() && ellipsis => return Some(end),
                    Some(_) => {
                        i = j + 1;
                        continue;
                    }
                }
            }
            return Some(end);
        }
        None
    }

    fn is_abbreviation_or_initial(&self, before_dot: &str) -> bool {
        let word = before_dot
            .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"')
            .next()
            .unwrap_or("");
        let lower = word.to_lowercase();
        let single_capital = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
        single_capital || ABBREVIATIONS.contains(&lower.as_str())
    }

    fn long_sentence_cut(&self) -> usize {
        let limit = self
            .buffer
            .char_indices()
            .nth(LONGEST_SENTENCE_CHARS)
            .map_or(self.buffer.len(), |(i, _)| i);
        let head = &self.buffer[..limit];
        head.rfind([',', ';', ':'])
            .map(|i| i + 1)
            .or_else(|| head.rfind(' '))
            .filter(|&i| i > 0)
            .unwrap_or(limit)
    }
}

fn push_trimmed(sentences: &mut Vec<String>, sentence: &str) {
    let sentence = clean(sentence);
    if !sentence.is_empty() {
        sentences.push(sentence);
    }
}

/// Drops markdown emphasis and list markers a model may emit despite being told not to:
/// they would be read aloud.
fn clean(text: &str) -> String {
    let trimmed = text.trim();
    let trimmed = trimmed
        .trim_start_matches(['-', '*', '#', '•'])
        .trim_start();
    trimmed.replace(['*', '`'], "").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `text` in pieces of `piece` characters and collects every sentence.
    fn split(text: &str, piece: usize) -> Vec<String> {
        let mut splitter = SentenceSplitter::new();
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for chunk in chars.chunks(piece) {
            out.extend(splitter.push(&chunk.iter().collect::<String>()));
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn sentences_come_out_whole_however_the_text_is_streamed() {
        let text = "That sounds hard. How long has it felt this way? Let's take it slowly!";
        for piece in [1, 2, 5, 100] {
            assert_eq!(
                split(text, piece),
                [
                    "That sounds hard.",
                    "How long has it felt this way?",
                    "Let's take it slowly!"
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn decimals_abbreviations_and_initials_do_not_end_sentences() {
        let text = "Your GPA went from 3.5 to 3.2 this term. Dr. Lee and Prof. J. Smith can help, e.g. with planning. Okay.";
        for piece in [1, 3, 100] {
            assert_eq!(
                split(text, piece),
                [
                    "Your GPA went from 3.5 to 3.2 this term.",
                    "Dr. Lee and Prof. J. Smith can help, e.g. with planning.",
                    "Okay."
                ]
            );
        }
    }

    #[test]
    fn an_ellipsis_ends_a_sentence_only_before_a_capital() {
        assert_eq!(
            split("I wonder... maybe it helps. Well… Let's see.", 2),
            ["I wonder... maybe it helps.", "Well…", "Let's see."]
        );
    }

    #[test]
    fn the_first_sentence_is_ready_before_the_reply_ends() {
        let mut splitter = SentenceSplitter::new();
        assert!(splitter.push("Sure, I can help.").is_empty());
        assert_eq!(splitter.push(" Let"), ["Sure, I can help."]);
        assert_eq!(splitter.finish().as_deref(), Some("Let"));
    }

    #[test]
    fn quotes_line_breaks_markdown_and_run_ons_are_handled() {
        assert_eq!(
            split("He said \"stop.\" Then left.", 4),
            ["He said \"stop.\"", "Then left."]
        );
        assert_eq!(
            split("- **First** idea\n- second idea", 3),
            ["First idea", "second idea"]
        );
        let run_on = "word ".repeat(100);
        let parts = split(&run_on, 7);
        assert!(parts.len() >= 2);
        assert!(parts
            .iter()
            .all(|p| p.chars().count() <= LONGEST_SENTENCE_CHARS));
        assert_eq!(parts.join(" ").split_whitespace().count(), 100);
    }
}

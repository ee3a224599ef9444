//! What the language model is told: the system prompt and the history of what was said, kept
//! within a token budget.

use crate::services::{ChatMessage, ChatRequest, ChatRole};

/// The platform's instructions, put before every counselor persona: replies are heard, not read.
pub const PLATFORM_PREAMBLE: &str = "You are speaking with a college student in a live voice conversation. \
Your words are turned into speech, so keep each reply brief (one to three short sentences), warm and \
natural, in plain spoken language. Never use lists, headings, markdown, emoji or URLs. Ask at most one \
question at a time.";

/// A rough token count (about four characters per token for English) used to keep requests
/// within budget without a tokenizer.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// Sampling settings and limits for each request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConversationLimits {
    /// Tokens the system prompt plus history may take; the oldest turns are dropped beyond it.
    pub history_token_budget: usize,
    pub max_reply_tokens: u32,
    pub temperature: f32,
}

impl Default for ConversationLimits {
    fn default() -> Self {
        Self {
            history_token_budget: 3_000,
            max_reply_tokens: 200,
            temperature: 0.7,
        }
    }
}

/// The system prompt and everything said so far, as the model should see it.
#[derive(Debug, Clone)]
pub struct Conversation {
    system: String,
    messages: Vec<ChatMessage>,
    limits: ConversationLimits,
}

impl Conversation {
    /// `persona` is the counselor category's own prompt; the platform preamble goes first.
    pub fn new(persona: &str, limits: ConversationLimits) -> Self {
        let persona = persona.trim();
        let system = if persona.is_empty() {
            PLATFORM_PREAMBLE.to_string()
        } else {
            format!("{PLATFORM_PREAMBLE}\n\n{persona}")
        };
        Self {
            system,
            messages: Vec::new(),
            limits,
        }
    }

    pub fn system_prompt(&self) -> &str {
        &self.system
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Records something said. Consecutive lines by the same speaker are joined into one
    /// message (a student who speaks twice before the counselor answers), as models expect
    /// turns to alternate. Empty text records nothing.
    pub fn record(&mut self, role: ChatRole, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push(' ');
                last.content.push_str(text);
            }
            _ => self.messages.push(ChatMessage {
                role,
                content: text.to_string(),
            }),
        }
    }

    /// The student's recent turns, oldest first (what the utterance hook sees as context).
    pub fn recent_student_turns(&self, count: usize) -> Vec<String> {
        let mut turns: Vec<String> = self
            .messages
            .iter()
            .rev()
            .filter(|m| m.role == ChatRole::User)
            .take(count)
            .map(|m| m.content.clone())
            .collect();
        turns.reverse();
        turns
    }

    /// The request for the next reply: the system prompt (plus a one-turn instruction, if
    /// given) and as much recent history as fits the budget. The newest message is always kept.
    pub fn request(&self, instruction: Option<&str>) -> ChatRequest {
        let system = match instruction {
            Some(extra) if !extra.trim().is_empty() => {
                format!("{}\n\n{}", self.system, extra.trim())
            }
            _ => self.system.clone(),
        };
        let mut budget = self
            .limits
            .history_token_budget
            .saturating_sub(estimate_tokens(&system));
        let mut first_kept = self.messages.len();
        for (i, message) in self.messages.iter().enumerate().rev() {
            let cost = estimate_tokens(&message.content);
            if cost > budget && first_kept < self.messages.len() {
                break;
            }
            budget = budget.saturating_sub(cost);
            first_kept = i;
        }
        ChatRequest {
            system,
            messages: self.messages[first_kept..].to_vec(),
            max_tokens: self.limits.max_reply_tokens,
            temperature: self.limits.temperature,
            first_text_by: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_prompt_is_the_preamble_then_the_persona() {
        let conversation = Conversation::new(
            "You are Maya, a career counselor.",
            ConversationLimits::default(),
        );
        let request = conversation.request(None);
        assert!(request.system.starts_with(PLATFORM_PREAMBLE));
        assert!(request
            .system
            .ends_with("You are Maya, a career counselor."));
        let with_instruction = conversation.request(Some("Mention the campus crisis line."));
        assert!(with_instruction
            .system
            .ends_with("Mention the campus crisis line."));
    }

    #[test]
    fn consecutive_lines_by_one_speaker_join_and_empty_lines_vanish() {
        let mut conversation = Conversation::new("", ConversationLimits::default());
        conversation.record(ChatRole::Assistant, "Hi, I'm here.");
        conversation.record(ChatRole::User, "I feel");
        conversation.record(ChatRole::User, "  ");
        conversation.record(ChatRole::User, "stuck.");
        assert_eq!(
            conversation.messages(),
            &[
                ChatMessage::assistant("Hi, I'm here."),
                ChatMessage::user("I feel stuck.")
            ]
        );
        assert_eq!(conversation.recent_student_turns(3), ["I feel stuck."]);
    }

    #[test]
    fn old_turns_fall_out_of_the_budget_but_the_newest_stays() {
        let limits = ConversationLimits {
            history_token_budget: estimate_tokens(PLATFORM_PREAMBLE) + 30,
            ..Default::default()
        };
        let mut conversation = Conversation::new("", limits);
        for i in 0..10 {
            conversation.record(ChatRole::User, &format!("student line number {i} here"));
            conversation.record(ChatRole::Assistant, &format!("counselor line number {i}"));
        }
        conversation.record(ChatRole::User, &"a very long final question ".repeat(20));
        let request = conversation.request(None);
        assert_eq!(request.messages.len(), 1, "only the newest message fits");
        assert_eq!(request.messages[0].role, ChatRole::User);

        let mut roomy = Conversation::new(
            "",
            ConversationLimits {
                history_token_budget: 10_000,
                ..Default::default()
            },
        );
        roomy.record(ChatRole::User, "hello");
        roomy.record(ChatRole::Assistant, "hi");
        roomy.record(ChatRole::User, "bye");
        assert_eq!(roomy.request(None).messages.len(), 3);
    }
}

//! The crisis-safety layer in a live call: every final student utterance is assessed before the
//! language model sees it. A crisis replaces the reply with the fixed crisis message (the model
//! is not even asked, so its outage cannot silence it); a concern asks the model to check on
//! the student's safety first.

use agent::{HookDecision, Utterance, UtteranceHook};
use async_trait::async_trait;
use safety::policy::{self, Response};

#[derive(Debug, Default, Clone, Copy)]
pub struct SafetyHook;

impl SafetyHook {
    pub fn decide(utterance: &str, recent_turns: &[String]) -> HookDecision {
        let recent: Vec<&str> = recent_turns.iter().map(String::as_str).collect();
        match policy::respond(&safety::assess(utterance, &recent)) {
            Response::Proceed => HookDecision::Proceed,
            Response::AskAboutSafety(instruction) => {
                HookDecision::AddInstruction(instruction.to_owned())
            }
            Response::ReplaceReply(message) => HookDecision::ReplaceReply(message.to_owned()),
        }
    }
}

#[async_trait]
impl UtteranceHook for SafetyHook {
    async fn review(&self, utterance: &Utterance) -> HookDecision {
        Self::decide(&utterance.text, &utterance.recent_student_turns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crisis_replaces_the_reply_and_small_talk_proceeds() {
        assert_eq!(
            SafetyHook::decide("i have exams next week", &[]),
            HookDecision::Proceed
        );
        match SafetyHook::decide("i want to end my life", &[]) {
            HookDecision::ReplaceReply(message) => assert!(message.contains("988")),
            other => panic!("expected the crisis message, got {other:?}"),
        }
    }
}

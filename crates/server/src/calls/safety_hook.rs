//! The crisis-safety layer in a live call: every final student utterance is judged once, before
//! the language model sees it, and that one verdict does everything. A crisis replaces the reply
//! with the fixed crisis message (the model is not even asked, so its outage cannot silence
//! it); a concern asks the model to check on the student's safety first. The same verdict goes
//! to the call's recorder, which stores it, alerts the student's screen and tells the staff on
//! duty, so the reply and the alert can never disagree.

use std::sync::Arc;

use agent::{HookDecision, Utterance, UtteranceHook};
use async_trait::async_trait;
use safety::policy::{self, Response};
use safety::{Classifier, Verdict};
use tokio::sync::mpsc;

/// A verdict on one student line, for the recorder.
#[derive(Debug, Clone)]
pub struct JudgedUtterance {
    /// The `seq` of the student's final transcript line.
    pub sequence: u64,
    /// What the student said (for the staff on duty; never logged).
    pub text: String,
    pub verdict: Verdict,
}

pub struct SafetyHook {
    classifier: Arc<Classifier>,
    verdicts: mpsc::UnboundedSender<JudgedUtterance>,
}

impl SafetyHook {
    /// A hook for one call; its verdicts go to `verdicts` (the call's recorder).
    pub fn new(
        classifier: Arc<Classifier>,
        verdicts: mpsc::UnboundedSender<JudgedUtterance>,
    ) -> Self {
        Self {
            classifier,
            verdicts,
        }
    }

    /// What the counselor does with a verdict.
    pub fn decision(verdict: &Verdict) -> HookDecision {
        match policy::respond(&verdict.assessment) {
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
    /// The agent runs this in a task of its own that finishes even when the student speaks again
    /// and the reply waiting for it is cut short, so every utterance's verdict is recorded.
    async fn review(&self, utterance: &Utterance) -> HookDecision {
        let classifier = self.classifier.clone();
        let text = utterance.text.clone();
        let recent = utterance.recent_student_turns.clone();
        // The model takes milliseconds of CPU: off the async workers.
        let span = tracing::Span::current();
        let judged = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let recent: Vec<&str> = recent.iter().map(String::as_str).collect();
            classifier.assess(&text, &recent)
        })
        .await;
        let verdict = match judged {
            Ok(verdict) => verdict,
            Err(error) => {
                // Only a panic gets here. The rules cannot fail: judge by them alone.
                tracing::error!(%error, "crisis classifier failed; judging by the phrase rules");
                let recent: Vec<&str> = utterance
                    .recent_student_turns
                    .iter()
                    .map(String::as_str)
                    .collect();
                Classifier::rules_only().assess(&utterance.text, &recent)
            }
        };
        let decision = Self::decision(&verdict);
        let _ = self.verdicts.send(JudgedUtterance {
            sequence: utterance.seq,
            text: utterance.text.clone(),
            verdict,
        });
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utterance(seq: u64, text: &str) -> Utterance {
        Utterance {
            seq,
            text: text.into(),
            recent_student_turns: vec![],
        }
    }

    #[tokio::test]
    async fn the_verdict_that_chose_the_reply_reaches_the_recorder() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hook = SafetyHook::new(Arc::new(Classifier::rules_only()), tx);
        assert_eq!(
            hook.review(&utterance(3, "i have exams next week")).await,
            HookDecision::Proceed
        );
        match hook.review(&utterance(5, "i want to end my life")).await {
            HookDecision::ReplaceReply(message) => assert!(message.contains("988")),
            other => panic!("expected the crisis message, got {other:?}"),
        }
        let calm = rx.recv().await.unwrap();
        assert_eq!(
            (calm.sequence, calm.verdict.level()),
            (3, domain::CrisisLevel::None)
        );
        let crisis = rx.recv().await.unwrap();
        assert_eq!(
            (crisis.sequence, crisis.verdict.level()),
            (5, domain::CrisisLevel::Crisis)
        );
    }
}

//! The crisis-safety layer in a live call: every final student utterance is judged once, before
//! the language model sees it, and that one verdict does everything. A crisis replaces the reply
//! with the fixed crisis message (the model is not even asked, so its outage cannot silence
//! it); a concern asks the model to check on the student's safety first. The same verdict goes
//! to the call's recorder, which stores it, alerts the student's screen and tells the staff on
//! duty, so the reply and the alert can never disagree.

use std::sync::Arc;

use agent::{HookDecision, Utterance, UtteranceHook};
use async_trait::async_trait;
use domain::TranscriptText;
use safety::policy::{self, Response};
use safety::verdict::Thresholds;
use safety::{Classifier, Verdict};

/// How long the risk model may take on one utterance before the rules decide alone. It takes
/// tens of milliseconds; this bound is for a node so busy that it cannot have it in time, and
/// sits well inside the call's hook timeout so the verdict still chooses the reply.
const MODEL_DEADLINE: std::time::Duration = std::time::Duration::from_millis(1_000);
use tokio::sync::mpsc;

/// A verdict on one student line, for the recorder.
#[derive(Debug, Clone)]
pub struct JudgedUtterance {
    /// The `seq` of the student's final transcript line.
    pub sequence: u64,
    /// What the student said (for the staff on duty; never logged).
    pub text: TranscriptText,
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
        let recent: Vec<&str> = utterance
            .recent_student_turns
            .iter()
            .map(String::as_str)
            .collect();
        // The rules take microseconds and cannot be late; the model takes milliseconds of CPU
        // (off the async workers) and, on a busy node, could be: it gets a deadline of its own,
        // well inside the call's hook timeout, after which the rules decide alone.
        let (rules, dismissed) = safety::verdict::rules_reading(&utterance.text, &recent);
        let classifier = self.classifier.clone();
        let text = utterance.text.clone();
        let earlier = utterance.recent_student_turns.clone();
        let span = tracing::Span::current();
        let model = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let earlier: Vec<&str> = earlier.iter().map(String::as_str).collect();
            classifier.read_model(&text, &earlier)
        });
        let reading = match tokio::time::timeout(MODEL_DEADLINE, model).await {
            Ok(Ok(reading)) => reading,
            Ok(Err(error)) => {
                tracing::error!(seq = utterance.seq, %error, "risk model panicked; the phrase rules decide alone");
                None
            }
            Err(_) => {
                tracing::error!(
                    seq = utterance.seq,
                    deadline_ms = domain::millis(MODEL_DEADLINE),
                    "risk model too slow; the phrase rules decide alone"
                );
                None
            }
        };
        let verdict = safety::verdict::combine(&Thresholds::CHOSEN, rules, dismissed, reading);
        let decision = Self::decision(&verdict);
        let judged = JudgedUtterance {
            sequence: utterance.seq,
            text: TranscriptText::new(utterance.text.clone()),
            verdict,
        };
        if self.verdicts.send(judged).is_err() {
            // The recorder stopped waiting: the call ended long ago. Never silent.
            tracing::error!(seq = utterance.seq, level = %verdict.level(), "a verdict arrived after its call's recorder finished; it was not recorded");
        }
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

//! The utterance hook: a say in each student utterance before the language model sees it. The
//! crisis-safety layer plugs in here.

use async_trait::async_trait;

/// A finished student utterance, as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// The `seq` of the utterance's final transcript line, so a verdict on it can be matched
    /// to the stored line.
    pub seq: u64,
    /// What the student just said (the final transcript of their turn).
    pub text: String,
    /// The student's earlier turns in this call, oldest first (a few, for context).
    pub recent_student_turns: Vec<String>,
}

/// What the call does with an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    /// Answer normally.
    Proceed,
    /// Answer with the language model, adding this instruction to the system prompt for this
    /// turn only.
    AddInstruction(String),
    /// Say exactly this instead of asking the language model (which is not called at all, so
    /// its failure cannot stop this reply).
    ReplaceReply(String),
}

#[async_trait]
pub trait UtteranceHook: Send + Sync {
    /// Called once per final student utterance, before the language model. Should be quick: the
    /// student is waiting. A hook that takes longer than the call's `hook_timeout` is skipped
    /// (treated as `Proceed`) and reported as an error event. The future is dropped when the
    /// student speaks again before the reply starts, so work that must finish whatever happens
    /// (recording a verdict) belongs in a task of its own.
    async fn review(&self, utterance: &Utterance) -> HookDecision;
}

/// A hook that lets every utterance through.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

#[async_trait]
impl UtteranceHook for NoHook {
    async fn review(&self, _utterance: &Utterance) -> HookDecision {
        HookDecision::Proceed
    }
}

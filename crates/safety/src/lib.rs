//! Crisis detection for what students say, and what the counselor does about it.
//!
//! Every final student utterance goes through [`assess`] before the language model sees it.
//! The classifier is deterministic Rust: no model, no network, no I/O, a few microseconds per
//! utterance, so it works when the model is down, slow or wrong.
//!
//! ```
//! use domain::{CrisisLevel, CrisisSignal};
//!
//! let assessment = safety::assess("i dont want to be here anymore", &[]);
//! assert_eq!(assessment.level, CrisisLevel::Crisis);
//! assert_eq!(assessment.signal, Some(CrisisSignal::SuicidalIdeation));
//!
//! match safety::policy::respond(&assessment) {
//!     safety::policy::Response::ReplaceReply(message) => assert!(message.contains("988")),
//!     other => panic!("expected the crisis message, got {other:?}"),
//! }
//! ```
//!
//! How it works: the text is normalised (lowercase, punctuation dropped but clause breaks kept,
//! contractions expanded, common recognition slips fixed), then matched against a compact
//! phrase rule set (`rules.rs`). Each match is then judged: is it negated ("i'm not going to
//! hurt myself"), about someone else ("my roommate said she wants to die"), told as history
//! ("in high school"), an idiom ("dying of embarrassment"), a class topic ("suicide rates") or
//! a quotation from a song or film. The strongest remaining match wins. Recent student turns
//! can raise the result: "yes" right after talk of dying is a crisis.
//!
//! Levels:
//! - **crisis**: the student wants to die, has a plan or means, is hurting themself, intends to
//!   hurt someone, is in danger or being abused now, says goodbye-like indirect things ("they'd
//!   be better off without me", "i've been giving my stuff away"), or someone else is at risk
//!   right now.
//! - **concern**: hopelessness, feeling a burden, a negated or past statement of self-harm,
//!   someone else at risk, a bare mention of suicide: the counselor asks gently about safety.
//! - **none**: everything else, including idioms ("this exam is killing me") and academic or
//!   media talk ("we're studying suicide rates in sociology").

mod check;
mod classify;
mod normalize;
mod pattern;
pub mod policy;
mod rules;

pub use check::check_lines;

use domain::{CrisisLevel, CrisisSignal};

/// Who a signal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The student: their wish to die, their self-harm, their intent, their safety.
    Student,
    /// Someone the student talks about (a friend, a roommate, a parent).
    SomeoneElse,
}

/// The result of classifying one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    pub level: CrisisLevel,
    /// What matched; `None` exactly when `level` is [`CrisisLevel::None`]. Risk to someone
    /// else is always [`CrisisSignal::ThirdPartyRisk`].
    pub signal: Option<CrisisSignal>,
    /// Who it is about; `None` exactly when `level` is [`CrisisLevel::None`].
    pub subject: Option<Subject>,
    /// The phrase was negated ("i would never kill myself"), which lowers crisis to concern.
    pub negated: bool,
    /// The level comes from the student's recent turns, not from this utterance alone.
    pub from_context: bool,
    /// The rule that decided, in the rule language of `rules.rs`, for reviewers. It never
    /// contains the student's words.
    pub rule: Option<&'static str>,
}

impl Assessment {
    /// Nothing that suggests risk.
    pub const NONE: Assessment = Assessment {
        level: CrisisLevel::None,
        signal: None,
        subject: None,
        negated: false,
        from_context: false,
        rule: None,
    };
}

/// Classifies a student's utterance (speech-recognition output, any case, with or without
/// punctuation). `recent_turns` are the student's previous utterances in this session, oldest
/// first (a handful is enough); they can only raise the level, never lower it.
pub fn assess(utterance: &str, recent_turns: &[&str]) -> Assessment {
    classify::assess_with_context(utterance, recent_turns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CrisisLevel::{Concern, Crisis, None as Calm};

    fn level(text: &str) -> CrisisLevel {
        assess(text, &[]).level
    }

    fn signal(text: &str) -> Option<CrisisSignal> {
        assess(text, &[]).signal
    }

    #[test]
    fn direct_statements_are_crisis() {
        assert_eq!(level("I want to die."), Crisis);
        assert_eq!(level("i keep thinking about killing myself"), Crisis);
        assert_eq!(level("im going to end my life"), Crisis);
        assert_eq!(
            signal("ive been saving up my pills"),
            Some(CrisisSignal::PlanOrMeans)
        );
        assert_eq!(
            signal("i cut myself again last night"),
            Some(CrisisSignal::SelfHarm)
        );
        assert_eq!(
            signal("i want to hurt him"),
            Some(CrisisSignal::HarmToOthers)
        );
        assert_eq!(
            signal("my dad hits me when he drinks"),
            Some(CrisisSignal::DangerOrAbuse)
        );
    }

    #[test]
    fn negation_lowers_crisis_to_concern() {
        assert_eq!(level("I'm not going to hurt myself"), Concern);
        assert_eq!(level("i would never kill myself"), Concern);
        assert_eq!(
            level("i dont want to die i just want this semester to be over"),
            Concern
        );
        assert!(assess("i'm not suicidal", &[]).negated);
    }

    #[test]
    fn negation_that_governs_something_else_does_not_count() {
        assert_eq!(level("i cant stop thinking about killing myself"), Crisis);
        assert_eq!(level("i dont know i just want to die"), Crisis);
        assert_eq!(level("im not sure i want to live anymore"), Crisis);
        assert_eq!(level("i'm not okay, but i want to die"), Crisis);
    }

    #[test]
    fn idioms_and_hyperbole_are_not_crisis() {
        assert_eq!(level("this exam is killing me"), Calm);
        assert_eq!(level("I could die of embarrassment"), Calm);
        assert_eq!(level("my phone died during the lecture"), Calm);
        assert_eq!(level("that was a killer workout"), Calm);
        assert_eq!(level("im dying to see that movie"), Calm);
        assert_eq!(level("i cut myself shaving this morning"), Calm);
        assert_eq!(level("it just hit me that i graduate in may"), Calm);
        assert_eq!(level("this class makes me want to die"), Concern);
    }

    #[test]
    fn someone_else_at_risk_is_never_silent() {
        let a = assess("my roommate said she wants to die", &[]);
        assert_eq!(a.level, Concern);
        assert_eq!(a.signal, Some(CrisisSignal::ThirdPartyRisk));
        assert_eq!(a.subject, Some(Subject::SomeoneElse));
        assert_eq!(level("my friend took a whole bottle of pills"), Crisis);
        assert_eq!(
            level("my brother texted me he is going to kill himself tonight"),
            Crisis
        );
        assert_eq!(
            signal("she said i want to die"),
            Some(CrisisSignal::ThirdPartyRisk)
        );
    }

    #[test]
    fn indirect_warnings() {
        assert_eq!(level("everyone would be better off without me"), Crisis);
        assert_eq!(level("ive been giving my stuff away"), Crisis);
        assert_eq!(level("i wont be around next week"), Crisis);
        assert_eq!(level("i feel like such a burden to everyone"), Concern);
        assert_eq!(
            level("i wont be around next week because im visiting my parents"),
            Calm
        );
    }

    #[test]
    fn study_and_media_talk_is_not_crisis() {
        assert_eq!(level("we're studying suicide rates in sociology"), Calm);
        assert_eq!(level("im writing a paper on suicide prevention"), Calm);
        assert_eq!(level("the chorus goes i just want to die tonight"), Calm);
        assert_eq!(level("i was thinking about suicide during class"), Crisis);
    }

    #[test]
    fn history_is_concern() {
        assert_eq!(level("i used to cut myself in high school"), Concern);
        assert_eq!(level("i used to be happy now i want to die"), Crisis);
    }

    #[test]
    fn recent_turns_raise_follow_ups() {
        let earlier = ["i feel so hopeless lately"];
        assert_eq!(assess("yeah sometimes", &earlier).level, Crisis);
        assert!(assess("yeah sometimes", &earlier).from_context);
        assert_eq!(assess("yeah sometimes", &[]).level, Calm);
        assert_eq!(assess("tonight", &["i want to end it all"]).level, Crisis);
        assert_eq!(assess("i dont know", &["i want to die"]).level, Concern);
        assert_eq!(assess("yeah im fine", &earlier).level, Calm);
        assert_eq!(
            assess("can we talk about my resume", &["i love my major"]).level,
            Calm
        );
    }

    #[test]
    fn no_signal_means_no_subject() {
        let a = assess("i have three exams next week and i'm stressed", &[]);
        assert_eq!(a, Assessment::NONE);
    }
}

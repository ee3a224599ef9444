//! What the counselor does with an assessment. All safety wording lives here, in one place,
//! and changes to it are reviewed like code.
//!
//! - crisis: the language model's reply is replaced by a fixed message with crisis resources;
//! - concern: the model is told to ask gently about safety before anything else;
//! - none: the conversation goes on.

use domain::{CrisisLevel, CrisisSignal};

use crate::{Assessment, Subject};

/// What to do with the language model's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Nothing to add; answer as usual.
    Proceed,
    /// Add this instruction for the language model to the turn (e.g. as a system message).
    AskAboutSafety(&'static str),
    /// Do not use the language model's reply; say this instead.
    ReplaceReply(&'static str),
}

/// Said instead of the model's reply when the student is at risk.
pub const CRISIS_MESSAGE: &str = "I'm really glad you told me, and I want you to know you're \
not alone in this. Please reach out right now to people who can help: you can call or text 988 \
to reach the 988 Suicide and Crisis Lifeline, any time, day or night, or chat with them at \
988lifeline.org. If you are in immediate danger, please call 911 or your campus emergency \
services. Your campus counseling center is there for you too. I'm here with you, and I'd like \
to keep talking while you reach out.";

/// Said instead of the model's reply when someone the student knows is at risk right now.
pub const SOMEONE_ELSE_CRISIS_MESSAGE: &str = "Thank you for telling me. It sounds like they \
may be in danger right now, and you don't have to handle this alone. If they are in immediate \
danger, please call 911 or your campus emergency services now. You can also call or text 988, \
the 988 Suicide and Crisis Lifeline, or chat at 988lifeline.org, to get help for them and \
support for yourself. Your campus counseling center can help too. Are you with them right now?";

/// Added for the model when the student may be at risk.
pub const ASK_ABOUT_SAFETY: &str = "The student may be at risk. Before anything else, respond \
with warmth and gently ask whether they are safe right now and whether they are having \
thoughts of hurting themselves or ending their life. Do not minimise what they said, do not \
lecture, and do not move on to other topics until you know they are safe. If they say they \
are in danger, tell them they can call or text 988 (the 988 Suicide and Crisis Lifeline) or \
call 911.";

/// Added for the model when the student is worried about someone else.
pub const ASK_ABOUT_SOMEONE_ELSE: &str = "The student is worried that someone they know may be \
at risk. Before anything else, thank them for telling you, gently ask whether that person is \
safe right now, and let them know that they can call or text 988 (the 988 Suicide and Crisis \
Lifeline) for help for someone else, or call 911 if the person is in immediate danger. Also \
ask how the student is coping themselves.";

/// The response for an assessment.
pub fn respond(assessment: &Assessment) -> Response {
    let about_someone_else = assessment.subject == Some(Subject::SomeoneElse)
        || assessment.signal == Some(CrisisSignal::ThirdPartyRisk);
    match (assessment.level, about_someone_else) {
        (CrisisLevel::None, _) => Response::Proceed,
        (CrisisLevel::Concern, false) => Response::AskAboutSafety(ASK_ABOUT_SAFETY),
        (CrisisLevel::Concern, true) => Response::AskAboutSafety(ASK_ABOUT_SOMEONE_ELSE),
        (CrisisLevel::Crisis, false) => Response::ReplaceReply(CRISIS_MESSAGE),
        (CrisisLevel::Crisis, true) => Response::ReplaceReply(SOMEONE_ELSE_CRISIS_MESSAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess_by_rules as assess;

    #[test]
    fn crisis_replaces_the_reply_with_the_resources() {
        let Response::ReplaceReply(message) = respond(&assess("i want to kill myself", &[])) else {
            panic!("crisis must replace the reply");
        };
        for resource in [
            "988",
            "call or text 988",
            "988lifeline.org",
            "911",
            "counseling center",
            "not alone",
        ] {
            assert!(
                message.contains(resource),
                "crisis message lacks {resource:?}"
            );
        }
    }

    #[test]
    fn someone_else_in_danger_gets_resources_for_them() {
        let response = respond(&assess(
            "my roommate took a bunch of pills and wont wake up",
            &[],
        ));
        assert_eq!(
            response,
            Response::ReplaceReply(SOMEONE_ELSE_CRISIS_MESSAGE)
        );
        assert!(SOMEONE_ELSE_CRISIS_MESSAGE.contains("911"));
        assert!(SOMEONE_ELSE_CRISIS_MESSAGE.contains("988lifeline.org"));
    }

    #[test]
    fn concern_asks_about_safety_first() {
        assert_eq!(
            respond(&assess("i feel so hopeless", &[])),
            Response::AskAboutSafety(ASK_ABOUT_SAFETY)
        );
        assert_eq!(
            respond(&assess("my friend keeps saying she wants to die", &[])),
            Response::AskAboutSafety(ASK_ABOUT_SOMEONE_ELSE)
        );
    }

    #[test]
    fn ordinary_talk_proceeds() {
        assert_eq!(
            respond(&assess("how do i make a budget for next semester", &[])),
            Response::Proceed
        );
    }
}

//! Crisis detection for what students say, and what the counselor does about it.
//!
//! Every final student utterance goes through [`Classifier::assess`] before the language model
//! sees it. Two readers judge it, both deterministic and in process, with no network and no
//! language model, so detection works when the counselor's model is down, slow or wrong:
//!
//! - **The phrase rules** (`rules.rs`, a few microseconds): the text is normalised (lowercase,
//!   punctuation dropped but clause breaks kept, contractions expanded, common recognition slips
//!   fixed), then matched against a compact phrase rule set. Each match is judged: is it negated
//!   ("i'm not going to hurt myself"), about someone else ("my roommate said she wants to die"),
//!   told as history ("in high school"), an idiom ("dying of embarrassment"), a class topic
//!   ("suicide rates") or a quotation from a song or film. Recent student turns can raise the
//!   result: "yes" right after talk of dying is a crisis.
//! - **The risk model** ([`model`], milliseconds): a sentence encoder and a head fitted to the
//!   reviewed corpus in `corpus/`, which scores phrasings no rule names.
//!
//! [`verdict`] combines them, in one place, into the one verdict the reply, the session record,
//! the student's screen and the staff on duty all see.
//!
//! ```
//! use domain::{CrisisLevel, CrisisSignal};
//!
//! let assessment = safety::assess_by_rules("i dont want to be here anymore", &[]);
//! assert_eq!(assessment.level, CrisisLevel::Crisis);
//! assert_eq!(assessment.signal, Some(CrisisSignal::SuicidalIdeation));
//!
//! match safety::policy::respond(&assessment) {
//!     safety::policy::Response::ReplaceReply(message) => assert!(message.contains("988")),
//!     other => panic!("expected the crisis message, got {other:?}"),
//! }
//! ```
//!
//! Levels (the labeling policy of the corpus and every evaluation set):
//! - **crisis**: current risk that warrants crisis resources now: suicidal ideation (active, or
//!   a passive wish to be dead), intent, a plan, means or preparation, recent or ongoing
//!   self-harm or urges, intent to seriously harm someone, the student in danger now; or
//!   someone else in danger right now.
//! - **concern**: distress or risk factors without current ideation or intent: hopelessness,
//!   overwhelming stress, panic, worthlessness, a past attempt told as history, a friend who may
//!   be at risk, a denial beside a distress statement: the counselor asks gently about safety.
//! - **none**: everything else, including idioms ("this exam is killing me") and academic or
//!   media talk ("we're studying suicide rates in sociology").

mod check;
mod classify;
pub mod corpus;
pub mod model;
mod normalize;
mod pattern;
pub mod policy;
mod rules;
pub mod verdict;

pub use check::check_lines;
pub use domain::DecidedBy;
pub use normalize::canonical_text;
pub use verdict::{Classifier, Verdict};

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

/// The phrase rules' reading of a student's utterance (speech-recognition output, any case,
/// with or without punctuation). `recent_turns` are the student's previous utterances in this
/// session, oldest first (a handful is enough); they can only raise the level, never lower it.
/// Calls judge utterances with [`Classifier::assess`], which adds the risk model.
pub fn assess_by_rules(utterance: &str, recent_turns: &[&str]) -> Assessment {
    classify::assess_with_context(utterance, recent_turns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CrisisLevel::{Concern, Crisis, None as Calm};

    fn level(text: &str) -> CrisisLevel {
        assess_by_rules(text, &[]).level
    }

    /// Each utterance is judged at its level, naming the one that is not.
    fn assert_levels(cases: &[(&str, CrisisLevel)]) {
        for (text, expected) in cases {
            assert_eq!(level(text), *expected, "{text}");
        }
    }

    fn signal(text: &str) -> Option<CrisisSignal> {
        assess_by_rules(text, &[]).signal
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
        assert!(assess_by_rules("i'm not suicidal", &[]).negated);
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
        let a = assess_by_rules("my roommate said she wants to die", &[]);
        assert_eq!(a.level, Concern);
        assert_eq!(a.signal, Some(CrisisSignal::ThirdPartyRisk));
        assert_eq!(a.subject, Some(Subject::SomeoneElse));
        assert_eq!(level("my friend took a whole bottle of pills"), Crisis);
        assert_eq!(level("my cousin overdosed and hes breathing weird"), Crisis);
        assert_eq!(
            level("my roommate drank a lot and shes not waking up and her lips are blue"),
            Crisis
        );
        assert_eq!(level("i think he is not breathing"), Crisis);
        assert_eq!(level("my roommate is not waking up for her eight am"), Calm);
        assert_eq!(level("a patient came in after an overdose"), Concern);
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
        assert_eq!(
            level("i wont be around next weekend cause im going to my cousins wedding"),
            Calm
        );
        assert_eq!(level("ive been giving my clothes to goodwill"), Calm);
        assert_eq!(level("im giving my cat to my sister"), Crisis);
    }

    #[test]
    fn preparation_and_euphemism_told_sideways() {
        assert_eq!(level("maybe ill just check out for good"), Crisis);
        assert_eq!(level("whatever, might as well end it all"), Crisis);
        assert_eq!(level("i dont feel safe from my own mind tonight"), Crisis);
        assert_eq!(
            level("i wrote everything i wanted to say in a note"),
            Crisis
        );
        assert_eq!(
            level("i got a lot of ibuprofen and i dont have a headache"),
            Crisis
        );
        assert_eq!(level("im going to self arm"), Crisis);
        assert_eq!(level("i sat in the garage with the engine running"), Crisis);
        assert_eq!(level("my brother drank bleach"), Crisis);
        assert_eq!(
            level("my dad locked me out and its freezing outside"),
            Crisis
        );
        assert_eq!(level("i overdosed on tacos at lunch"), Calm);
        assert_eq!(level("i locked myself out of my dorm again"), Calm);
        assert_eq!(level("i accidentally poured hot tea on my hand"), Calm);
    }

    #[test]
    fn quiet_arrangements_and_injuries_in_other_words() {
        assert_levels(&[
            ("i want to not exist for a while", Crisis),
            ("soon nobody will need to deal with me anymore", Crisis),
            (
                "my neighbor said shell keep my cat and honestly for good",
                Crisis,
            ),
            ("i chose the date already", Crisis),
            ("we picked a date for the wedding in june", Calm),
            (
                "i kept banging my head on the desk until it bruised",
                Crisis,
            ),
            ("my cuts are bleeding through the bandage", Crisis),
            ("im going to make my coach pay and im not joking", Crisis),
            ("my ex wont leave my dorm and hes yelling", Crisis),
            ("im living in my car and its below freezing", Crisis),
            ("lately i feel kind of sue sidal", Crisis),
            (
                "said goodbye to everyone on my last shift at the cafe",
                Calm,
            ),
            ("i want to unalive my printer", Calm),
        ]);
    }

    #[test]
    fn means_marks_and_threats_in_other_words() {
        assert_levels(&[
            ("theres a tube on the exhaust of my car now", Crisis),
            ("the gun is loaded and sitting on my nightstand", Crisis),
            ("i want to swallow all my zoloft at once", Crisis),
            ("your zoloft is ready for pickup at the counter", Calm),
            ("i started a note for real this time", Crisis),
            (
                "my only plan after this semester is not being alive",
                Crisis,
            ),
            ("im done and i do not mean school", Crisis),
            (
                "my aunt said shell keep my dog if something happens to me",
                Crisis,
            ),
            (
                "i slam my head into the door when it gets loud until i get dizzy",
                Crisis,
            ),
            (
                "the scratches on my thighs are hard to cover at the pool",
                Crisis,
            ),
            (
                "the coach noticed the burns but nobody knows i did them to myself",
                Crisis,
            ),
            (
                "i printed the layout of the office and looked up where to buy a rifle",
                Crisis,
            ),
            ("ive pictured what i would do to her in detail", Crisis),
            (
                "i nearly smothered the baby when she wouldnt stop crying",
                Crisis,
            ),
            (
                "our seminar covered non suicidal self injury in teens",
                Calm,
            ),
        ]);
    }

    #[test]
    fn quiet_wishes_methods_and_danger_at_night() {
        assert_levels(&[
            ("i keep praying i never wake up", Crisis),
            ("id be okay if a truck hit me tomorrow", Crisis),
            ("i hope my flight goes down on the way back", Crisis),
            ("i hope the flight goes smoothly", Calm),
            ("i keep thinking about steering into the guardrail", Crisis),
            ("i bought charcoal and duct tape yesterday", Crisis),
            ("i made a playlist for my funeral", Crisis),
            ("i have like fifty advil saved up in my desk", Crisis),
            ("i used a safety pin on my thigh again", Crisis),
            ("the urge to s h is back", Crisis),
            (
                "my stepbrother keeps coming into my room when everyone is asleep",
                Crisis,
            ),
            (
                "two guys are carrying my friend to a car and shes passed out",
                Crisis,
            ),
            ("we played mafia and i killed everyone as the mafia", Calm),
            ("my kitten keeps scratching my arms", Calm),
            ("my quiz asked how much tylenol harms the liver", Calm),
        ]);
    }

    #[test]
    fn danger_in_the_next_room_and_plans_across_two_clauses() {
        assert_levels(&[
            (
                "my dad threw a glass at me and hes still downstairs",
                Crisis,
            ),
            ("the coach threw a ball at me during warmups", Calm),
            ("i think the man upstairs is beating her right now", Crisis),
            ("i want out of this life, not just this major", Crisis),
            ("i dont see myself alive past graduation", Crisis),
            ("you wont need to worry about me much longer", Crisis),
            ("i wouldnt mind if my plane went down", Crisis),
            ("im going to drive to the river and not come back", Crisis),
            ("i dug into my skin with a thumbtack", Crisis),
            ("the baby screams all night and i want to shake him", Crisis),
            ("i will beat him until he stops moving", Crisis),
            ("they will all regret it, i have a plan", Crisis),
            ("i regret nothing. i have a plan for the summer", Calm),
            ("my plan b is to not be here anymore", Crisis),
            (
                "i could run over my boss, i drive past his house every night",
                Crisis,
            ),
            ("my family is better off collecting the insurance", Crisis),
            ("we would be better off with student insurance", Calm),
            ("i hope i dont wake up late for my exam", Calm),
            ("i wrote letters to my roommates for after i graduate", Calm),
            ("saying my goodbyes to my department before the move", Calm),
            ("i gave my old bike to my neighbor", Calm),
            ("the job is mostly cutting wood and sanding", Calm),
            ("i pray i do not wake up before anyone notices", Crisis),
            (
                "ill run over the notes tonight, im driving past her house anyway",
                Calm,
            ),
            (
                "i want it over and done with, im going to kill myself",
                Crisis,
            ),
        ]);
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
        assert_eq!(assess_by_rules("yeah sometimes", &earlier).level, Crisis);
        assert!(assess_by_rules("yeah sometimes", &earlier).from_context);
        assert_eq!(assess_by_rules("yeah sometimes", &[]).level, Calm);
        assert_eq!(
            assess_by_rules("tonight", &["i want to end it all"]).level,
            Crisis
        );
        assert_eq!(
            assess_by_rules("i dont know", &["i want to die"]).level,
            Concern
        );
        assert_eq!(assess_by_rules("yeah im fine", &earlier).level, Calm);
        assert_eq!(
            assess_by_rules("can we talk about my resume", &["i love my major"]).level,
            Calm
        );
    }

    #[test]
    fn no_signal_means_no_subject() {
        let a = assess_by_rules("i have three exams next week and i'm stressed", &[]);
        assert_eq!(a, Assessment::NONE);
    }
}

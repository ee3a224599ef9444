//! One verdict per utterance: the phrase rules and the risk model combined, in this one place.
//!
//! The rules are precise and know grammar the model does not: negation scope, idioms, quotes,
//! third person, study and media framing, and the exact signal. The model knows meaning the
//! rules do not: phrasings nobody wrote a rule for. So:
//!
//! 1. A rule crisis is a crisis. Nothing the model says lowers it.
//! 2. When the rules matched risk words and set them aside or lowered them (negated, told as
//!    history, an idiom, a quote, a class topic), the model can raise the level to concern but
//!    not to crisis, and about someone else not at all, unless it is very sure of a crisis
//!    (`overrule_rules`): the rules know why the words do not mean what they seem, the model
//!    only that they are there. A denial ("i would never ...") stays below crisis however sure
//!    the model is: sentence encoders read a denial much like what it denies.
//! 3. Otherwise the model can raise the level: crisis from `crisis`, concern from `concern`.
//!    Read after the student's previous turn, the utterance is a crisis from
//!    `crisis_in_context`, but only when it carries some risk of its own (`context_gate`), so a
//!    student who has moved on ("can we talk about my resume") is not held to what they said.
//! 4. The level is never lower than the rules' level.
//!
//! The [`Thresholds`] were chosen by cross-validation on the corpus (`examples/risk_tuning/`)
//! with the rules' own evaluation sets as a check; `docs/benchmarks/safety.md` records the figures.

use domain::{CrisisLevel, CrisisSignal, DecidedBy};

use crate::model::{Reading, RiskModel};
use crate::{classify, Assessment, Subject};

/// The thresholds of the combination, each with the reason for its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The model alone calls a crisis from this probability of the crisis level.
    pub crisis: f32,
    /// The model alone calls a concern from this probability of any risk (concern or crisis).
    pub concern: f32,
    /// Crisis probability of this utterance read with the previous turn (the two turns'
    /// embeddings summed).
    pub crisis_in_context: f32,
    /// Risk this utterance must carry on its own before its context can make it a crisis.
    pub context_gate: f32,
    /// How sure the model must be to overrule the rules' reason for setting risk words aside.
    pub overrule_rules: f32,
}

impl Thresholds {
    /// Chosen on the corpus's five-fold cross-validation (`examples/risk_tuning/`), with the
    /// spent evaluation sets as a check. The head's crisis probability is well calibrated on the
    /// corpus but over-confident on everyday talk that shares words or topics with a crisis ("my
    /// mom is going to kill me when she sees my grades"), so the crisis bar was 0.8 while most
    /// false crises came from windows of long everyday talk. Since those are read only when the
    /// whole utterance carries risk (`model::WINDOWS_GATE`), and the head has learned that a
    /// window of ordinary talk is ordinary, 0.65 finds more crises for the same false ones: on
    /// the cross-validation 93.9 % of crisis lines against 91.6 % at 0.8, turning 2.2 % of
    /// ordinary talk into a crisis against 1.9 %; on three spent sets by other authors it lost no
    /// ordinary line and found one to two more crises in a hundred. Below the crisis bar a leaning
    /// to crisis still counts as risk: concern (the counselor asks about safety) costs a student
    /// little, so its bar is lower.
    pub const CHOSEN: Thresholds = Thresholds {
        crisis: 0.6,
        concern: 0.6,
        crisis_in_context: 0.6,
        context_gate: 0.3,
        overrule_rules: 0.95,
    };
}

/// The verdict on one utterance: what the reply, the record, the alert and the staff see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub assessment: Assessment,
    /// Which path reached the level; `None` exactly when nothing signals risk.
    pub decided_by: Option<DecidedBy>,
    /// The model's reading; `None` without a model or when it failed (the rules then decide).
    pub reading: Option<Reading>,
}

impl Verdict {
    pub fn level(&self) -> CrisisLevel {
        self.assessment.level
    }
}

/// Crisis detection: the phrase rules, and the risk model when one is loaded.
pub struct Classifier {
    model: Option<RiskModel>,
}

impl Classifier {
    /// The phrase rules alone (when the model's files are not installed).
    pub fn rules_only() -> Self {
        Self { model: None }
    }

    pub fn with_model(model: RiskModel) -> Self {
        Self { model: Some(model) }
    }

    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// Judges a student's utterance; `recent_turns` are their earlier turns, oldest first.
    pub fn assess(&self, utterance: &str, recent_turns: &[&str]) -> Verdict {
        let (rules, dismissed) = rules_reading(utterance, recent_turns);
        let reading = self.read_model(utterance, recent_turns);
        combine(&Thresholds::CHOSEN, rules, dismissed, reading)
    }

    /// The risk model's reading alone (the slow part of [`assess`](Self::assess), for callers
    /// that must bound it): `None` without a model, for an utterance with no words left once
    /// fillers are dropped ("um."), or when the model fails (logged).
    pub fn read_model(&self, utterance: &str, recent_turns: &[&str]) -> Option<Reading> {
        let model = self.model.as_ref()?;
        if crate::canonical_text(utterance).is_empty() {
            return None;
        }
        // The previous turn is read only when this one carries some risk of its own: it can
        // change nothing otherwise, and when it is no longer remembered it costs an encoder pass.
        let gate = Thresholds::CHOSEN.context_gate;
        match model.read(utterance, recent_turns, |alone| alone.risk() >= gate) {
            Ok(reading) => Some(reading),
            Err(error) => {
                tracing::error!(%error, "risk model failed; the phrase rules decide alone");
                None
            }
        }
    }
}

impl Classifier {
    /// Judges each utterance on its own (no recent turns), the model reading them as one batch.
    pub fn assess_each(&self, utterances: &[&str]) -> Vec<Verdict> {
        let readings: Vec<Option<Reading>> =
            match self.model.as_ref().map(|m| m.read_each(utterances)) {
                Some(Ok(readings)) => readings.into_iter().map(Some).collect(),
                Some(Err(error)) => {
                    tracing::error!(%error, "risk model failed; the phrase rules decide alone");
                    vec![None; utterances.len()]
                }
                None => vec![None; utterances.len()],
            };
        utterances
            .iter()
            .zip(readings)
            .map(|(utterance, reading)| {
                let (rules, dismissed) = rules_reading(utterance, &[]);
                combine(&Thresholds::CHOSEN, rules, dismissed, reading)
            })
            .collect()
    }
}

/// The phrase rules' reading of an utterance in context, and whether they set aside or lowered
/// risk words in it (the `dismissed` input of [`combine`]).
pub fn rules_reading(utterance: &str, recent_turns: &[&str]) -> (Assessment, bool) {
    classify::read_with_context(utterance, recent_turns)
}

/// The combination described in the module documentation.
pub fn combine(
    thresholds: &Thresholds,
    rules: Assessment,
    dismissed: bool,
    reading: Option<Reading>,
) -> Verdict {
    let Some(reading) = reading else {
        let decided_by = (rules.level != CrisisLevel::None).then_some(DecidedBy::Rule);
        return Verdict {
            assessment: rules,
            decided_by,
            reading: None,
        };
    };
    let model_level = model_level(thresholds, &reading);
    let model_level = if rules.negated {
        // A denial the rules recognised ("i would never kill myself") reads to the adapted
        // encoder much like what it denies, however sure it is: the rules are exact about
        // negation, so the model may make it concern (the counselor asks) but not a crisis.
        model_level.min(rules.level.max(CrisisLevel::Concern))
    } else if reading.alone.crisis >= thresholds.overrule_rules {
        model_level
    } else if rules.subject == Some(Subject::SomeoneElse) {
        // The rules know who it is about, and how near the danger is.
        model_level.min(rules.level)
    } else if dismissed {
        // Set-aside words may sit beside a statement the model reads as risk ("this exam is
        // killing me and ..."): not a crisis on the model's word, but worth asking about.
        model_level.min(rules.level.max(CrisisLevel::Concern))
    } else {
        model_level
    };
    let level = rules.level.max(model_level);
    let decided_by = match (
        rules.level == level && level != CrisisLevel::None,
        model_level == level && level != CrisisLevel::None,
    ) {
        (true, true) => Some(DecidedBy::Both),
        (true, false) => Some(DecidedBy::Rule),
        (false, true) => Some(DecidedBy::Model),
        (false, false) => None,
    };
    let assessment = match decided_by {
        Some(DecidedBy::Model) if rules.signal.is_some() => Assessment {
            // The model raised what the rules found: their signal and subject still name it.
            level,
            from_context: reading.alone.crisis < thresholds.crisis && level == CrisisLevel::Crisis,
            ..rules
        },
        Some(DecidedBy::Model) => {
            // The nearest reviewed example names the kind of risk, but never who is at risk:
            // with no rule to say otherwise the student is talking about themself.
            let signal = reading
                .nearest
                .and_then(|n| n.signal)
                .filter(|s| *s != CrisisSignal::ThirdPartyRisk)
                .unwrap_or(if level == CrisisLevel::Crisis {
                    CrisisSignal::SuicidalIdeation
                } else {
                    CrisisSignal::IndirectWarning
                });
            Assessment {
                level,
                signal: Some(signal),
                subject: Some(Subject::Student),
                negated: false,
                from_context: reading.alone.crisis < thresholds.crisis
                    && level == CrisisLevel::Crisis,
                rule: None,
            }
        }
        _ => rules,
    };
    Verdict {
        assessment,
        decided_by,
        reading: Some(reading),
    }
}

/// The level the model's reading points to on its own.
fn model_level(t: &Thresholds, reading: &Reading) -> CrisisLevel {
    let in_context = reading
        .with_context
        .is_some_and(|c| c.crisis >= t.crisis_in_context && reading.alone.risk() >= t.context_gate);
    if reading.alone.crisis >= t.crisis || in_context {
        CrisisLevel::Crisis
    } else if reading.alone.risk() >= t.concern {
        CrisisLevel::Concern
    } else {
        CrisisLevel::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LevelScores, Nearest};

    fn model_says_crisis(nearest_signal: CrisisSignal) -> Reading {
        Reading {
            alone: LevelScores {
                none: 0.05,
                concern: 0.05,
                crisis: 0.9,
            },
            with_context: None,
            nearest: Some(Nearest {
                text: "a reviewed example",
                level: CrisisLevel::Crisis,
                signal: Some(nearest_signal),
                similarity: 0.8,
            }),
        }
    }

    fn judge(text: &str, reading: Reading) -> Verdict {
        let (rules, dismissed) = rules_reading(text, &[]);
        combine(&Thresholds::CHOSEN, rules, dismissed, Some(reading))
    }

    #[test]
    fn the_model_alone_names_the_kind_of_risk_but_never_someone_else() {
        let verdict = judge(
            "everything is arranged for sunday",
            model_says_crisis(CrisisSignal::ThirdPartyRisk),
        );
        assert_eq!(verdict.decided_by, Some(DecidedBy::Model));
        assert_eq!(verdict.level(), CrisisLevel::Crisis);
        assert_eq!(verdict.assessment.subject, Some(Subject::Student));
        assert_eq!(
            verdict.assessment.signal,
            Some(CrisisSignal::SuicidalIdeation)
        );
        let planned = judge(
            "everything is arranged for sunday",
            model_says_crisis(CrisisSignal::PlanOrMeans),
        );
        assert_eq!(planned.assessment.signal, Some(CrisisSignal::PlanOrMeans));
    }

    #[test]
    fn the_model_raises_what_the_rules_found_and_keeps_their_signal() {
        let verdict = judge(
            "i feel like such a burden to everyone",
            model_says_crisis(CrisisSignal::PlanOrMeans),
        );
        assert_eq!(verdict.level(), CrisisLevel::Crisis);
        assert_eq!(verdict.decided_by, Some(DecidedBy::Model));
        assert_eq!(
            verdict.assessment.signal,
            Some(CrisisSignal::IndirectWarning)
        );
        assert!(verdict.assessment.rule.is_some());
    }

    #[test]
    fn words_the_rules_set_aside_reach_concern_at_most_and_someone_else_stays_theirs() {
        let quoted = judge(
            "the chorus goes i just want to die tonight",
            model_says_crisis(CrisisSignal::SuicidalIdeation),
        );
        assert_eq!(quoted.level(), CrisisLevel::Concern);
        let friend = judge(
            "my roommate said she wants to die",
            model_says_crisis(CrisisSignal::SuicidalIdeation),
        );
        assert_eq!(friend.level(), CrisisLevel::Concern);
        assert_eq!(friend.assessment.subject, Some(Subject::SomeoneElse));
        let rules_crisis = judge(
            "i want to kill myself",
            model_says_crisis(CrisisSignal::SelfHarm),
        );
        assert_eq!(rules_crisis.decided_by, Some(DecidedBy::Both));
    }

    #[test]
    fn a_denial_stays_below_crisis_however_sure_the_model_is() {
        let mut certain = model_says_crisis(CrisisSignal::SuicidalIdeation);
        certain.alone.crisis = 0.99;
        let denial = judge("i would never kill myself", certain);
        assert!(denial.assessment.negated);
        assert_eq!(denial.level(), CrisisLevel::Concern);
        // Without the denial the same certainty is a crisis.
        let plain = judge(
            "i gave my cat to my sister so nobody has to deal with it",
            certain,
        );
        assert_eq!(plain.level(), CrisisLevel::Crisis);
    }

    #[test]
    fn without_a_reading_the_rules_decide() {
        let (rules, dismissed) = rules_reading("i want to die", &[]);
        let verdict = combine(&Thresholds::CHOSEN, rules, dismissed, None);
        assert_eq!(
            (verdict.level(), verdict.decided_by),
            (CrisisLevel::Crisis, Some(DecidedBy::Rule))
        );
        let calm = combine(&Thresholds::CHOSEN, Assessment::NONE, false, None);
        assert_eq!(calm.decided_by, None);
    }
}

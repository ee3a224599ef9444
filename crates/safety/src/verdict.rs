//! One verdict per utterance: the phrase rules and the risk model combined, in this one place.
//!
//! The rules are precise and know grammar the model does not: negation scope, idioms, quotes,
//! third person, study and media framing, and the exact signal. The model knows meaning the
//! rules do not: phrasings nobody wrote a rule for. So:
//!
//! 1. A rule crisis is a crisis. Nothing the model says lowers it.
//! 2. When the rules matched risk words and set them aside or lowered them (negated, told as
//!    history, about someone else, an idiom, a quote, a class topic), their reading stands
//!    unless the model is very sure it is a crisis anyway (`overrule_rules`): the rules know
//!    why the words do not mean what they seem, the model only that they are there.
//! 3. Otherwise the model can raise the level: crisis from `crisis`, concern from `concern`.
//!    Read after the student's previous turn, the utterance is a crisis from
//!    `crisis_in_context`, but only when it carries some risk of its own (`context_gate`), so a
//!    student who has moved on ("can we talk about my resume") is not held to what they said.
//! 4. The level is never lower than the rules' level.
//!
//! The [`Thresholds`] were chosen by cross-validation on the corpus (`examples/risk_tuning.rs`)
//! with the rules' own evaluation sets as a check; `docs/benchmarks.md` records the figures.

use domain::{CrisisLevel, CrisisSignal, DecidedBy};

use crate::model::{Reading, RiskModel};
use crate::{classify, Assessment, Subject};

/// The thresholds of the combination, each with the reason for its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The model alone calls a crisis from this probability of the crisis level. Missing a
    /// crisis costs far more than a false alarm, so this sits below an even-odds call.
    pub crisis: f32,
    /// The model alone calls a concern from this probability of any risk (concern or crisis).
    pub concern: f32,
    /// Crisis probability of the previous turn and this one read together.
    pub crisis_in_context: f32,
    /// Risk this utterance must carry on its own before its context can make it a crisis.
    pub context_gate: f32,
    /// How sure the model must be to overrule the rules' reason for setting risk words aside.
    pub overrule_rules: f32,
}

impl Thresholds {
    /// Chosen on the corpus's five-fold cross-validation (`examples/risk_tuning.rs`): the head's
    /// crisis probability is well calibrated on the corpus but over-confident on everyday talk
    /// that shares words or topics with a crisis ("my mom is going to kill me when she sees my
    /// grades"). At 0.8 the model alone turns 3.6 % of ordinary talk into a crisis while
    /// catching three in four crisis lines the rules miss; at 0.5 it would be 12 %. Below the
    /// crisis bar a leaning to crisis still counts as risk: concern (the counselor asks about
    /// safety) costs a student little, so its bar is lower.
    pub const CHOSEN: Thresholds = Thresholds {
        crisis: 0.8,
        concern: 0.6,
        crisis_in_context: 0.8,
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
        // The previous turn is read only when this one carries some risk of its own: it can
        // change nothing otherwise, and it costs a second pass of the encoder.
        let gate = Thresholds::CHOSEN.context_gate;
        let reading = self.model.as_ref().and_then(|model| {
            match model.read(utterance, recent_turns, |alone| alone.risk() >= gate) {
                Ok(reading) => Some(reading),
                Err(error) => {
                    tracing::error!(%error, "risk model failed; the phrase rules decide alone");
                    None
                }
            }
        });
        combine(&Thresholds::CHOSEN, rules, dismissed, reading)
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
    let set_aside = dismissed || rules.subject == Some(Subject::SomeoneElse);
    let model_level = if set_aside && reading.alone.crisis < thresholds.overrule_rules {
        model_level.min(rules.level)
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
    let assessment = if decided_by == Some(DecidedBy::Model) {
        let signal =
            reading
                .nearest
                .and_then(|n| n.signal)
                .unwrap_or(if level == CrisisLevel::Crisis {
                    CrisisSignal::SuicidalIdeation
                } else {
                    CrisisSignal::IndirectWarning
                });
        let subject = if signal == CrisisSignal::ThirdPartyRisk {
            Subject::SomeoneElse
        } else {
            Subject::Student
        };
        Assessment {
            level,
            signal: Some(signal),
            subject: Some(subject),
            negated: false,
            from_context: reading.alone.crisis < thresholds.crisis && level == CrisisLevel::Crisis,
            rule: None,
        }
    } else {
        rules
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

use serde::{Deserialize, Serialize};
use std::fmt;

/// How worried the platform is about what a student said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrisisLevel {
    /// Nothing that suggests risk.
    None,
    /// Possible risk: the counselor should gently ask about safety.
    Concern,
    /// Clear risk: the counselor answers with crisis resources at once.
    Crisis,
}

impl CrisisLevel {
    pub const ALL: [CrisisLevel; 3] =
        [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis];

    /// The level `as_str` names.
    pub fn parse(name: &str) -> Option<CrisisLevel> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CrisisLevel::None => "none",
            CrisisLevel::Concern => "concern",
            CrisisLevel::Crisis => "crisis",
        }
    }
}

impl fmt::Display for CrisisLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of risk an utterance signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrisisSignal {
    SuicidalIdeation,
    PlanOrMeans,
    SelfHarm,
    HarmToOthers,
    DangerOrAbuse,
    /// Someone else (a friend, a roommate) is described as being at risk.
    ThirdPartyRisk,
    /// Hopelessness, feeling like a burden, saying goodbye: indirect warning signs.
    IndirectWarning,
}

impl CrisisSignal {
    pub const ALL: [CrisisSignal; 7] = [
        CrisisSignal::SuicidalIdeation,
        CrisisSignal::PlanOrMeans,
        CrisisSignal::SelfHarm,
        CrisisSignal::HarmToOthers,
        CrisisSignal::DangerOrAbuse,
        CrisisSignal::ThirdPartyRisk,
        CrisisSignal::IndirectWarning,
    ];

    /// The signal `as_str` names.
    pub fn parse(name: &str) -> Option<CrisisSignal> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CrisisSignal::SuicidalIdeation => "suicidal_ideation",
            CrisisSignal::PlanOrMeans => "plan_or_means",
            CrisisSignal::SelfHarm => "self_harm",
            CrisisSignal::HarmToOthers => "harm_to_others",
            CrisisSignal::DangerOrAbuse => "danger_or_abuse",
            CrisisSignal::ThirdPartyRisk => "third_party_risk",
            CrisisSignal::IndirectWarning => "indirect_warning",
        }
    }
}

impl fmt::Display for CrisisSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of the safety check decided a crisis event: the phrase rules, the embedding
/// model's classifier, or both agreeing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    Rule,
    Model,
    Both,
}

impl DecidedBy {
    pub const ALL: [DecidedBy; 3] = [DecidedBy::Rule, DecidedBy::Model, DecidedBy::Both];

    pub const fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Rule => "rule",
            DecidedBy::Model => "model",
            DecidedBy::Both => "both",
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DecidedBy {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| crate::UnknownValue {
                kind: "decided_by",
                value: s.to_owned(),
                expected: "rule, model, both",
            })
    }
}

/// What a staff member did about a crisis event when reviewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// Staff reached out to the student.
    ContactedStudent,
    /// The student was referred to campus counseling or another service.
    Referred,
    /// The utterance did not signal risk after all.
    FalseAlarm,
    /// Risk was real but already handled (the student was given resources, was already in care).
    NoActionNeeded,
    /// Emergency services or campus safety were called.
    EscalatedEmergency,
}

impl ReviewOutcome {
    pub const ALL: [ReviewOutcome; 5] = [
        ReviewOutcome::ContactedStudent,
        ReviewOutcome::Referred,
        ReviewOutcome::FalseAlarm,
        ReviewOutcome::NoActionNeeded,
        ReviewOutcome::EscalatedEmergency,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::ContactedStudent => "contacted_student",
            ReviewOutcome::Referred => "referred",
            ReviewOutcome::FalseAlarm => "false_alarm",
            ReviewOutcome::NoActionNeeded => "no_action_needed",
            ReviewOutcome::EscalatedEmergency => "escalated_emergency",
        }
    }
}

impl fmt::Display for ReviewOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReviewOutcome {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| crate::UnknownValue {
                kind: "outcome",
                value: s.to_owned(),
                expected: "contacted_student, referred, false_alarm, no_action_needed, escalated_emergency",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_vocabulary_round_trips_through_text_and_json() {
        for d in DecidedBy::ALL {
            assert_eq!(d.as_str().parse::<DecidedBy>().unwrap(), d);
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for o in ReviewOutcome::ALL {
            assert_eq!(o.as_str().parse::<ReviewOutcome>().unwrap(), o);
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert!("maybe".parse::<ReviewOutcome>().is_err());
        assert!("llm".parse::<DecidedBy>().is_err());
    }
}

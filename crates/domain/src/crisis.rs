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

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of the six counselors a student can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    Health,
    Career,
    Academic,
    Financial,
    Social,
    #[serde(rename = "Personal Development")]
    PersonalDevelopment,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown counselor category {0:?}; expected one of Health, Career, Academic, Financial, Social, Personal Development")]
pub struct UnknownCategory(pub String);

impl Category {
    /// All categories in display order.
    pub const ALL: [Category; 6] = [
        Category::Health,
        Category::Career,
        Category::Academic,
        Category::Financial,
        Category::Social,
        Category::PersonalDevelopment,
    ];

    /// The name used in the API and the database (`"Personal Development"`, not the Rust name).
    pub const fn name(self) -> &'static str {
        match self {
            Category::Health => "Health",
            Category::Career => "Career",
            Category::Academic => "Academic",
            Category::Financial => "Financial",
            Category::Social => "Social",
            Category::PersonalDevelopment => "Personal Development",
        }
    }

    /// Position in [`Category::ALL`], used to order listings.
    pub fn display_order(self) -> usize {
        Category::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = UnknownCategory;
    /// Accepts the exact name, case-insensitively (`"personal development"` is fine).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>().unwrap(), c);
        }
        assert_eq!(
            "personal development".parse::<Category>().unwrap(),
            Category::PersonalDevelopment
        );
        assert!("Dating".parse::<Category>().is_err());
    }

    #[test]
    fn serializes_with_the_api_name() {
        assert_eq!(
            serde_json::to_string(&Category::PersonalDevelopment).unwrap(),
            "\"Personal Development\""
        );
    }
}

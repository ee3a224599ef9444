use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::UnknownValue;

/// What an account may do. Every account is a student unless made staff on purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Talks to the counselors and sees only their own sessions.
    #[default]
    Student,
    /// A counselor on duty: reviews crisis events and gets live crisis alerts.
    Staff,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Student, Role::Staff];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownValue> {
        s.parse()
    }

    pub const fn is_staff(self) -> bool {
        matches!(self, Role::Staff)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "student" => Ok(Role::Student),
            "staff" => Ok(Role::Staff),
            _ => Err(UnknownValue {
                kind: "role",
                value: s.to_owned(),
                expected: "student, staff",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_default_to_student() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert_eq!(Role::default(), Role::Student);
        assert!(Role::parse("admin").is_err());
        assert!(Role::parse("Staff").is_err(), "stored values are exact");
    }
}

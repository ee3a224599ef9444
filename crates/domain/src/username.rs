use serde::{Deserialize, Serialize};
use std::fmt;

/// An institutional account name of the form `\DOMAIN\user`.
///
/// Both parts are non-empty and neither contains a backslash, matching the database check
/// `^\\[^\\]+\\[^\\]+$`. Parts are also limited to printable characters without whitespace, and the
/// whole name to 255 bytes (the column width).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must have the form \\DOMAIN\\user (a backslash, the domain, a backslash, the user name)")]
    Format,
    #[error("username must be at most 255 bytes long")]
    TooLong,
    #[error("username must not contain spaces or control characters")]
    InvalidCharacter,
}

impl Username {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        if raw.len() > Self::MAX_LEN {
            return Err(UsernameError::TooLong);
        }
        let rest = raw.strip_prefix('\\').ok_or(UsernameError::Format)?;
        let (domain, user) = rest.split_once('\\').ok_or(UsernameError::Format)?;
        if domain.is_empty() || user.is_empty() || user.contains('\\') {
            return Err(UsernameError::Format);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UsernameError::InvalidCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part between the two backslashes.
    pub fn domain(&self) -> &str {
        self.0[1..]
            .split_once('\\')
            .map(|(d, _)| d)
            .unwrap_or_default()
    }

    /// The part after the second backslash.
    pub fn user(&self) -> &str {
        self.0[1..]
            .split_once('\\')
            .map(|(_, u)| u)
            .unwrap_or_default()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Username::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_domain_and_user() {
        let name = Username::parse(r"\COLLEGE\jdoe").unwrap();
        assert_eq!(name.domain(), "COLLEGE");
        assert_eq!(name.user(), "jdoe");
        assert_eq!(name.as_str(), r"\COLLEGE\jdoe");
    }

    #[test]
    fn rejects_what_the_database_check_rejects() {
        for bad in [
            "jdoe",
            r"COLLEGE\jdoe",
            r"\COLLEGE",
            r"\\jdoe",
            r"\COLLEGE\",
            r"\A\b\c",
            "",
        ] {
            assert_eq!(Username::parse(bad), Err(UsernameError::Format), "{bad:?}");
        }
    }

    #[test]
    fn rejects_whitespace_and_overlong_names() {
        assert_eq!(
            Username::parse(r"\A\j doe"),
            Err(UsernameError::InvalidCharacter)
        );
        let long = format!(r"\A\{}", "x".repeat(300));
        assert_eq!(Username::parse(&long), Err(UsernameError::TooLong));
    }

    #[test]
    fn quotes_and_sql_survive_parsing_unchanged() {
        let odd = r#"\O'Brien\x";DROP"#;
        assert_eq!(Username::parse(odd).unwrap().as_str(), odd);
    }
}

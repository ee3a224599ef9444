//! `DATABASE_URL`: the one place that decides which back end a URL names.

use std::fmt;

use crate::model::StoreKind;

/// A database URL whose scheme has been checked: `sqlite:…` (a file, `sqlite://data/counsel.db`,
/// or `sqlite::memory:`) or `postgres://…` / `postgresql://…`. Its `Debug` form never shows the
/// URL, which may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    kind: StoreKind,
    url: String,
}

/// A URL of no back end counsel has; it does not hold the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DATABASE_URL must start with sqlite: or postgres:// (e.g. sqlite://data/counsel.db)")]
pub struct UnsupportedDatabaseUrl;

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, UnsupportedDatabaseUrl> {
        let kind = if url.starts_with("sqlite:") {
            StoreKind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreKind::Postgres
        } else {
            return Err(UnsupportedDatabaseUrl);
        };
        Ok(DatabaseUrl {
            kind,
            url: url.to_owned(),
        })
    }

    /// Which back end the URL names.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The SQLite file the URL names (without its `?options`); `None` for PostgreSQL and for an
    /// in-memory database.
    pub fn sqlite_file(&self) -> Option<&str> {
        if self.kind != StoreKind::Sqlite || self.url.contains(":memory:") {
            return None;
        }
        let path = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))?;
        let file = path.split('?').next().unwrap_or(path);
        (!file.is_empty()).then_some(file)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?}, …)", self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_names_the_back_end() {
        for (url, kind) in [
            ("sqlite://data/counsel.db", StoreKind::Sqlite),
            ("sqlite::memory:", StoreKind::Sqlite),
            ("sqlite:counsel.db?mode=rwc", StoreKind::Sqlite),
            ("postgres://counsel@db/counsel", StoreKind::Postgres),
            (
                "postgresql://counsel:pw@db:5432/counsel",
                StoreKind::Postgres,
            ),
        ] {
            assert_eq!(DatabaseUrl::parse(url).unwrap().kind(), kind, "{url}");
        }
        for url in [
            "mysql://admin:hunter2@db",
            "",
            "postgres:/x",
            "SQLITE://x",
            "counsel.db",
        ] {
            assert_eq!(
                DatabaseUrl::parse(url),
                Err(UnsupportedDatabaseUrl),
                "{url}"
            );
        }
    }

    #[test]
    fn the_sqlite_file_and_a_url_that_is_never_shown() {
        let file = |url: &str| {
            DatabaseUrl::parse(url)
                .unwrap()
                .sqlite_file()
                .map(str::to_owned)
        };
        assert_eq!(
            file("sqlite://data/counsel.db").as_deref(),
            Some("data/counsel.db")
        );
        assert_eq!(file("sqlite:x.db?mode=rwc").as_deref(), Some("x.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u@h/db"), None);
        let secret = DatabaseUrl::parse("postgres://admin:hunter2@db/counsel").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        let refused = DatabaseUrl::parse("mysql://admin:hunter2@db").unwrap_err();
        assert!(!refused.to_string().contains("hunter2"));
    }
}

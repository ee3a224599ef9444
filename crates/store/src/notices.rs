//! Students' acceptance of the first-visit notice (what is recorded, who sees it, how long it is
//! kept): stored once per account and wording, with the moment of acceptance in the audit log.

use chrono::{DateTime, Utc};
use domain::UserId;
use std::fmt;

use crate::error::{Result, StoreError};
use crate::model::AuditEntry;
use crate::rows::to_micros;
use crate::store::{insert_audit, with_pool, Store};

/// Which wording of the notice was shown: 1 to 64 lower-case letters and digits (the server
/// uses a digest of the words).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoticeVersion(String);

impl NoticeVersion {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<NoticeVersion> {
        let ok = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(StoreError::Invalid(format!(
                "a notice version is 1 to {} lower-case letters and digits",
                Self::MAX_LEN
            )));
        }
        Ok(NoticeVersion(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NoticeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A student's acceptance of one wording of the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeAcceptance {
    pub version: NoticeVersion,
    /// When they first accepted it; accepting again keeps this time.
    pub accepted_at: DateTime<Utc>,
    /// `true` when this call recorded it (and audited it), `false` when it was already stored.
    pub newly_recorded: bool,
}

impl Store {
    /// When `user_id` accepted this wording of the notice, if they have.
    pub async fn notice_accepted_at(
        &self,
        user_id: UserId,
        version: &NoticeVersion,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(with_pool!(self, reader, |pool| {
            sqlx::query_scalar(
                "SELECT accepted_at FROM notice_acceptances WHERE user_id = $1 AND notice_version = $2",
            )
            .bind(*user_id.as_uuid())
            .bind(version.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records that the account behind `audit.user_id` accepted `version`, once: the acceptance
    /// and its audit entry are written in one transaction with the same time. Accepting again changes nothing
    /// and returns the first acceptance.
    pub async fn accept_notice(
        &self,
        version: &NoticeVersion,
        audit: AuditEntry,
    ) -> Result<NoticeAcceptance> {
        let user_id = audit
            .user_id
            .ok_or_else(|| StoreError::Invalid("a notice is accepted by an account".to_owned()))?;
        let now = to_micros(Utc::now());
        let (accepted_at, newly_recorded) = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO notice_acceptances (user_id, notice_version, accepted_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, notice_version) DO NOTHING",
            )
            .bind(*user_id.as_uuid())
            .bind(version.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                insert_audit!(&mut *tx, &audit, now)?;
            }
            let accepted_at: DateTime<Utc> = sqlx::query_scalar(
                "SELECT accepted_at FROM notice_acceptances WHERE user_id = $1 AND notice_version = $2",
            )
            .bind(*user_id.as_uuid())
            .bind(version.as_str())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            (accepted_at, inserted)
        });
        Ok(NoticeAcceptance {
            version: version.clone(),
            accepted_at,
            newly_recorded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_short_plain_tokens() {
        assert_eq!(
            NoticeVersion::parse("3f9a0c1d").unwrap().as_str(),
            "3f9a0c1d"
        );
        for bad in ["", "ABC", "a b", "1.0", &"a".repeat(65), "é"] {
            assert!(NoticeVersion::parse(bad).is_err(), "{bad:?}");
        }
    }
}

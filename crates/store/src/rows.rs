//! Rows as the databases return them, and their conversion into the domain's types.
//!
//! Columns are read as plain values (UUID, text, integers) so that one `FromRow` impl serves both
//! SQLite and PostgreSQL; anything the domain does not accept is reported as a corrupted row.

use crate::cipher::TranscriptCipher;
use crate::error::{Result, StoreError};
use crate::model::*;
use chrono::{DateTime, Utc};
use domain::{
    Category, CategoryId, CrisisLevel, CrisisSignal, Rating, RatingComment, SessionId, UserId,
    Username,
};
use uuid::Uuid;

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::internal(format!("stored {what} {value:?} is not valid"))
}

fn count(what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(what, &value.to_string()))
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    username: String,
    role: String,
    is_blocked: bool,
    token_epoch: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) const USER_COLUMNS: &str =
    "id, username, role, is_blocked, token_epoch, created_at, updated_at";

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<User> {
        Ok(User {
            id: UserId::from_uuid(row.id),
            username: Username::parse(&row.username)
                .map_err(|_| corrupt("username", &row.username))?,
            role: row.role.parse().map_err(|_| corrupt("role", &row.role))?,
            is_blocked: row.is_blocked,
            token_epoch: row.token_epoch,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for UserCredentials {
    type Error = StoreError;
    fn try_from(row: CredentialsRow) -> Result<UserCredentials> {
        Ok(UserCredentials {
            user: row.user.try_into()?,
            password_hash: row.password_hash,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CategoryRow {
    id: Uuid,
    name: String,
    description: String,
    icon_name: String,
    system_prompt: String,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) const CATEGORY_COLUMNS: &str =
    "id, name, description, icon_name, system_prompt, enabled, created_at, updated_at";

impl TryFrom<CategoryRow> for CounselorCategory {
    type Error = StoreError;
    fn try_from(row: CategoryRow) -> Result<CounselorCategory> {
        let category: Category = row
            .name
            .parse()
            .map_err(|_| corrupt("category", &row.name))?;
        Ok(CounselorCategory {
            id: CategoryId::from_uuid(row.id),
            category,
            name: category.name().to_owned(),
            description: row.description,
            icon_name: row.icon_name,
            system_prompt: row.system_prompt,
            enabled: row.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    counselor_category: String,
    mode: String,
    room_name: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    duration_seconds: Option<i64>,
    connection_quality: Option<String>,
    crisis_detected: bool,
    transcript_message_count: i64,
    end_reason: Option<String>,
    rating: Option<i16>,
    rated_at: Option<DateTime<Utc>>,
}

pub(crate) const SESSION_COLUMNS: &str =
    "id, user_id, counselor_category, mode, room_name, started_at, ended_at, \
     duration_seconds, connection_quality, crisis_detected, transcript_message_count, end_reason, \
     rating, rated_at";

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;
    fn try_from(row: SessionRow) -> Result<SessionRecord> {
        Ok(SessionRecord {
            id: SessionId::from_uuid(row.id),
            user_id: UserId::from_uuid(row.user_id),
            category: row
                .counselor_category
                .parse()
                .map_err(|_| corrupt("category", &row.counselor_category))?,
            mode: row.mode.parse().map_err(|_| corrupt("mode", &row.mode))?,
            room_name: row.room_name,
            started_at: row.started_at,
            ended_at: row.ended_at,
            duration_seconds: row.duration_seconds,
            connection_quality: match row.connection_quality {
                Some(q) => Some(q.parse().map_err(|_| corrupt("connection quality", &q))?),
                None => None,
            },
            crisis_detected: row.crisis_detected,
            message_count: count("message count", row.transcript_message_count)?,
            end_reason: match row.end_reason {
                Some(r) => {
                    Some(SessionEndReason::parse(&r).ok_or_else(|| corrupt("end reason", &r))?)
                }
                None => None,
            },
            rating: match (row.rating, row.rated_at) {
                (Some(score), Some(rated_at)) => Some(StoredRating {
                    rating: Rating::new(i64::from(score))
                        .map_err(|_| corrupt("rating", &score.to_string()))?,
                    rated_at,
                }),
                (None, None) => None,
                // The databases' sessions_rating_complete constraint rules this out.
                _ => return Err(corrupt("rating", "half-recorded")),
            },
        })
    }
}

/// A session with the (encrypted) comment of its rating, for its owner's detail view.
#[derive(sqlx::FromRow)]
pub(crate) struct CommentedSessionRow {
    #[sqlx(flatten)]
    pub(crate) session: SessionRow,
    pub(crate) rating_comment_encrypted: Option<Vec<u8>>,
}

impl CommentedSessionRow {
    pub(crate) fn decrypt(
        self,
        cipher: &TranscriptCipher,
    ) -> Result<(SessionRecord, Option<RatingComment>)> {
        let comment = match self.rating_comment_encrypted {
            Some(bytes) => {
                let text = cipher
                    .decrypt(&bytes)
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
                // Checked when it was written; blank or overlong here means a corrupted row.
                Some(
                    RatingComment::parse(text.as_str())
                        .ok()
                        .flatten()
                        .ok_or_else(|| corrupt("rating comment", "(hidden)"))?,
                )
            }
            None => None,
        };
        Ok((self.session.try_into()?, comment))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    sequence_number: i64,
    speaker: String,
    text_encrypted: Vec<u8>,
    is_final: bool,
    timestamp: DateTime<Utc>,
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "sequence_number, speaker, text_encrypted, is_final, \"timestamp\"";

impl MessageRow {
    pub(crate) fn decrypt(self, cipher: &TranscriptCipher) -> Result<TranscriptMessage> {
        Ok(TranscriptMessage {
            sequence: count("sequence number", self.sequence_number)?,
            speaker: self
                .speaker
                .parse()
                .map_err(|_| corrupt("speaker", &self.speaker))?,
            text: cipher
                .decrypt(&self.text_encrypted)
                .map_err(|e| StoreError::Internal(Box::new(e)))?,
            is_final: self.is_final,
            timestamp: self.timestamp,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CrisisEventRow {
    id: Uuid,
    session_id: Uuid,
    message_sequence: i64,
    level: String,
    signal: String,
    decided_by: Option<String>,
    flagged_for_review: bool,
    created_at: DateTime<Utc>,
    reviewed_at: Option<DateTime<Utc>>,
    reviewed_by: Option<Uuid>,
    review_note: Option<String>,
    review_outcome: Option<String>,
}

pub(crate) const CRISIS_EVENT_COLUMNS: &str =
    "id, session_id, message_sequence, level, signal, decided_by, flagged_for_review, created_at, \
     reviewed_at, reviewed_by, review_note, review_outcome";

impl TryFrom<CrisisEventRow> for CrisisEventRecord {
    type Error = StoreError;
    fn try_from(row: CrisisEventRow) -> Result<CrisisEventRecord> {
        let review = match (row.review_outcome, row.reviewed_at) {
            (Some(outcome), Some(reviewed_at)) => Some(StoredReview {
                outcome: outcome
                    .parse()
                    .map_err(|_| corrupt("review outcome", &outcome))?,
                note: row.review_note,
                reviewed_at,
                reviewer_id: row.reviewed_by.map(UserId::from_uuid),
            }),
            (None, None) => None,
            // The databases' crisis_review_complete constraint rules this out.
            _ => return Err(corrupt("review", "half-recorded")),
        };
        Ok(CrisisEventRecord {
            id: row.id,
            session_id: SessionId::from_uuid(row.session_id),
            sequence: count("message sequence", row.message_sequence)?,
            level: CrisisLevel::parse(&row.level).ok_or_else(|| corrupt("level", &row.level))?,
            signal: CrisisSignal::parse(&row.signal)
                .ok_or_else(|| corrupt("signal", &row.signal))?,
            decided_by: match row.decided_by {
                Some(d) => Some(d.parse().map_err(|_| corrupt("decided_by", &d))?),
                None => None,
            },
            flagged_for_review: row.flagged_for_review,
            created_at: row.created_at,
            review,
        })
    }
}

/// A crisis event joined with its student, reviewer and (encrypted) utterance.
#[derive(sqlx::FromRow)]
pub(crate) struct CrisisQueueRow {
    #[sqlx(flatten)]
    event: CrisisEventRow,
    student_id: Uuid,
    student_username: String,
    reviewer_username: Option<String>,
    text_encrypted: Option<Vec<u8>>,
}

/// The queue's SELECT list and joins; callers add WHERE / ORDER BY. `e` is the event.
pub(crate) const CRISIS_QUEUE_FROM: &str =
    "SELECT e.id, e.session_id, e.message_sequence, e.level, e.signal, e.decided_by, \
     e.flagged_for_review, e.created_at, e.reviewed_at, e.reviewed_by, e.review_note, e.review_outcome, \
     s.user_id AS student_id, u.username AS student_username, r.username AS reviewer_username, \
     m.text_encrypted \
     FROM crisis_events e \
     JOIN sessions s ON s.id = e.session_id \
     JOIN users u ON u.id = s.user_id \
     LEFT JOIN users r ON r.id = e.reviewed_by \
     LEFT JOIN transcript_messages m ON m.session_id = e.session_id AND m.sequence_number = e.message_sequence";

impl CrisisQueueRow {
    pub(crate) fn decrypt(self, cipher: &TranscriptCipher) -> Result<CrisisQueueItem> {
        let username = |raw: &str| Username::parse(raw).map_err(|_| corrupt("username", raw));
        Ok(CrisisQueueItem {
            student_id: UserId::from_uuid(self.student_id),
            student: username(&self.student_username)?,
            reviewed_by: self
                .reviewer_username
                .as_deref()
                .map(username)
                .transpose()?,
            text: self
                .text_encrypted
                .map(|bytes| cipher.decrypt(&bytes))
                .transpose()
                .map_err(|e| StoreError::Internal(Box::new(e)))?,
            event: self.event.try_into()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: Uuid,
    user_id: Option<Uuid>,
    action: String,
    resource_type: String,
    resource_id: Uuid,
    ip_address: Option<String>,
    user_agent: Option<String>,
    timestamp: DateTime<Utc>,
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, user_id, action, resource_type, resource_id, ip_address, user_agent, \"timestamp\"";

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<AuditRecord> {
        let action = AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == row.action)
            .ok_or_else(|| corrupt("audit action", &row.action))?;
        let resource_type = AuditResource::ALL
            .into_iter()
            .find(|r| r.as_str() == row.resource_type)
            .ok_or_else(|| corrupt("audit resource type", &row.resource_type))?;
        let ip = match row.ip_address {
            Some(ip) => Some(ip.parse().map_err(|_| corrupt("ip address", &ip))?),
            None => None,
        };
        Ok(AuditRecord {
            id: row.id,
            entry: AuditEntry {
                user_id: row.user_id.map(UserId::from_uuid),
                action,
                resource_type,
                resource_id: row.resource_id,
                ip,
                user_agent: row.user_agent,
            },
            timestamp: row.timestamp,
        })
    }
}

/// Timestamps are kept to the microsecond, PostgreSQL's precision, so a value reads back exactly
/// as written from either database.
pub(crate) fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_and_signal_has_a_stored_name() {
        for level in CrisisLevel::ALL {
            assert_eq!(CrisisLevel::parse(level.as_str()), Some(level));
        }
        for signal in CrisisSignal::ALL {
            assert_eq!(CrisisSignal::parse(signal.as_str()), Some(signal));
        }
    }

    #[test]
    fn timestamps_are_cut_to_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}

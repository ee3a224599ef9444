//! The crisis review queue: what staff on duty see and record about flagged utterances.
//!
//! Staff read the student's words here under FERPA's health-and-safety exception; the server
//! audits every item shown and every review.

use chrono::Utc;
use domain::UserId;
use sqlx::{AssertSqlSafe, QueryBuilder};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{to_micros, CrisisQueueRow, CRISIS_QUEUE_FROM};
use crate::sessions::check_page;
use crate::store::{with_pool, Store};

#[derive(sqlx::FromRow)]
struct CountedQueueRow {
    #[sqlx(flatten)]
    item: CrisisQueueRow,
    total_count: i64,
}

fn status_condition(status: ReviewStatusFilter) -> &'static str {
    match status {
        ReviewStatusFilter::Open => "WHERE e.reviewed_at IS NULL",
        ReviewStatusFilter::Reviewed => "WHERE e.reviewed_at IS NOT NULL",
        ReviewStatusFilter::All => "",
    }
}

impl Store {
    /// One page of the review queue, newest first, with the total that match. Events of deleted
    /// or purged sessions stay listed (without their text): the review still matters.
    pub async fn list_crisis_events(
        &self,
        status: ReviewStatusFilter,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<CrisisQueueItem>, u64)> {
        check_page(page, per_page)?;
        let condition = status_condition(status);
        // The page walks the queue's index newest first and stops at LIMIT instead of joining
        // every event to count them; the total is a count of the events alone (for the open
        // queue, an index-only count of idx_crisis_open), in the same statement, so that both
        // come from one snapshot.
        let count_sql = format!("SELECT COUNT(*) FROM crisis_events e {condition}");
        let page_sql = format!(
            "SELECT q.*, ({count_sql}) AS total_count FROM ({CRISIS_QUEUE_FROM} {condition} \
             ORDER BY e.created_at DESC, e.id DESC LIMIT $1 OFFSET $2) q \
             ORDER BY q.created_at DESC, q.id DESC"
        );
        let offset = i64::from(page - 1) * i64::from(per_page);
        let (rows, total): (Vec<CountedQueueRow>, i64) = with_pool!(self, reader, |pool| {
            let rows: Vec<CountedQueueRow> = sqlx::query_as(AssertSqlSafe(page_sql))
                .bind(i64::from(per_page))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            // Only a page past the end (no rows to carry the total) counts on its own.
            let total = match rows.first() {
                Some(row) => row.total_count,
                None if offset == 0 => 0,
                None => {
                    sqlx::query_scalar(AssertSqlSafe(count_sql))
                        .fetch_one(pool)
                        .await?
                }
            };
            (rows, total)
        });
        let items = rows
            .into_iter()
            .map(|row| row.item.decrypt(&self.cipher))
            .collect::<Result<Vec<_>>>()?;
        Ok((items, u64::try_from(total).unwrap_or(0)))
    }

    /// One crisis event as the queue shows it.
    pub async fn crisis_event(&self, id: Uuid) -> Result<Option<CrisisQueueItem>> {
        let sql = format!("{CRISIS_QUEUE_FROM} WHERE e.id = $1");
        let row: Option<CrisisQueueRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| r.decrypt(&self.cipher)).transpose()
    }

    /// Records a staff member's review and returns the event as the queue now shows it. An
    /// event is reviewed once: a second review is [`StoreError::Conflict`] and changes nothing
    /// (two staff members racing get one success and one conflict). [`StoreError::NotFound`]
    /// for an unknown event.
    pub async fn review_crisis_event(
        &self,
        id: Uuid,
        review: CrisisReview,
    ) -> Result<CrisisQueueItem> {
        let note = review
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > MAX_REVIEW_NOTE_CHARS) {
            return Err(StoreError::Invalid(format!(
                "note must be at most {MAX_REVIEW_NOTE_CHARS} characters"
            )));
        }
        let now = to_micros(Utc::now());
        let updated = with_pool!(self, writer, |pool| {
            let updated = sqlx::query(
                "UPDATE crisis_events SET reviewed_at = $1, reviewed_by = $2, review_note = $3, \
                 review_outcome = $4, flagged_for_review = FALSE WHERE id = $5 AND reviewed_at IS NULL",
            )
            .bind(now)
            .bind(*review.reviewer.as_uuid())
            .bind(note)
            .bind(review.outcome.as_str())
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
            if updated == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT message_sequence FROM crisis_events WHERE id = $1")
                        .bind(id)
                        .fetch_optional(pool)
                        .await?;
                if exists.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            updated
        });
        if updated == 0 {
            return Err(StoreError::Conflict(
                "this crisis event has already been reviewed".to_owned(),
            ));
        }
        self.crisis_event(id).await?.ok_or(StoreError::NotFound)
    }

    /// Adds several entries to the audit trail at once (one per crisis event shown).
    pub async fn record_audits(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            let mut insert = QueryBuilder::new(
                "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, ip_address, user_agent, \"timestamp\") ",
            );
            insert.push_values(entries, |mut row, entry| {
                row.push_bind(Uuid::new_v4())
                    .push_bind(entry.user_id.map(|u: UserId| *u.as_uuid()))
                    .push_bind(entry.action.as_str())
                    .push_bind(entry.resource_type.as_str())
                    .push_bind(entry.resource_id)
                    .push_bind(entry.ip.map(|ip| ip.to_string()))
                    .push_bind(entry.user_agent.clone())
                    .push_bind(now);
            });
            insert.build().execute(pool).await?;
        });
        Ok(())
    }
}

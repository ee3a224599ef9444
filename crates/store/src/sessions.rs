use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{
    to_micros, AuditRow, CommentedSessionRow, CrisisEventRow, MessageRow, SessionRow,
    AUDIT_COLUMNS, CRISIS_EVENT_COLUMNS, MESSAGE_COLUMNS, SESSION_COLUMNS,
};
use crate::store::{insert_audit, with_pool, Store};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use domain::{ConnectionQuality, CrisisLevel, SessionId, UserId};
use sqlx::{AssertSqlSafe, QueryBuilder};
use uuid::Uuid;

/// Largest page [`Store::list_sessions`] serves.
pub const MAX_PER_PAGE: u32 = 100;

/// Every listing's page bounds: `page` starts at 1, `per_page` is 1 to [`MAX_PER_PAGE`].
pub(crate) fn check_page(page: u32, per_page: u32) -> Result<()> {
    if page == 0 {
        return Err(StoreError::Invalid("page starts at 1".to_owned()));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(StoreError::Invalid(format!(
            "per_page must be between 1 and {MAX_PER_PAGE}"
        )));
    }
    Ok(())
}
/// Rows per multi-row INSERT when loading in bulk (stays under both databases' parameter limits).
const BULK_CHUNK: usize = 1000;

#[derive(sqlx::FromRow)]
struct CountedSessionRow {
    #[sqlx(flatten)]
    session: SessionRow,
    total_count: i64,
}

/// A value bound into a query assembled at run time.
enum Bind {
    Text(&'static str),
    Time(DateTime<Utc>),
}

/// The SQL of one history listing: which of a student's live sessions match the filter, and how
/// to count them. `$1` is the student; `binds` are `$2`, `$3`, ... in order.
struct Listing {
    /// The WHERE clause over `sessions`.
    conditions: String,
    /// A query giving the total: a sum of the student's tallies when only category and mode
    /// filter, else a count of the matching index entries.
    count_sql: String,
    binds: Vec<Bind>,
}

impl Listing {
    fn for_filter(filter: &SessionFilter) -> Result<Listing> {
        if let (Some(start), Some(end)) = (filter.start_date, filter.end_date) {
            if start > end {
                return Err(StoreError::Invalid(
                    "start_date must not be after end_date".to_owned(),
                ));
            }
        }
        // Must match the predicate of the idx_sessions_live_* indexes word for word, or the
        // planners cannot use them.
        let mut conditions = String::from("user_id = $1 AND deleted_at IS NULL");
        let mut tally_conditions = String::from("user_id = $1");
        let mut binds = Vec::new();
        let mut condition = |sql: &str, value: Bind, tallied: bool| {
            binds.push(value);
            let term = format!(" AND {sql} ${}", binds.len() + 1);
            if tallied {
                tally_conditions.push_str(&term);
            }
            conditions.push_str(&term);
        };
        if let Some(category) = filter.category {
            condition("counselor_category =", Bind::Text(category.name()), true);
        }
        if let Some(mode) = filter.mode {
            condition("mode =", Bind::Text(mode.as_str()), true);
        }
        if let Some(start) = filter.start_date {
            condition("started_at >=", Bind::Time(start_of(start)), false);
        }
        if let Some(end) = filter.end_date {
            let after = end
                .succ_opt()
                .ok_or_else(|| StoreError::Invalid("end_date is out of range".to_owned()))?;
            condition("started_at <", Bind::Time(start_of(after)), false);
        }
        let count_sql = if filter.start_date.is_none() && filter.end_date.is_none() {
            format!(
                "SELECT CAST(COALESCE(SUM(live_sessions), 0) AS BIGINT) FROM session_tallies \
                 WHERE {tally_conditions}"
            )
        } else {
            format!("SELECT COUNT(*) FROM sessions WHERE {conditions}")
        };
        Ok(Listing {
            conditions,
            count_sql,
            binds,
        })
    }

    /// The page and its total in one round trip and one snapshot: the ids of the page are cut
    /// from the index in its order, only those rows are read, and the total rides beside them
    /// as a scalar subquery. LIMIT and OFFSET are bound after the filter's values.
    fn page_sql(&self) -> String {
        let (conditions, count_sql) = (&self.conditions, &self.count_sql);
        format!(
            "SELECT {SESSION_COLUMNS}, ({count_sql}) AS total_count \
             FROM (SELECT id AS page_id, started_at AS page_started_at FROM sessions WHERE {conditions} \
                   ORDER BY started_at DESC, id DESC LIMIT ${} OFFSET ${}) page \
             JOIN sessions ON sessions.id = page.page_id \
             ORDER BY page.page_started_at DESC, page.page_id DESC",
            self.binds.len() + 2,
            self.binds.len() + 3
        )
    }
}

fn start_of(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

fn check_room_name(room_name: &str) -> Result<()> {
    if room_name.is_empty() || room_name.chars().count() > 255 {
        return Err(StoreError::Invalid(
            "room name must be 1 to 255 characters".to_owned(),
        ));
    }
    Ok(())
}

impl Store {
    /// Records a session that has just started.
    pub async fn create_session(&self, new: NewSession) -> Result<SessionRecord> {
        check_room_name(&new.room_name)?;
        let started_at = to_micros(new.started_at);
        let created_at = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, counselor_category, mode, room_name, started_at, created_at, node_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(*new.id.as_uuid())
            .bind(*new.user_id.as_uuid())
            .bind(new.category.name())
            .bind(new.mode.as_str())
            .bind(&new.room_name)
            .bind(started_at)
            .bind(created_at)
            .bind(new.node.map(|n| *n.as_uuid()))
            .execute(pool)
            .await?;
        });
        Ok(SessionRecord {
            id: new.id,
            user_id: new.user_id,
            category: new.category,
            mode: new.mode,
            room_name: new.room_name,
            started_at,
            ended_at: None,
            duration_seconds: None,
            connection_quality: None,
            crisis_detected: false,
            message_count: 0,
            end_reason: None,
            rating: None,
        })
    }

    /// Marks a session ended, with no reason recorded. Ending an ended session changes nothing
    /// and returns it as it is, so the callers (the student, the bot, the cleanup job) need not
    /// coordinate.
    pub async fn end_session(
        &self,
        id: SessionId,
        ended_at: DateTime<Utc>,
        quality: Option<ConnectionQuality>,
    ) -> Result<SessionRecord> {
        self.finish_session(id, ended_at, quality, None).await
    }

    /// [`Store::end_session`], recording why the session ended. The first end wins: a later one
    /// changes neither the end time nor the reason.
    pub async fn end_session_because(
        &self,
        id: SessionId,
        ended_at: DateTime<Utc>,
        quality: Option<ConnectionQuality>,
        reason: SessionEndReason,
    ) -> Result<SessionRecord> {
        self.finish_session(id, ended_at, quality, Some(reason))
            .await
    }

    async fn finish_session(
        &self,
        id: SessionId,
        ended_at: DateTime<Utc>,
        quality: Option<ConnectionQuality>,
        reason: Option<SessionEndReason>,
    ) -> Result<SessionRecord> {
        let sql = format!(
            "UPDATE sessions SET ended_at = $1, connection_quality = COALESCE($2, connection_quality), \
             end_reason = $3 WHERE id = $4 AND ended_at IS NULL RETURNING {SESSION_COLUMNS}"
        );
        let ended: Option<SessionRow> = with_pool!(self, writer, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(to_micros(ended_at))
                .bind(quality.map(|q| q.as_str()))
                .bind(reason.map(|r| r.as_str()))
                .bind(*id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        match ended {
            Some(row) => row.try_into(),
            None => self
                .session_including_deleted(id)
                .await?
                .ok_or(StoreError::NotFound),
        }
    }

    /// Updates the call quality shown for a session.
    pub async fn set_connection_quality(
        &self,
        id: SessionId,
        quality: ConnectionQuality,
    ) -> Result<()> {
        let affected = with_pool!(self, writer, |pool| {
            sqlx::query("UPDATE sessions SET connection_quality = $1 WHERE id = $2")
                .bind(quality.as_str())
                .bind(*id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Stores one transcript line as soon as it is said. Idempotent on (session, sequence): a
    /// repeated final line changes nothing; a final line replaces an interim one with the same
    /// sequence number. [`StoreError::NotFound`] for a missing or deleted session.
    pub async fn append_message(
        &self,
        session_id: SessionId,
        message: NewMessage,
    ) -> Result<AppendOutcome> {
        let encrypted = self.cipher.encrypt(&message.text);
        let timestamp = to_micros(message.timestamp);
        let now = to_micros(Utc::now());
        let sequence = i64::from(message.sequence);
        let session = *session_id.as_uuid();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO transcript_messages \
                 (id, session_id, speaker, text_encrypted, is_final, sequence_number, \"timestamp\", created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $2 AND deleted_at IS NULL) \
                 ON CONFLICT (session_id, sequence_number) DO NOTHING",
            )
            .bind(Uuid::new_v4())
            .bind(session)
            .bind(message.speaker.as_str())
            .bind(&encrypted)
            .bind(message.is_final)
            .bind(sequence)
            .bind(timestamp)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let outcome = if inserted == 1 {
                sqlx::query(
                    "UPDATE sessions SET transcript_message_count = transcript_message_count + 1 WHERE id = $1",
                )
                .bind(session)
                .execute(&mut *tx)
                .await?;
                AppendOutcome::Inserted
            } else {
                let replaced = sqlx::query(
                    "UPDATE transcript_messages SET speaker = $1, text_encrypted = $2, is_final = $3, \"timestamp\" = $4 \
                     WHERE session_id = $5 AND sequence_number = $6 AND is_final = FALSE",
                )
                .bind(message.speaker.as_str())
                .bind(&encrypted)
                .bind(message.is_final)
                .bind(timestamp)
                .bind(session)
                .bind(sequence)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if replaced == 1 {
                    AppendOutcome::Replaced
                } else {
                    let stored: Option<i64> = sqlx::query_scalar(
                        "SELECT sequence_number FROM transcript_messages WHERE session_id = $1 AND sequence_number = $2",
                    )
                    .bind(session)
                    .bind(sequence)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if stored.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    AppendOutcome::AlreadyStored
                }
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// Records a risky utterance, flagged for human review, and returns it as stored (with its
    /// id). A `Crisis`-level event also marks the session as one in which a crisis was detected.
    pub async fn record_crisis_event(&self, event: NewCrisisEvent) -> Result<CrisisEventRecord> {
        if event.level == CrisisLevel::None {
            return Err(StoreError::Invalid(
                "a crisis event needs level concern or crisis".to_owned(),
            ));
        }
        let record = CrisisEventRecord {
            id: Uuid::new_v4(),
            session_id: event.session_id,
            sequence: event.sequence,
            level: event.level,
            signal: event.signal,
            decided_by: event.decided_by,
            flagged_for_review: true,
            created_at: to_micros(Utc::now()),
            review: None,
        };
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO crisis_events \
                 (id, session_id, message_sequence, level, signal, decided_by, flagged_for_review, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(record.id)
            .bind(*record.session_id.as_uuid())
            .bind(i64::from(record.sequence))
            .bind(record.level.as_str())
            .bind(record.signal.as_str())
            .bind(record.decided_by.map(|d| d.as_str()))
            .bind(record.flagged_for_review)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
            if record.level == CrisisLevel::Crisis {
                sqlx::query("UPDATE sessions SET crisis_detected = TRUE WHERE id = $1")
                    .bind(*record.session_id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(record)
    }

    /// A session's crisis events, oldest first.
    pub async fn crisis_events(&self, session_id: SessionId) -> Result<Vec<CrisisEventRecord>> {
        let sql = format!(
            "SELECT {CRISIS_EVENT_COLUMNS} FROM crisis_events WHERE session_id = $1 ORDER BY created_at, message_sequence"
        );
        let rows: Vec<CrisisEventRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*session_id.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(CrisisEventRecord::try_from).collect()
    }

    /// One page of a student's sessions, newest first, and how many match in all. Deleted
    /// sessions are never listed. `page` starts at 1; `per_page` is 1 to [`MAX_PER_PAGE`].
    ///
    /// The cost does not grow with the student's history (migration `history_listing`): the page
    /// is an ordered range of the partial index that fits the filter, joined to its rows only for
    /// the sessions shown, and the total is read from `session_tallies` (at most twelve rows per
    /// student). Only a date filter counts, and then only the index entries inside its range.
    pub async fn list_sessions(
        &self,
        user_id: UserId,
        filter: &SessionFilter,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<SessionRecord>, u64)> {
        check_page(page, per_page)?;
        let listing = Listing::for_filter(filter)?;
        let page_sql = listing.page_sql();
        let Listing {
            count_sql, binds, ..
        } = listing;
        let offset = i64::from(page - 1) * i64::from(per_page);
        let user = *user_id.as_uuid();
        let (rows, total): (Vec<CountedSessionRow>, i64) = with_pool!(self, reader, |pool| {
            let mut rows_query = sqlx::query_as(AssertSqlSafe(page_sql)).bind(user);
            let mut count_query = sqlx::query_scalar(AssertSqlSafe(count_sql)).bind(user);
            for bind in &binds {
                match bind {
                    Bind::Text(text) => {
                        rows_query = rows_query.bind(*text);
                        count_query = count_query.bind(*text);
                    }
                    Bind::Time(time) => {
                        rows_query = rows_query.bind(*time);
                        count_query = count_query.bind(*time);
                    }
                }
            }
            let rows: Vec<CountedSessionRow> = rows_query
                .bind(i64::from(per_page))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            // Only a page past the end (no rows to carry the total) counts on its own.
            let total = match rows.first() {
                Some(row) => row.total_count,
                None if offset == 0 => 0,
                None => count_query.fetch_one(pool).await?,
            };
            (rows, total)
        });
        let records = rows
            .into_iter()
            .map(|row| SessionRecord::try_from(row.session))
            .collect::<Result<Vec<_>>>()?;
        Ok((records, u64::try_from(total).unwrap_or(0)))
    }

    /// A session with its decrypted transcript, if it exists, belongs to `user_id` and has not
    /// been deleted. Another student's session gives `None`, exactly like a missing one.
    pub async fn session_for_user(
        &self,
        user_id: UserId,
        id: SessionId,
    ) -> Result<Option<SessionDetail>> {
        let session_sql = format!(
            "SELECT {SESSION_COLUMNS}, rating_comment_encrypted FROM sessions \
             WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
        );
        let messages_sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM transcript_messages WHERE session_id = $1 ORDER BY sequence_number");
        let found: Option<(CommentedSessionRow, Vec<MessageRow>)> =
            with_pool!(self, reader, |pool| {
                // One transaction, so the transcript matches the session row it is shown with.
                let mut tx = pool.begin().await?;
                let session: Option<CommentedSessionRow> =
                    sqlx::query_as(AssertSqlSafe(session_sql))
                        .bind(*id.as_uuid())
                        .bind(*user_id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await?;
                let found = match session {
                    Some(session) => {
                        let messages = sqlx::query_as(AssertSqlSafe(messages_sql))
                            .bind(*id.as_uuid())
                            .fetch_all(&mut *tx)
                            .await?;
                        Some((session, messages))
                    }
                    None => None,
                };
                tx.commit().await?;
                found
            });
        let Some((session, messages)) = found else {
            return Ok(None);
        };
        let messages = messages
            .into_iter()
            .map(|m| m.decrypt(&self.cipher))
            .collect::<Result<Vec<_>>>()?;
        let (record, rating_comment) = session.decrypt(&self.cipher)?;
        Ok(Some(SessionDetail {
            record,
            messages,
            rating_comment,
        }))
    }

    /// Records a student's rating of one of their own ended sessions, once. The comment is
    /// encrypted like a transcript line. Two ratings racing get one [`RateOutcome::Rated`] and
    /// one [`RateOutcome::AlreadyRated`]; nothing is ever overwritten.
    pub async fn rate_session(
        &self,
        user_id: UserId,
        id: SessionId,
        rating: NewRating,
    ) -> Result<RateOutcome> {
        let comment = rating
            .comment
            .as_ref()
            .map(|c| self.cipher.encrypt(c.as_text()));
        let sql = format!(
            "UPDATE sessions SET rating = $1, rating_comment_encrypted = $2, rated_at = $3 \
             WHERE id = $4 AND user_id = $5 AND deleted_at IS NULL AND ended_at IS NOT NULL \
             AND rating IS NULL RETURNING {SESSION_COLUMNS}"
        );
        let rated_at = to_micros(Utc::now());
        // A second pass only when the call ended between the update and the read that explains
        // it; by then the update matches or the read gives the reason.
        for _ in 0..2 {
            let rated: Option<SessionRow> = with_pool!(self, writer, |pool| {
                sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(i16::from(rating.rating.get()))
                    .bind(comment.as_deref())
                    .bind(rated_at)
                    .bind(*id.as_uuid())
                    .bind(*user_id.as_uuid())
                    .fetch_optional(pool)
                    .await?
            });
            if let Some(row) = rated {
                return Ok(RateOutcome::Rated(row.try_into()?));
            }
            // Nothing changed: say why, in the same terms for anyone who is not the owner.
            let Some(session) = self.session_row_for_user(user_id, id).await? else {
                return Ok(RateOutcome::NotFound);
            };
            if session.rating.is_some() {
                return Ok(RateOutcome::AlreadyRated);
            }
            if session.is_active() {
                return Ok(RateOutcome::StillActive);
            }
        }
        Err(StoreError::internal(
            "a session's rating could neither be stored nor refused",
        ))
    }

    /// A session's metadata if it is `user_id`'s and not deleted, read from the writer so that
    /// it sees the write just made.
    async fn session_row_for_user(
        &self,
        user_id: UserId,
        id: SessionId,
    ) -> Result<Option<SessionRecord>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
        );
        let row: Option<SessionRow> = with_pool!(self, writer, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*id.as_uuid())
                .bind(*user_id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(SessionRecord::try_from).transpose()
    }

    /// A session's metadata whoever owns it (for the call machinery, not for students); `None`
    /// for a missing or deleted session.
    pub async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        let sql =
            format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 AND deleted_at IS NULL");
        let row: Option<SessionRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(SessionRecord::try_from).transpose()
    }

    async fn session_including_deleted(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row: Option<SessionRow> = with_pool!(self, writer, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(SessionRecord::try_from).transpose()
    }

    /// Sessions that have not ended, oldest first (for the room-cleanup job).
    pub async fn active_sessions(&self) -> Result<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE ended_at IS NULL ORDER BY started_at"
        );
        let rows: Vec<SessionRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        rows.into_iter().map(SessionRecord::try_from).collect()
    }

    /// Deletes a student's session: it disappears from every student-facing query and its
    /// transcript lines and rating comment are erased at once. Metadata stays for analytics. Returns `false` when
    /// the session is missing, someone else's, or already deleted.
    pub async fn soft_delete_session(&self, user_id: UserId, id: SessionId) -> Result<bool> {
        let now = to_micros(Utc::now());
        let deleted = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let marked = sqlx::query(
                // The rating's comment goes with the transcript; the score stays with the metadata.
                "UPDATE sessions SET deleted_at = $1, rating_comment_encrypted = NULL \
                 WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(*id.as_uuid())
            .bind(*user_id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked == 1 {
                sqlx::query("DELETE FROM transcript_messages WHERE session_id = $1")
                    .bind(*id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(marked == 1)
        })?;
        if deleted {
            self.checkpoint_after_erase().await;
        }
        Ok(deleted)
    }

    /// Erases the transcript lines and rating comments of every session that started before
    /// `cutoff` (the retention rule). Session metadata, including the message count and the
    /// rating's score, stays. Each erased transcript is recorded in the audit log. With `dry_run`
    /// nothing changes and the report says what would go.
    pub async fn purge_transcripts_older_than(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<PurgeReport> {
        let cutoff = to_micros(cutoff);
        let now = to_micros(Utc::now());
        let report = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let doomed: Vec<(Uuid, i64)> = sqlx::query_as(
                "SELECT m.session_id, COUNT(*) FROM transcript_messages m \
                 JOIN sessions s ON s.id = m.session_id WHERE s.started_at < $1 GROUP BY m.session_id",
            )
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            let report = PurgeReport {
                sessions: doomed.len() as u64,
                messages: doomed.iter().map(|(_, n)| *n as u64).sum(),
            };
            if dry_run {
                return Ok(report);
            }
            // Rating comments are transcript-grade text and follow the same rule.
            let comments = sqlx::query(
                "UPDATE sessions SET rating_comment_encrypted = NULL \
                 WHERE started_at < $1 AND rating_comment_encrypted IS NOT NULL",
            )
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if !doomed.is_empty() {
                sqlx::query(
                    "DELETE FROM transcript_messages WHERE session_id IN (SELECT id FROM sessions WHERE started_at < $1)",
                )
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                for chunk in doomed.chunks(BULK_CHUNK) {
                    let mut insert = QueryBuilder::new(
                        "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, \"timestamp\") ",
                    );
                    insert.push_values(chunk, |mut row, (session, _)| {
                        row.push_bind(Uuid::new_v4())
                            .push_bind(None::<Uuid>)
                            .push_bind(AuditAction::PurgeTranscript.as_str())
                            .push_bind(AuditResource::Session.as_str())
                            .push_bind(*session)
                            .push_bind(now);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok::<_, StoreError>((report, comments > 0 || !doomed.is_empty()))
        })?;
        let (report, erased) = report;
        if erased {
            self.checkpoint_after_erase().await;
        }
        Ok(report)
    }

    /// Adds an entry to the audit trail.
    pub async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        let now = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            insert_audit!(pool, &entry, now)?;
        });
        Ok(())
    }

    /// The audit trail about one resource, oldest first.
    pub async fn audit_log_for_resource(
        &self,
        resource_type: AuditResource,
        resource_id: Uuid,
    ) -> Result<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE resource_type = $1 AND resource_id = $2 ORDER BY \"timestamp\""
        );
        let rows: Vec<AuditRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(resource_type.as_str())
                .bind(resource_id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    /// What a user did, newest first, at most `limit` entries.
    pub async fn audit_log_for_user(
        &self,
        user_id: UserId,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE user_id = $1 ORDER BY \"timestamp\" DESC LIMIT {limit}"
        );
        let rows: Vec<AuditRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*user_id.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    /// Loads many sessions at once (demo data, benchmarks): multi-row inserts in one transaction.
    /// Returns how many were stored.
    pub async fn insert_sessions_bulk(&self, sessions: &[BulkSession]) -> Result<u64> {
        for s in sessions {
            check_room_name(&s.session.room_name)?;
        }
        let now = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let mut stored = 0;
            for chunk in sessions.chunks(BULK_CHUNK) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO sessions (id, user_id, counselor_category, mode, room_name, started_at, ended_at, \
                     connection_quality, crisis_detected, created_at) ",
                );
                insert.push_values(chunk, |mut row, s| {
                    row.push_bind(*s.session.id.as_uuid())
                        .push_bind(*s.session.user_id.as_uuid())
                        .push_bind(s.session.category.name())
                        .push_bind(s.session.mode.as_str())
                        .push_bind(s.session.room_name.as_str())
                        .push_bind(to_micros(s.session.started_at))
                        .push_bind(s.ended_at.map(to_micros))
                        .push_bind(s.connection_quality.map(|q| q.as_str()))
                        .push_bind(s.crisis_detected)
                        .push_bind(now);
                });
                stored += insert.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(stored)
        })
    }

    /// Loads many transcript lines at once (demo data, benchmarks), encrypted like any other, and
    /// raises each session's message count to match. One transaction; a clash with a stored
    /// sequence number fails the whole call with [`StoreError::Conflict`].
    pub async fn insert_messages_bulk(&self, messages: &[BulkMessage]) -> Result<u64> {
        let now = to_micros(Utc::now());
        let encrypted: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| self.cipher.encrypt(&m.message.text))
            .collect();
        let mut per_session: Vec<(Uuid, i64)> = Vec::new();
        {
            let mut counts = std::collections::HashMap::<Uuid, i64>::new();
            for m in messages {
                *counts.entry(*m.session_id.as_uuid()).or_default() += 1;
            }
            per_session.extend(counts);
        }
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            let mut stored = 0;
            for (chunk, texts) in messages
                .chunks(BULK_CHUNK)
                .zip(encrypted.chunks(BULK_CHUNK))
            {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO transcript_messages \
                     (id, session_id, speaker, text_encrypted, is_final, sequence_number, \"timestamp\", created_at) ",
                );
                insert.push_values(chunk.iter().zip(texts), |mut row, (m, text)| {
                    row.push_bind(Uuid::new_v4())
                        .push_bind(*m.session_id.as_uuid())
                        .push_bind(m.message.speaker.as_str())
                        .push_bind(text.as_slice())
                        .push_bind(m.message.is_final)
                        .push_bind(i64::from(m.message.sequence))
                        .push_bind(to_micros(m.message.timestamp))
                        .push_bind(now);
                });
                stored += insert.build().execute(&mut *tx).await?.rows_affected();
            }
            for chunk in per_session.chunks(BULK_CHUNK) {
                let mut update = QueryBuilder::new("WITH added (id, n) AS (");
                update.push_values(chunk, |mut row, (session, n)| {
                    row.push_bind(*session).push_bind(*n);
                });
                update.push(
                    ") UPDATE sessions SET transcript_message_count = transcript_message_count + added.n \
                     FROM added WHERE sessions.id = added.id",
                );
                update.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(stored)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Category, SessionMode};

    /// Every filter shape is paged and counted from an index, in the index's order: nothing
    /// scans the table, and nothing but the page itself is sorted.
    #[tokio::test]
    async fn every_listing_reads_an_index_in_order() {
        let store = Store::connect(
            "sqlite::memory:",
            crate::TranscriptCipher::new(crate::TranscriptCipher::generate_key()),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let crate::store::Backend::Sqlite(db) = &store.backend else {
            unreachable!()
        };
        let day = NaiveDate::from_ymd_opt;
        for category in [None, Some(Category::Health)] {
            for mode in [None, Some(SessionMode::Voice)] {
                for (start_date, end_date) in [(None, None), (day(2026, 6, 1), day(2026, 8, 31))] {
                    let filter = SessionFilter {
                        category,
                        mode,
                        start_date,
                        end_date,
                    };
                    let sql = Listing::for_filter(&filter).unwrap().page_sql();
                    let plan: Vec<(i64, i64, i64, String)> =
                        sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                            .fetch_all(&db.reader)
                            .await
                            .unwrap();
                    let plan: Vec<String> = plan.into_iter().map(|row| row.3).collect();
                    for step in &plan {
                        let shown = step.starts_with("SEARCH sessions USING COVERING INDEX idx_sessions_live_")
                            // The page's own rows, each found by id.
                            || step == "SEARCH sessions USING INDEX sqlite_autoindex_sessions_1 (id=?)"
                            || !step.contains("sessions ");
                        assert!(
                            shown && !step.contains("TEMP B-TREE"),
                            "{filter:?} reads {step:?}; the plan: {plan:#?}"
                        );
                    }
                }
            }
        }
    }
}

//! What happens in a live call, told to every node of a deployment through PostgreSQL's
//! `LISTEN/NOTIFY`, so that a transcript socket on one node follows a call running on another.
//!
//! A notice carries ids and states, never transcript text: a node that hears of a new line reads
//! it from the store and decrypts it itself, so the text crosses the wire only encrypted, exactly
//! as it is stored. Notices are transient: one sent while a listener's connection is down is lost,
//! which the listener reports as [`Heard::Gap`] so that its sockets resume from the store.
//!
//! With SQLite there is one node per database, and nothing to tell.

use std::fmt;
use std::str::FromStr;

use domain::{BotState, ConnectionQuality, NodeId, SessionId};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::model::TranscriptMessage;
use crate::rows::{MessageRow, MESSAGE_COLUMNS};
use crate::store::{with_pool, Backend, Store};

/// The PostgreSQL channel every node listens on.
pub const LIVE_CHANNEL: &str = "counsel_live";

/// One thing that happened in a live call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveNotice {
    pub session_id: SessionId,
    pub change: LiveChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveChange {
    /// A final transcript line, already stored, with this sequence number.
    Line {
        sequence: u32,
    },
    /// A crisis was detected: the alert goes on screen.
    Crisis,
    BotState(BotState),
    ConnectionQuality(ConnectionQuality),
    /// The session has ended; its end is stored.
    Ended,
    /// The student asked a node that does not run the call to end it (the session's end is
    /// stored): the node that runs it ends the call.
    EndRequested,
    /// Node `by` stored the crisis event `event` and showed it on its own staff pages; the other
    /// nodes show it on theirs.
    Flagged {
        event: Uuid,
        by: NodeId,
    },
}

/// What a listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    Notice(LiveNotice),
    /// The connection was lost and is back: notices sent meanwhile are gone.
    Gap,
}

/// A notice's payload: `<session id> <change>`, e.g. `… line 7`, `… bot thinking`, `… ended`.
impl fmt::Display for LiveNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.session_id)?;
        match self.change {
            LiveChange::Line { sequence } => write!(f, "line {sequence}"),
            LiveChange::Crisis => f.write_str("crisis"),
            LiveChange::BotState(state) => write!(f, "bot {}", state.as_str()),
            LiveChange::ConnectionQuality(quality) => write!(f, "quality {}", quality.as_str()),
            LiveChange::Ended => f.write_str("ended"),
            LiveChange::EndRequested => f.write_str("end_requested"),
            LiveChange::Flagged { event, by } => write!(f, "flagged {event} {by}"),
        }
    }
}

impl FromStr for LiveNotice {
    type Err = StoreError;

    fn from_str(payload: &str) -> Result<Self> {
        let bad = || StoreError::Invalid(format!("not a live notice: {payload:?}"));
        let mut words = payload.split(' ');
        let session_id = words
            .next()
            .and_then(|id| id.parse().ok())
            .ok_or_else(bad)?;
        let change = match (words.next(), words.next()) {
            (Some("flagged"), Some(event)) => LiveChange::Flagged {
                event: event.parse().map_err(|_| bad())?,
                by: words
                    .next()
                    .and_then(|by| by.parse().ok())
                    .ok_or_else(bad)?,
            },
            (Some("line"), Some(n)) => LiveChange::Line {
                sequence: n.parse().map_err(|_| bad())?,
            },
            (Some("crisis"), None) => LiveChange::Crisis,
            (Some("bot"), Some(state)) => LiveChange::BotState(state.parse().map_err(|_| bad())?),
            (Some("quality"), Some(quality)) => {
                LiveChange::ConnectionQuality(quality.parse().map_err(|_| bad())?)
            }
            (Some("ended"), None) => LiveChange::Ended,
            (Some("end_requested"), None) => LiveChange::EndRequested,
            _ => return Err(bad()),
        };
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(LiveNotice { session_id, change })
    }
}

/// The stream of notices from every node, this one's own included.
pub struct LiveNotices {
    listener: PgListener,
}

impl LiveNotices {
    /// The next notice, or [`Heard::Gap`] after a lost connection (it reconnects first). An
    /// error means the database is unreachable or the store closed; the caller may start again.
    pub async fn next(&mut self) -> Result<Heard> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(Heard::Gap),
                Some(notification) => match notification.payload().parse() {
                    Ok(notice) => return Ok(Heard::Notice(notice)),
                    Err(error) => {
                        // Another version of counsel, or someone else's NOTIFY: not ours to act on.
                        tracing::warn!(%error, "ignored a live notice");
                    }
                },
            }
        }
    }
}

impl Store {
    /// Tells every node (its own included) what happened in a live call. With SQLite, one node
    /// per database, there is nobody to tell.
    pub async fn announce(&self, notice: LiveNotice) -> Result<()> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(LIVE_CHANNEL)
            .bind(notice.to_string())
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Starts listening to every node's notices; `None` with SQLite, where no other node runs.
    /// The listener holds one connection of its own.
    pub async fn live_notices(&self) -> Result<Option<LiveNotices>> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(LIVE_CHANNEL).await?;
        Ok(Some(LiveNotices { listener }))
    }

    /// One stored line of a session's transcript, decrypted; `None` when the session holds no
    /// line with this number (or has been deleted).
    pub async fn transcript_line(
        &self,
        session_id: SessionId,
        sequence: u32,
    ) -> Result<Option<TranscriptMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM transcript_messages m WHERE m.session_id = $1 \
             AND m.sequence_number = $2 \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = $1 AND s.deleted_at IS NULL)"
        );
        let row: Option<MessageRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(*session_id.as_uuid())
                .bind(i64::from(sequence))
                .fetch_optional(pool)
                .await?
        });
        row.map(|row| row.decrypt(&self.cipher)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_as_written() {
        let session_id = SessionId::new();
        for change in [
            LiveChange::Line { sequence: 7 },
            LiveChange::Crisis,
            LiveChange::BotState(BotState::Thinking),
            LiveChange::ConnectionQuality(ConnectionQuality::Fair),
            LiveChange::Ended,
            LiveChange::EndRequested,
            LiveChange::Flagged {
                event: Uuid::new_v4(),
                by: NodeId::new(),
            },
        ] {
            let notice = LiveNotice { session_id, change };
            assert_eq!(notice.to_string().parse::<LiveNotice>().unwrap(), notice);
        }
    }

    #[test]
    fn a_malformed_payload_is_refused_with_what_it_was() {
        let id = SessionId::new();
        for payload in [
            "hello".to_owned(),
            format!("{id}"),
            format!("{id} line"),
            format!("{id} line -1"),
            format!("{id} bot asleep"),
            format!("{id} ended now"),
            format!("{id} flagged {id}"),
        ] {
            let error = payload.parse::<LiveNotice>().unwrap_err();
            assert!(error.to_string().contains("not a live notice"), "{error}");
        }
    }
}

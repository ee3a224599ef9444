//! What the store reads and writes, in the domain's types.

use chrono::{DateTime, NaiveDate, Utc};
use domain::{
    Category, CategoryId, ConnectionQuality, CrisisLevel, CrisisSignal, DecidedBy, NodeId, Rating,
    RatingComment, ReviewOutcome, Role, SessionId, SessionMode, Speaker, TranscriptText, UserId,
    Username,
};
use std::fmt;
use std::net::IpAddr;
use uuid::Uuid;

/// Which database a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    /// Whether several nodes of a deployment may share a database of this kind: a PostgreSQL
    /// server, yes; a SQLite file is one node's.
    pub const fn shared_by_nodes(self) -> bool {
        matches!(self, StoreKind::Postgres)
    }
}

/// An account: a student, or a staff member on duty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub role: Role,
    pub is_blocked: bool,
    /// The account's token epoch: access tokens minted under an older one are revoked. Moved on
    /// by signing out, blocking and a new password.
    pub token_epoch: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user together with the stored password hash, for signing in. `Debug` hides the hash.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("password_hash", &"<hidden>")
            .finish()
    }
}

/// One of the six counselors as configured in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounselorCategory {
    pub id: CategoryId,
    pub category: Category,
    /// The category's display name (`"Personal Development"`), the same as `category.name()`.
    pub name: String,
    pub description: String,
    pub icon_name: String,
    pub system_prompt: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A session being opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub category: Category,
    pub mode: SessionMode,
    /// The Daily / LiveKit / local room the call happens in (at most 255 characters).
    pub room_name: String,
    pub started_at: DateTime<Utc>,
    /// The node that runs the call; `None` for a session no live call runs (imports, tools).
    pub node: Option<NodeId>,
}

/// A session's metadata: everything but the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub category: Category,
    pub mode: SessionMode,
    pub room_name: String,
    pub started_at: DateTime<Utc>,
    /// `None` while the call is going on.
    pub ended_at: Option<DateTime<Utc>>,
    /// Whole seconds from start to end, computed by the database; `None` while active.
    pub duration_seconds: Option<i64>,
    pub connection_quality: Option<ConnectionQuality>,
    pub crisis_detected: bool,
    /// Messages ever stored for the session; kept after the transcript is purged.
    pub message_count: u32,
    /// Why it ended; `None` while active, and for sessions that ended before reasons were kept.
    pub end_reason: Option<SessionEndReason>,
    /// The student's rating; `None` until they rate the session (which they may never do).
    pub rating: Option<StoredRating>,
}

/// A session's rating as stored: the score and when it was given. The comment, being as private
/// as the transcript, is only read with the transcript ([`SessionDetail::rating_comment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRating {
    pub rating: Rating,
    pub rated_at: DateTime<Utc>,
}

/// A student's rating of one of their sessions, as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRating {
    pub rating: Rating,
    pub comment: Option<RatingComment>,
}

/// What [`crate::Store::rate_session`] did. Another student's session, a deleted one and one
/// that never existed are all [`RateOutcome::NotFound`]: the caller cannot tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateOutcome {
    /// Stored; the session as it now is.
    Rated(SessionRecord),
    NotFound,
    /// The session was rated before; ratings are final, nothing changed.
    AlreadyRated,
    /// The call is still going on; a session is rated once it has ended.
    StillActive,
}

/// Why a session ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEndReason {
    /// The student or the platform ended the call.
    Ended,
    /// The browser went away (tab closed, network lost).
    TransportClosed,
    /// The student stayed silent past the idle limit.
    IdleTimeout,
    /// A service the call could not go on without failed.
    Failed,
    /// The server was shutting down and ended the call.
    ServerShutdown,
    /// The server stopped without ending the call (a crash, `kill -9`, a lost machine), and the
    /// session was closed when it started again or by another node that found it gone.
    ServerRestart,
}

impl SessionEndReason {
    pub const ALL: [SessionEndReason; 6] = [
        SessionEndReason::Ended,
        SessionEndReason::TransportClosed,
        SessionEndReason::IdleTimeout,
        SessionEndReason::Failed,
        SessionEndReason::ServerShutdown,
        SessionEndReason::ServerRestart,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::Ended => "ended",
            SessionEndReason::TransportClosed => "transport_closed",
            SessionEndReason::IdleTimeout => "idle_timeout",
            SessionEndReason::Failed => "failed",
            SessionEndReason::ServerShutdown => "server_shutdown",
            SessionEndReason::ServerRestart => "server_restart",
        }
    }

    pub fn parse(value: &str) -> Option<SessionEndReason> {
        SessionEndReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == value)
    }
}

impl SessionRecord {
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// One transcript line as it arrives from the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Position in the session, assigned by the agent; unique per session.
    pub sequence: u32,
    pub speaker: Speaker,
    pub text: TranscriptText,
    /// `false` for an interim result that a later message with the same sequence may replace.
    pub is_final: bool,
    pub timestamp: DateTime<Utc>,
}

/// What [`crate::Store::append_message`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new line was stored.
    Inserted,
    /// An interim line with this sequence number was replaced.
    Replaced,
    /// A final line with this sequence number was already stored; nothing changed.
    AlreadyStored,
}

/// A stored transcript line, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptMessage {
    pub sequence: u32,
    pub speaker: Speaker,
    pub text: TranscriptText,
    pub is_final: bool,
    pub timestamp: DateTime<Utc>,
}

/// A session with its transcript, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetail {
    pub record: SessionRecord,
    /// In sequence order; empty once the transcript has been purged.
    pub messages: Vec<TranscriptMessage>,
    /// What the student wrote beside their rating, decrypted; `None` without one, and once it
    /// is erased with the transcript.
    pub rating_comment: Option<RatingComment>,
}

/// Which sessions to list. Empty fields do not filter. Dates are inclusive, in UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub category: Option<Category>,
    pub mode: Option<SessionMode>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

/// A risky utterance detected during a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCrisisEvent {
    pub session_id: SessionId,
    /// Sequence number of the message that triggered it.
    pub sequence: u32,
    /// `Concern` or `Crisis`; `None` is not an event and is refused.
    pub level: CrisisLevel,
    pub signal: CrisisSignal,
    /// Which part of the safety check decided it (`None` if the caller cannot say).
    pub decided_by: Option<DecidedBy>,
}

/// A stored crisis event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrisisEventRecord {
    pub id: Uuid,
    pub session_id: SessionId,
    pub sequence: u32,
    pub level: CrisisLevel,
    pub signal: CrisisSignal,
    pub decided_by: Option<DecidedBy>,
    /// `true` until a staff member has reviewed the event.
    pub flagged_for_review: bool,
    pub created_at: DateTime<Utc>,
    /// `None` while the event waits in the review queue.
    pub review: Option<StoredReview>,
}

/// Longest review note, in characters (the same limit as the databases' constraint).
pub const MAX_REVIEW_NOTE_CHARS: usize = 2000;

/// A staff member's review of a crisis event, as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrisisReview {
    pub reviewer: UserId,
    pub outcome: ReviewOutcome,
    /// At most [`MAX_REVIEW_NOTE_CHARS`] characters; empty is stored as no note.
    pub note: Option<String>,
}

/// A recorded review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReview {
    pub outcome: ReviewOutcome,
    pub note: Option<String>,
    pub reviewed_at: DateTime<Utc>,
    /// `None` once the reviewer's account has been removed.
    pub reviewer_id: Option<UserId>,
}

/// Which crisis events the review queue lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReviewStatusFilter {
    /// Not yet reviewed (the default).
    #[default]
    Open,
    Reviewed,
    All,
}

/// A crisis event as the review queue shows it to staff: who said it, and what they said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrisisQueueItem {
    pub event: CrisisEventRecord,
    pub student_id: UserId,
    pub student: Username,
    /// The utterance that raised the event, decrypted; `None` once the transcript has been
    /// erased (deleted by the student or past retention). `Debug` hides the words.
    pub text: Option<TranscriptText>,
    /// The reviewer's username, while that account exists.
    pub reviewed_by: Option<Username>,
}

/// What happened to student data, for the FERPA audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    ViewTranscript,
    DownloadTranscript,
    DeleteTranscript,
    /// The retention job erased transcripts (no user; the resource is each session).
    PurgeTranscript,
    /// A staff member was shown a crisis event (with the student's words) in the review queue.
    ViewCrisisEvent,
    /// A staff member recorded their review of a crisis event.
    ReviewCrisisEvent,
    /// A staff member opened the live crisis feed (one entry per connection).
    ViewCrisisFeed,
    /// A student accepted the first-visit notice (the resource is their account; the entry's
    /// time is the acceptance's).
    AcceptNotice,
}

impl AuditAction {
    pub const ALL: [AuditAction; 8] = [
        AuditAction::ViewTranscript,
        AuditAction::DownloadTranscript,
        AuditAction::DeleteTranscript,
        AuditAction::PurgeTranscript,
        AuditAction::ViewCrisisEvent,
        AuditAction::ReviewCrisisEvent,
        AuditAction::ViewCrisisFeed,
        AuditAction::AcceptNotice,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::ViewTranscript => "view_transcript",
            AuditAction::DownloadTranscript => "download_transcript",
            AuditAction::DeleteTranscript => "delete_transcript",
            AuditAction::PurgeTranscript => "purge_transcript",
            AuditAction::ViewCrisisEvent => "view_crisis_event",
            AuditAction::ReviewCrisisEvent => "review_crisis_event",
            AuditAction::ViewCrisisFeed => "view_crisis_feed",
            AuditAction::AcceptNotice => "accept_notice",
        }
    }
}

/// What kind of thing an audit entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditResource {
    Session,
    Transcript,
    CrisisEvent,
    /// One connection to the live crisis feed (the id is the connection's, also in the logs).
    CrisisFeed,
    /// An account (the id is the user's).
    Account,
}

impl AuditResource {
    pub const ALL: [AuditResource; 5] = [
        AuditResource::Session,
        AuditResource::Transcript,
        AuditResource::CrisisEvent,
        AuditResource::CrisisFeed,
        AuditResource::Account,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditResource::Session => "session",
            AuditResource::Transcript => "transcript",
            AuditResource::CrisisEvent => "crisis_event",
            AuditResource::CrisisFeed => "crisis_feed",
            AuditResource::Account => "account",
        }
    }
}

/// One audit-trail entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// `None` for actions taken by the system itself (the retention job).
    pub user_id: Option<UserId>,
    pub action: AuditAction,
    pub resource_type: AuditResource,
    pub resource_id: Uuid,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// A recorded audit-trail entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub entry: AuditEntry,
    pub timestamp: DateTime<Utc>,
}

/// What a transcript purge erased (or, in a dry run, would erase).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions that had transcript lines erased.
    pub sessions: u64,
    /// Transcript lines erased.
    pub messages: u64,
}

/// A finished (or still running) session loaded in bulk, for demo data and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSession {
    pub session: NewSession,
    pub ended_at: Option<DateTime<Utc>>,
    pub connection_quality: Option<ConnectionQuality>,
    pub crisis_detected: bool,
}

/// A transcript line loaded in bulk; the session's message count is kept right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkMessage {
    pub session_id: SessionId,
    pub message: NewMessage,
}

use std::error::Error as StdError;

/// Why a storage call failed, in terms a caller can act on.
///
/// The `Display` text of every variant is safe to show a user: it never contains SQL, connection
/// strings, transcript text or password hashes. The underlying driver error of [`StoreError::Unavailable`]
/// and [`StoreError::Internal`] is kept as the error's `source()`, for logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the call is about does not exist (or is not visible to the caller).
    #[error("not found")]
    NotFound,
    /// The write clashes with what is stored (a duplicate username, a reused sequence number…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input breaks a rule of the data model (a session ending before it started…).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached or is overloaded; retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// Anything else: a bug or a corrupted row. Details are in `source()`, for logs.
    #[error("internal storage error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        StoreError::Internal(message.into().into())
    }
}

/// Constraint names (PostgreSQL) or the words SQLite puts in its message, with what they mean.
/// Both databases name the same constraints, so one table serves both.
const CONSTRAINTS: &[(&str, ConstraintKind, &str)] = &[
    (
        "username_format_check",
        ConstraintKind::Invalid,
        "username must have the form \\DOMAIN\\user",
    ),
    (
        "users_username_key",
        ConstraintKind::Conflict,
        "a user with this username already exists",
    ),
    (
        "users.username",
        ConstraintKind::Conflict,
        "a user with this username already exists",
    ),
    (
        "sessions_pkey",
        ConstraintKind::Conflict,
        "a session with this id already exists",
    ),
    (
        "sessions.id",
        ConstraintKind::Conflict,
        "a session with this id already exists",
    ),
    (
        "ended_after_started",
        ConstraintKind::Invalid,
        "a session cannot end before it started",
    ),
    (
        "transcript_messages_session_sequence_key",
        ConstraintKind::Conflict,
        "this sequence number is already used in the session",
    ),
    (
        "transcript_messages.session_id, transcript_messages.sequence_number",
        ConstraintKind::Conflict,
        "this sequence number is already used in the session",
    ),
    (
        "room_name_length",
        ConstraintKind::Invalid,
        "room name must be at most 255 characters",
    ),
    (
        "system_prompt_not_empty",
        ConstraintKind::Invalid,
        "system prompt must not be empty",
    ),
];

#[derive(Clone, Copy)]
enum ConstraintKind {
    Conflict,
    Invalid,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(Box::new(err)),
            sqlx::Error::Database(ref db) => {
                let known = CONSTRAINTS.iter().find(|(name, _, _)| {
                    db.constraint() == Some(*name) || db.message().contains(name)
                });
                match (db.kind(), known) {
                    (_, Some((_, ConstraintKind::Conflict, what))) => {
                        StoreError::Conflict((*what).to_owned())
                    }
                    (_, Some((_, ConstraintKind::Invalid, what))) => {
                        StoreError::Invalid((*what).to_owned())
                    }
                    (ErrorKind::UniqueViolation, None) => {
                        StoreError::Conflict("duplicate value".to_owned())
                    }
                    (ErrorKind::ForeignKeyViolation, None) => StoreError::NotFound,
                    (ErrorKind::CheckViolation | ErrorKind::NotNullViolation, None) => {
                        StoreError::Invalid("value breaks a rule of the data model".to_owned())
                    }
                    // SQLite reports a locked database as an ordinary error; it is load, not a bug.
                    _ if is_busy(db.as_ref()) => StoreError::Unavailable(Box::new(err)),
                    _ => StoreError::Internal(Box::new(err)),
                }
            }
            other => StoreError::Internal(Box::new(other)),
        }
    }
}

fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), possibly extended; PostgreSQL 53300 too_many_connections.
    matches!(
        db.code().as_deref(),
        Some("5" | "6" | "517" | "262" | "53300")
    )
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Internal(Box::new(other)),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

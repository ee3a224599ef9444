//! counsel's storage: one repository API over SQLite (the embedded default) and PostgreSQL
//! (production), chosen by the database URL.
//!
//! - [`Store::connect`] with `sqlite://path/to/counsel.db` (created if missing, WAL mode) or
//!   `postgres://user@host/db`; then [`Store::migrate`] creates or upgrades the schema and seeds the
//!   six counselor categories.
//! - Transcript text is encrypted with AES-256-GCM ([`TranscriptCipher`]) before it reaches the
//!   database and decrypted on read; the database never holds it in the clear.
//! - Both databases enforce the same constraints (username format, `ended_at >= started_at`, unique
//!   sequence numbers per session); violations come back as [`StoreError::Invalid`] or
//!   [`StoreError::Conflict`] with a message safe to show.
//! - A student's acceptance of the first-visit notice is kept per account and wording
//!   ([`Store::accept_notice`]), audited in the same transaction.
//! - Ownership is part of every student-facing query: [`Store::session_for_user`] returns `None`
//!   for another student's session exactly as for a missing one.

mod categories;
mod cipher;
mod crisis;
mod error;
mod limits;
mod live;
mod model;
mod nodes;
mod notices;
mod rows;
mod sessions;
mod store;
mod url;
mod users;

pub use categories::DEFAULT_CATEGORIES;
pub use cipher::{DecryptError, TranscriptCipher};
pub use error::{Result, StoreError};
pub use limits::{BucketSize, SocketSlotId, Taken};
pub use live::{Heard, LiveChange, LiveNotice, LiveNotices, LIVE_CHANNEL};
pub use model::*;
pub use nodes::{Job, JobLock, NodeRecord, NodeRegistration, Unowned};
pub use notices::{NoticeAcceptance, NoticeVersion};
pub use sessions::MAX_PER_PAGE;
pub use store::Store;
pub use url::{DatabaseUrl, UnsupportedDatabaseUrl};

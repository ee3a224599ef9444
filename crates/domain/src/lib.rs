//! The vocabulary of counsel, shared by every other crate.
//!
//! Everything here is a value that is valid by construction: a [`Username`] can only be
//! obtained by parsing `\DOMAIN\user`, a [`Category`] is one of the six counselors, and so on.
//! Nothing in this crate performs I/O.

mod category;
mod crisis;
mod ids;
mod millis;
mod rating;
mod role;
mod session;
mod transcript;
mod username;

pub use category::{Category, UnknownCategory};
pub use crisis::{CrisisLevel, CrisisSignal, DecidedBy, ReviewOutcome};
pub use ids::{CategoryId, NodeId, SessionId, UserId};
pub use millis::millis;
pub use rating::{Rating, RatingComment, RatingError};
pub use role::Role;
pub use session::{BotState, ConnectionQuality, SessionMode, UnknownValue};
pub use transcript::{Speaker, TranscriptText};
pub use username::{Username, UsernameError};

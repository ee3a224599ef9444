//! The counsel server: the HTTP API, its background jobs and the command line.
//!
//! - [`config`]: every environment variable, read and checked once.
//! - [`error`]: the one place errors become `{detail, code}` responses.
//! - [`auth`]: passwords, tokens, the session cookie and the [`auth::AuthUser`] extractor.
//! - [`routes`]: thin handlers; [`app`] composes them with the [`middleware`].
//! - [`calls`]: live calls — rooms, the in-process counselor agent, recording, crisis alerts.
//! - [`crisis_desk`]: flagged events to staff on duty, live and by signed webhook.
//! - [`notice`]: the first-visit notice students accept once.
//! - [`nodes`]: this server as one node of a deployment (registry, heartbeat, dead nodes).
//! - [`jobs`]: transcript retention. [`cli`]: the `counsel` subcommands.

pub mod app;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod client_address;
pub mod config;
pub mod counselors;
pub mod crisis_desk;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod metrics;
pub mod middleware;
pub mod nodes;
pub mod notice;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod web;

pub use app::{Application, SHUTDOWN_CALLS_WAIT, SHUTDOWN_CONNECTIONS_WAIT};
pub use config::Config;
pub use state::AppState;

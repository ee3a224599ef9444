//! Integration tests: the real application over real HTTP, on SQLite and on PostgreSQL.

mod browser_peer;
mod helpers;

mod a_live_call_stopped;
mod auth;
mod calls;
mod lifecycle;
mod nodes;
mod notice;
mod platform;
mod rate_limits;
mod ratings;
mod sessions;
mod several_nodes;
mod staff;

//! Integration tests: the real application over real HTTP, on SQLite and on PostgreSQL.

mod helpers;

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

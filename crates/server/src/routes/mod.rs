//! HTTP handlers, thin: parse, call the store, shape the answer.

pub mod auth;
pub mod calls;
pub mod counselors;
pub mod health;
pub mod live;
pub mod sessions;
pub mod staff;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every API route, relative to the API prefix (`/api/v1` and `/api` both serve it).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::routes())
        .merge(auth::routes())
        .merge(counselors::routes())
        .merge(sessions::routes())
        .merge(calls::routes())
        .merge(staff::routes())
}

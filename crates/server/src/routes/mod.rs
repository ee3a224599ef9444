//! HTTP handlers, thin: parse, call the store, shape the answer.

pub mod auth;
pub mod calls;
pub mod counselors;
pub mod health;
pub mod live;
pub mod notice;
pub mod sessions;
pub mod staff;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every API route, relative to the API prefix (`/api/v1` and `/api` both serve it).
pub fn api_routes() -> OpenApiRouter<AppState> {
    // Tokens, the account, the notice and its acceptance, session history, transcripts and the
    // crisis queue: never cached.
    let personal = OpenApiRouter::new()
        .merge(auth::routes())
        .merge(notice::routes())
        .merge(sessions::routes())
        .merge(calls::routes())
        .merge(staff::routes())
        .route_layer(axum::middleware::map_response(
            crate::middleware::security_headers::no_store,
        ));
    OpenApiRouter::new()
        .merge(health::routes())
        .merge(counselors::routes())
        .merge(personal)
}

//! axum's extractors with their rejections turned into [`ApiError`]s, so that malformed input
//! gets the same `{detail, code}` body as everything else, naming the field at fault.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use domain::SessionId;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A session id from the request: the one parse every route uses. A malformed id can be nobody's
/// session, so it gets the same answer as an id that is no session of the caller's (404
/// `SESSION_001`): ids cannot be probed by their shape, and no route answers differently.
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::SessionNotFound)
}

/// The `{session_id}` segment of a route's path, parsed by [`session_id`].
#[derive(Debug, Clone, Copy)]
pub struct SessionPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        session_id(&raw).map(SessionPath)
    }
}

/// Where a request came from, for rate limits and the audit log.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl FromRequestParts<crate::state::AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ip = state.config.trusted_proxies.client_ip(peer, &parts.headers);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        Ok(ClientInfo { ip, user_agent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_session_id_is_no_session() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(*session_id(&id.to_string()).unwrap().as_uuid(), id);
        for bad in ["not-a-uuid", "", "1", "../etc", &format!("{id}x")] {
            let error = session_id(bad).unwrap_err();
            assert_eq!(error.code(), ApiError::SessionNotFound.code(), "{bad}");
            assert_eq!(error.status(), axum::http::StatusCode::NOT_FOUND, "{bad}");
        }
    }
}

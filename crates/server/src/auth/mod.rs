//! Who is calling: password hashing, access tokens, the session cookie and the [`AuthUser`]
//! extractor every protected handler takes.

pub mod jwt;
pub mod password;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use domain::{UserId, Username};

use crate::config::parse_origin;
use crate::error::ApiError;
use crate::state::AppState;
use jwt::TokenError;

pub use jwt::{Claims, IssuedToken, JwtKeys};
pub use password::PasswordHasher;

/// The name of the cookie that carries the access token.
pub const COOKIE_NAME: &str = "access_token";

/// The authenticated, not-blocked user making the request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    pub username: Username,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let (token, via_cookie) = match bearer_token(parts) {
            Some(token) => (token, false),
            None => (cookie_token(parts).ok_or(ApiError::NotAuthenticated)?, true),
        };
        let claims = state.jwt.verify(&token).map_err(|e| match e {
            TokenError::Expired => ApiError::TokenExpired,
            TokenError::Invalid => ApiError::NotAuthenticated,
        })?;
        // A cookie is sent by the browser whoever wrote the page; a bearer header is not.
        if via_cookie
            && changes_state(&parts.method)
            && !origin_allowed(parts, &state.config.allowed_origins)
        {
            return Err(ApiError::OriginNotAllowed);
        }
        // Checked on every request so that blocking (or removing) an account takes effect at once.
        let user = state
            .store
            .user(claims.sub)
            .await?
            .ok_or(ApiError::NotAuthenticated)?;
        if user.is_blocked {
            return Err(ApiError::AccountBlocked);
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        let auth = AuthUser {
            id: user.id,
            username: user.username,
        };
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn cookie_token(parts: &Parts) -> Option<String> {
    CookieJar::from_headers(&parts.headers)
        .get(COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty())
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request's Origin (or, failing that, its Referer's origin) must be this server itself or
/// one of `ALLOWED_ORIGINS`. A request with neither is refused.
pub(crate) fn origin_allowed(parts: &Parts, allowed: &[String]) -> bool {
    let header_text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = match header_text(header::ORIGIN) {
        Some(origin) => parse_origin(origin).ok(),
        None => header_text(header::REFERER).and_then(referer_origin),
    };
    let Some(origin) = origin else { return false };
    let same_server = match (origin.split_once("://"), header_text(header::HOST)) {
        (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    };
    same_server || allowed.iter().any(|a| *a == origin)
}

fn referer_origin(referer: &str) -> Option<String> {
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    parse_origin(&format!("{scheme}://{authority}")).ok()
}

/// The `Set-Cookie` value carrying a freshly issued token; it expires with the token.
pub fn session_cookie(issued: &IssuedToken, secure: bool) -> String {
    Cookie::build((COOKIE_NAME, issued.token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            issued.lifetime.as_secs() as i64
        ))
        .build()
        .to_string()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    Cookie::build((COOKIE_NAME, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&'static str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder()
            .method("POST")
            .uri("/api/v1/auth/logout");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn same_server_and_listed_origins_pass() {
        let allowed = vec!["https://counsel.example.edu".to_owned()];
        assert!(origin_allowed(
            &parts(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://127.0.0.1:8000")
            ]),
            &allowed
        ));
        assert!(origin_allowed(
            &parts(&[
                ("host", "api.internal"),
                ("origin", "https://Counsel.Example.edu")
            ]),
            &allowed
        ));
        assert!(origin_allowed(
            &parts(&[
                ("host", "api.internal"),
                ("referer", "https://counsel.example.edu/history?p=2")
            ]),
            &allowed
        ));
    }

    #[test]
    fn foreign_null_and_missing_origins_fail() {
        let allowed = vec!["https://counsel.example.edu".to_owned()];
        assert!(!origin_allowed(
            &parts(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "https://evil.example")
            ]),
            &allowed
        ));
        assert!(!origin_allowed(
            &parts(&[("host", "127.0.0.1:8000"), ("origin", "null")]),
            &allowed
        ));
        assert!(!origin_allowed(
            &parts(&[("host", "127.0.0.1:8000")]),
            &allowed
        ));
        assert!(!origin_allowed(
            &parts(&[
                ("host", "127.0.0.1:8000"),
                ("referer", "https://counsel.example.edu.evil.example/")
            ]),
            &allowed
        ));
    }
}

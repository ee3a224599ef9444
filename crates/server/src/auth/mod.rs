//! Who is calling: password hashing, access tokens, the session cookie and the [`AuthUser`]
//! extractor every protected handler takes.

pub mod jwt;
pub mod password;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use domain::{Role, UserId, Username};

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
    /// Read from the database on every request (never from the token), so a demotion takes
    /// effect at once.
    pub role: Role,
    /// The token epoch the request's token was minted under (the account's current one).
    pub token_epoch: i64,
}

/// How often an open WebSocket re-reads its account (see [`until_revoked`]): a block, a sign-out
/// or a demotion closes it within about this long.
pub const ACCOUNT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Why an account no longer honours a credential it handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The account is blocked.
    Blocked,
    /// The credential's token epoch is past (signed out, blocked and unblocked, a new password),
    /// or the account is gone.
    Revoked,
    /// Staff access was asked for and the account is no longer staff.
    NotStaff,
}

impl Revocation {
    /// The reason an open WebSocket is closed with (no account details in it).
    pub fn close_reason(self) -> &'static str {
        match self {
            Revocation::Blocked => "account blocked",
            Revocation::Revoked => "signed out",
            Revocation::NotStaff => "staff access withdrawn",
        }
    }
}

/// The one check behind every credential this server hands out — access tokens, room tokens and
/// open WebSockets: whether `user` (as read from the database now; `None` when it is gone) still
/// honours a credential minted under `epoch`, and, with `staff`, still has staff access.
pub fn standing(user: Option<&store::User>, epoch: i64, staff: bool) -> Result<(), Revocation> {
    let Some(user) = user else {
        return Err(Revocation::Revoked);
    };
    if user.is_blocked {
        Err(Revocation::Blocked)
    } else if user.token_epoch != epoch {
        Err(Revocation::Revoked)
    } else if staff && !user.role.is_staff() {
        Err(Revocation::NotStaff)
    } else {
        Ok(())
    }
}

/// Resolves once the account no longer honours a credential minted under `epoch` (see
/// [`standing`]), reading it every [`ACCOUNT_RECHECK`]. A database error counts as no change:
/// a blip does not cut a student off their call's transcript or staff off their alerts.
pub async fn until_revoked(
    store: &store::Store,
    user: UserId,
    epoch: i64,
    staff: bool,
) -> Revocation {
    let mut recheck = tokio::time::interval(ACCOUNT_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        recheck.tick().await;
        if let Ok(account) = store.user(user).await {
            if let Err(why) = standing(account.as_ref(), epoch, staff) {
                return why;
            }
        }
    }
}

/// A signed-in staff member. Every other caller (anonymous, a student, a blocked or demoted
/// account, an expired token) is answered exactly like a route that does not exist, so staff
/// routes cannot even be discovered.
#[derive(Debug, Clone)]
pub struct StaffUser(pub AuthUser);

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match AuthUser::from_request_parts(parts, state).await {
            Ok(user) if user.role.is_staff() => Ok(StaffUser(user)),
            // The store being down is not a secret, and hiding it would page nobody.
            Err(ApiError::Unavailable) => Err(ApiError::Unavailable),
            _ => Err(ApiError::RouteNotFound),
        }
    }
}

/// Paths only staff may reach, whatever the method: `/api/v1/staff/…`, `/api/staff/…` and
/// `/ws/staff/…`.
pub fn is_staff_path(path: &str) -> bool {
    ["/api/v1/staff", "/api/staff", "/ws/staff"]
        .iter()
        .any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Router-wide gate: a request under a staff path from anyone but staff gets the unknown
/// route's 404 before routing, so a wrong method (405) or a WebSocket handshake cannot reveal
/// that the route exists either. Handlers still take [`StaffUser`] (it is cached by then).
pub async fn staff_gate(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !is_staff_path(request.uri().path()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    if parts.uri.path().starts_with("/ws/") {
        accept_query_token(&mut parts);
    }
    match StaffUser::from_request_parts(&mut parts, &state).await {
        Ok(_) => {
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(error) => error.into_response(),
    }
}

/// WebSocket clients cannot set headers: `?token=<access token>` is taken as a bearer token
/// (and checked exactly like one). An `Authorization` header already present wins.
pub fn accept_query_token(parts: &mut Parts) {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let token = parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
    });
    if let Some(value) = token
        .filter(|t| !t.is_empty())
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        parts.headers.insert(header::AUTHORIZATION, value);
    }
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
        let (token, via_cookie) = match bearer_token(&parts.headers) {
            Some(token) => (token.to_owned(), false),
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
        // Checked on every request so that blocking, signing out (a revoked token gets the
        // answer any invalid token gets) or removing an account takes effect at once.
        let user = state.store.user(claims.sub).await?;
        standing(user.as_ref(), claims.epoch, false).map_err(|why| match why {
            Revocation::Blocked => ApiError::AccountBlocked,
            Revocation::Revoked | Revocation::NotStaff => ApiError::NotAuthenticated,
        })?;
        let user = user.ok_or(ApiError::NotAuthenticated)?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        let auth = AuthUser {
            id: user.id,
            username: user.username,
            role: user.role,
            token_epoch: user.token_epoch,
        };
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

/// The token of an `Authorization: Bearer <token>` header: the one parser of bearer credentials.
/// The scheme is case-insensitive (RFC 7235 §2.1: `bearer`, `BEARER`) and may be followed by more
/// than one space; anything else (another scheme, no token) is no bearer token.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
    same_server || allowed.contains(&origin)
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

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer_token(&headers).map(str::to_owned)
        };
        for value in [
            "Bearer abc.def",
            "bearer abc.def",
            "BEARER  abc.def ",
            "BeArEr abc.def",
        ] {
            assert_eq!(token(value).as_deref(), Some("abc.def"), "{value}");
        }
        for value in [
            "Basic abc.def",
            "Bearer",
            "Bearer   ",
            "Bearerabc.def",
            "Token abc",
        ] {
            assert_eq!(token(value), None, "{value}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

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
    fn standing_refuses_blocked_stale_missing_and_demoted_accounts() {
        let user = store::User {
            id: UserId::new(),
            username: Username::parse(r"\COLLEGE\jdoe").unwrap(),
            role: Role::Staff,
            is_blocked: false,
            token_epoch: 3,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        assert_eq!(standing(Some(&user), 3, true), Ok(()));
        assert_eq!(standing(Some(&user), 2, false), Err(Revocation::Revoked));
        assert_eq!(standing(Some(&user), 4, false), Err(Revocation::Revoked));
        assert_eq!(standing(None, 3, false), Err(Revocation::Revoked));
        let blocked = store::User {
            is_blocked: true,
            ..user.clone()
        };
        assert_eq!(standing(Some(&blocked), 3, false), Err(Revocation::Blocked));
        let student = store::User {
            role: Role::Student,
            ..user
        };
        assert_eq!(standing(Some(&student), 3, false), Ok(()));
        assert_eq!(standing(Some(&student), 3, true), Err(Revocation::NotStaff));
    }

    #[test]
    fn staff_paths_are_recognised_exactly() {
        for path in [
            "/api/v1/staff/crisis-events",
            "/api/staff/crisis-events/x/review",
            "/ws/staff/crisis",
            "/api/v1/staff",
        ] {
            assert!(is_staff_path(path), "{path}");
        }
        for path in [
            "/api/v1/staffing",
            "/api/v1/sessions",
            "/ws/sessions/x/transcript",
            "/",
        ] {
            assert!(!is_staff_path(path), "{path}");
        }
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

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use domain::Username;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{cleared_cookie, session_cookie, AuthUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ClientInfo, Json};
use crate::state::AppState;

/// Passwords longer than this are refused before hashing (bcrypt reads only 72 bytes anyway).
const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Institutional account name, `\DOMAIN\user`.
    #[schema(example = "\\COLLEGE\\jdoe")]
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = uuid::Uuid)]
    pub id: domain::UserId,
    #[schema(value_type = String, example = "\\COLLEGE\\jdoe")]
    pub username: Username,
    /// `student`, or `staff` for counselors on duty (who also see the staff page).
    #[schema(value_type = String, example = "student")]
    pub role: domain::Role,
    pub is_blocked: bool,
    pub created_at: DateTime<Utc>,
}

impl From<store::User> for UserView {
    fn from(user: store::User) -> Self {
        UserView {
            id: user.id,
            username: user.username,
            role: user.role,
            is_blocked: user.is_blocked,
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    pub user: UserView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutResponse {
    pub detail: &'static str,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Sign in with an institutional account; sets the `access_token` cookie.
#[utoipa::path(post, path = "/auth/login", tag = "Authentication", security(),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in. Also sets `access_token` (HttpOnly; SameSite=Strict; Secure outside local development).", body = LoginResponse),
        (status = 401, description = "Invalid username or password (AUTH_001)", body = ErrorBody),
        (status = 403, description = "Account blocked (AUTH_002)", body = ErrorBody),
        (status = 422, description = "Username not of the form \\DOMAIN\\user (VALIDATION_001)", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or for this account (RATE_LIMIT_001)", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(request): Json<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    state.rate_limits.auth.check(client.ip).await?;
    let username = Username::parse(&request.username)
        .map_err(|e| ApiError::validation("username", e.to_string()))?;
    state
        .rate_limits
        .auth_account
        .check(username.clone())
        .await?;
    if request.password.is_empty() {
        return Err(ApiError::validation("password", "is required"));
    }
    if request.password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::validation(
            "password",
            format!("must be at most {MAX_PASSWORD_LEN} bytes"),
        ));
    }

    let credentials = state.store.user_credentials(&username).await?;
    // Unknown users are verified against a dummy hash: same work, same answer, same time.
    let password_ok = state
        .passwords
        .verify(
            &request.password,
            credentials.as_ref().map(|c| c.password_hash.as_str()),
        )
        .await;
    let user = match credentials {
        Some(credentials) if password_ok => credentials.user,
        _ => {
            tracing::info!("login refused: invalid credentials");
            return Err(ApiError::InvalidCredentials);
        }
    };
    if user.is_blocked {
        tracing::info!(user_id = %user.id, "login refused: account blocked");
        return Err(ApiError::AccountBlocked);
    }

    let issued = state
        .jwt
        .issue(user.id, &user.username, user.token_epoch)
        .map_err(ApiError::internal)?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    tracing::info!("login succeeded");
    let cookie = session_cookie(&issued, state.config.cookie_secure());
    Ok((
        [(SET_COOKIE, cookie)],
        Json(LoginResponse {
            access_token: issued.token,
            token_type: "bearer",
            user: user.into(),
        }),
    ))
}

/// Sign out: revokes the access token the request carries (cookie or bearer) together with
/// every other token of the account, then clears the `access_token` cookie. Without a valid token
/// it only clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "Authentication", security(),
    responses(
        (status = 200, description = "Signed out: every token of the account is revoked (later requests with one get 401 AUTH_004, its open WebSockets close) and the cookie is cleared (`access_token=; Max-Age=0`)", body = LogoutResponse),
        (status = 503, description = "The database is unavailable: nothing was revoked, sign out again (SERVICE_UNAVAILABLE)", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    // A missing, invalid, expired or already revoked token has nothing left to revoke; a cookie
    // sent from a foreign page is refused by the extractor and revokes nothing either.
    if let Ok(user) = user {
        state.store.revoke_tokens(user.id).await?;
        tracing::info!("signed out: tokens revoked");
    }
    Ok((
        [(SET_COOKIE, cleared_cookie(state.config.cookie_secure()))],
        Json(LogoutResponse {
            detail: "Signed out",
        }),
    ))
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "Authentication",
    responses(
        (status = 200, description = "The signed-in user", body = UserView),
        (status = 401, description = "Not signed in (AUTH_004) or token expired (AUTH_003)", body = ErrorBody),
        (status = 403, description = "Account blocked (AUTH_002)", body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserView>, ApiError> {
    state.rate_limits.default.check(user.id).await?;
    let record = state
        .store
        .user(user.id)
        .await?
        .ok_or(ApiError::NotAuthenticated)?;
    Ok(Json(record.into()))
}

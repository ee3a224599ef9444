use crate::error::{Result, StoreError};
use crate::model::{User, UserCredentials};
use crate::rows::{to_micros, CredentialsRow, UserRow, USER_COLUMNS};
use crate::store::{with_pool, Store};
use chrono::Utc;
use domain::{Role, UserId, Username};
use sqlx::AssertSqlSafe;

impl Store {
    /// Creates a student account. `password_hash` is an already-computed hash (bcrypt), never a
    /// password. A taken username gives [`StoreError::Conflict`].
    pub async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
        blocked: bool,
    ) -> Result<User> {
        self.create_user_with_role(username, password_hash, blocked, Role::Student)
            .await
    }

    /// Creates an account with the given role; otherwise as [`Store::create_user`].
    pub async fn create_user_with_role(
        &self,
        username: &Username,
        password_hash: &str,
        blocked: bool,
        role: Role,
    ) -> Result<User> {
        if password_hash.is_empty() {
            return Err(StoreError::Invalid(
                "password hash must not be empty".to_owned(),
            ));
        }
        let id = UserId::new();
        let now = to_micros(Utc::now());
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, role, is_blocked, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(*id.as_uuid())
            .bind(username.as_str())
            .bind(password_hash)
            .bind(role.as_str())
            .bind(blocked)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(User {
            id,
            username: username.clone(),
            role,
            is_blocked: blocked,
            token_epoch: 0,
            created_at: now,
            updated_at: now,
        })
    }

    /// The account and its password hash, for signing in.
    pub async fn user_credentials(&self, username: &Username) -> Result<Option<UserCredentials>> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1");
        let row: Option<CredentialsRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(username.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(UserCredentials::try_from).transpose()
    }

    pub async fn user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(*id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(User::try_from).transpose()
    }

    /// Blocks or unblocks an account. Blocking also revokes every token the account holds (its
    /// token epoch moves on); unblocking revokes nothing. Returns `false` when no such user exists.
    pub async fn set_blocked(&self, username: &Username, blocked: bool) -> Result<bool> {
        let now = to_micros(Utc::now());
        let affected = with_pool!(self, writer, |pool| {
            sqlx::query(
                "UPDATE users SET is_blocked = $1, \
                 token_epoch = token_epoch + (CASE WHEN $1 THEN 1 ELSE 0 END), updated_at = $2 \
                 WHERE username = $3",
            )
            .bind(blocked)
            .bind(now)
            .bind(username.as_str())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Revokes every access token of an account (signing out): its token epoch moves on, and
    /// tokens minted under the earlier one are refused. Returns `false` when no such user exists.
    pub async fn revoke_tokens(&self, id: UserId) -> Result<bool> {
        let now = to_micros(Utc::now());
        let affected = with_pool!(self, writer, |pool| {
            sqlx::query(
                "UPDATE users SET token_epoch = token_epoch + 1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(*id.as_uuid())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Makes an account a student or staff member; takes effect on its next request. Returns
    /// `false` when no such user exists.
    pub async fn set_role(&self, username: &Username, role: Role) -> Result<bool> {
        let now = to_micros(Utc::now());
        let affected = with_pool!(self, writer, |pool| {
            sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE username = $3")
                .bind(role.as_str())
                .bind(now)
                .bind(username.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Replaces an account's password hash and revokes the tokens signed in with the old one.
    /// Returns `false` when no such user exists.
    pub async fn set_password_hash(
        &self,
        username: &Username,
        password_hash: &str,
    ) -> Result<bool> {
        if password_hash.is_empty() {
            return Err(StoreError::Invalid(
                "password hash must not be empty".to_owned(),
            ));
        }
        let now = to_micros(Utc::now());
        let affected = with_pool!(self, writer, |pool| {
            sqlx::query(
                "UPDATE users SET password_hash = $1, token_epoch = token_epoch + 1, updated_at = $2 \
                 WHERE username = $3",
            )
            .bind(password_hash)
            .bind(now)
            .bind(username.as_str())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Whether some staff account may sign in (is not blocked): then staff on duty are alerted
    /// to a crisis as it happens, and the notice students accept says so.
    pub async fn has_active_staff(&self) -> Result<bool> {
        let found: Option<i64> = with_pool!(self, reader, |pool| {
            sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM users WHERE role = $1 AND is_blocked = FALSE LIMIT 1",
            )
            .bind(Role::Staff.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Every account, by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows: Vec<UserRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        rows.into_iter().map(User::try_from).collect()
    }
}

//! Test databases: a fresh SQLite file, and a fresh PostgreSQL database on the server at
//! `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test), dropped afterwards.

#![allow(dead_code)]

use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use std::path::PathBuf;
use store::{Store, TranscriptCipher};
use uuid::Uuid;

pub const KEY: [u8; 32] = [0x42; 32];

pub struct TestDb {
    pub store: Store,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

/// Runs `$body` with `$conn` a fresh `&mut` connection straight to the database past the store,
/// SQLite's or PostgreSQL's: the body is written once and compiled for each driver.
macro_rules! on_raw_connection {
    ($raw:expr, |$conn:ident| $body:expr) => {
        match $raw {
            Raw::Sqlite(path) => {
                let mut connection =
                    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                let $conn = &mut connection;
                $body
            }
            Raw::Postgres { url, .. } => {
                let mut connection = PgConnection::connect(url).await.unwrap();
                let $conn = &mut connection;
                $body
            }
        }
    };
}

enum Raw {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        url: String,
        name: String,
    },
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counsel.db");
    let store = Store::connect(
        &format!("sqlite://{}", path.display()),
        TranscriptCipher::new(KEY),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    TestDb {
        store,
        raw: Raw::Sqlite(path),
        _dir: Some(dir),
    }
}

/// `None` (after a loud SKIPPED line) when no PostgreSQL server answers.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let admin_url = postgres_admin_url();
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!(
                "\n*** SKIPPED {test} on PostgreSQL: cannot connect to {admin_url}: {err} ***\n"
            );
            return None;
        }
    };
    let name = format!("store_test_{}", Uuid::new_v4().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("TEST_DATABASE_URL must name a database"),
    };
    let store = Store::connect(&url, TranscriptCipher::new(KEY))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(TestDb {
        store,
        raw: Raw::Postgres {
            admin_url,
            url,
            name,
        },
        _dir: None,
    })
}

impl TestDb {
    /// A second store on the same database, with its own cipher.
    pub async fn reopen(&self, cipher: TranscriptCipher) -> Store {
        let url = match &self.raw {
            Raw::Sqlite(path) => format!("sqlite://{}", path.display()),
            Raw::Postgres { url, .. } => url.clone(),
        };
        Store::connect(&url, cipher).await.unwrap()
    }

    /// Every stored `text_encrypted` value, read straight from the database.
    pub async fn raw_transcript_columns(&self) -> Vec<Vec<u8>> {
        self.raw_bytes("SELECT text_encrypted FROM transcript_messages")
            .await
    }

    /// Every stored `rating_comment_encrypted` value, read straight from the database.
    pub async fn raw_rating_comments(&self) -> Vec<Vec<u8>> {
        self.raw_bytes(
            "SELECT rating_comment_encrypted FROM sessions WHERE rating_comment_encrypted IS NOT NULL",
        )
        .await
    }

    /// The one column `sql` selects, read straight from the database past the store.
    async fn raw_bytes(&self, sql: &'static str) -> Vec<Vec<u8>> {
        on_raw_connection!(&self.raw, |conn| sqlx::query_scalar(sql)
            .fetch_all(conn)
            .await
            .unwrap())
    }

    /// Sets a session's rating columns straight in the database, so only its constraints decide.
    pub async fn raw_set_rating(
        &self,
        session: domain::SessionId,
        rating: Option<i16>,
        rated: bool,
    ) -> Result<(), String> {
        let sql = "UPDATE sessions SET rating = $1, rated_at = $2 WHERE id = $3";
        let rated_at = rated.then(chrono::Utc::now);
        let result = on_raw_connection!(&self.raw, |conn| sqlx::query(sql)
            .bind(rating)
            .bind(rated_at)
            .bind(*session.as_uuid())
            .execute(conn)
            .await
            .map(drop));
        result.map_err(|e| e.to_string())
    }

    /// The bytes of the SQLite database file and its write-ahead log; empty for PostgreSQL.
    pub fn raw_sqlite_files(&self) -> Vec<u8> {
        match &self.raw {
            Raw::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap();
                if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
                    bytes.extend(wal);
                }
                bytes
            }
            Raw::Postgres { .. } => Vec::new(),
        }
    }

    /// Inserts a user row directly, bypassing the store's own checks, so only the database's
    /// constraints decide.
    pub async fn raw_insert_user(&self, username: &str) -> Result<(), String> {
        let sql =
            "INSERT INTO users (id, username, password_hash, is_blocked, created_at, updated_at) \
                   VALUES ($1, $2, 'hash', FALSE, $3, $3)";
        let now = chrono::Utc::now();
        let result = on_raw_connection!(&self.raw, |conn| sqlx::query(sql)
            .bind(Uuid::new_v4())
            .bind(username)
            .bind(now)
            .execute(conn)
            .await
            .map(drop));
        result.map_err(|e| e.to_string())
    }

    /// Records a session with the columns every schema version has (for a database migrated
    /// down to an older schema, which the store's own insert no longer fits).
    pub async fn raw_insert_session(
        &self,
        user: domain::UserId,
        category: domain::Category,
        mode: domain::SessionMode,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> domain::SessionId {
        let id = domain::SessionId::new();
        let sql = "INSERT INTO sessions (id, user_id, counselor_category, mode, room_name, started_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $6)";
        on_raw_connection!(&self.raw, |conn| sqlx::query(sql)
            .bind(*id.as_uuid())
            .bind(*user.as_uuid())
            .bind(category.name())
            .bind(mode.as_str())
            .bind(format!("counsel-{}-{id}", mode.as_str()))
            .bind(started_at)
            .execute(conn)
            .await
            .map(drop)
            .unwrap());
        id
    }

    /// Sets a user's role straight in the database, so only its constraints decide.
    pub async fn raw_set_role(
        &self,
        username: &domain::Username,
        role: &str,
    ) -> Result<(), String> {
        let sql = "UPDATE users SET role = $1 WHERE username = $2";
        let result = on_raw_connection!(&self.raw, |conn| sqlx::query(sql)
            .bind(role)
            .bind(username.as_str())
            .execute(conn)
            .await
            .map(drop));
        result.map_err(|e| e.to_string())
    }

    /// Rows in a table, counted directly.
    pub async fn raw_count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        on_raw_connection!(&self.raw, |conn| sqlx::query_scalar(sqlx::AssertSqlSafe(
            sql
        ))
        .fetch_one(conn)
        .await
        .unwrap())
    }

    /// Runs one statement straight on the database (as an operator with a SQL prompt would),
    /// bypassing the store; the SQL must read the same on both databases.
    pub async fn raw_execute(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        on_raw_connection!(&self.raw, |conn| conn
            .execute(sqlx::raw_sql(sql))
            .await
            .unwrap()
            .rows_affected())
    }

    /// Names of the tables that exist.
    pub async fn raw_tables(&self) -> Vec<String> {
        match &self.raw {
            Raw::Sqlite(path) => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap()
            }
            Raw::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(
                    "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Raw::Postgres {
            admin_url, name, ..
        } = &self.raw
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop cannot await; a short-lived runtime on its own thread removes the database,
            // also when the test failed.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// Runs one test body against SQLite and against PostgreSQL, as two `#[tokio::test]`s.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::sqlite().await;
                super::$name(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::postgres(stringify!($name)).await {
                    super::$name(&db).await;
                    db.store.close().await;
                }
            }
        }
    };
}

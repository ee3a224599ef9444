//! The test harness: start the real application on a random port, against a fresh SQLite file or
//! a fresh PostgreSQL database, and talk to it over real HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};
use domain::{Category, SessionId, SessionMode, Speaker, TranscriptText, UserId, Username};
use reqwest::{Method, RequestBuilder, Response};
use server::{AppState, Application, Config};
use sqlx::{Connection, PgConnection};
use store::{AuditRecord, AuditResource};

pub const PASSWORD: &str = "Corr3ct horse \"battery\" \\ staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL server for tests is; each test gets its own database on it.
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    pub data_dir: tempfile::TempDir,
    /// What the app was started with (the same database and data directory).
    pub config: Config,
    postgres_db: Option<String>,
}

/// A fresh app with rate limits off (tests of the limits turn them on).
/// `create-room` for a voice call with the Health counselor, sent to the node at `base`.
/// Signs `username` (whose password is [`PASSWORD`]) in at `base`, another process or a proxy
/// in front of several, and returns the access token.
pub async fn sign_in_at(client: &reqwest::Client, base: &str, username: &str) -> String {
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("signed in: {login}"))
        .to_owned()
}

/// Reads the notice at `base` and accepts its version for the student signed in with `token`.
pub async fn accept_notice_at(client: &reqwest::Client, base: &str, token: &str) {
    let notice: serde_json::Value = client
        .get(format!("{base}/api/v1/notice"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let accepted = client
        .post(format!("{base}/api/v1/notice/acceptance"))
        .bearer_auth(token)
        .json(&serde_json::json!({"version": notice["version"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200, "the notice is accepted");
}

/// A child process killed (with SIGKILL) when dropped, so a failing test leaves nothing running.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on at the moment, for a process a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn create_room(client: &reqwest::Client, base: &str, token: &str) -> Response {
    client
        .post(format!("{base}/api/v1/voice/create-room"))
        .bearer_auth(token)
        .json(&serde_json::json!({"counselor_category": "Health"}))
        .send()
        .await
        .unwrap()
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

/// A fresh app with some configuration variables set. `None` (after a loud line) when the
/// backend is PostgreSQL and no server answers.
pub async fn spawn_app_with(backend: Backend, settings: &[(&str, &str)]) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("BCRYPT_COST_FOR_TESTS", "4"),
        ("RATE_LIMIT_ENABLED", "false"),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATA_DIR".into(), data_dir.path().display().to_string());

    let mut postgres_db = None;
    match backend {
        Backend::Sqlite => {
            vars.insert(
                "DATABASE_URL".into(),
                format!("sqlite://{}", data_dir.path().join("counsel.db").display()),
            );
        }
        Backend::Postgres => {
            let name = format!("counsel_test_{}", uuid::Uuid::new_v4().simple());
            let admin = postgres_admin_url();
            let mut conn = match PgConnection::connect(&admin).await {
                Ok(conn) => conn,
                Err(error) => {
                    skipped_postgres(&error.to_string());
                    return None;
                }
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map(|(base, _)| base)
                .unwrap_or(&admin);
            vars.insert("DATABASE_URL".into(), format!("{base}/{name}"));
            postgres_db = Some(name);
        }
    }
    for (key, value) in settings {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }

    let config = Config::from_vars(&vars).expect("test configuration");
    let app = Application::build(config.clone())
        .await
        .expect("application starts");
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(TestApp {
        address,
        client,
        state,
        backend,
        data_dir,
        config,
        postgres_db,
    })
}

fn skipped_postgres(why: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::SeqCst) {
        eprintln!(
            "\n==== SKIPPED PostgreSQL: no server at {} ({why}) ====\n",
            postgres_admin_url()
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_db.take() {
            // Drop runs inside the test's runtime; a separate thread gets its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&postgres_admin_url()).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A user made for a test, with the password [`PASSWORD`].
pub struct TestUser {
    pub id: UserId,
    pub username: Username,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// GET `path` as `token` and read its JSON body, whatever the status (tests of failures use
    /// [`get`](Self::get) and [`error_of`]).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.get(path, token).await.json().await.unwrap()
    }

    /// Signs out with `token` (which revokes every token of its account).
    /// Accepts the first-visit notice as it is worded now (a student must before a call).
    pub async fn accept_notice(&self, token: &str) {
        accept_notice_at(&self.client, &self.address, token).await;
    }

    pub async fn logout(&self, token: &str) -> Response {
        self.request(Method::POST, "/api/v1/auth/logout")
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The audit trail of one session, oldest first.
    pub async fn audit_of(&self, session: SessionId) -> Vec<AuditRecord> {
        self.state
            .store
            .audit_log_for_resource(AuditResource::Session, *session.as_uuid())
            .await
            .unwrap()
    }

    /// The stored (encrypted) transcript rows of a session, read straight from the database.
    pub async fn stored_transcript_rows(&self, session: SessionId) -> Vec<Vec<u8>> {
        let sql = "SELECT text_encrypted FROM transcript_messages WHERE session_id = $1 ORDER BY sequence_number";
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.database_url())
                    .await
                    .unwrap();
                sqlx::query_scalar(sql)
                    .bind(*session.as_uuid())
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.database_url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(*session.as_uuid())
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
        }
    }

    /// Builds the application again on the same database and data directory, as a restarted
    /// server would (on another port); it is not serving yet.
    pub async fn build_again(&self) -> Application {
        let mut config = self.config.clone();
        config.port = 0;
        Application::build(config)
            .await
            .expect("application starts again")
    }

    /// Accepts the notice and opens a voice room; returns (session id, room token).
    pub async fn open_room(&self, token: &str) -> (String, String) {
        self.accept_notice(token).await;
        let room: serde_json::Value = create_room(&self.client, &self.address, token)
            .await
            .json()
            .await
            .unwrap();
        (
            room["session_id"]
                .as_str()
                .expect("a room was opened")
                .to_owned(),
            room["user_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A second node on the same database (and secrets), running until the test ends: its
    /// address (`http://…`) and its state.
    pub async fn another_node(&self) -> (String, AppState) {
        let node = self.build_again().await;
        let address = format!("http://{}", node.local_addr());
        let state = node.state().clone();
        tokio::spawn(node.run_until(std::future::pending()));
        (address, state)
    }

    /// An open session of `user`'s whose call runs on `node`, as create-room records it.
    pub async fn open_session_on(&self, user: UserId, node: domain::NodeId) -> SessionId {
        let id = SessionId::new();
        let new = store::NewSession {
            id,
            user_id: user,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: format!("counsel-voice-{id}"),
            started_at: Utc::now(),
            node: Some(node),
        };
        self.state.store.create_session(new).await.unwrap();
        id
    }

    /// The stored record of a session (given as the API spells its id).
    pub async fn stored_session(&self, id: &str) -> store::SessionRecord {
        let id: SessionId = id.parse().expect("a session id");
        self.state
            .store
            .session(id)
            .await
            .unwrap()
            .expect("the session is stored")
    }

    /// `counsel serve` on `port`, sharing this app's database, data directory (its secrets and
    /// keys) and the offline models; a caller adds its own settings.
    pub fn serve_command(&self, port: u16) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_counsel"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", self.database_url())
            .env("DATA_DIR", self.data_dir.path())
            .env("MODELS_DIR", offline::testing::models_dir())
            .env("MODELS_AUTO_INSTALL", "false")
            .env("BCRYPT_COST_FOR_TESTS", "4")
            .env("LOG_LEVEL", "warn");
        command
    }

    /// The app's database, for another process to share.
    pub fn database_url(&self) -> String {
        if self.backend == Backend::Sqlite {
            return format!(
                "sqlite://{}",
                self.data_dir.path().join("counsel.db").display()
            );
        }
        let admin = postgres_admin_url();
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .unwrap_or(admin);
        format!("{base}/{}", self.postgres_db.as_deref().unwrap_or_default())
    }

    /// PostgreSQL only: removes the app's database from under it.
    pub async fn drop_database_now(&self) {
        let name = self.postgres_db.as_ref().expect("a PostgreSQL test app");
        let mut conn = PgConnection::connect(&postgres_admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    pub async fn add_user(&self, name: &str, blocked: bool) -> TestUser {
        let username = Username::parse(name).unwrap();
        let user = server::cli::add_user(
            &self.state.store,
            &self.state.passwords,
            &username,
            PASSWORD,
            blocked,
        )
        .await
        .unwrap();
        TestUser {
            id: user.id,
            username,
        }
    }

    /// A staff member (counselor on duty), with the password [`PASSWORD`].
    pub async fn add_staff(&self, name: &str) -> TestUser {
        let username = Username::parse(name).unwrap();
        let user = server::cli::add_user_with_role(
            &self.state.store,
            &self.state.passwords,
            &username,
            PASSWORD,
            false,
            domain::Role::Staff,
        )
        .await
        .unwrap();
        TestUser {
            id: user.id,
            username,
        }
    }

    /// A session of `student` in which they said `said` (line 1, after the counselor's
    /// greeting), flagged by the safety check at `level`. Returns the stored event.
    pub async fn flag(
        &self,
        student: UserId,
        started_at: DateTime<Utc>,
        said: &str,
        level: domain::CrisisLevel,
    ) -> store::CrisisEventRecord {
        let session = self
            .add_session(
                student,
                Category::Health,
                SessionMode::Voice,
                started_at,
                &[
                    (Speaker::Counselor, "Hi, I'm here to listen."),
                    (Speaker::Student, said),
                ],
            )
            .await;
        self.state
            .store
            .record_crisis_event(store::NewCrisisEvent {
                session_id: session,
                sequence: 1,
                level,
                signal: domain::CrisisSignal::SuicidalIdeation,
                decided_by: Some(domain::DecidedBy::Rule),
            })
            .await
            .unwrap()
    }

    /// `ws://…` for a path on this app.
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.address.replacen("http://", "ws://", 1), path)
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.request(Method::POST, "/api/v1/auth/login")
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Signs in and returns the access token.
    pub async fn token(&self, user: &TestUser) -> String {
        let response = self.login(user.username.as_str(), PASSWORD).await;
        assert_eq!(response.status(), 200, "login of {}", user.username);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A finished session with the given lines, one every ten seconds from the start.
    pub async fn add_session(
        &self,
        user: UserId,
        category: Category,
        mode: SessionMode,
        started_at: DateTime<Utc>,
        lines: &[(Speaker, &str)],
    ) -> SessionId {
        let store = &self.state.store;
        let session = SessionId::new();
        let new = store::NewSession {
            id: session,
            user_id: user,
            category,
            mode,
            room_name: format!("test-{session}"),
            started_at,
            node: None,
        };
        store.create_session(new).await.unwrap();
        for (i, (speaker, text)) in lines.iter().enumerate() {
            let message = store::NewMessage {
                sequence: i as u32,
                speaker: *speaker,
                text: TranscriptText::new(*text),
                is_final: true,
                timestamp: started_at + Duration::seconds(10 * i as i64 + 5),
            };
            store.append_message(session, message).await.unwrap();
        }
        store
            .end_session(
                session,
                started_at + Duration::seconds(10 * lines.len() as i64 + 30),
                None,
            )
            .await
            .unwrap();
        session
    }
}

/// Cloud speech, language and voice services at addresses nothing listens on: rooms can be
/// opened without the offline models.
pub const CLOUD_SERVICES: [(&str, &str); 4] = [
    ("DEEPGRAM_API_KEY", "test-key"),
    ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ("CARTESIA_API_KEY", "test-key"),
    ("MODELS_AUTO_INSTALL", "false"),
];

/// A fresh app with [`CLOUD_SERVICES`], no offline models, and `extra` settings; `None` when
/// the backend is PostgreSQL and no server answers.
pub async fn spawn_app_with_cloud_services(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let models = tempfile::tempdir().unwrap();
    let models_dir = models.path().display().to_string();
    let mut settings = CLOUD_SERVICES.to_vec();
    settings.push(("MODELS_DIR", &models_dir));
    settings.extend_from_slice(extra);
    spawn_app_with(backend, &settings).await
}

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// The `{detail, code}` of an error response, checking its shape.
pub async fn error_of(response: Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("error bodies are JSON");
    let object = body.as_object().expect("error body is an object");
    assert_eq!(
        object.len(),
        2,
        "error body has exactly detail and code: {body}"
    );
    (
        status,
        body["code"].as_str().unwrap().to_owned(),
        body["detail"].as_str().unwrap().to_owned(),
    )
}

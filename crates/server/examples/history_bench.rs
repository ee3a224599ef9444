//! Session-history benchmark: how fast is `GET /api/v1/sessions` on a large database?
//!
//! Loads 100 000 sessions and 1 000 000 transcript messages (through the store's bulk insert),
//! starts the real server on a random port, and sends history requests from 64 concurrent clients:
//! page 1 unfiltered, and page 50 filtered by counselor and mode, for the student who owns a fifth
//! of the sessions (20 000, so that a filtered page 50 exists); then page 1 for a typical student,
//! one of the 800 others who share the rest (this one has 125).
//!
//! ```sh
//! cargo run --release -p server --example history_bench                  # SQLite and PostgreSQL
//! cargo run --release -p server --example history_bench -- --backend sqlite --requests 5000
//! ```
//!
//! The load generator runs in the same process as the server, so both share the machine's cores.
//! Ends by printing one JSON line with every figure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Parser, ValueEnum};
use domain::{
    Category, ConnectionQuality, SessionId, SessionMode, Speaker, TranscriptText, UserId, Username,
};
use rand::RngExt;
use server::{Application, Config};
use sqlx::{Connection, PgConnection};
use store::{BulkMessage, BulkSession, NewMessage, NewSession};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark GET /api/v1/sessions on a large database")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    backend: Backend,
    /// Sessions to load.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Transcript messages to load (spread evenly over the sessions).
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured requests per scenario (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// PostgreSQL server to create the benchmark database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

const FOCUS_SHARE: usize = 5; // one student owns 1/5 of all sessions
const OTHER_STUDENTS: usize = 800;
const PASSWORD: &str = "benchmark-password";

#[derive(Debug, serde::Serialize)]
struct ScenarioResult {
    backend: &'static str,
    scenario: &'static str,
    path: String,
    requests: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests_per_sec: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results = Vec::new();
    let mut load_seconds = HashMap::new();
    if matches!(args.backend, Backend::Sqlite | Backend::Both) {
        let (secs, mut r) = run_backend(&args, "sqlite").await?;
        load_seconds.insert("sqlite", secs);
        results.append(&mut r);
    }
    if matches!(args.backend, Backend::Postgres | Backend::Both) {
        let (secs, mut r) = run_backend(&args, "postgres").await?;
        load_seconds.insert("postgres", secs);
        results.append(&mut r);
    }
    let target_met = results.iter().all(|r| r.p99_ms < 10.0 && r.errors == 0);
    let summary = serde_json::json!({
        "benchmark": "history",
        "sessions": args.sessions,
        "messages": args.messages,
        "clients": args.clients,
        "load_seconds": load_seconds,
        "target_p99_ms": 10.0,
        "target_met": target_met,
        "results": results,
    });
    println!("{summary}");
    Ok(())
}

async fn run_backend(
    args: &Args,
    backend: &'static str,
) -> anyhow::Result<(f64, Vec<ScenarioResult>)> {
    let data_dir = tempfile::tempdir()?;
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("RATE_LIMIT_ENABLED", "false"),
        ("LOG_LEVEL", "error"),
        ("BCRYPT_COST_FOR_TESTS", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATA_DIR".into(), data_dir.path().display().to_string());
    let mut postgres_db = None;
    if backend == "postgres" {
        let name = format!("counsel_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&args.postgres_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await?;
        let base = args
            .postgres_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&args.postgres_url);
        vars.insert("DATABASE_URL".into(), format!("{base}/{name}"));
        postgres_db = Some(name);
    }

    let result = async {
        let config = Config::from_vars(&vars)?;
        let app = Application::build(config).await?;
        let address = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let server = tokio::spawn(app.run_until_stopped());

        eprintln!("[{backend}] loading {} sessions and {} messages...", args.sessions, args.messages);
        let started = Instant::now();
        let focus = load(&state.store, &state.passwords, args.sessions, args.messages).await?;
        // Statistics for the planners, and on PostgreSQL a vacuum, as after any bulk load.
        state.store.optimize().await?;
        let load_secs = started.elapsed().as_secs_f64();
        eprintln!("[{backend}] loaded in {load_secs:.1} s");

        let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
        let token = login(&client, &address, &focus).await?;
        let typical = login(&client, &address, &Username::parse(r"\BENCH\student1")?).await?;
        let scenarios = [
            ("page 1", "/api/v1/sessions".to_owned(), &token),
            ("filtered page 50", "/api/v1/sessions?category=Health&mode=voice&page=50&per_page=20".to_owned(), &token),
            ("typical student, page 1", "/api/v1/sessions".to_owned(), &typical),
        ];
        let mut results = Vec::new();
        for (scenario, path, token) in scenarios {
            let url = format!("{address}{path}");
            check_page(&client, &url, token).await?;
            hammer(&client, &url, token, args.clients, (args.requests / 10).max(args.clients)).await;
            let (latencies, errors, wall) = hammer(&client, &url, token, args.clients, args.requests).await;
            let r = summarise(backend, scenario, path, latencies, errors, wall);
            eprintln!(
                "[{backend}] {scenario:<24} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  {:>7.0} req/s  ({} errors)",
                r.p50_ms, r.p99_ms, r.max_ms, r.requests_per_sec, r.errors
            );
            results.push(r);
        }
        server.abort();
        state.store.close().await;
        anyhow::Ok((load_secs, results))
    }
    .await;

    if let Some(name) = postgres_db {
        let mut admin = PgConnection::connect(&args.postgres_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
        )))
        .execute(&mut admin)
        .await?;
    }
    result
}

/// Creates the students, sessions and messages; returns the student who owns a fifth of them.
async fn load(
    store: &store::Store,
    passwords: &server::auth::PasswordHasher,
    sessions: usize,
    messages: usize,
) -> anyhow::Result<Username> {
    let hash = passwords
        .hash(PASSWORD)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let focus = Username::parse(r"\BENCH\focus")?;
    let focus_id = store.create_user(&focus, &hash, false).await?.id;
    let mut others = Vec::with_capacity(OTHER_STUDENTS);
    for i in 0..OTHER_STUDENTS {
        others.push(
            store
                .create_user(
                    &Username::parse(&format!(r"\BENCH\student{i}"))?,
                    &hash,
                    false,
                )
                .await?
                .id,
        );
    }

    let mut rng = rand::rng();
    let now = Utc::now();
    let per_session = messages / sessions.max(1);
    let mut extra = messages % sessions.max(1);
    let lines = [
        "I have three exams next week and I can't focus.",
        "Let's break the week into smaller pieces. Which exam comes first?",
        "Statistics on Monday, then chemistry on Wednesday.",
        "Good. What has worked for you when studying statistics before?",
    ];
    const BATCH: usize = 5_000;
    let mut done = 0;
    while done < sessions {
        let count = BATCH.min(sessions - done);
        let mut batch_sessions = Vec::with_capacity(count);
        let mut batch_messages = Vec::with_capacity(count * (per_session + 1));
        for n in done..done + count {
            let user: UserId = if n % FOCUS_SHARE == 0 {
                focus_id
            } else {
                others[n % OTHER_STUDENTS]
            };
            let id = SessionId::new();
            let started_at = now - chrono::Duration::seconds(rng.random_range(3_600..365 * 86_400));
            let minutes = rng.random_range(5..=45);
            batch_sessions.push(BulkSession {
                session: NewSession {
                    id,
                    user_id: user,
                    category: Category::ALL[(n / FOCUS_SHARE) % 6],
                    mode: if (n / FOCUS_SHARE / 6).is_multiple_of(2) {
                        SessionMode::Voice
                    } else {
                        SessionMode::Video
                    },
                    room_name: format!("bench-{id}"),
                    started_at,
                    node: None,
                },
                ended_at: Some(started_at + chrono::Duration::minutes(minutes)),
                connection_quality: Some(ConnectionQuality::Good),
                crisis_detected: false,
            });
            let here = per_session + usize::from(extra > 0);
            extra = extra.saturating_sub(1);
            for sequence in 0..here {
                batch_messages.push(BulkMessage {
                    session_id: id,
                    message: NewMessage {
                        sequence: sequence as u32,
                        speaker: if sequence % 2 == 0 {
                            Speaker::Student
                        } else {
                            Speaker::Counselor
                        },
                        text: TranscriptText::new(lines[sequence % lines.len()]),
                        is_final: true,
                        timestamp: started_at + chrono::Duration::seconds(20 * sequence as i64 + 5),
                    },
                });
            }
        }
        store.insert_sessions_bulk(&batch_sessions).await?;
        for chunk in batch_messages.chunks(50_000) {
            store.insert_messages_bulk(chunk).await?;
        }
        done += count;
    }
    Ok(focus)
}

async fn login(client: &reqwest::Client, address: &str, user: &Username) -> anyhow::Result<String> {
    let response = client
        .post(format!("{address}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user.as_str(), "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "login failed: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
}

/// The scenario must return a full page, or it measures nothing.
async fn check_page(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let body: serde_json::Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let shown = body["sessions"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        shown == 20,
        "{url} returned {shown} sessions, not a full page: {body}"
    );
    Ok(())
}

/// Sends `total` requests from `clients` concurrent loops; returns latencies (µs), errors, wall time.
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    clients: usize,
    total: usize,
) -> (Vec<u64>, usize, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, url, token, next) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let sent = Instant::now();
                let ok = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    (latencies, errors, started.elapsed())
}

fn summarise(
    backend: &'static str,
    scenario: &'static str,
    path: String,
    mut latencies: Vec<u64>,
    errors: usize,
    wall: Duration,
) -> ScenarioResult {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    ScenarioResult {
        backend,
        scenario,
        path,
        requests: latencies.len(),
        errors,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: *latencies.last().unwrap_or(&0) as f64 / 1000.0,
        requests_per_sec: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

//! Loads a realistic history (default 1 000 students, 100 000 sessions, 1 000 000 transcript
//! lines) and measures `Store::list_sessions` under 64 concurrent clients.
//!
//! ```text
//! cargo run --release -p store --example list_sessions -- [DATABASE_URL] [--sessions N] [--messages N]
//!     [--users N] [--clients N] [--requests N]
//! ```
//! DATABASE_URL defaults to a fresh SQLite file in a temporary directory. A PostgreSQL URL must name
//! an empty database (the benchmark migrates it and fills it). The last line printed is JSON.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::{
    Category, ConnectionQuality, SessionId, SessionMode, Speaker, TranscriptText, UserId, Username,
};
use std::time::Instant;
use store::*;

struct Args {
    url: Option<String>,
    users: usize,
    sessions: usize,
    messages: usize,
    clients: usize,
    requests: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: None,
        users: 1000,
        sessions: 100_000,
        messages: 1_000_000,
        clients: 64,
        requests: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--users" => args.users = number("--users"),
            "--sessions" => args.sessions = number("--sessions"),
            "--messages" => args.messages = number("--messages"),
            "--clients" => args.clients = number("--clients"),
            "--requests" => args.requests = number("--requests"),
            url if !url.starts_with("--") => args.url = Some(url.to_owned()),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// A small deterministic generator, so every run loads the same history.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const LINES: [&str; 6] = [
    "I've been stressed about midterms and can't sleep well.",
    "That sounds hard. What does a typical night look like for you?",
    "I stay up late studying and then scroll on my phone.",
    "Let's try a wind-down routine: no screens thirty minutes before bed.",
    "My roommate says I should talk to someone at the counseling center.",
    "That's a good idea. Would you like their hours and location?",
];

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = Store::connect(
        &url,
        TranscriptCipher::new(TranscriptCipher::generate_key()),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let kind = store.kind();
    eprintln!(
        "{kind:?}: loading {} users, {} sessions, {} messages",
        args.users, args.sessions, args.messages
    );

    let load_started = Instant::now();
    let mut users = Vec::with_capacity(args.users);
    for i in 0..args.users {
        let name = Username::parse(&format!(r"\BENCH\student{i}")).unwrap();
        users.push(
            store
                .create_user(&name, "$2b$12$benchmark-hash", false)
                .await
                .unwrap()
                .id,
        );
    }
    let mut rng = Lcg(7);
    let newest = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut session_ids: Vec<SessionId> = Vec::with_capacity(args.sessions);
    let mut batch = Vec::new();
    for i in 0..args.sessions {
        let started_at = newest - Duration::seconds(rng.below(365 * 86_400) as i64);
        let id = SessionId::new();
        session_ids.push(id);
        batch.push(BulkSession {
            session: NewSession {
                id,
                user_id: users[i % users.len()],
                category: Category::ALL[rng.below(6)],
                mode: if rng.below(3) == 0 {
                    SessionMode::Video
                } else {
                    SessionMode::Voice
                },
                room_name: format!("bench-{i}"),
                started_at,
            },
            ended_at: Some(started_at + Duration::seconds(120 + rng.below(3000) as i64)),
            connection_quality: Some(ConnectionQuality::Good),
            crisis_detected: rng.below(200) == 0,
        });
        if batch.len() == 10_000 {
            store.insert_sessions_bulk(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.insert_sessions_bulk(&batch).await.unwrap();
    let sessions_loaded = load_started.elapsed();

    let per_session = args.messages / args.sessions.max(1);
    let mut messages = Vec::new();
    for (s, id) in session_ids.iter().enumerate() {
        let count = per_session + usize::from(s < args.messages % args.sessions.max(1));
        for seq in 0..count {
            messages.push(BulkMessage {
                session_id: *id,
                message: NewMessage {
                    sequence: seq as u32,
                    speaker: if seq % 2 == 0 {
                        Speaker::Student
                    } else {
                        Speaker::Counselor
                    },
                    text: TranscriptText::new(LINES[seq % LINES.len()]),
                    is_final: true,
                    timestamp: newest,
                },
            });
        }
        if messages.len() >= 50_000 {
            store.insert_messages_bulk(&messages).await.unwrap();
            messages.clear();
        }
    }
    store.insert_messages_bulk(&messages).await.unwrap();
    store.optimize().await.unwrap();
    let load_seconds = load_started.elapsed().as_secs_f64();
    eprintln!(
        "loaded in {load_seconds:.1} s (sessions {:.1} s)",
        sessions_loaded.as_secs_f64()
    );

    // The mix a history page produces: mostly unfiltered first pages, some filters and paging.
    let filters = |rng: &mut Lcg| -> (SessionFilter, u32) {
        let page = if rng.below(4) == 0 { 2 } else { 1 };
        let filter = match rng.below(6) {
            0 => SessionFilter {
                category: Some(Category::ALL[rng.below(6)]),
                ..Default::default()
            },
            1 => SessionFilter {
                mode: Some(SessionMode::Voice),
                ..Default::default()
            },
            2 => SessionFilter {
                category: Some(Category::ALL[rng.below(6)]),
                mode: Some(SessionMode::Video),
                ..Default::default()
            },
            3 => SessionFilter {
                start_date: NaiveDate::from_ymd_opt(2026, 6, 1),
                end_date: NaiveDate::from_ymd_opt(2026, 8, 31),
                ..Default::default()
            },
            _ => SessionFilter::default(),
        };
        (filter, page)
    };

    let bench_started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let store = store.clone();
        let users: Vec<UserId> = users.clone();
        let requests = args.requests;
        clients.push(tokio::spawn(async move {
            let mut rng = Lcg(1000 + c as u64);
            let mut latencies = Vec::with_capacity(requests);
            for _ in 0..requests {
                let user = users[rng.below(users.len())];
                let (filter, page) = filters(&mut rng);
                let t = Instant::now();
                let (rows, total) = store.list_sessions(user, &filter, page, 20).await.unwrap();
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(rows.len() as u64 <= total);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    let wall = bench_started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "{{\"benchmark\":\"store_list_sessions\",\"database\":\"{:?}\",\"users\":{},\"sessions\":{},\"messages\":{},\
         \"load_seconds\":{:.1},\"clients\":{},\"requests\":{},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\
         \"max_ms\":{:.3},\"requests_per_second\":{:.0}}}",
        kind,
        args.users,
        args.sessions,
        args.messages,
        load_seconds,
        args.clients,
        latencies.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len() as f64 / wall
    );
    store.close().await;
}

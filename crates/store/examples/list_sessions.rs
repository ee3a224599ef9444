//! Loads a realistic history (default 1 000 students, 100 000 sessions, 1 000 000 transcript
//! lines) and measures `Store::list_sessions` under 64 concurrent clients.
//!
//! One student, the heavy one, owns a fifth of the sessions (20 000 by default); the others share
//! the rest (about 80 each, a typical history). Three runs, one after the other: the request mix
//! below for the heavy student, the same mix for typical students (a random one per request), and
//! the heavy student's filtered page 50 (Health, voice; the HTTP benchmark's second scenario).
//!
//! ```text
//! cargo run --release -p store --example list_sessions -- [DATABASE_URL] [--sessions N] [--messages N]
//!     [--users N] [--clients N] [--requests N]
//! ```
//! DATABASE_URL defaults to a fresh SQLite file in a temporary directory. A PostgreSQL URL must name
//! an empty database (the benchmark migrates it and fills it). `--requests` is per client and run.
//! A failed call is counted as an error, not retried. The last line printed is JSON.

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

/// The heavy student owns one session in this many.
const HEAVY_SHARE: usize = 5;

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
    let (heavy, typical) = users.split_first().expect("--users must be at least 2");
    assert!(!typical.is_empty(), "--users must be at least 2");
    for i in 0..args.sessions {
        let started_at = newest - Duration::seconds(rng.below(365 * 86_400) as i64);
        let id = SessionId::new();
        session_ids.push(id);
        batch.push(BulkSession {
            session: NewSession {
                id,
                user_id: if i % HEAVY_SHARE == 0 {
                    *heavy
                } else {
                    typical[i % typical.len()]
                },
                category: Category::ALL[rng.below(6)],
                mode: if rng.below(3) == 0 {
                    SessionMode::Video
                } else {
                    SessionMode::Voice
                },
                room_name: format!("bench-{i}"),
                started_at,
                node: None,
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

    let heavy = *heavy;
    let typical: Vec<UserId> = typical.to_vec();
    let health_voice = SessionFilter {
        category: Some(Category::Health),
        mode: Some(SessionMode::Voice),
        ..Default::default()
    };
    let runs: [(&str, Run); 3] = [
        ("heavy student, mix", Run::Mix(vec![heavy])),
        ("typical student, mix", Run::Mix(typical)),
        (
            "heavy student, filtered page 50",
            Run::Fixed(heavy, health_voice, 50),
        ),
    ];
    let mut results = Vec::new();
    for (name, run) in runs {
        let result = measure(&store, name, run, args.clients, args.requests, filters).await;
        eprintln!(
            "{name:<32} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms  {:>6.0} req/s  {} errors",
            result.p50_ms, result.p99_ms, result.max_ms, result.requests_per_second, result.errors
        );
        results.push(result);
    }
    let runs_json: Vec<String> = results.iter().map(RunResult::json).collect();
    println!(
        "{{\"benchmark\":\"store_list_sessions\",\"database\":\"{:?}\",\"users\":{},\"sessions\":{},\"messages\":{},\
         \"heavy_student_sessions\":{},\"load_seconds\":{:.1},\"clients\":{},\"target_p99_ms\":10,\"target_met\":{},\"runs\":[{}]}}",
        kind,
        args.users,
        args.sessions,
        args.messages,
        args.sessions.div_ceil(HEAVY_SHARE),
        load_seconds,
        args.clients,
        results.iter().all(|r| r.p99_ms < 10.0 && r.errors == 0),
        runs_json.join(",")
    );
    store.close().await;
}

/// Whose history one run lists, and how.
enum Run {
    /// The request mix, each request for a random one of these students.
    Mix(Vec<UserId>),
    /// One student, one filter, one page, every time.
    Fixed(UserId, SessionFilter, u32),
}

struct RunResult {
    name: &'static str,
    requests: usize,
    errors: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests_per_second: f64,
}

impl RunResult {
    fn json(&self) -> String {
        format!(
            "{{\"run\":\"{}\",\"requests\":{},\"errors\":{},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\
             \"max_ms\":{:.3},\"requests_per_second\":{:.0}}}",
            self.name,
            self.requests,
            self.errors,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.requests_per_second
        )
    }
}

/// `clients` closed loops of `requests` calls each; every latency counts, failed calls too.
async fn measure(
    store: &Store,
    name: &'static str,
    run: Run,
    clients: usize,
    requests: usize,
    filters: fn(&mut Lcg) -> (SessionFilter, u32),
) -> RunResult {
    let run = std::sync::Arc::new(run);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(1000 + c as u64);
            let mut latencies = Vec::with_capacity(requests);
            let mut errors = 0;
            for _ in 0..requests {
                let (user, filter, page) = match &*run {
                    Run::Mix(users) => {
                        let user = users[rng.below(users.len())];
                        let (filter, page) = filters(&mut rng);
                        (user, filter, page)
                    }
                    Run::Fixed(user, filter, page) => (*user, filter.clone(), *page),
                };
                let t = Instant::now();
                let answer = store.list_sessions(user, &filter, page, 20).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                match answer {
                    Ok((rows, total)) if rows.len() as u64 <= total => {}
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    RunResult {
        name,
        requests: latencies.len(),
        errors,
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        requests_per_second: latencies.len() as f64 / wall,
    }
}

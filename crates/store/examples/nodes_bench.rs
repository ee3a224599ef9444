//! What sharing one PostgreSQL between nodes costs: a rate-limit check counted in the database
//! (one per request), and a transcript line told to another node (the announce, the notice's
//! trip to a listener, and the listener reading and decrypting the line from the store).
//!
//! ```text
//! cargo run --release -p store --example nodes_bench -- DATABASE_URL [--requests N]
//! ```
//! DATABASE_URL names an empty PostgreSQL database (the benchmark migrates it). Requests run one
//! after another, so each figure is one request's own latency. The last line printed is JSON.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Category, SessionId, SessionMode, Speaker, TranscriptText, Username};
use store::*;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{name}: {} samples, mean {mean:.3} ms, p50 {p50:.3} ms, p99 {p99:.3} ms",
        samples.len()
    );
    format!("\"{name}\": {{\"mean_ms\": {mean:.3}, \"p50_ms\": {p50:.3}, \"p99_ms\": {p99:.3}}}")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: nodes_bench DATABASE_URL [--requests N]");
    let requests: usize = match (args.next().as_deref(), args.next()) {
        (Some("--requests"), Some(n)) => n.parse().expect("--requests needs a number"),
        _ => 2_000,
    };
    let store = Store::connect(
        &url,
        TranscriptCipher::new(TranscriptCipher::generate_key()),
    )
    .await
    .expect("connects");
    assert_eq!(store.kind(), StoreKind::Postgres, "nodes share PostgreSQL");
    store.migrate().await.unwrap();

    // A rate-limit check, as every limited request makes it: 200 students, a generous limit.
    let size = BucketSize::per_minute(1_000_000);
    let mut checks = Vec::with_capacity(requests);
    for i in 0..requests {
        let client = format!("student-{}", i % 200);
        let started = Instant::now();
        let taken = store
            .take_from_bucket("default", &client, size, Utc::now())
            .await
            .unwrap();
        checks.push(started.elapsed());
        assert_eq!(taken, Taken::Allowed);
    }

    // A line told to another node: stored first (as a call does anyway, not counted), then
    // announced; the listener hears it and reads the line back from the store.
    let student = store
        .create_user(
            &Username::parse(r"\COLLEGE\bench").unwrap(),
            "$2b$12$benchmark-hash",
            false,
        )
        .await
        .unwrap();
    let session_id = SessionId::new();
    store
        .create_session(NewSession {
            id: session_id,
            user_id: student.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: format!("bench-{session_id}"),
            started_at: Utc::now(),
            node: None,
        })
        .await
        .unwrap();
    let mut notices = store.live_notices().await.unwrap().expect("PostgreSQL");
    let lines = requests.min(1_000);
    let mut announced = Vec::with_capacity(lines);
    let mut told = Vec::with_capacity(lines);
    for sequence in 0..lines as u32 {
        let message = NewMessage {
            sequence,
            speaker: Speaker::Student,
            text: TranscriptText::new("i have been so tired and i do not know why"),
            is_final: true,
            timestamp: Utc::now(),
        };
        store.append_message(session_id, message).await.unwrap();
        let started = Instant::now();
        let notice = LiveNotice {
            session_id,
            change: LiveChange::Line { sequence },
        };
        store.announce(notice).await.unwrap();
        announced.push(started.elapsed());
        let Heard::Notice(heard) = notices.next().await.unwrap() else {
            panic!("the listener lost its connection");
        };
        let LiveChange::Line { sequence: heard } = heard.change else {
            panic!("another notice");
        };
        let line = store.transcript_line(session_id, heard).await.unwrap();
        told.push(started.elapsed());
        assert!(line.is_some_and(|l| l.sequence == sequence));
    }

    let json = [
        summary("rate_limit_check", checks),
        summary("announce", announced),
        summary("line_to_other_node", told),
    ];
    println!("{{{}}}", json.join(", "));
}

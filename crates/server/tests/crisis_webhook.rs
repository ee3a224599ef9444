//! The crisis webhook against a local receiver: signed, without the student's words unless
//! configured, retried on 5xx, never retried on other 4xx, and only for crisis-level events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use domain::{CrisisLevel, CrisisSignal, DecidedBy, SessionId, TranscriptText, UserId, Username};
use hmac::{Hmac, Mac};
use server::crisis_desk::{CrisisDesk, CrisisWebhookConfig, FlaggedEvent, WebhookSecret};
use server::{Application, Config};
use sha2::Sha256;

const SECRET: &str = "receiver-and-counsel-share-this";

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver answering with `statuses` in turn (then 200), recording every request.
#[derive(Clone, Default)]
struct Receiver {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(statuses: &[u16]) -> (Receiver, String) {
        let receiver = Receiver {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (or fails after `within`).
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let status = receiver.statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// What a receiver does: recompute the HMAC over the raw bytes and compare in constant time.
fn signature_is_valid(received: &Received) -> bool {
    let header = received.headers["x-counsel-signature"].to_str().unwrap();
    let Some(hex_mac) = header.strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&received.body);
    mac.verify_slice(&hex::decode(hex_mac).unwrap()).is_ok()
}

fn event(level: CrisisLevel) -> FlaggedEvent {
    FlaggedEvent {
        event_id: uuid::Uuid::new_v4(),
        session_id: SessionId::new(),
        student_id: UserId::new(),
        student: Username::parse(r"\campus\alex").unwrap(),
        level,
        signal: CrisisSignal::PlanOrMeans,
        decided_by: Some(DecidedBy::Both),
        text: TranscriptText::new("i have pills saved up"),
        created_at: Utc::now(),
    }
}

/// The desk the server builds from its configuration (and the data directory it lives on).
async fn configured_desk(url: &str, include_text: Option<&str>) -> (CrisisDesk, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("BCRYPT_COST_FOR_TESTS", "4"),
        ("LOG_LEVEL", "warn"),
        ("CRISIS_WEBHOOK_URL", url),
        ("CRISIS_WEBHOOK_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATA_DIR".into(), data_dir.path().display().to_string());
    if let Some(value) = include_text {
        vars.insert("CRISIS_WEBHOOK_INCLUDE_TEXT".into(), value.into());
    }
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    (app.state().crisis_desk.clone(), data_dir)
}

/// A desk with quick retries, so the retry tests take milliseconds.
fn quick_desk(url: &str) -> CrisisDesk {
    let mut config = CrisisWebhookConfig::new(
        url.parse().unwrap(),
        WebhookSecret::new(SECRET.into()).unwrap(),
        false,
    );
    config.backoff = vec![Duration::from_millis(20); 4];
    CrisisDesk::new(Some(config))
}

#[tokio::test]
async fn a_crisis_is_posted_signed_with_ids_only_by_default() {
    let (receiver, url) = Receiver::start(&[]).await;
    let (desk, _data) = configured_desk(&url, None).await;
    let flagged = event(CrisisLevel::Crisis);
    desk.flagged(flagged.clone());

    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(signature_is_valid(&got[0]), "the signature verifies");
    let sent_at: i64 = got[0].headers["x-counsel-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((Utc::now().timestamp() - sent_at).abs() <= 5);
    assert_eq!(got[0].headers["content-type"], "application/json");

    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event_id"], flagged.event_id.to_string());
    assert_eq!(body["session_id"], flagged.session_id.to_string());
    assert_eq!(body["level"], "crisis");
    assert_eq!(body["signal"], "plan_or_means");
    assert_eq!(body["decided_by"], "both");
    assert!(body["created_at"].is_string());
    assert_eq!(
        body["student"],
        flagged.student_id.to_string(),
        "an opaque id"
    );
    let raw = String::from_utf8_lossy(&got[0].body);
    assert!(
        !raw.contains("pills") && !raw.contains("alex"),
        "no words and no username by default: {raw}"
    );

    // A forged or altered body does not verify.
    let mut altered = got[0].clone();
    altered.body = Bytes::from(raw.replace("crisis", "concern"));
    assert!(!signature_is_valid(&altered));
}

#[tokio::test]
async fn the_words_and_username_are_sent_only_when_configured() {
    let (receiver, url) = Receiver::start(&[]).await;
    let (desk, _data) = configured_desk(&url, Some("true")).await;
    desk.flagged(event(CrisisLevel::Crisis));
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(signature_is_valid(&got[0]));
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["text"], "i have pills saved up");
    assert_eq!(body["student_username"], r"\campus\alex");
}

#[tokio::test]
async fn server_errors_and_429_are_retried_with_the_same_signed_body() {
    let (receiver, url) = Receiver::start(&[500, 429]).await;
    let desk = quick_desk(&url);
    desk.flagged(event(CrisisLevel::Crisis));
    let got = receiver.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3, "500, 429, then delivered");
    assert!(got.iter().all(signature_is_valid));
    assert!(got.iter().all(|r| r.body == got[0].body));
    // Delivered: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn retries_stop_after_five_attempts() {
    let (receiver, url) = Receiver::start(&[500; 10]).await;
    let desk = quick_desk(&url);
    desk.flagged(event(CrisisLevel::Crisis));
    receiver.wait_for(5, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 5);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let (receiver, url) = Receiver::start(&[400]).await;
    let desk = quick_desk(&url);
    desk.flagged(event(CrisisLevel::Crisis));
    receiver.wait_for(1, Duration::from_secs(5)).await;
    // Well past every retry pause.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn concern_events_stay_on_the_staff_page() {
    let (receiver, url) = Receiver::start(&[]).await;
    let desk = quick_desk(&url);
    let mut page = desk.subscribe();
    desk.flagged(event(CrisisLevel::Concern));
    let notice = page.recv().await.unwrap();
    assert_eq!(notice.flagged().unwrap().level, CrisisLevel::Concern);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
}

//! The crisis webhook: each crisis-level event POSTed as JSON to `CRISIS_WEBHOOK_URL`, signed
//! with HMAC-SHA256 under `CRISIS_WEBHOOK_SECRET`, from a background task so a slow or dead
//! receiver never holds up a call.
//!
//! The body is the same bytes on every attempt (receivers can drop repeats by `event_id`):
//! `X-Counsel-Signature: sha256=<hex HMAC-SHA256 of the raw body>` and
//! `X-Counsel-Timestamp: <unix seconds of this attempt>`. Connection errors, timeouts, 5xx and
//! 429 are retried with backoff; any other answer is final.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{CrisisLevel, CrisisSignal, DecidedBy, SessionId, UserId};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use super::FlaggedEvent;

pub const SIGNATURE_HEADER: &str = "X-Counsel-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Counsel-Timestamp";
/// Shortest accepted secret: a guessable one would let anyone forge alerts.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared secret. Its `Debug` form never shows it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(secret: String) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "must be at least {MIN_SECRET_LEN} characters (use e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(WebhookSecret(secret.into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct CrisisWebhookConfig {
    pub url: reqwest::Url,
    pub secret: WebhookSecret,
    /// Send the student's words and username (`CRISIS_WEBHOOK_INCLUDE_TEXT`); off by default,
    /// so the receiver gets only ids and the classification.
    pub include_text: bool,
    /// Pauses between attempts; attempts = pauses + 1.
    pub backoff: Vec<Duration>,
    pub attempt_timeout: Duration,
    /// Deliveries waiting to be sent before new ones are dropped.
    pub queue_capacity: usize,
    /// Deliveries being sent (or retried) at once.
    pub max_in_flight: usize,
}

impl CrisisWebhookConfig {
    /// 5 s per attempt, at most 5 attempts 1, 2, 4 and 8 s apart.
    pub fn new(url: reqwest::Url, secret: WebhookSecret, include_text: bool) -> Self {
        CrisisWebhookConfig {
            url,
            secret,
            include_text,
            backoff: [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
            attempt_timeout: Duration::from_secs(5),
            queue_capacity: 256,
            max_in_flight: 8,
        }
    }
}

/// The JSON body.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    event_id: Uuid,
    session_id: SessionId,
    level: CrisisLevel,
    signal: CrisisSignal,
    decided_by: Option<DecidedBy>,
    created_at: DateTime<Utc>,
    /// The student's opaque account id.
    student: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    student_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

fn body(event: &FlaggedEvent, include_text: bool) -> Vec<u8> {
    let payload = Payload {
        event_id: event.event_id,
        session_id: event.session_id,
        level: event.level,
        signal: event.signal,
        decided_by: event.decided_by,
        created_at: event.created_at,
        student: event.student_id,
        student_username: include_text.then(|| event.student.as_str()),
        text: include_text.then(|| event.text.as_str()),
    };
    serde_json::to_vec(&payload).expect("the payload serializes")
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`, the signature header's value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts the sender task; returns its queue.
pub(super) fn start(config: CrisisWebhookConfig) -> mpsc::Sender<Arc<FlaggedEvent>> {
    let (queue, waiting) = mpsc::channel(config.queue_capacity.max(1));
    let client = reqwest::Client::builder()
        .timeout(config.attempt_timeout)
        // A redirect is an answer, not a new place to send students' data.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with default TLS");
    tokio::spawn(run(Arc::new(config), client, waiting));
    queue
}

async fn run(
    config: Arc<CrisisWebhookConfig>,
    client: reqwest::Client,
    mut waiting: mpsc::Receiver<Arc<FlaggedEvent>>,
) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    while let Some(event) = waiting.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (config, client) = (config.clone(), client.clone());
        tokio::spawn(async move {
            deliver(&config, &client, &event).await;
            drop(permit);
        });
    }
}

enum Attempt {
    Delivered,
    Retry(String),
    Final(String),
}

async fn deliver(config: &CrisisWebhookConfig, client: &reqwest::Client, event: &FlaggedEvent) {
    let body = body(event, config.include_text);
    let signature = sign(&config.secret.0, &body);
    let mut pauses = config.backoff.iter();
    let mut attempt = 1;
    loop {
        let outcome = match client
            .post(config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .header(TIMESTAMP_HEADER, Utc::now().timestamp().to_string())
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Attempt::Delivered
                } else if status.is_server_error() || status.as_u16() == 429 {
                    Attempt::Retry(format!("status {status}"))
                } else {
                    Attempt::Final(format!("status {status}"))
                }
            }
            // Connection refused or reset, DNS, TLS, timeouts: the receiver may come back.
            Err(error) if error.is_timeout() || error.is_connect() || error.is_request() => {
                Attempt::Retry(if error.is_timeout() {
                    "timed out".to_owned()
                } else {
                    "could not connect".to_owned()
                })
            }
            Err(_) => Attempt::Final("request failed".to_owned()),
        };
        let event_id = event.event_id;
        match outcome {
            Attempt::Delivered => {
                tracing::info!(%event_id, attempt, "crisis webhook delivered");
                return;
            }
            Attempt::Retry(why) => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(%event_id, attempt, why, "crisis webhook failed; retrying");
                    tokio::time::sleep(*pause).await;
                    attempt += 1;
                }
                None => {
                    tracing::error!(%event_id, attempt, why, "crisis webhook failed; giving up (the event is in the review queue)");
                    return;
                }
            },
            Attempt::Final(why) => {
                tracing::error!(%event_id, attempt, why, "crisis webhook refused; not retried (the event is in the review queue)");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_never_show() {
        assert!(WebhookSecret::new("short".into()).is_err());
        let secret = WebhookSecret::new("a-long-enough-secret".into()).unwrap();
        assert!(!format!("{secret:?}").contains("long-enough"));
    }
}

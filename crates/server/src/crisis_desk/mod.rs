//! The crisis desk: where a flagged utterance goes the moment it is stored, so that staff on duty
//! hear of it within a second — live on the staff page (a broadcast to every staff WebSocket on
//! this node; the other nodes of a deployment hear of it through the store's live notices and
//! show it on theirs) and, for crisis-level events, through an optional signed webhook, sent
//! once, by the node that stored the event.
//!
//! [`CrisisDesk::flagged`] is called from a live call's recorder: it never waits (a broadcast
//! send and a `try_send` into the webhook's bounded queue) and never fails the call.

mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::{CrisisLevel, CrisisSignal, DecidedBy, SessionId, TranscriptText, UserId, Username};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

pub use webhook::{sign, CrisisWebhookConfig, WebhookSecret, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Events buffered per staff socket before a slow one starts missing them (it then reloads the
/// queue, which has everything).
const LIVE_BUFFER: usize = 256;

/// What a staff page hears from the desk.
#[derive(Debug, Clone)]
pub enum DeskNotice {
    /// An event flagged on this node or another, just stored.
    Flagged(Arc<FlaggedEvent>),
    /// Events flagged on other nodes may have gone unheard (this node's connection to the other
    /// nodes' notices was lost and made again): the page reloads the queue, which has them all.
    Missed,
}

impl DeskNotice {
    /// The event, for a notice that carries one.
    pub fn flagged(&self) -> Option<&FlaggedEvent> {
        match self {
            DeskNotice::Flagged(event) => Some(event),
            DeskNotice::Missed => None,
        }
    }
}

/// A stored crisis event with what staff need to act on it. `Debug` never shows the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedEvent {
    /// The `crisis_events` row's id (what the review endpoint takes).
    pub event_id: Uuid,
    pub session_id: SessionId,
    pub student_id: UserId,
    pub student: Username,
    pub level: CrisisLevel,
    pub signal: CrisisSignal,
    pub decided_by: Option<DecidedBy>,
    /// The utterance that raised it.
    pub text: TranscriptText,
    pub created_at: DateTime<Utc>,
}

impl FlaggedEvent {
    /// An event as the review queue holds it; `None` once its words are erased.
    pub fn queued(item: store::CrisisQueueItem) -> Option<Self> {
        Some(FlaggedEvent {
            event_id: item.event.id,
            session_id: item.event.session_id,
            student_id: item.student_id,
            student: item.student,
            level: item.event.level,
            signal: item.event.signal,
            decided_by: item.event.decided_by,
            text: item.text?,
            created_at: item.event.created_at,
        })
    }

    /// The event as just stored by [`store::Store::record_crisis_event`].
    pub fn stored(
        record: &store::CrisisEventRecord,
        student_id: UserId,
        student: Username,
        text: TranscriptText,
    ) -> Self {
        FlaggedEvent {
            event_id: record.id,
            session_id: record.session_id,
            student_id,
            student,
            level: record.level,
            signal: record.signal,
            decided_by: record.decided_by,
            text,
            created_at: record.created_at,
        }
    }
}

/// Cheap to clone; every clone is the same desk.
#[derive(Clone)]
pub struct CrisisDesk {
    inner: Arc<Desk>,
}

struct Desk {
    live: broadcast::Sender<DeskNotice>,
    webhook: Option<mpsc::Sender<Arc<FlaggedEvent>>>,
    webhooks_dropped: AtomicU64,
}

impl CrisisDesk {
    /// A desk; with a webhook configured its sender task starts here, so call this inside the
    /// Tokio runtime.
    pub fn new(webhook: Option<CrisisWebhookConfig>) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let webhook = webhook.map(webhook::start);
        CrisisDesk {
            inner: Arc::new(Desk {
                live,
                webhook,
                webhooks_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Whether a crisis reaches a person on duty: through the webhook when one is set, or through
    /// the review queue and staff page when an account that may sign in is staff. The notice
    /// students accept says so, in these terms.
    pub async fn reaches_staff(&self, store: &store::Store) -> Result<bool, store::StoreError> {
        if self.inner.webhook.is_some() {
            return Ok(true);
        }
        store.has_active_staff().await
    }

    /// Shows an event another node stored (and sent to the webhook) on this node's staff pages.
    pub fn flagged_elsewhere(&self, event: FlaggedEvent) {
        let _ = self.inner.live.send(DeskNotice::Flagged(Arc::new(event)));
    }

    /// Tells this node's staff pages that events flagged on other nodes may have gone unheard.
    pub fn missed_elsewhere(&self) {
        let _ = self.inner.live.send(DeskNotice::Missed);
    }

    /// Hands a stored event to staff: every open staff socket, and the webhook for crisis-level
    /// events (concern-level events go to the review queue and the staff page only). Never
    /// blocks; a full webhook queue drops the delivery, logs it and counts it.
    pub fn flagged(&self, event: FlaggedEvent) {
        let event = Arc::new(event);
        // No staff page open is fine: the event is in the review queue.
        let _ = self.inner.live.send(DeskNotice::Flagged(event.clone()));
        if event.level != CrisisLevel::Crisis {
            return;
        }
        if let Some(queue) = &self.inner.webhook {
            if let Err(error) = queue.try_send(event) {
                let dropped = self.inner.webhooks_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let event_id = match &error {
                    mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => {
                        e.event_id
                    }
                };
                tracing::error!(%event_id, dropped, "crisis webhook queue is full; delivery dropped (the event is in the review queue)");
            }
        }
    }

    /// The live stream of flagged events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeskNotice> {
        self.inner.live.subscribe()
    }

    /// Webhook deliveries dropped because the queue was full, since start.
    pub fn webhooks_dropped(&self) -> u64 {
        self.inner.webhooks_dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(level: CrisisLevel) -> FlaggedEvent {
        FlaggedEvent {
            event_id: Uuid::new_v4(),
            session_id: SessionId::new(),
            student_id: UserId::new(),
            student: Username::parse(r"\campus\alex").unwrap(),
            level,
            signal: CrisisSignal::SuicidalIdeation,
            decided_by: Some(DecidedBy::Rule),
            text: TranscriptText::new("i want to end it all"),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn every_subscriber_gets_each_event_and_debug_hides_the_words() {
        let desk = CrisisDesk::new(None);
        let (mut a, mut b) = (desk.subscribe(), desk.subscribe());
        let flagged = event(CrisisLevel::Concern);
        desk.flagged(flagged.clone());
        assert_eq!(a.try_recv().unwrap().flagged(), Some(&flagged));
        assert_eq!(b.try_recv().unwrap().flagged(), Some(&flagged));
        // A lost connection to the other nodes' notices reaches every page too.
        desk.missed_elsewhere();
        assert!(matches!(a.try_recv().unwrap(), DeskNotice::Missed));
        assert!(matches!(b.try_recv().unwrap(), DeskNotice::Missed));
        assert!(!format!("{flagged:?}").contains("end it all"));
        // Nobody listening is not an error.
        drop((a, b));
        desk.flagged(event(CrisisLevel::Crisis));
    }

    #[tokio::test]
    async fn a_full_webhook_queue_drops_and_counts_without_waiting() {
        // Nothing listens on this port; the one sender task is busy retrying the first event.
        let mut config = CrisisWebhookConfig::new(
            "http://127.0.0.1:9/hook".parse().unwrap(),
            WebhookSecret::new("a-webhook-secret-for-tests".into()).unwrap(),
            false,
        );
        config.queue_capacity = 1;
        config.max_in_flight = 1;
        config.backoff = vec![std::time::Duration::from_secs(60)];
        let desk = CrisisDesk::new(Some(config));
        let started = std::time::Instant::now();
        for _ in 0..50 {
            desk.flagged(event(CrisisLevel::Crisis));
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(desk.webhooks_dropped() >= 47, "{}", desk.webhooks_dropped());
        // Concern-level events never reach the webhook queue.
        let before = desk.webhooks_dropped();
        desk.flagged(event(CrisisLevel::Concern));
        assert_eq!(desk.webhooks_dropped(), before);
    }
}

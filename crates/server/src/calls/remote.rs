//! Calls running on other nodes, followed through the store's live notices.
//!
//! Every node listens once to every node's notices ([`RemoteCalls::listen`]) and hands each to
//! the transcript sockets open here for that session. A notice names what changed, never what
//! was said: a new line is read from the store and decrypted here. A screen on another node
//! than its call's sees what a late joiner would — every final line, the crisis alert, the bot's
//! state, the end — though not the words of a line still being recognized.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{CrisisLevel, SessionId};
use store::{Heard, LiveChange, LiveNotice, SessionDetail, SessionEndReason, Store};
use tokio::sync::broadcast::{self, error::RecvError};

use super::feed::{replay_of_stored, CrisisResources, LiveMessage};
use super::manager::CallManager;
use crate::crisis_desk::{CrisisDesk, FlaggedEvent};

/// Notices buffered per following socket before a slow one must resume from the store.
const FOLLOW_BUFFER: usize = 256;
/// How long a node waits before listening again after losing the database.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// The sessions that sockets on this node follow, each with its own stream of notices.
#[derive(Default)]
pub struct RemoteCalls {
    followed: Mutex<HashMap<SessionId, broadcast::Sender<Heard>>>,
}

impl RemoteCalls {
    /// Listens to the deployment's notices until the task is stopped, starting again a second
    /// after each loss of the database (the sockets following then resume from the store).
    /// Returns at once with SQLite: there, every call runs on this node.
    /// A request to end a call that runs here is handed to `calls`; a crisis event another node
    /// stored is shown on this node's staff pages (`desk`).
    pub async fn listen(self: Arc<Self>, store: Store, calls: Arc<CallManager>, desk: CrisisDesk) {
        let mut listened_before = false;
        loop {
            match store.live_notices().await {
                Ok(None) => return,
                Ok(Some(mut notices)) => {
                    // Listening again after a loss: only now may the sockets that follow resume
                    // from the store, or they would miss what is said before this point.
                    if std::mem::replace(&mut listened_before, true) {
                        self.deliver(Heard::Gap);
                    }
                    self.hear(&mut notices, &store, &calls, &desk).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen to the other nodes' live notices")
                }
            }
            tokio::time::sleep(RELISTEN_AFTER).await;
        }
    }

    /// Acts on every notice until the connection fails.
    async fn hear(
        &self,
        notices: &mut store::LiveNotices,
        store: &Store,
        calls: &Arc<CallManager>,
        desk: &CrisisDesk,
    ) {
        loop {
            match notices.next().await {
                Ok(Heard::Notice(LiveNotice {
                    session_id,
                    change: LiveChange::EndRequested,
                })) => {
                    let calls = calls.clone();
                    tokio::spawn(async move { calls.end_if_here(session_id).await });
                }
                Ok(Heard::Notice(LiveNotice {
                    change: LiveChange::Flagged { event, by },
                    ..
                })) => {
                    if by != calls.node() {
                        tokio::spawn(show_on_staff_pages(store.clone(), desk.clone(), event));
                    }
                }
                Ok(Heard::Gap) => {
                    desk.missed_elsewhere();
                    self.deliver(Heard::Gap);
                }
                Ok(heard) => self.deliver(heard),
                Err(error) => {
                    tracing::warn!(%error, "lost the other nodes' live notices");
                    return;
                }
            }
        }
    }

    fn deliver(&self, heard: Heard) {
        let followed = self.followed.lock().expect("followed lock");
        match heard {
            Heard::Notice(notice) => {
                if let Some(sender) = followed.get(&notice.session_id) {
                    let _ = sender.send(heard);
                }
            }
            Heard::Gap => {
                for sender in followed.values() {
                    let _ = sender.send(heard);
                }
            }
        }
    }

    /// Starts following a session's notices. Follow first, then read the store: a line stored
    /// in between arrives both ways, and [`Follower`] sends it once.
    pub fn follow(self: &Arc<Self>, session_id: SessionId) -> Following {
        let mut followed = self.followed.lock().expect("followed lock");
        let receiver = followed
            .entry(session_id)
            .or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        Following {
            receiver,
            session_id,
            calls: self.clone(),
        }
    }

    /// Sessions followed now (for tests and metrics).
    pub fn followed(&self) -> usize {
        self.followed.lock().expect("followed lock").len()
    }
}

/// Reads a crisis event another node stored (its words decrypted here) for this node's staff
/// pages.
async fn show_on_staff_pages(store: Store, desk: CrisisDesk, event: uuid::Uuid) {
    // A call's recorder stores the verdict on a line before the line itself (the alert is what
    // the student must see soonest), so its words may take a moment to be there.
    for _ in 0..WORDS_WAIT_STEPS {
        match store.crisis_event(event).await {
            Ok(Some(item)) => {
                if let Some(event) = FlaggedEvent::queued(item) {
                    desk.flagged_elsewhere(event);
                    return;
                }
            }
            // Deleted meanwhile: nothing to show.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "could not read a crisis event another node stored");
                return;
            }
        }
        tokio::time::sleep(WORDS_WAIT_STEP).await;
    }
    // Its words are not stored (erased, or their write failed): the review queue has the event.
    tracing::warn!(%event, "a crisis event another node stored has no words; shown in the review queue only");
}

/// How long a node waits, in steps, for the words of a crisis event another node stored.
const WORDS_WAIT_STEP: Duration = Duration::from_millis(50);
/// Longer than a recorder's retries of a failed write (2.6 s).
const WORDS_WAIT_STEPS: usize = 100;

/// One socket's subscription to a session's notices; dropping it stops following.
pub struct Following {
    receiver: broadcast::Receiver<Heard>,
    session_id: SessionId,
    calls: Arc<RemoteCalls>,
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut followed = self.calls.followed.lock().expect("followed lock");
        // This socket's receiver is still counted until it drops, just after.
        if followed
            .get(&self.session_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            followed.remove(&self.session_id);
        }
    }
}

/// What a following socket is to do next.
pub enum Next {
    Send(LiveMessage),
    /// It may have missed notices: the screen resumes from the store by reconnecting.
    Behind,
}

/// Turns a session's notices into the messages a screen is sent, each final line once.
pub struct Follower {
    following: Following,
    store: Store,
    sent_lines: HashSet<u32>,
    alerted: bool,
}

impl Follower {
    /// The replay of `detail` (read after `following` began) for a screen that saw everything
    /// up to line `after`, and the follower that goes on from there.
    pub fn start(
        following: Following,
        store: Store,
        detail: &SessionDetail,
        after: Option<u64>,
    ) -> (Vec<LiveMessage>, Follower) {
        let mut sent_lines: HashSet<u32> = detail
            .messages
            .iter()
            .filter(|m| m.is_final)
            .map(|m| m.sequence)
            .collect();
        // A screen that came from a node running the call saw its last line before it was stored.
        if let Some(seen) = after.and_then(|after| u32::try_from(after).ok()) {
            sent_lines.insert(seen);
        }
        let follower = Follower {
            following,
            store,
            sent_lines,
            alerted: detail.record.crisis_detected,
        };
        (replay_of_stored(detail, after), follower)
    }

    /// The next message for the screen.
    pub async fn next(&mut self) -> Next {
        let session_id = self.following.session_id;
        loop {
            let heard = match self.following.receiver.recv().await {
                Ok(heard) => heard,
                Err(RecvError::Lagged(_)) => return Next::Behind,
                // The listener never drops its senders while sockets follow.
                Err(RecvError::Closed) => return Next::Behind,
            };
            let change = match heard {
                Heard::Notice(notice) => notice.change,
                Heard::Gap => return Next::Behind,
            };
            match change {
                LiveChange::Line { sequence } => {
                    if !self.sent_lines.insert(sequence) {
                        continue;
                    }
                    match self.store.transcript_line(session_id, sequence).await {
                        Ok(Some(line)) => {
                            return Next::Send(LiveMessage::Transcript {
                                speaker: line.speaker,
                                text: line.text,
                                is_final: true,
                                sequence: u64::from(line.sequence),
                                timestamp: line.timestamp,
                                interrupted: false,
                            })
                        }
                        // Deleted meanwhile: nothing to show.
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(%session_id, %error, "could not read a line another node stored");
                            return Next::Behind;
                        }
                    }
                }
                LiveChange::Crisis => {
                    if !std::mem::replace(&mut self.alerted, true) {
                        return Next::Send(LiveMessage::CrisisAlert {
                            level: CrisisLevel::Crisis,
                            resources: CrisisResources::US,
                        });
                    }
                }
                LiveChange::BotState(state) => return Next::Send(LiveMessage::BotState { state }),
                LiveChange::ConnectionQuality(quality) => {
                    return Next::Send(LiveMessage::ConnectionQuality { quality })
                }
                // For the node running the call (the end follows as `Ended`), and for staff pages.
                LiveChange::EndRequested | LiveChange::Flagged { .. } => {}
                LiveChange::Ended => {
                    let reason = match self.store.session(session_id).await {
                        Ok(Some(record)) => record.end_reason,
                        _ => None,
                    };
                    return Next::Send(LiveMessage::SessionEnded {
                        reason: reason.unwrap_or(SessionEndReason::Ended).as_str(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::LiveNotice;

    #[test]
    fn a_session_is_followed_while_a_socket_follows_it() {
        let calls = Arc::new(RemoteCalls::default());
        let session = SessionId::new();
        let first = calls.follow(session);
        let second = calls.follow(session);
        assert_eq!(calls.followed(), 1);
        drop(first);
        assert_eq!(calls.followed(), 1);
        drop(second);
        assert_eq!(calls.followed(), 0);
    }

    #[tokio::test]
    async fn notices_reach_only_the_sockets_of_their_session_and_a_gap_reaches_all() {
        let calls = Arc::new(RemoteCalls::default());
        let (mine, other) = (SessionId::new(), SessionId::new());
        let mut following = calls.follow(mine);
        let mut unrelated = calls.follow(other);
        let notice = Heard::Notice(LiveNotice {
            session_id: mine,
            change: LiveChange::Crisis,
        });
        calls.deliver(notice);
        calls.deliver(Heard::Gap);
        assert_eq!(following.receiver.recv().await.unwrap(), notice);
        assert_eq!(following.receiver.recv().await.unwrap(), Heard::Gap);
        assert_eq!(unrelated.receiver.recv().await.unwrap(), Heard::Gap);
    }
}

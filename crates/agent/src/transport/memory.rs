//! An in-process transport for tests and benchmarks: the peer side pushes student frames in and
//! hears the bot's frames as a real transport would play them, one every 20 ms.

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::{TransportEvent, TransportIo, OUTPUT_QUEUE_FRAMES};
use crate::audio::FRAME_SAMPLES;

/// Student frames the transport buffers before the peer has to wait (1 s).
const INPUT_QUEUE_FRAMES: usize = 50;
/// Played frames kept for a peer that reads late (10 s); older ones are dropped.
const PLAYED_QUEUE_FRAMES: usize = 500;

/// A bot frame and the moment the transport played it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayedFrame {
    pub samples: Vec<i16>,
    pub at: Instant,
}

/// The student's side of a [`memory_transport`].
pub struct MemoryPeer {
    /// Student audio, one 20 ms frame ([`FRAME_SAMPLES`] samples) per message.
    pub student_audio: mpsc::Sender<Vec<i16>>,
    /// The bot's audio as it is played (silence between replies is not sent).
    pub played: mpsc::Receiver<PlayedFrame>,
    /// Connection events for the call; dropping this sender hangs up.
    pub events: mpsc::Sender<TransportEvent>,
}

/// Makes a connected transport pair. Must be called inside a tokio runtime: a playout task takes
/// one bot frame off the queue every 20 ms, like a sound card, and ends with the call.
pub fn memory_transport() -> (TransportIo, MemoryPeer) {
    let (student_audio, audio_in) = mpsc::channel(INPUT_QUEUE_FRAMES);
    let (audio_out, mut bot_audio) = mpsc::channel::<Vec<i16>>(OUTPUT_QUEUE_FRAMES);
    let (events, events_rx) = mpsc::channel(16);
    let (played_tx, played) = mpsc::channel(PLAYED_QUEUE_FRAMES);
    tokio::spawn(async move {
        let mut clock = tokio::time::interval(std::time::Duration::from_millis(20));
        clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            clock.tick().await;
            match bot_audio.try_recv() {
                Ok(samples) => {
                    debug_assert_eq!(samples.len(), FRAME_SAMPLES);
                    // A peer that stopped reading loses frames; the call never waits on it.
                    let _ = played_tx.try_send(PlayedFrame {
                        samples,
                        at: Instant::now(),
                    });
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
    });
    (
        TransportIo {
            audio_in,
            audio_out,
            events: events_rx,
        },
        MemoryPeer {
            student_audio,
            played,
            events,
        },
    )
}

//! How audio gets between a student and a call's pipeline.
//!
//! A transport (WebRTC to a browser, or an in-memory one in tests and benchmarks) hands the
//! pipeline a [`TransportIo`]. Audio crosses it as 20 ms frames of 16 kHz mono PCM16
//! ([`crate::audio::FRAME_SAMPLES`] samples), whatever the wire format is.

use domain::ConnectionQuality;
use tokio::sync::mpsc;

pub mod memory;
pub mod webrtc;

/// Frames of bot audio a transport may hold before the pipeline has to wait. Small on purpose:
/// when the student interrupts, at most this much already-queued audio still plays (60 ms).
pub const OUTPUT_QUEUE_FRAMES: usize = 3;

/// Something that happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportEvent {
    /// Media is flowing both ways.
    Connected,
    /// The student is gone (hung up, closed the tab, network lost). Ends the call.
    Disconnected,
    /// A fresh estimate of link quality from round-trip time and loss.
    Quality(ConnectionQuality),
}

/// The pipeline's side of a transport.
///
/// - `audio_in`: the student's audio, one 20 ms frame per message, in real time.
/// - `audio_out`: the bot's audio, one 20 ms frame per message. The transport plays frames out
///   on its own 20 ms clock (silence when none is queued), so a full queue paces the pipeline.
///   Capacity is [`OUTPUT_QUEUE_FRAMES`].
/// - `events`: connection events; the channel closing means the transport is gone.
pub struct TransportIo {
    pub audio_in: mpsc::Receiver<Vec<i16>>,
    pub audio_out: mpsc::Sender<Vec<i16>>,
    pub events: mpsc::Receiver<TransportEvent>,
}

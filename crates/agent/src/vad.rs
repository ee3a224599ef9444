//! Hearing the student: a voice activity detector (earshot, a small neural network compiled
//! into the binary) and the turn detector that turns its per-frame scores into "the student
//! started speaking" and "the student's turn is over".

use std::time::Duration;

use crate::audio::FRAME_SAMPLES;
use crate::services::{VadFactory, VoiceActivityDetector};

/// Samples earshot scores at a time (16 ms at 16 kHz).
const EARSHOT_FRAME_SAMPLES: usize = 256;

/// Voice activity detection with the earshot network. It takes 16 ms windows; the pipeline's
/// 20 ms frames are re-cut into them, and a frame scores the highest of the windows it
/// completed (a frame that completes none scores like the previous one).
pub struct EarshotVad {
    // Boxed: the detector keeps ~8 KiB of state inline and futures should stay small.
    detector: Box<earshot::Detector>,
    pending: Vec<i16>,
    last_score: f32,
}

impl EarshotVad {
    pub fn new() -> Self {
        Self {
            detector: Box::new(earshot::Detector::default()),
            pending: Vec::with_capacity(EARSHOT_FRAME_SAMPLES + FRAME_SAMPLES),
            last_score: 0.0,
        }
    }
}

impl Default for EarshotVad {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceActivityDetector for EarshotVad {
    fn frame_samples(&self) -> usize {
        FRAME_SAMPLES
    }

    fn speech_probability(&mut self, frame: &[i16]) -> f32 {
        self.pending.extend_from_slice(frame);
        let mut best: Option<f32> = None;
        let mut consumed = 0;
        while self.pending.len() - consumed >= EARSHOT_FRAME_SAMPLES {
            let window = &self.pending[consumed..consumed + EARSHOT_FRAME_SAMPLES];
            let score = self.detector.predict_i16(window);
            best = Some(best.map_or(score, |b: f32| b.max(score)));
            consumed += EARSHOT_FRAME_SAMPLES;
        }
        self.pending.drain(..consumed);
        if let Some(score) = best {
            self.last_score = score;
        }
        self.last_score
    }

    fn reset(&mut self) {
        self.detector.reset();
        self.pending.clear();
        self.last_score = 0.0;
    }
}

/// Makes an [`EarshotVad`] per call.
#[derive(Debug, Default, Clone, Copy)]
pub struct EarshotVadFactory;

impl VadFactory for EarshotVadFactory {
    fn create(&self) -> Box<dyn VoiceActivityDetector> {
        Box::new(EarshotVad::new())
    }
}

/// When speech counts as started and when a turn counts as over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnParams {
    /// A frame is speech when the detector scores it at least this.
    pub threshold: f32,
    /// Continuous speech needed before the student counts as speaking (ignores clicks, coughs).
    pub start_after: Duration,
    /// Silence after speech that ends the student's turn.
    pub stop_after: Duration,
}

impl Default for TurnParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            start_after: Duration::from_millis(200),
            stop_after: Duration::from_millis(600),
        }
    }
}

/// What one frame changed about the student's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnChange {
    /// The student has been speaking for `start_after`.
    SpeechStarted,
    /// The student was silent for `stop_after` after speaking: their turn is over.
    /// `silent_frames` is how many frames ago the last speech was heard.
    TurnEnded { silent_frames: u32 },
}

/// Turns per-frame speech scores (one per 20 ms frame) into turn changes.
#[derive(Debug, Clone)]
pub struct TurnDetector {
    threshold: f32,
    start_frames: u32,
    stop_frames: u32,
    speaking: bool,
    /// Consecutive speech frames while quiet, consecutive silent frames while speaking.
    run: u32,
}

impl TurnDetector {
    pub fn new(params: TurnParams) -> Self {
        let frames =
            |d: Duration| u32::try_from(domain::millis(d).div_ceil(20).max(1)).unwrap_or(u32::MAX);
        Self {
            threshold: params.threshold,
            start_frames: frames(params.start_after),
            stop_frames: frames(params.stop_after),
            speaking: false,
            run: 0,
        }
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Feeds the score of the next 20 ms frame.
    pub fn push(&mut self, probability: f32) -> Option<TurnChange> {
        let speech = probability >= self.threshold;
        if self.speaking {
            self.run = if speech { 0 } else { self.run + 1 };
            if self.run >= self.stop_frames {
                self.speaking = false;
                let silent_frames = self.run;
                self.run = 0;
                return Some(TurnChange::TurnEnded { silent_frames });
            }
        } else {
            self.run = if speech { self.run + 1 } else { 0 };
            if self.run >= self.start_frames {
                self.speaking = true;
                self.run = 0;
                return Some(TurnChange::SpeechStarted);
            }
        }
        None
    }

    pub fn reset(&mut self) {
        self.speaking = false;
        self.run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> TurnDetector {
        TurnDetector::new(TurnParams::default())
    }

    #[test]
    fn speech_starts_after_200ms_and_the_turn_ends_after_600ms_of_silence() {
        let mut turns = detector();
        let changes: Vec<_> = (0..10).map(|_| turns.push(0.9)).collect();
        assert_eq!(changes.iter().position(|c| c.is_some()), Some(9));
        assert_eq!(changes[9], Some(TurnChange::SpeechStarted));
        let changes: Vec<_> = (0..30).map(|_| turns.push(0.1)).collect();
        assert_eq!(changes.iter().position(|c| c.is_some()), Some(29));
        assert_eq!(
            changes[29],
            Some(TurnChange::TurnEnded { silent_frames: 30 })
        );
    }

    #[test]
    fn short_noises_and_short_pauses_change_nothing() {
        let mut turns = detector();
        for _ in 0..5 {
            for p in [0.9, 0.9, 0.9, 0.1] {
                assert_eq!(turns.push(p), None);
            }
        }
        for _ in 0..10 {
            turns.push(0.9);
        }
        assert!(turns.is_speaking());
        // A 0.4 s pause between words does not end the turn.
        for _ in 0..20 {
            assert_eq!(turns.push(0.0), None);
        }
        assert_eq!(turns.push(0.9), None);
        assert!(turns.is_speaking());
    }

    #[test]
    fn earshot_scores_silence_as_no_speech() {
        let mut vad = EarshotVad::new();
        let silence = vec![0i16; FRAME_SAMPLES];
        let quiet: f32 = (0..50)
            .map(|_| vad.speech_probability(&silence))
            .fold(0.0, f32::max);
        assert!(quiet < 0.5, "silence scored {quiet}");
    }
}

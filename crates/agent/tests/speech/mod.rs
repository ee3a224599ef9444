//! Test helpers for spoken audio: WAV files, resampling and a simple utterance finder.

use std::ops::Range;
use std::path::Path;

/// Mono PCM16 audio at a known rate.
pub struct Recording {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Recording {
    /// Reads a mono 16-bit PCM WAV file (what espeak-ng writes).
    pub fn read_wav(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("read wav");
        assert!(
            &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
            "{path:?} is not a WAV file"
        );
        let mut offset = 12;
        let mut sample_rate = None;
        while offset + 8 <= bytes.len() {
            let id = &bytes[offset..offset + 4];
            let declared =
                u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap()) as usize;
            let body = offset + 8;
            // Streaming writers may leave the data size unset: the data runs to the end.
            let len = declared.min(bytes.len() - body);
            if id == b"fmt " {
                let field = |at: usize| {
                    u16::from_le_bytes(bytes[body + at..body + at + 2].try_into().unwrap())
                };
                assert_eq!(field(0), 1, "{path:?} is not PCM");
                assert_eq!(field(2), 1, "{path:?} is not mono");
                assert_eq!(field(14), 16, "{path:?} is not 16-bit");
                sample_rate = Some(u32::from_le_bytes(
                    bytes[body + 4..body + 8].try_into().unwrap(),
                ));
            } else if id == b"data" {
                let samples = bytes[body..body + len]
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                    .collect();
                return Self {
                    samples,
                    sample_rate: sample_rate.expect("fmt chunk before data"),
                };
            }
            offset = body + len + (len & 1);
        }
        panic!("{path:?} has no data chunk");
    }

    pub fn with_silence(&self, before_secs: f64, after_secs: f64) -> Self {
        let silence = |secs: f64| vec![0i16; (secs * self.sample_rate as f64) as usize];
        let mut samples = silence(before_secs);
        samples.extend_from_slice(&self.samples);
        samples.extend(silence(after_secs));
        Self {
            samples,
            sample_rate: self.sample_rate,
        }
    }

    /// Linear-interpolation resampling: good enough for test material whose energy sits well
    /// below both rates' Nyquist limits.
    pub fn resampled(&self, rate: u32) -> Self {
        let step = self.sample_rate as f64 / rate as f64;
        let len = (self.samples.len() as f64 / step) as usize;
        let samples = (0..len)
            .map(|n| {
                let position = n as f64 * step;
                let i = position as usize;
                let next = self.samples.get(i + 1).copied().unwrap_or(self.samples[i]);
                let fraction = position - i as f64;
                (self.samples[i] as f64 * (1.0 - fraction) + next as f64 * fraction).round() as i16
            })
            .collect();
        Self {
            samples,
            sample_rate: rate,
        }
    }
}

pub fn write_wav(path: &Path, recording: &Recording) {
    let data_len = (recording.samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&recording.sample_rate.to_le_bytes());
    bytes.extend_from_slice(&(recording.sample_rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for sample in &recording.samples {
        bytes.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write wav");
}

/// 16 kHz analysis windows of 20 ms.
const WINDOW: usize = 320;
const RATE: f64 = 16_000.0;
/// A window this loud (RMS, full scale 32768) is voiced: about -44 dBFS.
const VOICED_RMS: f64 = 200.0;
/// Pauses between words shorter than this stay inside one utterance.
const MAX_PAUSE_WINDOWS: usize = 20;

/// A stretch of speech in a 16 kHz recording.
#[derive(Debug, Clone)]
pub struct Segment {
    pub samples: Range<usize>,
    /// Silence on both sides: the utterance was heard from its start to its end.
    pub whole: bool,
}

impl Segment {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / RATE
    }
}

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// Utterances in 16 kHz audio: runs of voiced windows, bridging pauses between words.
pub fn speech_segments(samples: &[i16]) -> Vec<Segment> {
    let voiced: Vec<bool> = samples
        .chunks_exact(WINDOW)
        .map(|window| rms(window) > VOICED_RMS)
        .collect();
    let mut segments = Vec::new();
    let mut start: Option<usize> = None;
    let mut last_voiced = 0;
    for (i, &is_voiced) in voiced.iter().enumerate() {
        if is_voiced {
            start.get_or_insert(i);
            last_voiced = i;
        } else if let Some(first) = start {
            if i - last_voiced > MAX_PAUSE_WINDOWS {
                segments.push(Segment {
                    samples: first * WINDOW..(last_voiced + 1) * WINDOW,
                    whole: first > 0,
                });
                start = None;
            }
        }
    }
    if let Some(first) = start {
        segments.push(Segment {
            samples: first * WINDOW..(last_voiced + 1) * WINDOW,
            whole: false,
        });
    }
    segments
}

/// Share of the energy of 16 kHz audio that lies between 100 Hz and 4 kHz, from a DFT of each
/// 20 ms window (50 Hz bins).
pub fn speech_band_fraction(samples: &[i16]) -> f64 {
    let (mut in_band, mut total) = (0.0, 0.0);
    for window in samples.chunks_exact(WINDOW) {
        for bin in 1..WINDOW / 2 {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &s) in window.iter().enumerate() {
                let phase = 2.0 * std::f64::consts::PI * (bin * n) as f64 / WINDOW as f64;
                re += s as f64 * phase.cos();
                im += s as f64 * phase.sin();
            }
            let energy = re * re + im * im;
            let hz = bin as f64 * RATE / WINDOW as f64;
            total += energy;
            if (100.0..=4_000.0).contains(&hz) {
                in_band += energy;
            }
        }
    }
    in_band / total
}

//! Audio as the pipeline carries it: 16 kHz mono signed 16-bit PCM.

/// The pipeline's internal sample rate. Providers and transports are resampled to and from it.
pub const PIPELINE_SAMPLE_RATE: u32 = 16_000;

/// Samples in one 20 ms frame at [`PIPELINE_SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 320;

/// A run of mono PCM16 samples at a known rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioChunk {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl AudioChunk {
    pub fn new(samples: Vec<i16>, sample_rate: u32) -> Self {
        Self { samples, sample_rate }
    }

    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

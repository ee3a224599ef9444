//! Whisper's audio front end: 25 ms Hann-windowed frames every 10 ms (centred, reflect-padded
//! at the start), power spectrum, 80 Slaney mel bands, log10, clamped to 8 below the peak and
//! scaled to about [-1, 1].
//!
//! The spectrum is one matrix product of the frames with a windowed cos|sin basis, which is
//! both short and fast (the gemm kernels beat a scalar FFT for 400-point frames).

use candle_core::{DType, Device, Result, Tensor};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
const N_FREQ: usize = N_FFT / 2 + 1;

pub struct LogMel {
    /// (N_FFT, 2 * N_FREQ): Hann-windowed cosines, then sines.
    basis: Tensor,
    /// (N_FREQ, N_MELS).
    filters: Tensor,
}

impl LogMel {
    pub fn new(device: &Device) -> Result<Self> {
        let mut basis = vec![0f32; N_FFT * 2 * N_FREQ];
        for n in 0..N_FFT {
            // Periodic Hann window, as torch.hann_window(400) gives.
            let window = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos();
            for k in 0..N_FREQ {
                let angle = 2.0 * std::f64::consts::PI * (k * n % N_FFT) as f64 / N_FFT as f64;
                basis[n * 2 * N_FREQ + k] = (window * angle.cos()) as f32;
                basis[n * 2 * N_FREQ + N_FREQ + k] = (window * angle.sin()) as f32;
            }
        }
        let basis = Tensor::from_vec(basis, (N_FFT, 2 * N_FREQ), device)?;
        let filters = Tensor::from_vec(mel_filters(), (N_MELS, N_FREQ), device)?
            .t()?
            .contiguous()?;
        Ok(Self { basis, filters })
    }

    /// The log-mel spectrogram of `samples` (16 kHz, [-1, 1]) as a (1, N_MELS, n_frames)
    /// tensor. Frames past the end of the audio see silence, as with Whisper's 30 s padding.
    pub fn compute(&self, samples: &[f32], n_frames: usize) -> Result<Tensor> {
        let pad = N_FFT / 2;
        // Reflect-pad the start, then the audio, then zeros far enough for every frame.
        let mut padded: Vec<f32> = (1..=pad)
            .rev()
            .map(|i| samples.get(i).copied().unwrap_or(0.0))
            .collect();
        padded.extend_from_slice(samples);
        padded.resize(padded.len().max(n_frames * HOP + N_FFT), 0.0);

        let mut frames = Vec::with_capacity(n_frames * N_FFT);
        for i in 0..n_frames {
            frames.extend_from_slice(&padded[i * HOP..i * HOP + N_FFT]);
        }
        let frames = Tensor::from_vec(frames, (n_frames, N_FFT), self.basis.device())?;
        let spectrum = frames.matmul(&self.basis)?;
        let re = spectrum.narrow(1, 0, N_FREQ)?;
        let im = spectrum.narrow(1, N_FREQ, N_FREQ)?;
        let power = (re.sqr()? + im.sqr()?)?;
        let mel = power.matmul(&self.filters)?;
        let log = (mel.maximum(1e-10)?.log()? / std::f64::consts::LN_10)?;
        let peak = log.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let log = ((log.maximum(peak as f64 - 8.0)? + 4.0)? / 4.0)?;
        log.t()?.contiguous()?.unsqueeze(0)?.to_dtype(DType::F32)
    }
}

/// Slaney-style mel filterbank (librosa's default, which Whisper's filters come from):
/// triangles between mel points that are linear below 1 kHz and logarithmic above, each
/// normalised to unit area. Row-major (N_MELS, N_FREQ).
pub fn mel_filters() -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz < MIN_LOG_HZ {
            hz / F_SP
        } else {
            MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step
        }
    };
    let mel_to_hz = |mel: f64| {
        if mel < MIN_LOG_MEL {
            mel * F_SP
        } else {
            MIN_LOG_HZ * ((mel - MIN_LOG_MEL) * log_step).exp()
        }
    };
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let top = hz_to_mel(nyquist);
    let points: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(top * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let mut filters = vec![0f32; N_MELS * N_FREQ];
    for m in 0..N_MELS {
        let (low, centre, high) = (points[m], points[m + 1], points[m + 2]);
        let area_norm = 2.0 / (high - low);
        for k in 0..N_FREQ {
            let hz = k as f64 * nyquist / (N_FREQ - 1) as f64;
            let rising = (hz - low) / (centre - low);
            let falling = (high - hz) / (high - centre);
            filters[m * N_FREQ + k] = (rising.min(falling).max(0.0) * area_norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_triangles_covering_the_spectrum() {
        let filters = mel_filters();
        for m in 0..N_MELS {
            let row = &filters[m * N_FREQ..(m + 1) * N_FREQ];
            assert!(row.iter().any(|&w| w > 0.0), "band {m} is empty");
            assert!(row.iter().all(|&w| w >= 0.0));
        }
        // Band 0 starts at 0 Hz; the lowest bands are 200/3 Hz apart (bins are 40 Hz).
        assert_eq!(filters[0], 0.0);
        assert!(filters[1] > 0.0);
        // The last band peaks below Nyquist and reaches its upper edge at 8 kHz.
        assert_eq!(filters[(N_MELS - 1) * N_FREQ + N_FREQ - 1], 0.0);
    }

    #[test]
    fn a_tone_lights_up_the_band_holding_its_frequency() {
        let log_mel = LogMel::new(&Device::Cpu).unwrap();
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| {
                (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / SAMPLE_RATE as f32).sin() * 0.5
            })
            .collect();
        let mel = log_mel.compute(&tone, 100).unwrap();
        assert_eq!(mel.dims(), &[1, N_MELS, 100]);
        let frame: Vec<f32> = mel
            .squeeze(0)
            .unwrap()
            .narrow(1, 50, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let loudest = frame
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        // 1 kHz is 15 mels: band 15 or its neighbour (bands are centred on the mel points).
        let filters = mel_filters();
        let bin = 1000 * N_FFT / SAMPLE_RATE;
        let best_band = (0..N_MELS)
            .max_by(|&a, &b| filters[a * N_FREQ + bin].total_cmp(&filters[b * N_FREQ + bin]))
            .unwrap();
        assert_eq!(loudest, best_band);
        assert!(frame.iter().all(|&v| (-1.5..=1.5).contains(&v)));
    }
}

//! Audio as the pipeline carries it: 16 kHz mono signed 16-bit PCM, plus the two tools every
//! edge of the pipeline needs: a streaming [`Resampler`] and a [`FrameBuffer`] that cuts any run
//! of samples into 20 ms frames.

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
        Self {
            samples,
            sample_rate,
        }
    }

    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }

    /// This chunk at another rate (a one-shot conversion; streams should keep a [`Resampler`]).
    pub fn resampled(&self, to_rate: u32) -> Result<AudioChunk, ResampleError> {
        Ok(AudioChunk::new(
            resample(&self.samples, self.sample_rate, to_rate)?,
            to_rate,
        ))
    }
}

/// Why a resampler could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    #[error("sample rate {0} Hz is outside the supported 1 000..=384 000 Hz")]
    UnsupportedRate(u32),
    #[error(
        "converting {from} Hz to {to} Hz needs a filter bank of more than {MAX_PHASES} phases"
    )]
    RatioTooComplex { from: u32, to: u32 },
}

/// The most polyphase branches a converter may use (441/320-style ratios need 320 or 441).
const MAX_PHASES: u32 = 1_024;

/// Filter taps per branch, per unit of decimation, on each side of the centre. 16 taps per
/// side keep the passband flat to about 0.9 × Nyquist with > 80 dB of stopband rejection.
const HALF_TAPS: usize = 16;

/// Kaiser window shape: β = 8.6 gives roughly 86 dB sidelobe attenuation.
const KAISER_BETA: f64 = 8.6;

/// Passband edge as a fraction of the lower of the two Nyquist frequencies; the transition band
/// lies above it so that nothing folds back into speech.
const PASSBAND: f64 = 0.92;

/// A streaming sample-rate converter: polyphase windowed-sinc (Kaiser), any rational ratio.
///
/// Feed it consecutive pieces of one signal with [`process`](Self::process); it keeps the tail
/// of the previous piece, so chunk boundaries leave no clicks. The output lags the input by
/// [`delay_samples`](Self::delay_samples) output samples (a fraction of a millisecond).
#[derive(Debug, Clone)]
pub struct Resampler {
    from_rate: u32,
    to_rate: u32,
    /// Upsampling factor L and downsampling factor M of the reduced ratio `to/from = L/M`.
    up: usize,
    down: usize,
    taps_per_phase: usize,
    /// `phases[p][k]`: the coefficient applied to input `x[i - k]` for output phase `p`.
    phases: Vec<Vec<f32>>,
    /// Past input (the last `taps_per_phase - 1` samples) followed by input not yet consumed.
    history: Vec<f32>,
    /// Position of the next output sample in the upsampled domain, relative to `history[0]`.
    position: usize,
}

impl Resampler {
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        for rate in [from_rate, to_rate] {
            if !(1_000..=384_000).contains(&rate) {
                return Err(ResampleError::UnsupportedRate(rate));
            }
        }
        let divisor = gcd(from_rate, to_rate);
        let (up, down) = (to_rate / divisor, from_rate / divisor);
        if up > MAX_PHASES {
            return Err(ResampleError::RatioTooComplex {
                from: from_rate,
                to: to_rate,
            });
        }
        let (up, down) = (up as usize, down as usize);
        // Downsampling narrows the cutoff, so the filter must span proportionally more input.
        let stretch = (down as f64 / up as f64).max(1.0);
        let taps_per_phase = 2 * (HALF_TAPS as f64 * stretch).ceil() as usize;
        let phases = if up == down {
            Vec::new()
        } else {
            design_phases(up, down, taps_per_phase)
        };
        let history = vec![0.0; taps_per_phase.saturating_sub(1)];
        let position = history.len() * up;
        Ok(Self {
            from_rate,
            to_rate,
            up,
            down,
            taps_per_phase,
            phases,
            history,
            position,
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// How many output samples the converter lags its input by (the filter's group delay).
    pub fn delay_samples(&self) -> usize {
        if self.up == self.down {
            return 0;
        }
        let filter_len = self.up * self.taps_per_phase;
        ((filter_len - 1) as f64 / (2.0 * self.down as f64)).round() as usize
    }

    /// Converts the next piece of the signal, appending the new output samples to `out`.
    pub fn process_into(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.up == self.down {
            out.extend_from_slice(input);
            return;
        }
        self.history.extend(input.iter().map(|&s| s as f32));
        out.reserve(input.len() * self.up / self.down + 1);
        loop {
            let newest = self.position / self.up;
            if newest >= self.history.len() {
                break;
            }
            let coefficients = &self.phases[self.position % self.up];
            let window = &self.history[newest + 1 - self.taps_per_phase..=newest];
            // `window` runs oldest → newest while coefficients run newest → oldest.
            let acc: f32 = coefficients
                .iter()
                .zip(window.iter().rev())
                .map(|(c, x)| c * x)
                .sum();
            out.push(acc.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16);
            self.position += self.down;
        }
        let keep_from = (self.position / self.up).min(self.history.len()) + 1 - self.taps_per_phase;
        self.history.drain(..keep_from);
        self.position -= keep_from * self.up;
    }

    /// Converts the next piece of the signal.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        self.process_into(input, &mut out);
        out
    }

    /// Forgets the past signal (the next piece starts from silence).
    pub fn reset(&mut self) {
        self.history.clear();
        self.history
            .resize(self.taps_per_phase.saturating_sub(1), 0.0);
        self.position = self.history.len() * self.up;
    }
}

/// Converts a whole signal at once, compensating the filter delay so that the output lines up
/// with the input and has `len × to / from` samples (rounded up).
pub fn resample(samples: &[i16], from_rate: u32, to_rate: u32) -> Result<Vec<i16>, ResampleError> {
    let mut resampler = Resampler::new(from_rate, to_rate)?;
    if from_rate == to_rate {
        return Ok(samples.to_vec());
    }
    let delay = resampler.delay_samples();
    let wanted = (samples.len() as u64 * to_rate as u64).div_ceil(from_rate as u64) as usize;
    let mut out = Vec::with_capacity(wanted + delay);
    resampler.process_into(samples, &mut out);
    // Push silence through until the delayed tail of the signal has come out.
    let flush =
        vec![0i16; (delay + 1) * from_rate as usize / to_rate as usize + resampler.taps_per_phase];
    while out.len() < wanted + delay {
        resampler.process_into(&flush, &mut out);
    }
    out.drain(..delay);
    out.truncate(wanted);
    Ok(out)
}

/// The branches of a Kaiser-windowed sinc low-pass prototype, normalised so every branch has
/// unity gain at DC (no level change, no ripple between phases).
fn design_phases(up: usize, down: usize, taps_per_phase: usize) -> Vec<Vec<f32>> {
    let len = up * taps_per_phase;
    // Cutoff in cycles per upsampled sample.
    let cutoff = PASSBAND * 0.5 / up.max(down) as f64;
    let centre = (len - 1) as f64 / 2.0;
    let norm = bessel_i0(KAISER_BETA);
    let prototype: Vec<f64> = (0..len)
        .map(|j| {
            let t = j as f64 - centre;
            let sinc = if t == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
            };
            let r = 2.0 * t / (len - 1) as f64;
            let window = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / norm;
            sinc * window
        })
        .collect();
    (0..up)
        .map(|phase| {
            let branch: Vec<f64> = (0..taps_per_phase)
                .map(|k| prototype[phase + k * up])
                .collect();
            let gain: f64 = branch.iter().sum();
            branch.iter().map(|c| (c / gain) as f32).collect()
        })
        .collect()
}

/// The zeroth-order modified Bessel function of the first kind (power series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, half) = (1.0, 1.0, x / 2.0);
    for k in 1..64 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Collects samples arriving in pieces of any size and hands them out as 20 ms frames.
#[derive(Debug, Default, Clone)]
pub struct FrameBuffer {
    pending: Vec<i16>,
}

impl FrameBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples; returns every frame they complete.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Vec<i16>> {
        self.pending.extend_from_slice(samples);
        let complete = self.pending.len() / FRAME_SAMPLES;
        let frames = self
            .pending
            .chunks_exact(FRAME_SAMPLES)
            .map(<[i16]>::to_vec)
            .collect();
        self.pending.drain(..complete * FRAME_SAMPLES);
        frames
    }

    /// The last partial frame, padded with silence; `None` if nothing is pending.
    pub fn finish(&mut self) -> Option<Vec<i16>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut frame = std::mem::take(&mut self.pending);
        frame.resize(FRAME_SAMPLES, 0);
        Some(frame)
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64, amplitude: f64) -> Vec<i16> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin())
                    as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    /// Error against an ideal sine, after finding the best-fitting phase-free match by
    /// projecting onto sin and cos (so the filter's delay does not matter).
    fn distortion_db(samples: &[i16], freq: f64, rate: u32) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &x) in samples.iter().enumerate() {
            s += x as f64 * (w * i as f64).sin();
            c += x as f64 * (w * i as f64).cos();
        }
        let n = samples.len() as f64;
        let (a, b) = (2.0 * s / n, 2.0 * c / n);
        let residual: f64 = samples
            .iter()
            .enumerate()
            .map(|(i, &x)| (x as f64 - a * (w * i as f64).sin() - b * (w * i as f64).cos()).powi(2))
            .sum::<f64>()
            / n;
        10.0 * (residual / ((a * a + b * b) / 2.0)).log10()
    }

    #[test]
    fn common_rates_keep_a_tone_clean_and_its_level() {
        for (from, to) in [
            (48_000, 16_000),
            (16_000, 48_000),
            (24_000, 16_000),
            (22_050, 16_000),
            (16_000, 24_000),
            (44_100, 16_000),
        ] {
            let input = sine(440.0, from, 1.0, 10_000.0);
            let output = resample(&input, from, to).unwrap();
            assert_eq!(
                output.len(),
                (input.len() as u64 * to as u64).div_ceil(from as u64) as usize
            );
            // Skip the edges, where the signal starts and stops abruptly.
            let middle = &output[output.len() / 10..output.len() * 9 / 10];
            let level = rms(middle) / rms(&input);
            assert!(
                (level - 1.0).abs() < 0.01,
                "{from}->{to}: level changed by {level}"
            );
            let distortion = distortion_db(middle, 440.0, to);
            assert!(
                distortion < -60.0,
                "{from}->{to}: distortion {distortion:.1} dB"
            );
        }
    }

    #[test]
    fn downsampling_removes_what_the_lower_rate_cannot_carry() {
        // 12 kHz exists at 48 kHz but would alias to 4 kHz at 16 kHz.
        let input = sine(12_000.0, 48_000, 0.5, 10_000.0);
        let output = resample(&input, 48_000, 16_000).unwrap();
        let middle = &output[output.len() / 10..output.len() * 9 / 10];
        assert!(
            rms(middle) < 10_000.0 * 0.001,
            "alias leaked: rms {}",
            rms(middle)
        );
    }

    #[test]
    fn streaming_in_odd_pieces_matches_one_pass() {
        let input = sine(300.0, 24_000, 0.3, 8_000.0);
        let mut whole = Resampler::new(24_000, 16_000).unwrap();
        let expected = whole.process(&input);
        let mut pieces = Resampler::new(24_000, 16_000).unwrap();
        let mut got = Vec::new();
        for piece in input.chunks(97) {
            pieces.process_into(piece, &mut got);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn equal_rates_pass_through_and_bad_rates_are_named() {
        let input = vec![1, -2, 3];
        assert_eq!(resample(&input, 16_000, 16_000).unwrap(), input);
        assert_eq!(
            Resampler::new(0, 16_000).unwrap_err(),
            ResampleError::UnsupportedRate(0)
        );
        assert!(matches!(
            Resampler::new(16_001, 44_099),
            Err(ResampleError::RatioTooComplex { .. })
        ));
    }

    #[test]
    fn frame_buffer_cuts_20ms_frames_and_pads_the_tail() {
        let mut frames = FrameBuffer::new();
        assert!(frames.push(&[1; 300]).is_empty());
        let out = frames.push(&[2; 400]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|f| f.len() == FRAME_SAMPLES));
        assert_eq!(out[0][299], 1);
        assert_eq!(out[0][300], 2);
        let tail = frames.finish().unwrap();
        assert_eq!(tail.len(), FRAME_SAMPLES);
        assert_eq!(&tail[..60], &[2; 60]);
        assert_eq!(tail[60], 0);
        assert!(frames.finish().is_none());
    }
}

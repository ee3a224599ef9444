//! Opus, the browser's voice codec, at the pipeline's 16 kHz.
//!
//! WebRTC carries Opus with a 48 kHz RTP clock; the pipeline works in 20 ms frames of 16 kHz
//! PCM16 ([`crate::audio::FRAME_SAMPLES`]). libopus encodes from and decodes to 16 kHz itself:
//! Opus packets do not depend on the rate they are coded at, and decoding a fullband packet at
//! 16 kHz drops the bands above 8 kHz inside the codec, so nothing aliases and no separate
//! resampling pass is needed in either direction. [`VoiceEncoder`] turns one pipeline frame
//! into one packet; [`VoiceDecoder`] turns packets (or the absence of one) back into frames.

use std::collections::VecDeque;

use crate::audio::{FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};

/// The RTP clock rate of Opus (`opus/48000/2`), whatever rate the audio is coded at.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;

/// Bit rate of the bot's voice: plenty for wideband speech, small next to any link.
pub const VOICE_BITRATE: i32 = 32_000;

/// Opus encoder effort, 0 (cheapest) to 10.
pub const VOICE_COMPLEXITY: i32 = 5;

/// The longest Opus packet (120 ms) in samples at the pipeline's rate.
const MAX_PACKET_SAMPLES: usize = 120 * PIPELINE_SAMPLE_RATE as usize / 1_000;

/// Upper bound on an encoded 20 ms packet (RFC 6716 allows up to 1275 bytes per frame).
const MAX_PACKET_BYTES: usize = 1_275;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("expected a frame of {expected} samples, got {got}")]
    FrameLength { expected: usize, got: usize },
}

/// Encodes the bot's 16 kHz frames as wideband mono Opus packets, one per 20 ms frame.
pub struct VoiceEncoder {
    opus: opus::Encoder,
}

impl VoiceEncoder {
    pub fn new() -> Result<Self, CodecError> {
        let mut opus = opus::Encoder::new(
            PIPELINE_SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::Voip,
        )?;
        opus.set_bitrate(opus::Bitrate::Bits(VOICE_BITRATE))?;
        // Complexity 10 (the default) spends most of a call's media CPU on noise-shaping
        // search; 5 keeps speech quality and lets one core carry far more calls.
        opus.set_complexity(VOICE_COMPLEXITY)?;
        // In-band FEC lets a browser rebuild a lost packet from the next one.
        opus.set_inband_fec(true)?;
        opus.set_packet_loss_perc(5)?;
        Ok(Self { opus })
    }

    /// Encodes one 20 ms frame of 16 kHz audio ([`FRAME_SAMPLES`] samples).
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, CodecError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameLength {
                expected: FRAME_SAMPLES,
                got: frame.len(),
            });
        }
        Ok(self.opus.encode_vec(frame, MAX_PACKET_BYTES)?)
    }
}

/// Decodes the student's Opus packets to 16 kHz audio and cuts it into 20 ms pipeline frames.
pub struct VoiceDecoder {
    opus: opus::Decoder,
    decoded: Vec<i16>,
    pending: VecDeque<i16>,
    /// Duration of the last good packet, the length to conceal when one goes missing.
    last_packet_samples: usize,
}

impl VoiceDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            opus: opus::Decoder::new(PIPELINE_SAMPLE_RATE, opus::Channels::Mono)?,
            decoded: vec![0; MAX_PACKET_SAMPLES],
            pending: VecDeque::with_capacity(2 * FRAME_SAMPLES),
            last_packet_samples: FRAME_SAMPLES,
        })
    }

    /// Decodes one received packet (stereo packets are mixed down to mono).
    pub fn decode(&mut self, packet: &[u8]) -> Result<(), CodecError> {
        if packet.is_empty() {
            // An empty payload means "nothing sent", not a lost packet.
            return Ok(());
        }
        let decoded = self.opus.decode(packet, &mut self.decoded, false)?;
        self.last_packet_samples = decoded;
        self.pending.extend(&self.decoded[..decoded]);
        Ok(())
    }

    /// Fills in for one lost packet with Opus packet-loss concealment.
    pub fn conceal_lost_packet(&mut self) -> Result<(), CodecError> {
        let len = self.last_packet_samples;
        let decoded = self.opus.decode(&[], &mut self.decoded[..len], false)?;
        self.pending.extend(&self.decoded[..decoded]);
        Ok(())
    }

    /// The next complete 20 ms pipeline frame, if enough audio has been decoded.
    pub fn next_frame(&mut self) -> Option<Vec<i16>> {
        (self.pending.len() >= FRAME_SAMPLES).then(|| self.pending.drain(..FRAME_SAMPLES).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq_hz: f64, rate: u32, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                let t = n as f64 / rate as f64;
                (amplitude * (2.0 * std::f64::consts::PI * freq_hz * t).sin()).round() as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let energy: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
        (energy / samples.len() as f64).sqrt()
    }

    /// Frequency from zero crossings: accurate to a few hertz for a clean tone over a second.
    fn tone_frequency(samples: &[i16], rate: u32) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f64 / 2.0 / (samples.len() as f64 / rate as f64)
    }

    #[test]
    fn opus_round_trip_keeps_a_tones_frequency_and_level() {
        let mut encoder = VoiceEncoder::new().unwrap();
        let mut decoder = VoiceDecoder::new().unwrap();
        let input = tone(440.0, PIPELINE_SAMPLE_RATE, 8_000.0, 50 * FRAME_SAMPLES);
        let mut output = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES) {
            let packet = encoder.encode(frame).unwrap();
            assert!(
                packet.len() < 200,
                "a 20 ms packet at 32 kbit/s is about 80 bytes"
            );
            decoder.decode(&packet).unwrap();
            while let Some(frame) = decoder.next_frame() {
                assert_eq!(frame.len(), FRAME_SAMPLES);
                output.extend(frame);
            }
        }
        assert_eq!(output.len(), input.len());
        // Skip the codec's and filters' start-up, then compare one steady second.
        let steady = &output[5 * FRAME_SAMPLES..];
        let level = rms(steady) / rms(&input[5 * FRAME_SAMPLES..]);
        assert!(
            (0.85..1.15).contains(&level),
            "level changed by a factor of {level}"
        );
        let freq = tone_frequency(steady, PIPELINE_SAMPLE_RATE);
        assert!((freq - 440.0).abs() < 5.0, "440 Hz came back as {freq} Hz");
    }

    #[test]
    fn lost_packets_are_concealed_with_audio_of_the_same_length() {
        let mut encoder = VoiceEncoder::new().unwrap();
        let mut decoder = VoiceDecoder::new().unwrap();
        let input = tone(300.0, PIPELINE_SAMPLE_RATE, 8_000.0, 20 * FRAME_SAMPLES);
        let mut frames = 0;
        for (i, frame) in input.chunks(FRAME_SAMPLES).enumerate() {
            let packet = encoder.encode(frame).unwrap();
            if i == 10 {
                decoder.conceal_lost_packet().unwrap();
                let concealed = decoder.next_frame().expect("a concealed 20 ms frame");
                // Concealment continues the tone rather than dropping to silence.
                assert!(rms(&concealed) > 1_000.0, "concealment was near silence");
                frames += 1;
            } else {
                decoder.decode(&packet).unwrap();
            }
            while decoder.next_frame().is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 20);
    }

    #[test]
    fn encoder_rejects_a_frame_of_the_wrong_length() {
        let mut encoder = VoiceEncoder::new().unwrap();
        let err = encoder.encode(&[0; 100]).unwrap_err();
        assert_eq!(err.to_string(), "expected a frame of 320 samples, got 100");
    }

    #[test]
    fn decoder_rejects_garbage_packets_with_an_error() {
        let mut decoder = VoiceDecoder::new().unwrap();
        // TOC byte for code 3 (arbitrary frame count) with no frame count byte: malformed.
        assert!(decoder.decode(&[0x03]).is_err());
    }

    /// A browser codes at 48 kHz (fullband); what the 16 kHz pipeline cannot carry must vanish,
    /// not fold back into the speech band, while speech frequencies come through.
    #[test]
    fn fullband_packets_decode_to_16khz_without_aliasing() {
        let decode_tone = |freq: f64| {
            let mut browser = opus::Encoder::new(
                OPUS_SAMPLE_RATE,
                opus::Channels::Mono,
                opus::Application::Audio,
            )
            .unwrap();
            browser.set_bitrate(opus::Bitrate::Bits(96_000)).unwrap();
            let mut decoder = VoiceDecoder::new().unwrap();
            let mut out = Vec::new();
            for frame in tone(freq, OPUS_SAMPLE_RATE, 8_000.0, 48_000).chunks(960) {
                decoder
                    .decode(&browser.encode_vec(frame, MAX_PACKET_BYTES).unwrap())
                    .unwrap();
                while let Some(frame) = decoder.next_frame() {
                    out.extend(frame);
                }
            }
            out.split_off(4 * FRAME_SAMPLES)
        };
        let speech_band = decode_tone(1_000.0);
        let level = rms(&speech_band) / (8_000.0 / 2f64.sqrt());
        assert!(
            (0.8..1.2).contains(&level),
            "1 kHz came through at {level} of its level"
        );
        let freq = tone_frequency(&speech_band, PIPELINE_SAMPLE_RATE);
        assert!((freq - 1_000.0).abs() < 5.0, "1 kHz came back as {freq} Hz");
        // 12 kHz would alias onto 4 kHz.
        let above = rms(&decode_tone(12_000.0));
        assert!(above < 80.0, "12 kHz left RMS {above} (tone RMS 5657)");
    }

    #[test]
    fn each_packet_duration_becomes_a_third_as_many_pipeline_samples() {
        // Opus packets may last 10, 20, 40 or 60 ms; the pipeline still gets whole 20 ms frames.
        let mut wideband = opus::Encoder::new(
            OPUS_SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::Voip,
        )
        .unwrap();
        let mut decoder = VoiceDecoder::new().unwrap();
        let mut frames = 0;
        for packet_ms in [10usize, 20, 40, 60, 10] {
            let samples = tone(500.0, OPUS_SAMPLE_RATE, 8_000.0, packet_ms * 48);
            decoder
                .decode(&wideband.encode_vec(&samples, MAX_PACKET_BYTES).unwrap())
                .unwrap();
            while let Some(frame) = decoder.next_frame() {
                assert_eq!(frame.len(), FRAME_SAMPLES);
                frames += 1;
            }
        }
        assert_eq!(frames, (10 + 20 + 40 + 60 + 10) / 20);
    }
}

//! CPU cost of one WebRTC call's media work: per 20 ms, the bot's frame is upsampled to 48 kHz
//! and Opus-encoded, and the student's packet is Opus-decoded and downsampled to 16 kHz.
//!
//!   cargo run -p agent --release --example webrtc_media_cost
//!
//! Prints one JSON line: microseconds of CPU (this thread's on-CPU time from Linux's
//! `/proc/thread-self/schedstat`, so other load on the machine does not inflate it) and of wall
//! time per call-second, and the calls one core could carry for media alone.

use std::time::Instant;

use agent::audio::{FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::codec::{VoiceDecoder, VoiceEncoder};

const SECONDS: usize = 60;

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux) gives the thread's CPU time");
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat format")
}
const FRAMES_PER_SECOND: usize = 50;

fn voiced_frame(frame_index: usize) -> Vec<i16> {
    // A 150 Hz buzz with harmonics, amplitude-modulated like syllables: speech-like for a codec.
    (0..FRAME_SAMPLES)
        .map(|i| {
            let t = (frame_index * FRAME_SAMPLES + i) as f64 / PIPELINE_SAMPLE_RATE as f64;
            let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let buzz: f64 = (1..=12)
                .map(|h| (2.0 * std::f64::consts::PI * 150.0 * h as f64 * t).sin() / h as f64)
                .sum();
            (4_000.0 * envelope * buzz) as i16
        })
        .collect()
}

fn main() {
    let frames: Vec<Vec<i16>> = (0..FRAMES_PER_SECOND).map(voiced_frame).collect();
    // The student's packets, encoded by a separate encoder as the browser would.
    let mut browser = VoiceEncoder::new().expect("encoder");
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| browser.encode(frame).expect("encode"))
        .collect();

    let mut encoder = VoiceEncoder::new().expect("encoder");
    let mut decoder = VoiceDecoder::new().expect("decoder");
    let mut out_bytes = 0usize;
    let mut in_frames = 0usize;
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    for _ in 0..SECONDS {
        for (frame, packet) in frames.iter().zip(&packets) {
            out_bytes += encoder.encode(frame).expect("encode").len();
            decoder.decode(packet).expect("decode");
            while decoder.next_frame().is_some() {
                in_frames += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu_ns = thread_cpu_ns() - cpu_started;
    assert_eq!(in_frames, SECONDS * FRAMES_PER_SECOND);

    let cpu_us = cpu_ns as f64 / 1e3 / SECONDS as f64;
    let wall_us = elapsed.as_secs_f64() * 1e6 / SECONDS as f64;
    println!(
        "{{\"benchmark\":\"webrtc_media_cost\",\"call_seconds\":{SECONDS},\"cpu_us_per_call_second\":{:.0},\"wall_us_per_call_second\":{:.0},\"calls_per_core_media_only\":{:.0},\"outbound_kbit_per_s\":{:.1}}}",
        cpu_us,
        wall_us,
        1e6 / cpu_us,
        out_bytes as f64 * 8.0 / SECONDS as f64 / 1000.0
    );
}

//! CPU cost of concurrent WebRTC calls through [`WebRtcTransport`], over loopback.
//!
//!   cargo run -p agent --release --example webrtc_calls -- [calls, default 20] [seconds, default 10]
//!
//! Each call is the transport's side in full (SRTP, RTP/RTCP, interceptors, Opus decode of the
//! student, Opus encode of the bot on its 20 ms clock) against an in-process webrtc-rs peer
//! standing in for the browser. The peer sends pre-encoded packets and does not decode what it
//! receives, so its share is networking only; the figure is therefore an upper bound on the
//! server's cost. Prints one JSON line with the process's CPU time (Linux `/proc/self/stat`) per
//! call-second while all calls stream both ways.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::audio::{FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::codec::VoiceEncoder;
use agent::transport::webrtc::{AcceptedOffer, WebRtcConfig, WebRtcTransport};
use agent::transport::TransportEvent;
use bytes::Bytes;
use webrtc::media::Sample;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

const FRAME: Duration = Duration::from_millis(20);

/// User plus system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn voiced_frame(frame_index: usize) -> Vec<i16> {
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

/// The browser's part: sends `packets` in a loop on a 20 ms clock and counts what it receives.
async fn student_peer(
    transport: &WebRtcTransport,
    packets: Arc<Vec<Bytes>>,
    received: Arc<AtomicU64>,
) -> (Arc<RTCPeerConnection>, AcceptedOffer) {
    let (peer, microphone) = agent::transport::webrtc::browser_peer().await.unwrap();
    peer.on_track(Box::new(move |track, receiver, _| {
        let received = Arc::clone(&received);
        tokio::spawn(async move { while receiver.read_rtcp().await.is_ok() {} });
        tokio::spawn(async move {
            while track.read_rtp().await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
        Box::pin(async {})
    }));

    let offer = peer.create_offer(None).await.unwrap();
    let mut gathered = peer.gathering_complete_promise().await;
    peer.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    let offer_sdp = peer.local_description().await.unwrap().sdp;
    let accepted = transport.accept_offer(&offer_sdp).await.unwrap();
    let answer = RTCSessionDescription::answer(accepted.answer_sdp.clone()).unwrap();
    peer.set_remote_description(answer).await.unwrap();

    tokio::spawn(async move {
        let mut clock = tokio::time::interval(FRAME);
        for packet in packets.iter().cycle() {
            clock.tick().await;
            let sample = Sample {
                data: packet.clone(),
                duration: FRAME,
                ..Default::default()
            };
            if microphone.write_sample(&sample).await.is_err() {
                return;
            }
        }
    });
    (peer, accepted)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(20, |a| a.parse().expect("calls"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("seconds"));

    let mut encoder = VoiceEncoder::new().unwrap();
    let packets: Arc<Vec<Bytes>> = Arc::new(
        (0..50)
            .map(|i| Bytes::from(encoder.encode(&voiced_frame(i)).unwrap()))
            .collect(),
    );
    let transport = WebRtcTransport::new(WebRtcConfig::default()).unwrap();

    let heard = Arc::new(AtomicU64::new(0));
    let played = Arc::new(AtomicU64::new(0));
    let mut sessions = Vec::new();
    for _ in 0..calls {
        let (peer, accepted) =
            student_peer(&transport, Arc::clone(&packets), Arc::clone(&played)).await;
        let AcceptedOffer { io, connection, .. } = accepted;
        let (mut audio_in, audio_out, mut events) = (io.audio_in, io.audio_out, io.events);
        let connected = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        assert_eq!(
            connected.ok().flatten(),
            Some(TransportEvent::Connected),
            "call did not connect"
        );
        // The pipeline's part: take in the student, keep the bot talking.
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            while audio_in.recv().await.is_some() {
                heard.fetch_add(1, Ordering::Relaxed);
            }
        });
        tokio::spawn(async move {
            for frame_index in 0.. {
                if audio_out
                    .send(voiced_frame(frame_index % 50))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        sessions.push((peer, connection));
    }

    // Let every call settle, then measure a steady stretch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (heard_before, played_before) = (
        heard.load(Ordering::Relaxed),
        played.load(Ordering::Relaxed),
    );
    let cpu_before = process_cpu();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = process_cpu() - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    let heard_frames = heard.load(Ordering::Relaxed) - heard_before;
    let played_packets = played.load(Ordering::Relaxed) - played_before;

    for (peer, connection) in sessions {
        connection.close().await;
        peer.close().await.unwrap();
    }

    let expected = calls as f64 * elapsed * 50.0;
    let call_seconds = calls as f64 * elapsed;
    println!(
        "{{\"benchmark\":\"webrtc_calls\",\"calls\":{calls},\"seconds\":{elapsed:.1},\"cpu_ms_per_call_second\":{:.2},\"calls_per_core\":{:.0},\"student_frames_delivered\":{:.3},\"bot_packets_delivered\":{:.3}}}",
        cpu.as_secs_f64() * 1e3 / call_seconds,
        call_seconds / cpu.as_secs_f64().max(1e-9),
        heard_frames as f64 / expected,
        played_packets as f64 / expected,
    );
}

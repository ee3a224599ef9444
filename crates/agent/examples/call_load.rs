//! Many calls at once on one machine, running the workload of the Pipecat anchor
//! (`notes/pipecat-anchor.md`): a looping caller who says three sentences per 30 s, real VAD
//! (earshot), stand-in STT / LLM / TTS with the anchor's timings, and optionally real Opus in
//! and out (the server's side of it: decoding the caller's packets, encoding the bot's frames).
//!
//! It reports, over the measurement window:
//! - pipeline overhead per turn: student speech end → first bot frame handed to the transport,
//!   minus the turn-end silence and the stand-ins' configured latencies;
//! - playout lateness: each reply's frame k is due 20·k ms after its first frame;
//! - process CPU (cores) and resident memory per call.
//!
//! cargo run --release -p agent --example call_load -- --calls 200 --opus [--warmup 10] [--measure 30]
//! The last line of output is one JSON object.

use std::sync::Arc;
use std::time::Duration;

use agent::audio::{resample, AudioChunk, FRAME_SAMPLES, PIPELINE_SAMPLE_RATE};
use agent::codec::{VoiceDecoder, VoiceEncoder};
use agent::services::{
    BoxStream, ChatRequest, LanguageModel, ServiceError, SpeechToText, SttEvent, SttInput,
    SttSession, TextToSpeech,
};
use agent::transport::{TransportEvent, TransportIo, OUTPUT_QUEUE_FRAMES};
use agent::vad::EarshotVadFactory;
use agent::{AgentEvent, Call, CallConfig, NoHook, Services};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

const LOOP_FRAMES: usize = 1_500; // 30 s
const SLOT_FRAMES: usize = 500; // 10 s
const SENTENCES: [&str; 3] = [
    "Hello I would like to book a table for two people tonight.",
    "Can you tell me your opening hours for tomorrow please?",
    "Thanks that sounds perfect and see you then.",
];
const REPLY: &str =
    "Sure, I can certainly help you with that request right away. Let me check all the details for you now.";
const STT_FINAL_DELAY: Duration = Duration::from_millis(100);
const LLM_WORD_INTERVAL: Duration = Duration::from_millis(15);
const TTS_SENTENCE_FRAMES: usize = 100; // 2.000 s
const REPLY_FRAMES: usize = 2 * TTS_SENTENCE_FRAMES;
const STOP_SILENCE: Duration = Duration::from_millis(600);

/// The anchor's recogniser: 100 ms after the end of speech, a fixed final transcript.
struct AnchorStt;

#[async_trait]
impl SpeechToText for AnchorStt {
    fn name(&self) -> &'static str {
        "anchor-stt"
    }
    async fn open(&self) -> Result<SttSession, ServiceError> {
        let (input, mut audio) = mpsc::channel::<SttInput>(64);
        let (events_tx, events) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut buffered: Vec<i16> = Vec::new();
            let mut in_speech = false;
            while let Some(input) = audio.recv().await {
                match input {
                    SttInput::Audio(frame) if in_speech => buffered.extend_from_slice(&frame),
                    SttInput::Audio(_) => {}
                    SttInput::SpeechStarted => in_speech = true,
                    SttInput::SpeechEnded => {
                        in_speech = false;
                        buffered.clear();
                        sleep(STT_FINAL_DELAY).await;
                        let text = "I would like some help please.".to_string();
                        if events_tx.send(SttEvent::Final { text }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(SttSession { input, events })
    }
}

/// The anchor's model: the fixed reply as 20 word chunks, one every 15 ms.
struct AnchorLlm;

#[async_trait]
impl LanguageModel for AnchorLlm {
    fn name(&self) -> &'static str {
        "anchor-llm"
    }
    async fn stream_reply(
        &self,
        _: ChatRequest,
    ) -> Result<BoxStream<Result<String, ServiceError>>, ServiceError> {
        let start = Instant::now();
        let words: Vec<String> = REPLY.split_inclusive(' ').map(str::to_string).collect();
        Ok(futures::stream::iter(words.into_iter().enumerate())
            .then(move |(i, word)| async move {
                sleep_until(start + LLM_WORD_INTERVAL * (i as u32 + 1)).await;
                Ok(word)
            })
            .boxed())
    }
}

/// The anchor's synthesiser: per sentence 2.000 s of a 400 Hz sine at 0.3 full scale, frame k
/// yielded at start + 20·k ms.
struct AnchorTts {
    tone: Arc<Vec<Vec<i16>>>,
}

#[async_trait]
impl TextToSpeech for AnchorTts {
    fn name(&self) -> &'static str {
        "anchor-tts"
    }
    async fn speak(
        &self,
        _: &str,
    ) -> Result<BoxStream<Result<AudioChunk, ServiceError>>, ServiceError> {
        let start = Instant::now();
        let tone = self.tone.clone();
        Ok(futures::stream::iter(0..TTS_SENTENCE_FRAMES)
            .then(move |k| {
                let tone = tone.clone();
                async move {
                    sleep_until(start + Duration::from_millis(20 * k as u64)).await;
                    Ok(AudioChunk::new(tone[k].clone(), PIPELINE_SAMPLE_RATE))
                }
            })
            .boxed())
    }
}

fn espeak(text: &str) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", "-s", "160", text])
        .output()
        .expect("espeak-ng is installed");
    let rate = u32::from_le_bytes(out.stdout[24..28].try_into().unwrap());
    let samples: Vec<i16> = out.stdout[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    resample(&samples, rate, PIPELINE_SAMPLE_RATE).unwrap()
}

/// The caller's 30 s loop as 1 500 frames: per 10 s slot, 0.5 s silence, a sentence, silence.
fn caller_loop() -> Vec<Vec<i16>> {
    let mut frames = Vec::with_capacity(LOOP_FRAMES);
    for sentence in SENTENCES {
        let speech = espeak(sentence);
        let mut slot = vec![0i16; 25 * FRAME_SAMPLES];
        slot.extend_from_slice(&speech);
        slot.resize(SLOT_FRAMES * FRAME_SAMPLES, 0);
        frames.extend(slot.chunks(FRAME_SAMPLES).map(<[i16]>::to_vec));
    }
    frames
}

#[derive(Default)]
struct CallStats {
    overheads_us: Vec<i64>,
    lateness_us: Vec<i64>,
    frames: usize,
}

struct Args {
    calls: usize,
    opus: bool,
    warmup: Duration,
    measure: Duration,
}

fn parse_args() -> Args {
    let mut args = Args {
        calls: 50,
        opus: false,
        warmup: Duration::from_secs(10),
        measure: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--calls" => args.calls = value().parse().expect("--calls N"),
            "--opus" => args.opus = true,
            "--warmup" => {
                args.warmup = Duration::from_secs(value().parse().expect("--warmup SECONDS"))
            }
            "--measure" => {
                args.measure = Duration::from_secs(value().parse().expect("--measure SECONDS"))
            }
            other => panic!(
                "unknown argument {other}; use --calls N [--opus] [--warmup S] [--measure S]"
            ),
        }
    }
    args
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// One simulated caller plus the server side of its transport.
async fn run_caller(
    index: usize,
    args: Arc<Args>,
    audio: Arc<Vec<Vec<i16>>>,
    packets: Arc<Vec<Vec<u8>>>,
    services: Services,
    measure_from: Instant,
    measure_until: Instant,
) -> CallStats {
    let (student_tx, audio_in) = mpsc::channel(50);
    let (audio_out, mut bot_rx) = mpsc::channel(OUTPUT_QUEUE_FRAMES);
    let (events_tx, events_rx) = mpsc::channel(4);
    let io = TransportIo {
        audio_in,
        audio_out,
        events: events_rx,
    };
    let mut config = CallConfig::new("You are a helpful assistant.");
    config.turn.stop_after = STOP_SILENCE;
    config.idle.prompt_after = None;
    config.idle.end_after = None;
    let mut call = Call::start(config, services, Arc::new(NoHook), io);
    let mut events = call.events().unwrap();

    let mut decoder = args.opus.then(|| VoiceDecoder::new().unwrap());
    let mut encoder = args.opus.then(|| VoiceEncoder::new().unwrap());
    let mut stats = CallStats::default();
    let mut frame_index = index * LOOP_FRAMES / args.calls;
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut reply_start: Option<Instant> = None;
    let mut reply_frames = 0usize;
    let configured = STOP_SILENCE + STT_FINAL_DELAY + LLM_WORD_INTERVAL * 11;
    loop {
        tokio::select! {
            _ = clock.tick() => {
                if Instant::now() >= measure_until {
                    break;
                }
                let i = frame_index % LOOP_FRAMES;
                frame_index += 1;
                // The server's receive path: decode the caller's Opus packet to pipeline frames.
                if let Some(decoder) = decoder.as_mut() {
                    decoder.decode(&packets[i]).unwrap();
                    while let Some(frame) = decoder.next_frame() {
                        let _ = student_tx.try_send(frame);
                    }
                } else {
                    let _ = student_tx.try_send(audio[i].clone());
                }
            }
            Some(frame) = bot_rx.recv() => {
                let now = Instant::now();
                // The server's send path: encode the bot's frame for the wire.
                if let Some(encoder) = encoder.as_mut() {
                    std::hint::black_box(encoder.encode(&frame).unwrap());
                }
                let start = *reply_start.get_or_insert(now);
                let due = start + Duration::from_millis(20 * reply_frames as u64);
                reply_frames += 1;
                if reply_frames == REPLY_FRAMES {
                    reply_start = None;
                    reply_frames = 0;
                }
                if now >= measure_from {
                    stats.frames += 1;
                    stats.lateness_us.push(now.saturating_duration_since(due).as_micros() as i64);
                }
            }
            Some(event) = events.recv() => {
                if let AgentEvent::TurnMetrics(metrics) = event {
                    if let (Some(latency), true) = (metrics.student_stop_to_bot_audio, Instant::now() >= measure_from) {
                        stats.overheads_us.push(latency.as_micros() as i64 - configured.as_micros() as i64);
                    }
                }
            }
        }
    }
    let _ = events_tx.send(TransportEvent::Disconnected).await;
    call.end();
    call.ended().await;
    stats
}

fn main() {
    let args = Arc::new(parse_args());
    let audio = Arc::new(caller_loop());
    let packets: Arc<Vec<Vec<u8>>> = Arc::new(if args.opus {
        // The browser's side, done once: every caller sends the same encoded loop.
        let mut encoder = VoiceEncoder::new().unwrap();
        audio.iter().map(|f| encoder.encode(f).unwrap()).collect()
    } else {
        Vec::new()
    });
    let tone: Arc<Vec<Vec<i16>>> = Arc::new(
        (0..TTS_SENTENCE_FRAMES)
            .map(|k| {
                (0..FRAME_SAMPLES)
                    .map(|i| {
                        let t = (k * FRAME_SAMPLES + i) as f64 / PIPELINE_SAMPLE_RATE as f64;
                        (0.3 * 32767.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()) as i16
                    })
                    .collect()
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rss_before = rss_mib();
    let result = runtime.block_on(async {
        let services = Services {
            stt: Arc::new(AnchorStt),
            llm: Arc::new(AnchorLlm),
            tts: Arc::new(AnchorTts { tone }),
            vad: Arc::new(EarshotVadFactory),
        };
        let begin = Instant::now();
        let measure_from = begin + args.warmup;
        let measure_until = measure_from + args.measure;
        let callers: Vec<_> = (0..args.calls)
            .map(|i| {
                tokio::spawn(run_caller(
                    i,
                    args.clone(),
                    audio.clone(),
                    packets.clone(),
                    services.clone(),
                    measure_from,
                    measure_until,
                ))
            })
            .collect();
        sleep_until(measure_from).await;
        let cpu_start = cpu_seconds();
        let wall_start = std::time::Instant::now();
        sleep_until(measure_until - Duration::from_secs(1)).await;
        let rss = rss_mib();
        sleep_until(measure_until).await;
        let cores = (cpu_seconds() - cpu_start) / wall_start.elapsed().as_secs_f64();
        let mut all = CallStats::default();
        for caller in callers {
            let stats = caller.await.unwrap();
            all.overheads_us.extend(stats.overheads_us);
            all.lateness_us.extend(stats.lateness_us);
            all.frames += stats.frames;
        }
        (all, cores, rss)
    });
    let (mut stats, cores, rss) = result;
    stats.overheads_us.sort_unstable();
    stats.lateness_us.sort_unstable();
    let late_frames = stats.lateness_us.iter().filter(|&&l| l > 20_000).count();
    let lateness_p99 = percentile(&stats.lateness_us, 0.99);
    let lateness_max = stats.lateness_us.last().copied().unwrap_or(0) as f64 / 1000.0;
    let rss_per_call = (rss - rss_before) / args.calls as f64;
    let on_time = lateness_max <= 20.0 && stats.frames > 0;
    println!(
        "calls={} opus={} turns={} overhead p50={:.2} ms p99={:.2} ms | frames={} late(>20ms)={} lateness p99={:.2} ms max={:.2} ms | cpu={:.2} cores rss={:.1} MiB ({:.2} MiB/call)",
        args.calls,
        args.opus,
        stats.overheads_us.len(),
        percentile(&stats.overheads_us, 0.5),
        percentile(&stats.overheads_us, 0.99),
        stats.frames,
        late_frames,
        lateness_p99,
        lateness_max,
        cores,
        rss,
        rss_per_call
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "agent_call_load",
            "calls": args.calls,
            "opus": args.opus,
            "turns": stats.overheads_us.len(),
            "overhead_ms_p50": percentile(&stats.overheads_us, 0.5),
            "overhead_ms_p99": percentile(&stats.overheads_us, 0.99),
            "overhead_ms_max": stats.overheads_us.last().copied().unwrap_or(0) as f64 / 1000.0,
            "frames": stats.frames,
            "late_frames": late_frames,
            "lateness_ms_p99": lateness_p99,
            "lateness_ms_max": lateness_max,
            "all_on_time": on_time,
            "cpu_cores": cores,
            "rss_mib": rss,
            "rss_mib_per_call": rss_per_call,
        })
    );
}

//! Prometheus metrics: what an on-call engineer watches. `GET /metrics` serves them in the
//! Prometheus text format, only when `METRICS_TOKEN` is set and only to a request bearing it
//! (the numbers say how busy the service is and how often students are in crisis).
//!
//! The counters live in one process-wide [`Metrics`], fed where the events happen: rooms by the
//! call manager, turns, service errors and verdicts by each call's recorder. Gauges (live
//! calls, open sockets) are read at scrape time from their owners.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent::Stage;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domain::CrisisLevel;
use resilience::BreakerState;

use crate::state::AppState;

/// The counters of this process.
pub static METRICS: Metrics = Metrics::new();

/// Upper bounds of the latency histograms' buckets, in seconds.
const BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];
const STAGES: [Stage; 5] = [
    Stage::SpeechToText,
    Stage::LanguageModel,
    Stage::TextToSpeech,
    Stage::Hook,
    Stage::Transport,
];

pub struct Histogram {
    /// Counts per bucket (not cumulative), the last for anything above the largest bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

pub struct Metrics {
    pub rooms_opened: AtomicU64,
    pub calls_connected: AtomicU64,
    pub turns: AtomicU64,
    pub voice_to_voice: Histogram,
    pub llm_first_text: Histogram,
    pub tts_first_audio: Histogram,
    service_errors: [AtomicU64; STAGES.len()],
    /// Verdicts on student lines at concern and at crisis.
    concern_verdicts: AtomicU64,
    crisis_alerts: AtomicU64,
}

impl Metrics {
    const fn new() -> Self {
        Self {
            rooms_opened: AtomicU64::new(0),
            calls_connected: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            voice_to_voice: Histogram::new(),
            llm_first_text: Histogram::new(),
            tts_first_audio: Histogram::new(),
            service_errors: [const { AtomicU64::new(0) }; STAGES.len()],
            concern_verdicts: AtomicU64::new(0),
            crisis_alerts: AtomicU64::new(0),
        }
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn turn(&self, metrics: &agent::TurnMetrics) {
        Self::count(&self.turns);
        for (value, histogram) in [
            (metrics.student_stop_to_bot_audio, &self.voice_to_voice),
            (metrics.llm_first_token, &self.llm_first_text),
            (metrics.tts_first_audio, &self.tts_first_audio),
        ] {
            if let Some(value) = value {
                histogram.observe(value);
            }
        }
    }

    pub fn service_error(&self, stage: Stage) {
        if let Some(i) = STAGES.iter().position(|s| *s == stage) {
            Self::count(&self.service_errors[i]);
        }
    }

    pub fn verdict(&self, level: CrisisLevel) {
        match level {
            CrisisLevel::Crisis => Self::count(&self.crisis_alerts),
            CrisisLevel::Concern => Self::count(&self.concern_verdicts),
            CrisisLevel::None => {}
        }
    }

    /// The text format, with the gauges read now: live calls, open sockets, and the state of
    /// each cloud service's circuit breaker (none before the services are built, or with the
    /// offline models alone).
    pub fn render(
        &self,
        live_calls: usize,
        open_sockets: usize,
        breakers: &[(&'static str, BreakerState)],
    ) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let singles: [(&str, &str, &str, u64); 7] = [
            (
                "counsel_live_calls",
                "gauge",
                "Rooms open on this node (waiting for the browser or in a call).",
                live_calls as u64,
            ),
            (
                "counsel_transcript_sockets",
                "gauge",
                "Students' live transcript WebSockets open now.",
                open_sockets as u64,
            ),
            (
                "counsel_rooms_opened_total",
                "counter",
                "Rooms opened (sessions created).",
                load(&self.rooms_opened),
            ),
            (
                "counsel_calls_connected_total",
                "counter",
                "Calls whose WebRTC offer was answered.",
                load(&self.calls_connected),
            ),
            (
                "counsel_turns_total",
                "counter",
                "Counselor replies to a student turn.",
                load(&self.turns),
            ),
            (
                "counsel_crisis_alerts_total",
                "counter",
                "Student lines judged crisis (crisis resources shown).",
                load(&self.crisis_alerts),
            ),
            (
                "counsel_concern_verdicts_total",
                "counter",
                "Student lines judged concern.",
                load(&self.concern_verdicts),
            ),
        ];
        for (name, kind, help, value) in singles {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP counsel_service_errors_total Failures of a call's services, by stage.\n# TYPE counsel_service_errors_total counter"
        );
        for (stage, counter) in STAGES.iter().zip(&self.service_errors) {
            let _ = writeln!(
                out,
                "counsel_service_errors_total{{stage=\"{}\"}} {}",
                stage_name(*stage),
                load(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP counsel_service_breaker_state A cloud service's circuit breaker: 0 closed (calls go through), 1 half-open (one probe call allowed), 2 open (calls refused until it cools down).\n# TYPE counsel_service_breaker_state gauge"
        );
        for (service, state) in breakers {
            let value = match state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open { .. } => 2,
            };
            let _ = writeln!(
                out,
                "counsel_service_breaker_state{{service=\"{service}\"}} {value}"
            );
        }
        self.voice_to_voice.render(
            &mut out,
            "counsel_turn_voice_to_voice_seconds",
            "End of the student's speech to the counselor's first audio.",
        );
        self.llm_first_text.render(
            &mut out,
            "counsel_turn_llm_first_text_seconds",
            "Language model asked to its first text.",
        );
        self.tts_first_audio.render(
            &mut out,
            "counsel_turn_tts_first_audio_seconds",
            "Speech synthesis asked to its first audio.",
        );
        out
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::SpeechToText => "speech_to_text",
        Stage::LanguageModel => "language_model",
        Stage::TextToSpeech => "text_to_speech",
        Stage::Hook => "hook",
        Stage::Transport => "transport",
    }
}

/// The secret a scraper presents. Its `Debug` form never shows it.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    pub fn parse(token: &str) -> Result<MetricsToken, String> {
        if token.len() < 16 {
            return Err("must be at least 16 characters (it guards how busy counsel is and how often students are in crisis)".into());
        }
        Ok(MetricsToken(token.to_owned()))
    }

    fn admits(&self, presented: &str) -> bool {
        crate::calls::constant_time_eq(presented.as_bytes(), self.0.as_bytes())
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// `GET /metrics`, only when `METRICS_TOKEN` is set.
pub fn routes(state: &AppState) -> Router<AppState> {
    match state.config.metrics_token {
        Some(_) => Router::new().route("/metrics", get(scrape)),
        None => Router::new(),
    }
}

async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let presented = crate::auth::bearer_token(&headers).unwrap_or_default();
    let admitted = state
        .config
        .metrics_token
        .as_ref()
        .is_some_and(|token| token.admits(presented));
    if !admitted {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    let body = METRICS.render(
        state.calls.active_calls(),
        state.sockets.open(),
        &state.calls.breaker_states(),
    );
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let metrics = Metrics::new();
        metrics.voice_to_voice.observe(Duration::from_millis(80));
        metrics.voice_to_voice.observe(Duration::from_millis(1_200));
        metrics.voice_to_voice.observe(Duration::from_secs(30));
        metrics.service_error(Stage::LanguageModel);
        metrics.verdict(CrisisLevel::Crisis);
        let open = BreakerState::Open {
            retry_after: Duration::from_secs(30),
        };
        let text = metrics.render(
            2,
            1,
            &[("deepgram", BreakerState::Closed), ("gemini", open)],
        );
        for line in [
            "counsel_live_calls 2",
            "counsel_transcript_sockets 1",
            "counsel_crisis_alerts_total 1",
            "counsel_service_errors_total{stage=\"language_model\"} 1",
            "counsel_service_errors_total{stage=\"hook\"} 0",
            "counsel_service_breaker_state{service=\"deepgram\"} 0",
            "counsel_service_breaker_state{service=\"gemini\"} 2",
            "counsel_turn_voice_to_voice_seconds_bucket{le=\"0.1\"} 1",
            "counsel_turn_voice_to_voice_seconds_bucket{le=\"1\"} 1",
            "counsel_turn_voice_to_voice_seconds_bucket{le=\"1.5\"} 2",
            "counsel_turn_voice_to_voice_seconds_bucket{le=\"+Inf\"} 3",
            "counsel_turn_voice_to_voice_seconds_count 3",
            "counsel_turn_voice_to_voice_seconds_sum 31.28",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}

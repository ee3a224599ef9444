use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};

/// Trip when the share of failed calls over a sliding window passes a limit
/// (e.g. "more than 10 % over 5 minutes, once at least 20 calls were made").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRateRule {
    /// Fraction of failed calls (0..1) that, when exceeded, opens the breaker.
    pub max_error_rate: f64,
    pub window: Duration,
    /// Fewer calls than this in the window never trip the rule (one failure is not a trend).
    pub min_calls: u32,
}

impl ErrorRateRule {
    /// More than 10 % of calls failing over 5 minutes, with at least 10 calls.
    pub fn ten_percent_over_five_minutes() -> Self {
        Self {
            max_error_rate: 0.10,
            window: Duration::from_secs(300),
            min_calls: 10,
        }
    }
}

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// This many failures within `failure_window` open the breaker.
    pub failure_threshold: u32,
    pub failure_window: Duration,
    /// How long the breaker stays open before letting one probe call through.
    pub reset_timeout: Duration,
    /// An optional second way to trip: the error rate over a longer window.
    pub error_rate: Option<ErrorRateRule>,
}

impl BreakerConfig {
    /// `failure_threshold` failures within `failure_window` open it for `reset_timeout`.
    pub fn new(failure_threshold: u32, failure_window: Duration, reset_timeout: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            failure_window,
            reset_timeout,
            error_rate: None,
        }
    }

    /// Room and avatar providers (Daily, LiveKit, Beyond Presence): 5 failures, 60 s open.
    pub fn rooms_and_avatars() -> Self {
        Self::new(5, Duration::from_secs(60), Duration::from_secs(60))
    }

    /// Speech and language providers (Deepgram, Cartesia, Gemini): 3 failures, 45 s open.
    pub fn speech_and_language() -> Self {
        Self::new(3, Duration::from_secs(60), Duration::from_secs(45))
    }

    pub fn with_error_rate(mut self, rule: ErrorRateRule) -> Self {
        self.error_rate = Some(rule);
        self
    }

    fn history_window(&self) -> Duration {
        match self.error_rate {
            Some(rule) => rule.window.max(self.failure_window),
            None => self.failure_window,
        }
    }
}

/// The breaker refused a call without trying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen {
    /// When it is worth asking again (whole seconds, at least 1, suitable for `Retry-After`).
    pub retry_after: Duration,
}

impl std::fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit open; retry after {} s",
            self.retry_after.as_secs()
        )
    }
}

impl std::error::Error for BreakerOpen {}

/// What [`CircuitBreaker::call`] can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// Not attempted: the provider is known to be failing.
    Open(BreakerOpen),
    /// Attempted, and the call itself failed.
    Failed(E),
}

/// What a breaker is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        retry_after: Duration,
    },
    /// Open time is over: one probe call may go through (or is in flight).
    HalfOpen,
}

/// A per-provider circuit breaker. Clones share state, so one breaker can guard every call to
/// a provider from every task.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

struct Shared {
    config: BreakerConfig,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
}

enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

struct State {
    phase: Phase,
    /// Outcomes in the history window, oldest first: `true` for a failure.
    outcomes: VecDeque<(Instant, bool)>,
}

/// Keeps memory bounded however busy a provider is; far above any rate these windows see.
const MAX_REMEMBERED_OUTCOMES: usize = 100_000;

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, SystemClock)
    }

    pub fn with_clock(config: BreakerConfig, clock: impl Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                clock: Box::new(clock),
                state: Mutex::new(State {
                    phase: Phase::Closed,
                    outcomes: VecDeque::new(),
                }),
            }),
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    pub fn state(&self) -> BreakerState {
        let now = self.shared.clock.now();
        let mut state = self.lock();
        self.refresh(&mut state, now);
        match state.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } => BreakerState::Open {
                retry_after: retry_after(until - now),
            },
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make one call. The returned permit must be told how the call went; a permit
    /// dropped without a verdict (the call was cancelled) counts for nothing.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let now = self.shared.clock.now();
        let mut state = self.lock();
        self.refresh(&mut state, now);
        match &mut state.phase {
            Phase::Closed => Ok(Permit {
                breaker: self.clone(),
                probe: false,
                settled: false,
            }),
            Phase::Open { until } => Err(BreakerOpen {
                retry_after: retry_after(*until - now),
            }),
            Phase::HalfOpen {
                probe_in_flight: true,
            } => Err(BreakerOpen {
                retry_after: Duration::from_secs(1),
            }),
            Phase::HalfOpen { probe_in_flight } => {
                *probe_in_flight = true;
                Ok(Permit {
                    breaker: self.clone(),
                    probe: true,
                    settled: false,
                })
            }
        }
    }

    /// Runs `call` through the breaker; every error counts as a failure.
    pub async fn call<T, E, Fut>(&self, call: impl FnOnce() -> Fut) -> Result<T, CallError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(call, |_| true).await
    }

    /// Runs `call` through the breaker; errors for which `is_failure` is false (say, a 404 for
    /// something already deleted) count as successes: the provider answered properly.
    pub async fn call_classified<T, E, Fut>(
        &self,
        call: impl FnOnce() -> Fut,
        is_failure: impl FnOnce(&E) -> bool,
    ) -> Result<T, CallError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Open)?;
        match call().await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(error) => {
                if is_failure(&error) {
                    permit.failure();
                } else {
                    permit.success();
                }
                Err(CallError::Failed(error))
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves an open breaker whose time is up to half-open, and forgets outcomes older than
    /// the longest window.
    fn refresh(&self, state: &mut State, now: Instant) {
        if let Phase::Open { until } = state.phase {
            if now >= until {
                state.phase = Phase::HalfOpen {
                    probe_in_flight: false,
                };
            }
        }
        let window = self.shared.config.history_window();
        while let Some(&(at, _)) = state.outcomes.front() {
            if now.duration_since(at) > window {
                state.outcomes.pop_front();
            } else {
                break;
            }
        }
    }

    fn settle(&self, probe: bool, failed: bool) {
        let config = &self.shared.config;
        let now = self.shared.clock.now();
        let mut state = self.lock();
        self.refresh(&mut state, now);
        if probe {
            state.outcomes.clear();
            state.phase = if failed {
                Phase::Open {
                    until: now + config.reset_timeout,
                }
            } else {
                Phase::Closed
            };
            return;
        }
        if state.outcomes.len() == MAX_REMEMBERED_OUTCOMES {
            state.outcomes.pop_front();
        }
        state.outcomes.push_back((now, failed));
        // Only a closed breaker trips; late verdicts of calls that started before it opened
        // are remembered but change nothing else.
        if failed
            && matches!(state.phase, Phase::Closed)
            && should_trip(config, &state.outcomes, now)
        {
            state.outcomes.clear();
            state.phase = Phase::Open {
                until: now + config.reset_timeout,
            };
        }
    }

    fn release_probe(&self) {
        let mut state = self.lock();
        if let Phase::HalfOpen { probe_in_flight } = &mut state.phase {
            *probe_in_flight = false;
        }
    }
}

fn should_trip(config: &BreakerConfig, outcomes: &VecDeque<(Instant, bool)>, now: Instant) -> bool {
    let within = |window: Duration| {
        outcomes
            .iter()
            .filter(move |(at, _)| now.duration_since(*at) <= window)
    };
    let recent_failures = within(config.failure_window)
        .filter(|(_, failed)| *failed)
        .count();
    if recent_failures >= config.failure_threshold as usize {
        return true;
    }
    match config.error_rate {
        Some(rule) => {
            let (calls, failures) = within(rule.window)
                .fold((0usize, 0usize), |(calls, failures), (_, failed)| {
                    (calls + 1, failures + usize::from(*failed))
                });
            calls >= rule.min_calls as usize
                && calls > 0
                && failures as f64 / calls as f64 > rule.max_error_rate
        }
        None => false,
    }
}

fn retry_after(remaining: Duration) -> Duration {
    let whole_seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    Duration::from_secs(whole_seconds.max(1))
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.shared.config)
            .field("state", &self.state())
            .finish()
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; report the outcome with
/// [`success`](Permit::success) or [`failure`](Permit::failure).
#[must_use = "report the call's outcome, or it counts for nothing"]
pub struct Permit {
    breaker: CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// Whether this call is the single half-open probe that decides whether the breaker closes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, false);
    }

    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(self.probe, true);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        (CircuitBreaker::with_clock(config, clock.clone()), clock)
    }

    fn fail(breaker: &CircuitBreaker) {
        breaker
            .try_acquire()
            .expect("breaker should let the call through")
            .failure();
    }

    fn succeed(breaker: &CircuitBreaker) {
        breaker
            .try_acquire()
            .expect("breaker should let the call through")
            .success();
    }

    #[test]
    fn opens_after_the_threshold_of_failures_and_rejects_fast() {
        let (breaker, _clock) = breaker(BreakerConfig::speech_and_language());
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                retry_after: Duration::from_secs(45)
            }
        );
        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(45));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let (breaker, clock) = breaker(BreakerConfig::new(
            3,
            Duration::from_secs(10),
            Duration::from_secs(30),
        ));
        fail(&breaker);
        fail(&breaker);
        clock.advance(Duration::from_secs(11));
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker);
        fail(&breaker);
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn retry_after_counts_down_in_whole_seconds() {
        let (breaker, clock) = breaker(BreakerConfig::rooms_and_avatars());
        for _ in 0..5 {
            fail(&breaker);
        }
        clock.advance(Duration::from_millis(59_500));
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through_and_success_closes() {
        let (breaker, clock) = breaker(BreakerConfig::speech_and_language());
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(45));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.try_acquire().expect("one probe is allowed");
        assert!(probe.is_probe());
        assert!(
            breaker.try_acquire().is_err(),
            "a second call must wait for the probe"
        );
        probe.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        // A fresh start: old failures are forgotten.
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again_for_the_full_reset_time() {
        let (breaker, clock) = breaker(BreakerConfig::speech_and_language());
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(46));
        breaker.try_acquire().unwrap().failure();
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                retry_after: Duration::from_secs(45)
            }
        );
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot_for_another() {
        let (breaker, clock) = breaker(BreakerConfig::speech_and_language());
        for _ in 0..3 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(45));
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn error_rate_over_the_sliding_window_trips_the_breaker() {
        let rule = ErrorRateRule {
            max_error_rate: 0.10,
            window: Duration::from_secs(300),
            min_calls: 20,
        };
        // A failure threshold too high to matter here.
        let config = BreakerConfig::new(100, Duration::from_secs(60), Duration::from_secs(45))
            .with_error_rate(rule);
        let (breaker, clock) = breaker(config);
        for _ in 0..18 {
            succeed(&breaker);
            clock.advance(Duration::from_secs(10));
        }
        fail(&breaker);
        fail(&breaker);
        // 2 of 20 = 10 %: not *over* the limit.
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker);
        // 3 of 21 ≈ 14 %.
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn error_rate_needs_the_minimum_number_of_calls() {
        let rule = ErrorRateRule {
            max_error_rate: 0.10,
            window: Duration::from_secs(300),
            min_calls: 10,
        };
        let config = BreakerConfig::new(100, Duration::from_secs(60), Duration::from_secs(45))
            .with_error_rate(rule);
        let (breaker, _clock) = breaker(config);
        succeed(&breaker);
        fail(&breaker);
        fail(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "3 calls are too few to judge a rate"
        );
    }

    #[test]
    fn old_calls_slide_out_of_the_error_rate_window() {
        let rule = ErrorRateRule {
            max_error_rate: 0.10,
            window: Duration::from_secs(300),
            min_calls: 10,
        };
        let config = BreakerConfig::new(100, Duration::from_secs(60), Duration::from_secs(45))
            .with_error_rate(rule);
        let (breaker, clock) = breaker(config);
        // One failure among many successes long ago...
        fail(&breaker);
        for _ in 0..9 {
            succeed(&breaker);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        clock.advance(Duration::from_secs(301));
        // ...is forgotten: 1 failure in 10 recent calls is exactly 10 %, not over.
        for _ in 0..9 {
            succeed(&breaker);
        }
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn late_results_of_calls_started_before_opening_do_not_reopen_or_close() {
        let (breaker, clock) = breaker(BreakerConfig::speech_and_language());
        let slow_call = breaker.try_acquire().unwrap();
        for _ in 0..3 {
            fail(&breaker);
        }
        slow_call.success();
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
        clock.advance(Duration::from_secs(45));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test]
    async fn call_counts_errors_and_skips_the_call_when_open() {
        let (breaker, _clock) = breaker(BreakerConfig::new(
            2,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        for _ in 0..2 {
            let result: Result<(), CallError<&str>> = breaker.call(|| async { Err("boom") }).await;
            assert_eq!(result, Err(CallError::Failed("boom")));
        }
        let mut called = false;
        let result: Result<(), CallError<&str>> = breaker
            .call(|| {
                called = true;
                async { Ok(()) }
            })
            .await;
        assert!(matches!(result, Err(CallError::Open(_))));
        assert!(!called, "an open breaker must not make the call");
    }

    #[tokio::test]
    async fn call_classified_does_not_count_expected_errors() {
        let (breaker, _clock) = breaker(BreakerConfig::new(
            1,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        let result: Result<(), _> = breaker
            .call_classified(|| async { Err(404) }, |status| *status >= 500)
            .await;
        assert_eq!(result, Err(CallError::Failed(404)));
        assert_eq!(breaker.state(), BreakerState::Closed);
        let _ = breaker
            .call_classified(|| async { Err::<(), _>(503) }, |status| *status >= 500)
            .await;
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }
}

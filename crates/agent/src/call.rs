//! A call: the public entry point that wires a transport to the speech and language services.
//!
//! Each call is three kinds of tokio task joined by bounded channels:
//! - the *listener* reads student frames, scores them with the VAD, detects turns and feeds the
//!   speech-to-text session;
//! - the *conductor* (one per call) owns the conversation: it collects transcripts, decides
//!   when to answer, interrupts, handles silence and reports events;
//! - a *reply* task per bot reply (see [`crate::reply`]) writes and speaks the answer.
//!
//! Ending a call (or dropping its handle) stops the conductor, which aborts the others: no task,
//! stream or buffer outlives the call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{BotState, Speaker};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audio::FRAME_SAMPLES;
use crate::conversation::{Conversation, ConversationLimits};
use crate::events::{
    AgentEvent, CallError, EndReason, Stage, TranscriptLine, TurnMetrics, EVENT_QUEUE,
};
use crate::hook::{Utterance, UtteranceHook};
use crate::reply::{
    review_detached, run_reply, Ledger, ReplyContext, ReplyNote, ReplySource, Timeouts,
};
use crate::services::{
    ChatRole, LanguageModel, ServiceError, SpeechToText, SttEvent, SttInput, TextToSpeech,
    VadFactory, VoiceActivityDetector,
};
use crate::transport::{TransportEvent, TransportIo};
use crate::vad::{TurnChange, TurnDetector, TurnParams};

/// Student turns the hook sees as context.
const HOOK_CONTEXT_TURNS: usize = 4;
/// How long a final transcript line or the end of the call waits for a slow event reader.
const IMPORTANT_EVENT_WAIT: Duration = Duration::from_secs(1);

/// The speech and language services one call uses.
#[derive(Clone)]
pub struct Services {
    pub stt: Arc<dyn SpeechToText>,
    pub llm: Arc<dyn LanguageModel>,
    pub tts: Arc<dyn TextToSpeech>,
    pub vad: Arc<dyn VadFactory>,
}

/// What the bot does when the student goes quiet.
#[derive(Debug, Clone, PartialEq)]
pub struct IdlePolicy {
    /// Silence (since the student last spoke or the bot last finished) before a gentle prompt.
    pub prompt_after: Option<Duration>,
    pub prompt: String,
    /// Silence after which the call ends (counted the same way; the prompt does not reset it).
    pub end_after: Option<Duration>,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        Self {
            prompt_after: Some(Duration::from_secs(30)),
            prompt: "Take your time. I'm here whenever you're ready to keep talking.".into(),
            end_after: Some(Duration::from_secs(120)),
        }
    }
}

/// How one call behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct CallConfig {
    /// The counselor category's persona prompt (the platform preamble is added in front).
    pub persona: String,
    /// Said first, before the student speaks. `None`: the bot waits for the student.
    pub greeting: Option<String>,
    /// Speech start and turn-end silence (`turn.stop_after`, 0.6 s by default).
    pub turn: TurnParams,
    pub idle: IdlePolicy,
    /// Said when the language model fails or times out.
    pub apology: String,
    pub limits: ConversationLimits,
    pub timeouts: Timeouts,
}

impl CallConfig {
    pub fn new(persona: impl Into<String>) -> Self {
        Self {
            persona: persona.into(),
            greeting: None,
            turn: TurnParams::default(),
            idle: IdlePolicy::default(),
            apology:
                "I'm sorry, I lost my train of thought for a moment. Could you say that again?"
                    .into(),
            limits: ConversationLimits::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Starts calls.
pub struct Call;

impl Call {
    /// Starts a call on `transport`. Must be called inside a tokio runtime; returns at once.
    pub fn start(
        config: CallConfig,
        services: Services,
        hook: Arc<dyn UtteranceHook>,
        transport: TransportIo,
    ) -> CallHandle {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (ended_tx, ended_rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let conductor_stop = stop.clone();
        // The call's tasks run in the caller's span (the server's span for the session), so
        // whatever they log names the call.
        tokio::spawn(
            async move {
                let events = events_tx.clone();
                let reason =
                    conduct(config, services, hook, transport, events_tx, conductor_stop).await;
                let _ = timeout(
                    IMPORTANT_EVENT_WAIT,
                    events.send(AgentEvent::Ended(reason.clone())),
                )
                .await;
                let _ = ended_tx.send(Some(reason));
            }
            .in_current_span(),
        );
        CallHandle {
            events: Some(events_rx),
            stop,
            ended: ended_rx,
        }
    }
}

/// The platform's hold on a running call. Dropping it ends the call.
pub struct CallHandle {
    events: Option<mpsc::Receiver<AgentEvent>>,
    stop: CancellationToken,
    ended: watch::Receiver<Option<EndReason>>,
}

impl CallHandle {
    /// The call's events, ending with [`AgentEvent::Ended`]. Handed over once; later calls get
    /// `None`.
    pub fn events(&mut self) -> Option<mpsc::Receiver<AgentEvent>> {
        self.events.take()
    }

    /// Asks the call to end. Idempotent; returns at once (await [`ended`](Self::ended) to know
    /// everything has been freed).
    pub fn end(&self) {
        self.stop.cancel();
    }

    /// Resolves when the call has ended and its tasks are gone, with why it ended.
    pub fn ended(&self) -> impl std::future::Future<Output = EndReason> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            match ended.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().expect("checked by wait_for"),
                // The conductor was torn down without reporting (runtime shutting down).
                Err(_) => EndReason::Ended,
            }
        }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Aborts a task when dropped, so that however the conductor exits its helpers go with it.
struct TaskGuard<T>(JoinHandle<T>);

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the listener heard.
#[derive(Debug, Clone, Copy)]
enum Heard {
    SpeechStarted,
    /// The student's turn is over; they last spoke at `speech_ended_at`.
    TurnEnded {
        speech_ended_at: Instant,
    },
}

/// Reads student audio: VAD, turn detection, and audio into speech-to-text.
async fn listen(
    mut audio_in: mpsc::Receiver<Vec<i16>>,
    mut vad: Box<dyn VoiceActivityDetector>,
    mut turns: TurnDetector,
    stt: mpsc::Sender<SttInput>,
    heard: mpsc::Sender<Heard>,
) {
    let vad_frame = vad.frame_samples().max(1);
    let mut pending: Vec<i16> = Vec::with_capacity(vad_frame + FRAME_SAMPLES);
    let mut probability = 0.0f32;
    let mut dropped_audio = false;
    while let Some(frame) = audio_in.recv().await {
        // Score the frame with however many detector windows it completes.
        pending.extend_from_slice(&frame);
        let mut consumed = 0;
        let mut best: Option<f32> = None;
        while pending.len() - consumed >= vad_frame {
            let p = vad.speech_probability(&pending[consumed..consumed + vad_frame]);
            best = Some(best.map_or(p, |b: f32| b.max(p)));
            consumed += vad_frame;
        }
        pending.drain(..consumed);
        if let Some(p) = best {
            probability = p;
        }
        match stt.try_send(SttInput::Audio(frame)) {
            Ok(()) => dropped_audio = false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !dropped_audio {
                    tracing::warn!("speech-to-text is behind; dropping student audio");
                    dropped_audio = true;
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        let change = match turns.push(probability) {
            Some(TurnChange::SpeechStarted) => {
                let _ = stt.send(SttInput::SpeechStarted).await;
                Heard::SpeechStarted
            }
            Some(TurnChange::TurnEnded { silent_frames }) => {
                let _ = stt.send(SttInput::SpeechEnded).await;
                let silence = Duration::from_millis(20 * silent_frames as u64);
                let now = Instant::now();
                Heard::TurnEnded {
                    speech_ended_at: now.checked_sub(silence).unwrap_or(now),
                }
            }
            None => continue,
        };
        if heard.send(change).await.is_err() {
            return;
        }
    }
}

/// Why the bot is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Greeting,
    Answer { speech_ended_at: Instant },
    IdlePrompt,
}

struct ActiveReply {
    kind: ReplyKind,
    ledger: Arc<Mutex<Ledger>>,
    notes: mpsc::Receiver<ReplyNote>,
    task: TaskGuard<()>,
    /// `seq` the counselor's line will have.
    seq: u64,
}

enum ReplyUpdate {
    Note(ReplyNote),
    Finished,
}

impl ActiveReply {
    async fn next(&mut self) -> ReplyUpdate {
        tokio::select! {
            biased;
            Some(note) = self.notes.recv() => ReplyUpdate::Note(note),
            _ = &mut self.task.0 => ReplyUpdate::Finished,
        }
    }
}

/// The conductor's view of the call.
struct Conductor {
    config: CallConfig,
    reply_context: ReplyContext,
    conversation: Conversation,
    events: mpsc::Sender<AgentEvent>,
    started: Instant,
    next_seq: u64,
    reply: Option<ActiveReply>,
    student_speaking: bool,
    /// Final transcript text of the student's current turn, not yet answered.
    student_text: String,
    /// Set when the turn ended and the recogniser's last final is awaited until this instant.
    awaiting_final: Option<(Instant, Instant)>,
    /// Since when nobody has said anything (idle prompt and idle end count from here).
    quiet_since: Instant,
    idle_prompted: bool,
}

async fn conduct(
    config: CallConfig,
    services: Services,
    hook: Arc<dyn UtteranceHook>,
    transport: TransportIo,
    events: mpsc::Sender<AgentEvent>,
    stop: CancellationToken,
) -> EndReason {
    let TransportIo {
        audio_in,
        audio_out,
        events: mut transport_events,
    } = transport;
    let stt = match timeout(config.timeouts.stt_open, services.stt.open()).await {
        Ok(Ok(session)) => session,
        Ok(Err(error)) => return fail(&events, Stage::SpeechToText, error).await,
        Err(_) => {
            let after_ms = domain::millis(config.timeouts.stt_open);
            return fail(
                &events,
                Stage::SpeechToText,
                ServiceError::Timeout {
                    service: services.stt.name(),
                    after_ms,
                },
            )
            .await;
        }
    };
    let mut stt_events = stt.events;
    let (heard_tx, mut heard) = mpsc::channel(16);
    let _listener = TaskGuard(tokio::spawn(Instrument::in_current_span(listen(
        audio_in,
        services.vad.create(),
        TurnDetector::new(config.turn),
        stt.input,
        heard_tx,
    ))));

    let now = Instant::now();
    let mut call = Conductor {
        reply_context: ReplyContext {
            llm: services.llm.clone(),
            tts: services.tts.clone(),
            hook,
            timeouts: config.timeouts,
            apology: config.apology.clone(),
            audio_out,
            events: events.clone(),
        },
        conversation: Conversation::new(&config.persona, config.limits),
        config,
        events,
        started: now,
        next_seq: 1,
        reply: None,
        student_speaking: false,
        student_text: String::new(),
        awaiting_final: None,
        quiet_since: now,
        idle_prompted: false,
    };
    call.emit(AgentEvent::BotState(BotState::Listening));
    if let Some(greeting) = call
        .config
        .greeting
        .clone()
        .filter(|g| !g.trim().is_empty())
    {
        call.start_reply(ReplyKind::Greeting, ReplySource::Script(greeting));
    }

    loop {
        let idle_deadline = call.idle_deadline();
        let final_deadline = call.awaiting_final.map(|(deadline, _)| deadline);
        tokio::select! {
            _ = stop.cancelled() => {
                call.cut_reply().await;
                return EndReason::Ended;
            }
            event = transport_events.recv() => match event {
                Some(TransportEvent::Quality(quality)) => call.emit(AgentEvent::ConnectionQuality(quality)),
                Some(TransportEvent::Connected) => {}
                Some(TransportEvent::Disconnected) | None => {
                    call.cut_reply().await;
                    return EndReason::TransportClosed;
                }
            },
            heard_event = heard.recv() => match heard_event {
                Some(Heard::SpeechStarted) => call.student_started().await,
                Some(Heard::TurnEnded { speech_ended_at }) => call.student_turn_ended(speech_ended_at),
                None => {
                    call.cut_reply().await;
                    return EndReason::TransportClosed;
                }
            },
            stt_event = stt_events.recv() => match stt_event {
                Some(SttEvent::Interim { text }) => call.student_interim(text),
                Some(SttEvent::Final { text }) => call.student_final(&text).await,
                Some(SttEvent::SpeechStarted) => {}
                Some(SttEvent::Error(error)) => call.report(Stage::SpeechToText, &error),
                None => {
                    call.cut_reply().await;
                    let error = ServiceError::Closed { service: services.stt.name() };
                    return fail(&call.events, Stage::SpeechToText, error).await;
                }
            },
            update = async { call.reply.as_mut().expect("guarded").next().await }, if call.reply.is_some() => {
                match update {
                    ReplyUpdate::Note(ReplyNote::FirstAudio) => call.emit(AgentEvent::BotState(BotState::Speaking)),
                    ReplyUpdate::Note(ReplyNote::SentenceStarted) => call.counselor_interim(),
                    ReplyUpdate::Finished => call.finish_reply(false).await,
                }
            }
            _ = sleep_until(final_deadline.unwrap_or_else(far_future)), if final_deadline.is_some() => {
                call.awaiting_final = None;
                call.answer_turn().await;
            }
            _ = sleep_until(idle_deadline.unwrap_or_else(far_future)), if idle_deadline.is_some() => {
                if call.idle_due_to_end() {
                    return EndReason::IdleTimeout;
                }
                call.idle_prompted = true;
                let prompt = call.config.idle.prompt.clone();
                call.start_reply(ReplyKind::IdlePrompt, ReplySource::Script(prompt));
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

async fn fail(events: &mpsc::Sender<AgentEvent>, stage: Stage, error: ServiceError) -> EndReason {
    tracing::warn!(?stage, %error, "call failed");
    let message = error.to_string();
    let _ = timeout(
        IMPORTANT_EVENT_WAIT,
        events.send(AgentEvent::Error(CallError {
            stage,
            message: message.clone(),
        })),
    )
    .await;
    EndReason::Failed(message)
}

impl Conductor {
    fn emit(&self, event: AgentEvent) {
        // Advisory events are dropped, not queued without bound, when the platform lags.
        let _ = self.events.try_send(event);
    }

    async fn emit_important(&self, event: AgentEvent) {
        let _ = timeout(IMPORTANT_EVENT_WAIT, self.events.send(event)).await;
    }

    fn report(&self, stage: Stage, error: &ServiceError) {
        tracing::warn!(?stage, %error, "call service error");
        self.emit(AgentEvent::Error(CallError {
            stage,
            message: error.to_string(),
        }));
    }

    fn line(
        &self,
        seq: u64,
        speaker: Speaker,
        text: String,
        is_final: bool,
        interrupted: bool,
    ) -> AgentEvent {
        AgentEvent::Transcript(TranscriptLine {
            seq,
            speaker,
            text,
            is_final,
            at: self.started.elapsed(),
            interrupted,
        })
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn start_reply(&mut self, kind: ReplyKind, source: ReplySource) {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (notes_tx, notes) = mpsc::channel(16);
        let task = tokio::spawn(
            run_reply(source, self.reply_context.clone(), ledger.clone(), notes_tx)
                .in_current_span(),
        );
        let seq = self.take_seq();
        self.reply = Some(ActiveReply {
            kind,
            ledger,
            notes,
            task: TaskGuard(task),
            seq,
        });
        if matches!(kind, ReplyKind::Answer { .. }) {
            self.emit(AgentEvent::BotState(BotState::Thinking));
        }
    }

    /// Ends the current reply: what the student heard goes into the history and the transcript.
    async fn finish_reply(&mut self, interrupted: bool) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        if interrupted {
            reply.task.0.abort();
        }
        let ledger = reply.ledger.lock().expect("ledger lock").clone();
        drop(reply.task);
        let heard = ledger.heard();
        if !heard.is_empty() {
            self.conversation.record(ChatRole::Assistant, &heard);
            let line = self.line(reply.seq, Speaker::Counselor, heard, true, interrupted);
            self.emit_important(line).await;
        }
        if let ReplyKind::Answer { speech_ended_at } = reply.kind {
            self.emit(AgentEvent::TurnMetrics(TurnMetrics {
                llm_first_token: ledger.llm_first_token,
                tts_first_audio: ledger.tts_first_audio,
                student_stop_to_bot_audio: ledger
                    .first_audio_at
                    .map(|at| at.saturating_duration_since(speech_ended_at)),
            }));
        }
        if reply.kind != ReplyKind::IdlePrompt {
            self.quiet_since = Instant::now();
        }
        if !interrupted {
            self.emit(AgentEvent::BotState(BotState::Listening));
        }
    }

    /// Stops the bot at once (barge-in or the call ending).
    async fn cut_reply(&mut self) {
        if self.reply.is_some() {
            self.finish_reply(true).await;
        }
    }

    fn counselor_interim(&self) {
        if let Some(reply) = &self.reply {
            let text = reply.ledger.lock().expect("ledger lock").started();
            self.emit(self.line(reply.seq, Speaker::Counselor, text, false, false));
        }
    }

    async fn student_started(&mut self) {
        self.student_speaking = true;
        self.awaiting_final = None;
        self.idle_prompted = false;
        self.quiet_since = Instant::now();
        if self.reply.is_some() {
            self.cut_reply().await;
            self.emit(AgentEvent::BotState(BotState::Listening));
        }
    }

    fn student_turn_ended(&mut self, speech_ended_at: Instant) {
        self.student_speaking = false;
        self.quiet_since = Instant::now();
        self.awaiting_final = Some((
            Instant::now() + self.config.timeouts.stt_final,
            speech_ended_at,
        ));
    }

    fn student_interim(&self, text: String) {
        if !text.trim().is_empty() {
            self.emit(self.line(self.next_seq, Speaker::Student, text, false, false));
        }
    }

    async fn student_final(&mut self, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            if !self.student_text.is_empty() {
                self.student_text.push(' ');
            }
            self.student_text.push_str(text);
        }
        // A final that arrives after the turn ended completes it; one that arrives mid-speech
        // (streaming recognisers finalise phrases as they go) waits for the turn to end.
        let late_final = !self.student_speaking && self.reply.is_none();
        if self.awaiting_final.is_some() || late_final {
            self.answer_turn().await;
        }
    }

    /// The student's turn is complete: record it and start the answer.
    async fn answer_turn(&mut self) {
        let speech_ended_at = self
            .awaiting_final
            .take()
            .map_or_else(Instant::now, |(_, ended)| ended);
        let text = std::mem::take(&mut self.student_text);
        if text.is_empty() {
            return;
        }
        let seq = self.take_seq();
        let line = self.line(seq, Speaker::Student, text.clone(), true, false);
        self.emit_important(line).await;
        let recent_student_turns = self.conversation.recent_student_turns(HOOK_CONTEXT_TURNS);
        self.conversation.record(ChatRole::User, &text);
        let utterance = Utterance {
            seq,
            text,
            recent_student_turns,
        };
        let request = self.conversation.request(None);
        let decision = review_detached(self.reply_context.hook.clone(), utterance);
        self.cut_reply().await;
        self.start_reply(
            ReplyKind::Answer { speech_ended_at },
            ReplySource::Answer { decision, request },
        );
    }

    /// When the next idle step is due, if the call is quiet.
    fn idle_deadline(&self) -> Option<Instant> {
        if self.reply.is_some() || self.student_speaking || self.awaiting_final.is_some() {
            return None;
        }
        let idle = &self.config.idle;
        let prompt = idle
            .prompt_after
            .filter(|_| !self.idle_prompted && !idle.prompt.trim().is_empty());
        match (prompt, idle.end_after) {
            (Some(prompt), Some(end)) => Some(self.quiet_since + prompt.min(end)),
            (Some(prompt), None) => Some(self.quiet_since + prompt),
            (None, Some(end)) => Some(self.quiet_since + end),
            (None, None) => None,
        }
    }

    fn idle_due_to_end(&self) -> bool {
        self.config
            .idle
            .end_after
            .is_some_and(|end| self.quiet_since.elapsed() >= end)
    }
}

//! One bot reply: (hook →) language model → sentences → speech synthesis → transport, streamed
//! so that the first sentence plays while the rest is still being written.
//!
//! A reply runs as its own task. Interrupting it means aborting that task, which drops the LLM
//! stream, the TTS stream and every queued sentence at once. The [`Ledger`] it shares with the
//! call records what actually reached the transport, so the call knows what the student heard.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use crate::audio::{FrameBuffer, Resampler, PIPELINE_SAMPLE_RATE};
use crate::events::{AgentEvent, CallError, Stage};
use crate::hook::{HookDecision, Utterance, UtteranceHook};
use crate::sentences::SentenceSplitter;
use crate::services::{ChatRequest, LanguageModel, ServiceError, TextToSpeech};

/// Sentences written ahead of the one being spoken. Bounds how far the LLM runs ahead.
const SENTENCE_QUEUE: usize = 8;

/// How fast speech goes, to guess the length of a sentence whose audio has not all arrived.
const SPOKEN_CHARS_PER_SECOND: f64 = 14.0;

/// How long each kind of wait may take before it counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a speech-to-text session.
    pub stt_open: Duration,
    /// After the student's turn ends, how long to wait for the recogniser's final text.
    pub stt_final: Duration,
    /// Reviewing an utterance with the hook.
    pub hook: Duration,
    /// Request sent → first text from the language model.
    pub llm_first_token: Duration,
    /// Gap between two pieces of the language model's reply.
    pub llm_between_tokens: Duration,
    /// Sentence sent → first audio from speech synthesis.
    pub tts_first_audio: Duration,
    /// Gap between two pieces of synthesised audio.
    pub tts_between_chunks: Duration,
    /// Handing one frame to the transport (which takes one every 20 ms while healthy).
    pub transport_send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            stt_open: Duration::from_secs(5),
            stt_final: Duration::from_secs(2),
            hook: Duration::from_secs(2),
            llm_first_token: Duration::from_secs(6),
            llm_between_tokens: Duration::from_secs(4),
            tts_first_audio: Duration::from_secs(4),
            tts_between_chunks: Duration::from_secs(3),
            transport_send: Duration::from_secs(1),
        }
    }
}

/// Where a reply's words come from.
#[derive(Debug)]
pub(crate) enum ReplySource {
    /// Fixed words (the greeting, an idle prompt).
    Script(String),
    /// An answer to the student: the hook's decision on the utterance (reviewed in a task of its
    /// own, see [`review_detached`]), then the language model answers `request` (unless the
    /// hook supplies the words).
    Answer {
        decision: oneshot::Receiver<HookDecision>,
        request: ChatRequest,
    },
}

/// A sentence of the reply and how much of it reached the transport.
#[derive(Debug, Clone, Default)]
pub(crate) struct LedgerSentence {
    pub text: String,
    pub frames_made: usize,
    pub frames_sent: usize,
    /// Known once synthesis of the sentence finished.
    pub frames_total: Option<usize>,
    /// Speech synthesis failed; the sentence went out as transcript text only.
    pub as_text: bool,
}

/// What a reply has done so far, shared with the call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    pub sentences: Vec<LedgerSentence>,
    pub llm_first_token: Option<Duration>,
    pub tts_first_audio: Option<Duration>,
    pub first_audio_at: Option<Instant>,
}

impl Ledger {
    /// The words the student actually got: whole sentences that were fully sent (or shown as
    /// text), then the share of a half-sent sentence's words matching the share of its audio.
    pub fn heard(&self) -> String {
        let mut heard: Vec<&str> = Vec::new();
        for sentence in &self.sentences {
            let complete = sentence.as_text
                || sentence
                    .frames_total
                    .is_some_and(|total| sentence.frames_sent >= total);
            if complete {
                heard.push(&sentence.text);
                continue;
            }
            if sentence.frames_sent > 0 {
                let estimated = (sentence.text.chars().count() as f64 / SPOKEN_CHARS_PER_SECOND
                    * 50.0)
                    .ceil() as usize;
                let total = sentence
                    .frames_total
                    .unwrap_or(estimated.max(sentence.frames_made))
                    .max(1);
                let share = (sentence.frames_sent as f64 / total as f64).min(1.0);
                let keep =
                    (sentence.text.split_whitespace().count() as f64 * share).floor() as usize;
                if keep > 0 {
                    heard.push(first_words(&sentence.text, keep));
                }
            }
            break;
        }
        heard.join(" ")
    }

    /// The sentences that have started playing (or were shown as text), in full.
    pub fn started(&self) -> String {
        let started: Vec<&str> = self
            .sentences
            .iter()
            .filter(|s| s.as_text || s.frames_sent > 0)
            .map(|s| s.text.as_str())
            .collect();
        started.join(" ")
    }
}

/// The first `count` words of `text`, as written.
fn first_words(text: &str, count: usize) -> &str {
    let text = text.trim();
    let mut words = 0;
    let mut in_word = false;
    for (at, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                if words == count {
                    return &text[..at];
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    text
}

/// Starts the hook's review of `utterance` in a task of its own and returns where its decision
/// will arrive. The review runs to the end even when the reply waiting for it is cut short (the
/// student spoke again), so whatever the hook records about an utterance is never lost.
pub(crate) fn review_detached(
    hook: Arc<dyn UtteranceHook>,
    utterance: Utterance,
) -> oneshot::Receiver<HookDecision> {
    let (decided, decision) = oneshot::channel();
    tokio::spawn(
        async move {
            let _ = decided.send(hook.review(&utterance).await);
        }
        .in_current_span(),
    );
    decision
}

/// What the reply task tells the call as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyNote {
    /// The first frame of the reply went to the transport.
    FirstAudio,
    /// Another sentence began playing (or was shown as text).
    SentenceStarted,
}

/// Everything a reply needs besides its words.
#[derive(Clone)]
pub(crate) struct ReplyContext {
    pub llm: Arc<dyn LanguageModel>,
    pub tts: Arc<dyn TextToSpeech>,
    pub hook: Arc<dyn UtteranceHook>,
    pub timeouts: Timeouts,
    pub apology: String,
    pub audio_out: mpsc::Sender<Vec<i16>>,
    pub events: mpsc::Sender<AgentEvent>,
}

/// Speaks one reply to the end (or until its task is aborted).
pub(crate) async fn run_reply(
    source: ReplySource,
    context: ReplyContext,
    ledger: Arc<Mutex<Ledger>>,
    notes: mpsc::Sender<ReplyNote>,
) {
    let (sentences_tx, sentences_rx) = mpsc::channel(SENTENCE_QUEUE);
    let write = write_sentences(source, &context, &ledger, sentences_tx);
    let speak = speak_sentences(sentences_rx, &context, &ledger, &notes);
    tokio::join!(write, speak);
}

fn report(events: &mpsc::Sender<AgentEvent>, stage: Stage, error: &ServiceError) {
    tracing::warn!(?stage, %error, "call service error");
    // Errors are advisory; a platform that is not reading loses them rather than stalling audio.
    let _ = events.try_send(AgentEvent::Error(CallError {
        stage,
        message: error.to_string(),
    }));
}

/// Produces the reply's sentences: from the script, from the hook, or from the language model.
async fn write_sentences(
    source: ReplySource,
    context: &ReplyContext,
    ledger: &Mutex<Ledger>,
    out: mpsc::Sender<String>,
) {
    let (decision, mut request) = match source {
        ReplySource::Script(text) => return send_script(&text, &out).await,
        ReplySource::Answer { decision, request } => (decision, request),
    };
    let decision = match timeout(context.timeouts.hook, decision).await {
        Ok(Ok(decision)) => decision,
        Ok(Err(_)) => {
            report(
                &context.events,
                Stage::Hook,
                &ServiceError::Closed {
                    service: "utterance hook",
                },
            );
            HookDecision::Proceed
        }
        Err(_) => {
            let after_ms = domain::millis(context.timeouts.hook);
            report(
                &context.events,
                Stage::Hook,
                &ServiceError::Timeout {
                    service: "utterance hook",
                    after_ms,
                },
            );
            HookDecision::Proceed
        }
    };
    match decision {
        HookDecision::ReplaceReply(text) => return send_script(&text, &out).await,
        HookDecision::AddInstruction(instruction) => {
            request.system.push_str("\n\n");
            request.system.push_str(instruction.trim());
        }
        HookDecision::Proceed => {}
    }
    let answered = stream_answer(request, context, ledger, &out).await;
    if !answered {
        send_script(&context.apology, &out).await;
    }
}

async fn send_script(text: &str, out: &mpsc::Sender<String>) {
    let mut splitter = SentenceSplitter::new();
    for sentence in splitter.push(text).into_iter().chain(splitter.finish()) {
        if out.send(sentence).await.is_err() {
            return;
        }
    }
}

/// Streams the model's answer into sentences. Returns false when nothing usable came (the caller
/// then apologises); a failure after some sentences were written just ends the reply there.
async fn stream_answer(
    mut request: ChatRequest,
    context: &ReplyContext,
    ledger: &Mutex<Ledger>,
    out: &mpsc::Sender<String>,
) -> bool {
    let limits = context.timeouts;
    let asked = Instant::now();
    // The turn's first-text budget is decided here alone; a model with a fallback divides it.
    request.first_text_by = Some(asked + limits.llm_first_token);
    let timed_out = |after: Duration| ServiceError::Timeout {
        service: "language model",
        after_ms: domain::millis(after),
    };
    let mut stream = match timeout(limits.llm_first_token, context.llm.stream_reply(request)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            report(&context.events, Stage::LanguageModel, &error);
            return false;
        }
        Err(_) => {
            report(
                &context.events,
                Stage::LanguageModel,
                &timed_out(limits.llm_first_token),
            );
            return false;
        }
    };
    let mut splitter = SentenceSplitter::new();
    let mut wrote_any = false;
    let mut got_text = false;
    loop {
        let wait = if got_text {
            limits.llm_between_tokens
        } else {
            limits.llm_first_token.saturating_sub(asked.elapsed())
        };
        let delta = match timeout(wait, stream.next()).await {
            Ok(Some(Ok(delta))) => delta,
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                report(&context.events, Stage::LanguageModel, &error);
                return wrote_any;
            }
            Err(_) => {
                report(&context.events, Stage::LanguageModel, &timed_out(wait));
                return wrote_any;
            }
        };
        if !got_text && !delta.is_empty() {
            got_text = true;
            ledger.lock().expect("ledger lock").llm_first_token = Some(asked.elapsed());
        }
        for sentence in splitter.push(&delta) {
            wrote_any = true;
            if out.send(sentence).await.is_err() {
                return true;
            }
        }
    }
    if let Some(rest) = splitter.finish() {
        wrote_any = true;
        let _ = out.send(rest).await;
    }
    if !wrote_any {
        report(
            &context.events,
            Stage::LanguageModel,
            &ServiceError::Protocol {
                service: "language model",
                reason: "empty reply".into(),
            },
        );
    }
    wrote_any
}

/// Why speaking a sentence stopped early.
enum SpeakFailure {
    Synthesis(ServiceError),
    TransportGone,
}

/// Speaks sentences in order. Once synthesis fails, the rest of the reply goes out as text only
/// (trying again per sentence would stall the reply on every timeout).
async fn speak_sentences(
    mut sentences: mpsc::Receiver<String>,
    context: &ReplyContext,
    ledger: &Mutex<Ledger>,
    notes: &mpsc::Sender<ReplyNote>,
) {
    let mut synthesis_works = true;
    while let Some(sentence) = sentences.recv().await {
        let index = {
            let mut ledger = ledger.lock().expect("ledger lock");
            ledger.sentences.push(LedgerSentence {
                text: sentence.clone(),
                ..Default::default()
            });
            ledger.sentences.len() - 1
        };
        if synthesis_works {
            match speak_sentence(&sentence, index, context, ledger, notes).await {
                Ok(()) => continue,
                Err(SpeakFailure::TransportGone) => return,
                Err(SpeakFailure::Synthesis(error)) => {
                    report(&context.events, Stage::TextToSpeech, &error);
                    synthesis_works = false;
                }
            }
        }
        ledger.lock().expect("ledger lock").sentences[index].as_text = true;
        let _ = notes.send(ReplyNote::SentenceStarted).await;
    }
}

async fn speak_sentence(
    sentence: &str,
    index: usize,
    context: &ReplyContext,
    ledger: &Mutex<Ledger>,
    notes: &mpsc::Sender<ReplyNote>,
) -> Result<(), SpeakFailure> {
    let limits = context.timeouts;
    let asked = Instant::now();
    let timed_out = |after: Duration| {
        SpeakFailure::Synthesis(ServiceError::Timeout {
            service: "speech synthesis",
            after_ms: domain::millis(after),
        })
    };
    let mut stream = match timeout(limits.tts_first_audio, context.tts.speak(sentence)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(SpeakFailure::Synthesis(error)),
        Err(_) => return Err(timed_out(limits.tts_first_audio)),
    };
    let mut resampler: Option<Resampler> = None;
    let mut frames = FrameBuffer::new();
    let mut pcm = Vec::new();
    let mut got_audio = false;
    loop {
        let wait = if got_audio {
            limits.tts_between_chunks
        } else {
            limits.tts_first_audio.saturating_sub(asked.elapsed())
        };
        let chunk = match timeout(wait, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(SpeakFailure::Synthesis(error)),
            Err(_) => return Err(timed_out(wait)),
        };
        if chunk.samples.is_empty() {
            continue;
        }
        if !got_audio {
            got_audio = true;
            let mut ledger = ledger.lock().expect("ledger lock");
            ledger.tts_first_audio.get_or_insert(asked.elapsed());
        }
        pcm.clear();
        if chunk.sample_rate == PIPELINE_SAMPLE_RATE {
            pcm.extend_from_slice(&chunk.samples);
        } else {
            if resampler
                .as_ref()
                .is_none_or(|r| r.from_rate() != chunk.sample_rate)
            {
                let built =
                    Resampler::new(chunk.sample_rate, PIPELINE_SAMPLE_RATE).map_err(|e| {
                        SpeakFailure::Synthesis(ServiceError::Protocol {
                            service: "speech synthesis",
                            reason: e.to_string(),
                        })
                    })?;
                resampler = Some(built);
            }
            resampler
                .as_mut()
                .expect("just set")
                .process_into(&chunk.samples, &mut pcm);
        }
        for frame in frames.push(&pcm) {
            ledger.lock().expect("ledger lock").sentences[index].frames_made += 1;
            send_frame(frame, index, context, ledger, notes).await?;
        }
    }
    if let Some(last) = frames.finish() {
        ledger.lock().expect("ledger lock").sentences[index].frames_made += 1;
        send_frame(last, index, context, ledger, notes).await?;
    }
    let mut ledger = ledger.lock().expect("ledger lock");
    let sentence = &mut ledger.sentences[index];
    sentence.frames_total = Some(sentence.frames_made);
    Ok(())
}

async fn send_frame(
    frame: Vec<i16>,
    index: usize,
    context: &ReplyContext,
    ledger: &Mutex<Ledger>,
    notes: &mpsc::Sender<ReplyNote>,
) -> Result<(), SpeakFailure> {
    match timeout(
        context.timeouts.transport_send,
        context.audio_out.send(frame),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(SpeakFailure::TransportGone),
        Err(_) => {
            let after_ms = domain::millis(context.timeouts.transport_send);
            report(
                &context.events,
                Stage::Transport,
                &ServiceError::Timeout {
                    service: "transport",
                    after_ms,
                },
            );
            return Err(SpeakFailure::TransportGone);
        }
    }
    let (first_of_reply, first_of_sentence) = {
        let mut ledger = ledger.lock().expect("ledger lock");
        let first_of_reply = ledger.first_audio_at.is_none();
        if first_of_reply {
            ledger.first_audio_at = Some(Instant::now());
        }
        let sentence = &mut ledger.sentences[index];
        sentence.frames_sent += 1;
        (first_of_reply, sentence.frames_sent == 1)
    };
    if first_of_reply {
        let _ = notes.send(ReplyNote::FirstAudio).await;
    }
    if first_of_sentence {
        let _ = notes.send(ReplyNote::SentenceStarted).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(text: &str, sent: usize, total: Option<usize>) -> LedgerSentence {
        LedgerSentence {
            text: text.into(),
            frames_made: sent,
            frames_sent: sent,
            frames_total: total,
            as_text: false,
        }
    }

    #[test]
    fn the_student_heard_whole_sentences_then_part_of_the_cut_one() {
        let ledger = Ledger {
            sentences: vec![
                sentence("That sounds really hard.", 80, Some(80)),
                sentence("One two three four five six seven eight.", 50, Some(100)),
                sentence("Never played.", 0, None),
            ],
            ..Default::default()
        };
        assert_eq!(
            ledger.heard(),
            "That sounds really hard. One two three four"
        );
        assert_eq!(
            ledger.started(),
            "That sounds really hard. One two three four five six seven eight."
        );
    }

    #[test]
    fn text_only_sentences_count_as_heard_and_nothing_sent_means_nothing_heard() {
        let mut shown = sentence("Shown as text.", 0, None);
        shown.as_text = true;
        assert_eq!(
            Ledger {
                sentences: vec![shown],
                ..Default::default()
            }
            .heard(),
            "Shown as text."
        );
        assert_eq!(
            Ledger {
                sentences: vec![sentence("Not yet.", 0, None)],
                ..Default::default()
            }
            .heard(),
            ""
        );
    }
}

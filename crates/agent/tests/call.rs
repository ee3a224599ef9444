//! A call end to end over the in-memory transport: real VAD (earshot) on speech made with
//! espeak-ng, stand-in STT / LLM / TTS, and tokio's paused clock so that seconds of conversation
//! run in milliseconds and every timing is exact.

mod call_support;

use std::sync::Arc;
use std::time::Duration;

use agent::conversation::PLATFORM_PREAMBLE;
use agent::services::ChatMessage;
use agent::transport::TransportEvent;
use agent::{
    AgentEvent, EndReason, HookDecision, IdlePolicy, NoHook, Stage, TranscriptLine, Utterance,
    UtteranceHook,
};
use async_trait::async_trait;
use call_support::*;
use domain::{BotState, Speaker};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn final_line(speaker: Speaker) -> impl Fn(&AgentEvent) -> bool {
    move |e| matches!(e, AgentEvent::Transcript(line) if line.speaker == speaker && line.is_final)
}

fn state(wanted: BotState) -> impl Fn(&AgentEvent) -> bool {
    move |e| *e == AgentEvent::BotState(wanted)
}

fn line(seen: &Seen) -> TranscriptLine {
    match &seen.event {
        AgentEvent::Transcript(line) => line.clone(),
        other => panic!("not a transcript line: {other:?}"),
    }
}

const STUDENT_SAYS: &str = "I have been really stressed about my exams.";
const COUNSELOR_ANSWERS: &str = "That sounds like a lot of pressure. What feels hardest right now?";

#[tokio::test(start_paused = true)]
async fn the_counselor_greets_first() {
    let llm = FakeLlm::replying("unused");
    let tts = ToneTts::new(ms(80), ms(50));
    let mut config = quiet_config();
    config.greeting = Some("Hi, I'm Sam. What's on your mind today?".into());
    let (call, mut log, mut student) = start(
        config,
        services(ScriptedStt::new(&[], ms(100)), llm.clone(), tts.clone()),
        Arc::new(NoHook),
    );

    log.wait_for(ms(500), state(BotState::Speaking)).await;
    let greeting = line(
        &log.wait_for(Duration::from_secs(10), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(greeting.text, "Hi, I'm Sam. What's on your mind today?");
    assert_eq!(greeting.seq, 1);
    assert!(!greeting.interrupted);
    assert_eq!(
        tts.sentences(),
        ["Hi, I'm Sam.", "What's on your mind today?"]
    );
    assert!(
        llm.requests().is_empty(),
        "a greeting does not ask the language model"
    );

    // Every synthesised 20 ms chunk reached the student as one 20 ms frame.
    tokio::time::sleep(ms(200)).await;
    let expected: usize = tts
        .sentences()
        .iter()
        .map(|s| s.chars().count() * 50 / 20)
        .sum();
    assert_eq!(student.drain_played().len(), expected);

    call.end();
    call.end();
    assert_eq!(call.ended().await, EndReason::Ended);
}

#[tokio::test(start_paused = true)]
async fn a_full_turn_from_student_speech_to_counselor_audio() {
    let llm = FakeLlm::replying(COUNSELOR_ANSWERS);
    let tts = ToneTts::new(ms(100), ms(50));
    let stt = ScriptedStt::new(&[STUDENT_SAYS], ms(100));
    let (call, mut log, mut student) = start(
        quiet_config(),
        services(stt, llm.clone(), tts.clone()),
        Arc::new(NoHook),
    );

    student.say(speech_frames(STUDENT_SAYS)).await;
    let heard = line(
        &log.wait_for(Duration::from_secs(15), final_line(Speaker::Student))
            .await,
    );
    assert_eq!((heard.seq, heard.text.as_str()), (1, STUDENT_SAYS));
    log.wait_for(ms(100), state(BotState::Thinking)).await;
    log.wait_for(Duration::from_secs(2), state(BotState::Speaking))
        .await;
    let said = line(
        &log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(
        (said.seq, said.text.as_str(), said.interrupted),
        (2, COUNSELOR_ANSWERS, false)
    );

    // Sentence by sentence: speech started before the model had finished the reply.
    assert_eq!(
        tts.sentences(),
        [
            "That sounds like a lot of pressure.",
            "What feels hardest right now?"
        ]
    );
    let request = &llm.requests()[0];
    assert!(request.system.starts_with(PLATFORM_PREAMBLE));
    assert!(request
        .system
        .ends_with("You are Sam, a calm study-skills counselor."));
    assert_eq!(request.messages, [ChatMessage::user(STUDENT_SAYS)]);
    // The turn's first-text budget travels with the request (a fallback model divides it).
    let due = request
        .first_text_by
        .expect("the request carries its first-text deadline");
    assert!(
        due.saturating_duration_since(tokio::time::Instant::now())
            <= agent::Timeouts::default().llm_first_token
    );

    let AgentEvent::TurnMetrics(metrics) = log
        .wait_for(ms(100), |e| matches!(e, AgentEvent::TurnMetrics(_)))
        .await
        .event
    else {
        unreachable!()
    };
    assert_eq!(metrics.llm_first_token, Some(ms(150)));
    assert_eq!(metrics.tts_first_audio, Some(ms(100)));
    // 0.6 s of turn-end silence + 100 ms STT + first sentence (150 ms + 6 words × 15 ms) + 100 ms TTS.
    let latency = metrics.student_stop_to_bot_audio.unwrap();
    assert!(
        latency >= ms(600 + 100 + 240 + 100) && latency <= ms(1_100),
        "latency {latency:?}"
    );
    log.wait_for(ms(100), state(BotState::Listening)).await;
    assert!(!student.drain_played().is_empty());
    call.end();
    assert_eq!(call.ended().await, EndReason::Ended);
}

#[tokio::test(start_paused = true)]
async fn speaking_over_the_counselor_stops_it_and_keeps_only_what_was_heard() {
    let long_answer =
        "Exams can feel overwhelming when they all arrive at once and there is no time left. \
                       Let us think together about which one matters most to you this week. \
                       Then we can plan small steps that fit into the days you have.";
    let llm = FakeLlm::replying(long_answer);
    let tts = ToneTts::new(ms(100), ms(60));
    let second = "Sorry, can I ask about something else?";
    let stt = ScriptedStt::new(&[STUDENT_SAYS, second], ms(100));
    let (call, mut log, mut student) = start(
        quiet_config(),
        services(stt, llm.clone(), tts.clone()),
        Arc::new(NoHook),
    );

    student.say(speech_frames(STUDENT_SAYS)).await;
    log.wait_for(Duration::from_secs(15), state(BotState::Speaking))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    student.say(speech_frames(second)).await;

    let cut = line(
        &log.wait_for(Duration::from_secs(5), final_line(Speaker::Counselor))
            .await,
    );
    let detected = log.wait_for(ms(100), state(BotState::Listening)).await;
    assert!(cut.interrupted);
    assert!(
        long_answer.starts_with(&cut.text) && cut.text.len() < long_answer.len() / 2,
        "heard: {}",
        cut.text
    );
    assert!(
        cut.text.starts_with("Exams can feel"),
        "about two seconds were heard: {}",
        cut.text
    );

    // Bot audio stopped within 100 ms of the student's speech being detected.
    tokio::time::sleep(ms(500)).await;
    let last_played = student
        .drain_played()
        .last()
        .expect("the bot had been speaking")
        .at;
    assert!(
        last_played <= detected.at + ms(100),
        "audio went on {:?} after detection",
        last_played - detected.at
    );

    // The next request's history holds what the student heard, not what the model wrote.
    log.wait_for(Duration::from_secs(15), final_line(Speaker::Student))
        .await;
    log.wait_for(Duration::from_secs(15), state(BotState::Thinking))
        .await;
    let request = llm.requests().last().unwrap().clone();
    assert_eq!(
        request.messages,
        [
            ChatMessage::user(STUDENT_SAYS),
            ChatMessage::assistant(cut.text.clone()),
            ChatMessage::user(second)
        ]
    );
    call.end();
    call.ended().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_language_model_gets_a_spoken_apology() {
    let llm = FakeLlm::new(LlmBehaviour::Fail);
    let tts = ToneTts::new(ms(50), ms(40));
    let config = quiet_config();
    let apology = config.apology.clone();
    let stt = ScriptedStt::new(&[STUDENT_SAYS], ms(100));
    let (call, mut log, student) = start(
        config,
        services(stt, llm.clone(), tts.clone()),
        Arc::new(NoHook),
    );

    student.say(speech_frames(STUDENT_SAYS)).await;
    let error = log
        .wait_for(Duration::from_secs(15), |e| {
            matches!(e, AgentEvent::Error(_))
        })
        .await;
    let AgentEvent::Error(error) = error.event else {
        unreachable!()
    };
    assert_eq!(error.stage, Stage::LanguageModel);
    assert!(
        !error.message.contains("stressed"),
        "errors never carry transcript text"
    );
    let said = line(
        &log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(said.text, apology);
    assert_eq!(tts.sentences().join(" "), apology);
    call.end();
    call.ended().await;
}

/// What the call's tasks log, formatted as a log line would be.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A call started inside a span (the server's, naming the session) logs inside it from every
/// task it spawns, so an on-call engineer can tell which call a warning is about.
#[tokio::test(start_paused = true)]
async fn what_a_call_logs_names_its_session() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("call", session_id = "session-under-test");
    let stt = ScriptedStt::new(&[STUDENT_SAYS], ms(100));
    let services = services(
        stt,
        FakeLlm::new(LlmBehaviour::Fail),
        ToneTts::new(ms(50), ms(40)),
    );
    let (call, mut log, student) =
        span.in_scope(|| start(quiet_config(), services, Arc::new(NoHook)));
    student.say(speech_frames(STUDENT_SAYS)).await;
    log.wait_for(Duration::from_secs(15), |e| {
        matches!(e, AgentEvent::Error(_))
    })
    .await;
    call.end();
    call.ended().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warning = text
        .lines()
        .find(|line| line.contains("call service error"))
        .unwrap_or_else(|| panic!("no warning logged: {text}"));
    assert!(warning.contains("session-under-test"), "{warning}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_language_model_times_out_into_the_apology() {
    let llm = FakeLlm::new(LlmBehaviour::Hang);
    let tts = ToneTts::new(ms(50), ms(40));
    let config = quiet_config();
    let (apology, limit) = (config.apology.clone(), config.timeouts.llm_first_token);
    let stt = ScriptedStt::new(&[STUDENT_SAYS], ms(100));
    let (call, mut log, student) = start(config, services(stt, llm, tts), Arc::new(NoHook));

    student.say(speech_frames(STUDENT_SAYS)).await;
    let asked = log
        .wait_for(Duration::from_secs(15), state(BotState::Thinking))
        .await
        .at;
    let speaking = log
        .wait_for(limit + ms(500), state(BotState::Speaking))
        .await
        .at;
    assert!(speaking - asked >= limit);
    let said = line(
        &log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(said.text, apology);
    call.end();
    call.ended().await;
}

/// Stands in for the crisis-safety layer: scripted words for some utterances, an extra
/// instruction for others.
struct SafetyHook;

const SAFE_REPLY: &str =
    "I'm really glad you told me. You can call or text 988 any time, day or night.";

#[async_trait]
impl UtteranceHook for SafetyHook {
    async fn review(&self, utterance: &Utterance) -> HookDecision {
        if utterance.text.contains("hopeless") {
            HookDecision::ReplaceReply(SAFE_REPLY.into())
        } else if utterance.text.contains("exams") {
            HookDecision::AddInstruction("Gently mention the campus tutoring center.".into())
        } else {
            HookDecision::Proceed
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_hook_replaces_the_reply_even_when_the_language_model_is_down() {
    let llm = FakeLlm::new(LlmBehaviour::Fail);
    let tts = ToneTts::new(ms(50), ms(40));
    let says = "Everything feels hopeless lately.";
    let stt = ScriptedStt::new(&[says], ms(100));
    let (call, mut log, student) = start(
        quiet_config(),
        services(stt, llm.clone(), tts.clone()),
        Arc::new(SafetyHook),
    );

    student.say(speech_frames(says)).await;
    let said = line(
        &log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(said.text, SAFE_REPLY);
    assert_eq!(tts.sentences().join(" "), SAFE_REPLY);
    assert!(
        llm.requests().is_empty(),
        "the language model was never asked"
    );
    assert!(!log
        .seen
        .iter()
        .any(|s| matches!(s.event, AgentEvent::Error(_))));
    call.end();
    call.ended().await;
}

#[tokio::test(start_paused = true)]
async fn the_hook_can_add_an_instruction_for_one_turn() {
    let llm = FakeLlm::replying(COUNSELOR_ANSWERS);
    let tts = ToneTts::new(ms(50), ms(40));
    let stt = ScriptedStt::new(&[STUDENT_SAYS], ms(100));
    let (call, mut log, student) = start(
        quiet_config(),
        services(stt, llm.clone(), tts),
        Arc::new(SafetyHook),
    );

    student.say(speech_frames(STUDENT_SAYS)).await;
    log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
        .await;
    let request = &llm.requests()[0];
    assert!(request
        .system
        .ends_with("Gently mention the campus tutoring center."));
    call.end();
    call.ended().await;
}

#[tokio::test(start_paused = true)]
async fn failed_speech_synthesis_still_sends_the_words_as_transcript() {
    let mut config = quiet_config();
    config.greeting = Some("Hello there. I'm glad you came.".into());
    let (call, mut log, mut student) = start(
        config,
        services(
            ScriptedStt::new(&[], ms(100)),
            FakeLlm::replying("unused"),
            ToneTts::failing(),
        ),
        Arc::new(NoHook),
    );
    let said = line(
        &log.wait_for(Duration::from_secs(5), final_line(Speaker::Counselor))
            .await,
    );
    assert_eq!(said.text, "Hello there. I'm glad you came.");
    let AgentEvent::Error(error) = &log
        .seen
        .iter()
        .find(|s| matches!(s.event, AgentEvent::Error(_)))
        .unwrap()
        .event
    else {
        unreachable!()
    };
    assert_eq!(error.stage, Stage::TextToSpeech);
    assert!(student.drain_played().is_empty());
    call.end();
    call.ended().await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_student_gets_a_prompt_and_then_the_call_ends() {
    let mut config = quiet_config();
    config.idle = IdlePolicy {
        prompt_after: Some(Duration::from_secs(8)),
        prompt: "I'm still here if you'd like to talk.".into(),
        end_after: Some(Duration::from_secs(20)),
    };
    let tts = ToneTts::new(ms(50), ms(40));
    let (call, mut log, _student) = start(
        config,
        services(
            ScriptedStt::new(&[], ms(100)),
            FakeLlm::replying("unused"),
            tts,
        ),
        Arc::new(NoHook),
    );
    let began = tokio::time::Instant::now();

    let prompt = log
        .wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
        .await;
    assert_eq!(line(&prompt).text, "I'm still here if you'd like to talk.");
    assert!(prompt.at - began >= Duration::from_secs(8));
    let ended = log
        .wait_for(Duration::from_secs(30), |e| {
            matches!(e, AgentEvent::Ended(_))
        })
        .await;
    assert_eq!(ended.event, AgentEvent::Ended(EndReason::IdleTimeout));
    let elapsed = ended.at - began;
    assert!(
        elapsed >= Duration::from_secs(20) && elapsed < Duration::from_secs(21),
        "ended after {elapsed:?}"
    );
    assert_eq!(call.ended().await, EndReason::IdleTimeout);
}

#[tokio::test(start_paused = true)]
async fn the_call_ends_when_the_student_disconnects() {
    let (call, mut log, student) = start(
        quiet_config(),
        services(
            ScriptedStt::new(&[], ms(100)),
            FakeLlm::replying("unused"),
            ToneTts::new(ms(50), ms(40)),
        ),
        Arc::new(NoHook),
    );
    student
        .hang_up
        .send(TransportEvent::Disconnected)
        .await
        .unwrap();
    let ended = log
        .wait_for(Duration::from_secs(1), |e| {
            matches!(e, AgentEvent::Ended(_))
        })
        .await;
    assert_eq!(ended.event, AgentEvent::Ended(EndReason::TransportClosed));
    assert_eq!(call.ended().await, EndReason::TransportClosed);
}

/// A hook that takes its time and writes down every utterance it finished reviewing.
struct SlowRecordingHook(Arc<std::sync::Mutex<Vec<u64>>>);

#[async_trait]
impl UtteranceHook for SlowRecordingHook {
    async fn review(&self, utterance: &Utterance) -> HookDecision {
        tokio::time::sleep(ms(400)).await;
        self.0.lock().unwrap().push(utterance.seq);
        HookDecision::Proceed
    }
}

#[tokio::test(start_paused = true)]
async fn every_utterance_is_reviewed_to_the_end_even_when_the_student_speaks_again() {
    let reviewed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = "I have been feeling off.";
    let second = "Also my exams are soon.";
    let (call, mut log, student) = start(
        quiet_config(),
        services(
            ScriptedStt::new(&[first, second], ms(100)),
            FakeLlm::replying(COUNSELOR_ANSWERS),
            ToneTts::new(ms(50), ms(40)),
        ),
        Arc::new(SlowRecordingHook(reviewed.clone())),
    );
    student.say(speech_frames(first)).await;
    log.wait_for(Duration::from_secs(15), final_line(Speaker::Student))
        .await;
    // The student goes on before the first review is done: its reply is cut short.
    student.say(speech_frames(second)).await;
    log.wait_for(Duration::from_secs(15), final_line(Speaker::Counselor))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let student_lines: Vec<u64> = log
        .seen
        .iter()
        .filter_map(|s| match &s.event {
            AgentEvent::Transcript(l) if l.is_final && l.speaker == Speaker::Student => Some(l.seq),
            _ => None,
        })
        .collect();
    let mut reviewed = reviewed.lock().unwrap().clone();
    reviewed.sort_unstable();
    assert_eq!(
        reviewed, student_lines,
        "each student line was reviewed exactly once"
    );
    call.end();
    call.ended().await;
}

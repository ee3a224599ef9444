//! A counselor on duty keeps the staff page open in a real browser; a student says something that
//! signals crisis during a call; the event is on the staff page within a second, and the counselor
//! marks it reviewed from there.
//!
//! The utterance goes through the same recorder a live call uses (safety check, stored event,
//! crisis desk), fed the agent's own events, so no speech models are needed. Needs Chromium and
//! Node with `npm ci --prefix e2e`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{AgentEvent, EndReason, HookDecision, TranscriptLine, Utterance, UtteranceHook};
use chrono::Utc;
use domain::{Category, ReviewOutcome, Role, SessionId, SessionMode, Speaker, Username};
use server::calls::{Feed, Recorder, SafetyHook};
use server::{Application, Config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = "a long enough password";
const SAID: &str = "honestly i just want to kill myself";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_in_a_call_reaches_the_open_staff_page_within_a_second() {
    let data_dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("BCRYPT_COST_FOR_TESTS", "4".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
        ("DATA_DIR", data_dir.path().display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let nurse = Username::parse(r"\campus\nurse1").unwrap();
    server::cli::add_user_with_role(
        &state.store,
        &state.passwords,
        &nurse,
        PASSWORD,
        false,
        Role::Staff,
    )
    .await
    .unwrap();
    let student = server::cli::add_user(
        &state.store,
        &state.passwords,
        &Username::parse(r"\campus\alex").unwrap(),
        PASSWORD,
        false,
    )
    .await
    .unwrap();
    tokio::spawn(app.run_until_stopped());

    let root = workspace_root();
    let mut browser = tokio::process::Command::new("node")
        .arg(root.join("e2e/staff-page.mjs"))
        .arg(&address)
        .arg(nurse.as_str())
        .arg(PASSWORD)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed, with `npm ci --prefix e2e`");
    let mut to_page = browser.stdin.take().unwrap();
    let mut from_page = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), from_page.next_line())
            .await
            .expect("the page answers")
            .unwrap()
    };
    let ready = next_line().await;
    if ready.as_deref() != Some("READY") {
        let output = browser.wait_with_output().await.unwrap();
        panic!(
            "the staff page did not open: {ready:?}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The student's call: its recorder, as a live call runs it, hears the crisis.
    let session = state
        .store
        .create_session(store::NewSession {
            id: SessionId::new(),
            user_id: student.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: "browser-test-room".into(),
            started_at: Utc::now(),
            node: None,
        })
        .await
        .unwrap();
    let (events, agent) = tokio::sync::mpsc::channel(8);
    let (verdicts_tx, verdicts) = tokio::sync::mpsc::unbounded_channel();
    // The safety hook as calls use it, with the risk model.
    let model = safety::model::RiskModel::load(&offline::testing::models_dir())
        .expect("the risk model is installed (counsel models install)");
    let hook = SafetyHook::new(Arc::new(safety::Classifier::with_model(model)), verdicts_tx);
    let recording = tokio::spawn(
        Recorder {
            session_id: session.id,
            started_at: session.started_at,
            store: state.store.clone(),
            feed: Arc::new(Feed::new()),
            student_id: student.id,
            student: student.username.clone(),
            desk: state.crisis_desk.clone(),
            node: state.calls.node(),
            draining: Default::default(),
        }
        .run(agent, verdicts),
    );
    to_page
        .write_all(format!("{SAID}\n").as_bytes())
        .await
        .unwrap();
    to_page.flush().await.unwrap();
    let said = Instant::now();
    events
        .send(AgentEvent::Transcript(TranscriptLine {
            seq: 1,
            speaker: Speaker::Student,
            text: SAID.into(),
            is_final: true,
            at: Duration::from_secs(2),
            interrupted: false,
        }))
        .await
        .unwrap();
    // The agent hands the line to the hook before its reply: the verdict goes to the recorder.
    let decision = hook
        .review(&Utterance {
            seq: 1,
            text: SAID.into(),
            recent_student_turns: vec![],
        })
        .await;
    assert!(matches!(decision, HookDecision::ReplaceReply(_)));
    let seen = next_line().await;
    let latency = said.elapsed();
    assert_eq!(seen.as_deref(), Some("SEEN"));
    eprintln!(
        "crisis event on the staff page {} ms after it was said",
        latency.as_millis()
    );
    assert!(
        latency < Duration::from_secs(1),
        "the staff page showed it after {latency:?}"
    );

    let report = next_line().await;
    drop(to_page);
    let output = tokio::time::timeout(Duration::from_secs(30), browser.wait_with_output())
        .await
        .expect("the browser closes")
        .unwrap();
    assert!(
        output.status.success(),
        "the staff page failed: {report:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&report.unwrap()).unwrap();
    assert_eq!(
        report["staffLink"], true,
        "staff see the link to their page"
    );
    assert_eq!(report["before"], 0);
    assert_eq!(report["student"], r"\campus\alex");
    assert_eq!(report["level"], "crisis");
    assert!(report["review"]
        .as_str()
        .unwrap()
        .contains("Contacted the student"));

    drop(hook);
    events
        .send(AgentEvent::Ended(EndReason::Ended))
        .await
        .unwrap();
    recording.await.unwrap();
    // The review made on the page is the stored one.
    let stored = state.store.crisis_events(session.id).await.unwrap();
    let review = stored[0].review.as_ref().expect("reviewed from the page");
    assert_eq!(review.outcome, ReviewOutcome::ContactedStudent);
    assert_eq!(
        review.note.as_deref(),
        Some("Called the student; they are safe tonight.")
    );
}

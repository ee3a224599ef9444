//! A student's whole visit in a real browser against the real server with no cloud account: sign
//! in through the web app, start a voice call with the Health counselor, hear the greeting, speak
//! (Chromium's fake microphone plays spoken audio), see the words transcribed by the offline
//! recogniser and answered, end the call, rate it, and find the session with its transcript and
//! its rating in the history; with the keyboard alone, and with axe-core finding no serious or
//! critical accessibility violation on any page or state on the way; then, on a phone-sized
//! screen, a video call with the avatar kept still and every page without sideways scrolling.
//!
//! Needs Chromium, Node with `npm ci --prefix e2e`, espeak-ng and the offline models
//! (`COUNSEL_MODELS_DIR`, as `scripts/test` sets up).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use domain::Username;
use server::{Application, Config};

const PASSWORD: &str = "a long enough password";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// A microphone file: two seconds of quiet, one spoken sentence, then quiet (Chromium loops it).
fn microphone_wav(dir: &Path) -> PathBuf {
    let speech = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&speech)
        .arg("I have been really stressed about my exams and I cannot sleep.")
        .status()
        .expect("espeak-ng must be installed (apt-get install espeak-ng)");
    assert!(status.success());
    // espeak writes 22 050 Hz mono PCM16; Chromium's fake capture device takes it as is.
    let bytes = std::fs::read(&speech).unwrap();
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize;
    let samples = &bytes[44..];
    let silence = |seconds: usize| vec![0u8; rate * 2 * seconds];
    let mut pcm = silence(2);
    pcm.extend_from_slice(samples);
    pcm.extend(silence(20));
    let mut wav = Vec::with_capacity(44 + pcm.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&(rate as u32).to_le_bytes());
    wav.extend_from_slice(&(rate as u32 * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(&pcm);
    let path = dir.join("microphone.wav");
    std::fs::write(&path, wav).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_talks_to_the_offline_counselor_in_the_browser() {
    let models_dir = offline::testing::models_dir();
    let data_dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("BCRYPT_COST_FOR_TESTS", "4".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
        ("DATA_DIR", data_dir.path().display().to_string()),
        ("MODELS_DIR", models_dir.display().to_string()),
        ("MODELS_AUTO_INSTALL", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    state.calls.warm_up().await;
    let username = Username::parse(r"\campus\jordan").unwrap();
    server::cli::add_user(&state.store, &state.passwords, &username, PASSWORD, false)
        .await
        .unwrap();
    tokio::spawn(app.run_until_stopped());

    let microphone = microphone_wav(data_dir.path());
    let root = workspace_root();
    let output = tokio::process::Command::new("node")
        .arg(root.join("e2e/student-call.mjs"))
        .arg(&address)
        .arg(username.as_str())
        .arg(PASSWORD)
        .arg(&microphone)
        .current_dir(&root)
        .output()
        .await
        .expect("node must be installed, with `npm ci --prefix e2e`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the visit failed:\n{stdout}\n{stderr}"
    );

    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let heard = seen["student"].as_str().unwrap().to_lowercase();
    assert!(
        heard.contains("stressed") && heard.contains("sleep"),
        "the recogniser heard {heard:?}"
    );

    // The session is in the student's history, with the transcript stored as it was said.
    let user = state
        .store
        .user_credentials(&username)
        .await
        .unwrap()
        .unwrap()
        .user;
    let (sessions, total) = state
        .store
        .list_sessions(user.id, &Default::default(), 1, 20)
        .await
        .unwrap();
    assert_eq!(total, 2, "the voice call, then the video call on the phone");
    assert!(
        sessions.iter().all(|s| s.ended_at.is_some()),
        "ending each call finalized its session"
    );
    let voice = sessions
        .iter()
        .find(|s| s.mode == domain::SessionMode::Voice)
        .expect("the voice call is in the history");
    let detail = state
        .store
        .session_for_user(user.id, voice.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        detail.messages.len() >= 3,
        "greeting, student, reply stored: {}",
        detail.messages.len()
    );
    // The rating given in the dialog after the call, stored with the session.
    assert_eq!(
        detail.record.rating.map(|r| r.rating.get()),
        Some(4),
        "the rating is stored"
    );
    assert_eq!(
        detail.rating_comment.as_ref().map(|c| c.as_str()),
        Some("It helped me plan my evenings.")
    );
}

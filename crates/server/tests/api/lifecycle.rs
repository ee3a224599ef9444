//! Starting and stopping the server: what a crash left open is closed on start.

use chrono::{Duration, DurationRound, Utc};
use domain::{Category, SessionId, SessionMode, Speaker, TranscriptText};
use reqwest::Method;
use serde_json::{json, Value};
use store::SessionEndReason;

use crate::helpers::TestApp;

crate::on_both_backends!(a_restart_closes_the_sessions_a_crash_left_open);

// M1 of the outside security test: a crash mid-call left the session "in progress" forever, and
// ending it later stamped the end then (a 17 s call recorded as 202 s).
async fn a_restart_closes_the_sessions_a_crash_left_open(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let store = &app.state.store;
    // A call that was 17 s in when the server died: its record is open, its lines are stored.
    let started = (Utc::now() - Duration::seconds(202))
        .duration_trunc(Duration::seconds(1))
        .unwrap();
    let crashed = SessionId::new();
    store
        .create_session(store::NewSession {
            id: crashed,
            user_id: student.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: format!("counsel-voice-{crashed}"),
            started_at: started,
        })
        .await
        .unwrap();
    for (sequence, (speaker, seconds)) in [(Speaker::Counselor, 1), (Speaker::Student, 17)]
        .into_iter()
        .enumerate()
    {
        let line = store::NewMessage {
            sequence: sequence as u32,
            speaker,
            text: TranscriptText::new("words"),
            is_final: true,
            timestamp: started + Duration::seconds(seconds),
        };
        store.append_message(crashed, line).await.unwrap();
    }

    // The server starts again on the same database.
    let _restarted = app.build_again().await;
    let closed = store.session(crashed).await.unwrap().unwrap();
    assert_eq!(closed.ended_at, Some(started + Duration::seconds(17)));
    assert_eq!(closed.duration_seconds, Some(17));
    assert_eq!(closed.end_reason, Some(SessionEndReason::ServerRestart));

    // The student's screen ends it afterwards: the record stays as it was.
    let ended = app
        .request(Method::POST, "/api/v1/voice/end-session")
        .bearer_auth(&token)
        .json(&json!({"session_id": crashed.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let ended: Value = ended.json().await.unwrap();
    assert_eq!(ended["duration_seconds"], 17, "{ended}");
    assert_eq!(store.session(crashed).await.unwrap().unwrap(), closed);
}

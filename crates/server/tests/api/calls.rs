//! Rooms and the WebRTC handshake, with cloud speech services configured (they are only
//! contacted once a call connects, so no model files and no network are needed here).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

/// Cloud speech, language and voice services at addresses nothing listens on: rooms can be
/// opened without the offline models.
const CLOUD_SERVICES: [(&str, &str); 4] = [
    ("DEEPGRAM_API_KEY", "test-key"),
    ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ("CARTESIA_API_KEY", "test-key"),
    ("MODELS_AUTO_INSTALL", "false"),
];

async fn app_with_cloud_services() -> TestApp {
    let models = tempfile::tempdir().unwrap();
    let models_dir = models.path().display().to_string();
    let mut settings = CLOUD_SERVICES.to_vec();
    settings.push(("MODELS_DIR", &models_dir));
    spawn_app_with(Backend::Sqlite, &settings)
        .await
        .expect("SQLite is always there")
}

/// A well-formed offer; it is never answered in these tests.
fn offer() -> Value {
    json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"})
}

async fn post_offer(
    app: &TestApp,
    session: &str,
    room_token: Option<&str>,
) -> (u16, String, String) {
    let mut request = app
        .request(
            Method::POST,
            &format!("/api/v1/rtc/sessions/{session}/offer"),
        )
        .json(&offer());
    if let Some(token) = room_token {
        request = request.bearer_auth(token);
    }
    error_of(request.send().await.unwrap()).await
}

// L2 of the outside security test: 401 for a live room and 404 for anything else told anyone
// which ids were live rooms.
#[tokio::test]
async fn the_offer_endpoint_answers_alike_for_live_rooms_and_any_other_id() {
    let app = app_with_cloud_services().await;
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let room: Value = app
        .request(Method::POST, "/api/v1/voice/create-room")
        .bearer_auth(&token)
        .json(&json!({"counselor_category": "Health"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live = room["session_id"]
        .as_str()
        .expect("a room was opened")
        .to_owned();
    let room_token = room["user_token"].as_str().unwrap().to_owned();

    // Another room's token, a guessed one, the student's access token: whatever the bearer, a
    // live room that it does not open looks exactly like an id that is no room at all.
    let nowhere = uuid::Uuid::new_v4().to_string();
    for bearer in [
        format!("{room_token}x"),
        "guessed".to_owned(),
        token.clone(),
    ] {
        let at_live_room = post_offer(&app, &live, Some(&bearer)).await;
        let at_no_room = post_offer(&app, &nowhere, Some(&bearer)).await;
        assert_eq!(at_live_room, at_no_room, "bearer {bearer:?}");
        assert_eq!(
            (at_live_room.0, at_live_room.1.as_str()),
            (404, "SESSION_001")
        );
    }
    // Without a token every id gets the same 401.
    assert_eq!(
        post_offer(&app, &live, None).await,
        post_offer(&app, &nowhere, None).await
    );
    assert_eq!(post_offer(&app, &live, None).await.0, 401);

    // The room is still open, waiting for its real offer.
    assert_eq!(app.state.calls.active_calls(), 1);
    let ended = app
        .request(Method::POST, "/api/v1/voice/end-session")
        .bearer_auth(&token)
        .json(&json!({"session_id": live}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(app.state.calls.active_calls(), 0);
}

//! Rooms and the WebRTC handshake, with cloud speech services configured (they are only
//! contacted once a call connects, so no model files and no network are needed here).

use reqwest::Method;
use serde_json::{json, Value};

use tokio_tungstenite::tungstenite;

use crate::helpers::{error_of, spawn_app_with_cloud_services, Backend, TestApp};

async fn app_with_cloud_services() -> TestApp {
    app_with_cloud_services_on(Backend::Sqlite)
        .await
        .expect("SQLite is always there")
}

/// As [`app_with_cloud_services`], on either database; `None` when PostgreSQL is not there.
async fn app_with_cloud_services_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with_cloud_services(backend, &[]).await
}

/// Runs each named `async fn(TestApp)` on SQLite and on PostgreSQL, with cloud services.
macro_rules! with_cloud_services_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = super::app_with_cloud_services_on(super::Backend::Sqlite).await;
                    super::$name(app.expect("SQLite is always there")).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = super::app_with_cloud_services_on(super::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

with_cloud_services_on_both_backends!(
    a_room_token_dies_with_a_block_or_a_sign_out,
    blocking_or_signing_out_closes_the_open_transcript_socket,
    rooms_nobody_joins_hold_no_capacity_and_leave_no_history,
);

async fn history_of(app: &TestApp, token: &str) -> Value {
    app.get_json("/api/v1/sessions", token).await
}

/// A student holds one unjoined room at most (a new one replaces it), and a room nobody joins
/// is closed by the sweep and left out of the student's history.
async fn rooms_nobody_joins_hold_no_capacity_and_leave_no_history(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let mut opened = Vec::new();
    for _ in 0..5 {
        opened.push(app.open_room(&token).await.0);
    }
    assert_eq!(
        app.state.calls.active_calls(),
        1,
        "each new room replaced the last"
    );
    let history = history_of(&app, &token).await;
    assert_eq!(history["total"], 1, "{history}");
    assert_eq!(history["sessions"][0]["id"], opened[4].as_str());

    // Nobody joins the last one either: the sweep closes it, and it leaves the history too.
    assert_eq!(
        app.state
            .calls
            .close_abandoned(std::time::Duration::ZERO)
            .await,
        1
    );
    assert_eq!(app.state.calls.active_calls(), 0);
    let history = history_of(&app, &token).await;
    assert_eq!(history["total"], 0, "{history}");
    for id in &opened {
        let gone = app.state.store.session(id.parse().unwrap()).await.unwrap();
        assert!(gone.is_none(), "{id} is still the student's");
    }
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
    let (live, room_token) = app.open_room(&token).await;

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

// L1 of the outside security test: a room token minted before a block still started the call.
async fn a_room_token_dies_with_a_block_or_a_sign_out(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let nowhere = uuid::Uuid::new_v4().to_string();
    let no_room = post_offer(&app, &nowhere, Some("anything")).await;
    assert_eq!((no_room.0, no_room.1.as_str()), (404, "SESSION_001"));

    // While the account stands, the room token reaches the handshake (this test's offer is not
    // one a real browser makes, so it is refused as an offer, not as a token).
    let token = app.token(&student).await;
    let (live, room_token) = app.open_room(&token).await;
    let (status, code, _) = post_offer(&app, &live, Some(&room_token)).await;
    assert_ne!((status, code.as_str()), (404, "SESSION_001"));

    // Blocked between create-room and the offer: the same answer as no room at all, and the
    // room is closed.
    let (blocked_room, blocked_room_token) = app.open_room(&token).await;
    let before = app.state.calls.active_calls();
    assert!(app
        .state
        .store
        .set_blocked(&student.username, true)
        .await
        .unwrap());
    assert_eq!(
        post_offer(&app, &blocked_room, Some(&blocked_room_token)).await,
        no_room
    );
    assert_eq!(
        app.state.calls.active_calls(),
        before - 1,
        "the room is closed"
    );
    let session = app
        .state
        .store
        .session(blocked_room.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(session.ended_at.is_some(), "the session is finalized");

    // Unblocking does not bring the room token (or the access token) back.
    let (other_room, other_room_token) = {
        app.state
            .store
            .set_blocked(&student.username, false)
            .await
            .unwrap();
        let token = app.token(&student).await;
        app.open_room(&token).await
    };
    assert_eq!(post_offer(&app, &live, Some(&room_token)).await, no_room);

    // Signing out revokes the room tokens the access token asked for.
    let token = app.token(&student).await;
    let response = app.logout(&token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        post_offer(&app, &other_room, Some(&other_room_token)).await,
        no_room
    );
}

/// Waits for the server to close a WebSocket; returns its close frame and how long it took.
async fn closed_by_server<S>(socket: &mut S) -> (Option<(u16, String)>, std::time::Duration)
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    use futures::StreamExt;
    let start = std::time::Instant::now();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(tungstenite::Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the server closes the socket within 5 s");
    (frame, start.elapsed())
}

// L1 of the outside security test: an open transcript socket kept streaming after a block.
async fn blocking_or_signing_out_closes_the_open_transcript_socket(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let bystander = app.add_user(r"\COLLEGE\other", false).await;

    for (what, reason) in [("block", "account blocked"), ("sign out", "signed out")] {
        let token = app.token(&student).await;
        let (session, _) = app.open_room(&token).await;
        let url = app.ws_url(&format!("/ws/sessions/{session}/transcript?token={token}"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the owner may open the transcript");
        let bystander_token = app.token(&bystander).await;
        let (bystander_session, _) = app.open_room(&bystander_token).await;
        let (mut bystanders_socket, _) = tokio_tungstenite::connect_async(app.ws_url(&format!(
            "/ws/sessions/{bystander_session}/transcript?token={bystander_token}"
        )))
        .await
        .unwrap();

        match what {
            "block" => {
                app.state
                    .store
                    .set_blocked(&student.username, true)
                    .await
                    .unwrap();
            }
            _ => {
                let response = app.logout(&token).await;
                assert_eq!(response.status(), 200);
            }
        }
        let (frame, took) = closed_by_server(&mut socket).await;
        assert_eq!(frame, Some((1008, reason.to_owned())), "{what}");
        assert!(
            took < std::time::Duration::from_millis(2500),
            "{what}: {took:?}"
        );

        // Another student's socket stays open.
        use futures::StreamExt;
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(300),
                bystanders_socket.next()
            )
            .await
            .is_err(),
            "{what}: the bystander's socket is untouched"
        );
        if what == "block" {
            app.state
                .store
                .set_blocked(&student.username, false)
                .await
                .unwrap();
        }
    }
}

/// The offer reads its room token with the one bearer parser: the scheme is case-insensitive
/// (RFC 7235), as it is for every other route.
#[tokio::test]
async fn the_offer_reads_a_lower_case_bearer_scheme() {
    let app = app_with_cloud_services().await;
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let (live, room_token) = app.open_room(&token).await;
    let response = app
        .request(Method::POST, &format!("/api/v1/rtc/sessions/{live}/offer"))
        .header("Authorization", format!("bearer {room_token}"))
        .json(&offer())
        .send()
        .await
        .unwrap();
    // The token opened the room: the (deliberately unusable) offer is what is refused.
    let (status, code, detail) = error_of(response).await;
    assert_eq!((status, code.as_str()), (422, "VALIDATION_001"), "{detail}");
}

/// A final transcript line as the call publishes it.
fn final_line(sequence: u64, speaker: domain::Speaker) -> server::calls::LiveMessage {
    server::calls::LiveMessage::Transcript {
        speaker,
        text: domain::TranscriptText::new(format!("line {sequence}")),
        is_final: true,
        sequence,
        timestamp: chrono::Utc::now(),
        interrupted: false,
    }
}

/// The sequence numbers of the next `count` final lines a transcript socket receives.
async fn next_finals<S>(socket: &mut S, count: usize) -> Vec<u64>
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    use futures::StreamExt;
    let mut finals = Vec::new();
    while finals.len() < count {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("a line within 5 s")
            .expect("the socket is open")
            .expect("a message");
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "transcript" && message["is_final"] == true {
            finals.push(message["sequence"].as_u64().unwrap());
        }
    }
    finals
}

/// Whether the socket stays quiet for a moment (nothing more was sent).
async fn stays_quiet<S>(socket: &mut S) -> bool
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_millis(300), socket.next())
        .await
        .is_err()
}

/// A screen that reconnects after a network blip with `?after=` (the last final line it saw)
/// gets only what came after that line, then the live stream: no line twice, none missed.
#[tokio::test]
async fn a_reconnecting_transcript_socket_resumes_after_the_last_line_it_saw() {
    use domain::Speaker::{Counselor, Student};
    let app = app_with_cloud_services().await;
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let (session, _) = app.open_room(&token).await;
    let feed = app
        .state
        .calls
        .feed(student.id, session.parse().unwrap())
        .expect("the room has a live feed");
    let url = |after: &str| {
        app.ws_url(&format!(
            "/ws/sessions/{session}/transcript?token={token}{after}"
        ))
    };
    // The counselor's line 2 is cut short by the student's line 3, so it is final after it.
    for (sequence, speaker) in [(1, Counselor), (3, Student), (2, Counselor)] {
        feed.publish(final_line(sequence, speaker));
    }

    let (mut first, _) = tokio_tungstenite::connect_async(url("")).await.unwrap();
    assert_eq!(next_finals(&mut first, 3).await, [1, 3, 2], "all so far");
    drop(first);
    // Said while the screen was away.
    feed.publish(final_line(4, Student));

    let (mut again, _) = tokio_tungstenite::connect_async(url("&after=2"))
        .await
        .unwrap();
    assert_eq!(next_finals(&mut again, 1).await, [4], "only what it missed");
    feed.publish(final_line(5, Counselor));
    assert_eq!(next_finals(&mut again, 1).await, [5], "then live");
    assert!(stays_quiet(&mut again).await, "nothing twice");

    // The resume point is where the line stands, not its number: after line 3 comes line 2.
    let (mut other, _) = tokio_tungstenite::connect_async(url("&after=3"))
        .await
        .unwrap();
    assert_eq!(next_finals(&mut other, 3).await, [2, 4, 5]);
    assert!(stays_quiet(&mut other).await);

    // Anything but a whole number is refused before the socket opens, naming the parameter.
    for bad in ["-1", "two", "", "1.5"] {
        match tokio_tungstenite::connect_async(url(&format!("&after={bad}"))).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 422, "after={bad}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], "VALIDATION_001", "after={bad}");
                assert!(body["detail"].as_str().unwrap().contains("after"), "{body}");
            }
            other => panic!("after={bad}: {other:?}"),
        }
    }
}

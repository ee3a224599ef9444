//! Several nodes on one PostgreSQL: a screen on one node follows a call that runs on another.
//!
//! The call's side is the real recorder of the node that runs it, fed the events its agent would
//! send (a real WebRTC call is the browser tests' business); the screen's side is a real
//! transcript socket on a second node of the same database.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use agent::{AgentEvent, EndReason, TranscriptLine};
use chrono::Utc;
use domain::{BotState, SessionId, Speaker};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{create_room, spawn_app, Backend, TestApp, TestUser};

/// A PostgreSQL deployment of two nodes and a signed-in student: node A (the app), the student,
/// their token, node B's `ws://` address and node B.
async fn two_nodes() -> Option<(TestApp, TestUser, String, String, server::AppState)> {
    let app = spawn_app(Backend::Postgres).await?;
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let (b, b_state) = app.another_node().await;
    let b = b.replacen("http://", "ws://", 1);
    Some((app, student, token, b, b_state))
}

/// The next JSON message a transcript socket receives, or `None` when it closes.
async fn next_message<S>(socket: &mut S) -> Option<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")?;
        match message.ok()? {
            Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn said(seq: u64, speaker: Speaker, text: &str) -> AgentEvent {
    AgentEvent::Transcript(TranscriptLine {
        seq,
        speaker,
        text: text.to_owned(),
        is_final: true,
        at: Duration::from_secs(seq * 5),
        interrupted: false,
    })
}

// Issue 14, item 3: `/ws/sessions/{id}/transcript` on a node that does not run the call gets its
// lines (read from the store, never from the notice), the crisis alert, the bot's state and the
// end; a screen that joins late gets what was said so far first, and no line twice. The staff
// page on that node shows the crisis too.
#[tokio::test]
async fn a_screen_on_another_node_follows_the_call_live() {
    // Node B: the same database, serving only the screen.
    let Some((app, student, token, b, b_state)) = two_nodes().await else {
        return;
    };
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let nurse_token = app.token(&nurse).await;
    let (mut staff_page, _) =
        tokio_tungstenite::connect_async(format!("{b}/ws/staff/crisis?token={nurse_token}"))
            .await
            .unwrap();

    // The call runs on node A (the test app): its session names A, its recorder is A's.
    let session = app
        .open_session_on(student.id, app.state.calls.node())
        .await;
    let started_at = app.stored_session(&session.to_string()).await.started_at;
    let (events, agent_events) = tokio::sync::mpsc::channel(16);
    let (verdicts, judged) = tokio::sync::mpsc::unbounded_channel();
    let recorder = server::calls::Recorder {
        session_id: session,
        started_at,
        store: app.state.store.clone(),
        feed: Arc::new(server::calls::Feed::new()),
        student_id: student.id,
        student: student.username.clone(),
        desk: app.state.crisis_desk.clone(),
        node: app.state.calls.node(),
        draining: Arc::new(AtomicBool::new(false)),
    };
    let call = tokio::spawn(recorder.run(agent_events, judged));

    events
        .send(said(1, Speaker::Counselor, "hi, what's on your mind"))
        .await
        .unwrap();
    let socket_url =
        |after: &str| format!("{b}/ws/sessions/{session}/transcript?token={token}{after}");
    // Line 1 is stored before the screen connects: it comes in the replay.
    wait_for_lines(&app, session, 1).await;
    let (mut screen, _) = tokio_tungstenite::connect_async(socket_url(""))
        .await
        .unwrap();
    let first = next_message(&mut screen).await.unwrap();
    assert_eq!(
        (first["type"].as_str(), first["sequence"].as_u64()),
        (Some("transcript"), Some(1))
    );
    assert_eq!(first["text"], "hi, what's on your mind");
    await_followed(&b_state).await;

    events
        .send(AgentEvent::BotState(BotState::Listening))
        .await
        .unwrap();
    let line = "i have the pills right here and i want to die";
    events.send(said(2, Speaker::Student, line)).await.unwrap();
    let verdict = safety::Classifier::rules_only().assess(line, &[]);
    assert_eq!(verdict.level(), domain::CrisisLevel::Crisis);
    verdicts
        .send(server::calls::JudgedUtterance {
            sequence: 2,
            text: domain::TranscriptText::new(line),
            verdict,
        })
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next_message(&mut screen).await.expect("the socket is open"));
    }
    let kinds: Vec<&str> = seen.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"bot_state"), "{kinds:?}");
    assert!(kinds.contains(&"crisis_alert"), "{kinds:?}");
    let line_two = seen.iter().find(|m| m["type"] == "transcript").unwrap();
    assert_eq!(
        (line_two["sequence"].as_u64(), line_two["text"].as_str()),
        (Some(2), Some(line)),
        "the line as stored, decrypted on node B"
    );

    let flagged = next_message(&mut staff_page)
        .await
        .expect("node B's staff page");
    assert_eq!(flagged["session_id"], session.to_string());
    assert_eq!(flagged["level"], "crisis");
    assert_eq!(flagged["text"], line, "decrypted on node B");
    assert_eq!(flagged["student_username"], r"\COLLEGE\jdoe");

    // A second screen joining late on node B: everything so far, then live, once each.
    let (mut late, _) = tokio_tungstenite::connect_async(socket_url("&after=1"))
        .await
        .unwrap();
    let replay = [
        next_message(&mut late).await.unwrap(),
        next_message(&mut late).await.unwrap(),
    ];
    assert_eq!(replay[0]["sequence"], 2);
    assert_eq!(replay[1]["type"], "crisis_alert");

    events
        .send(said(3, Speaker::Counselor, "i'm here with you"))
        .await
        .unwrap();
    events
        .send(AgentEvent::Ended(EndReason::Ended))
        .await
        .unwrap();
    call.await.unwrap();
    for screen in [&mut screen, &mut late] {
        let mut rest = Vec::new();
        while let Some(message) = next_message(screen).await {
            rest.push(message);
        }
        let kinds: Vec<(&str, Option<u64>)> = rest
            .iter()
            .map(|m| (m["type"].as_str().unwrap(), m["sequence"].as_u64()))
            .collect();
        assert_eq!(
            kinds,
            [("transcript", Some(3)), ("session_ended", None)],
            "line 3 once, then the end, then the socket closes"
        );
        assert_eq!(rest[1]["reason"], "ended");
    }
}

/// Waits until the store holds `count` lines of the session.
async fn wait_for_lines(app: &TestApp, session: SessionId, count: usize) {
    for _ in 0..100 {
        let stored = app
            .state
            .store
            .session(session)
            .await
            .unwrap()
            .unwrap()
            .message_count;
        if stored as usize >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the line was not stored");
}

/// Waits until node B's socket follows the session, so nothing sent next can fall before it.
async fn await_followed(node: &server::AppState) {
    for _ in 0..100 {
        if node.remote.followed() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("node B does not follow the session");
}

// Issue 14, item 4: a limit holds for the deployment, not per node. The history limit (here 4 a
// minute) is spent by requests that alternate between two nodes.
#[tokio::test]
async fn a_rate_limit_is_counted_across_nodes() {
    let Some(app) = crate::helpers::spawn_app_with(
        Backend::Postgres,
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("RATE_LIMIT_HISTORY_PER_MINUTE", "4"),
        ],
    )
    .await
    else {
        return;
    };
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let (b, _) = app.another_node().await;

    let history = |base: String| {
        let request = app
            .client
            .get(format!("{base}/api/v1/sessions"))
            .bearer_auth(&token);
        async move { request.send().await.unwrap() }
    };
    for (attempt, base) in [&app.address, &b, &app.address, &b].into_iter().enumerate() {
        assert_eq!(
            history(base.clone()).await.status(),
            200,
            "request {attempt}"
        );
    }
    for base in [&app.address, &b] {
        let refused = history(base.clone()).await;
        assert!(refused.headers().contains_key("retry-after"));
        let (status, code, _) = crate::helpers::error_of(refused).await;
        assert_eq!(
            (status, code.as_str()),
            (429, "RATE_LIMIT_001"),
            "at {base}"
        );
    }
}

// Issue 14, item 4: a student's five transcript sockets are five on all nodes together.
#[tokio::test]
async fn five_transcript_sockets_are_five_across_nodes() {
    let Some((app, student, token, b, _)) = two_nodes().await else {
        return;
    };
    let a = app.ws_url("");
    let a = a.as_str();

    // An open session: each socket stays open, following it.
    let session = app
        .open_session_on(student.id, app.state.calls.node())
        .await;
    let url = |base: &str| format!("{base}/ws/sessions/{session}/transcript?token={token}");
    let mut open = Vec::new();
    for base in [a, &b, a, &b, a] {
        let (socket, _) = tokio_tungstenite::connect_async(url(base)).await.unwrap();
        open.push(socket);
    }
    for base in [a, &b] {
        match tokio_tungstenite::connect_async(url(base)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 429, "a sixth at {base}")
            }
            other => panic!("a sixth socket at {base}: {other:?}"),
        }
    }
    // One closes on node B: its slot is free again, on either node.
    let mut closed = open.remove(1);
    closed.close(None).await.unwrap();
    drop(closed);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(url(a)).await {
            reopened = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the freed slot is taken again");
}

// Issue 14, item 2: the offer and the end of a call reach the node that runs it from any node.
// The offer here is well formed but not one a browser makes: the node running the room refuses
// it as an offer (422), after checking its room token, where a node without the room would
// answer 404.
#[tokio::test]
async fn the_offer_and_the_end_reach_the_node_running_the_call() {
    let Some(app) = crate::helpers::spawn_app_with_cloud_services(Backend::Postgres, &[]).await
    else {
        return;
    };
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let (b, b_state) = app.another_node().await;

    let (session, room_token) = app.open_room(&token).await;
    assert_eq!(app.state.calls.active_calls(), 1, "the room is on node A");

    let offer = |base: String, session: String, room_token: String| {
        let request = app
            .client
            .post(format!("{base}/api/v1/rtc/sessions/{session}/offer"))
            .bearer_auth(room_token)
            .json(&serde_json::json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}));
        async move { crate::helpers::error_of(request.send().await.unwrap()).await }
    };
    let at_b = offer(b.clone(), session.clone(), room_token.clone()).await;
    let at_a = offer(app.address.clone(), session.clone(), room_token.clone()).await;
    assert_eq!(at_b, at_a, "node B passes the offer on to node A");
    assert_eq!((at_b.0, at_b.1.as_str()), (422, "VALIDATION_001"));
    // A wrong token, or no room at all, is told apart nowhere.
    let wrong = offer(b.clone(), session.clone(), "not-the-room-token".into()).await;
    let nowhere = offer(b.clone(), SessionId::new().to_string(), room_token.clone()).await;
    assert_eq!((wrong.0, wrong.1.as_str()), (404, "SESSION_001"));
    assert_eq!(wrong, nowhere);

    // The student ends the session through node B: node A closes the room.
    let ended = app
        .client
        .post(format!("{b}/api/v1/voice/end-session"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"session_id": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    for _ in 0..100 {
        if app.state.calls.active_calls() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.calls.active_calls(), 0, "node A closed the room");
    assert_eq!(b_state.calls.active_calls(), 0);
    assert!(!app.stored_session(&session).await.is_active());
}

/// A node that runs one call at a time (as do the nodes it starts) and is running it, and the
/// token of the student, who has accepted the notice.
async fn a_full_one_call_node() -> Option<(TestApp, String)> {
    let app =
        crate::helpers::spawn_app_with_cloud_services(Backend::Postgres, &[("MAX_CALLS", "1")])
            .await?;
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    app.accept_notice(&token).await;
    let first = create_room(&app.client, &app.address, &token).await;
    assert_eq!(first.status(), 200);
    assert_eq!(app.state.calls.active_calls(), 1, "node A opened the first");
    Some((app, token))
}

/// What the registry says of a node: as a heartbeat just now would have it.
async fn registry_says(app: &TestApp, node: domain::NodeId, address: String, capacity: u32) {
    let registration = store::NodeRegistration {
        id: node,
        address,
        capacity,
    };
    app.state
        .store
        .register_node(&registration, Utc::now())
        .await
        .unwrap();
}

// Issue 14, item 2: a node that runs all the calls it can opens the next room on a node with
// calls to spare; `503 CAPACITY_001` only when every node is full.
#[tokio::test]
async fn a_full_node_opens_the_room_on_a_node_with_calls_to_spare() {
    let Some((app, token)) = a_full_one_call_node().await else {
        return;
    };
    let (_, b_state) = app.another_node().await;

    // Signed in by cookie, as the web app is: node B checks the page's origin against the host
    // the browser sent the request to, both passed on by node A.
    let second = app
        .client
        .post(format!("{}/api/v1/voice/create-room", app.address))
        .header("cookie", format!("access_token={token}"))
        .header("origin", &app.address)
        .json(&serde_json::json!({"counselor_category": "Health"}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200, "node A is full; node B opens it");
    let second: Value = second.json().await.unwrap();
    assert_eq!(b_state.calls.active_calls(), 1);
    let session: SessionId = second["session_id"].as_str().unwrap().parse().unwrap();
    let runner = app
        .state
        .store
        .node_running(session, Utc::now() - chrono::Duration::seconds(15))
        .await
        .unwrap()
        .expect("the session names its node");
    assert_eq!(runner.id, *b_state.calls.node().as_uuid());

    let third = create_room(&app.client, &app.address, &token).await;
    let (status, code, _) = crate::helpers::error_of(third).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "CAPACITY_001"),
        "both are full"
    );
}

// A slot counted for a socket that never opened (a handshake abandoned once its slot was
// counted) is given back at the node's next heartbeat, so the student is not short of one.
#[tokio::test]
async fn a_stray_socket_slot_is_given_back_at_the_next_heartbeat() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    let session = app
        .open_session_on(student.id, app.state.calls.node())
        .await;
    let url = app.ws_url(&format!("/ws/sessions/{session}/transcript?token={token}"));
    // Five slots the store counts for this node that no socket holds. A heartbeat may give them
    // back before the refusal below is seen (a loaded machine); then they are counted again.
    let mut tries = 0;
    loop {
        let long_ago = Utc::now() - chrono::Duration::minutes(1);
        for _ in 0..server::routes::live::SOCKETS_PER_USER {
            // `None` once five are counted: what a heartbeat left of the last try.
            let _ = app
                .state
                .store
                .take_socket_slot(student.id, app.state.calls.node(), 5, long_ago)
                .await
                .unwrap();
        }
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 429, "five counted already");
                break;
            }
            Ok((socket, _)) if tries < 3 => {
                tries += 1;
                drop(socket);
                // Its slot is given back when the server sees the close.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            other => panic!("expected 429: {other:?}"),
        }
    }
    let deadline =
        std::time::Instant::now() + 3 * server::nodes::HEARTBEAT_INTERVAL + Duration::from_secs(2);
    loop {
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stray slots are still counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// A node another node took for dead (a long pause) loses its registry row and with it the slots
// of its open sockets; when it records itself again it counts those sockets again, so the
// student still has five, not ten.
#[tokio::test]
async fn a_node_taken_for_dead_counts_its_open_sockets_again() {
    let Some((app, student, token, b, b_state)) = two_nodes().await else {
        return;
    };
    // The call runs on node B; node A's sockets follow it from afar.
    let session = app.open_session_on(student.id, b_state.calls.node()).await;
    let url = |base: &str| format!("{base}/ws/sessions/{session}/transcript?token={token}");
    let a = app.ws_url("");
    let mut open = Vec::new();
    for _ in 0..server::routes::live::SOCKETS_PER_USER {
        let (socket, _) = tokio_tungstenite::connect_async(url(&a)).await.unwrap();
        open.push(socket);
    }
    let node_a = app.state.calls.node();
    let far_future = Utc::now() + chrono::Duration::days(1);
    let counted = || async {
        app.state
            .store
            .socket_slots_of(node_a, far_future)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(counted().await, 5);

    // Node A's row goes, as a node that found it silent removes it.
    app.state.store.remove_node(node_a).await.unwrap();
    assert_eq!(counted().await, 0, "the slots go with the node's row");

    let deadline =
        std::time::Instant::now() + 2 * server::nodes::HEARTBEAT_INTERVAL + Duration::from_secs(2);
    while counted().await < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "node A's open sockets were not counted again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match tokio_tungstenite::connect_async(url(&b)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429, "a sixth on node B")
        }
        other => panic!("a sixth socket on node B: {other:?}"),
    }
    drop(open);
}

// A node whose registry row still shows calls to spare (its heartbeat is behind) but that has
// filled up answers 503; the room then opens on the next node with calls to spare.
#[tokio::test]
async fn a_room_refused_by_a_node_that_filled_up_opens_on_the_next() {
    let Some((app, token)) = a_full_one_call_node().await else {
        return;
    };
    let (b, b_state) = app.another_node().await;
    let (_, c_state) = app.another_node().await;
    assert_eq!(create_room(&app.client, &b, &token).await.status(), 200);
    assert_eq!(b_state.calls.active_calls(), 1, "node B is full");
    // The registry says node B has the most calls to spare, as a stale row would.
    registry_says(&app, b_state.calls.node(), b, 10).await;

    let third = create_room(&app.client, &app.address, &token).await;
    assert_eq!(third.status(), 200, "node B refuses; node C opens it");
    assert_eq!(c_state.calls.active_calls(), 1);
}

// A node that died since its last heartbeat is still in the registry with calls to spare; the
// room opens on the next node instead of failing with 502.
#[tokio::test]
async fn a_room_passed_to_a_node_that_died_opens_on_the_next() {
    let Some((app, token)) = a_full_one_call_node().await else {
        return;
    };
    let (_, c_state) = app.another_node().await;
    // Nothing listens at the dead node's address (port 1 refuses at once).
    registry_says(
        &app,
        domain::NodeId::new(),
        "http://127.0.0.1:1".to_owned(),
        50,
    )
    .await;

    let second = create_room(&app.client, &app.address, &token).await;
    assert_eq!(second.status(), 200, "the dead node is passed over");
    assert_eq!(c_state.calls.active_calls(), 1);
}

// While a node's connection to the other nodes' notices is down, crises flagged elsewhere go
// unheard there; once it is made again, its staff pages are told to reload the queue.
#[tokio::test]
async fn staff_pages_reload_the_queue_after_the_notices_connection_drops() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let token = app.token(&nurse).await;
    let (mut staff_page, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/staff/crisis?token={token}")))
            .await
            .unwrap();

    // The node's listening connection, as the database sees it, is cut.
    let database = app.database_url();
    let name = database.rsplit('/').next().unwrap().to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&database)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        if cut.iter().any(|&c| c) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = next_message(&mut staff_page)
        .await
        .expect("the page is told");
    assert_eq!(message["type"], "resync", "{message}");
}

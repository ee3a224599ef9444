//! Staff on duty: the crisis review queue, reviews, and the live crisis feed. Nobody but staff
//! can reach or even detect these routes.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use agent::{AgentEvent, EndReason, TranscriptLine, Utterance, UtteranceHook};
use chrono::{Duration, Utc};
use domain::{Category, CrisisLevel, SessionId, SessionMode, Speaker};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use server::calls::{Feed, Recorder, SafetyHook};
use store::{AuditAction, AuditResource};
use tokio_tungstenite::tungstenite;

use crate::helpers::{error_of, TestApp};
use crate::on_both_backends;

on_both_backends!(
    students_and_strangers_get_404_on_every_staff_route,
    a_blocked_or_demoted_staff_member_loses_access_at_once,
    staff_see_the_queue_newest_first_with_who_said_what,
    a_review_is_recorded_once_and_shown,
    the_staff_socket_shows_a_calls_crisis_as_it_is_stored,
    blocking_demoting_or_signing_out_closes_the_staff_socket_at_once,
);

const QUEUE: &str = "/api/v1/staff/crisis-events";

/// What an unknown route answers (status, code, detail).
async fn unknown_route(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let mut request = app.request(Method::GET, "/api/v1/no-such-route");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    error_of(request.send().await.unwrap()).await
}

/// Every staff route, each way a caller might try it.
async fn every_staff_route(app: &TestApp, token: Option<&str>) -> Vec<(String, reqwest::Response)> {
    let some_event = uuid::Uuid::new_v4();
    let review = format!("{QUEUE}/{some_event}/review");
    let attempts: Vec<(Method, String)> = vec![
        (Method::GET, QUEUE.to_owned()),
        (Method::GET, format!("{QUEUE}?status=all")),
        (Method::GET, "/api/staff/crisis-events".to_owned()),
        (Method::POST, review.clone()),
        (Method::POST, review.replace("/api/v1/", "/api/")),
        // A wrong method would be a 405 on a route that exists.
        (Method::DELETE, QUEUE.to_owned()),
        (Method::GET, review),
        (Method::GET, "/ws/staff/crisis".to_owned()),
    ];
    let mut answers = Vec::new();
    for (method, path) in attempts {
        let mut request = app
            .request(method.clone(), &path)
            .json(&json!({"outcome": "false_alarm", "note": "probing"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answers.push((format!("{method} {path}"), request.send().await.unwrap()));
    }
    answers
}

/// A WebSocket handshake to the staff feed: the HTTP status it was refused with, if it was.
async fn staff_socket_refusal(app: &TestApp, token: &str) -> Option<u16> {
    let url = app.ws_url(&format!("/ws/staff/crisis?token={token}"));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("unexpected handshake failure: {other}"),
    }
}

async fn students_and_strangers_get_404_on_every_staff_route(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&student).await;
    app.flag(student.id, Utc::now(), "i want to die", CrisisLevel::Crisis)
        .await;

    for caller in [Some(token.as_str()), None, Some("not-a-token")] {
        let expected = unknown_route(&app, caller).await;
        assert_eq!(expected.0, 404);
        for (what, response) in every_staff_route(&app, caller).await {
            assert_eq!(
                error_of(response).await,
                expected,
                "{what} as {caller:?} must look like an unknown route"
            );
        }
    }
    assert_eq!(staff_socket_refusal(&app, &token).await, Some(404));
    assert_eq!(staff_socket_refusal(&app, "not-a-token").await, Some(404));

    // The student's own view of themselves says what they are.
    let me: Value = app.get_json("/api/v1/auth/me", &token).await;
    assert_eq!(me["role"], "student");
    // Nothing was disclosed, so nothing about the event is in the audit trail.
    let trail = app
        .state
        .store
        .audit_log_for_user(student.id, 50)
        .await
        .unwrap();
    assert!(trail.is_empty(), "{trail:?}");
}

async fn a_blocked_or_demoted_staff_member_loses_access_at_once(app: TestApp) {
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let token = app.token(&nurse).await;
    assert_eq!(app.get(QUEUE, &token).await.status(), 200);
    let me: Value = app.get_json("/api/v1/auth/me", &token).await;
    assert_eq!(me["role"], "staff");

    // The same, still valid token: the role is read from the database on every request.
    let store = &app.state.store;
    store
        .set_role(&nurse.username, domain::Role::Student)
        .await
        .unwrap();
    assert_eq!(error_of(app.get(QUEUE, &token).await).await.1, "NOT_FOUND");
    assert_eq!(staff_socket_refusal(&app, &token).await, Some(404));

    store
        .set_role(&nurse.username, domain::Role::Staff)
        .await
        .unwrap();
    store.set_blocked(&nurse.username, true).await.unwrap();
    assert_eq!(error_of(app.get(QUEUE, &token).await).await.1, "NOT_FOUND");
    assert_eq!(staff_socket_refusal(&app, &token).await, Some(404));
}

async fn staff_see_the_queue_newest_first_with_who_said_what(app: TestApp) {
    let jdoe = app.add_user(r"\COLLEGE\jdoe", false).await;
    let alex = app.add_user(r"\COLLEGE\alex", false).await;
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let now = Utc::now();
    let older = app
        .flag(
            jdoe.id,
            now - Duration::hours(2),
            "I feel like a burden",
            CrisisLevel::Concern,
        )
        .await;
    let newer = app
        .flag(
            alex.id,
            now - Duration::hours(1),
            "I want to end my life",
            CrisisLevel::Crisis,
        )
        .await;
    let token = app.token(&nurse).await;

    let response = app.get(QUEUE, &token).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["per_page"].as_u64()
        ),
        (Some(2), Some(1), Some(20))
    );
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let first = &events[0];
    assert_eq!(first["id"], newer.id.to_string(), "newest first");
    assert_eq!(first["session_id"], newer.session_id.to_string());
    assert_eq!(first["student_username"], r"\COLLEGE\alex");
    assert_eq!(first["text"], "I want to end my life");
    assert_eq!(first["level"], "crisis");
    assert_eq!(first["signal"], "suicidal_ideation");
    assert_eq!(first["decided_by"], "rule");
    assert_eq!(first["status"], "open");
    for field in ["reviewed_by", "reviewed_at", "note", "outcome"] {
        assert!(first[field].is_null(), "{field}: {first}");
    }
    assert!(first["created_at"].is_string());
    assert_eq!(events[1]["id"], older.id.to_string());
    assert_eq!(events[1]["student_username"], r"\COLLEGE\jdoe");
    assert_eq!(events[1]["level"], "concern");

    // Paged like the session history; the alias path serves the same.
    let second: Value = app
        .get_json("/api/staff/crisis-events?per_page=1&page=2", &token)
        .await;
    assert_eq!(second["events"][0]["id"], older.id.to_string());
    assert_eq!(second["total"], 2);
    let reviewed: Value = app
        .get_json(&format!("{QUEUE}?status=reviewed"), &token)
        .await;
    assert_eq!(reviewed["total"], 0);
    for (query, field) in [
        ("status=closed", "status"),
        ("per_page=500", "per_page"),
        ("page=0", "page"),
    ] {
        let (status, code, detail) =
            error_of(app.get(&format!("{QUEUE}?{query}"), &token).await).await;
        assert_eq!((status, code.as_str()), (422, "VALIDATION_001"), "{query}");
        assert!(detail.starts_with(field), "{query}: {detail}");
    }

    // Each event shown was audited against the staff member who saw it: the newer one once
    // (the first listing), the older one twice (the first listing and the second page).
    for (event, times) in [(&newer, 1), (&older, 2)] {
        let trail = app
            .state
            .store
            .audit_log_for_resource(AuditResource::CrisisEvent, event.id)
            .await
            .unwrap();
        assert_eq!(trail.len(), times, "{trail:?}");
        assert!(trail.iter().all(|r| r.entry.user_id == Some(nurse.id)
            && r.entry.action == AuditAction::ViewCrisisEvent
            && r.entry.ip.is_some()));
    }
}

async fn a_review_is_recorded_once_and_shown(app: TestApp) {
    let jdoe = app.add_user(r"\COLLEGE\jdoe", false).await;
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let other = app.add_staff(r"\COLLEGE\nurse2").await;
    let event = app
        .flag(
            jdoe.id,
            Utc::now(),
            "I have pills saved up",
            CrisisLevel::Crisis,
        )
        .await;
    let review_path = format!("{QUEUE}/{}/review", event.id);
    let review = |token: String, body: Value| {
        app.request(Method::POST, &review_path)
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let token = app.token(&nurse).await;

    // Bad input names its field and records nothing.
    let (status, _, detail) = error_of(
        review(token.clone(), json!({"outcome": "shrugged"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(detail.starts_with("outcome"), "{detail}");
    let long = "x".repeat(2001);
    let (status, _, detail) = error_of(
        review(token.clone(), json!({"outcome": "referred", "note": long}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(detail.starts_with("note"), "{detail}");

    let before = Utc::now();
    let response = review(
        token.clone(),
        json!({"outcome": "contacted_student", "note": "Called; student is safe and seeing counseling today."}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let reviewed: Value = response.json().await.unwrap();
    assert_eq!(reviewed["id"], event.id.to_string());
    assert_eq!(reviewed["status"], "reviewed");
    assert_eq!(reviewed["outcome"], "contacted_student");
    assert_eq!(reviewed["reviewed_by"], r"\COLLEGE\nurse1");
    assert_eq!(
        reviewed["note"],
        "Called; student is safe and seeing counseling today."
    );
    let at: chrono::DateTime<Utc> = reviewed["reviewed_at"].as_str().unwrap().parse().unwrap();
    assert!(at >= before - Duration::seconds(1) && at <= Utc::now());

    // Final: a second review, by anyone, is a conflict with its own code.
    let second = app.token(&other).await;
    let (status, code, _) = error_of(
        review(second, json!({"outcome": "false_alarm"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "CRISIS_002"));
    let unknown = app
        .request(
            Method::POST,
            &format!("{QUEUE}/{}/review", uuid::Uuid::new_v4()),
        )
        .bearer_auth(&token)
        .json(&json!({"outcome": "referred"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(unknown).await.1, "CRISIS_001");

    // It left the open queue and shows, reviewed, in the others.
    let open: Value = app.get_json(QUEUE, &token).await;
    assert_eq!(open["total"], 0);
    let all: Value = app.get_json(&format!("{QUEUE}?status=all"), &token).await;
    assert_eq!(all["events"][0]["outcome"], "contacted_student");
    assert_eq!(all["events"][0]["reviewed_by"], r"\COLLEGE\nurse1");

    // One review row, the nurse's (the refused second review changed nothing).
    let trail = app
        .state
        .store
        .audit_log_for_resource(AuditResource::CrisisEvent, event.id)
        .await
        .unwrap();
    let reviews: Vec<_> = trail
        .iter()
        .filter(|r| r.entry.action == AuditAction::ReviewCrisisEvent)
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].entry.user_id, Some(nurse.id));
}

async fn the_staff_socket_shows_a_calls_crisis_as_it_is_stored(app: TestApp) {
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let token = app.token(&nurse).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/staff/crisis?token={token}")))
            .await
            .expect("staff may open the feed");
    let opened = app
        .state
        .store
        .audit_log_for_user(nurse.id, 10)
        .await
        .unwrap();
    assert_eq!(opened.len(), 1, "the feed is audited once per connection");
    assert_eq!(opened[0].entry.action, AuditAction::ViewCrisisFeed);
    assert_eq!(opened[0].entry.resource_type, AuditResource::CrisisFeed);

    // A call's recorder, exactly as a live call runs it, hears the student's crisis.
    let store = &app.state.store;
    let session = store
        .create_session(store::NewSession {
            id: SessionId::new(),
            user_id: student.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: "test-room".into(),
            started_at: Utc::now(),
            node: None,
        })
        .await
        .unwrap();
    let (events, agent) = tokio::sync::mpsc::channel(8);
    let (verdicts_tx, verdicts) = tokio::sync::mpsc::unbounded_channel();
    let hook = SafetyHook::new(Arc::new(safety::Classifier::rules_only()), verdicts_tx);
    let recording = tokio::spawn(
        Recorder {
            session_id: session.id,
            started_at: session.started_at,
            store: store.clone(),
            feed: Arc::new(Feed::new()),
            student_id: student.id,
            student: student.username.clone(),
            desk: app.state.crisis_desk.clone(),
            node: app.state.calls.node(),
            draining: Default::default(),
        }
        .run(agent, verdicts),
    );
    let said = Instant::now();
    events
        .send(AgentEvent::Transcript(TranscriptLine {
            seq: 1,
            speaker: Speaker::Student,
            text: "honestly i just want to kill myself".into(),
            is_final: true,
            at: StdDuration::from_secs(3),
            interrupted: false,
        }))
        .await
        .unwrap();
    // The agent hands the line to the safety hook before replying; its verdict is the one flagged.
    hook.review(&Utterance {
        seq: 1,
        text: "honestly i just want to kill myself".into(),
        recent_student_turns: vec![],
    })
    .await;

    let message = tokio::time::timeout(StdDuration::from_secs(1), socket.next())
        .await
        .expect("the staff feed shows it within a second")
        .unwrap()
        .unwrap();
    let shown: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
    assert!(said.elapsed() < StdDuration::from_secs(1));
    assert_eq!(shown["type"], "crisis_event");
    assert_eq!(shown["student_username"], r"\COLLEGE\jdoe");
    assert_eq!(shown["text"], "honestly i just want to kill myself");
    assert_eq!(shown["level"], "crisis");
    assert_eq!(shown["status"], "open");
    assert_eq!(shown["session_id"], session.id.to_string());

    drop(hook);
    events
        .send(AgentEvent::Ended(EndReason::Ended))
        .await
        .unwrap();
    recording.await.unwrap();
    // It is the stored event: the review queue has it under the same id.
    let stored = store.crisis_events(session.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(shown["id"], stored[0].id.to_string());
    let queue: Value = app.get_json(QUEUE, &token).await;
    assert_eq!(queue["events"][0]["id"], shown["id"]);
}

// L1 of the outside security test, for staff: the live crisis feed of a blocked (or demoted, or
// signed out) staff member closes within about a second, not at the next 30 s check.
async fn blocking_demoting_or_signing_out_closes_the_staff_socket_at_once(app: TestApp) {
    let nurse = app.add_staff(r"\COLLEGE\nurse1").await;
    let colleague = app.add_staff(r"\COLLEGE\nurse2").await;
    let store = &app.state.store;
    for (what, reason) in [
        ("block", "account blocked"),
        ("demote", "staff access withdrawn"),
        ("sign out", "signed out"),
    ] {
        let token = app.token(&nurse).await;
        let (mut socket, _) = tokio_tungstenite::connect_async(
            app.ws_url(&format!("/ws/staff/crisis?token={token}")),
        )
        .await
        .expect("staff may open the feed");
        let colleagues_token = app.token(&colleague).await;
        let (mut colleagues_socket, _) = tokio_tungstenite::connect_async(
            app.ws_url(&format!("/ws/staff/crisis?token={colleagues_token}")),
        )
        .await
        .unwrap();

        let changed = Instant::now();
        match what {
            "block" => assert!(store.set_blocked(&nurse.username, true).await.unwrap()),
            "demote" => assert!(store
                .set_role(&nurse.username, domain::Role::Student)
                .await
                .unwrap()),
            _ => {
                let response = app.logout(&token).await;
                assert_eq!(response.status(), 200);
            }
        }
        let frame = tokio::time::timeout(StdDuration::from_secs(5), async {
            while let Some(message) = socket.next().await {
                if let Ok(tungstenite::Message::Close(frame)) = message {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
            }
            None
        })
        .await
        .expect("the feed closes within 5 s");
        let took = changed.elapsed();
        assert_eq!(frame, Some((1008, reason.to_owned())), "{what}");
        assert!(took < StdDuration::from_millis(2500), "{what}: {took:?}");
        assert!(
            tokio::time::timeout(StdDuration::from_millis(300), colleagues_socket.next())
                .await
                .is_err(),
            "{what}: a colleague's feed stays open"
        );

        store.set_blocked(&nurse.username, false).await.unwrap();
        store
            .set_role(&nurse.username, domain::Role::Staff)
            .await
            .unwrap();
    }
}

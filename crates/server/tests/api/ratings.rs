//! Rating a session after its call: once, by its owner, 1 to 5 with an optional comment.

use chrono::{Duration, Utc};
use domain::{Category, SessionId, SessionMode, Speaker};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_of, TestApp};
use crate::on_both_backends;

on_both_backends!(
    the_owner_rates_a_finished_session_once,
    nobody_else_can_rate_or_detect_a_session,
    a_bad_rating_names_what_is_wrong,
    a_call_is_rated_once_it_has_ended,
);

async fn rate(app: &TestApp, session: &str, token: &str, body: Value) -> reqwest::Response {
    app.request(Method::POST, &format!("/api/v1/sessions/{session}/rating"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn finished_session(app: &TestApp, owner: domain::UserId) -> SessionId {
    app.add_session(
        owner,
        Category::Academic,
        SessionMode::Voice,
        Utc::now() - Duration::hours(2),
        &[
            (Speaker::Counselor, "Hi, what's on your mind?"),
            (Speaker::Student, "My thesis deadline."),
        ],
    )
    .await
}

async fn the_owner_rates_a_finished_session_once(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let id = finished_session(&app, me.id).await;
    let token = app.token(&me).await;
    let comment = format!("{}  ", "é".repeat(499) + "!");

    let response = rate(
        &app,
        &id.to_string(),
        &token,
        json!({"rating": 4, "comment": comment}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["session_id"], id.to_string());
    assert_eq!(stored["rating"], 4);
    assert_eq!(
        stored["comment"],
        comment.trim(),
        "kept trimmed, 500 characters fit"
    );
    let rated_at = stored["rated_at"].as_str().unwrap().to_owned();

    // Shown in the history listing and on the session page.
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(page["sessions"][0]["rating"], 4);
    assert_eq!(page["sessions"][0]["rated_at"], rated_at.as_str());
    assert!(
        page["sessions"][0].get("rating_comment").is_none(),
        "the listing carries no private text"
    );
    let detail: Value = app
        .get_json(&format!("/api/v1/sessions/{id}"), &token)
        .await;
    assert_eq!(
        (detail["rating"].clone(), detail["rated_at"].clone()),
        (json!(4), json!(rated_at))
    );
    assert_eq!(detail["rating_comment"], comment.trim());

    // Only once: a second rating is refused and changes nothing.
    let (status, code, detail_text) =
        error_of(rate(&app, &id.to_string(), &token, json!({"rating": 1})).await).await;
    assert_eq!((status, code.as_str()), (409, "SESSION_003"));
    assert!(detail_text.contains("already rated"), "{detail_text}");
    let detail: Value = app
        .get_json(&format!("/api/v1/sessions/{id}"), &token)
        .await;
    assert_eq!(detail["rating"], 4);

    // An unrated session says so, and a rating without a comment has none.
    let other = finished_session(&app, me.id).await;
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    let unrated = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == other.to_string())
        .unwrap();
    assert_eq!(
        (unrated["rating"].clone(), unrated["rated_at"].clone()),
        (Value::Null, Value::Null)
    );
    let response = rate(
        &app,
        &other.to_string(),
        &token,
        json!({"rating": 5, "comment": "   "}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(
        stored["comment"],
        Value::Null,
        "a blank comment is no comment"
    );
}

async fn nobody_else_can_rate_or_detect_a_session(app: TestApp) {
    let owner = app.add_user(r"\COLLEGE\owner", false).await;
    let intruder = app.add_user(r"\COLLEGE\intruder", false).await;
    let id = finished_session(&app, owner.id).await;
    let deleted = finished_session(&app, owner.id).await;
    let owner_token = app.token(&owner).await;
    assert_eq!(
        app.delete(&format!("/api/v1/sessions/{deleted}"), &owner_token)
            .await
            .status(),
        204
    );
    let token = app.token(&intruder).await;
    let body = json!({"rating": 1, "comment": "ha"});

    let missing = error_of(
        rate(
            &app,
            &uuid::Uuid::new_v4().to_string(),
            &token,
            body.clone(),
        )
        .await,
    )
    .await;
    assert_eq!(
        missing,
        (
            404,
            "SESSION_001".to_owned(),
            "Session not found".to_owned()
        )
    );
    for (who, session) in [
        (&token, id.to_string()),
        (&token, "not-a-uuid".to_owned()),
        (&owner_token, deleted.to_string()),
    ] {
        let answer = error_of(rate(&app, &session, who, body.clone()).await).await;
        assert_eq!(answer, missing, "{session} looks exactly like no session");
    }
    // Not signed in at all.
    let anonymous = app
        .request(Method::POST, &format!("/api/v1/sessions/{id}/rating"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await.1, "AUTH_004");

    // The owner can still rate it: the intruder's attempts left nothing behind.
    let response = rate(&app, &id.to_string(), &owner_token, json!({"rating": 3})).await;
    assert_eq!(response.status(), 201);
}

async fn a_bad_rating_names_what_is_wrong(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let id = finished_session(&app, me.id).await.to_string();
    let token = app.token(&me).await;
    for (body, field) in [
        (json!({"rating": 0}), "rating"),
        (json!({"rating": 6}), "rating"),
        (json!({"rating": -3}), "rating"),
        (json!({"rating": 4.5}), "rating"),
        (json!({"rating": "4"}), "rating"),
        (json!({"rating": null}), "rating"),
        (json!({"comment": "lovely"}), "rating"),
        (json!({"rating": 3, "comment": "x".repeat(501)}), "comment"),
        (json!({"rating": 3, "comment": 5}), "comment"),
    ] {
        let (status, code, detail) = error_of(rate(&app, &id, &token, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (422, "VALIDATION_001"), "{body}");
        assert!(
            detail.starts_with(&format!("{field}: ")),
            "{body}: {detail}"
        );
    }
    let (_, _, detail) = error_of(rate(&app, &id, &token, json!({"rating": 9})).await).await;
    assert_eq!(detail, "rating: must be a whole number from 1 to 5");
    let (_, _, detail) = error_of(
        rate(
            &app,
            &id,
            &token,
            json!({"rating": 2, "comment": "y".repeat(600)}),
        )
        .await,
    )
    .await;
    assert_eq!(detail, "comment: must be at most 500 characters");

    let detail: Value = app
        .get_json(&format!("/api/v1/sessions/{id}"), &token)
        .await;
    assert_eq!(
        detail["rating"],
        Value::Null,
        "no refused rating was stored"
    );
    assert_eq!(
        rate(&app, &id, &token, json!({"rating": 2})).await.status(),
        201
    );
}

async fn a_call_is_rated_once_it_has_ended(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    let id = SessionId::new();
    app.state
        .store
        .create_session(store::NewSession {
            id,
            user_id: me.id,
            category: Category::Health,
            mode: SessionMode::Voice,
            room_name: format!("test-{id}"),
            started_at: Utc::now(),
            node: None,
        })
        .await
        .unwrap();

    let (status, code, _) =
        error_of(rate(&app, &id.to_string(), &token, json!({"rating": 5})).await).await;
    assert_eq!((status, code.as_str()), (409, "SESSION_004"));

    let ended = app
        .request(Method::POST, "/api/v1/voice/end-session")
        .bearer_auth(&token)
        .json(&json!({ "session_id": id.to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(
        rate(&app, &id.to_string(), &token, json!({"rating": 5}))
            .await
            .status(),
        201
    );
}

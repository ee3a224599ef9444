//! The first-visit notice: served as this server words it, accepted once per account and
//! wording, the acceptance stored and audited.

use reqwest::Method;
use serde_json::{json, Value};
use store::{AuditAction, AuditResource};

use crate::helpers::{error_of, TestApp, TestUser};
use crate::on_both_backends;

on_both_backends!(
    the_notice_is_accepted_once_per_account_and_audited,
    only_the_notice_shown_can_be_accepted,
    staff_alerts_change_the_words_and_ask_again,
    no_session_starts_before_the_notice_is_accepted,
);

async fn no_session_starts_before_the_notice_is_accepted(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    for mode in ["voice", "video"] {
        let refused = app
            .request(Method::POST, &format!("/api/v1/{mode}/create-room"))
            .bearer_auth(&token)
            .json(&json!({"counselor_category": "Health"}))
            .send()
            .await
            .unwrap();
        let (status, code, _) = error_of(refused).await;
        assert_eq!((status, code.as_str()), (403, "NOTICE_002"), "{mode}");
    }
    assert_eq!(app.state.calls.active_calls(), 0);
    let history: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(history["total"], 0, "no session was recorded: {history}");
}

async fn notice(app: &TestApp, token: &str) -> Value {
    let response = app.get("/api/v1/notice", token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn accept(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/notice/acceptance")
        .bearer_auth(token)
        .header("user-agent", "notice-test/1.0")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn words(notice: &Value) -> String {
    notice["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}\n{}\n",
                s["heading"].as_str().unwrap(),
                s["text"].as_str().unwrap()
            )
        })
        .collect()
}

async fn acceptances_audited(app: &TestApp, user: &TestUser) -> Vec<store::AuditRecord> {
    app.state
        .store
        .audit_log_for_resource(AuditResource::Account, *user.id.as_uuid())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.entry.action == AuditAction::AcceptNotice)
        .collect()
}

async fn the_notice_is_accepted_once_per_account_and_audited(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let other = app.add_user(r"\COLLEGE\other", false).await;
    let token = app.token(&me).await;

    let first = notice(&app, &token).await;
    assert_eq!(
        first["accepted_at"],
        Value::Null,
        "a new account has not accepted it"
    );
    let text = words(&first);
    for needed in [
        "AI",
        "transcript",
        "Only you",
        "erased 90 days",
        "988",
        "911",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
    let version = first["version"].as_str().unwrap().to_owned();

    let response = accept(&app, &token, json!({ "version": version })).await;
    assert_eq!(response.status(), 200);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["version"], version.as_str());
    let accepted_at = accepted["accepted_at"].as_str().unwrap().to_owned();
    assert_eq!(
        notice(&app, &token).await["accepted_at"],
        accepted_at.as_str()
    );

    // Accepting again keeps the first time and audits nothing more.
    let again: Value = accept(&app, &token, json!({ "version": version }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["accepted_at"], accepted_at.as_str());
    let audited = acceptances_audited(&app, &me).await;
    assert_eq!(audited.len(), 1);
    let entry = &audited[0];
    assert_eq!(entry.entry.user_id, Some(me.id));
    assert_eq!(
        entry.entry.ip.map(|ip| ip.to_string()).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(entry.entry.user_agent.as_deref(), Some("notice-test/1.0"));
    let stored: chrono::DateTime<chrono::Utc> = accepted_at.parse().unwrap();
    assert_eq!(
        entry.timestamp, stored,
        "the audit entry holds the time of acceptance"
    );

    // Once per account: another student still has to read it.
    let other_token = app.token(&other).await;
    assert_eq!(notice(&app, &other_token).await["accepted_at"], Value::Null);
    assert!(acceptances_audited(&app, &other).await.is_empty());
}

async fn only_the_notice_shown_can_be_accepted(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;

    let (status, code, _) =
        error_of(accept(&app, &token, json!({"version": "0123456789abcdef"})).await).await;
    assert_eq!((status, code.as_str()), (409, "NOTICE_001"));
    let (status, code, detail) = error_of(accept(&app, &token, json!({})).await).await;
    assert_eq!((status, code.as_str()), (422, "VALIDATION_001"));
    assert!(detail.starts_with("version:"), "{detail}");
    let anonymous = app
        .request(Method::POST, "/api/v1/notice/acceptance")
        .json(&json!({"version": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await.1, "AUTH_004");
    let anonymous = app
        .request(Method::GET, "/api/v1/notice")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await.1, "AUTH_004");

    assert_eq!(notice(&app, &token).await["accepted_at"], Value::Null);
    assert!(
        acceptances_audited(&app, &me).await.is_empty(),
        "refusals are not acceptances"
    );
}

async fn staff_alerts_change_the_words_and_ask_again(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    let quiet = notice(&app, &token).await;
    assert!(
        !words(&quiet).contains("told at once"),
        "no staff, no alert promised"
    );
    accept(&app, &token, json!({ "version": quiet["version"] })).await;

    // A counselor on duty now gets crisis alerts: the notice says so and is asked for again.
    let nurse = app.add_staff(r"\COLLEGE\nurse").await;
    let alerted = notice(&app, &token).await;
    assert!(
        words(&alerted).contains("staff on duty are told at once"),
        "{}",
        words(&alerted)
    );
    assert_ne!(alerted["version"], quiet["version"]);
    assert_eq!(alerted["accepted_at"], Value::Null);
    let (_, code, _) =
        error_of(accept(&app, &token, json!({ "version": quiet["version"] })).await).await;
    assert_eq!(
        code, "NOTICE_001",
        "the old words can no longer be accepted"
    );

    // Blocking the only staff account brings the first wording, already accepted, back.
    assert!(app
        .state
        .store
        .set_blocked(&nurse.username, true)
        .await
        .unwrap());
    let back = notice(&app, &token).await;
    assert_eq!(back["version"], quiet["version"]);
    assert!(back["accepted_at"].is_string());
}

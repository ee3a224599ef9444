//! The architecture document's limits, at their default values.

use chrono::{Duration, Utc};
use domain::{Category, SessionMode, Speaker};
use reqwest::header::RETRY_AFTER;

use crate::helpers::{error_of, spawn_app_with, Backend, TestApp, PASSWORD};

async fn limited_app() -> Option<TestApp> {
    spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_ENABLED", "true")]).await
}

async fn assert_limited(response: reqwest::Response) {
    let retry_after: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (429, "RATE_LIMIT_001"));
}

#[tokio::test]
async fn login_is_limited_to_ten_a_minute_per_address() {
    let Some(app) = limited_app().await else {
        return;
    };
    app.add_user(r"\COLLEGE\jdoe", false).await;
    for attempt in 0..10 {
        let status = app.login(r"\COLLEGE\jdoe", "wrong password").await.status();
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Even the right password waits now.
    assert_limited(app.login(r"\COLLEGE\jdoe", PASSWORD).await).await;
}

/// A sign-in through a proxy, as the proxy forwards it.
async fn login_from(app: &TestApp, client: &str, username: &str) -> reqwest::Response {
    app.request(reqwest::Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", client)
        .json(&serde_json::json!({"username": username, "password": "wrong password"}))
        .send()
        .await
        .unwrap()
}

/// Behind a trusted proxy each student has their own allowance; an untrusted peer's header is
/// ignored, so naming new addresses buys nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_is_per_forwarded_client() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
            ("RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE", "100"),
        ],
    )
    .await
    else {
        return;
    };
    for attempt in 0..10 {
        let status = login_from(&app, "203.0.113.1", r"\COLLEGE\a")
            .await
            .status();
        assert_eq!(status, 401, "attempt {attempt}");
    }
    assert_limited(login_from(&app, "203.0.113.1", r"\COLLEGE\a").await).await;
    // Another student behind the same proxy is not locked out.
    assert_eq!(
        login_from(&app, "203.0.113.2", r"\COLLEGE\b")
            .await
            .status(),
        401
    );

    let Some(direct) = limited_app().await else {
        return;
    };
    for i in 0..10 {
        let client = format!("198.51.100.{i}");
        assert_eq!(
            login_from(&direct, &client, r"\COLLEGE\a").await.status(),
            401
        );
    }
    assert_limited(login_from(&direct, "198.51.100.99", r"\COLLEGE\a").await).await;
}

#[tokio::test]
async fn guesses_at_one_account_are_limited_from_any_address() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await
    else {
        return;
    };
    app.add_user(r"\COLLEGE\jdoe", false).await;
    for i in 0..10 {
        let client = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, &client, r"\COLLEGE\jdoe").await.status(),
            401
        );
    }
    assert_limited(login_from(&app, "203.0.113.200", r"\COLLEGE\jdoe").await).await;
    // Other accounts are untouched.
    assert_eq!(
        login_from(&app, "203.0.113.201", r"\COLLEGE\someone")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn history_is_limited_to_fifty_a_minute_per_user() {
    let Some(app) = limited_app().await else {
        return;
    };
    let first = app.add_user(r"\COLLEGE\first", false).await;
    let second = app.add_user(r"\COLLEGE\second", false).await;
    let (first_token, second_token) = (app.token(&first).await, app.token(&second).await);
    for _ in 0..50 {
        assert_eq!(
            app.get("/api/v1/sessions", &first_token).await.status(),
            200
        );
    }
    assert_limited(app.get("/api/v1/sessions", &first_token).await).await;
    assert_eq!(
        app.get("/api/v1/sessions", &second_token).await.status(),
        200,
        "each user has their own allowance"
    );
}

#[tokio::test]
async fn transcript_views_and_downloads_share_twenty_a_minute_per_user() {
    let Some(app) = limited_app().await else {
        return;
    };
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let id = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            Utc::now() - Duration::hours(1),
            &[(Speaker::Student, "hello")],
        )
        .await;
    let token = app.token(&me).await;
    for i in 0..20 {
        let path = if i % 2 == 0 {
            format!("/api/v1/sessions/{id}")
        } else {
            format!("/api/v1/sessions/{id}/download")
        };
        assert_eq!(app.get(&path, &token).await.status(), 200, "request {i}");
    }
    assert_limited(
        app.get(&format!("/api/v1/sessions/{id}/download"), &token)
            .await,
    )
    .await;
    assert_limited(app.get(&format!("/api/v1/sessions/{id}"), &token).await).await;
    assert_eq!(
        app.get("/api/v1/sessions", &token).await.status(),
        200,
        "history has its own allowance"
    );
}

#[tokio::test]
async fn limits_can_be_configured() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("RATE_LIMIT_HISTORY_PER_MINUTE", "2"),
        ],
    )
    .await
    else {
        return;
    };
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    assert_eq!(app.get("/api/v1/sessions", &token).await.status(), 200);
    assert_eq!(app.get("/api/v1/sessions", &token).await.status(), 200);
    assert_limited(app.get("/api/v1/sessions", &token).await).await;
}

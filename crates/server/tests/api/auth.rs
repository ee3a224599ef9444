use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use reqwest::header::{ORIGIN, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app_with, Backend, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    login_returns_a_token_and_a_strict_cookie,
    unknown_user_and_wrong_password_are_indistinguishable,
    blocked_account_is_refused_after_the_password_check,
    username_must_have_the_domain_form,
    me_accepts_bearer_and_cookie,
    logout_clears_the_cookie,
    logout_revokes_the_accounts_tokens,
    a_cookie_logout_revokes_the_cookies_token,
    forged_and_expired_tokens_are_refused,
    blocking_takes_effect_on_existing_tokens,
    cookie_requests_from_foreign_origins_are_refused,
    odd_usernames_are_stored_and_returned_intact,
    every_route_also_answers_under_plain_api,
);

fn claims_of(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |p: &str| serde_json::from_slice::<Value>(&B64.decode(p).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]))
}

async fn login_returns_a_token_and_a_strict_cookie(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let response = app.login(r"\COLLEGE\jdoe", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();

    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["user"]["id"], user.id.to_string());
    assert_eq!(body["user"]["username"], r"\COLLEGE\jdoe");
    assert_eq!(body["user"]["is_blocked"], false);
    assert!(body["user"]["created_at"].is_string());
    assert!(body["user"].get("password_hash").is_none());

    let token = body["access_token"].as_str().unwrap();
    let (header, claims) = claims_of(token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["username"], r"\COLLEGE\jdoe");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1440 * 60
    );

    assert!(
        cookie.starts_with(&format!("access_token={token}")),
        "{cookie}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(flag), "cookie lacks {flag}: {cookie}");
    }
    // Plain-http development on localhost: a Secure cookie would never be sent back.
    assert!(!cookie.contains("Secure"), "{cookie}");
}

async fn unknown_user_and_wrong_password_are_indistinguishable(app: TestApp) {
    app.add_user(r"\COLLEGE\jdoe", false).await;
    let wrong_password = error_of(app.login(r"\COLLEGE\jdoe", "not the password").await).await;
    let unknown_user = error_of(app.login(r"\COLLEGE\nobody", PASSWORD).await).await;
    assert_eq!(
        wrong_password,
        (
            401,
            "AUTH_001".into(),
            "Invalid username or password".into()
        )
    );
    assert_eq!(unknown_user, wrong_password);
}

async fn blocked_account_is_refused_after_the_password_check(app: TestApp) {
    app.add_user(r"\COLLEGE\blocked", true).await;
    let (status, code, _) = error_of(app.login(r"\COLLEGE\blocked", PASSWORD).await).await;
    assert_eq!((status, code.as_str()), (403, "AUTH_002"));
    // Without the password, a blocked account looks like any failed login.
    let (status, code, _) = error_of(app.login(r"\COLLEGE\blocked", "guess").await).await;
    assert_eq!((status, code.as_str()), (401, "AUTH_001"));
}

async fn username_must_have_the_domain_form(app: TestApp) {
    for bad in ["jdoe", r"COLLEGE\jdoe", r"\COLLEGE\", r"\A\b\c"] {
        let (status, code, detail) = error_of(app.login(bad, PASSWORD).await).await;
        assert_eq!((status, code.as_str()), (422, "VALIDATION_001"), "{bad}");
        assert!(
            detail.starts_with("username:") && detail.contains(r"\DOMAIN\user"),
            "{detail}"
        );
    }
}

async fn me_accepts_bearer_and_cookie(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&user).await;

    let by_bearer: Value = app.get_json("/api/v1/auth/me", &token).await;
    assert_eq!(by_bearer["username"], r"\COLLEGE\jdoe");

    let by_cookie = app
        .request(Method::GET, "/api/v1/auth/me")
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(
        by_cookie.json::<Value>().await.unwrap()["id"],
        user.id.to_string()
    );

    let anonymous = app
        .request(Method::GET, "/api/v1/auth/me")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await.1, "AUTH_004");
}

async fn logout_clears_the_cookie(app: TestApp) {
    let response = app
        .request(Method::POST, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        cookie.starts_with("access_token=;")
            && cookie.contains("Max-Age=0")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

// L6 of the outside security test: a token still worked after signing out.
async fn logout_revokes_the_accounts_tokens(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let other = app.add_user(r"\COLLEGE\other", false).await;
    let token = app.token(&user).await;
    let on_another_device = app.token(&user).await;
    let others_token = app.token(&other).await;
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status(), 200);

    let response = app.logout(&token).await;
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // Refused exactly like any invalid token, on every route and under both prefixes.
    let garbage = error_of(app.get("/api/v1/auth/me", "abc.def.ghi").await).await;
    assert_eq!((garbage.0, garbage.1.as_str()), (401, "AUTH_004"));
    for path in ["/api/v1/auth/me", "/api/sessions", "/api/v1/sessions"] {
        for revoked in [&token, &on_another_device] {
            let answer = error_of(app.get(path, revoked).await).await;
            assert_eq!(answer, garbage, "{path}");
        }
    }
    // Signing out again with the revoked token is harmless and still clears the cookie.
    let again = app.logout(&token).await;
    assert_eq!(again.status(), 200);

    // Another account keeps its token; signing in again gives a working one.
    assert_eq!(
        app.get("/api/v1/auth/me", &others_token).await.status(),
        200
    );
    let fresh = app.token(&user).await;
    assert_eq!(app.get("/api/v1/auth/me", &fresh).await.status(), 200);
    assert_eq!(
        error_of(app.get("/api/v1/auth/me", &token).await).await.1,
        "AUTH_004",
        "signing in again does not bring the old token back"
    );
}

async fn a_cookie_logout_revokes_the_cookies_token(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&user).await;
    let cookie = format!("access_token={token}");
    let me = |cookie: String| {
        app.request(Method::GET, "/api/v1/auth/me")
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(me(cookie.clone()).await.unwrap().status(), 200);

    // From a foreign page the cookie revokes nothing (the origin check refuses it).
    let foreign = app
        .request(Method::POST, "/api/v1/auth/logout")
        .header("cookie", cookie.clone())
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    assert_eq!(me(cookie.clone()).await.unwrap().status(), 200);

    // From our own page it does.
    let own = app
        .request(Method::POST, "/api/v1/auth/logout")
        .header("cookie", cookie.clone())
        .header(ORIGIN, app.address.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let (status, code, _) = error_of(me(cookie).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "AUTH_004"));
}

async fn forged_and_expired_tokens_are_refused(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let other = app.add_user(r"\COLLEGE\other", false).await;
    let token = app.token(&user).await;
    let parts: Vec<&str> = token.split('.').collect();
    let (_, claims) = claims_of(&token);

    let none_alg = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut altered_claims = claims.clone();
    altered_claims["sub"] = json!(other.id.to_string());
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(altered_claims.to_string()),
        parts[2]
    );
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-that-is-long-enough!!"),
    )
    .unwrap();
    for (what, forged) in [
        ("alg none", none_alg),
        ("altered payload", altered),
        ("wrong signature", wrong_key),
        ("garbage", "abc.def".into()),
    ] {
        let (status, code, _) = error_of(app.get("/api/v1/auth/me", &forged).await).await;
        assert_eq!((status, code.as_str()), (401, "AUTH_004"), "{what}");
    }

    let now = chrono::Utc::now().timestamp();
    let expired_claims = json!({"sub": user.id, "username": user.username.as_str(), "iat": now - 7200, "exp": now - 3600});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &expired_claims,
        &jsonwebtoken::EncodingKey::from_secret(app.state.config.jwt_secret.as_bytes()),
    )
    .unwrap();
    let (status, code, _) = error_of(app.get("/api/v1/auth/me", &expired).await).await;
    assert_eq!((status, code.as_str()), (401, "AUTH_003"));
}

async fn blocking_takes_effect_on_existing_tokens(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&user).await;
    assert!(app
        .state
        .store
        .set_blocked(&user.username, true)
        .await
        .unwrap());
    let (status, code, _) = error_of(app.get("/api/v1/auth/me", &token).await).await;
    assert_eq!((status, code.as_str()), (403, "AUTH_002"));
}

async fn cookie_requests_from_foreign_origins_are_refused(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&user).await;
    let path = format!("/api/v1/sessions/{}", uuid::Uuid::new_v4());
    let cookie = format!("access_token={token}");

    let foreign = app
        .request(Method::DELETE, &path)
        .header("cookie", &cookie)
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(foreign).await.1, "AUTH_005");
    let no_origin = app
        .request(Method::DELETE, &path)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(no_origin).await.1, "AUTH_005");

    // The server's own pages pass (and then learn the session does not exist).
    let own = app
        .request(Method::DELETE, &path)
        .header("cookie", &cookie)
        .header(ORIGIN, &app.address)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(own).await.1, "SESSION_001");
    // Bearer tokens are not sent by browsers on their own, so they need no origin check.
    let bearer = app
        .request(Method::DELETE, &path)
        .bearer_auth(&token)
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(bearer).await.1, "SESSION_001");
}

async fn odd_usernames_are_stored_and_returned_intact(app: TestApp) {
    let name = r#"\O'Brien&Co\<b>x";DROP_TABLE_users;--"#;
    let user = app.add_user(name, false).await;
    let token = app.token(&user).await;
    let me: Value = app.get_json("/api/v1/auth/me", &token).await;
    assert_eq!(me["username"], name);
}

async fn every_route_also_answers_under_plain_api(app: TestApp) {
    let user = app.add_user(r"\COLLEGE\jdoe", false).await;
    let response = app
        .request(Method::POST, "/api/auth/login")
        .json(&json!({"username": user.username.as_str(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "/api/auth/me",
        "/api/counselors/categories",
        "/api/sessions",
        "/api/health",
    ] {
        assert_eq!(app.get(path, &token).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn production_cookie_is_secure_and_passwords_use_cost_twelve() {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[
            ("ENV", "production"),
            ("BCRYPT_COST_FOR_TESTS", ""),
            (
                "JWT_SECRET_KEY",
                "a-production-secret-that-is-long-enough-for-tests",
            ),
            ("TRANSCRIPT_ENCRYPTION_KEY", &key),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(app.state.passwords.cost(), 12);
    app.add_user(r"\COLLEGE\jdoe", false).await;
    let response = app.login(r"\COLLEGE\jdoe", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // An unknown user costs a full bcrypt verification too (a cost-12 check takes well over 20 ms).
    let started = std::time::Instant::now();
    assert_eq!(app.login(r"\COLLEGE\nobody", PASSWORD).await.status(), 401);
    assert!(started.elapsed() > std::time::Duration::from_millis(20));
}

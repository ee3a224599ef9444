use reqwest::header::{CONTENT_TYPE, ORIGIN};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app_with, spawn_app_with_cloud_services, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    health_reports_the_database,
    unknown_api_routes_and_methods_are_json_errors,
    malformed_bodies_get_clear_errors,
    oversized_bodies_are_refused,
    every_response_has_security_headers_and_a_request_id,
    the_content_security_policy_allows_only_our_own_scripts_and_sockets,
    openapi_document_and_docs_are_served,
);

async fn health_reports_the_database(app: TestApp) {
    let response = app
        .request(Method::GET, "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "ok", "database": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

async fn unknown_api_routes_and_methods_are_json_errors(app: TestApp) {
    for path in [
        "/api/v1/nope",
        "/api/nope",
        "/api/v1/sessions/x/y/z",
        "/nowhere",
    ] {
        let (status, code, _) =
            error_of(app.request(Method::GET, path).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{path}");
    }
    let (status, code, _) = error_of(
        app.request(Method::PUT, "/api/v1/auth/login")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
}

async fn malformed_bodies_get_clear_errors(app: TestApp) {
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.request(Method::POST, "/api/v1/auth/login").body(body);
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        request.send()
    };
    let json = Some("application/json");

    let (status, code, _) = error_of(
        post(r#"{"username": "\\A\\b", "password": "#, json)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "VALIDATION_002"));

    let (status, code, detail) =
        error_of(post(r#"{"username": "\\A\\b"}"#, json).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "VALIDATION_001"));
    assert!(detail.starts_with("password:"), "{detail}");

    let (status, _, detail) = error_of(
        post(r#"{"username": 42, "password": "x"}"#, json)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(detail.starts_with("username:"), "{detail}");

    let (status, code, _) = error_of(
        post(r#"{"username": "\\A\\b", "password": "x"}"#, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "UNSUPPORTED_MEDIA_TYPE"));

    let (status, code, detail) = error_of(post(r#""just a string""#, json).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "VALIDATION_001"));
    assert_eq!(
        detail,
        "body: must be a JSON object with the documented fields"
    );
}

async fn oversized_bodies_are_refused(app: TestApp) {
    let huge = json!({"username": r"\A\b", "password": "x".repeat(200 * 1024)});
    let response = app
        .request(Method::POST, "/api/v1/auth/login")
        .json(&huge)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (413, "PAYLOAD_TOO_LARGE"));
}

async fn every_response_has_security_headers_and_a_request_id(app: TestApp) {
    for path in ["/api/health", "/api/v1/nope", "/api/v1/sessions"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("referrer-policy") && h.contains_key("content-security-policy"));
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS over plain http"
        );
        assert_eq!(
            uuid::Uuid::parse_str(h["x-request-id"].to_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
    }
    let echoed = app
        .request(Method::GET, "/api/health")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc-123");
    let behind_tls = app
        .request(Method::GET, "/api/health")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
}

// L7 of the outside security test: the policy allowed inline scripts (so injected markup could
// run) and WebSockets to any host (so a script could send a transcript anywhere).
async fn the_content_security_policy_allows_only_our_own_scripts_and_sockets(app: TestApp) {
    let host = app.address.trim_start_matches("http://").to_owned();
    for path in ["/", "/static/app.js", "/api/docs/", "/api/health"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let directive = |name: &str| -> Vec<String> {
            policy
                .split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
                .unwrap_or_else(|| panic!("{path}: no {name} in {policy}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(directive("script-src"), ["'self'"], "{path}: {policy}");
        assert_eq!(
            directive("connect-src"),
            [
                "'self'".to_owned(),
                format!("ws://{host}"),
                format!("wss://{host}")
            ],
            "{path}: {policy}"
        );
        assert_eq!(directive("default-src"), ["'self'"]);
        assert_eq!(directive("object-src"), ["'none'"]);
        assert_eq!(directive("frame-ancestors"), ["'none'"]);
    }

    // Nothing the server sends needs more: no inline script or handler in the pages.
    for path in ["/", "/api/docs/"] {
        let page = app
            .request(Method::GET, path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .to_lowercase();
        for opening in page.match_indices("<script").map(|(at, _)| &page[at..]) {
            let tag = &opening[..opening.find('>').unwrap()];
            assert!(tag.contains(" src="), "{path}: an inline script: {tag}");
        }
        assert!(
            !page.contains(" onload=")
                && !page.contains(" onclick=")
                && !page.contains("javascript:"),
            "{path}: an inline handler"
        );
    }
}

async fn openapi_document_and_docs_are_served(app: TestApp) {
    let doc: Value = app
        .request(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/counselors/categories",
        "/api/v1/counselors/categories/{category_id}",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/download",
        "/api/v1/sessions/{session_id}/rating",
        "/api/v1/notice",
        "/api/v1/notice/acceptance",
        "/api/v1/health",
        "/api/v1/staff/crisis-events",
        "/api/v1/staff/crisis-events/{event_id}/review",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(paths["/api/v1/sessions/{session_id}"]
        .get("delete")
        .is_some());
    // The transcript WebSocket, outside the API prefix, with its resume point.
    let socket = &paths["/ws/sessions/{session_id}/transcript"]["get"];
    let parameters: Vec<&str> = socket["parameters"]
        .as_array()
        .expect("the transcript socket is documented")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parameters, ["session_id", "token", "after"]);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["cookieAuth"].is_object());
    let description = doc["info"]["description"].as_str().unwrap();
    for code in [
        "AUTH_001",
        "SESSION_001",
        "EXTERNAL_003",
        "RATE_LIMIT_001",
        "PAYLOAD_TOO_LARGE",
        "CRISIS_002",
        "SESSION_003",
        "SESSION_004",
        "NOTICE_001",
    ] {
        assert!(description.contains(code), "{code}");
    }

    let page = app.request(Method::GET, "/api/docs/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger"));
    let asset = app
        .request(Method::GET, "/api/docs/swagger-ui.css")
        .send()
        .await
        .unwrap();
    assert_eq!(
        asset.status(),
        200,
        "assets come from the binary, not a CDN"
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins_with_credentials() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[(
            "ALLOWED_ORIGINS",
            "https://counsel.example.edu,http://localhost:3000",
        )],
    )
    .await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/api/v1/auth/login")
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://counsel.example.edu").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://counsel.example.edu"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn health_is_503_when_the_database_is_gone() {
    let Some(app) = crate::helpers::spawn_app(Backend::Postgres).await else {
        return;
    };
    app.drop_database_now().await;
    let response = app
        .request(Method::GET, "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["database"].as_str(),
            body["code"].as_str()
        ),
        (
            Some("degraded"),
            Some("unreachable"),
            Some("SERVICE_UNAVAILABLE")
        )
    );
    let text = body.to_string();
    assert!(
        !text.contains("postgres") && !text.contains("counsel_test"),
        "no connection details leak: {text}"
    );
}

/// `/metrics` exists only with `METRICS_TOKEN`, and answers only the bearer of it.
#[tokio::test]
async fn metrics_are_served_only_to_the_bearer_of_the_metrics_token() {
    let Some(plain) = spawn_app_with(Backend::Sqlite, &[]).await else {
        return;
    };
    let response = plain.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 404);

    let token = "a-long-scrape-token-for-tests";
    let Some(app) = spawn_app_with(Backend::Sqlite, &[("METRICS_TOKEN", token)]).await else {
        return;
    };
    for wrong in [None, Some("Bearer not-the-token-at-all")] {
        let mut request = app.request(Method::GET, "/metrics");
        if let Some(value) = wrong {
            request = request.header("authorization", value);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{wrong:?}");
    }
    let response = app
        .request(Method::GET, "/metrics")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for name in [
        "counsel_live_calls ",
        "counsel_rooms_opened_total ",
        "counsel_crisis_alerts_total ",
        "counsel_turn_voice_to_voice_seconds_bucket{le=\"+Inf\"} ",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

/// Once the voice services are built, `/metrics` shows each cloud service's circuit breaker.
#[tokio::test]
async fn metrics_show_the_cloud_services_breakers() {
    let token = "a-long-scrape-token-for-tests";
    let settings = [("METRICS_TOKEN", token)];
    let Some(app) = spawn_app_with_cloud_services(Backend::Sqlite, &settings).await else {
        return;
    };
    let scrape = || async {
        app.request(Method::GET, "/metrics")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    assert!(
        !before.contains("counsel_service_breaker_state{"),
        "no breakers before the services are built:\n{before}"
    );
    let student = app.add_user(r"\COLLEGE\jdoe", false).await;
    let bearer = app.token(&student).await;
    app.accept_notice(&bearer).await;
    let room = app
        .request(Method::POST, "/api/v1/voice/create-room")
        .bearer_auth(&bearer)
        .json(&serde_json::json!({"counselor_category": "Health"}))
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 200);
    let after = scrape().await;
    for line in [
        "counsel_service_breaker_state{service=\"deepgram\"} 0",
        "counsel_service_breaker_state{service=\"cartesia\"} 0",
    ] {
        assert!(
            after.lines().any(|l| l == line),
            "{line} missing from\n{after}"
        );
    }
}

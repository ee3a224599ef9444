use chrono::{Duration, TimeZone, Utc};
use domain::{Category, SessionMode, Speaker};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::Value;

use crate::helpers::{error_of, TestApp};
use crate::on_both_backends;

on_both_backends!(
    history_is_newest_first_and_paged,
    history_filters_by_category_mode_and_dates,
    bad_history_parameters_name_the_parameter,
    detail_has_the_ordered_transcript_and_is_audited,
    download_is_a_timestamped_text_file,
    delete_hides_the_session_and_erases_its_text,
    nobody_can_reach_or_detect_another_students_session,
    special_characters_survive_the_round_trip,
    transcript_text_is_encrypted_at_rest,
    purge_erases_exactly_what_is_older_than_the_window,
    counselor_categories_are_listed_in_order,
    transcripts_and_personal_data_are_never_cached,
);

const CONVERSATION: &[(Speaker, &str)] = &[
    (
        Speaker::Counselor,
        "Hi, I'm your health counselor. What's on your mind?",
    ),
    (Speaker::Student, "I can't sleep before exams."),
    (
        Speaker::Counselor,
        "That sounds exhausting. Let's look at your evenings.",
    ),
];

async fn history_is_newest_first_and_paged(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let other = app.add_user(r"\COLLEGE\other", false).await;
    let base = Utc::now() - Duration::days(30);
    for day in 0..25 {
        app.add_session(
            me.id,
            Category::ALL[day % 6],
            SessionMode::Voice,
            base + Duration::days(day as i64),
            &[],
        )
        .await;
    }
    app.add_session(other.id, Category::Health, SessionMode::Voice, base, &[])
        .await;
    let token = app.token(&me).await;

    let first: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(
        (
            first["total"].as_u64(),
            first["page"].as_u64(),
            first["per_page"].as_u64()
        ),
        (Some(25), Some(1), Some(20))
    );
    let sessions = first["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 20);
    let starts: Vec<&str> = sessions
        .iter()
        .map(|s| s["started_at"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted, "newest first");
    assert!(sessions.iter().all(|s| s["user_id"] == me.id.to_string()));
    assert!(sessions[0]["duration_seconds"].as_i64().unwrap() > 0);

    let second: Value = app.get_json("/api/v1/sessions?page=2", &token).await;
    assert_eq!(second["sessions"].as_array().unwrap().len(), 5);
    let beyond: Value = app
        .get_json("/api/v1/sessions?page=9&per_page=100", &token)
        .await;
    assert_eq!(
        (
            beyond["sessions"].as_array().unwrap().len(),
            beyond["total"].as_u64()
        ),
        (0, Some(25))
    );
}

async fn history_filters_by_category_mode_and_dates(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 15, 0, 0).unwrap();
    app.add_session(me.id, Category::Health, SessionMode::Voice, day(1), &[])
        .await;
    app.add_session(me.id, Category::Health, SessionMode::Video, day(2), &[])
        .await;
    app.add_session(me.id, Category::Career, SessionMode::Video, day(3), &[])
        .await;
    app.add_session(
        me.id,
        Category::PersonalDevelopment,
        SessionMode::Voice,
        day(10),
        &[],
    )
    .await;
    let token = app.token(&me).await;
    let total = |query: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let page: Value = app
                .get_json(&format!("/api/v1/sessions?{query}"), token)
                .await;
            page["total"].as_u64().unwrap()
        }
    };
    assert_eq!(total("category=Health").await, 2);
    assert_eq!(total("mode=video").await, 2);
    assert_eq!(total("category=Health&mode=video").await, 1);
    assert_eq!(total("category=Personal%20Development").await, 1);
    assert_eq!(
        total("start_date=2026-03-02&end_date=2026-03-03").await,
        2,
        "end date is inclusive"
    );
    assert_eq!(total("start_date=2026-03-04").await, 1);
    assert_eq!(total("end_date=2026-03-01").await, 1);
}

async fn bad_history_parameters_name_the_parameter(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("mode=audio", "mode"),
        ("category=Astrology", "category"),
        ("start_date=yesterday", "start_date"),
        ("end_date=2026-13-01", "end_date"),
    ] {
        let (status, code, detail) =
            error_of(app.get(&format!("/api/v1/sessions?{query}"), &token).await).await;
        assert_eq!((status, code.as_str()), (422, "VALIDATION_001"), "{query}");
        assert!(
            detail.starts_with(&format!("{field}:")),
            "{query}: {detail}"
        );
    }
    // A malformed id is answered like an id that is no session of yours, on every route.
    let nobody = uuid::Uuid::new_v4();
    for id in ["not-a-uuid", nobody.to_string().as_str()] {
        for response in [
            app.get(&format!("/api/v1/sessions/{id}"), &token).await,
            app.get(&format!("/api/v1/sessions/{id}/download"), &token)
                .await,
            app.delete(&format!("/api/v1/sessions/{id}"), &token).await,
            app.request(reqwest::Method::POST, "/api/v1/voice/end-session")
                .bearer_auth(&token)
                .json(&serde_json::json!({ "session_id": id }))
                .send()
                .await
                .unwrap(),
        ] {
            let (status, code, _) = error_of(response).await;
            assert_eq!((status, code.as_str()), (404, "SESSION_001"), "{id}");
        }
    }
}

async fn detail_has_the_ordered_transcript_and_is_audited(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let started = Utc::now() - Duration::hours(3);
    let id = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            started,
            CONVERSATION,
        )
        .await;
    let token = app.token(&me).await;

    let response = app
        .request(reqwest::Method::GET, &format!("/api/v1/sessions/{id}"))
        .bearer_auth(&token)
        .header("user-agent", "history-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let detail: Value = response.json().await.unwrap();
    assert_eq!(detail["id"], id.to_string());
    assert_eq!(detail["counselor_category"], "Health");
    assert_eq!(detail["mode"], "voice");
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    for (i, (speaker, text)) in CONVERSATION.iter().enumerate() {
        assert_eq!(messages[i]["sequence"], i as i64);
        assert_eq!(messages[i]["speaker"], speaker.as_str());
        assert_eq!(messages[i]["text"], *text);
    }
    assert_eq!(messages[1]["offset_seconds"], 15);
    let expected: Vec<String> = CONVERSATION
        .iter()
        .map(|(s, t)| format!("{}: {t}", s.label()))
        .collect();
    assert_eq!(detail["transcript"], expected.join("\n"));

    let audit = app.audit_of(id).await;
    assert_eq!(audit.len(), 1);
    let entry = &audit[0].entry;
    assert_eq!(entry.action, store::AuditAction::ViewTranscript);
    assert_eq!(entry.user_id, Some(me.id));
    assert_eq!(
        entry.ip.map(|ip| ip.to_string()).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(entry.user_agent.as_deref(), Some("history-test/1.0"));
}

async fn download_is_a_timestamped_text_file(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let started = Utc.with_ymd_and_hms(2026, 10, 5, 14, 30, 0).unwrap();
    let id = app
        .add_session(
            me.id,
            Category::Career,
            SessionMode::Video,
            started,
            CONVERSATION,
        )
        .await;
    let token = app.token(&me).await;

    let response = app
        .get(&format!("/api/v1/sessions/{id}/download"), &token)
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let disposition = response.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment;") && disposition.contains(".txt"),
        "{disposition}"
    );
    let text = response.text().await.unwrap();
    let expected = "Counseling session transcript\n\
Counselor: Career\n\
Mode: video\n\
Date: 2026-10-05 14:30 UTC\n\
Duration: 00:01:00\n\
\n\
[00:00:05] Counselor: Hi, I'm your health counselor. What's on your mind?\n\
[00:00:15] Student: I can't sleep before exams.\n\
[00:00:25] Counselor: That sounds exhausting. Let's look at your evenings.\n";
    assert_eq!(text, expected);

    let actions: Vec<_> = app
        .audit_of(id)
        .await
        .iter()
        .map(|a| a.entry.action)
        .collect();
    assert_eq!(actions, vec![store::AuditAction::DownloadTranscript]);
}

async fn delete_hides_the_session_and_erases_its_text(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let id = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            Utc::now() - Duration::days(1),
            CONVERSATION,
        )
        .await;
    let kept = app
        .add_session(
            me.id,
            Category::Social,
            SessionMode::Voice,
            Utc::now() - Duration::days(2),
            CONVERSATION,
        )
        .await;
    let token = app.token(&me).await;

    let response = app.delete(&format!("/api/v1/sessions/{id}"), &token).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());

    assert_eq!(
        error_of(app.get(&format!("/api/v1/sessions/{id}"), &token).await)
            .await
            .1,
        "SESSION_001"
    );
    assert_eq!(
        error_of(
            app.get(&format!("/api/v1/sessions/{id}/download"), &token)
                .await
        )
        .await
        .1,
        "SESSION_001"
    );
    assert_eq!(
        error_of(app.delete(&format!("/api/v1/sessions/{id}"), &token).await)
            .await
            .1,
        "SESSION_001"
    );
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["sessions"][0]["id"], kept.to_string());

    assert_eq!(
        app.stored_transcript_rows(id).await.len(),
        0,
        "the deleted session's text is erased"
    );
    assert_eq!(app.stored_transcript_rows(kept).await.len(), 3);
    let actions: Vec<_> = app
        .audit_of(id)
        .await
        .iter()
        .map(|a| a.entry.action)
        .collect();
    assert_eq!(actions, vec![store::AuditAction::DeleteTranscript]);
}

async fn nobody_can_reach_or_detect_another_students_session(app: TestApp) {
    let owner = app.add_user(r"\COLLEGE\owner", false).await;
    let intruder = app.add_user(r"\COLLEGE\intruder", false).await;
    let id = app
        .add_session(
            owner.id,
            Category::Health,
            SessionMode::Voice,
            Utc::now() - Duration::days(1),
            CONVERSATION,
        )
        .await;
    let token = app.token(&intruder).await;
    let missing = uuid::Uuid::new_v4();

    for (method, suffix) in [
        (reqwest::Method::GET, ""),
        (reqwest::Method::GET, "/download"),
        (reqwest::Method::DELETE, ""),
    ] {
        let theirs = app
            .request(method.clone(), &format!("/api/v1/sessions/{id}{suffix}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let nothing = app
            .request(
                method.clone(),
                &format!("/api/v1/sessions/{missing}{suffix}"),
            )
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let theirs = error_of(theirs).await;
        assert_eq!(
            theirs,
            (
                404,
                "SESSION_001".to_owned(),
                "Session not found".to_owned()
            ),
            "{method} {suffix}"
        );
        assert_eq!(
            theirs,
            error_of(nothing).await,
            "another's session looks exactly like no session"
        );
    }
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(page["total"], 0);

    let owner_token = app.token(&owner).await;
    let still_there: Value = app
        .get_json(&format!("/api/v1/sessions/{id}"), &owner_token)
        .await;
    assert_eq!(still_there["messages"].as_array().unwrap().len(), 3);
    assert!(
        app.audit_of(id)
            .await
            .iter()
            .all(|a| a.entry.user_id == Some(owner.id)),
        "the intruder left no trace of success"
    );
}

const TRICKY: &str = r#"She said "don't"; it's C:\Users\me\notes \n <script>alert('x')</script> '; DROP TABLE sessions; -- ½ 😊"#;

async fn special_characters_survive_the_round_trip(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let started = Utc::now() - Duration::hours(1);
    let id = app
        .add_session(
            me.id,
            Category::Social,
            SessionMode::Voice,
            started,
            &[(Speaker::Student, TRICKY)],
        )
        .await;
    let token = app.token(&me).await;
    let detail: Value = app
        .get_json(&format!("/api/v1/sessions/{id}"), &token)
        .await;
    assert_eq!(detail["messages"][0]["text"], TRICKY);
    let file = app
        .get(&format!("/api/v1/sessions/{id}/download"), &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(file.contains(&format!("[00:00:05] Student: {TRICKY}\n")));
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(page["total"], 1, "the SQL in the text did nothing");
}

async fn transcript_text_is_encrypted_at_rest(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let marker = "plaintext-marker-7f3a9c my exam anxiety";
    let id = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            Utc::now(),
            &[(Speaker::Student, marker)],
        )
        .await;
    let rows = app.stored_transcript_rows(id).await;
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0]
            .windows(marker.len())
            .any(|w| w == marker.as_bytes()),
        "the stored row is not the words"
    );
    if app.backend == crate::helpers::Backend::Sqlite {
        // The database and its WAL and shared-memory files (other entries, such as folders, are not
        // the database's).
        for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "the words are not in any database file"
            );
        }
    }
}

async fn purge_erases_exactly_what_is_older_than_the_window(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let now = Utc::now();
    let old = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            now - Duration::days(91),
            CONVERSATION,
        )
        .await;
    let recent = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            now - Duration::days(89),
            CONVERSATION,
        )
        .await;

    let dry = server::jobs::purge_expired_transcripts(&app.state.store, 90, true)
        .await
        .unwrap();
    assert_eq!((dry.sessions, dry.messages), (1, 3));
    assert_eq!(
        app.stored_transcript_rows(old).await.len(),
        3,
        "a dry run changes nothing"
    );

    let report = server::jobs::purge_expired_transcripts(&app.state.store, 90, false)
        .await
        .unwrap();
    assert_eq!((report.sessions, report.messages), (1, 3));
    assert_eq!(app.stored_transcript_rows(old).await.len(), 0);
    assert_eq!(app.stored_transcript_rows(recent).await.len(), 3);

    let token = app.token(&me).await;
    let page: Value = app.get_json("/api/v1/sessions", &token).await;
    assert_eq!(page["total"], 2, "metadata stays");
    let old_detail: Value = app
        .get_json(&format!("/api/v1/sessions/{old}"), &token)
        .await;
    assert_eq!(old_detail["messages"].as_array().unwrap().len(), 0);
    assert!(old_detail["duration_seconds"].as_i64().unwrap() > 0);
}

async fn counselor_categories_are_listed_in_order(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let token = app.token(&me).await;
    let list: Vec<Value> = app.get_json("/api/v1/counselors/categories", &token).await;
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Health",
            "Career",
            "Academic",
            "Financial",
            "Social",
            "Personal Development"
        ]
    );
    assert!(list.iter().all(|c| c["enabled"] == true
        && c["icon_name"].is_string()
        && c["description"].is_string()));
    assert!(
        list.iter().all(|c| c.get("system_prompt").is_none()),
        "prompts stay on the server"
    );

    let health_id = list[0]["id"].as_str().unwrap().to_owned();
    let one: Value = app
        .get_json(
            &format!("/api/v1/counselors/categories/{health_id}"),
            &token,
        )
        .await;
    assert_eq!(one["name"], "Health");

    // A change made in this process shows at once; one made elsewhere within the cache's TTL.
    app.state
        .store
        .set_category_enabled(Category::Health, false)
        .await
        .unwrap();
    app.state.categories.invalidate().await;
    let list: Vec<Value> = app.get_json("/api/v1/counselors/categories", &token).await;
    assert_eq!(list.len(), 5);
    let (status, code, _) = error_of(
        app.get(
            &format!("/api/v1/counselors/categories/{health_id}"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "COUNSELOR_001"));
    let (status, code, _) = error_of(
        app.get(
            &format!("/api/v1/counselors/categories/{}", uuid::Uuid::new_v4()),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "COUNSELOR_001"));
}

// The outside security test found the session detail cacheable: on a shared campus computer the
// browser's cache (or a proxy's) would keep a student's transcript.
async fn transcripts_and_personal_data_are_never_cached(app: TestApp) {
    let me = app.add_user(r"\COLLEGE\jdoe", false).await;
    let nurse = app.add_staff(r"\COLLEGE\nurse").await;
    let id = app
        .add_session(
            me.id,
            Category::Health,
            SessionMode::Voice,
            Utc::now() - Duration::hours(1),
            CONVERSATION,
        )
        .await;
    let token = app.token(&me).await;
    let staff_token = app.token(&nurse).await;
    let cache_control = |response: &reqwest::Response| {
        response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_owned())
    };

    for (path, token) in [
        ("/api/v1/sessions".to_owned(), &token),
        (format!("/api/v1/sessions/{id}"), &token),
        (format!("/api/v1/sessions/{id}/download"), &token),
        (format!("/api/sessions/{id}"), &token),
        ("/api/v1/auth/me".to_owned(), &token),
        ("/api/v1/staff/crisis-events".to_owned(), &staff_token),
    ] {
        let response = app.get(&path, token).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            cache_control(&response).as_deref(),
            Some("no-store"),
            "{path}"
        );
    }
    let login = app
        .login(me.username.as_str(), crate::helpers::PASSWORD)
        .await;
    assert_eq!(login.status(), 200);
    assert_eq!(cache_control(&login).as_deref(), Some("no-store"), "login");
    // Refusals say nothing cacheable either.
    let missing = app
        .get(
            &format!("/api/v1/sessions/{}", uuid::Uuid::new_v4()),
            &token,
        )
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(cache_control(&missing).as_deref(), Some("no-store"));
}

//! The repository contract, checked against SQLite and PostgreSQL alike.

mod common;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, TimeZone, Utc};
use common::TestDb;
use domain::{
    Category, ConnectionQuality, CrisisLevel, CrisisSignal, DecidedBy, NodeId, Rating,
    RatingComment, ReviewOutcome, Role, SessionId, SessionMode, Speaker, TranscriptText, UserId,
    Username,
};
use store::*;

fn username(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn student(store: &Store, name: &str) -> UserId {
    store
        .create_user(
            &username(&format!(r"\COLLEGE\{name}")),
            "$2b$12$hash",
            false,
        )
        .await
        .unwrap()
        .id
}

async fn start(
    store: &Store,
    user: UserId,
    category: Category,
    mode: SessionMode,
    started_at: DateTime<Utc>,
) -> SessionId {
    let id = SessionId::new();
    let new = NewSession {
        id,
        user_id: user,
        category,
        mode,
        room_name: format!("room-{id}"),
        started_at,
        node: None,
    };
    store.create_session(new).await.unwrap();
    id
}

fn line(sequence: u32, speaker: Speaker, text: &str, at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        sequence,
        speaker,
        text: TranscriptText::new(text),
        is_final: true,
        timestamp: at,
    }
}

async fn users_are_unique_and_blockable(db: &TestDb) {
    let store = &db.store;
    let name = username(r"\COLLEGE\jdoe");
    let user = store.create_user(&name, "$2b$12$abc", false).await.unwrap();
    assert!(matches!(
        store.create_user(&name, "$2b$12$other", false).await,
        Err(StoreError::Conflict(_))
    ));

    let credentials = store.user_credentials(&name).await.unwrap().unwrap();
    assert_eq!(credentials.user, user);
    assert_eq!(credentials.password_hash, "$2b$12$abc");
    assert!(
        !format!("{credentials:?}").contains("abc"),
        "Debug must hide the hash"
    );
    assert!(store
        .user_credentials(&username(r"\COLLEGE\nobody"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.user(user.id).await.unwrap().unwrap().username, name);

    assert!(store.set_blocked(&name, true).await.unwrap());
    assert!(store.user(user.id).await.unwrap().unwrap().is_blocked);
    assert!(!store
        .set_blocked(&username(r"\COLLEGE\nobody"), true)
        .await
        .unwrap());
    assert!(store.set_password_hash(&name, "$2b$12$new").await.unwrap());
    assert_eq!(
        store
            .user_credentials(&name)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$2b$12$new"
    );

    student(store, "asmith").await;
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username.to_string())
        .collect();
    assert_eq!(names, [r"\COLLEGE\asmith", r"\COLLEGE\jdoe"]);
}
on_both_databases!(users_are_unique_and_blockable);

async fn the_database_itself_enforces_the_username_format(db: &TestDb) {
    for bad in [
        "jdoe",
        r"COLLEGE\jdoe",
        r"\COLLEGE",
        r"\\jdoe",
        r"\COLLEGE\",
        r"\A\b\c",
        "",
        r"\",
    ] {
        assert!(
            db.raw_insert_user(bad).await.is_err(),
            "{bad:?} must be rejected by the database"
        );
    }
    for good in [r"\A\b", r#"\O'Brien\x";DROP"#, r"\COLLEGE\j.doe-1"] {
        db.raw_insert_user(good)
            .await
            .unwrap_or_else(|e| panic!("{good:?} must be accepted: {e}"));
    }
}
on_both_databases!(the_database_itself_enforces_the_username_format);

async fn six_categories_are_seeded_in_display_order(db: &TestDb) {
    let store = &db.store;
    let all = store.categories(false).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.category).collect::<Vec<_>>(),
        Category::ALL
    );
    for (row, (category, description, icon, prompt)) in all.iter().zip(DEFAULT_CATEGORIES) {
        assert_eq!(
            (
                row.category,
                row.description.as_str(),
                row.icon_name.as_str()
            ),
            (category, description, icon)
        );
        assert_eq!(row.system_prompt, prompt);
        assert_eq!(row.name, category.name());
        assert!(row.enabled);
    }
    assert!(all[0].system_prompt.contains("988"));
    assert_eq!(all[5].name, "Personal Development");

    let financial = store
        .set_category_enabled(Category::Financial, false)
        .await
        .unwrap();
    assert!(!financial.enabled);
    assert_eq!(store.categories(false).await.unwrap().len(), 5);
    assert_eq!(store.categories(true).await.unwrap().len(), 6);
    assert_eq!(
        store
            .category_by_id(financial.id)
            .await
            .unwrap()
            .unwrap()
            .category,
        Category::Financial
    );

    let edited = store
        .set_category_prompt(Category::Career, "Be brief.")
        .await
        .unwrap();
    assert_eq!(edited.system_prompt, "Be brief.");
    assert!(matches!(
        store.set_category_prompt(Category::Career, "  ").await,
        Err(StoreError::Invalid(_))
    ));

    // Migrating again keeps the edits.
    store.migrate().await.unwrap();
    assert_eq!(
        store
            .category(Category::Career)
            .await
            .unwrap()
            .unwrap()
            .system_prompt,
        "Be brief."
    );
    assert!(
        !store
            .category(Category::Financial)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
}
on_both_databases!(six_categories_are_seeded_in_display_order);

async fn sessions_end_once_and_never_before_they_start(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let started = at(2026, 11, 1, 10);
    let id = start(store, user, Category::Health, SessionMode::Voice, started).await;
    let active = store.session(id).await.unwrap().unwrap();
    assert!(active.is_active());
    assert_eq!(active.duration_seconds, None);
    assert_eq!(store.active_sessions().await.unwrap().len(), 1);

    let too_early = store
        .end_session(id, started - Duration::seconds(1), None)
        .await;
    assert!(
        matches!(too_early, Err(StoreError::Invalid(_))),
        "{too_early:?}"
    );

    store
        .set_connection_quality(id, ConnectionQuality::Fair)
        .await
        .unwrap();
    let ended = store
        .end_session(
            id,
            started + Duration::milliseconds(754_900),
            Some(ConnectionQuality::Good),
        )
        .await
        .unwrap();
    assert_eq!(ended.duration_seconds, Some(754));
    assert_eq!(ended.connection_quality, Some(ConnectionQuality::Good));
    assert!(store.active_sessions().await.unwrap().is_empty());

    let again = store
        .end_session(id, started + Duration::hours(5), None)
        .await
        .unwrap();
    assert_eq!(again, ended, "ending twice changes nothing");

    let same_instant = start(store, user, Category::Career, SessionMode::Video, started).await;
    assert_eq!(
        store
            .end_session(same_instant, started, None)
            .await
            .unwrap()
            .duration_seconds,
        Some(0)
    );

    assert!(matches!(
        store.end_session(SessionId::new(), started, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .set_connection_quality(SessionId::new(), ConnectionQuality::Poor)
            .await,
        Err(StoreError::NotFound)
    ));
    let orphan = NewSession {
        id: SessionId::new(),
        user_id: UserId::new(),
        category: Category::Health,
        mode: SessionMode::Voice,
        room_name: "r".into(),
        started_at: started,
        node: None,
    };
    assert!(matches!(
        store.create_session(orphan).await,
        Err(StoreError::NotFound)
    ));
}
on_both_databases!(sessions_end_once_and_never_before_they_start);

async fn messages_are_stored_once_per_sequence_number(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let t = at(2026, 11, 1, 10);
    let id = start(store, user, Category::Academic, SessionMode::Voice, t).await;

    let hello = line(0, Speaker::Counselor, "Hi, I'm your academic advisor.", t);
    assert_eq!(
        store.append_message(id, hello.clone()).await.unwrap(),
        AppendOutcome::Inserted
    );
    assert_eq!(
        store.append_message(id, hello.clone()).await.unwrap(),
        AppendOutcome::AlreadyStored
    );

    let interim = NewMessage {
        is_final: false,
        ..line(1, Speaker::Student, "I have an ex", t)
    };
    assert_eq!(
        store.append_message(id, interim).await.unwrap(),
        AppendOutcome::Inserted
    );
    let final_line = line(
        1,
        Speaker::Student,
        "I have an exam tomorrow",
        t + Duration::seconds(2),
    );
    assert_eq!(
        store.append_message(id, final_line.clone()).await.unwrap(),
        AppendOutcome::Replaced
    );
    let late_interim = NewMessage {
        is_final: false,
        ..line(1, Speaker::Student, "I have", t)
    };
    assert_eq!(
        store.append_message(id, late_interim).await.unwrap(),
        AppendOutcome::AlreadyStored
    );
    // Out of order arrival still reads back in sequence order.
    store
        .append_message(id, line(3, Speaker::Student, "thanks", t))
        .await
        .unwrap();
    store
        .append_message(id, line(2, Speaker::Counselor, "Let's plan.", t))
        .await
        .unwrap();

    let detail = store.session_for_user(user, id).await.unwrap().unwrap();
    assert_eq!(detail.record.message_count, 4);
    let texts: Vec<_> = detail
        .messages
        .iter()
        .map(|m| (m.sequence, m.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (0, "Hi, I'm your academic advisor."),
            (1, "I have an exam tomorrow"),
            (2, "Let's plan."),
            (3, "thanks")
        ]
    );
    assert!(detail.messages[1].is_final);
    assert_eq!(detail.messages[1].timestamp, final_line.timestamp);
    assert_eq!(detail.messages[0].speaker, Speaker::Counselor);

    assert!(matches!(
        store.append_message(SessionId::new(), hello.clone()).await,
        Err(StoreError::NotFound)
    ));

    // The unique (session, sequence) constraint is the database's, not only the store's.
    let clash = BulkMessage {
        session_id: id,
        message: line(2, Speaker::Student, "dup", t),
    };
    assert!(matches!(
        store.insert_messages_bulk(&[clash]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.session(id).await.unwrap().unwrap().message_count,
        4,
        "failed load changes nothing"
    );
}
on_both_databases!(messages_are_stored_once_per_sequence_number);

const AWKWARD_TEXTS: [&str; 7] = [
    r#"She said "it's fine" but it isn't"#,
    r"C:\Users\me\notes \n is not a newline \\ two",
    "'; DROP TABLE sessions; --",
    "<script>alert('x')</script> & <b>bold</b>",
    "Línea con acentos, 表情 🙂, and a\nreal newline\tand tab",
    "  leading and trailing spaces  ",
    "",
];

async fn transcript_text_is_encrypted_at_rest_and_round_trips_intact(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let t = at(2026, 11, 2, 9);
    let id = start(store, user, Category::Health, SessionMode::Video, t).await;
    let secret = "I have been feeling hopeless about my roommate Zanzibar";
    store
        .append_message(id, line(0, Speaker::Student, secret, t))
        .await
        .unwrap();
    for (i, text) in AWKWARD_TEXTS.iter().enumerate() {
        store
            .append_message(id, line(i as u32 + 1, Speaker::Student, text, t))
            .await
            .unwrap();
    }

    let stored = db.raw_transcript_columns().await;
    assert_eq!(stored.len(), AWKWARD_TEXTS.len() + 1);
    for bytes in &stored {
        assert!(
            !contains(bytes, b"hopeless") && !contains(bytes, b"Zanzibar"),
            "plain text in the column"
        );
        assert!(!contains(bytes, b"DROP TABLE"));
    }
    let files = db.raw_sqlite_files();
    assert!(
        !contains(&files, b"Zanzibar"),
        "plain text in the SQLite file"
    );

    let detail = store.session_for_user(user, id).await.unwrap().unwrap();
    assert_eq!(detail.messages[0].text.as_str(), secret);
    for (message, text) in detail.messages[1..].iter().zip(AWKWARD_TEXTS) {
        assert_eq!(message.text.as_str(), text);
    }

    // Another key cannot read the rows: the failure is an error, never garbage text.
    let wrong_key = db.reopen(TranscriptCipher::new([0x24; 32])).await;
    assert!(matches!(
        wrong_key.session_for_user(user, id).await,
        Err(StoreError::Internal(_))
    ));
    wrong_key.close().await;
}
on_both_databases!(transcript_text_is_encrypted_at_rest_and_round_trips_intact);

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn students_see_only_their_own_sessions(db: &TestDb) {
    let store = &db.store;
    let alice = student(store, "alice").await;
    let bob = student(store, "bob").await;
    let t = at(2026, 11, 3, 12);
    let alices = start(store, alice, Category::Social, SessionMode::Voice, t).await;
    store
        .append_message(alices, line(0, Speaker::Student, "private", t))
        .await
        .unwrap();

    assert!(store
        .session_for_user(alice, alices)
        .await
        .unwrap()
        .is_some());
    assert!(store.session_for_user(bob, alices).await.unwrap().is_none());
    assert!(store
        .session_for_user(alice, SessionId::new())
        .await
        .unwrap()
        .is_none());
    let (bobs, total) = store
        .list_sessions(bob, &SessionFilter::default(), 1, 20)
        .await
        .unwrap();
    assert!(bobs.is_empty());
    assert_eq!(total, 0);
    assert!(
        !store.soft_delete_session(bob, alices).await.unwrap(),
        "bob cannot delete alice's session"
    );
    assert_eq!(
        store
            .session_for_user(alice, alices)
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        1
    );
}
on_both_databases!(students_see_only_their_own_sessions);

async fn listing_filters_and_pages_newest_first(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let other = student(store, "other").await;
    start(
        store,
        other,
        Category::Health,
        SessionMode::Voice,
        at(2026, 11, 5, 12),
    )
    .await;
    // Nov 1..=10, one a day at noon; Health/voice on odd days, Career/video on even days.
    let mut ids = Vec::new();
    for day in 1..=10 {
        let (category, mode) = if day % 2 == 1 {
            (Category::Health, SessionMode::Voice)
        } else {
            (Category::Career, SessionMode::Video)
        };
        ids.push(start(store, user, category, mode, at(2026, 11, day, 12)).await);
    }
    let all = SessionFilter::default();
    let (page1, total) = store.list_sessions(user, &all, 1, 4).await.unwrap();
    assert_eq!(total, 10);
    assert_eq!(
        page1.iter().map(|s| s.id).collect::<Vec<_>>(),
        [ids[9], ids[8], ids[7], ids[6]]
    );
    let (page3, total) = store.list_sessions(user, &all, 3, 4).await.unwrap();
    assert_eq!(
        (page3.iter().map(|s| s.id).collect::<Vec<_>>(), total),
        (vec![ids[1], ids[0]], 10)
    );
    let (past_end, total) = store.list_sessions(user, &all, 9, 4).await.unwrap();
    assert_eq!((past_end.len(), total), (0, 10));

    let health = SessionFilter {
        category: Some(Category::Health),
        ..Default::default()
    };
    let (rows, total) = store.list_sessions(user, &health, 1, 20).await.unwrap();
    assert_eq!(total, 5);
    assert!(rows
        .iter()
        .all(|s| s.category == Category::Health && s.mode == SessionMode::Voice));

    let video = SessionFilter {
        mode: Some(SessionMode::Video),
        ..Default::default()
    };
    assert_eq!(store.list_sessions(user, &video, 1, 20).await.unwrap().1, 5);
    let health_video = SessionFilter {
        category: Some(Category::Health),
        mode: Some(SessionMode::Video),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_sessions(user, &health_video, 1, 20)
            .await
            .unwrap()
            .1,
        0
    );

    // Dates are inclusive at both ends.
    let nov = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let window = SessionFilter {
        start_date: Some(nov(3)),
        end_date: Some(nov(5)),
        ..Default::default()
    };
    let (rows, total) = store.list_sessions(user, &window, 1, 20).await.unwrap();
    assert_eq!(
        (rows.iter().map(|s| s.id).collect::<Vec<_>>(), total),
        (vec![ids[4], ids[3], ids[2]], 3)
    );
    let one_day = SessionFilter {
        start_date: Some(nov(10)),
        end_date: Some(nov(10)),
        ..Default::default()
    };
    assert_eq!(
        store.list_sessions(user, &one_day, 1, 20).await.unwrap().1,
        1
    );
    let since = SessionFilter {
        start_date: Some(nov(9)),
        ..Default::default()
    };
    assert_eq!(store.list_sessions(user, &since, 1, 20).await.unwrap().1, 2);

    for (page, per_page) in [(0, 20), (1, 0), (1, 101)] {
        assert!(matches!(
            store.list_sessions(user, &all, page, per_page).await,
            Err(StoreError::Invalid(_))
        ));
    }
    let backwards = SessionFilter {
        start_date: Some(nov(5)),
        end_date: Some(nov(3)),
        ..Default::default()
    };
    assert!(matches!(
        store.list_sessions(user, &backwards, 1, 20).await,
        Err(StoreError::Invalid(_))
    ));
}
on_both_databases!(listing_filters_and_pages_newest_first);

/// A session as the listing should see it, kept beside the database to compare with.
#[derive(Clone, Copy)]
struct Expected {
    id: SessionId,
    category: Category,
    mode: SessionMode,
    started_at: DateTime<Utc>,
    deleted: bool,
}

/// What the listing must answer, computed without the database: the live sessions that match,
/// newest first, ties broken by the higher id.
fn expected_listing(sessions: &[Expected], filter: &SessionFilter) -> Vec<SessionId> {
    let day = |t: DateTime<Utc>| t.date_naive();
    let mut hits: Vec<&Expected> = sessions
        .iter()
        .filter(|s| !s.deleted)
        .filter(|s| filter.category.is_none_or(|c| c == s.category))
        .filter(|s| filter.mode.is_none_or(|m| m == s.mode))
        .filter(|s| filter.start_date.is_none_or(|d| day(s.started_at) >= d))
        .filter(|s| filter.end_date.is_none_or(|d| day(s.started_at) <= d))
        .collect();
    hits.sort_by(|a, b| (b.started_at, b.id.as_uuid()).cmp(&(a.started_at, a.id.as_uuid())));
    hits.into_iter().map(|s| s.id).collect()
}

/// Every combination of category (one that never occurs included), mode and date range.
fn every_filter() -> Vec<SessionFilter> {
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d);
    let dates = [
        (None, None),
        (day(10, 5), day(10, 20)),
        (day(10, 12), None),
        (None, day(10, 9)),
        (day(1, 1), day(12, 31)),
    ];
    let mut filters = Vec::new();
    for category in [
        None,
        Some(Category::Health),
        Some(Category::Career),
        Some(Category::Social),
    ] {
        for mode in [None, Some(SessionMode::Voice), Some(SessionMode::Video)] {
            for (start_date, end_date) in dates {
                filters.push(SessionFilter {
                    category,
                    mode,
                    start_date,
                    end_date,
                });
            }
        }
    }
    filters
}

/// Walks every page of every filter (and one page past the end) and compares each page and
/// total with [`expected_listing`].
async fn assert_listing_matches(store: &Store, user: UserId, sessions: &[Expected], per_page: u32) {
    for filter in every_filter() {
        let expected = expected_listing(sessions, &filter);
        let pages = expected.len() as u32 / per_page + 2;
        let mut listed = Vec::new();
        for page in 1..=pages {
            let (rows, total) = store
                .list_sessions(user, &filter, page, per_page)
                .await
                .unwrap();
            assert_eq!(
                total,
                expected.len() as u64,
                "total of page {page} for {filter:?}"
            );
            assert!(rows.len() <= per_page as usize);
            assert!(rows.iter().all(|r| r.user_id == user));
            listed.extend(rows.iter().map(|r| r.id));
        }
        assert_eq!(listed, expected, "pages for {filter:?}");
    }
}

async fn listing_pages_match_a_plain_sort_for_every_filter(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let other = student(store, "other").await;
    let mut rng = 7u64;
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let categories = [Category::Health, Category::Career, Category::Academic];
    let mut sessions = Vec::new();
    for i in 0..60 {
        // Every fourth session starts at the same moment as the one before it: ties are paged by id.
        let started_at = match sessions.last() {
            Some(Expected { started_at, .. }) if i % 4 == 0 => *started_at,
            _ => at(2026, 10, 1, 0) + Duration::minutes(next(30 * 24 * 60) as i64),
        };
        let category = categories[next(3) as usize];
        let mode = if next(3) == 0 {
            SessionMode::Video
        } else {
            SessionMode::Voice
        };
        let id = start(store, user, category, mode, started_at).await;
        sessions.push(Expected {
            id,
            category,
            mode,
            started_at,
            deleted: false,
        });
        // Someone else's sessions at the same moments must never show up.
        if i % 5 == 0 {
            start(store, other, category, mode, started_at).await;
        }
    }
    for i in [3, 17, 18, 40, 59] {
        assert!(store
            .soft_delete_session(user, sessions[i].id)
            .await
            .unwrap());
        sessions[i].deleted = true;
    }
    assert_listing_matches(store, user, &sessions, 7).await;
    assert_listing_matches(store, user, &sessions, 100).await;
}
on_both_databases!(listing_pages_match_a_plain_sort_for_every_filter);

/// The totals the listing shows for each counselor and mode (read from the maintained tallies)
/// and for the same filters with a date range that spans everything (counted from the sessions
/// themselves) must both equal what the test expects.
async fn assert_totals(store: &Store, user: UserId, sessions: &[Expected], when: &str) {
    let all_time = (
        NaiveDate::from_ymd_opt(2000, 1, 1),
        NaiveDate::from_ymd_opt(2100, 1, 1),
    );
    for category in std::iter::once(None).chain(Category::ALL.into_iter().map(Some)) {
        for mode in [None, Some(SessionMode::Voice), Some(SessionMode::Video)] {
            let tallied = SessionFilter {
                category,
                mode,
                ..Default::default()
            };
            let counted = SessionFilter {
                start_date: all_time.0,
                end_date: all_time.1,
                ..tallied
            };
            let expected = expected_listing(sessions, &tallied).len() as u64;
            let from_tallies = store.list_sessions(user, &tallied, 1, 1).await.unwrap().1;
            let from_rows = store.list_sessions(user, &counted, 1, 1).await.unwrap().1;
            assert_eq!(
                (from_tallies, from_rows),
                (expected, expected),
                "{when}: totals for {category:?} / {mode:?}"
            );
            // A page past the end counts on its own, and must agree.
            let past_end = store.list_sessions(user, &tallied, 1000, 1).await.unwrap();
            assert_eq!(past_end, (Vec::new(), expected), "{when}: past the end");
        }
    }
}

/// The version of the token epoch migration, before the history listing's tallies and indexes.
const TOKEN_EPOCH_SCHEMA: i64 = 20261215000001;

async fn session_totals_never_drift_through_deletes_and_purges(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let other = student(store, "other").await;
    let t = at(2026, 6, 1, 9);
    let mut sessions = Vec::new();
    for i in 0..12 {
        let category = Category::ALL[i % 6];
        let mode = if i % 4 == 0 {
            SessionMode::Video
        } else {
            SessionMode::Voice
        };
        let started_at = t + Duration::days(i as i64 * 10);
        let id = start(store, user, category, mode, started_at).await;
        sessions.push(Expected {
            id,
            category,
            mode,
            started_at,
            deleted: false,
        });
    }
    let bulk: Vec<BulkSession> = (0..30)
        .map(|i| BulkSession {
            session: NewSession {
                id: SessionId::new(),
                user_id: if i % 3 == 0 { other } else { user },
                category: Category::ALL[(i / 2) % 6],
                mode: if i % 2 == 0 {
                    SessionMode::Voice
                } else {
                    SessionMode::Video
                },
                room_name: format!("bulk-{i}"),
                started_at: t + Duration::hours(i as i64 * 7),
                node: None,
            },
            ended_at: None,
            connection_quality: None,
            crisis_detected: false,
        })
        .collect();
    store.insert_sessions_bulk(&bulk).await.unwrap();
    sessions.extend(
        bulk.iter()
            .filter(|b| b.session.user_id == user)
            .map(|b| Expected {
                id: b.session.id,
                category: b.session.category,
                mode: b.session.mode,
                started_at: b.session.started_at,
                deleted: false,
            }),
    );
    assert_totals(store, user, &sessions, "after inserts").await;

    // Deletes: the student's own (twice, the second changes nothing) and someone else's attempt.
    for i in [0, 5, 13] {
        assert!(store
            .soft_delete_session(user, sessions[i].id)
            .await
            .unwrap());
        assert!(!store
            .soft_delete_session(user, sessions[i].id)
            .await
            .unwrap());
        sessions[i].deleted = true;
    }
    assert!(!store
        .soft_delete_session(other, sessions[1].id)
        .await
        .unwrap());
    assert_totals(store, user, &sessions, "after deletes").await;

    // Transcripts, ending, call quality, a crisis and the retention purge change session rows
    // but not which sessions are listed.
    for s in &sessions[..8] {
        store
            .append_message(s.id, line(0, Speaker::Student, "hello", s.started_at))
            .await
            .ok();
        store
            .end_session(s.id, s.started_at + Duration::minutes(5), None)
            .await
            .unwrap();
    }
    store
        .set_connection_quality(sessions[2].id, ConnectionQuality::Poor)
        .await
        .unwrap();
    store
        .record_crisis_event(NewCrisisEvent {
            session_id: sessions[2].id,
            sequence: 0,
            level: CrisisLevel::Crisis,
            signal: CrisisSignal::SelfHarm,
            decided_by: Some(DecidedBy::Rule),
        })
        .await
        .unwrap();
    let purged = store
        .purge_transcripts_older_than(t + Duration::days(45), false)
        .await
        .unwrap();
    assert!(purged.sessions > 0);
    assert_totals(store, user, &sessions, "after the purge").await;

    // Changes made outside the store (an operator's SQL) are followed too: a session moved to
    // another counselor, and an account removed with all its sessions.
    db.raw_execute("UPDATE sessions SET counselor_category = 'Social' WHERE room_name = 'bulk-1'")
        .await;
    let moved = bulk[1].session.id;
    sessions
        .iter_mut()
        .filter(|s| s.id == moved)
        .for_each(|s| s.category = Category::Social);
    let removed = db
        .raw_execute(r"DELETE FROM users WHERE username = '\COLLEGE\other'")
        .await;
    assert_eq!(removed, 1);
    assert_totals(store, user, &sessions, "after changes in SQL").await;
    assert_totals(store, other, &[], "for the removed account").await;

    // Down to the schema before the tallies, a session recorded there, and up again: the
    // migration counts what is there.
    store.migrate_down_to(TOKEN_EPOCH_SCHEMA).await.unwrap();
    let started_at = t + Duration::days(200);
    let id = db
        .raw_insert_session(user, Category::Career, SessionMode::Video, started_at)
        .await;
    store.migrate().await.unwrap();
    sessions.push(Expected {
        id,
        category: Category::Career,
        mode: SessionMode::Video,
        started_at,
        deleted: false,
    });
    assert_totals(store, user, &sessions, "after migrating down and up").await;
    assert!(store.soft_delete_session(user, id).await.unwrap());
    sessions.last_mut().unwrap().deleted = true;
    assert_totals(store, user, &sessions, "after a delete on the new schema").await;
}
on_both_databases!(session_totals_never_drift_through_deletes_and_purges);

async fn deleting_a_session_hides_it_and_erases_its_transcript(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let t = at(2026, 11, 4, 8);
    let kept = start(store, user, Category::Financial, SessionMode::Voice, t).await;
    let deleted = start(
        store,
        user,
        Category::Financial,
        SessionMode::Voice,
        t + Duration::hours(1),
    )
    .await;
    for seq in 0..3 {
        store
            .append_message(kept, line(seq, Speaker::Student, "keep me", t))
            .await
            .unwrap();
        store
            .append_message(deleted, line(seq, Speaker::Student, "erase me", t))
            .await
            .unwrap();
    }
    assert!(store.soft_delete_session(user, deleted).await.unwrap());
    assert!(
        !store.soft_delete_session(user, deleted).await.unwrap(),
        "already deleted"
    );

    assert!(store
        .session_for_user(user, deleted)
        .await
        .unwrap()
        .is_none());
    assert!(store.session(deleted).await.unwrap().is_none());
    let (rows, total) = store
        .list_sessions(user, &SessionFilter::default(), 1, 20)
        .await
        .unwrap();
    assert_eq!((rows.len(), total, rows[0].id), (1, 1, kept));
    assert_eq!(
        db.raw_count("transcript_messages").await,
        3,
        "only the kept session's lines remain"
    );
    assert_eq!(db.raw_count("sessions").await, 2, "metadata stays");
    assert!(matches!(
        store
            .append_message(deleted, line(9, Speaker::Student, "late", t))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .session_for_user(user, kept)
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        3
    );
}
on_both_databases!(deleting_a_session_hides_it_and_erases_its_transcript);

async fn purge_erases_exactly_the_transcripts_older_than_the_cutoff(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let cutoff = at(2026, 8, 24, 0);
    let old = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        cutoff - Duration::days(10),
    )
    .await;
    let just_before = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        cutoff - Duration::seconds(1),
    )
    .await;
    let at_cutoff = start(store, user, Category::Health, SessionMode::Voice, cutoff).await;
    let recent = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        cutoff + Duration::days(3),
    )
    .await;
    let old_and_empty = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        cutoff - Duration::days(20),
    )
    .await;
    for (id, lines) in [(old, 3), (just_before, 2), (at_cutoff, 4), (recent, 1)] {
        for seq in 0..lines {
            store
                .append_message(id, line(seq, Speaker::Student, "words", cutoff))
                .await
                .unwrap();
        }
    }

    let preview = store
        .purge_transcripts_older_than(cutoff, true)
        .await
        .unwrap();
    assert_eq!(
        preview,
        PurgeReport {
            sessions: 2,
            messages: 5
        }
    );
    assert_eq!(
        db.raw_count("transcript_messages").await,
        10,
        "a dry run changes nothing"
    );

    let report = store
        .purge_transcripts_older_than(cutoff, false)
        .await
        .unwrap();
    assert_eq!(report, preview);
    assert_eq!(db.raw_count("transcript_messages").await, 5);
    for (id, expected_lines, count) in [
        (old, 0, 3),
        (just_before, 0, 2),
        (at_cutoff, 4, 4),
        (recent, 1, 1),
        (old_and_empty, 0, 0),
    ] {
        let detail = store
            .session_for_user(user, id)
            .await
            .unwrap()
            .expect("metadata stays");
        assert_eq!(detail.messages.len(), expected_lines);
        assert_eq!(
            detail.record.message_count, count,
            "the count survives the purge"
        );
    }
    let audit = store
        .audit_log_for_resource(AuditResource::Session, *old.as_uuid())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].entry.action, audit[0].entry.user_id),
        (AuditAction::PurgeTranscript, None)
    );

    assert_eq!(
        store
            .purge_transcripts_older_than(cutoff, false)
            .await
            .unwrap(),
        PurgeReport::default()
    );
}
on_both_databases!(purge_erases_exactly_the_transcripts_older_than_the_cutoff);

/// The stored ciphertext of every line, each with a few of its bytes that must not stay on disk:
/// the whole value and its GCM tag (random per row, so it cannot occur anywhere by chance).
async fn stored_ciphertexts(db: &TestDb) -> Vec<Vec<u8>> {
    let rows = db.raw_transcript_columns().await;
    assert!(rows.iter().all(|row| row.len() > 16));
    rows.into_iter()
        .flat_map(|row| [row[row.len() - 16..].to_vec(), row])
        .collect()
}

fn on_disk(files: &[u8], pieces: &[Vec<u8>]) -> usize {
    pieces.iter().filter(|piece| contains(files, piece)).count()
}

// SQLite keeps every written page in its write-ahead log until a checkpoint, and freed cells in
// the file unless secure_delete is on: erasing must leave none of the ciphertext on disk (the
// development key lies beside the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_transcripts_leave_no_ciphertext_in_the_sqlite_files() {
    let db = common::sqlite().await;
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let cutoff = at(2026, 8, 24, 0);

    // A student deletes a session.
    let deleted = start(store, user, Category::Health, SessionMode::Voice, cutoff).await;
    for seq in 0..5 {
        store
            .append_message(deleted, line(seq, Speaker::Student, "delete me", cutoff))
            .await
            .unwrap();
    }
    let doomed = stored_ciphertexts(&db).await;
    assert_eq!(
        on_disk(&db.raw_sqlite_files(), &doomed),
        doomed.len(),
        "the test sees stored ciphertext in the files"
    );
    assert!(store.soft_delete_session(user, deleted).await.unwrap());
    assert_eq!(
        on_disk(&db.raw_sqlite_files(), &doomed),
        0,
        "a deleted session's ciphertext is still in counsel.db or counsel.db-wal"
    );

    // The retention purge erases an old session and keeps a recent one.
    let old = start(
        store,
        user,
        Category::Career,
        SessionMode::Voice,
        cutoff - Duration::days(1),
    )
    .await;
    for seq in 0..5 {
        store
            .append_message(old, line(seq, Speaker::Student, "purge me", cutoff))
            .await
            .unwrap();
    }
    let purged = stored_ciphertexts(&db).await;
    let recent = start(
        store,
        user,
        Category::Career,
        SessionMode::Voice,
        cutoff + Duration::days(1),
    )
    .await;
    store
        .append_message(recent, line(0, Speaker::Student, "keep me", cutoff))
        .await
        .unwrap();
    let report = store
        .purge_transcripts_older_than(cutoff, false)
        .await
        .unwrap();
    assert_eq!(report.messages, 5);
    assert_eq!(
        on_disk(&db.raw_sqlite_files(), &purged),
        0,
        "purged ciphertext is still in counsel.db or counsel.db-wal"
    );
    let kept = stored_ciphertexts(&db).await;
    assert_eq!(kept.len(), 2);
    assert_eq!(on_disk(&db.raw_sqlite_files(), &kept), 2, "kept lines stay");
    assert_eq!(
        store
            .session_for_user(user, recent)
            .await
            .unwrap()
            .unwrap()
            .messages[0]
            .text
            .as_str(),
        "keep me"
    );
}

async fn crisis_events_flag_the_session(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let t = at(2026, 11, 6, 22);
    let id = start(store, user, Category::Health, SessionMode::Voice, t).await;
    let concern = NewCrisisEvent {
        session_id: id,
        sequence: 3,
        level: CrisisLevel::Concern,
        signal: CrisisSignal::IndirectWarning,
        decided_by: Some(DecidedBy::Rule),
    };
    store.record_crisis_event(concern.clone()).await.unwrap();
    assert!(
        !store.session(id).await.unwrap().unwrap().crisis_detected,
        "a concern is not a crisis"
    );
    let crisis = NewCrisisEvent {
        sequence: 5,
        level: CrisisLevel::Crisis,
        signal: CrisisSignal::SuicidalIdeation,
        ..concern.clone()
    };
    let recorded = store.record_crisis_event(crisis).await.unwrap();
    assert!(recorded.flagged_for_review);
    assert!(store.session(id).await.unwrap().unwrap().crisis_detected);

    let events = store.crisis_events(id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events.iter().find(|e| e.sequence == 5).unwrap(), &recorded);

    let none = NewCrisisEvent {
        level: CrisisLevel::None,
        ..concern.clone()
    };
    assert!(matches!(
        store.record_crisis_event(none).await,
        Err(StoreError::Invalid(_))
    ));
    let orphan = NewCrisisEvent {
        session_id: SessionId::new(),
        ..concern
    };
    assert!(matches!(
        store.record_crisis_event(orphan).await,
        Err(StoreError::NotFound)
    ));
}
on_both_databases!(crisis_events_flag_the_session);

async fn transcript_access_is_audited(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let id = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        at(2026, 11, 7, 9),
    )
    .await;
    for action in [
        AuditAction::ViewTranscript,
        AuditAction::DownloadTranscript,
        AuditAction::DeleteTranscript,
    ] {
        store
            .record_audit(AuditEntry {
                user_id: Some(user),
                action,
                resource_type: AuditResource::Transcript,
                resource_id: *id.as_uuid(),
                ip: Some("2001:db8::1".parse().unwrap()),
                user_agent: Some("Mozilla/5.0 \"quoted\"".into()),
            })
            .await
            .unwrap();
    }
    let trail = store.audit_log_for_user(user, 10).await.unwrap();
    assert_eq!(trail.len(), 3);
    assert!(trail
        .iter()
        .all(|r| r.entry.ip == Some("2001:db8::1".parse().unwrap())));
    assert!(trail
        .iter()
        .all(|r| r.entry.user_agent.as_deref() == Some("Mozilla/5.0 \"quoted\"")));
    let mut actions: Vec<_> = trail.iter().map(|r| r.entry.action.as_str()).collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "delete_transcript",
            "download_transcript",
            "view_transcript"
        ]
    );
    assert_eq!(store.audit_log_for_user(user, 2).await.unwrap().len(), 2);
}
on_both_databases!(transcript_access_is_audited);

async fn migrations_go_down_and_up_again(db: &TestDb) {
    let store = &db.store;
    student(store, "jdoe").await;
    store.migrate_down_all().await.unwrap();
    let left: Vec<_> = db
        .raw_tables()
        .await
        .into_iter()
        .filter(|t| !t.starts_with("_sqlx"))
        .collect();
    assert!(
        left.is_empty(),
        "tables left after migrating down: {left:?}"
    );
    store.migrate().await.unwrap();
    assert!(store.list_users().await.unwrap().is_empty());
    assert_eq!(store.categories(true).await.unwrap().len(), 6);
    student(store, "jdoe").await;
}
on_both_databases!(migrations_go_down_and_up_again);

async fn bulk_loading_keeps_counts_right(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let t = at(2026, 10, 1, 0);
    let sessions: Vec<BulkSession> = (0..1500)
        .map(|i| BulkSession {
            session: NewSession {
                id: SessionId::new(),
                user_id: user,
                category: Category::ALL[i % 6],
                mode: if i % 2 == 0 {
                    SessionMode::Voice
                } else {
                    SessionMode::Video
                },
                room_name: format!("demo-{i}"),
                started_at: t + Duration::minutes(i as i64),
                node: None,
            },
            ended_at: Some(t + Duration::minutes(i as i64) + Duration::seconds(300)),
            connection_quality: Some(ConnectionQuality::Good),
            crisis_detected: i == 7,
        })
        .collect();
    assert_eq!(store.insert_sessions_bulk(&sessions).await.unwrap(), 1500);
    let messages: Vec<BulkMessage> = sessions
        .iter()
        .take(400)
        .flat_map(|s| {
            (0..3).map(move |seq| BulkMessage {
                session_id: s.session.id,
                message: line(seq, Speaker::Student, "demo line", s.session.started_at),
            })
        })
        .collect();
    assert_eq!(store.insert_messages_bulk(&messages).await.unwrap(), 1200);
    // What a bulk load is followed by (statistics, and on PostgreSQL a vacuum outside any
    // transaction).
    store.optimize().await.unwrap();

    let (page, total) = store
        .list_sessions(user, &SessionFilter::default(), 1, 100)
        .await
        .unwrap();
    assert_eq!(total, 1500);
    assert_eq!(page[0].id, sessions[1499].session.id);
    assert_eq!(page[0].duration_seconds, Some(300));
    let first = store
        .session_for_user(user, sessions[0].session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.record.message_count, first.messages.len()), (3, 3));
    assert_eq!(first.messages[2].text.as_str(), "demo line");
    assert!(
        store
            .session(sessions[7].session.id)
            .await
            .unwrap()
            .unwrap()
            .crisis_detected
    );
    assert_eq!(
        store
            .session(sessions[1000].session.id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        0
    );
}
on_both_databases!(bulk_loading_keeps_counts_right);

async fn staff(store: &Store, name: &str) -> User {
    store
        .create_user_with_role(
            &username(&format!(r"\COLLEGE\{name}")),
            "$2b$12$hash",
            false,
            Role::Staff,
        )
        .await
        .unwrap()
}

async fn roles_are_stored_and_changed(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    assert_eq!(store.user(jdoe).await.unwrap().unwrap().role, Role::Student);
    let nurse = staff(store, "nurse1").await;
    assert_eq!(nurse.role, Role::Staff);
    assert_eq!(store.user(nurse.id).await.unwrap().unwrap(), nurse);

    // Demoting takes effect on the next read (the server reads the role on every request).
    assert!(store
        .set_role(&nurse.username, Role::Student)
        .await
        .unwrap());
    assert_eq!(
        store.user(nurse.id).await.unwrap().unwrap().role,
        Role::Student
    );
    assert!(!store
        .set_role(&username(r"\COLLEGE\nobody"), Role::Staff)
        .await
        .unwrap());
    let roles: Vec<Role> = store
        .list_users()
        .await
        .unwrap()
        .iter()
        .map(|u| u.role)
        .collect();
    assert_eq!(roles, [Role::Student, Role::Student]);
}
on_both_databases!(roles_are_stored_and_changed);

/// A student's session in which `said` is line `sequence`, flagged at `level`.
async fn flagged(
    store: &Store,
    user: UserId,
    started_at: DateTime<Utc>,
    said: &str,
    level: CrisisLevel,
) -> CrisisEventRecord {
    let session = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        started_at,
    )
    .await;
    let event = store
        .record_crisis_event(NewCrisisEvent {
            session_id: session,
            sequence: 2,
            level,
            signal: CrisisSignal::SuicidalIdeation,
            decided_by: Some(DecidedBy::Both),
        })
        .await
        .unwrap();
    store
        .append_message(session, line(2, Speaker::Student, said, started_at))
        .await
        .unwrap();
    event
}

async fn the_review_queue_shows_who_said_what_newest_first(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let older = flagged(
        store,
        jdoe,
        at(2026, 11, 1, 9),
        "i feel hopeless",
        CrisisLevel::Concern,
    )
    .await;
    let newer = flagged(
        store,
        jdoe,
        at(2026, 11, 2, 9),
        "i want to end my life",
        CrisisLevel::Crisis,
    )
    .await;

    let (items, total) = store
        .list_crisis_events(ReviewStatusFilter::Open, 1, 20)
        .await
        .unwrap();
    assert_eq!(total, 2);
    let ids: Vec<_> = items.iter().map(|i| i.event.id).collect();
    assert_eq!(ids, [newer.id, older.id], "newest first");
    assert_eq!(items[0].student.as_str(), r"\COLLEGE\jdoe");
    assert_eq!(items[0].student_id, jdoe);
    assert_eq!(
        items[0].text.as_ref().map(|t| t.as_str()),
        Some("i want to end my life")
    );
    assert_eq!(items[0].event, newer);
    assert_eq!(items[0].event.decided_by, Some(DecidedBy::Both));
    assert!(items[0].reviewed_by.is_none() && items[0].event.review.is_none());

    let (second_page, total) = store
        .list_crisis_events(ReviewStatusFilter::All, 2, 1)
        .await
        .unwrap();
    assert_eq!((second_page.len(), total), (1, 2));
    assert_eq!(second_page[0].event.id, older.id);
    let (past_the_end, total) = store
        .list_crisis_events(ReviewStatusFilter::All, 5, 1)
        .await
        .unwrap();
    assert!(past_the_end.is_empty());
    assert_eq!(total, 2);
    assert!(matches!(
        store
            .list_crisis_events(ReviewStatusFilter::All, 0, 1)
            .await,
        Err(StoreError::Invalid(_))
    ));
}
on_both_databases!(the_review_queue_shows_who_said_what_newest_first);

async fn a_crisis_review_is_recorded_once(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let nurse = staff(store, "nurse1").await;
    let other = staff(store, "nurse2").await;
    let event = flagged(
        store,
        jdoe,
        at(2026, 11, 3, 9),
        "i want to die",
        CrisisLevel::Crisis,
    )
    .await;

    let reviewed = store
        .review_crisis_event(
            event.id,
            CrisisReview {
                reviewer: nurse.id,
                outcome: ReviewOutcome::ContactedStudent,
                note: Some("  Called the student; safe, seeing counseling today.  ".into()),
            },
        )
        .await
        .unwrap();
    let review = reviewed.event.review.clone().expect("recorded");
    assert_eq!(review.outcome, ReviewOutcome::ContactedStudent);
    assert_eq!(
        review.note.as_deref(),
        Some("Called the student; safe, seeing counseling today.")
    );
    assert_eq!(review.reviewer_id, Some(nurse.id));
    assert_eq!(reviewed.reviewed_by.as_ref(), Some(&nurse.username));
    assert!(!reviewed.event.flagged_for_review);
    assert_eq!(
        store.crisis_event(event.id).await.unwrap(),
        Some(reviewed.clone())
    );

    // Reviewing twice is refused and changes nothing, whoever tries.
    let again = store
        .review_crisis_event(
            event.id,
            CrisisReview {
                reviewer: other.id,
                outcome: ReviewOutcome::FalseAlarm,
                note: None,
            },
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.crisis_event(event.id).await.unwrap(), Some(reviewed));

    let (open, _) = store
        .list_crisis_events(ReviewStatusFilter::Open, 1, 20)
        .await
        .unwrap();
    assert!(open.is_empty());
    let (done, _) = store
        .list_crisis_events(ReviewStatusFilter::Reviewed, 1, 20)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);

    let unknown = store
        .review_crisis_event(
            uuid::Uuid::new_v4(),
            CrisisReview {
                reviewer: nurse.id,
                outcome: ReviewOutcome::Referred,
                note: None,
            },
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)));
    let second = flagged(
        store,
        jdoe,
        at(2026, 11, 4, 9),
        "no way out",
        CrisisLevel::Crisis,
    )
    .await;
    let too_long = store
        .review_crisis_event(
            second.id,
            CrisisReview {
                reviewer: nurse.id,
                outcome: ReviewOutcome::Referred,
                note: Some("x".repeat(MAX_REVIEW_NOTE_CHARS + 1)),
            },
        )
        .await;
    assert!(matches!(too_long, Err(StoreError::Invalid(_))));
    assert!(store
        .crisis_event(second.id)
        .await
        .unwrap()
        .unwrap()
        .event
        .review
        .is_none());
}
on_both_databases!(a_crisis_review_is_recorded_once);

async fn a_purged_utterance_leaves_the_event_in_the_queue_without_text(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let event = flagged(
        store,
        jdoe,
        at(2026, 1, 3, 9),
        "i want to die",
        CrisisLevel::Crisis,
    )
    .await;
    store
        .purge_transcripts_older_than(at(2026, 6, 1, 0), false)
        .await
        .unwrap();
    let item = store.crisis_event(event.id).await.unwrap().unwrap();
    assert_eq!(item.text, None);
    assert_eq!(item.student_id, jdoe);
}
on_both_databases!(a_purged_utterance_leaves_the_event_in_the_queue_without_text);

/// The version of the first migration, before roles and reviews.
const INITIAL_SCHEMA: i64 = 20261122000001;

async fn the_staff_review_migration_goes_down_and_up_keeping_data(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let nurse = staff(store, "nurse1").await;
    let event = flagged(
        store,
        jdoe,
        at(2026, 11, 3, 9),
        "i want to die",
        CrisisLevel::Crisis,
    )
    .await;
    store
        .review_crisis_event(
            event.id,
            CrisisReview {
                reviewer: nurse.id,
                outcome: ReviewOutcome::Referred,
                note: None,
            },
        )
        .await
        .unwrap();

    store.migrate_down_to(INITIAL_SCHEMA).await.unwrap();
    assert_eq!(db.raw_count("users").await, 2);
    assert_eq!(db.raw_count("crisis_events").await, 1);
    let jdoe_name = username(r"\COLLEGE\jdoe");
    assert!(
        db.raw_set_role(&jdoe_name, "student").await.is_err(),
        "the older schema has no role column"
    );
    db.raw_insert_user(r"\COLLEGE\older").await.unwrap();

    store.migrate().await.unwrap();
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 3);
    assert!(
        users.iter().all(|u| u.role == Role::Student),
        "roles start again as student"
    );
    let item = store.crisis_event(event.id).await.unwrap().unwrap();
    assert!(item.event.review.is_none() && item.event.decided_by.is_none());
    assert_eq!(item.text.unwrap().as_str(), "i want to die");

    // The constraint is the database's own, in both.
    assert!(db.raw_set_role(&users[0].username, "admin").await.is_err());
    assert!(db.raw_set_role(&users[0].username, "staff").await.is_ok());
}
on_both_databases!(the_staff_review_migration_goes_down_and_up_keeping_data);

// Other accounts on the machine must not read the database (L5 of the security test).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_files_are_private_to_counsels_user() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data").join("db");
    let file = dir.join("counsel.db");
    let store = Store::connect(
        &format!("sqlite://{}", file.display()),
        TranscriptCipher::new(common::KEY),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    student(&store, "jdoe").await;
    assert_eq!(mode(&root.path().join("data")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for name in ["counsel.db", "counsel.db-wal", "counsel.db-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    store.close().await;

    // A database made before the rule is narrowed when opened.
    let older = root.path().join("older.db");
    std::fs::File::create(&older).unwrap();
    std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", older.display()),
        TranscriptCipher::new(common::KEY),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(mode(&older), 0o600);
    assert_eq!(mode(&root.path().join("older.db-wal")), 0o600);
    store.close().await;
}

// L6 and L1 of the outside security test: signing out and blocking must revoke the tokens an
// account already holds. The store keeps the epoch they are checked against.
async fn signing_out_blocking_and_a_new_password_move_the_token_epoch_on(db: &TestDb) {
    let store = &db.store;
    let name = username(r"\COLLEGE\jdoe");
    let user = store.create_user(&name, "$2b$12$abc", false).await.unwrap();
    let other = student(store, "other").await;
    let epoch = |id| async move { store.user(id).await.unwrap().unwrap().token_epoch };
    assert_eq!(user.token_epoch, 0);
    assert_eq!(epoch(user.id).await, 0);

    assert!(store.revoke_tokens(user.id).await.unwrap());
    assert_eq!(epoch(user.id).await, 1);
    assert!(!store.revoke_tokens(UserId::new()).await.unwrap());

    assert!(store.set_blocked(&name, true).await.unwrap());
    assert_eq!(epoch(user.id).await, 2, "blocking revokes");
    assert!(store.set_blocked(&name, false).await.unwrap());
    assert_eq!(epoch(user.id).await, 2, "unblocking revokes nothing");

    assert!(store.set_password_hash(&name, "$2b$12$new").await.unwrap());
    assert_eq!(epoch(user.id).await, 3, "a new password revokes");
    let credentials = store.user_credentials(&name).await.unwrap().unwrap();
    assert_eq!(credentials.user.token_epoch, 3);

    assert_eq!(epoch(other).await, 0, "other accounts keep their tokens");
}
on_both_databases!(signing_out_blocking_and_a_new_password_move_the_token_epoch_on);

/// The version of the staff review migration, before token epochs.
const STAFF_REVIEW_SCHEMA: i64 = 20261201000001;

async fn the_token_epoch_migration_goes_down_and_up_keeping_accounts(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    store.revoke_tokens(jdoe).await.unwrap();

    store.migrate_down_to(STAFF_REVIEW_SCHEMA).await.unwrap();
    assert_eq!(db.raw_count("users").await, 1);
    db.raw_insert_user(r"\COLLEGE\older").await.unwrap();

    store.migrate().await.unwrap();
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert!(
        users.iter().all(|u| u.token_epoch == 0),
        "epochs start again at 0, the epoch of tokens minted without one"
    );
    assert!(store.revoke_tokens(jdoe).await.unwrap());
    assert_eq!(store.user(jdoe).await.unwrap().unwrap().token_epoch, 1);
}
on_both_databases!(the_token_epoch_migration_goes_down_and_up_keeping_accounts);

async fn sessions_a_crash_left_open_are_closed_at_their_last_line(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let started = at(2026, 11, 1, 10);
    // A 17-second call whose server died: its last line is 17 s in.
    let crashed = start(store, user, Category::Health, SessionMode::Voice, started).await;
    for (sequence, seconds) in [(0, 2), (1, 17), (2, 9)] {
        let speaker = if sequence % 2 == 0 {
            Speaker::Student
        } else {
            Speaker::Counselor
        };
        store
            .append_message(
                crashed,
                line(
                    sequence,
                    speaker,
                    "words",
                    started + Duration::seconds(seconds),
                ),
            )
            .await
            .unwrap();
    }
    // A room opened and never spoken in; a session deleted while open; one ended normally.
    let silent = start(store, user, Category::Career, SessionMode::Video, started).await;
    let deleted = start(store, user, Category::Social, SessionMode::Voice, started).await;
    assert!(store.soft_delete_session(user, deleted).await.unwrap());
    let finished = start(store, user, Category::Academic, SessionMode::Voice, started).await;
    let finished = store
        .end_session_because(
            finished,
            started + Duration::seconds(30),
            None,
            SessionEndReason::Ended,
        )
        .await
        .unwrap();

    // A node starting on a database no other node uses: nothing else runs calls.
    let mut closed: Vec<SessionId> = store
        .close_sessions_of_dead_nodes(Utc::now(), Unowned::Close)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    closed.sort_by_key(|id| *id.as_uuid());
    let mut expected = vec![crashed, silent, deleted];
    expected.sort_by_key(|id| *id.as_uuid());
    assert_eq!(closed, expected);
    assert!(store.active_sessions().await.unwrap().is_empty());

    let crashed_record = store.session(crashed).await.unwrap().unwrap();
    assert_eq!(
        crashed_record.ended_at,
        Some(started + Duration::seconds(17))
    );
    assert_eq!(crashed_record.duration_seconds, Some(17));
    assert_eq!(
        crashed_record.end_reason,
        Some(SessionEndReason::ServerRestart)
    );
    let silent_record = store.session(silent).await.unwrap().unwrap();
    assert_eq!(silent_record.ended_at, Some(started));
    assert_eq!(silent_record.duration_seconds, Some(0));
    assert_eq!(
        silent_record.end_reason,
        Some(SessionEndReason::ServerRestart)
    );
    assert_eq!(
        store.session(finished.id).await.unwrap().unwrap(),
        finished,
        "a session that had ended is left alone"
    );

    // The student's "end session" after the restart (the finding: a 17 s call recorded as
    // 202 s) changes nothing, and neither does a second start.
    let later = store
        .end_session_because(
            crashed,
            started + Duration::seconds(202),
            Some(ConnectionQuality::Good),
            SessionEndReason::Ended,
        )
        .await
        .unwrap();
    assert_eq!(later, crashed_record);
    assert!(store
        .close_sessions_of_dead_nodes(Utc::now(), Unowned::Close)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.session(crashed).await.unwrap().unwrap(),
        crashed_record
    );
}
on_both_databases!(sessions_a_crash_left_open_are_closed_at_their_last_line);

/// Records a node listening on `port`, its heartbeat at `at`.
async fn register_node(store: &Store, node: NodeId, port: u16, at: DateTime<Utc>) {
    let registration = NodeRegistration {
        id: node,
        address: format!("http://10.0.0.2:{port}"),
        capacity: 40,
    };
    store.register_node(&registration, at).await.unwrap();
}

async fn the_sessions_of_a_node_whose_heartbeat_stopped_are_closed(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let (live, dead) = (NodeId::new(), NodeId::new());
    for (node, port) in [(live, 8001), (dead, 8002)] {
        register_node(store, node, port, now - Duration::seconds(60)).await;
    }
    // The live node still beats; the dead one stopped a minute ago, 20 s into a call.
    assert!(store.node_heartbeat(live, 3, now).await.unwrap());
    let call_on = |node: Option<NodeId>, category| {
        let id = SessionId::new();
        let new = NewSession {
            id,
            user_id: user,
            category,
            mode: SessionMode::Voice,
            room_name: format!("counsel-voice-{id}"),
            started_at: now - Duration::seconds(80),
            node,
        };
        async move {
            store.create_session(new).await.unwrap();
            id
        }
    };
    let on_live = call_on(Some(live), Category::Health).await;
    let on_dead = call_on(Some(dead), Category::Career).await;
    let unowned = call_on(None, Category::Social).await;
    let heard = line(0, Speaker::Student, "words", now - Duration::seconds(60));
    store.append_message(on_dead, heard).await.unwrap();

    let alive_since = now - Duration::seconds(15);
    let alive = store.nodes_alive_since(alive_since).await.unwrap();
    assert_eq!(alive.len(), 1);
    assert_eq!((alive[0].id, alive[0].live_calls), (*live.as_uuid(), 3));

    // The periodic sweep: the dead node's session ends at its last line; a session no node
    // runs may be a tool's, and is left to a node's start.
    let closed = store
        .close_sessions_of_dead_nodes(alive_since, Unowned::Keep)
        .await
        .unwrap();
    assert_eq!(closed.iter().map(|s| s.id).collect::<Vec<_>>(), [on_dead]);
    assert_eq!(closed[0].ended_at, Some(now - Duration::seconds(60)));
    assert_eq!(closed[0].end_reason, Some(SessionEndReason::ServerRestart));
    assert!(store.session(on_live).await.unwrap().unwrap().is_active());
    assert!(store.session(unowned).await.unwrap().unwrap().is_active());

    // The dead node is forgotten; if it was only slow, its next heartbeat says so.
    assert!(!store.node_heartbeat(dead, 1, now).await.unwrap());
    assert_eq!(
        store
            .nodes_alive_since(now - Duration::days(1))
            .await
            .unwrap()
            .len(),
        1
    );

    // A node's start also closes what names no node; the live node's call goes on.
    let closed = store
        .close_sessions_of_dead_nodes(alive_since, Unowned::Close)
        .await
        .unwrap();
    assert_eq!(closed.iter().map(|s| s.id).collect::<Vec<_>>(), [unowned]);
    assert!(store.session(on_live).await.unwrap().unwrap().is_active());

    // A node that stops cleanly leaves the registry, and its address must be one.
    store.remove_node(live).await.unwrap();
    assert!(store
        .nodes_alive_since(alive_since)
        .await
        .unwrap()
        .is_empty());
    let nameless = NodeRegistration {
        id: NodeId::new(),
        address: String::new(),
        capacity: 1,
    };
    assert!(matches!(
        store.register_node(&nameless, now).await,
        Err(StoreError::Invalid(_))
    ));
}
on_both_databases!(the_sessions_of_a_node_whose_heartbeat_stopped_are_closed);

async fn every_end_reason_is_stored_and_read_back(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let started = at(2026, 11, 1, 10);
    for reason in SessionEndReason::ALL {
        let id = start(store, user, Category::Health, SessionMode::Voice, started).await;
        let ended = store
            .end_session_because(id, started, None, reason)
            .await
            .unwrap();
        assert_eq!(ended.end_reason, Some(reason));
        assert_eq!(
            store.session(id).await.unwrap().unwrap().end_reason,
            Some(reason)
        );
    }
    let plain = start(store, user, Category::Health, SessionMode::Voice, started).await;
    let ended = store.end_session(plain, started, None).await.unwrap();
    assert_eq!(ended.end_reason, None, "no reason given, none recorded");
}
on_both_databases!(every_end_reason_is_stored_and_read_back);

fn rating(score: i64, comment: Option<&str>) -> NewRating {
    NewRating {
        rating: Rating::new(score).unwrap(),
        comment: comment.map(|c| RatingComment::parse(c).unwrap().unwrap()),
    }
}

async fn a_session_is_rated_once_by_its_owner_after_it_ends(db: &TestDb) {
    let store = &db.store;
    let owner = student(store, "jdoe").await;
    let other = student(store, "other").await;
    let started = at(2026, 11, 2, 10);
    let id = start(store, owner, Category::Career, SessionMode::Video, started).await;
    let comment = "rating-marker-5c1e it helped me plan my week";

    assert_eq!(
        store
            .rate_session(owner, id, rating(4, None))
            .await
            .unwrap(),
        RateOutcome::StillActive,
        "a call is rated once it has ended"
    );
    store
        .end_session(id, started + Duration::minutes(20), None)
        .await
        .unwrap();
    for (who, session) in [(other, id), (owner, SessionId::new())] {
        assert_eq!(
            store
                .rate_session(who, session, rating(1, Some("not mine")))
                .await
                .unwrap(),
            RateOutcome::NotFound,
            "another's session and no session answer alike"
        );
    }

    let RateOutcome::Rated(record) = store
        .rate_session(owner, id, rating(4, Some(comment)))
        .await
        .unwrap()
    else {
        panic!("the owner's first rating is stored");
    };
    let stored = record.rating.expect("the record carries the rating");
    assert_eq!(stored.rating.get(), 4);
    assert!(stored.rated_at > started);
    assert_eq!(
        store
            .rate_session(owner, id, rating(1, None))
            .await
            .unwrap(),
        RateOutcome::AlreadyRated
    );

    let detail = store.session_for_user(owner, id).await.unwrap().unwrap();
    assert_eq!(detail.record.rating, Some(stored), "the first rating stays");
    assert_eq!(detail.rating_comment.unwrap().as_str(), comment);
    let (rows, _) = store
        .list_sessions(owner, &SessionFilter::default(), 1, 20)
        .await
        .unwrap();
    assert_eq!(rows[0].rating, Some(stored));
    assert!(store.session_for_user(other, id).await.unwrap().is_none());

    // The comment is stored like transcript text: encrypted, never the words.
    let raw = db.raw_rating_comments().await;
    assert_eq!(raw.len(), 1);
    assert!(!contains(&raw[0], comment.as_bytes()));
    assert!(!contains(&db.raw_sqlite_files(), b"rating-marker-5c1e"));
    let other_key = db.reopen(TranscriptCipher::new([7; 32])).await;
    assert!(
        other_key.session_for_user(owner, id).await.is_err(),
        "another key cannot read the comment"
    );

    // Deleting the session erases the comment with the transcript.
    assert!(store.soft_delete_session(owner, id).await.unwrap());
    assert!(db.raw_rating_comments().await.is_empty());
    assert_eq!(
        store
            .rate_session(owner, id, rating(5, None))
            .await
            .unwrap(),
        RateOutcome::NotFound
    );
}
on_both_databases!(a_session_is_rated_once_by_its_owner_after_it_ends);

async fn retention_erases_rating_comments_and_keeps_scores(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let cutoff = at(2026, 8, 24, 0);
    let mut rated = Vec::new();
    for started in [cutoff - Duration::days(1), cutoff + Duration::days(1)] {
        let id = start(store, user, Category::Health, SessionMode::Voice, started).await;
        store
            .end_session(id, started + Duration::minutes(5), None)
            .await
            .unwrap();
        // No transcript lines: the comment goes even where there is nothing else to purge.
        store
            .rate_session(user, id, rating(2, Some("private words")))
            .await
            .unwrap();
        rated.push(id);
    }
    store
        .purge_transcripts_older_than(cutoff, true)
        .await
        .unwrap();
    assert_eq!(
        db.raw_rating_comments().await.len(),
        2,
        "a dry run keeps them"
    );
    store
        .purge_transcripts_older_than(cutoff, false)
        .await
        .unwrap();
    let old = store
        .session_for_user(user, rated[0])
        .await
        .unwrap()
        .unwrap();
    assert!(old.rating_comment.is_none());
    assert_eq!(old.record.rating.map(|r| r.rating.get()), Some(2));
    let recent = store
        .session_for_user(user, rated[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recent.rating_comment.unwrap().as_str(), "private words");
}
on_both_databases!(retention_erases_rating_comments_and_keeps_scores);

async fn the_database_itself_keeps_ratings_whole_and_in_range(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let id = start(
        store,
        user,
        Category::Health,
        SessionMode::Voice,
        at(2026, 11, 2, 9),
    )
    .await;
    for (score, rated) in [
        (Some(0), true),
        (Some(6), true),
        (Some(3), false),
        (None, true),
    ] {
        assert!(
            db.raw_set_rating(id, score, rated).await.is_err(),
            "{score:?} rated={rated}"
        );
    }
    db.raw_set_rating(id, Some(5), true).await.unwrap();
    assert_eq!(
        store
            .session(id)
            .await
            .unwrap()
            .unwrap()
            .rating
            .map(|r| r.rating.get()),
        Some(5)
    );
}
on_both_databases!(the_database_itself_keeps_ratings_whole_and_in_range);

/// The version of the end-reason migration, before ratings.
const END_REASON_SCHEMA: i64 = 20261220000001;

async fn the_rating_migration_goes_down_and_up_keeping_sessions(db: &TestDb) {
    let store = &db.store;
    let user = student(store, "jdoe").await;
    let started = at(2026, 11, 2, 9);
    let id = start(store, user, Category::Health, SessionMode::Voice, started).await;
    store.end_session(id, started, None).await.unwrap();
    store
        .rate_session(user, id, rating(3, Some("ok")))
        .await
        .unwrap();

    store.migrate_down_to(END_REASON_SCHEMA).await.unwrap();
    assert_eq!(db.raw_count("sessions").await, 1);
    store.migrate().await.unwrap();
    let session = store.session(id).await.unwrap().unwrap();
    assert_eq!(session.rating, None, "ratings start again empty");
    assert!(matches!(
        store.rate_session(user, id, rating(5, None)).await.unwrap(),
        RateOutcome::Rated(_)
    ));
}
on_both_databases!(the_rating_migration_goes_down_and_up_keeping_sessions);

fn notice_audit(user: UserId) -> AuditEntry {
    AuditEntry {
        user_id: Some(user),
        action: AuditAction::AcceptNotice,
        resource_type: AuditResource::Account,
        resource_id: *user.as_uuid(),
        ip: Some("10.1.2.3".parse().unwrap()),
        user_agent: Some("store-test".to_owned()),
    }
}

async fn a_notice_is_accepted_once_per_account_and_wording_and_audited(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let other = student(store, "other").await;
    let first = NoticeVersion::parse("a1b2c3").unwrap();
    let second = NoticeVersion::parse("d4e5f6").unwrap();
    assert_eq!(store.notice_accepted_at(jdoe, &first).await.unwrap(), None);

    let accepted = store
        .accept_notice(&first, notice_audit(jdoe))
        .await
        .unwrap();
    assert!(accepted.newly_recorded);
    let again = store
        .accept_notice(&first, notice_audit(jdoe))
        .await
        .unwrap();
    assert_eq!(
        (again.accepted_at, again.newly_recorded),
        (accepted.accepted_at, false),
        "the first acceptance stays"
    );
    assert_eq!(
        store.notice_accepted_at(jdoe, &first).await.unwrap(),
        Some(accepted.accepted_at)
    );
    assert_eq!(
        store.notice_accepted_at(jdoe, &second).await.unwrap(),
        None,
        "a new wording"
    );
    assert_eq!(
        store.notice_accepted_at(other, &first).await.unwrap(),
        None,
        "another account"
    );

    let audit = store
        .audit_log_for_resource(AuditResource::Account, *jdoe.as_uuid())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "audited once, when recorded");
    assert_eq!(audit[0].entry, notice_audit(jdoe));
    assert_eq!(audit[0].timestamp, accepted.accepted_at);
    assert!(matches!(
        store
            .accept_notice(
                &first,
                AuditEntry {
                    user_id: None,
                    ..notice_audit(jdoe)
                }
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        matches!(
            store
                .accept_notice(&first, notice_audit(UserId::new()))
                .await,
            Err(StoreError::NotFound)
        ),
        "no such account"
    );
}
on_both_databases!(a_notice_is_accepted_once_per_account_and_wording_and_audited);

async fn only_staff_who_may_sign_in_count_as_on_duty(db: &TestDb) {
    let store = &db.store;
    student(store, "jdoe").await;
    assert!(!store.has_active_staff().await.unwrap());
    let nurse = staff(store, "nurse1").await;
    assert!(store.has_active_staff().await.unwrap());
    store.set_blocked(&nurse.username, true).await.unwrap();
    assert!(!store.has_active_staff().await.unwrap());
}
on_both_databases!(only_staff_who_may_sign_in_count_as_on_duty);

/// The version of the rating migration, before notice acceptances.
const RATING_SCHEMA: i64 = 20261222000001;

async fn the_notice_migration_goes_down_and_up(db: &TestDb) {
    let store = &db.store;
    let jdoe = student(store, "jdoe").await;
    let version = NoticeVersion::parse("a1b2c3").unwrap();
    store
        .accept_notice(&version, notice_audit(jdoe))
        .await
        .unwrap();
    store.migrate_down_to(RATING_SCHEMA).await.unwrap();
    assert!(!db
        .raw_tables()
        .await
        .contains(&"notice_acceptances".to_owned()));
    assert_eq!(db.raw_count("users").await, 1);
    store.migrate().await.unwrap();
    assert_eq!(
        store.notice_accepted_at(jdoe, &version).await.unwrap(),
        None,
        "asked again"
    );
}
on_both_databases!(the_notice_migration_goes_down_and_up);

async fn a_job_runs_on_one_node_at_a_time(db: &TestDb) {
    let store = &db.store;
    let first = store.lock_job(Job::TranscriptRetention).await.unwrap();
    assert!(first.is_some());
    let second = store.lock_job(Job::TranscriptRetention).await.unwrap();
    let other_job = store.lock_job(Job::DeadNodeSweep).await.unwrap();
    assert!(other_job.is_some(), "each job has its own lock");
    match store.kind() {
        // One node per SQLite database: nothing to wait for.
        StoreKind::Sqlite => assert!(second.is_some()),
        StoreKind::Postgres => assert!(second.is_none(), "another node holds it"),
    }
    if let Some(first) = first {
        first.release().await;
    }
    let again = store.lock_job(Job::TranscriptRetention).await.unwrap();
    assert!(again.is_some(), "released, it can be taken again");
    // Dropped without a release (a job that panicked), the lock goes with its connection,
    // once the server has seen it close.
    drop(again);
    let mut freed = false;
    for _ in 0..50 {
        if store
            .lock_job(Job::TranscriptRetention)
            .await
            .unwrap()
            .is_some()
        {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "the lock was not freed when its holder was dropped");
}
on_both_databases!(a_job_runs_on_one_node_at_a_time);

// Issue 14, item 4: a rate limit kept in the database holds for every node taking from it.
async fn a_bucket_lets_its_limit_through_then_refuses_until_it_refills(db: &TestDb) {
    let store = &db.store;
    let size = BucketSize::per_minute(3);
    let t0 = Utc::now();
    for _ in 0..3 {
        assert_eq!(
            store
                .take_from_bucket("history", "jdoe", size, t0)
                .await
                .unwrap(),
            Taken::Allowed
        );
    }
    match store
        .take_from_bucket("history", "jdoe", size, t0)
        .await
        .unwrap()
    {
        Taken::Refused { retry_after_secs } => {
            assert!((retry_after_secs - 20.0).abs() < 0.01, "{retry_after_secs}")
        }
        Taken::Allowed => panic!("a fourth request in the same instant"),
    }
    // Another client, and another limit of the same client, have buckets of their own.
    let other = store.take_from_bucket("history", "asmith", size, t0).await;
    assert_eq!(other.unwrap(), Taken::Allowed);
    let other = store.take_from_bucket("transcript", "jdoe", size, t0).await;
    assert_eq!(other.unwrap(), Taken::Allowed);
    // One token a 20 s; a refused request took nothing.
    let later = t0 + Duration::seconds(20);
    let again = store.take_from_bucket("history", "jdoe", size, later).await;
    assert_eq!(again.unwrap(), Taken::Allowed);
    assert!(matches!(
        store
            .take_from_bucket("history", "jdoe", size, later)
            .await
            .unwrap(),
        Taken::Refused { .. }
    ));

    // Many requests at once, as from several nodes: exactly the limit gets through.
    let size = BucketSize::per_minute(5);
    let takes: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .take_from_bucket("session_create", "jdoe", size, t0)
                    .await
            })
        })
        .collect();
    let mut allowed = 0;
    for take in takes {
        if take.await.unwrap().unwrap() == Taken::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);

    // Idle buckets are forgotten (full again, so nothing changes for their clients).
    let forgotten = store
        .forget_idle_buckets(later + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(forgotten, 4);
    let bad = store
        .take_from_bucket("history", "jdoe", BucketSize::per_minute(0), t0)
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
}
on_both_databases!(a_bucket_lets_its_limit_through_then_refuses_until_it_refills);

// Issue 14, item 4: a student's transcript sockets are counted on every node together, and a
// node's sockets go when the node does.
async fn socket_slots_are_counted_across_nodes(db: &TestDb) {
    let store = &db.store;
    let (alice, bob) = (student(store, "alice").await, student(store, "bob").await);
    let (a, b) = (NodeId::new(), NodeId::new());
    for (node, port) in [(a, 8101), (b, 8102)] {
        register_node(store, node, port, Utc::now()).await;
    }
    let now = Utc::now();
    let mut on_a = Vec::new();
    for node in [a, b, a, b, a] {
        let slot = store.take_socket_slot(alice, node, 5, now).await.unwrap();
        on_a.push((node, slot.expect("under the limit")));
    }
    for node in [a, b] {
        let sixth = store.take_socket_slot(alice, node, 5, now).await.unwrap();
        assert_eq!(sixth, None, "five on both nodes together");
    }
    assert!(store
        .take_socket_slot(bob, a, 5, now)
        .await
        .unwrap()
        .is_some());
    store.release_socket_slot(on_a[0].1).await.unwrap();
    assert!(store
        .take_socket_slot(alice, b, 5, now)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.take_socket_slot(alice, a, 5, now).await.unwrap(),
        None
    );
    // Node B leaves (or is found dead and removed): its three are free again.
    store.remove_node(b).await.unwrap();
    for _ in 0..3 {
        assert!(store
            .take_socket_slot(alice, a, 5, now)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(
        store.take_socket_slot(alice, a, 5, now).await.unwrap(),
        None
    );

    // Many at once, as from several nodes: exactly the limit.
    let carol = student(store, "carol").await;
    let takes: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_socket_slot(carol, a, 5, now).await })
        })
        .collect();
    let mut taken = 0;
    for take in takes {
        if take.await.unwrap().unwrap().is_some() {
            taken += 1;
        }
    }
    assert_eq!(taken, 5);
}
on_both_databases!(socket_slots_are_counted_across_nodes);

//! `seed-demo`: accounts and past sessions to try the platform with.

use chrono::{Duration, Utc};
use domain::{
    Category, CrisisLevel, CrisisSignal, SessionId, SessionMode, Speaker, TranscriptText, Username,
};
use rand::RngExt;

use crate::auth::PasswordHasher;

/// The demo accounts: name and whether it is blocked.
pub const DEMO_USERS: [(&str, bool); 3] = [
    (r"\domain\testuser1", false),
    (r"\domain\testuser2", false),
    (r"\domain\blockeduser", true),
];
pub const DEMO_PASSWORD: &str = "TestPassword123!";
/// The demo counselor on duty: sees the crisis review page, has no sessions of their own.
pub const DEMO_STAFF: &str = r"\domain\staffuser";

/// What a student might bring to each counselor, and how the counselor might answer.
fn exchanges(category: Category) -> &'static [(&'static str, &'static str)] {
    match category {
        Category::Health => &[
            ("I haven't been sleeping well since midterms started.", "That's really common during exams. What does your evening look like before bed?"),
            ("I'm on my phone until about 2am, then I can't switch off.", "Let's try a wind-down hour without screens. Could you start with three nights this week?"),
            ("I can try that. I also skip breakfast a lot.", "Small steps count. Even something quick in the morning helps your focus and mood."),
        ],
        Category::Career => &[
            ("I don't know what to do after graduation.", "That's a big question. What parts of your courses have you enjoyed most?"),
            ("I liked the data analysis project in statistics.", "That's a useful clue. Have you looked at internships in analytics or research?"),
            ("Not yet, my resume feels empty.", "Your project counts as experience. Let's describe it in terms of what you built and learned."),
        ],
        Category::Academic => &[
            ("I'm falling behind in organic chemistry.", "Let's figure out where it started slipping. Is it the lectures, the problem sets, or exams?"),
            ("Mostly the problem sets, they take forever.", "Try working them in 25-minute blocks and bring the stuck ones to office hours."),
            ("I've never been to office hours.", "Many students haven't. Professors expect questions there; it's what the time is for."),
        ],
        Category::Financial => &[
            ("My financial aid didn't cover as much as I expected.", "I'm sorry, that's stressful. Do you know how large the gap is for this semester?"),
            ("About two thousand dollars.", "Let's look at emergency grants and a payment plan with the bursar before any loans."),
            ("I didn't know there were emergency grants.", "Many campuses have them. The financial aid office can tell you how to apply."),
        ],
        Category::Social => &[
            ("My roommate and I keep arguing about noise.", "Living together is hard. What happens when the arguments start?"),
            ("We both get defensive and nothing changes.", "Try a calm talk at a neutral time, using 'I' statements about what you need."),
            ("Maybe we could agree on quiet hours.", "That's a concrete, fair proposal. Writing it down together can help it stick."),
        ],
        Category::PersonalDevelopment => &[
            ("I want to be more disciplined but I keep giving up.", "What's one goal you gave up on recently?"),
            ("Going to the gym three times a week.", "Three times may be a big jump. What if you started with twice and tracked it?"),
            ("That sounds doable.", "Good. Notice the days you go and how you feel afterwards; that builds momentum."),
        ],
    }
}

/// Adds the demo accounts and 10-20 past sessions for each, across categories and modes, with
/// transcripts; one session of the first account has a crisis event. Accounts that already exist
/// are left alone.
pub async fn seed_demo(store: &store::Store, hasher: &PasswordHasher) -> anyhow::Result<()> {
    let hash = hasher
        .hash(DEMO_PASSWORD)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = rand::rng();
    for (index, (name, blocked)) in DEMO_USERS.into_iter().enumerate() {
        let username = Username::parse(name).expect("demo usernames are valid");
        let user = match store.create_user(&username, &hash, blocked).await {
            Ok(user) => user,
            Err(store::StoreError::Conflict(_)) => {
                println!("{name} already exists; left unchanged");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let count = rng.random_range(10..=20);
        for n in 0..count {
            let category = Category::ALL[(n + index) % Category::ALL.len()];
            let mode = if n % 3 == 2 {
                SessionMode::Video
            } else {
                SessionMode::Voice
            };
            let started_at = Utc::now()
                - Duration::days(rng.random_range(1..80))
                - Duration::minutes(rng.random_range(0..600));
            let minutes = rng.random_range(5..=45);
            let id = SessionId::new();
            let session = store
                .create_session(store::NewSession {
                    id,
                    user_id: user.id,
                    category,
                    mode,
                    room_name: format!("demo-{id}"),
                    started_at,
                    node: None,
                })
                .await?
                .id;

            let mut lines: Vec<(Speaker, String)> = vec![(
                Speaker::Counselor,
                format!(
                    "Hi, I'm your {} counselor. What would you like to talk about today?",
                    category.name().to_lowercase()
                ),
            )];
            for (student, counselor) in exchanges(category) {
                lines.push((Speaker::Student, (*student).to_owned()));
                lines.push((Speaker::Counselor, (*counselor).to_owned()));
            }
            let crisis = index == 0 && n == 0;
            if crisis {
                lines.push((
                    Speaker::Student,
                    "Honestly, sometimes I feel like there's no point in going on.".to_owned(),
                ));
                lines.push((Speaker::Counselor, safety_reply().to_owned()));
            }
            let step = (minutes * 60) / (lines.len() as i64 + 1);
            for (sequence, (speaker, text)) in lines.into_iter().enumerate() {
                let spoken_at = started_at
                    + Duration::seconds(step * (sequence as i64 + 1) - rng.random_range(0..5));
                let message = store::NewMessage {
                    sequence: sequence as u32,
                    speaker,
                    text: TranscriptText::new(text),
                    is_final: true,
                    timestamp: spoken_at,
                };
                store.append_message(session, message).await?;
            }
            if crisis {
                // The student's line just before the crisis reply.
                let sequence = (exchanges(category).len() * 2 + 1) as u32;
                let event = store::NewCrisisEvent {
                    session_id: session,
                    sequence,
                    level: CrisisLevel::Crisis,
                    signal: CrisisSignal::SuicidalIdeation,
                    decided_by: Some(domain::DecidedBy::Rule),
                };
                store.record_crisis_event(event).await?;
            }
            let quality = [
                domain::ConnectionQuality::Excellent,
                domain::ConnectionQuality::Good,
                domain::ConnectionQuality::Fair,
            ][n % 3];
            store
                .end_session(
                    session,
                    started_at + Duration::minutes(minutes),
                    Some(quality),
                )
                .await?;
        }
        println!(
            "{name}: {count} sessions{}",
            if blocked { " (blocked)" } else { "" }
        );
    }
    let staff = Username::parse(DEMO_STAFF).expect("demo usernames are valid");
    match store
        .create_user_with_role(&staff, &hash, false, domain::Role::Staff)
        .await
    {
        Ok(_) => println!("{DEMO_STAFF}: staff (crisis review page)"),
        Err(store::StoreError::Conflict(_)) => {
            println!("{DEMO_STAFF} already exists; left unchanged")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn safety_reply() -> &'static str {
    "I'm really glad you told me. You deserve support right now. Please call or text 988, the Suicide & Crisis Lifeline, \
or chat at 988lifeline.org. If you are in immediate danger, call 911. Your campus counseling center can also see you today."
}

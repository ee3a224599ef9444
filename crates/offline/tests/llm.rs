//! The offline language model with the compact counselor prompts: one typical question per
//! category must get an English, on-topic reply that does not loop.

use std::sync::OnceLock;

use agent::services::{ChatMessage, ChatRequest, LanguageModel};
use domain::Category;
use futures::StreamExt;
use offline::llm::{LlmConfig, LocalLanguageModel};
use offline::prompts::compact_persona;

const SEED: u64 = 7;
const MAX_TOKENS: u32 = 60;

fn model() -> &'static LocalLanguageModel {
    static MODEL: OnceLock<LocalLanguageModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let paths = offline::testing::model_paths();
        LocalLanguageModel::load(
            &paths.llm_gguf,
            LlmConfig {
                seed: Some(SEED),
                ..LlmConfig::default()
            },
        )
        .expect("load SmolLM2")
    })
}

fn request(category: Category, question: &str) -> ChatRequest {
    ChatRequest {
        system: compact_persona(category).to_string(),
        messages: vec![ChatMessage::user(question)],
        max_tokens: MAX_TOKENS,
        temperature: 0.5,
        first_text_by: None,
    }
}

fn reply(category: Category, question: &str) -> String {
    let mut text = String::new();
    model()
        .generate_blocking(&request(category, question), |piece| {
            text.push_str(&piece);
            true
        })
        .expect("generation");
    text
}

/// A question a student would ask, and words of which an on-topic answer uses at least one.
fn typical_question(category: Category) -> (&'static str, &'static [&'static str]) {
    match category {
        Category::Health => (
            "I only sleep four hours a night because I am so stressed. What should I do?",
            &[
                "sleep", "stress", "rest", "relax", "bed", "tired", "breath", "doctor", "health",
                "exercise",
            ],
        ),
        Category::Career => (
            "How do I find an internship for next summer?",
            &[
                "internship",
                "career",
                "job",
                "resume",
                "company",
                "companies",
                "apply",
                "interview",
                "network",
                "employer",
            ],
        ),
        Category::Academic => (
            "I keep failing my chemistry exams even though I study a lot. Any tips?",
            &[
                "study",
                "exam",
                "class",
                "grade",
                "professor",
                "tutor",
                "notes",
                "learn",
                "test",
                "practice",
            ],
        ),
        Category::Financial => (
            "I run out of money before the end of every month. How can I budget better?",
            &[
                "budget", "money", "spend", "save", "saving", "expense", "income", "track", "cost",
                "bill",
            ],
        ),
        Category::Social => (
            "I moved to campus and I feel lonely. How can I make friends?",
            &[
                "friend", "club", "people", "social", "join", "lonely", "connect", "group",
                "event", "talk",
            ],
        ),
        Category::PersonalDevelopment => (
            "How can I stop procrastinating and build better habits?",
            &[
                "habit",
                "goal",
                "motivat",
                "routine",
                "small",
                "step",
                "progress",
                "procrastinat",
                "task",
                "time",
            ],
        ),
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The longest run of words that occurs twice (a looping model repeats whole phrases).
fn longest_repeated_phrase(text: &str) -> usize {
    let words = words(text);
    (1..words.len())
        .rev()
        .find(|&n| {
            let mut seen = std::collections::HashSet::new();
            words.windows(n).any(|phrase| !seen.insert(phrase))
        })
        .unwrap_or(0)
}

fn looks_english(text: &str) -> bool {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    let ascii = letters.iter().filter(|c| c.is_ascii()).count();
    let common = [
        "the", "you", "to", "and", "a", "is", "your", "can", "it", "of", "for", "i",
    ];
    let words = words(text);
    let common_words = words
        .iter()
        .filter(|w| common.contains(&w.as_str()))
        .count();
    !letters.is_empty() && ascii * 100 >= letters.len() * 98 && common_words * 10 >= words.len()
}

#[test]
fn every_counselor_answers_in_english_on_topic_without_looping() {
    for category in Category::ALL {
        let (question, topic_words) = typical_question(category);
        let answer = reply(category, question);
        eprintln!("{category:?}: {answer:?}");
        let lower = answer.to_lowercase();
        assert!(
            words(&answer).len() >= 8,
            "{category:?}: answer too short: {answer:?}"
        );
        assert!(
            looks_english(&answer),
            "{category:?}: not English: {answer:?}"
        );
        assert!(
            topic_words.iter().any(|w| lower.contains(w)),
            "{category:?}: off topic (none of {topic_words:?}): {answer:?}"
        );
        let repeated = longest_repeated_phrase(&answer);
        assert!(
            repeated < 6,
            "{category:?}: repeats a {repeated}-word phrase: {answer:?}"
        );
        assert!(
            !answer.contains("<|"),
            "{category:?}: control token leaked: {answer:?}"
        );
    }
}

#[test]
fn a_fixed_seed_gives_the_same_reply() {
    let (question, _) = typical_question(Category::Academic);
    let short = |question| {
        let mut text = String::new();
        let mut short_request = request(Category::Academic, question);
        short_request.max_tokens = 20;
        model()
            .generate_blocking(&short_request, |piece| {
                text.push_str(&piece);
                true
            })
            .expect("generation");
        text
    };
    assert_eq!(short(question), short(question));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_through_the_service_trait_and_stops_when_dropped() {
    let model: &dyn LanguageModel = model();
    let (question, _) = typical_question(Category::Social);
    let mut stream = model
        .stream_reply(request(Category::Social, question))
        .await
        .expect("stream");
    let first = stream
        .next()
        .await
        .expect("a first piece")
        .expect("no error");
    assert!(!first.is_empty());
    drop(stream);
    // Generation stopped and gave its turn back: the next reply starts and finishes.
    let mut short_request = request(Category::Social, question);
    short_request.max_tokens = 20;
    let pieces: Vec<String> = model
        .stream_reply(short_request)
        .await
        .expect("second stream")
        .map(|piece| piece.expect("no error"))
        .collect()
        .await;
    assert!(
        pieces.concat().split_whitespace().count() >= 8,
        "{pieces:?}"
    );
}

#[tokio::test]
async fn a_conversation_not_ending_with_the_student_is_rejected() {
    let model: &dyn LanguageModel = model();
    let mut bad = request(Category::Health, "hello");
    bad.messages.push(ChatMessage::assistant("Hi there."));
    let error = model.stream_reply(bad).await.err().expect("rejected");
    assert!(!error.is_transient(), "{error}");
}

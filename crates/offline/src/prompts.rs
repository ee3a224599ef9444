//! Counselor instructions short enough for the offline model.
//!
//! SmolLM2-135M follows a two-sentence system prompt and drifts or loops on a long one, so
//! these say only who the counselor is, what it talks about, and how long to answer. The full
//! counselor prompts (stored per category) are for the cloud models.

use domain::Category;

/// The system prompt for the offline model, one per counselor category.
pub const fn compact_persona(category: Category) -> &'static str {
    match category {
        Category::Health => {
            "You are a kind health counselor for college students. Give short, practical advice \
             about sleep, stress, food, exercise and seeing a doctor. Answer in two or three sentences."
        }
        Category::Career => {
            "You are a friendly career counselor for college students. Give short, practical advice \
             about jobs, internships, resumes, interviews and career choices. Answer in two or three sentences."
        }
        Category::Academic => {
            "You are a supportive academic counselor for college students. Give short, practical advice \
             about studying, classes, exams, grades and time management. Answer in two or three sentences."
        }
        Category::Financial => {
            "You are a helpful financial counselor for college students. Give short, practical advice \
             about budgets, saving money, loans, debt and financial aid. Answer in two or three sentences."
        }
        Category::Social => {
            "You are a warm social counselor for college students. Give short, practical advice \
             about friends, loneliness, roommates, relationships and joining clubs. Answer in two or three sentences."
        }
        Category::PersonalDevelopment => {
            "You are an encouraging personal development coach for college students. Give short, practical \
             advice about goals, habits, motivation, confidence and growth. Answer in two or three sentences."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_a_short_english_persona() {
        for category in Category::ALL {
            let persona = compact_persona(category);
            let words = persona.split_whitespace().count();
            assert!(
                (15..=45).contains(&words),
                "{category:?} persona has {words} words"
            );
            assert!(persona.is_ascii());
            assert!(persona.contains("college students"));
        }
    }
}

//! How each counselor sounds: the prompt it is given, the greeting it opens with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::Category;
use store::CounselorCategory;

/// Which system prompt a call's language model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonaStyle {
    /// The category's prompt from the database (editable with `counsel category set-prompt`).
    FromCategory,
    /// A short prompt the small offline model can follow without drifting off topic.
    Compact,
}

impl PersonaStyle {
    pub fn system_prompt(self, category: &CounselorCategory) -> String {
        match self {
            PersonaStyle::FromCategory => category.system_prompt.clone(),
            PersonaStyle::Compact => {
                offline::prompts::compact_persona(category.category).to_owned()
            }
        }
    }
}

/// The counselor's first words in a call.
pub fn greeting(category: Category) -> &'static str {
    match category {
        Category::Health => "Hi, I'm your health and wellness counselor. How have you been feeling lately?",
        Category::Career => "Hi, I'm your career counselor. What's on your mind about your future plans?",
        Category::Academic => "Hi, I'm your academic advisor. How are your classes going?",
        Category::Financial => "Hi, I'm your financial counselor. What money questions can I help you think through?",
        Category::Social => "Hi, I'm here to talk about friendships, relationships and campus life. What's going on?",
        Category::PersonalDevelopment => "Hi, I'm your personal development coach. What would you like to work on?",
    }
}

/// A fresh unguessable room token (256 bits, URL-safe).
pub fn room_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

//! From rule matches to one assessment: who the phrase is about, whether it is negated,
//! told as history, framed as a class topic or a quotation, and what recent turns add.

use std::sync::LazyLock;

use domain::{CrisisLevel, CrisisSignal};

use crate::normalize::{normalize, BOUNDARY};
use crate::rules::{Effect, Hit, RuleSet};
use crate::{Assessment, Subject};

static RULES: LazyLock<RuleSet> = LazyLock::new(RuleSet::compile);

/// Classifies one utterance on its own.
pub(crate) fn assess_alone(utterance: &str) -> Assessment {
    let tokens = normalize(utterance);
    assess_tokens(&tokens).0
}

/// The rules' reading of an utterance in context, and whether they set aside risk words in it
/// (an idiom, a quotation, a class or media topic: "this exam is killing me") or lowered them
/// (negated, told as history, hyperbole: "i used to cut myself in high school").
pub(crate) fn read_with_context(utterance: &str, recent_turns: &[&str]) -> (Assessment, bool) {
    let tokens = normalize(utterance);
    let (current, dismissed) = assess_tokens(&tokens);
    (raise_by_context(current, &tokens, recent_turns), dismissed)
}

/// Classifies `utterance`, letting the student's recent turns raise (never lower) the result.
pub(crate) fn assess_with_context(utterance: &str, recent_turns: &[&str]) -> Assessment {
    read_with_context(utterance, recent_turns).0
}

/// What recent turns add: a short "yes" or a plan detail right after talk of dying is a crisis,
/// and a crisis a moment ago keeps the counselor asking about safety.
fn raise_by_context(current: Assessment, tokens: &[String], recent_turns: &[&str]) -> Assessment {
    if current.level == CrisisLevel::Crisis {
        return current;
    }
    let Some(earlier) = recent_turns
        .iter()
        .map(|turn| assess_alone(turn))
        .filter(|a| a.subject == Some(Subject::Student) && a.level >= CrisisLevel::Concern)
        .max_by_key(|a| (a.level, a.signal.map(signal_priority)))
    else {
        return current;
    };
    let from_earlier = |level, signal| Assessment {
        level,
        signal: Some(signal),
        subject: Some(Subject::Student),
        negated: false,
        from_context: true,
        rule: earlier.rule,
    };
    let earlier_signal = earlier.signal.unwrap_or(CrisisSignal::SuicidalIdeation);
    if mentions_plan_or_time(tokens) {
        return from_earlier(CrisisLevel::Crisis, CrisisSignal::PlanOrMeans);
    }
    if is_affirmation(tokens) {
        return from_earlier(CrisisLevel::Crisis, earlier_signal);
    }
    if earlier.level == CrisisLevel::Crisis && current.level == CrisisLevel::None {
        return from_earlier(CrisisLevel::Concern, earlier_signal);
    }
    current
}

/// The strongest judged rule match, and whether any match was set aside or lowered.
fn assess_tokens(tokens: &[String]) -> (Assessment, bool) {
    let rules = &*RULES;
    let hits = rules.hits(tokens);
    if hits.is_empty() {
        return (Assessment::NONE, false);
    }
    let modifiers = rules.modifier_spans(tokens);
    let context = UtteranceContext::read(tokens);
    let judged: Vec<Option<(Assessment, bool)>> = hits
        .iter()
        .map(|hit| judge(hit, tokens, &modifiers, &context))
        .collect();
    let dismissed = judged
        .iter()
        .copied()
        .any(|j| j.is_none_or(|(_, lowered)| lowered));
    let strongest = judged
        .into_iter()
        .flatten()
        .map(|(assessment, _)| assessment)
        .max_by_key(|a| {
            (
                a.level,
                a.signal.map(signal_priority),
                a.subject == Some(Subject::Student),
            )
        })
        .unwrap_or(Assessment::NONE);
    (strongest, dismissed)
}

/// The rule match's assessment, and whether its level was lowered (negated, told as history,
/// hyperbole); `None` when the match is set aside altogether (an idiom, a quote, a topic).
fn judge(
    hit: &Hit<'_>,
    tokens: &[String],
    modifiers: &[(crate::pattern::Span, Effect)],
    context: &UtteranceContext,
) -> Option<(Assessment, bool)> {
    let overlapping = |effect| {
        modifiers
            .iter()
            .any(|(s, e)| *e == effect && s.overlaps(&hit.span))
    };
    if overlapping(Effect::Suppress) {
        return None;
    }
    if context.is_framed(hit, tokens) {
        return None;
    }
    if hit.rule.needs_agent && !has_agent(tokens, hit.span.start) {
        // "the news about the layoffs hit me hard": nobody did anything to anybody.
        return None;
    }
    let subject = subject_of(hit, tokens);
    let negated = is_negated(tokens, hit.span.start);
    let (mut level, signal) = match subject {
        Subject::Student => (hit.rule.level, hit.rule.signal),
        Subject::SomeoneElse => {
            let level = if context.imminent {
                CrisisLevel::Crisis
            } else {
                hit.rule.level_for_someone_else
            };
            (level, CrisisSignal::ThirdPartyRisk)
        }
    };
    let history = subject == Subject::Student && context.told_as_history;
    let unlowered = level;
    if negated || history || overlapping(Effect::CapAtConcern) {
        level = level.min(CrisisLevel::Concern);
    }
    let assessment = Assessment {
        level,
        signal: Some(signal),
        subject: Some(subject),
        negated,
        from_context: false,
        rule: Some(hit.rule.source),
    };
    Some((assessment, level < unlowered))
}

/// Which signal names an assessment when several rules match: the most specific and urgent.
fn signal_priority(signal: CrisisSignal) -> u8 {
    match signal {
        CrisisSignal::PlanOrMeans => 7,
        CrisisSignal::SuicidalIdeation => 6,
        CrisisSignal::SelfHarm => 5,
        CrisisSignal::HarmToOthers => 4,
        CrisisSignal::DangerOrAbuse => 3,
        CrisisSignal::IndirectWarning => 2,
        CrisisSignal::ThirdPartyRisk => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Who the phrase is about.

fn person_of(token: &str) -> Option<Subject> {
    match token {
        "i" | "me" | "my" | "myself" | "mine" | "you" | "your" | "yourself" | "we" | "us"
        | "our" | "ourselves" => Some(Subject::Student),
        "he" | "she" | "they" | "him" | "her" | "his" | "them" | "their" | "himself"
        | "herself" | "themselves" | "themself" | "someone" | "somebody" => {
            Some(Subject::SomeoneElse)
        }
        _ if is_other_person_noun(token) => Some(Subject::SomeoneElse),
        _ => None,
    }
}

fn is_other_person_noun(token: &str) -> bool {
    #[rustfmt::skip]
    const NOUNS: &[&str] = &[
        "friend", "friends", "roommate", "roommates", "suitemate", "suitemates", "brother",
        "brothers", "sister", "sisters", "mom", "mother", "dad", "father", "parents", "stepdad",
        "stepmom", "stepfather", "stepmother", "cousin", "cousins", "boyfriend", "girlfriend",
        "partner", "ex", "classmate", "classmates", "teammate", "teammates", "husband", "wife",
        "son", "daughter", "aunt", "uncle", "grandma", "grandmother", "grandpa", "grandfather",
        "bestie", "coworker", "coworkers", "neighbor", "kid", "guy", "girl", "student", "person",
        "man", "woman", "sibling", "twin", "buddy", "bf", "gf",
    ];
    NOUNS.contains(&token)
}

const REPORTING_VERBS: &[&str] = &[
    "said",
    "says",
    "saying",
    "told",
    "tells",
    "texted",
    "texts",
    "wrote",
    "writes",
    "posted",
    "posts",
    "messaged",
    "goes",
    "went",
    "admitted",
    "confessed",
    "mentioned",
];

/// The student unless the phrase names someone else: by its own pronoun ("kill herself"), by
/// the nearest person before it in the clause ("my roommate wants to die"), by a person
/// right after it ("a suicidal friend"), or by reported first-person speech
/// ("she said i want to die").
fn subject_of(hit: &Hit<'_>, tokens: &[String]) -> Subject {
    // For harm and danger the person after the phrase is the victim, not the subject.
    let names_victim = matches!(
        hit.rule.signal,
        CrisisSignal::HarmToOthers | CrisisSignal::DangerOrAbuse
    );
    if !names_victim
        && tokens
            .get(hit.span.end)
            .is_some_and(|next| is_other_person_noun(next))
    {
        return Subject::SomeoneElse;
    }
    if hit.rule.signal == CrisisSignal::DangerOrAbuse && hit.span.person_token.is_none() {
        return victim_of_danger(tokens, hit.span.start);
    }
    let named = hit
        .span
        .person_token
        .and_then(|index| person_of(&tokens[index]).map(|p| (index, p)))
        .or_else(|| nearest_person_before(tokens, hit.span.start, 8));
    match named {
        Some((_, Subject::SomeoneElse)) => Subject::SomeoneElse,
        Some((index, Subject::Student)) if reported_by_someone_else(tokens, index) => {
            Subject::SomeoneElse
        }
        _ => Subject::Student,
    }
}

/// Someone other than the student is named before the phrase, in the same clause.
fn has_agent(tokens: &[String], start: usize) -> bool {
    (start.saturating_sub(8)..start)
        .rev()
        .take_while(|&i| tokens[i] != BOUNDARY)
        .any(|i| person_of(&tokens[i]) == Some(Subject::SomeoneElse))
}

/// "my boyfriend is abusive" is about the student; "her boyfriend is abusive" and "my
/// friend's boyfriend is abusive" are about someone else. The person named before a danger
/// phrase is the one who hurts, so the victim is whoever that person belongs to.
fn victim_of_danger(tokens: &[String], start: usize) -> Subject {
    for i in (start.saturating_sub(8)..start).rev() {
        let token = tokens[i].as_str();
        if token == BOUNDARY {
            break;
        }
        if is_other_person_noun(token) {
            if i > 0 && is_other_person_noun(&tokens[i - 1]) {
                return Subject::SomeoneElse;
            }
            continue;
        }
        if let Some(subject) = person_of(token) {
            return subject;
        }
    }
    Subject::Student
}

fn nearest_person_before(
    tokens: &[String],
    start: usize,
    window: usize,
) -> Option<(usize, Subject)> {
    (start.saturating_sub(window)..start)
        .rev()
        .take_while(|&i| tokens[i] != BOUNDARY)
        .find_map(|i| person_of(&tokens[i]).map(|p| (i, p)))
}

/// "she said i want to die", "he texted me that i would be better off": the first person is
/// someone else speaking.
fn reported_by_someone_else(tokens: &[String], first_person: usize) -> bool {
    // Anchor on the "i" that starts the reported clause ("she said i will kill myself").
    let anchor = (first_person.saturating_sub(5)..=first_person)
        .rev()
        .take_while(|&i| tokens[i] != BOUNDARY)
        .find(|&i| tokens[i] == "i")
        .unwrap_or(first_person);
    let mut i = anchor;
    while i > 0 && matches!(tokens[i - 1].as_str(), "that" | "like" | "me" | "to") {
        i -= 1;
    }
    if i == 0 || !REPORTING_VERBS.contains(&tokens[i - 1].as_str()) {
        return false;
    }
    matches!(
        nearest_person_before(tokens, i - 1, 6),
        Some((_, Subject::SomeoneElse))
    )
}

// ---------------------------------------------------------------------------------------------
// Negation.

/// A negator shortly before the phrase, in the same clause: "i am not going to kill myself",
/// "i have never wanted to die". Not when the negation governs something else:
/// "i can't stop thinking about killing myself", "i don't know, i want to die".
fn is_negated(tokens: &[String], start: usize) -> bool {
    const WINDOW: usize = 5;
    const NEGATORS: &[&str] = &["not", "never", "no"];
    const CLAUSE_BREAKS: &[&str] = &[BOUNDARY, "but", "though", "although", "except", "yet"];
    // Verbs whose negation flips the meaning back: "can't stop", "not sure".
    const REVERSERS: &[&str] = &[
        "stop", "help", "resist", "sure", "know", "quit", "deny", "lie", "shake", "escape",
    ];
    // Verbs that carry negation into the clause after them: "i don't think i want to die".
    const RAISERS: &[&str] = &[
        "think", "saying", "say", "mean", "believe", "feel", "like", "that",
    ];
    let mut between: Vec<&str> = Vec::new();
    for i in (start.saturating_sub(WINDOW)..start).rev() {
        let token = tokens[i].as_str();
        if CLAUSE_BREAKS.contains(&token) {
            return false;
        }
        if NEGATORS.contains(&token) {
            // Negative concord ("nobody would not care") is still one negative statement.
            let concord = (i.saturating_sub(2)..i)
                .any(|j| matches!(tokens[j].as_str(), "nobody" | "nothing" | "never" | "no"));
            if concord {
                return false;
            }
            if between.iter().any(|w| REVERSERS.contains(w)) {
                return false;
            }
            // A new subject between the negator and the phrase starts a new clause, unless
            // only a negation-raising verb sits before it.
            if let Some(pos) = between.iter().position(|w| is_subject_pronoun(w)) {
                let before_subject = &between[pos + 1..];
                return !before_subject.is_empty()
                    && before_subject.iter().all(|w| RAISERS.contains(w));
            }
            return true;
        }
        between.push(token);
    }
    false
}

fn is_subject_pronoun(token: &str) -> bool {
    matches!(token, "i" | "he" | "she" | "they" | "we" | "you")
}

// ---------------------------------------------------------------------------------------------
// Utterance-wide context: history, imminence, academic and quotation frames.

struct UtteranceContext {
    /// Told as something that happened before and is over ("in high school", "years ago").
    told_as_history: bool,
    /// About right now ("tonight", "right now", "goodbye"): raises third-party risk to crisis.
    imminent: bool,
    /// The student relates quoted text to themself ("i relate", "that is how i feel").
    relates_to_self: bool,
}

/// Words after a topic that make it a subject of study: "suicide rates", "suicide prevention".
const TOPIC_COMPOUNDS: &[&str] = &[
    "rate",
    "rates",
    "prevention",
    "awareness",
    "statistics",
    "stats",
    "risk",
    "hotline",
    "lifeline",
    "research",
    "epidemic",
    "trends",
    "data",
    "squad",
    "bombers",
    "bombing",
    "bomber",
    "training",
    "survivors",
    "loss",
    "education",
    "services",
    "programs",
    "program",
];

/// Things that are about a topic: "a paper on suicide", "a song about self harm".
const TOPIC_CARRIERS: &[&str] = &[
    "study",
    "studying",
    "studied",
    "studies",
    "class",
    "course",
    "lecture",
    "paper",
    "essay",
    "research",
    "researching",
    "chapter",
    "unit",
    "module",
    "assignment",
    "presentation",
    "project",
    "report",
    "thesis",
    "seminar",
    "article",
    "articles",
    "documentary",
    "textbook",
    "reading",
    "writing",
    "covering",
    "covered",
    "learning",
    "learned",
    "debate",
    "survey",
    "song",
    "songs",
    "lyrics",
    "album",
    "movie",
    "movies",
    "film",
    "book",
    "novel",
    "poem",
    "show",
    "series",
    "episode",
    "play",
    "podcast",
    "video",
    "character",
    "scene",
];

/// Words that link a carrier to its topic ("on", "about"); studying verbs need none.
const TOPIC_LINKS: &[&str] = &[
    "on",
    "about",
    "of",
    "called",
    "titled",
    "named",
    "regarding",
    "covering",
    "like",
];
const STUDY_VERBS: &[&str] = &[
    "studying",
    "researching",
    "covering",
    "covered",
    "reading",
    "writing",
    "studied",
    "learning",
    "learned",
];

/// Fields of study named after a topic: "suicide in sociology".
const FIELDS: &[&str] = &[
    "sociology",
    "psychology",
    "psych",
    "anthropology",
    "textbook",
    "epidemiology",
    "criminology",
];

const MEDIA_WORDS: &[&str] = &[
    "song",
    "songs",
    "lyric",
    "lyrics",
    "chorus",
    "verse",
    "album",
    "movie",
    "movies",
    "film",
    "book",
    "novel",
    "poem",
    "poetry",
    "character",
    "episode",
    "show",
    "series",
    "play",
    "podcast",
    "rapper",
    "singer",
    "band",
    "video",
    "anime",
    "meme",
    "tiktok",
    "quote",
    "hamlet",
    "scene",
];

/// Cues that the words after them are quoted: "the chorus goes i want to die".
const SPEECH_CUES: &[&str] = &[
    "goes", "say", "says", "said", "sings", "sang", "called", "titled", "named", "line", "lyric",
    "lyrics", "quote",
];
/// Cues that the words after them describe the work: "a film about a guy who wants to die".
const DESCRIPTION_CUES: &[&str] = &["about", "where", "who"];

impl UtteranceContext {
    fn read(tokens: &[String]) -> UtteranceContext {
        let has = |phrase: &[&str]| {
            tokens
                .windows(phrase.len())
                .any(|w| w.iter().zip(phrase).all(|(a, b)| a == b))
        };
        const HISTORY: &[&[&str]] = &[
            &["used", "to"],
            &["years", "ago"],
            &["year", "ago"],
            &["months", "ago"],
            &["in", "high", "school"],
            &["in", "middle", "school"],
            &["when", "i", "was"],
            &["as", "a", "kid"],
            &["as", "a", "teenager"],
            &["in", "the", "past"],
            &["long", "time", "ago"],
            &["back", "in"],
            &["last", "year"],
            &["a", "while", "ago"],
            &["growing", "up"],
        ];
        const PRESENT: &[&[&str]] = &[
            &["now", "i"],
            &["right", "now"],
            &["again"],
            &["lately"],
            &["still"],
            &["tonight"],
            &["today"],
            &["these", "days"],
            &["recently"],
            &["this", "week"],
            &["anymore"],
            &["every", "day"],
            &["starting"],
            &["coming", "back"],
            &["yesterday"],
            &["last", "night"],
        ];
        const IMMINENT: &[&[&str]] = &[
            &["tonight"],
            &["right", "now"],
            &["today"],
            &["goodbye"],
            &["not", "answering"],
            &["not", "responding"],
            &["not", "wake", "up"],
            &["not", "breathing"],
            &["unconscious"],
            &["passed", "out"],
            &["on", "the", "roof"],
            &["this", "weekend"],
        ];
        const SELF_RELATION: &[&[&str]] = &[
            &["relate"],
            &["relatable"],
            &["how", "i", "feel"],
            &["me", "too"],
            &["that", "is", "me"],
            &["same", "way"],
            &["feel", "like", "that"],
            &["makes", "me"],
            &["made", "me"],
            &["i", "feel", "the", "same"],
        ];
        UtteranceContext {
            told_as_history: HISTORY.iter().any(|p| has(p)) && !PRESENT.iter().any(|p| has(p)),
            imminent: IMMINENT.iter().any(|p| has(p)),
            relates_to_self: SELF_RELATION.iter().any(|p| has(p)),
        }
    }

    /// A topic discussed as a subject ("suicide rates", "a paper on self harm", "suicide in
    /// sociology"), or any phrase quoted from or described in a song, film or book ("the
    /// chorus goes i want to die", "a movie about a guy who wants to kill himself").
    fn is_framed(&self, hit: &Hit<'_>, tokens: &[String]) -> bool {
        let (start, end) = (hit.span.start, hit.span.end);
        let word = |i: usize| tokens.get(i).map(String::as_str).unwrap_or(BOUNDARY);
        if hit.rule.framable {
            if TOPIC_COMPOUNDS.contains(&word(end)) {
                return true;
            }
            if (end..end + 3)
                .take_while(|&i| word(i) != BOUNDARY)
                .any(|i| FIELDS.contains(&word(i)))
            {
                return true;
            }
            let before: Vec<usize> = (start.saturating_sub(4)..start)
                .rev()
                .take_while(|&i| word(i) != BOUNDARY)
                .collect();
            let carried = before.iter().any(|&c| {
                TOPIC_CARRIERS.contains(&word(c))
                    && (STUDY_VERBS.contains(&word(c))
                        || (c + 1..start).any(|i| TOPIC_LINKS.contains(&word(i))))
            });
            if carried {
                return true;
            }
        }
        if self.relates_to_self {
            return false;
        }
        (start.saturating_sub(10)..start).any(|m| {
            MEDIA_WORDS.contains(&word(m))
                && (m + 1..=start).any(|c| {
                    SPEECH_CUES.contains(&word(c))
                        || (DESCRIPTION_CUES.contains(&word(c))
                            && !(c + 1..start).any(|i| matches!(word(i), "i" | "me" | "my")))
                })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Follow-up turns.

/// "yeah", "sometimes", "i have", "kind of": an answer to the safety question the counselor
/// was told to ask.
fn is_affirmation(tokens: &[String]) -> bool {
    let words: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| *t != BOUNDARY)
        .collect();
    if words.is_empty() || words.len() > 6 {
        return false;
    }
    const DENIALS: &[&str] = &[
        "no", "not", "never", "nope", "nah", "fine", "okay", "good", "better", "safe", "kidding",
        "joking", "joke",
    ];
    if words.iter().any(|w| DENIALS.contains(w)) {
        return false;
    }
    const OPENERS: &[&str] = &[
        "yes",
        "yeah",
        "yep",
        "yup",
        "yea",
        "ya",
        "mhm",
        "huh",
        "sometimes",
        "maybe",
        "kind",
        "sort",
        "definitely",
        "probably",
        "constantly",
        "lately",
        "often",
        "always",
    ];
    const ANSWERS: &[&[&str]] = &[
        &["i", "do"],
        &["i", "have"],
        &["i", "am"],
        &["i", "think", "so"],
        &["i", "guess"],
        &["a", "little"],
        &["a", "lot"],
        &["all", "the", "time"],
        &["every", "day"],
        &["pretty", "much"],
        &["i", "have", "been"],
        &["i", "was"],
    ];
    OPENERS.contains(&words[0]) || ANSWERS.iter().any(|a| words.starts_with(a))
}

/// A method, a means or a time, said right after talk of dying: "tonight", "i have pills".
fn mentions_plan_or_time(tokens: &[String]) -> bool {
    const WORDS: &[&str] = &[
        "tonight", "tomorrow", "weekend", "pills", "pill", "rope", "gun", "guns", "bridge",
        "razor", "razors", "blade", "blades", "knife", "plan", "note", "overdose", "roof", "soon",
        "date",
    ];
    tokens.len() <= 14 && tokens.iter().any(|t| WORDS.contains(&t.as_str()))
}

//! A tiny phrase-pattern language over normalised tokens.
//!
//! A pattern is a space-separated list of elements:
//! - `word` matches that token; `a|b|c` matches any of them;
//! - `@class` (alone or inside alternatives) matches any word of a named class (see [`CLASSES`]);
//! - a trailing `?` makes the element optional;
//! - a leading `^` marks the token that says who the phrase is about ("kill ^@refl");
//! - `*N` skips up to N tokens, never across a clause boundary (`@clause` matches one);
//! - `( a b / c )` matches either sequence (`)?` makes the group optional); groups are
//!   expanded into several plain patterns when compiled, and do not nest.
//!
//! The first element must be a required word so that patterns can be indexed by it.

use crate::normalize::BOUNDARY;

/// Word classes shared by the rules, so inflections and synonyms are listed once.
pub(crate) const CLASSES: &[(&str, &str)] = &[
    ("want", "want wants wanted wanting wish wishes wished wishing"),
    ("die", "die dies dying died dead"),
    ("kill", "kill kills killing killed"),
    ("end", "end ends ending ended"),
    ("take", "take takes taking took"),
    ("hurt", "hurt hurts hurting harm harms harming harmed injure injuring injured"),
    ("cut", "cut cuts cutting"),
    ("burn", "burn burns burning burned burnt"),
    ("be", "am is are was were be been being"),
    ("feel", "feel feels feeling felt"),
    ("think", "think thinks thinking thought thoughts"),
    ("plan", "plan plans planning planned"),
    ("give", "give gives giving gave given"),
    ("look", "look looks looked looking google googled googling search searched searching research researched researching read reading"),
    ("pills", "pills pill meds medication medications tablets painkillers antidepressants prescription tylenol ibuprofen advil acetaminophen paracetamol aspirin benadryl prozac zoloft lexapro celexa paxil effexor cymbalta wellbutrin xanax klonopin ativan valium adderall ritalin ambien seroquel abilify lamictal sertraline fluoxetine escitalopram citalopram bupropion trazodone quetiapine gabapentin oxycodone percocet vicodin codeine tramadol"),
    ("refl", "myself yourself ourselves himself herself themselves themself"),
    ("poss", "my your our his her their"),
    ("obj", "me us him her them"),
    ("people", "someone somebody people everyone everybody him her them others"),
    // A clause break where the text had punctuation: a gap never crosses one, so a pattern
    // that spans two clauses ("... laughing at me, i have a plan") names it.
    ("clause", "|"),
    ("kin", "friend friends roommate roommates suitemate brother sister mom mother dad father parents stepdad stepmom stepfather stepmother cousin boyfriend girlfriend partner ex classmate teammate husband wife son daughter aunt uncle grandma grandmother grandpa grandfather bestie coworker neighbor"),
];

fn class_words(name: &str) -> &'static str {
    CLASSES
        .iter()
        .find(|(class, _)| *class == name)
        .map(|(_, words)| *words)
        .unwrap_or_else(|| panic!("unknown word class @{name}"))
}

#[derive(Debug)]
enum Element {
    Word {
        alternatives: Vec<Box<str>>,
        optional: bool,
        names_person: bool,
    },
    Gap(usize),
}

#[derive(Debug)]
pub(crate) struct Pattern {
    elements: Vec<Element>,
}

/// Where a pattern matched: tokens `start..end`, and the index of the `^` token if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub person_token: Option<usize>,
}

impl Span {
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl Pattern {
    /// Compiles `source` into one pattern per expansion of its groups; panics on a malformed
    /// pattern, since patterns are fixed text in this crate and a unit test compiles them all.
    pub fn compile_all(source: &str) -> Vec<Pattern> {
        expand_groups(source)
            .iter()
            .map(|plain| Pattern::compile(plain))
            .collect()
    }

    fn compile(source: &str) -> Pattern {
        let mut elements = Vec::new();
        for raw in source.split_whitespace() {
            if let Some(count) = raw.strip_prefix('*') {
                let count = count
                    .parse()
                    .unwrap_or_else(|_| panic!("bad gap {raw:?} in pattern {source:?}"));
                elements.push(Element::Gap(count));
                continue;
            }
            let (names_person, raw) = match raw.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let (optional, raw) = match raw.strip_suffix('?') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let mut alternatives: Vec<Box<str>> = Vec::new();
            for alternative in raw.split('|') {
                match alternative.strip_prefix('@') {
                    Some(class) => {
                        alternatives.extend(class_words(class).split_whitespace().map(Box::from))
                    }
                    None => alternatives.push(Box::from(alternative)),
                }
            }
            assert!(
                alternatives.iter().all(|a| !a.is_empty()),
                "empty alternative in pattern {source:?}"
            );
            elements.push(Element::Word {
                alternatives,
                optional,
                names_person,
            });
        }
        match elements.first() {
            Some(Element::Word {
                optional: false, ..
            }) => {}
            _ => panic!("pattern {source:?} must start with a required word"),
        }
        assert!(
            !matches!(elements.last(), Some(Element::Gap(_))),
            "pattern {source:?} must not end with a gap"
        );
        Pattern { elements }
    }

    /// The words a match can start with, for indexing.
    pub fn first_words(&self) -> &[Box<str>] {
        match &self.elements[0] {
            Element::Word { alternatives, .. } => alternatives,
            Element::Gap(_) => unreachable!("checked in compile"),
        }
    }

    /// Matches starting exactly at `start`; the shortest gaps win.
    pub fn match_at(&self, tokens: &[String], start: usize) -> Option<Span> {
        let mut person_token = None;
        let end = match_from(&self.elements, tokens, start, &mut person_token)?;
        Some(Span {
            start,
            end,
            person_token,
        })
    }

    /// Every match in `tokens`.
    #[cfg(test)]
    pub fn find_all<'a>(&'a self, tokens: &'a [String]) -> impl Iterator<Item = Span> + 'a {
        (0..tokens.len()).filter_map(move |start| self.match_at(tokens, start))
    }
}

/// "a ( b c / d )? e" becomes "a b c e", "a d e" and "a e".
fn expand_groups(source: &str) -> Vec<String> {
    let Some(open) = source.find('(') else {
        assert!(
            !source.contains(')') && !source.contains('/'),
            "unbalanced group in {source:?}"
        );
        return vec![source.to_owned()];
    };
    let close = open
        + source[open..]
            .find(')')
            .unwrap_or_else(|| panic!("unclosed group in {source:?}"));
    let inner = &source[open + 1..close];
    assert!(!inner.contains('('), "nested group in {source:?}");
    let (optional, after) = match source[close + 1..].strip_prefix('?') {
        Some(after) => (true, after),
        None => (false, &source[close + 1..]),
    };
    let mut choices: Vec<&str> = inner.split('/').map(str::trim).collect();
    if optional {
        choices.push("");
    }
    choices
        .into_iter()
        .flat_map(|choice| expand_groups(&format!("{} {choice} {after}", &source[..open])))
        .map(|expanded| expanded.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn match_from(
    elements: &[Element],
    tokens: &[String],
    pos: usize,
    person_token: &mut Option<usize>,
) -> Option<usize> {
    let Some((element, rest)) = elements.split_first() else {
        return Some(pos);
    };
    match element {
        Element::Word {
            alternatives,
            optional,
            names_person,
        } => {
            if let Some(token) = tokens.get(pos) {
                if alternatives.iter().any(|a| **a == **token) {
                    if let Some(end) = match_from(rest, tokens, pos + 1, person_token) {
                        if *names_person {
                            *person_token = Some(pos);
                        }
                        return Some(end);
                    }
                }
            }
            if *optional {
                match_from(rest, tokens, pos, person_token)
            } else {
                None
            }
        }
        Element::Gap(max) => {
            for skipped in 0..=*max {
                if skipped > 0 {
                    let crossed = pos + skipped - 1;
                    if tokens.get(crossed).is_none_or(|t| t == BOUNDARY) {
                        return None;
                    }
                }
                if let Some(end) = match_from(rest, tokens, pos + skipped, person_token) {
                    return Some(end);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;

    fn find(pattern: &str, text: &str) -> Option<Span> {
        let tokens = normalize(text);
        let patterns = Pattern::compile_all(pattern);
        let first = patterns.iter().find_map(|p| p.find_all(&tokens).next());
        first
    }

    #[test]
    fn classes_alternatives_and_optional_words() {
        assert!(find("@want to @die", "she wants to die").is_some());
        assert!(find("take ^@poss own? life", "take my own life").is_some());
        assert!(find("take ^@poss own? life", "take my life").is_some());
        assert!(find("take ^@poss own? life", "take a life").is_none());
    }

    #[test]
    fn groups_are_alternative_sequences() {
        let pattern = "better off if ^i @be ( gone / not here / never born )";
        assert!(find(pattern, "they would be better off if i was not here").is_some());
        assert!(find(pattern, "better off if i was never born").is_some());
        assert!(find(pattern, "better off if i was here").is_none());
        assert!(find(
            "say goodbye ( to everyone )? forever",
            "say goodbye forever"
        )
        .is_some());
    }

    #[test]
    fn person_token_is_reported() {
        let span = find("@kill ^@refl", "he might kill himself").unwrap();
        assert_eq!(span.person_token, Some(span.start + 1));
    }

    #[test]
    fn gaps_stop_at_clause_boundaries() {
        assert!(find("not *3 @want to live", "i do not think i want to live").is_some());
        assert!(find("not *3 @want to live", "not that. i want to live").is_none());
    }
}

//! The first-visit notice: what counsel records, who can see it, how long it is kept, that the
//! counselor is an AI, and what happens in a crisis, worded from how this server is configured.
//!
//! A student accepts it once per account. Its version is a digest of the words shown, so when the
//! words change (a new retention period, staff alerts switched on, cloud services configured)
//! every student is asked again: what they accepted is always what they were told.

use sha2::{Digest, Sha256};
use store::NoticeVersion;

/// What the wording depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeFacts {
    /// `TRANSCRIPT_RETENTION_DAYS`.
    pub retention_days: u32,
    /// Whether staff on duty are alerted to a crisis as it happens (a staff account that may
    /// sign in, or a crisis webhook).
    pub staff_alerts: bool,
    /// Whether speech recognition, the language model and the voice all run inside counsel
    /// (the offline models), so no words leave this server.
    pub all_in_process: bool,
}

/// One part of the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSection {
    pub heading: &'static str,
    pub text: String,
}

/// The notice as a student sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub version: NoticeVersion,
    pub sections: Vec<NoticeSection>,
}

impl Notice {
    pub fn for_facts(facts: NoticeFacts) -> Notice {
        let days = facts.retention_days;
        let services = if facts.all_in_process {
            "Speech recognition and the counselor's replies run on this server: your words are not \
             sent to any outside service."
        } else {
            "To understand you and answer, your words pass through the speech and language \
             services your college has set up for counsel; they are not kept there by counsel."
        };
        let crisis_alerts = if facts.staff_alerts {
            "Counseling staff on duty are told at once and can read the words that raised the \
             concern, so that a person can reach out to you; every time they look, it is recorded."
        } else {
            "The words that raised the concern are kept for review by your college's counseling \
             staff; every time they look, it is recorded."
        };
        let sections = vec![
            NoticeSection {
                heading: "Your counselor is an AI",
                text: "The counselor you talk to is a computer program, not a person and not a \
                       licensed therapist. It can misunderstand and make mistakes. For a \
                       diagnosis, medication or an emergency, talk to a person."
                    .to_owned(),
            },
            NoticeSection {
                heading: "What is recorded",
                text: format!(
                    "What you and the counselor say is written down as you talk and saved as the \
                     session's transcript, with its date, length and counselor. Your voice and \
                     video are not recorded. If you rate a session, your rating and comment are \
                     saved with it. {services}"
                ),
            },
            NoticeSection {
                heading: "Who can see it",
                text: "Only you can read your transcripts, in My sessions, where you can also \
                       download or delete them. They are stored encrypted, and every time one is \
                       opened, downloaded or deleted it is written to an audit log."
                    .to_owned(),
            },
            NoticeSection {
                heading: "How long it is kept",
                text: format!(
                    "Transcripts and rating comments are erased {days} days after the session. \
                     The date, length and counselor of a session are kept. You can delete a \
                     session yourself at any time."
                ),
            },
            NoticeSection {
                heading: "If you are in crisis",
                text: format!(
                    "If something you say sounds like you may be in danger, the counselor gives \
                     you crisis resources at once (call or text 988; call 911 in an emergency) \
                     and keeps them on screen. {crisis_alerts}"
                ),
            },
        ];
        Notice {
            version: version_of(&sections),
            sections,
        }
    }
}

/// The first 16 hex digits of the SHA-256 of every heading and text: a new wording is a new
/// version, the same wording the same version on every node.
fn version_of(sections: &[NoticeSection]) -> NoticeVersion {
    let mut digest = Sha256::new();
    for section in sections {
        digest.update(section.heading.as_bytes());
        digest.update([0]);
        digest.update(section.text.as_bytes());
        digest.update([0]);
    }
    let hex = hex::encode(digest.finalize());
    NoticeVersion::parse(&hex[..16]).expect("16 hex digits are a notice version")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTS: NoticeFacts = NoticeFacts {
        retention_days: 90,
        staff_alerts: true,
        all_in_process: true,
    };

    fn all_text(notice: &Notice) -> String {
        notice
            .sections
            .iter()
            .map(|s| format!("{}\n{}\n", s.heading, s.text))
            .collect()
    }

    #[test]
    fn the_notice_says_what_a_student_must_know() {
        let text = all_text(&Notice::for_facts(FACTS));
        for needed in [
            "AI",
            "not a person",
            "transcript",
            "Only you",
            "erased 90 days",
            "988",
            "911",
            "staff on duty are told at once",
        ] {
            assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
        }
    }

    #[test]
    fn what_the_notice_depends_on_changes_its_words_and_its_version() {
        let base = Notice::for_facts(FACTS);
        assert_eq!(
            base,
            Notice::for_facts(FACTS),
            "the same facts, the same notice"
        );
        for changed in [
            NoticeFacts {
                retention_days: 30,
                ..FACTS
            },
            NoticeFacts {
                staff_alerts: false,
                ..FACTS
            },
            NoticeFacts {
                all_in_process: false,
                ..FACTS
            },
        ] {
            let other = Notice::for_facts(changed);
            assert_ne!(all_text(&other), all_text(&base), "{changed:?}");
            assert_ne!(other.version, base.version, "{changed:?}");
        }
        let quiet = all_text(&Notice::for_facts(NoticeFacts {
            staff_alerts: false,
            ..FACTS
        }));
        assert!(
            !quiet.contains("told at once"),
            "no alert is promised: {quiet}"
        );
        assert!(quiet.contains("kept for review"));
    }
}

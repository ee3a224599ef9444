//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use utoipa::openapi::path::Operation;
use utoipa::openapi::RefOr;

use crate::error::{error_table_markdown, ErrorBody, ErrorKind};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "counsel API",
        description = "AI counseling sessions for college students, by voice and video. Every route is served under `/api/v1` and, identically, under `/api`.",
    ),
    // The transcript WebSocket is served outside the API prefix, so it is listed here.
    paths(crate::routes::live::transcript_socket),
    components(schemas(ErrorBody)),
    modifiers(&Security, &ErrorCodes),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE_NAME))),
        );
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Lists every error code in the document's description, where client authors look first.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let table = format!(
            "\n\nEvery error body is `{{\"detail\": string, \"code\": string}}`. Codes:\n\n{}",
            error_table_markdown()
        );
        let description = openapi.info.description.get_or_insert_with(String::new);
        description.push_str(&table);
    }
}

/// The error codes a response's description names, each with the status written before it
/// (`401 AUTH_004`) if any: upper-case words holding an underscore, like `SESSION_001`.
pub fn named_codes(description: &str) -> Vec<(Option<u16>, &str)> {
    let words: Vec<&str> = description
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut named = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let code_like = word.contains('_')
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if code_like {
            let status = i
                .checked_sub(1)
                .and_then(|j| words[j].parse::<u16>().ok())
                .filter(|s| (100..600).contains(s));
            named.push((status, *word));
        }
    }
    named
}

/// Every operation of the document.
fn operations(openapi: &mut OpenApiDoc) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

/// Gives each error response the example of the code its description names, so a 401 is not
/// shown with another status's code.
pub fn add_error_examples(openapi: &mut OpenApiDoc) {
    for operation in operations(openapi) {
        for (status, response) in operation.responses.responses.iter_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            let kind = named_codes(&response.description)
                .into_iter()
                .filter(|(written, _)| written.is_none())
                .filter_map(|(_, code)| ErrorKind::from_code(code))
                .find(|kind| kind.spec().status.as_str() == status);
            let Some(kind) = kind else { continue };
            for content in response.content.values_mut() {
                if let RefOr::T(content) = content {
                    content.example = Some(serde_json::json!({
                        "detail": kind.spec().meaning,
                        "code": kind.spec().code,
                    }));
                }
            }
        }
    }
}

/// The base document (info, security, shared schemas) that the routers' paths are added to.
pub fn base() -> OpenApiDoc {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_with_the_status_written_before_them() {
        assert_eq!(
            named_codes("Signed out (later requests get 401 AUTH_004); no UUID, JSON or WebRTC"),
            vec![(Some(401), "AUTH_004")]
        );
        assert_eq!(
            named_codes("No such event (CRISIS_001); else (NOT_FOUND)"),
            vec![(None, "CRISIS_001"), (None, "NOT_FOUND")]
        );
    }

    /// Every code a route's documentation names exists, with the status it is documented under.
    #[test]
    fn every_code_the_document_names_is_answered_with_that_status() {
        let doc = serde_json::to_value(crate::app::openapi_document()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                for (status, response) in responses {
                    let description = response["description"].as_str().unwrap_or_default();
                    for (written, code) in named_codes(description) {
                        let kind = ErrorKind::from_code(code).unwrap_or_else(|| {
                            panic!("{method} {path} {status} names {code}, which no error answers")
                        });
                        let expected = written.map(|s| s.to_string()).unwrap_or(status.clone());
                        assert_eq!(
                            kind.spec().status.as_str(),
                            expected,
                            "{method} {path} documents {code} under {expected}"
                        );
                        checked += 1;
                    }
                    let example = &response["content"]["application/json"]["example"]["code"];
                    if let Some(code) = example.as_str() {
                        let kind = ErrorKind::from_code(code).expect("example code exists");
                        assert_eq!(kind.spec().status.as_str(), status, "{method} {path}");
                    }
                }
            }
        }
        assert!(checked > 20, "only {checked} codes named in the document");
    }

    #[test]
    fn the_description_lists_every_code() {
        let doc = crate::app::openapi_document();
        let description = doc.info.description.unwrap();
        for kind in ErrorKind::ALL {
            let spec = kind.spec();
            let row = format!("| `{}` | {} |", spec.code, spec.status.as_u16());
            assert!(description.contains(&row), "{row} missing");
        }
    }
}

//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ERROR_CODES};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "counsel API",
        description = "AI counseling sessions for college students, by voice and video. Every route is served under `/api/v1` and, identically, under `/api`.",
    ),
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
        let mut table = String::from("\n\nEvery error body is `{\"detail\": string, \"code\": string}`. Codes:\n\n| code | status | meaning |\n|---|---|---|\n");
        for (code, status, meaning) in ERROR_CODES {
            table.push_str(&format!("| `{code}` | {status} | {meaning} |\n"));
        }
        let description = openapi.info.description.get_or_insert_with(String::new);
        description.push_str(&table);
    }
}

/// The base document (info, security, shared schemas) that the routers' paths are added to.
pub fn base() -> OpenApiDoc {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

//! The student web app: four static files compiled into the binary, so one executable serves
//! everything (the icons are inline SVG drawn by `icons.js`, so no image, emoji or icon font is
//! fetched or needed). The app itself only talks to the public API.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");
const ICONS_JS: &str = include_str!("../web/icons.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/static/icons.js",
            get(|| async { asset("text/javascript; charset=utf-8", ICONS_JS) }),
        )
        .route(
            "/static/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters that only an emoji font draws (a box on a default Debian desktop or a kiosk),
    /// written literally or as a JavaScript escape.
    fn emoji_in(asset: &str) -> Vec<String> {
        let literal = asset
            .chars()
            .filter(|c| {
                matches!(u32::from(*c), 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE0F)
            })
            .map(String::from);
        let escaped = asset
            .match_indices("\\u{")
            .map(|(i, _)| asset[i..].chars().take(10).collect());
        literal.chain(escaped).collect()
    }

    #[test]
    fn nothing_in_the_app_needs_an_emoji_font() {
        for (name, asset) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("icons.js", ICONS_JS),
            ("style.css", STYLE_CSS),
        ] {
            assert_eq!(emoji_in(asset), Vec::<String>::new(), "{name}");
        }
        assert!(
            !emoji_in("icon: \"\\u{1F49A}\"").is_empty(),
            "the check sees an escape"
        );
        assert!(!emoji_in("\u{2B50}").is_empty(), "the check sees a star");
    }

    /// Every counselor's icon (the seeded `icon_name`s) is drawn, decorative, and the app uses
    /// the drawings.
    #[test]
    fn every_counselor_has_a_drawn_icon() {
        for (category, _, icon, _) in store::DEFAULT_CATEGORIES {
            assert!(
                ICONS_JS.contains(&format!("\n  \"{icon}\": ["))
                    || ICONS_JS.contains(&format!("\n  {icon}: [")),
                "{category}: no drawing for {icon:?}"
            );
        }
        assert!(ICONS_JS.contains("\"aria-hidden\": \"true\""));
        assert!(APP_JS.contains("import { counselorIcon } from \"./icons.js\""));
    }
}

//! Headers that tell browsers to be strict with everything this server sends.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// What the pages this server sends may load: their own scripts only (the web app and the API
/// docs have no inline script or handler), so injected markup cannot run; the app's own API and
/// transcript sockets; nothing framed. Styles stay `'unsafe-inline'`: the web app and the API
/// docs set `style` attributes, and a style cannot run code.
const POLICY_BEFORE_CONNECT: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'";
const POLICY_AFTER_CONNECT: &str =
    "; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/// The policy for a request to `host` (its `Host` header). `'self'` covers same-origin
/// WebSockets only in browsers that implement CSP Level 3, so the page's own `ws://` and `wss://`
/// origin is named too; a `Host` that is not a plain host name or address adds nothing.
fn content_security_policy(host: Option<&str>) -> HeaderValue {
    let sockets = host
        .filter(|host| is_plain_host(host))
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{POLICY_BEFORE_CONNECT}{sockets}{POLICY_AFTER_CONNECT}"
    ))
    .expect("the policy is plain ASCII")
}

/// `name`, `name:port`, `1.2.3.4:port` or `[::1]:port`: nothing that could end a CSP source or
/// directive (spaces, `;`, `,`, quotes, wildcards, paths).
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

pub async fn security_headers(request: Request, next: Next) -> Response {
    // TLS ends at the proxy in front of us; it says whether the client used https.
    let over_https = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let policy = content_security_policy(
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    );
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    if over_https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// For responses that carry transcript text or personal data (session history, a transcript and
/// its download, the crisis review queue, tokens, the signed-in account): no browser, proxy or
/// shared cache may keep a copy, so a shared campus computer's cache or back button shows nothing.
pub async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_may_open_sockets_to_its_own_host_only() {
        let policy = content_security_policy(Some("counsel.example.edu:8443"));
        let policy = policy.to_str().unwrap();
        assert!(policy.contains(
            "connect-src 'self' ws://counsel.example.edu:8443 wss://counsel.example.edu:8443;"
        ));
        assert!(policy.contains("script-src 'self';"));
    }

    #[test]
    fn an_odd_host_header_cannot_add_sources_or_directives() {
        for host in [
            "evil.example; script-src *",
            "a.example wss://evil.example",
            "*",
            "a.example/path",
            "",
        ] {
            let policy = content_security_policy(Some(host));
            assert!(
                policy
                    .to_str()
                    .unwrap()
                    .contains("connect-src 'self'; frame-ancestors"),
                "{host:?}"
            );
        }
        assert!(content_security_policy(None)
            .to_str()
            .unwrap()
            .contains("connect-src 'self'; "));
        assert!(content_security_policy(Some("[::1]:8000"))
            .to_str()
            .unwrap()
            .contains("ws://[::1]:8000 wss://[::1]:8000"));
    }
}

//! Plumbing the cloud adapters share: TLS, WebSocket connects, HTTP status mapping, SSE
//! decoding and time-limited streaming of server-sent events.
//!
//! Error messages built here carry at most an HTTP status and a short upstream error code
//! (such as `RESOURCE_EXHAUSTED`): never a key, a transcript or an upstream body.

use std::collections::VecDeque;
use std::sync::{Arc, Once};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::{BoxStream, ServiceError};

pub(crate) type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Installs aws-lc-rs as the process-wide rustls provider unless one is installed already: the
/// one place that chooses it, for the cloud clients and the WebRTC transport's DTLS alike.
/// Safe to call any number of times from anywhere. The adapters here pass their own TLS
/// configuration and do not depend on it, but other `wss://` clients in the same binary
/// panic without a process default once two rustls backends are linked.
pub fn install_default_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error only means another provider was installed first, which is just as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A rustls client configuration with an explicit provider and the webpki roots, so TLS
/// never depends on which providers happen to be linked.
fn tls_connector() -> Result<Connector, ServiceError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ServiceError::Unavailable {
            service: "tls",
            reason: "TLS configuration failed".into(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// Opens a WebSocket with the given headers within `timeout` (TCP, TLS and the HTTP upgrade
/// together). A refused upgrade maps its status like any HTTP error.
pub(crate) async fn connect_websocket(
    service: &'static str,
    url: &str,
    headers: &[(&'static str, String)],
    timeout: Duration,
) -> Result<WebSocket, ServiceError> {
    let mut request = url
        .into_client_request()
        .map_err(|_| ServiceError::Rejected {
            service,
            reason: "invalid WebSocket URL".into(),
        })?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|_| ServiceError::Rejected {
            service,
            reason: format!("invalid value for header {name}"),
        })?;
        request
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        true,
        Some(tls_connector()?),
    );
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(ServiceError::Timeout {
            service,
            after_ms: millis(timeout),
        }),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(websocket_connect_error(service, error)),
    }
}

fn websocket_connect_error(
    service: &'static str,
    error: tokio_tungstenite::tungstenite::Error,
) -> ServiceError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Http(response) => {
            let code = response.body().as_deref().and_then(error_code_in_body);
            error_for_status(service, response.status().as_u16(), code.as_deref())
        }
        Error::Url(_) => ServiceError::Rejected {
            service,
            reason: "invalid WebSocket URL".into(),
        },
        Error::Io(_) => ServiceError::Unavailable {
            service,
            reason: "could not connect".into(),
        },
        Error::Tls(_) => ServiceError::Unavailable {
            service,
            reason: "TLS handshake failed".into(),
        },
        _ => ServiceError::Protocol {
            service,
            reason: "WebSocket handshake failed".into(),
        },
    }
}

/// Maps an HTTP error status (plus an optional short upstream code) to a [`ServiceError`].
pub(crate) fn error_for_status(
    service: &'static str,
    status: u16,
    code: Option<&str>,
) -> ServiceError {
    let reason = match code.map(short_code).filter(|code| !code.is_empty()) {
        Some(code) => format!("HTTP {status} {code}"),
        None => format!("HTTP {status}"),
    };
    match status {
        429 => ServiceError::RateLimited { service },
        408 => ServiceError::Unavailable { service, reason },
        400..=499 => ServiceError::Rejected { service, reason },
        500..=599 => ServiceError::Unavailable { service, reason },
        _ => ServiceError::Protocol {
            service,
            reason: format!("unexpected HTTP status {status}"),
        },
    }
}

/// Keeps an upstream error code printable and short: letters, digits, `_ . -`, at most 48.
pub(crate) fn short_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(48)
        .collect()
}

/// The short code in a JSON error body, in the shapes Google (`error.status`), OpenAI
/// (`error.code` / `error.type`) and Cartesia (`error_code`) use. Messages are not taken: they
/// can quote the request.
pub(crate) fn error_code_in_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    // Google sometimes wraps the error object in a one-element array.
    let value = match value {
        serde_json::Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    error_code_in_value(&value)
}

pub(crate) fn error_code_in_value(value: &serde_json::Value) -> Option<String> {
    let error = value.get("error").unwrap_or(value);
    ["status", "code", "type", "error_code"]
        .iter()
        .filter_map(|key| error.get(*key))
        .find_map(|code| match code {
            serde_json::Value::String(text) if !text.is_empty() => Some(short_code(text)),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
}

/// The error a call gets when its provider's circuit breaker is open.
pub(crate) fn breaker_open(service: &'static str, open: resilience::BreakerOpen) -> ServiceError {
    ServiceError::Unavailable {
        service,
        reason: format!(
            "failing recently; retry in {} s",
            open.retry_after.as_secs()
        ),
    }
}

pub(crate) use domain::millis;

/// Largest error body read to find its code; the rest is not worth waiting for.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Time limits for one streamed HTTP reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// Until the response headers arrive.
    pub first_byte: Duration,
    /// Between two pieces of the body.
    pub between_chunks: Duration,
    /// For the whole exchange, from sending the request to the last byte.
    pub overall: Duration,
}

/// Sends `request` and waits for a successful response's headers. An error status is read
/// (briefly) for its short code and mapped to a [`ServiceError`].
pub(crate) async fn send_for_stream(
    service: &'static str,
    request: reqwest::RequestBuilder,
    limits: StreamLimits,
    deadline: Instant,
) -> Result<reqwest::Response, ServiceError> {
    let wait = limits
        .first_byte
        .min(deadline.saturating_duration_since(Instant::now()));
    let response = match tokio::time::timeout(wait, request.send()).await {
        Err(_) => {
            return Err(ServiceError::Timeout {
                service,
                after_ms: millis(wait),
            })
        }
        Ok(Err(error)) => return Err(request_error(service, &error, wait)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_limited(response, wait).await;
    let code = body.as_deref().and_then(error_code_in_body);
    Err(error_for_status(service, status.as_u16(), code.as_deref()))
}

fn request_error(service: &'static str, error: &reqwest::Error, wait: Duration) -> ServiceError {
    if error.is_timeout() {
        ServiceError::Timeout {
            service,
            after_ms: millis(wait),
        }
    } else if error.is_builder() {
        ServiceError::Rejected {
            service,
            reason: "invalid request (URL or header)".into(),
        }
    } else if error.is_connect() {
        ServiceError::Unavailable {
            service,
            reason: "could not connect".into(),
        }
    } else {
        ServiceError::Unavailable {
            service,
            reason: "request failed".into(),
        }
    }
}

/// Up to [`MAX_ERROR_BODY`] bytes of a body, or `None` if it does not come within `wait`.
async fn read_limited(response: reqwest::Response, wait: Duration) -> Option<Vec<u8>> {
    let mut body = response.bytes_stream();
    let mut collected = Vec::new();
    let read = async {
        while let Some(Ok(piece)) = body.next().await {
            let room = MAX_ERROR_BODY - collected.len();
            collected.extend_from_slice(&piece[..piece.len().min(room)]);
            if collected.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    Some(collected)
}

/// One item of a server-sent-events body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseItem {
    /// The joined `data:` lines of one event.
    Data(String),
    /// A line that is not an SSE field: some servers send a bare JSON error body.
    Stray(String),
}

/// Splits a byte stream into SSE events. Handles `\n` and `\r\n`, comments, multi-line data
/// and events split across network reads.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    pending: Vec<u8>,
    data: Option<String>,
}

/// A line longer than this is not a sane SSE record.
const MAX_SSE_LINE: usize = 1024 * 1024;

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseItem>, &'static str> {
        self.pending.extend_from_slice(bytes);
        let mut items = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line[..end], &mut items)?;
        }
        if self.pending.len() > MAX_SSE_LINE {
            return Err("event line too long");
        }
        Ok(items)
    }

    /// The body ended: whatever is left completes the last event.
    pub fn finish(&mut self) -> Result<Vec<SseItem>, &'static str> {
        let mut items = Vec::new();
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, &mut items)?;
        }
        if let Some(data) = self.data.take() {
            items.push(SseItem::Data(data));
        }
        Ok(items)
    }

    fn line(&mut self, raw: &[u8], items: &mut Vec<SseItem>) -> Result<(), &'static str> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| "event stream is not UTF-8")?;
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                items.push(SseItem::Data(data));
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" | "id" | "retry" => {}
            _ => items.push(SseItem::Stray(line.to_owned())),
        }
        Ok(())
    }
}

/// What a provider makes of one SSE event.
pub(crate) enum SseStep {
    Text(String),
    Nothing,
    /// The reply is complete (e.g. OpenAI's `[DONE]`); stop reading.
    Finished,
}

/// A provider's reading of its event stream.
pub(crate) trait SseProtocol: Send + 'static {
    fn on_event(&mut self, data: &str) -> Result<SseStep, ServiceError>;
    fn on_stray_line(&mut self, _line: &str) {}
    /// The body ended without [`SseStep::Finished`]: was the reply complete?
    fn on_end(&mut self) -> Result<(), ServiceError>;
}

struct SseReader<P> {
    service: &'static str,
    body: BoxStream<reqwest::Result<bytes::Bytes>>,
    decoder: SseDecoder,
    protocol: P,
    ready: VecDeque<Result<String, ServiceError>>,
    finished: bool,
    limits: StreamLimits,
    deadline: Instant,
}

/// Turns a successful streaming response into text deltas, enforcing the between-chunk and
/// overall limits. The first error ends the stream; dropping it closes the connection.
pub(crate) fn sse_text_stream<P: SseProtocol>(
    service: &'static str,
    response: reqwest::Response,
    protocol: P,
    limits: StreamLimits,
    deadline: Instant,
) -> BoxStream<Result<String, ServiceError>> {
    let reader = SseReader {
        service,
        body: Box::pin(response.bytes_stream()),
        decoder: SseDecoder::default(),
        protocol,
        ready: VecDeque::new(),
        finished: false,
        limits,
        deadline,
    };
    Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        loop {
            if let Some(item) = reader.ready.pop_front() {
                return Some((item, reader));
            }
            if reader.finished {
                return None;
            }
            reader.read_more().await;
        }
    }))
}

impl<P: SseProtocol> SseReader<P> {
    async fn read_more(&mut self) {
        let service = self.service;
        let until_deadline = self.deadline.saturating_duration_since(Instant::now());
        let (wait, limit) = if until_deadline < self.limits.between_chunks {
            (until_deadline, self.limits.overall)
        } else {
            (self.limits.between_chunks, self.limits.between_chunks)
        };
        match tokio::time::timeout(wait, self.body.next()).await {
            Err(_) => self.fail(ServiceError::Timeout {
                service,
                after_ms: millis(limit),
            }),
            Ok(Some(Err(_))) => self.fail(ServiceError::Unavailable {
                service,
                reason: "connection lost mid-reply".into(),
            }),
            Ok(Some(Ok(bytes))) => match self.decoder.push(&bytes) {
                Ok(items) => self.handle(items),
                Err(reason) => self.fail(ServiceError::Protocol {
                    service,
                    reason: reason.into(),
                }),
            },
            Ok(None) => {
                match self.decoder.finish() {
                    Ok(items) => self.handle(items),
                    Err(reason) => self.fail(ServiceError::Protocol {
                        service,
                        reason: reason.into(),
                    }),
                }
                if !self.finished {
                    self.finished = true;
                    if let Err(error) = self.protocol.on_end() {
                        self.ready.push_back(Err(error));
                    }
                }
            }
        }
    }

    fn handle(&mut self, items: Vec<SseItem>) {
        for item in items {
            if self.finished {
                return;
            }
            match item {
                SseItem::Stray(line) => self.protocol.on_stray_line(&line),
                SseItem::Data(data) => match self.protocol.on_event(&data) {
                    Ok(SseStep::Text(text)) if !text.is_empty() => self.ready.push_back(Ok(text)),
                    Ok(SseStep::Text(_)) | Ok(SseStep::Nothing) => {}
                    Ok(SseStep::Finished) => self.finished = true,
                    Err(error) => self.fail(error),
                },
            }
        }
    }

    fn fail(&mut self, error: ServiceError) {
        self.ready.push_back(Err(error));
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> SseItem {
        SseItem::Data(text.to_owned())
    }

    #[test]
    fn decodes_events_split_across_reads_and_crlf() {
        let mut decoder = SseDecoder::default();
        assert_eq!(decoder.push(b"data: {\"a\"").unwrap(), vec![]);
        assert_eq!(
            decoder.push(b":1}\r\n\r\ndata: two\n").unwrap(),
            vec![data("{\"a\":1}")]
        );
        assert_eq!(decoder.push(b"\n").unwrap(), vec![data("two")]);
    }

    #[test]
    fn joins_multi_line_data_and_skips_comments_and_other_fields() {
        let mut decoder = SseDecoder::default();
        let items = decoder
            .push(b": keep-alive\nevent: message\nid: 7\ndata: a\ndata:b\n\n")
            .unwrap();
        assert_eq!(items, vec![data("a\nb")]);
    }

    #[test]
    fn the_last_event_needs_no_blank_line() {
        let mut decoder = SseDecoder::default();
        assert_eq!(decoder.push(b"data: last").unwrap(), vec![]);
        assert_eq!(decoder.finish().unwrap(), vec![data("last")]);
    }

    #[test]
    fn bare_json_lines_are_reported_as_stray() {
        let mut decoder = SseDecoder::default();
        let items = decoder.push(b"{\n  \"error\": {}\n}\n").unwrap();
        assert_eq!(
            items,
            vec![
                SseItem::Stray("{".into()),
                SseItem::Stray("  \"error\": {}".into()),
                SseItem::Stray("}".into())
            ]
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: \xff\xfe\n").is_err());
    }

    #[test]
    fn status_mapping_follows_the_error_classes() {
        assert_eq!(
            error_for_status("x", 429, Some("RESOURCE_EXHAUSTED")),
            ServiceError::RateLimited { service: "x" }
        );
        assert_eq!(
            error_for_status("x", 503, Some("UNAVAILABLE")),
            ServiceError::Unavailable {
                service: "x",
                reason: "HTTP 503 UNAVAILABLE".into()
            }
        );
        assert_eq!(
            error_for_status("x", 401, None),
            ServiceError::Rejected {
                service: "x",
                reason: "HTTP 401".into()
            }
        );
        assert!(matches!(
            error_for_status("x", 302, None),
            ServiceError::Protocol { .. }
        ));
    }

    #[test]
    fn error_codes_are_taken_without_messages_and_sanitised() {
        let google = br#"[{"error":{"code":429,"message":"quota for key AIza... exceeded","status":"RESOURCE_EXHAUSTED"}}]"#;
        assert_eq!(
            error_code_in_body(google).as_deref(),
            Some("RESOURCE_EXHAUSTED")
        );
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-abc","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            error_code_in_body(openai).as_deref(),
            Some("invalid_api_key")
        );
        let hostile = br#"{"error":{"status":"BAD <script>alert(1)</script> sk-secret-and-a-very-long-tail-of-text-here"}}"#;
        let code = error_code_in_body(hostile).unwrap();
        assert!(code.len() <= 48 && !code.contains('<') && !code.contains(' '));
        assert_eq!(error_code_in_body(b"not json"), None);
    }

    #[test]
    fn the_crypto_provider_is_installed_once_and_stays() {
        install_default_crypto_provider();
        let first = rustls::crypto::CryptoProvider::get_default().expect("a provider") as *const _;
        install_default_crypto_provider();
        let again = rustls::crypto::CryptoProvider::get_default().unwrap() as *const _;
        assert_eq!(first, again);
    }
}

//! A WebSocket server for fakes: checks the upgrade request (path, headers, query) like the
//! real service, then hands each connection to a scripted handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What the fake saw, for assertions.
#[derive(Default)]
pub struct Record {
    /// Upgrades accepted.
    pub connections: AtomicUsize,
    /// Upgrades refused by the checks.
    pub refused: AtomicUsize,
    pub texts: Mutex<Vec<String>>,
    pub binaries: Mutex<Vec<Vec<u8>>>,
}

impl Record {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn texts(&self) -> Vec<String> {
        self.texts.lock().unwrap().clone()
    }

    pub fn count_texts(&self, text: &str) -> usize {
        self.texts
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.as_str() == text)
            .count()
    }
}

pub struct Conn {
    pub socket: WebSocketStream<TcpStream>,
    /// 0 for the first connection to this server, 1 for the next, …
    pub index: usize,
    pub record: Arc<Record>,
}

impl Conn {
    /// The next text or binary frame (recorded), or `None` once the client is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    self.record.texts.lock().unwrap().push(text.to_string());
                    return Some(Message::Text(text));
                }
                Ok(Message::Binary(bytes)) => {
                    self.record.binaries.lock().unwrap().push(bytes.to_vec());
                    return Some(Message::Binary(bytes));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let _ = self.socket.send(Message::text(text.into())).await;
    }
}

/// `Err((status, body))` refuses the upgrade the way the real service would.
pub type Check = Arc<dyn Fn(&Request) -> Result<(), (u16, String)> + Send + Sync>;
pub type Handler = Arc<dyn Fn(Conn) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct FakeWsServer {
    /// `ws://127.0.0.1:port` plus the path.
    pub url: String,
    pub record: Arc<Record>,
}

impl FakeWsServer {
    pub async fn start(path: &'static str, check: Check, handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}{path}", listener.local_addr().unwrap());
        let record = Arc::new(Record::default());
        let shared = record.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (check, handler, record) = (check.clone(), handler.clone(), shared.clone());
                tokio::spawn(async move {
                    let refused = record.clone();
                    // The callback's signature is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let callback = move |request: &Request,
                                         response: Response|
                          -> Result<Response, ErrorResponse> {
                        let verdict = if request.uri().path() != path {
                            Err((404, "not found".to_owned()))
                        } else {
                            check(request)
                        };
                        verdict.map(|()| response).map_err(|(status, body)| {
                            refused.refused.fetch_add(1, Ordering::SeqCst);
                            let mut error = ErrorResponse::new(Some(body));
                            *error.status_mut() = StatusCode::from_u16(status).unwrap();
                            error
                        })
                    };
                    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    let index = record.connections.fetch_add(1, Ordering::SeqCst);
                    handler(Conn {
                        socket,
                        index,
                        record,
                    })
                    .await;
                });
            }
        });
        Self { url, record }
    }
}

/// A TCP listener that accepts connections and never says a word: connects to it hang in
/// the WebSocket upgrade.
pub async fn silent_listener() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("ws://{address}")
}

/// The query parameters of an upgrade request.
pub fn query_pairs(request: &Request) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

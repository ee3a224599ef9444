//! A live WebRTC call with the offline counselor in a real `counsel serve` process, which restarts
//! ICE mid-call (a network change) and is then killed (kill -9) and started again, and a second
//! call that is stopped with SIGTERM. Issue 11, item 1: a crash loses no line the student saw,
//! the restart closes what it left open, and a stop ends the call through its normal end before
//! the process exits within its bound. Issue 13, item 5: an ICE restart keeps the call.
//!
//! The student's side is [`BrowserPeer`] and the transcript WebSocket. Needs the offline models
//! (`COUNSEL_MODELS_DIR`, as `scripts/test` sets up).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::browser_peer::BrowserPeer;
use crate::helpers::{create_room, free_port, sign_in_at, spawn_app, Backend, Running, TestApp};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// How long a process may take to load the offline models and greet.
const GREETING_WITHIN: Duration = Duration::from_secs(90);

/// A `counsel serve` process on the test app's database and data directory.
struct Node {
    process: Running,
    base: String,
}

impl Node {
    async fn start(app: &TestApp) -> Node {
        let port = free_port();
        let child = app
            .serve_command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("counsel serve starts");
        let mut node = Node {
            process: Running(child),
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{}/api/v1/health", node.base))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "counsel serve did not come up");
            // What answers must be this process, not another that took the port.
            assert!(
                node.process.0.try_wait().unwrap().is_none(),
                "counsel serve exited at start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.process.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name}");
    }
}

/// A final transcript line as the student's screen received it.
#[derive(Debug, PartialEq)]
struct SeenLine {
    sequence: u64,
    text: String,
}

/// A student in a call: the peer connection (kept open by holding it) and the transcript socket.
struct Student {
    peer: BrowserPeer,
    transcript: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
}

impl Student {
    /// Opens a room, watches its transcript and connects the call's media.
    async fn call(client: &reqwest::Client, base: &str, token: &str) -> Student {
        let room = create_room(client, base, token).await;
        assert_eq!(room.status(), 200);
        let room: Value = room.json().await.unwrap();
        let session = room["session_id"].as_str().unwrap().to_owned();
        let ws = base.replacen("http", "ws", 1);
        let (transcript, _) = tokio_tungstenite::connect_async(format!(
            "{ws}/ws/sessions/{session}/transcript?token={token}"
        ))
        .await
        .unwrap();

        let offer_url = format!("{base}/api/v1/rtc/sessions/{session}/offer");
        let room_token = room["user_token"].as_str().unwrap().to_owned();
        let peer = BrowserPeer::connect(client, &offer_url, &room_token).await;
        Student {
            peer,
            transcript,
            session,
        }
    }

    /// The socket's messages until the counselor's first final line (the greeting), and the
    /// final lines among them.
    async fn until_greeted(&mut self) -> Vec<SeenLine> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + GREETING_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.transcript.next())
                .await
                .expect("the counselor greets")
                .expect("the socket stays open")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "transcript" && message["is_final"] == true {
                seen.push(SeenLine {
                    sequence: message["sequence"].as_u64().unwrap(),
                    text: message["text"].as_str().unwrap().to_owned(),
                });
                if message["speaker"] == "counselor" {
                    return seen;
                }
            }
        }
    }

    /// The final lines the socket brings within `within`; the socket must stay open.
    async fn lines_within(&mut self, within: Duration) -> Vec<SeenLine> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(message) = tokio::time::timeout_at(deadline, self.transcript.next()).await {
            let Some(Ok(Message::Text(text))) = message else {
                panic!("the socket closed: {message:?}");
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(message["type"], "session_ended", "the call went on");
            if message["type"] == "transcript" && message["is_final"] == true {
                seen.push(SeenLine {
                    sequence: message["sequence"].as_u64().unwrap(),
                    text: message["text"].as_str().unwrap().to_owned(),
                });
            }
        }
        seen
    }

    /// The next `session_ended` message's reason, within `within`.
    async fn told_it_ended(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(left, self.transcript.next()).await
            else {
                panic!("the screen was not told the call ended");
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "session_ended" {
                return message["reason"].as_str().unwrap().to_owned();
            }
        }
    }
}

async fn session_detail(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    let detail = client
        .get(format!("{base}/api/v1/sessions/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(detail.status(), 200);
    detail.json().await.unwrap()
}

fn assert_stored(detail: &Value, seen: &[SeenLine]) {
    let stored: Vec<SeenLine> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| SeenLine {
            sequence: m["sequence"].as_u64().unwrap(),
            text: m["text"].as_str().unwrap().to_owned(),
        })
        .collect();
    for line in seen {
        assert!(
            stored.contains(line),
            "{line:?} was shown but not stored (stored: {stored:?})"
        );
    }
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_line_the_student_saw_and_a_stopped_one_ends_its_call() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.add_user(r"\COLLEGE\jdoe", false).await;
    let client = reqwest::Client::new();

    // kill -9 mid-call: the process has no chance to end anything.
    let node = Node::start(&app).await;
    let token = sign_in_at(&client, &node.base, r"\COLLEGE\jdoe").await;
    app.accept_notice(&token).await;
    let mut student = Student::call(&client, &node.base, &token).await;
    let mut seen = student.until_greeted().await;
    // Issue 13: a network change mid-call restarts ICE on the same call, which goes on.
    // Had the server not restarted its side, the browser's new credentials would fail its
    // checks and the call would end after the 5 s disconnect grace: it is still up after 8 s.
    student.peer.restart_ice(&client).await;
    seen.extend(student.lines_within(Duration::from_secs(8)).await);
    assert!(student.peer.is_connected(), "the call's media is still up");
    node.signal("KILL");
    drop(node);

    let node = Node::start(&app).await;
    let detail = session_detail(&client, &node.base, &token, &student.session).await;
    assert_stored(&detail, &seen);
    let ended_at = time(&detail["ended_at"]);
    let last_line = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| time(&m["spoken_at"]))
        .max()
        .unwrap();
    assert!(
        ended_at <= last_line,
        "closed on start at its last line ({ended_at} vs {last_line}), not at the restart"
    );

    // SIGTERM mid-call: the call ends through its normal end, the screen is told, and the
    // process exits within its bound.
    let mut student = Student::call(&client, &node.base, &token).await;
    let seen = student.until_greeted().await;
    let asked = Instant::now();
    node.signal("TERM");
    let bound = server::SHUTDOWN_CALLS_WAIT + server::SHUTDOWN_CONNECTIONS_WAIT;
    assert_eq!(student.told_it_ended(bound).await, "server_shutdown");
    let mut node = node;
    let exited = loop {
        if let Some(status) = node.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < bound,
            "the process did not exit within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "a stop is a clean exit: {exited}");
    let session = app.stored_session(&student.session).await;
    assert_eq!(
        session.end_reason,
        Some(store::SessionEndReason::ServerShutdown)
    );
    let node = Node::start(&app).await;
    assert_stored(
        &session_detail(&client, &node.base, &token, &student.session).await,
        &seen,
    );
}

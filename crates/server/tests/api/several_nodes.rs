//! Three `counsel serve` processes on one PostgreSQL behind nginx, with the configuration the
//! README gives (`deploy/nginx/counsel.conf`): a student's visit whose requests land on different
//! nodes, a limit counted across them, and a node killed with a room open.
//!
//! The first room's offer is one the node running the room refuses as an offer (422) after
//! checking the room token, where a node without the room would answer 404. The second room is
//! a real call with the offline counselor ([`BrowserPeer`]), whose node is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::browser_peer::BrowserPeer;
use crate::helpers::{
    accept_notice_at, create_room, error_of, free_port, sign_in_at, spawn_app_with_cloud_services,
    Backend, Running,
};

fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx in the foreground with the shipped site configuration, its upstream pointed at `nodes`
/// and listening on `port`. Each response names the node that answered it (`x-upstream`). One
/// process (no master), so that killing it leaves no worker behind.
fn start_nginx(binary: &Path, dir: &Path, port: u16, nodes: &[u16]) -> Running {
    let shipped = include_str!("../../../../deploy/nginx/counsel.conf");
    let servers: String = nodes
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;\n"))
        .collect();
    let mut site = String::new();
    let mut in_upstream = false;
    for line in shipped.lines() {
        if line.starts_with("upstream counsel_nodes") {
            in_upstream = true;
            site.push_str(line);
            site.push('\n');
            site.push_str(&servers);
            continue;
        }
        if in_upstream && line.trim_start().starts_with("server ") {
            continue;
        }
        if line.starts_with('}') {
            in_upstream = false;
        }
        site.push_str(&line.replace("listen 80;", &format!("listen 127.0.0.1:{port};")));
        site.push('\n');
    }
    std::fs::write(dir.join("counsel.conf"), site).unwrap();
    let main = format!(
        "master_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
         \n  add_header x-upstream $upstream_addr always;\n  include {dir}/counsel.conf;\n}}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new(binary)
        .args(["-p", &dir.display().to_string(), "-c"])
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx starts");
    Running(child)
}

async fn wait_until_up(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // Any answer from a counsel node (health may say degraded without the offline models).
        if let Ok(response) = client.get(url).send().await {
            if response.status() != reqwest::StatusCode::BAD_GATEWAY {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up");
}

/// A well-formed offer no browser would make, sent with the room token.
async fn offer_request(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    room_token: &str,
) -> reqwest::Response {
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    client
        .post(format!("{base}/api/v1/rtc/sessions/{session}/offer"))
        .bearer_auth(room_token)
        .json(&json!({"type": "offer", "sdp": sdp}))
        .send()
        .await
        .unwrap()
}

/// The offer's status and error code.
async fn post_offer(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    room_token: &str,
) -> (u16, String) {
    let (status, code, _) = error_of(offer_request(client, base, session, room_token).await).await;
    (status, code)
}

fn upstream_of(response: &reqwest::Response) -> String {
    response.headers()["x-upstream"]
        .to_str()
        .unwrap()
        .to_owned()
}

// Issue 14's multi-process test.
#[tokio::test]
async fn a_visit_across_three_nodes_behind_nginx() {
    let Some(nginx) = nginx() else {
        eprintln!("\n==== SKIPPED the three-node test: no nginx (scripts/install-system-deps --test) ====\n");
        return;
    };
    // The test app makes the database, the accounts and the secrets the nodes share (its data
    // directory); it is a node too, but nginx sends it nothing.
    let Some(app) = spawn_app_with_cloud_services(Backend::Postgres, &[]).await else {
        return;
    };
    app.add_user(r"\COLLEGE\jdoe", false).await;

    let ports = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<Option<Running>> = Vec::new();
    for port in ports {
        // With the offline counselor: the killed node's call below is a real one.
        let mut command = app.serve_command(port);
        command
            .env("RATE_LIMIT_ENABLED", "true")
            .env("RATE_LIMIT_HISTORY_PER_MINUTE", "6")
            .stdout(Stdio::null());
        nodes.push(Some(Running(
            command.spawn().expect("counsel serve starts"),
        )));
    }
    let client = reqwest::Client::new();
    for port in ports {
        wait_until_up(&client, &format!("http://127.0.0.1:{port}/api/v1/health")).await;
    }
    let proxy_port = free_port();
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(&nginx, nginx_dir.path(), proxy_port, &ports);
    let base = format!("http://127.0.0.1:{proxy_port}");
    wait_until_up(&client, &format!("{base}/api/v1/health")).await;

    // Sign in, accept the notice, open a room: through nginx, one node after another.
    let token = sign_in_at(&client, &base, r"\COLLEGE\jdoe").await;
    accept_notice_at(&client, &base, &token).await;
    let room = create_room(&client, &base, &token).await;
    assert_eq!(room.status(), 200);
    let room_node = upstream_of(&room);
    let room: Value = room.json().await.unwrap();
    let session = room["session_id"].as_str().unwrap().to_owned();
    let room_token = room["user_token"].as_str().unwrap().to_owned();

    // The offer lands on another node, which passes it on to the room's.
    let offer = offer_request(&client, &base, &session, &room_token).await;
    assert_ne!(upstream_of(&offer), room_node, "round robin moved on");
    let (status, code, _) = error_of(offer).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "VALIDATION_001"),
        "it reached the room"
    );

    // The end lands on yet another node; the room's node closes the room.
    let ended = client
        .post(format!("{base}/api/v1/voice/end-session"))
        .bearer_auth(&token)
        .json(&json!({"session_id": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert!(!app.stored_session(&session).await.is_active());
    // The room is gone on its node too: the same offer, wherever it lands, finds no room.
    let mut gone = false;
    for _ in 0..50 {
        let again = post_offer(&client, &base, &session, &room_token).await;
        if again == (404, "SESSION_001".to_owned()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the room's node closed the room");

    // The history limit (6 a minute here) is one count for all three nodes.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let listed = client
            .get(format!("{base}/api/v1/sessions"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(listed.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);

    // A second room; two screens follow it through nginx; its node is killed (SIGKILL).
    let room = create_room(&client, &base, &token).await;
    assert_eq!(room.status(), 200);
    let room_port: u16 = upstream_of(&room)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let room: Value = room.json().await.unwrap();
    let session = room["session_id"].as_str().unwrap().to_owned();
    let ws = format!("ws://127.0.0.1:{proxy_port}/ws/sessions/{session}/transcript?token={token}");
    let mut screens = Vec::new();
    for _ in 0..2 {
        let (screen, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
        screens.push(screen);
    }
    // The call's media: the offer goes through nginx to whichever node, which passes it on to
    // the room's; the media then flows straight to the room's node. Both screens, wherever
    // nginx put them, see the counselor's greeting.
    let _media = BrowserPeer::connect(
        &client,
        &format!("{base}/api/v1/rtc/sessions/{session}/offer"),
        room["user_token"].as_str().unwrap(),
    )
    .await;
    for screen in &mut screens {
        let greeting = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(Ok(message)) = screen.next().await {
                if let Message::Text(text) = message {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "transcript"
                        && message["speaker"] == "counselor"
                        && message["is_final"] == true
                    {
                        return message;
                    }
                }
            }
            panic!("the screen closed before the greeting");
        });
        greeting.await.expect("each screen sees the greeting");
    }
    let killed = ports.iter().position(|p| *p == room_port).unwrap();
    let killed_at = Instant::now();
    drop(nodes[killed].take());

    // A surviving node closes the session within 30 s and tells the screens that survive.
    let told = futures::future::select_all(screens.into_iter().map(|mut screen| {
        Box::pin(async move {
            while let Some(Ok(message)) = screen.next().await {
                if let Message::Text(text) = message {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "session_ended" {
                        return Some(message);
                    }
                }
            }
            // This screen's node was the one killed: its socket just closed.
            std::future::pending::<Option<Value>>().await
        })
    }));
    let (ended, _, _) = tokio::time::timeout(Duration::from_secs(30), told)
        .await
        .expect("a screen is told within 30 s of the kill");
    assert_eq!(ended.unwrap()["reason"], "server_restart");
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    let record = app.stored_session(&session).await;
    assert_eq!(
        record.end_reason,
        Some(store::SessionEndReason::ServerRestart)
    );
    let stored = app.stored_transcript_rows(record.id).await;
    assert!(!stored.is_empty(), "the greeting the screens saw is stored");
}

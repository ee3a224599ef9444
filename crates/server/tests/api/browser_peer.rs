//! The student's browser in the process tests: the agent's webrtc-rs stand-in for a browser, its
//! microphone sending quiet Opus frames on a 20 ms clock, offering with the room token as the web
//! app does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webrtc::media::Sample;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

/// A connected call's media, held open until dropped.
pub struct BrowserPeer {
    peer: Arc<RTCPeerConnection>,
    offer_url: String,
    room_token: String,
}

impl BrowserPeer {
    /// Offers to `offer_url` (any node, or nginx in front of them) and applies the answer.
    pub async fn connect(
        client: &reqwest::Client,
        offer_url: &str,
        room_token: &str,
    ) -> BrowserPeer {
        let (peer, microphone) = agent::transport::webrtc::browser_peer().await.unwrap();
        let browser = BrowserPeer {
            peer,
            offer_url: offer_url.to_owned(),
            room_token: room_token.to_owned(),
        };
        browser.negotiate(client, None).await;

        let mut encoder = agent::codec::VoiceEncoder::new().unwrap();
        let quiet = bytes::Bytes::from(
            encoder
                .encode(&[0i16; agent::audio::FRAME_SAMPLES])
                .unwrap(),
        );
        tokio::spawn(async move {
            let mut clock = tokio::time::interval(Duration::from_millis(20));
            loop {
                clock.tick().await;
                let sample = Sample {
                    data: quiet.clone(),
                    duration: Duration::from_millis(20),
                    ..Default::default()
                };
                if microphone.write_sample(&sample).await.is_err() {
                    return;
                }
            }
        });
        browser
    }

    /// What the browser does after a network change: a new offer with new ICE credentials on
    /// the same call, answered, and the connection back up.
    pub async fn restart_ice(&self, client: &reqwest::Client) {
        let restart = RTCOfferOptions {
            ice_restart: true,
            ..Default::default()
        };
        self.negotiate(client, Some(restart)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.peer.connection_state() != RTCPeerConnectionState::Connected {
            assert!(
                Instant::now() < deadline,
                "connected again after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the media path is up.
    pub fn is_connected(&self) -> bool {
        self.peer.connection_state() == RTCPeerConnectionState::Connected
    }

    /// One offer (every candidate in it, as the web app sends) and its answer.
    async fn negotiate(&self, client: &reqwest::Client, options: Option<RTCOfferOptions>) {
        let offer = self.peer.create_offer(options).await.unwrap();
        let mut gathered = self.peer.gathering_complete_promise().await;
        self.peer.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        let sdp = self.peer.local_description().await.unwrap().sdp;
        let answer = client
            .post(&self.offer_url)
            .bearer_auth(&self.room_token)
            .json(&json!({"type": "offer", "sdp": sdp}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "the offer is answered");
        let answer: Value = answer.json().await.unwrap();
        self.peer
            .set_remote_description(
                RTCSessionDescription::answer(answer["sdp"].as_str().unwrap().to_owned()).unwrap(),
            )
            .await
            .unwrap();
    }
}

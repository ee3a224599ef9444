//! The student's browser in the process tests: a webrtc-rs peer with an Opus microphone that
//! sends quiet frames on a 20 ms clock, offering with the room token as the web app does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

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
        // webrtc-rs's DTLS needs a process-wide rustls provider, as the server's transport does.
        agent::services::cloud::install_default_crypto_provider();
        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
        let mut settings = SettingEngine::default();
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let peer = Arc::new(
            api.new_peer_connection(RTCConfiguration::default())
                .await
                .unwrap(),
        );
        let microphone = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "microphone".to_owned(),
            "student".to_owned(),
        ));
        peer.add_track(Arc::clone(&microphone) as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .unwrap();
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

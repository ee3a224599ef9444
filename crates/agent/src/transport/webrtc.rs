//! WebRTC straight to the student's browser: one peer connection per call, no media server.
//!
//! Signalling is a single exchange the server carries over HTTP: the browser posts its SDP
//! offer (with its ICE candidates already gathered), [`WebRtcTransport::accept_offer`] answers
//! with ours (also complete, so neither side trickles). With no ICE servers configured the
//! server offers only host candidates, which is what a localhost or campus-LAN deployment needs.
//!
//! Media: the browser's Opus track is decoded and cut into the pipeline's 16 kHz 20 ms frames;
//! the pipeline's frames are played out on a 20 ms clock as Opus (silence while none are queued).
//!
//! Link quality comes from RTCP: the browser's receiver reports on our stream give round-trip
//! time and the loss it sees; sequence-number gaps on its stream give the loss we see. The
//! worse of the two losses is graded with the RTT by [`ConnectionQuality::from_link`]; no
//! grade is emitted until a receiver report has carried an RTT measurement.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::ConnectionQuality;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::stats::StatsReportType;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use super::{TransportEvent, TransportIo, OUTPUT_QUEUE_FRAMES};
use crate::audio::FRAME_SAMPLES;
use crate::codec::{CodecError, VoiceDecoder, VoiceEncoder, OPUS_SAMPLE_RATE};

/// One pipeline frame.
const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Student frames the transport keeps while the pipeline is not reading (500 ms). Past that the
/// oldest are dropped: late audio is worth less than current audio.
const INBOUND_BUFFER_FRAMES: usize = 25;

/// Capacity of the `audio_in` channel itself, in front of the drop-oldest buffer.
const INBOUND_CHANNEL_FRAMES: usize = 4;

/// A longer gap is treated as a pause rather than loss: concealing it would only invent audio.
const MAX_CONCEALED_PACKETS: u16 = 5;

/// RTP payload type the answer uses for Opus (the number browsers use too).
const OPUS_PAYLOAD_TYPE: u8 = 111;

#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("UDP port range {min}-{max} is empty or starts at port 0")]
    PortRange { min: u16, max: u16 },
    #[error("ICE server URL {0:?} is not a stun:, stuns:, turn: or turns: URL")]
    IceServerUrl(String),
    #[error("the SDP offer is not valid: {0}")]
    InvalidOffer(String),
    #[error("the SDP offer has no audio section")]
    OfferWithoutAudio,
    #[error("the peer connection produced no answer")]
    NoAnswer,
    #[error("gathering ICE candidates took longer than {0:?}")]
    GatheringTimedOut(Duration),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// A later offer for a call whose connection has closed or failed.
    #[error("the call's connection has ended")]
    CallOver,
    /// A later offer with another DTLS certificate: another browser or tab, not this call's
    /// browser restarting ICE.
    #[error("the offer is not from this call's browser")]
    NotARestart,
}

impl WebRtcError {
    /// The browser's offer was at fault (answer 400); anything else is the server's (500).
    pub fn is_bad_offer(&self) -> bool {
        matches!(
            self,
            WebRtcError::InvalidOffer(_) | WebRtcError::OfferWithoutAudio
        )
    }
}

/// A STUN or TURN server for ICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// The URL schemes an ICE server may have (RFC 7064 and RFC 7065).
const ICE_SCHEMES: [&str; 4] = ["stun:", "stuns:", "turn:", "turns:"];

impl IceServer {
    /// Checks one ICE server URL: the one parser, used by the configuration and the transport.
    pub fn check_url(url: &str) -> Result<(), WebRtcError> {
        let rest = ICE_SCHEMES
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match rest {
            Some(host) if !host.trim().is_empty() => Ok(()),
            _ => Err(WebRtcError::IceServerUrl(url.to_owned())),
        }
    }

    /// A server without credentials at `url` (checked by [`IceServer::check_url`]).
    pub fn from_url(url: &str) -> Result<IceServer, WebRtcError> {
        IceServer::check_url(url)?;
        Ok(IceServer {
            urls: vec![url.to_owned()],
            username: String::new(),
            credential: String::new(),
        })
    }
}

/// An inclusive range of local UDP ports for media (a firewall opens exactly these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    min: u16,
    max: u16,
}

impl PortRange {
    pub fn new(min: u16, max: u16) -> Result<Self, WebRtcError> {
        if min == 0 || max < min {
            return Err(WebRtcError::PortRange { min, max });
        }
        Ok(Self { min, max })
    }

    pub fn min(self) -> u16 {
        self.min
    }

    pub fn max(self) -> u16 {
        self.max
    }
}

#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// STUN/TURN servers; none by default (host candidates only).
    pub ice_servers: Vec<IceServer>,
    /// Local UDP ports for media; any free port when `None`.
    pub udp_ports: Option<PortRange>,
    /// Offer 127.0.0.1 too: only useful when both peers are on one machine without a LAN address.
    pub include_loopback: bool,
    /// How long answering may wait for local ICE candidates.
    pub gather_timeout: Duration,
    /// How long after answering the browser has to connect before the call counts as gone.
    pub connect_timeout: Duration,
    /// How long a dropped link may take to recover before the call counts as gone.
    pub disconnect_grace: Duration,
    /// How often a [`TransportEvent::Quality`] is emitted while connected.
    pub quality_interval: Duration,
    /// Whether the browser's private-network candidates (10/8, 172.16/12, 192.168/16, fc00::/7,
    /// 100.64/10) are checked: needed on a campus network, off where every student comes from
    /// the internet.
    pub allow_private_candidates: bool,
    /// The most candidates of one offer the server will check; the rest are ignored.
    pub max_remote_candidates: usize,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            udp_ports: None,
            include_loopback: false,
            gather_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            disconnect_grace: Duration::from_secs(5),
            quality_interval: Duration::from_secs(3),
            allow_private_candidates: true,
            max_remote_candidates: 20,
        }
    }
}

/// Answers browsers' offers. One per server; each answered offer is an independent call.
pub struct WebRtcTransport {
    api: API,
    /// Shared with every call's supervisor and renegotiation.
    config: Arc<WebRtcConfig>,
}

/// A call's transport once the offer is answered.
pub struct AcceptedOffer {
    /// The SDP answer to send back to the browser.
    pub answer_sdp: String,
    /// The pipeline's side.
    pub io: TransportIo,
    /// Owns the peer connection: close it (or drop it) to end the call's media.
    pub connection: WebRtcConnection,
}

impl WebRtcTransport {
    pub fn new(config: WebRtcConfig) -> Result<Self, WebRtcError> {
        for url in config.ice_servers.iter().flat_map(|server| &server.urls) {
            IceServer::check_url(url)?;
        }

        // webrtc-rs checks DTLS certificates with rustls, which cannot pick a process-wide
        // crypto provider by itself once two are compiled in (the cloud clients bring
        // aws-lc-rs, webrtc-rs ring).
        crate::services::cloud::install_default_crypto_provider();

        // Only Opus is offered back, so a browser's video section is answered as rejected.
        let mut media = MediaEngine::default();
        media.register_codec(
            RTCRtpCodecParameters {
                capability: opus_capability(),
                payload_type: OPUS_PAYLOAD_TYPE,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )?;
        let mut settings = SettingEngine::default();
        if let Some(ports) = config.udp_ports {
            let ephemeral = EphemeralUDP::new(ports.min, ports.max).map_err(webrtc::Error::from)?;
            settings.set_udp_network(UDPNetwork::Ephemeral(ephemeral));
        }
        settings.set_include_loopback_candidate(config.include_loopback);
        // Browsers that were granted the microphone offer plain IP candidates, and the rest
        // reach our host candidate anyway (we learn them as peer-reflexive): no mDNS needed.
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        Ok(Self {
            api: build_api(media, settings)?,
            config: Arc::new(config),
        })
    }

    /// Answers a browser's complete (non-trickle) SDP offer and starts the call's media tasks.
    pub async fn accept_offer(&self, offer_sdp: &str) -> Result<AcceptedOffer, WebRtcError> {
        let offer = read_offer(offer_sdp, &self.config)?;

        let rtc_config = RTCConfiguration {
            ice_servers: self
                .config
                .ice_servers
                .iter()
                .map(|server| RTCIceServer {
                    urls: server.urls.clone(),
                    username: server.username.clone(),
                    credential: server.credential.clone(),
                })
                .collect(),
            ..Default::default()
        };
        let peer = Arc::new(self.api.new_peer_connection(rtc_config).await?);
        match self.start_call(&peer, offer).await {
            Ok(accepted) => Ok(accepted),
            Err(err) => {
                if let Err(close_err) = peer.close().await {
                    tracing::warn!(error = %close_err, "closing a peer connection whose offer failed");
                }
                Err(err)
            }
        }
    }

    async fn start_call(
        &self,
        peer: &Arc<RTCPeerConnection>,
        offer: RTCSessionDescription,
    ) -> Result<AcceptedOffer, WebRtcError> {
        let stop = CancellationToken::new();
        let uplink = Arc::new(UplinkCounters::default());
        let inbound = Arc::new(InboundFrames::new(INBOUND_BUFFER_FRAMES));
        let encoder = VoiceEncoder::new()?;
        // Taken by the first Opus track; a browser sends one microphone track per call.
        let decoder = Mutex::new(Some(VoiceDecoder::new()?));

        let (state_tx, state_rx) = mpsc::unbounded_channel();
        peer.on_peer_connection_state_change(Box::new(move |state| {
            // The supervisor may be gone after the call ended; nothing to tell then.
            let _ = state_tx.send(state);
            Box::pin(async {})
        }));

        {
            let inbound = Arc::clone(&inbound);
            let uplink = Arc::clone(&uplink);
            let stop = stop.clone();
            // The track arrives on webrtc-rs's own task: its reader joins the call's span.
            let span = tracing::Span::current();
            peer.on_track(Box::new(move |track, _receiver, _transceiver| {
                let is_opus = track.kind() == RTPCodecType::Audio
                    && track
                        .codec()
                        .capability
                        .mime_type
                        .eq_ignore_ascii_case(MIME_TYPE_OPUS);
                let mut unused = decoder
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(decoder) = unused.take_if(|_| is_opus) {
                    tokio::spawn(
                        receive_audio(
                            track,
                            decoder,
                            Arc::clone(&inbound),
                            Arc::clone(&uplink),
                            stop.clone(),
                        )
                        .instrument(span.clone()),
                    );
                }
                Box::pin(async {})
            }));
        }

        // Added before the offer is applied, so that the offer's audio section takes this
        // transceiver and the answer says sendrecv.
        let voice = Arc::new(TrackLocalStaticSample::new(
            opus_capability(),
            "voice".to_owned(),
            "counsel".to_owned(),
        ));
        let sender = peer
            .add_track(Arc::clone(&voice) as Arc<dyn TrackLocal + Send + Sync>)
            .await?;
        let answer_sdp = answer(peer, offer, self.config.gather_timeout).await?;

        let (audio_in_tx, audio_in) = mpsc::channel(INBOUND_CHANNEL_FRAMES);
        let (audio_out, audio_out_rx) = mpsc::channel(OUTPUT_QUEUE_FRAMES);
        let (events_tx, events) = mpsc::channel(16);
        let (connected_tx, connected_rx) = watch::channel(false);

        let tasks = vec![
            tokio::spawn(Instrument::in_current_span(forward_inbound(
                Arc::clone(&inbound),
                audio_in_tx,
                stop.clone(),
            ))),
            tokio::spawn(Instrument::in_current_span(send_audio(
                voice,
                encoder,
                audio_out_rx,
                connected_rx,
                stop.clone(),
            ))),
            tokio::spawn(Instrument::in_current_span(read_rtcp(sender, stop.clone()))),
            tokio::spawn(Instrument::in_current_span(supervise(
                Arc::clone(peer),
                Arc::clone(&self.config),
                state_rx,
                events_tx,
                connected_tx,
                uplink,
                stop.clone(),
            ))),
        ];
        Ok(AcceptedOffer {
            answer_sdp,
            io: TransportIo {
                audio_in,
                audio_out,
                events,
            },
            connection: WebRtcConnection {
                peer: Arc::clone(peer),
                stop,
                tasks,
                renegotiation: Renegotiation {
                    peer: Arc::clone(peer),
                    config: Arc::clone(&self.config),
                    one_at_a_time: Arc::default(),
                },
            },
        })
    }
}

/// The offer as the peer connection gets it: candidates the server does not check dropped, and
/// an offer without audio refused.
fn read_offer(
    offer_sdp: &str,
    config: &WebRtcConfig,
) -> Result<RTCSessionDescription, WebRtcError> {
    let screened = screen_candidates(offer_sdp, config);
    if screened.dropped > 0 {
        tracing::debug!(
            dropped = screened.dropped,
            "ignored offer candidates the server does not check"
        );
    }
    let has_audio = screened
        .sdp
        .lines()
        .any(|line| line.starts_with("m=audio "));
    let offer = RTCSessionDescription::offer(screened.sdp)
        .map_err(|err| WebRtcError::InvalidOffer(err.to_string()))?;
    if !has_audio {
        return Err(WebRtcError::OfferWithoutAudio);
    }
    Ok(offer)
}

/// Applies `offer` and answers it once the answer holds every local candidate (the browser gets
/// one answer, no trickle).
async fn answer(
    peer: &RTCPeerConnection,
    offer: RTCSessionDescription,
    gather_timeout: Duration,
) -> Result<String, WebRtcError> {
    peer.set_remote_description(offer)
        .await
        .map_err(|err| WebRtcError::InvalidOffer(err.to_string()))?;
    let answer = peer.create_answer(None).await?;
    let mut gathered = peer.gathering_complete_promise().await;
    peer.set_local_description(answer).await?;
    tokio::time::timeout(gather_timeout, gathered.recv())
        .await
        .map_err(|_| WebRtcError::GatheringTimedOut(gather_timeout))?;
    Ok(peer
        .local_description()
        .await
        .ok_or(WebRtcError::NoAnswer)?
        .sdp)
}

/// Answers a new offer on a running call's peer connection: the browser's ICE restart after a
/// network change (new ICE credentials and candidates). The call, its tracks and its pipeline
/// go on; while the link is down the call waits out its disconnect grace as it would anyway.
#[derive(Clone)]
pub struct Renegotiation {
    peer: Arc<RTCPeerConnection>,
    config: Arc<WebRtcConfig>,
    /// One offer at a time: a peer connection gathers for one answer at once.
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl Renegotiation {
    /// Answers a restart from the same browser: its DTLS certificate (the offer's fingerprint)
    /// must be the one the call was set up with.
    pub async fn answer(&self, offer_sdp: &str) -> Result<String, WebRtcError> {
        let _turn = self.one_at_a_time.lock().await;
        if matches!(
            self.peer.connection_state(),
            RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
        ) {
            return Err(WebRtcError::CallOver);
        }
        let offer = read_offer(offer_sdp, &self.config)?;
        let current = self.peer.remote_description().await;
        let same_browser = current
            .as_ref()
            .and_then(|current| dtls_fingerprint(&current.sdp))
            .is_some_and(|known| dtls_fingerprint(&offer.sdp) == Some(known));
        if !same_browser {
            return Err(WebRtcError::NotARestart);
        }
        answer(&self.peer, offer, self.config.gather_timeout).await
    }
}

/// The first `a=fingerprint:` of an SDP: which certificate the peer's DTLS will show.
fn dtls_fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.strip_prefix("a=fingerprint:"))
        .map(str::trim)
}

fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: Vec::new(),
    }
}

/// The call's peer connection and media tasks.
pub struct WebRtcConnection {
    peer: Arc<RTCPeerConnection>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    renegotiation: Renegotiation,
}

impl WebRtcConnection {
    /// What answers the browser's later offers (an ICE restart) on this call's connection.
    pub fn renegotiation(&self) -> Renegotiation {
        self.renegotiation.clone()
    }

    /// Hangs up: closes the peer connection (the browser sees the call end) and waits for the
    /// media tasks to finish.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Err(err) = self.peer.close().await {
            tracing::warn!(error = %err, "closing peer connection");
        }
        for task in self.tasks.drain(..) {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "webrtc media task ended abnormally");
            }
        }
    }
}

impl Drop for WebRtcConnection {
    fn drop(&mut self) {
        if self.stop.is_cancelled() && self.tasks.is_empty() {
            return;
        }
        self.stop.cancel();
        // Dropped without `close`: the peer connection still has sockets to release.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let peer = Arc::clone(&self.peer);
            runtime.spawn(async move {
                if let Err(err) = peer.close().await {
                    tracing::warn!(error = %err, "closing dropped peer connection");
                }
            });
        }
    }
}

/// Student frames on their way to the pipeline. Bounded; the oldest frame goes when full, so the
/// network task never waits for the pipeline.
struct InboundFrames {
    frames: Mutex<VecDeque<Vec<i16>>>,
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
}

impl InboundFrames {
    fn new(capacity: usize) -> Self {
        Self {
            frames: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn push(&self, frame: Vec<i16>) {
        {
            let mut frames = self
                .frames
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if frames.len() == self.capacity {
                frames.pop_front();
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "pipeline is not reading student audio; dropping oldest"
                    );
                }
            }
            frames.push_back(frame);
        }
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Vec<i16>> {
        self.frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }
}

/// RTP packets of the student's stream, counted for the loss we see.
#[derive(Default)]
struct UplinkCounters {
    expected: AtomicU64,
    received: AtomicU64,
}

impl UplinkCounters {
    /// Loss since the last call, or `None` if nothing was expected.
    fn take_loss(&self) -> Option<f64> {
        let expected = self.expected.swap(0, Ordering::Relaxed);
        let received = self.received.swap(0, Ordering::Relaxed);
        (expected > 0).then(|| 1.0 - (received.min(expected) as f64 / expected as f64))
    }
}

async fn receive_audio(
    track: Arc<TrackRemote>,
    mut decoder: VoiceDecoder,
    inbound: Arc<InboundFrames>,
    uplink: Arc<UplinkCounters>,
    stop: CancellationToken,
) {
    let mut last_sequence: Option<u16> = None;
    loop {
        let packet = tokio::select! {
            _ = stop.cancelled() => return,
            read = track.read_rtp() => match read {
                Ok((packet, _)) => packet,
                // The track ends with the peer connection.
                Err(_) => return,
            },
        };
        let sequence = packet.header.sequence_number;
        let lost = match last_sequence {
            None => 0,
            Some(previous) => {
                let step = sequence.wrapping_sub(previous);
                if step == 0 || step > u16::MAX / 2 {
                    // Duplicate or late: its slot was already concealed or played.
                    continue;
                }
                step - 1
            }
        };
        last_sequence = Some(sequence);
        uplink
            .expected
            .fetch_add(u64::from(lost) + 1, Ordering::Relaxed);
        uplink.received.fetch_add(1, Ordering::Relaxed);

        if lost <= MAX_CONCEALED_PACKETS {
            for _ in 0..lost {
                if let Err(err) = decoder.conceal_lost_packet() {
                    tracing::warn!(error = %err, "concealing lost opus packet");
                }
            }
        }
        if let Err(err) = decoder.decode(&packet.payload) {
            tracing::warn!(error = %err, "dropping undecodable opus packet");
            continue;
        }
        while let Some(frame) = decoder.next_frame() {
            inbound.push(frame);
        }
    }
}

async fn forward_inbound(
    inbound: Arc<InboundFrames>,
    audio_in: mpsc::Sender<Vec<i16>>,
    stop: CancellationToken,
) {
    loop {
        while let Some(frame) = inbound.pop() {
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = audio_in.send(frame) => if sent.is_err() { return },
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = inbound.ready.notified() => {}
        }
    }
}

/// Plays the pipeline's frames out in real time, starting once the browser is connected.
async fn send_audio(
    voice: Arc<TrackLocalStaticSample>,
    mut encoder: VoiceEncoder,
    mut audio_out: mpsc::Receiver<Vec<i16>>,
    mut connected: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        waited = connected.wait_for(|&is_connected| is_connected) => if waited.is_err() { return },
    }
    let mut clock = tokio::time::interval(FRAME_DURATION);
    // Catching up after a stall keeps the RTP timeline equal to wall-clock time.
    clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut pending: VecDeque<i16> = VecDeque::with_capacity(2 * FRAME_SAMPLES);
    let mut frame = Vec::with_capacity(FRAME_SAMPLES);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.tick() => {}
        }
        while pending.len() < FRAME_SAMPLES {
            match audio_out.try_recv() {
                Ok(samples) => pending.extend(samples),
                Err(_) => break,
            }
        }
        frame.clear();
        let take = pending.len().min(FRAME_SAMPLES);
        frame.extend(pending.drain(..take));
        // Nothing queued (or a short tail) plays as silence.
        frame.resize(FRAME_SAMPLES, 0);
        let packet = match encoder.encode(&frame) {
            Ok(packet) => packet,
            Err(err) => {
                tracing::warn!(error = %err, "encoding bot audio");
                continue;
            }
        };
        let sample = Sample {
            data: Bytes::from(packet),
            duration: FRAME_DURATION,
            ..Default::default()
        };
        if let Err(err) = voice.write_sample(&sample).await {
            tracing::debug!(error = %err, "writing bot audio");
        }
    }
}

/// Reads the browser's RTCP for our stream; the interceptors turn its receiver reports into the
/// RTT and loss that [`measure_quality`] reads.
async fn read_rtcp(sender: Arc<RTCRtpSender>, stop: CancellationToken) {
    let mut buffer = vec![0u8; 1500];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            read = sender.read(&mut buffer) => if read.is_err() { return },
        }
    }
}

/// Where the link stands, as far as the pipeline is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Answered; the browser has until the deadline to connect.
    Connecting {
        deadline: Instant,
    },
    Connected,
    /// Was connected, dropped; may recover until the deadline.
    Interrupted {
        deadline: Instant,
    },
}

async fn supervise(
    peer: Arc<RTCPeerConnection>,
    config: Arc<WebRtcConfig>,
    mut states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    events: mpsc::Sender<TransportEvent>,
    connected: watch::Sender<bool>,
    uplink: Arc<UplinkCounters>,
    stop: CancellationToken,
) {
    let mut link = Link::Connecting {
        deadline: Instant::now() + config.connect_timeout,
    };
    let mut quality_clock = tokio::time::interval(config.quality_interval);
    quality_clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = match link {
            Link::Connecting { deadline } | Link::Interrupted { deadline } => Some(deadline),
            Link::Connected => None,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            state = states.recv() => {
                let Some(state) = state else { return };
                match state {
                    RTCPeerConnectionState::Connected => {
                        if matches!(link, Link::Connecting { .. }) {
                            connected.send_replace(true);
                            if events.send(TransportEvent::Connected).await.is_err() {
                                return;
                            }
                        }
                        link = Link::Connected;
                    }
                    RTCPeerConnectionState::Disconnected if link == Link::Connected => {
                        link = Link::Interrupted { deadline: Instant::now() + config.disconnect_grace };
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => break,
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
            _ = quality_clock.tick(), if link == Link::Connected => {
                if let Some(quality) = measure_quality(&peer, &uplink).await {
                    // A stale grade is worthless: skip it if the pipeline is behind.
                    let _ = events.try_send(TransportEvent::Quality(quality));
                }
            }
        }
    }
    // Tell the pipeline even if it stopped reading events for a moment, but never hang on it.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        events.send(TransportEvent::Disconnected),
    )
    .await;
}

async fn measure_quality(
    peer: &RTCPeerConnection,
    uplink: &UplinkCounters,
) -> Option<ConnectionQuality> {
    let report = peer.get_stats().await;
    let (rtt_ms, downlink_loss) = report.reports.values().find_map(|stats| match stats {
        StatsReportType::RemoteInboundRTP(remote) if remote.kind == "audio" => remote
            .round_trip_time
            .map(|rtt_ms| (rtt_ms, remote.fraction_lost)),
        _ => None,
    })?;
    let uplink_loss = uplink.take_loss().unwrap_or(0.0);
    Some(ConnectionQuality::from_link(
        rtt_ms,
        downlink_loss.max(uplink_loss),
    ))
}

/// An offer with only the candidates the server is willing to send checks to.
struct ScreenedOffer {
    sdp: String,
    dropped: usize,
}

/// Keeps the browser's candidates the server may check: an IP address (never a name to look
/// up), not loopback (unless `include_loopback`), link-local, unspecified, multicast or
/// broadcast, private only when allowed, and at most `max_remote_candidates` of them. Without
/// this an offer could make the server send connectivity checks to any address it names, its
/// own loopback ports included.
fn screen_candidates(sdp: &str, config: &WebRtcConfig) -> ScreenedOffer {
    let mut kept = 0;
    let mut dropped = 0;
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if let Some(candidate) = line.strip_prefix("a=candidate:") {
            // <foundation> <component> <transport> <priority> <address> <port> typ <type> ...
            let address = candidate.split_whitespace().nth(4);
            let allowed = address
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| candidate_address_allowed(ip, config));
            if !allowed || kept >= config.max_remote_candidates {
                dropped += 1;
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
    }
    ScreenedOffer { sdp: out, dropped }
}

fn candidate_address_allowed(ip: std::net::IpAddr, config: &WebRtcConfig) -> bool {
    use std::net::IpAddr;
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
    let ip = ip.to_canonical();
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if ip.is_loopback() {
        return config.include_loopback;
    }
    let (link_local, private) = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_broadcast() {
                return false;
            }
            (
                v4.is_link_local(),
                v4.is_private() || (a == 100 && (64..128).contains(&b)),
            )
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            ((first & 0xffc0) == 0xfe80, (first & 0xfe00) == 0xfc00)
        }
    };
    !link_local && (config.allow_private_candidates || !private)
}

/// A webrtc-rs API with the codecs of `media`, the default interceptors (RTCP reports, NACK) and
/// `settings`.
fn build_api(mut media: MediaEngine, settings: SettingEngine) -> Result<API, WebRtcError> {
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// A webrtc-rs peer in the browser's part, for tests and benchmarks that stand in for a student:
/// it offers one Opus microphone track (write samples to it), and offers loopback candidates
/// too, so it reaches a server on the same machine.
pub async fn browser_peer(
) -> Result<(Arc<RTCPeerConnection>, Arc<TrackLocalStaticSample>), WebRtcError> {
    crate::services::cloud::install_default_crypto_provider();
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    let api = build_api(media, settings)?;
    let peer = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
    let microphone = Arc::new(TrackLocalStaticSample::new(
        opus_capability(),
        "microphone".to_owned(),
        "student".to_owned(),
    ));
    peer.add_track(Arc::clone(&microphone) as Arc<dyn TrackLocal + Send + Sync>)
        .await?;
    Ok((peer, microphone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::PIPELINE_SAMPLE_RATE;
    use tokio::time::timeout;
    use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;

    fn tone_frame(freq_hz: f64, frame_index: usize) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let n = (frame_index * FRAME_SAMPLES + i) as f64;
                (8_000.0
                    * (2.0 * std::f64::consts::PI * freq_hz * n / PIPELINE_SAMPLE_RATE as f64)
                        .sin()) as i16
            })
            .collect()
    }

    /// The student's microphone saying `freq_hz` in real time for `frames` frames, or until the
    /// call ends.
    fn say_tone(
        microphone: Arc<TrackLocalStaticSample>,
        freq_hz: f64,
        frames: usize,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut encoder = VoiceEncoder::new().unwrap();
            let mut clock = tokio::time::interval(FRAME_DURATION);
            for frame_index in 0..frames {
                clock.tick().await;
                let packet = encoder.encode(&tone_frame(freq_hz, frame_index)).unwrap();
                let sample = Sample {
                    data: Bytes::from(packet),
                    duration: FRAME_DURATION,
                    ..Default::default()
                };
                if microphone.write_sample(&sample).await.is_err() {
                    return;
                }
            }
        })
    }

    fn zero_crossing_hz(samples: &[i16]) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f64 / 2.0 / (samples.len() as f64 / PIPELINE_SAMPLE_RATE as f64)
    }

    async fn complete_offer(peer: &RTCPeerConnection) -> String {
        let offer = peer.create_offer(None).await.unwrap();
        let mut gathered = peer.gathering_complete_promise().await;
        peer.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        peer.local_description().await.unwrap().sdp
    }

    fn candidate_ports(sdp: &str) -> Vec<u16> {
        // a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
        sdp.lines()
            .filter_map(|line| line.strip_prefix("a=candidate:"))
            .map(|candidate| {
                candidate
                    .split_whitespace()
                    .nth(5)
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn an_offer_keeps_only_candidates_the_server_may_check() {
        let offer = [
            "v=0\r\n",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "a=candidate:1 1 udp 2122260223 203.0.113.9 50000 typ host\r\n",
            "a=candidate:2 1 udp 2122260223 127.0.0.1 6379 typ host\r\n",
            "a=candidate:3 1 udp 2122260223 169.254.10.1 50002 typ host\r\n",
            "a=candidate:4 1 udp 2122260223 192.168.1.20 50003 typ host\r\n",
            "a=candidate:5 1 udp 2122260223 fe80::1 50004 typ host\r\n",
            "a=candidate:6 1 udp 2122260223 example.invalid 50005 typ host\r\n",
            "a=candidate:7 1 udp 2122260223 0.0.0.0 50006 typ host\r\n",
            "a=candidate:8 1 udp 1686052607 198.51.100.4 61000 typ srflx raddr 0.0.0.0 rport 0\r\n",
            "a=end-of-candidates\r\n",
        ]
        .concat();
        let addresses = |config: &WebRtcConfig| -> Vec<String> {
            candidate_addresses(&screen_candidates(&offer, config).sdp)
        };
        let campus = WebRtcConfig::default();
        assert_eq!(
            addresses(&campus),
            ["203.0.113.9", "192.168.1.20", "198.51.100.4"]
        );
        let internet = WebRtcConfig {
            allow_private_candidates: false,
            ..WebRtcConfig::default()
        };
        assert_eq!(addresses(&internet), ["203.0.113.9", "198.51.100.4"]);
        let one_machine = WebRtcConfig {
            include_loopback: true,
            max_remote_candidates: 2,
            ..WebRtcConfig::default()
        };
        assert_eq!(addresses(&one_machine), ["203.0.113.9", "127.0.0.1"]);
        // Everything else is left as it was.
        let screened = screen_candidates(&offer, &campus).sdp;
        assert!(screened.starts_with("v=0\r\nm=audio 9"));
        assert!(screened.ends_with("a=end-of-candidates\r\n"));
    }

    fn candidate_addresses(sdp: &str) -> Vec<String> {
        sdp.lines()
            .filter_map(|line| line.strip_prefix("a=candidate:"))
            .filter_map(|c| c.split_whitespace().nth(4).map(str::to_owned))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_peers_exchange_audio_both_ways_and_report_quality_and_hang_up() {
        let ports = PortRange::new(41_000, 41_050).unwrap();
        let transport = WebRtcTransport::new(WebRtcConfig {
            udp_ports: Some(ports),
            include_loopback: true,
            disconnect_grace: Duration::from_millis(500),
            quality_interval: Duration::from_millis(500),
            ..WebRtcConfig::default()
        })
        .unwrap();
        let (browser, microphone) = browser_peer().await.unwrap();
        let (played_tx, mut played) = mpsc::channel::<Vec<i16>>(500);
        browser.on_track(Box::new(move |track, receiver, _| {
            let played_tx = played_tx.clone();
            // As a browser does: take in our sender reports, so its receiver reports time them.
            tokio::spawn(async move { while receiver.read_rtcp().await.is_ok() {} });
            tokio::spawn(async move {
                let mut decoder = VoiceDecoder::new().unwrap();
                while let Ok((packet, _)) = track.read_rtp().await {
                    decoder.decode(&packet.payload).unwrap();
                    while let Some(frame) = decoder.next_frame() {
                        if played_tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Box::pin(async {})
        }));

        let offer = complete_offer(&browser).await;
        let AcceptedOffer {
            answer_sdp,
            io,
            connection,
        } = transport.accept_offer(&offer).await.unwrap();
        let answer_ports = candidate_ports(&answer_sdp);
        assert!(
            !answer_ports.is_empty(),
            "the answer carries its candidates"
        );
        assert!(answer_ports
            .iter()
            .all(|&port| (ports.min()..=ports.max()).contains(&port)));
        browser
            .set_remote_description(RTCSessionDescription::answer(answer_sdp).unwrap())
            .await
            .unwrap();

        let TransportIo {
            mut audio_in,
            audio_out,
            mut events,
        } = io;
        let first = timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(TransportEvent::Connected));

        // The student says 440 Hz in real time; the bot answers 660 Hz.
        let student = say_tone(microphone, 440.0, 150);
        let bot = tokio::spawn(async move {
            for frame_index in 0..150 {
                if audio_out
                    .send(tone_frame(660.0, frame_index))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });

        let mut heard = Vec::new();
        while heard.len() < 100 * FRAME_SAMPLES {
            let frame = timeout(Duration::from_secs(5), audio_in.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(frame.len(), FRAME_SAMPLES);
            heard.extend(frame);
        }
        let heard_hz = zero_crossing_hz(&heard[20 * FRAME_SAMPLES..]);
        assert!((heard_hz - 440.0).abs() < 5.0, "server heard {heard_hz} Hz");

        let mut bot_audio = Vec::new();
        while bot_audio.len() < 100 * FRAME_SAMPLES {
            let frame = timeout(Duration::from_secs(5), played.recv())
                .await
                .unwrap()
                .unwrap();
            bot_audio.extend(frame);
        }
        let played_hz = zero_crossing_hz(&bot_audio[20 * FRAME_SAMPLES..]);
        assert!(
            (played_hz - 660.0).abs() < 5.0,
            "browser heard {played_hz} Hz"
        );
        student.await.unwrap();

        // Receiver reports need a sender report to answer; both come about once a second.
        let quality = match timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
        {
            Some(TransportEvent::Quality(quality)) => quality,
            other => panic!("expected a quality report, got {other:?}"),
        };
        // Loopback has next to no delay or loss; allow for a busy test machine.
        assert!(
            quality <= ConnectionQuality::Good,
            "loopback graded {quality:?}"
        );

        // The student hangs up: the call ends within ICE's failure detection plus the grace.
        browser.close().await.unwrap();
        let gone = loop {
            match timeout(Duration::from_secs(40), events.recv())
                .await
                .unwrap()
            {
                Some(TransportEvent::Quality(_)) => continue,
                other => break other,
            }
        };
        assert_eq!(gone, Some(TransportEvent::Disconnected));
        connection.close().await;
        // Closing ended the media tasks: both queues are closed.
        bot.await.unwrap();
        let drained = timeout(Duration::from_secs(1), async {
            while audio_in.recv().await.is_some() {}
        });
        drained.await.expect("audio_in closes with the connection");
    }

    fn ice_ufrag(sdp: &str) -> String {
        sdp.lines()
            .find_map(|line| line.strip_prefix("a=ice-ufrag:"))
            .unwrap()
            .to_owned()
    }

    // A network change (Wi-Fi to cellular) breaks the call's ICE path; the browser restarts ICE
    // with a new offer on the same call, and the media goes on without a new call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ice_restart_offer_is_answered_on_the_running_call() {
        let transport = WebRtcTransport::new(WebRtcConfig {
            udp_ports: Some(PortRange::new(41_060, 41_110).unwrap()),
            include_loopback: true,
            ..WebRtcConfig::default()
        })
        .unwrap();
        let (browser, microphone) = browser_peer().await.unwrap();
        let offer = complete_offer(&browser).await;
        let AcceptedOffer {
            answer_sdp,
            io,
            connection,
        } = transport.accept_offer(&offer).await.unwrap();
        browser
            .set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap())
            .await
            .unwrap();
        let TransportIo {
            mut audio_in,
            audio_out: _audio_out,
            mut events,
        } = io;
        let first = timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(TransportEvent::Connected));
        say_tone(microphone, 440.0, usize::MAX);
        timeout(Duration::from_secs(5), audio_in.recv())
            .await
            .unwrap()
            .expect("audio before the restart");

        let restart = browser
            .create_offer(Some(RTCOfferOptions {
                ice_restart: true,
                ..Default::default()
            }))
            .await
            .unwrap();
        let mut gathered = browser.gathering_complete_promise().await;
        browser.set_local_description(restart).await.unwrap();
        let _ = gathered.recv().await;
        let restart_sdp = browser.local_description().await.unwrap().sdp;
        assert_ne!(
            ice_ufrag(&restart_sdp),
            ice_ufrag(&offer),
            "new ICE credentials"
        );
        let second_answer = connection
            .renegotiation()
            .answer(&restart_sdp)
            .await
            .unwrap();
        assert_ne!(
            ice_ufrag(&second_answer),
            ice_ufrag(&answer_sdp),
            "the server's side of ICE restarted too"
        );
        browser
            .set_remote_description(RTCSessionDescription::answer(second_answer).unwrap())
            .await
            .unwrap();

        // Another browser (another certificate) cannot take the call over.
        let (stranger, _) = browser_peer().await.unwrap();
        let strangers_offer = complete_offer(&stranger).await;
        let refused = connection.renegotiation().answer(&strangers_offer).await;
        assert!(
            matches!(refused, Err(WebRtcError::NotARestart)),
            "{refused:?}"
        );

        // The same call hears the student after the restart, and never reported a drop.
        let mut heard = Vec::new();
        while heard.len() < 100 * FRAME_SAMPLES {
            let frame = timeout(Duration::from_secs(5), audio_in.recv())
                .await
                .unwrap()
                .expect("audio after the restart");
            heard.extend(frame);
        }
        let heard_hz = zero_crossing_hz(&heard[50 * FRAME_SAMPLES..]);
        assert!((heard_hz - 440.0).abs() < 5.0, "server heard {heard_hz} Hz");
        while let Ok(event) = events.try_recv() {
            assert_ne!(event, TransportEvent::Disconnected);
        }
        connection.close().await;
    }

    #[tokio::test]
    async fn offers_that_are_not_sdp_or_have_no_audio_are_refused() {
        let transport = WebRtcTransport::new(WebRtcConfig::default()).unwrap();
        let not_sdp = transport.accept_offer("hello").await.err().unwrap();
        assert!(matches!(not_sdp, WebRtcError::InvalidOffer(_)), "{not_sdp}");

        let data_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n";
        let no_audio = transport.accept_offer(data_only).await.err().unwrap();
        assert!(
            matches!(no_audio, WebRtcError::OfferWithoutAudio),
            "{no_audio}"
        );
        assert!(not_sdp.is_bad_offer() && no_audio.is_bad_offer());
        assert!(!WebRtcError::GatheringTimedOut(Duration::from_secs(5)).is_bad_offer());
    }

    #[test]
    fn ice_server_urls_are_stun_or_turn() {
        for url in [
            "stun:stun.example.org:3478",
            "stuns:a",
            "turn:10.0.0.1?transport=tcp",
            "turns:b:5349",
        ] {
            assert_eq!(IceServer::from_url(url).unwrap().urls, vec![url.to_owned()]);
        }
        for url in [
            "http://stun.invalid",
            "stun:",
            "turn: ",
            "STUNX:a",
            "",
            "stun.example.org",
        ] {
            let err = IceServer::check_url(url).unwrap_err();
            assert!(
                matches!(err, WebRtcError::IceServerUrl(ref u) if u == url),
                "{err}"
            );
        }
    }

    #[test]
    fn configuration_mistakes_are_named() {
        assert_eq!(
            PortRange::new(5000, 4000).unwrap_err().to_string(),
            "UDP port range 5000-4000 is empty or starts at port 0"
        );
        assert!(PortRange::new(0, 10).is_err());
        let config = WebRtcConfig {
            ice_servers: vec![IceServer {
                urls: vec!["http://stun.invalid".into()],
                username: String::new(),
                credential: String::new(),
            }],
            ..WebRtcConfig::default()
        };
        let err = WebRtcTransport::new(config).err().unwrap();
        assert!(matches!(err, WebRtcError::IceServerUrl(_)), "{err}");
    }

    #[test]
    fn a_stalled_pipeline_loses_the_oldest_student_audio() {
        let inbound = InboundFrames::new(3);
        for value in 0..5 {
            inbound.push(vec![value; FRAME_SAMPLES]);
        }
        let kept: Vec<i16> = std::iter::from_fn(|| inbound.pop())
            .map(|frame| frame[0])
            .collect();
        assert_eq!(kept, vec![2, 3, 4]);
        assert_eq!(inbound.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn uplink_loss_counts_missing_packets_per_interval() {
        let uplink = UplinkCounters::default();
        assert_eq!(uplink.take_loss(), None);
        uplink.expected.store(100, Ordering::Relaxed);
        uplink.received.store(97, Ordering::Relaxed);
        assert!((uplink.take_loss().unwrap() - 0.03).abs() < 1e-9);
        assert_eq!(uplink.take_loss(), None, "each interval starts afresh");
    }
}

//! One `RTCPeerConnection` and the handlers it owns.
//!
//! A [`Peer`] forwards what the browser tells it (local candidates, remote tracks, connection
//! state) as [`PeerEvent`]s and decides nothing itself. Dropping it unregisters its handlers and
//! closes the connection, so a hang-up followed by a new call leaks neither.

use std::{cell::RefCell, rc::Rc};

use crate::chat;
use crate::core::files;
use crate::core::transceivers::{self, Direction, Kind, Step, Transceiver};
use crate::diagnose::{IceServerError, StatEntry};
use gloo_events::EventListener;
use js_sys::{Array, Function, Reflect};
use protocol::{IceCandidate, IceServer};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamTrack, MessageEvent, RtcConfiguration, RtcDataChannel,
    RtcDataChannelInit, RtcDataChannelState, RtcIceCandidateInit, RtcIceServer, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcRtpTransceiver,
    RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType, RtcSessionDescriptionInit,
    RtcSignalingState, RtcTrackEvent,
};

/// What a peer connection reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local ICE candidate to send to the other side.
    Candidate(IceCandidate),
    /// The other side's media arrived.
    Track(MediaStream),
    /// The connection's overall state changed.
    State(RtcPeerConnectionState),
    /// A STUN or TURN server could not be used (`icecandidateerror`).
    IceServerError(IceServerError),
    /// `negotiationneeded`: tracks changed or an ICE restart was asked for.
    NegotiationNeeded,
    /// A text frame on the chat data channel, still the browser's string: not copied, not
    /// checked (see [`crate::core::chat_guard`] and [`crate::chat::decode`]).
    Chat(js_sys::JsString),
    /// A text frame on the file channel, unread (see [`crate::core::files`]).
    FileText(js_sys::JsString),
    /// A binary frame on the file channel: bytes of a file, left in the browser.
    FileBytes(js_sys::ArrayBuffer),
}

/// An `RTCPeerConnection` whose handlers live exactly as long as it does.
pub struct Peer {
    pc: RtcPeerConnection,
    /// The chat channel, and what was sent on it before it opened.
    chat: RtcDataChannel,
    chat_outbox: Rc<RefCell<Vec<String>>>,
    /// The file channel ([`crate::core::files`]).
    files: RtcDataChannel,
    /// The handlers on `pc` and `chat`: each removes itself when dropped.
    listeners: Vec<EventListener>,
}

/// A connection made ahead of need (see [`Peer::new`]), and the servers it gathers with.
pub struct Spare {
    pc: RtcPeerConnection,
    ice_servers: Vec<IceServer>,
}

impl Spare {
    /// A connection with no servers yet, no handlers; it gathers its host candidates at once.
    pub fn new() -> Result<Self, JsValue> {
        Ok(Self {
            pc: RtcPeerConnection::new_with_configuration(&configuration(&[]))?,
            ice_servers: Vec::new(),
        })
    }

    /// Gathers with `ice_servers` from now on, if they are new: the relay's servers arrive
    /// while the page waits, and the candidates are ready when a call starts. Setting the same
    /// configuration again would throw the gathered candidates away.
    pub fn use_servers(&mut self, ice_servers: &[IceServer]) -> Result<(), JsValue> {
        if self.ice_servers != ice_servers {
            self.pc
                .set_configuration_with_configuration(&configuration(ice_servers))?;
            self.ice_servers = ice_servers.to_vec();
        }
        Ok(())
    }
}

impl Peer {
    /// A new connection using `ice_servers`, reporting through `report`: `spare` if there is
    /// one, else a new one. The first connection a page makes starts the browser's WebRTC
    /// machinery (tens of ms on a small machine); a spare made while the page waits takes that
    /// off the path of the first call, and has its candidates gathered by then.
    pub fn new(
        spare: Option<Spare>,
        ice_servers: &[IceServer],
        report: impl Fn(PeerEvent) + 'static,
    ) -> Result<Self, JsValue> {
        let pc = match spare {
            Some(mut spare) => {
                spare.use_servers(ice_servers)?;
                spare.pc
            }
            None => RtcPeerConnection::new_with_configuration(&configuration(ice_servers))?,
        };

        let report = Rc::new(report);
        let mut listeners = Vec::new();
        {
            let report = report.clone();
            listeners.push(EventListener::new(&pc, "icecandidate", move |event| {
                let event: &RtcPeerConnectionIceEvent = event.unchecked_ref();
                // A null candidate marks the end of gathering; trickle ICE needs nothing for it.
                if let Some(c) = event.candidate() {
                    report(PeerEvent::Candidate(IceCandidate {
                        candidate: c.candidate(),
                        sdp_mid: c.sdp_mid(),
                        sdp_m_line_index: c.sdp_m_line_index(),
                    }));
                }
            }));
        }
        // Every track this connection receives goes into one stream of ours, whatever streams
        // the sender named (none, when its camera came after the offer): the person's video
        // element keeps one stream for the whole call, through renegotiations and restarts.
        let remote = MediaStream::new()?;
        {
            let report = report.clone();
            listeners.push(EventListener::new(&pc, "track", move |event| {
                let track = event.unchecked_ref::<RtcTrackEvent>().track();
                if remote.get_track_by_id(&track.id()).is_none() {
                    remote.add_track(&track);
                }
                report(PeerEvent::Track(remote.clone()));
            }));
        }
        {
            let report = report.clone();
            let state_of = pc.clone();
            listeners.push(EventListener::new(
                &pc,
                "connectionstatechange",
                move |_| {
                    report(PeerEvent::State(state_of.connection_state()));
                },
            ));
        }
        {
            let report = report.clone();
            listeners.push(EventListener::new(&pc, "negotiationneeded", move |_| {
                report(PeerEvent::NegotiationNeeded);
            }));
        }
        {
            // A STUN or TURN server that failed; the event's fields are read by name.
            let report = report.clone();
            listeners.push(EventListener::new(&pc, "icecandidateerror", move |event| {
                let field = |name: &str| Reflect::get(event, &JsValue::from_str(name)).ok();
                let text = |name: &str| field(name).and_then(|v| v.as_string()).unwrap_or_default();
                let code = field("errorCode").and_then(|v| v.as_f64()).unwrap_or(0.0);
                report(PeerEvent::IceServerError(IceServerError {
                    url: text("url"),
                    code: code as u16,
                    text: text("errorText"),
                }));
            }));
        }
        // Negotiated on both sides with the same id: no signaling of its own, and in the first
        // offer of whichever side makes it.
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(chat::CHANNEL_ID);
        let chat = pc.create_data_channel_with_data_channel_dict(chat::CHANNEL_LABEL, &init);
        let chat_outbox: Rc<RefCell<Vec<String>>> = Rc::default();
        // Binary frames are none of ours and are left to the browser (they are not read).
        let chat_report = report.clone();
        listeners.push(EventListener::new(&chat, "message", move |event| {
            let data = event.unchecked_ref::<MessageEvent>().data();
            if let Ok(frame) = data.dyn_into::<js_sys::JsString>() {
                chat_report(PeerEvent::Chat(frame));
            }
        }));
        {
            let chat_of = chat.clone();
            let outbox = chat_outbox.clone();
            listeners.push(EventListener::new(&chat, "open", move |_| {
                for frame in outbox.borrow_mut().drain(..) {
                    let _ = chat_of.send_with_str(&frame);
                }
            }));
        }
        // Files on a channel of their own, negotiated the same way, so that a file's megabytes
        // never hold up a chat line or a mute.
        init.set_id(files::CHANNEL_ID);
        let files = pc.create_data_channel_with_data_channel_dict(files::CHANNEL_LABEL, &init);
        // Firefox hands binary frames over as Blobs unless told otherwise.
        let _ = Reflect::set(&files, &"binaryType".into(), &"arraybuffer".into());
        listeners.push(EventListener::new(&files, "message", move |event| {
            let data = event.unchecked_ref::<MessageEvent>().data();
            match data.dyn_into::<js_sys::JsString>() {
                Ok(frame) => report(PeerEvent::FileText(frame)),
                Err(data) => {
                    if let Ok(bytes) = data.dyn_into::<js_sys::ArrayBuffer>() {
                        report(PeerEvent::FileBytes(bytes));
                    }
                }
            }
        }));
        Ok(Self {
            pc,
            chat,
            chat_outbox,
            files,
            listeners,
        })
    }

    /// Applies the other side's offer, rolling back an offer of ours first (the polite side of
    /// perfect negotiation), and answers it; returns the answer's SDP.
    pub async fn answer_offer(
        &self,
        sdp: &str,
        local: Option<&MediaStream>,
    ) -> Result<String, JsValue> {
        if self.has_local_offer() {
            let rollback = RtcSessionDescriptionInit::new(RtcSdpType::Rollback);
            JsFuture::from(self.pc.set_local_description(&rollback)).await?;
        }
        self.accept_offer(sdp, local).await
    }

    /// `restartIce()`: the next offer gathers new candidates (web-sys has no binding for it).
    pub fn restart_ice(&self) -> Result<(), JsValue> {
        let restart: Function =
            Reflect::get(&self.pc, &JsValue::from_str("restartIce"))?.dyn_into()?;
        restart.call0(&self.pc)?;
        Ok(())
    }

    /// Starts sending the tracks of `stream` (the camera opened after the call started), where
    /// [`transceivers::camera_opened`] says: a transceiver that sends nothing yet takes it (no
    /// new negotiation while it is send-receive), or the track is added and the browser asks for
    /// one. Everything is asked for at once; the future only says how it went, so that the page
    /// goes on with the call (the answer, candidates) while the browser sets the camera up.
    pub fn add_media(
        &self,
        stream: &MediaStream,
    ) -> Result<impl std::future::Future<Output = Result<(), JsValue>> + 'static, JsValue> {
        let (list, views) = self.described();
        let tracks = tracks_of(Some(stream));
        let mut replacing = Vec::new();
        for step in transceivers::camera_opened(&views, has_kinds(&tracks)) {
            match step {
                Step::SendTrack(i) => {
                    let track = track_of(&tracks, views[i].kind);
                    let sender = list[i].sender();
                    replacing.push(JsFuture::from(sender.replace_track(track)));
                }
                Step::SetDirection(i, direction) => list[i].set_direction(web_direction(direction)),
                Step::Retire(i) => {
                    replacing.push(JsFuture::from(list[i].sender().replace_track(None)));
                    list[i].set_direction(RtcRtpTransceiverDirection::Inactive);
                }
                Step::AddTrack(kind) => {
                    if let Some(track) = track_of(&tracks, kind) {
                        self.pc.add_track_0(track, stream);
                    }
                }
            }
        }
        Ok(async move {
            for done in replacing {
                done.await?;
            }
            Ok(())
        })
    }

    /// Sends `track` instead of what goes out now of its `kind` (`audio` or `video`: the screen
    /// instead of the camera and back, another microphone), on the same transceiver: no new
    /// negotiation.
    pub async fn replace(
        &self,
        kind: &str,
        track: Option<&MediaStreamTrack>,
    ) -> Result<(), JsValue> {
        let sending = self.transceivers().into_iter().find(|t| {
            t.direction() != RtcRtpTransceiverDirection::Stopped
                && t.receiver().track().kind() == kind
                && t.mid().is_some()
        });
        if let Some(transceiver) = sending {
            JsFuture::from(transceiver.sender().replace_track(track)).await?;
        }
        Ok(())
    }

    fn transceivers(&self) -> Vec<RtcRtpTransceiver> {
        self.pc
            .get_transceivers()
            .iter()
            .filter_map(|t| t.dyn_into().ok())
            .collect()
    }

    /// The transceivers, and what [`transceivers`] needs to know of each (those of a kind we
    /// do not send, if any, are left out of both).
    fn described(&self) -> (Vec<RtcRtpTransceiver>, Vec<Transceiver>) {
        self.transceivers()
            .into_iter()
            .filter_map(|t| {
                let view = Transceiver {
                    kind: Kind::parse(&t.receiver().track().kind())?,
                    mid: t.mid(),
                    direction: match t.direction() {
                        RtcRtpTransceiverDirection::Sendrecv => Direction::SendRecv,
                        RtcRtpTransceiverDirection::Sendonly => Direction::SendOnly,
                        RtcRtpTransceiverDirection::Recvonly => Direction::RecvOnly,
                        RtcRtpTransceiverDirection::Inactive => Direction::Inactive,
                        _ => Direction::Stopped,
                    },
                    sending: t.sender().track().is_some(),
                };
                Some((t, view))
            })
            .unzip()
    }

    /// After an offer is applied: our media rides on its m-lines, as
    /// [`transceivers::after_remote_offer`] says (each kind's carrier sends and receives, with
    /// our track if we have one, so that a camera opened later needs no new negotiation; what
    /// the offer left without an m-line is made inactive, never stopped).
    async fn take_part(&self, local: Option<&MediaStream>) -> Result<(), JsValue> {
        let (list, views) = self.described();
        let tracks = tracks_of(local);
        for step in transceivers::after_remote_offer(&views, has_kinds(&tracks)) {
            match step {
                Step::SendTrack(i) => {
                    let track = track_of(&tracks, views[i].kind);
                    JsFuture::from(list[i].sender().replace_track(track)).await?;
                }
                Step::SetDirection(i, direction) => list[i].set_direction(web_direction(direction)),
                Step::Retire(i) => {
                    JsFuture::from(list[i].sender().replace_track(None)).await?;
                    list[i].set_direction(RtcRtpTransceiverDirection::Inactive);
                }
                Step::AddTrack(_) => {}
            }
        }
        Ok(())
    }

    /// The file channel, if it is open.
    pub fn file_channel(&self) -> Option<RtcDataChannel> {
        (self.files.ready_state() == RtcDataChannelState::Open).then(|| self.files.clone())
    }

    /// Sends a chat frame now, or when the channel opens.
    pub fn send_chat(&self, frame: &str) {
        if self.chat.ready_state() == RtcDataChannelState::Open
            && self.chat.send_with_str(frame).is_ok()
        {
            return;
        }
        self.chat_outbox.borrow_mut().push(frame.to_owned());
    }

    /// Uses `ice_servers` from now on (fresh TURN credentials, say) for later gathering and
    /// ICE restarts.
    pub fn set_ice_servers(&self, ice_servers: &[IceServer]) -> Result<(), JsValue> {
        self.pc
            .set_configuration_with_configuration(&configuration(ice_servers))
    }

    /// The connection's `getStats()` report (read with [`stat_entries`]): a future that does
    /// not hold the peer, so that the page's loop goes on while it runs
    /// ([`crate::stats::Reads`] says why).
    pub fn stats(&self) -> JsFuture {
        JsFuture::from(self.pc.get_stats())
    }

    /// The browser object, for inspection.
    pub fn connection(&self) -> &RtcPeerConnection {
        &self.pc
    }

    /// Readies a connection we call on: send-receive audio and video, with the tracks of
    /// `stream` where it has them (added as tracks, so that an offer of the other side's that
    /// wins a collision can carry them), and without a track otherwise (the camera's goes on
    /// when it opens; see [`Peer::add_media`]).
    pub fn send_media(&self, stream: Option<&MediaStream>) {
        let tracks: Vec<MediaStreamTrack> = stream
            .map(|s| {
                s.get_tracks()
                    .iter()
                    .filter_map(|t| t.dyn_into().ok())
                    .collect()
            })
            .unwrap_or_default();
        for kind in ["audio", "video"] {
            match (tracks.iter().find(|t| t.kind() == kind), stream) {
                (Some(track), Some(stream)) => {
                    self.pc.add_track_0(track, stream);
                }
                _ => {
                    let init = RtcRtpTransceiverInit::new();
                    init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                    self.pc.add_transceiver_with_str_and_init(kind, &init);
                }
            }
        }
    }

    /// Creates an offer and makes it the local description; returns its SDP.
    pub async fn create_offer(&self) -> Result<String, JsValue> {
        let offer = JsFuture::from(self.pc.create_offer()).await?;
        self.set_local(RtcSdpType::Offer, &sdp_of(&offer)?).await
    }

    /// Applies the other side's offer and answers it; returns the answer's SDP.
    pub async fn accept_offer(
        &self,
        sdp: &str,
        local: Option<&MediaStream>,
    ) -> Result<String, JsValue> {
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        self.take_part(local).await?;
        let answer = JsFuture::from(self.pc.create_answer()).await?;
        let sdp = sdp_of(&answer)?;
        // Set as a provisional answer first: the browser drops the candidates it gathered
        // ahead (`iceCandidatePoolSize`) when a final answer is set, before it starts gathering
        // for it (Chrome), and gathering anew took 30-150 ms on the way to the first frame. A
        // provisional answer starts gathering with the pooled candidates; the final one, the
        // same description, keeps them. A browser that refuses it just gathers afterwards.
        let _ = self.set_local(RtcSdpType::Pranswer, &sdp).await;
        self.set_local(RtcSdpType::Answer, &sdp).await
    }

    /// Applies the other side's answer to our offer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), JsValue> {
        self.set_remote(RtcSdpType::Answer, sdp).await
    }

    /// Hands a remote candidate to the browser without waiting for it: the browser applies
    /// them in the order given, and the page's other events (the camera, the relay, the other
    /// calls) are not held up meanwhile; on a busy machine that wait was tens of ms on the way
    /// to the first frame. The remote description must be in place (`addIceCandidate` rejects
    /// a candidate before it): the engine keeps the early ones until then, so there is one
    /// queue of them, not two. A failure is expected for a candidate of an offer we ignored
    /// (perfect negotiation), and harmless.
    pub fn add_candidate(&self, candidate: IceCandidate) {
        let init = RtcIceCandidateInit::new(&candidate.candidate);
        init.set_sdp_mid(candidate.sdp_mid.as_deref());
        init.set_sdp_m_line_index(candidate.sdp_m_line_index);
        let added = self
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(err) = JsFuture::from(added).await {
                web_sys::console::debug_2(&"addIceCandidate".into(), &err);
            }
        });
    }

    /// Whether we sent an offer that has not been answered yet.
    pub fn has_local_offer(&self) -> bool {
        self.pc.signaling_state() == RtcSignalingState::HaveLocalOffer
    }

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<String, JsValue> {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(sdp);
        JsFuture::from(self.pc.set_local_description(&init)).await?;
        Ok(sdp.to_owned())
    }

    async fn set_remote(&self, kind: RtcSdpType, sdp: &str) -> Result<(), JsValue> {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(sdp);
        JsFuture::from(self.pc.set_remote_description(&init)).await?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The handlers go first: nothing is reported about a connection already given up.
        self.listeners.clear();
        self.pc.close();
    }
}

/// An `RTCConfiguration` with `ice_servers`, bundling everything on one transport from the
/// start: both sides are this page, so there is one set of candidates (and one TURN
/// allocation) per connection to gather instead of one per audio, video and chat; and one
/// set gathered ahead (`iceCandidatePoolSize`).
fn configuration(ice_servers: &[IceServer]) -> RtcConfiguration {
    let config = RtcConfiguration::new();
    config.set_bundle_policy(web_sys::RtcBundlePolicy::MaxBundle);
    let servers = Array::new();
    for server in ice_servers {
        let entry = RtcIceServer::new();
        let urls: Array = server.urls.iter().map(|u| JsValue::from_str(u)).collect();
        entry.set_urls(&urls);
        if let Some(username) = &server.username {
            entry.set_username(username);
        }
        if let Some(credential) = &server.credential {
            entry.set_credential(credential);
        }
        servers.push(&entry);
    }
    config.set_ice_servers(&servers);
    // Gathering starts when the connection is made (the spare: while the page waits) instead
    // of when its first description is set; web-sys has no setter for it.
    let _ = Reflect::set(
        &config,
        &JsValue::from_str("iceCandidatePoolSize"),
        &JsValue::from(1),
    );
    config
}

/// The tracks of `stream`, if any.
fn tracks_of(stream: Option<&MediaStream>) -> Vec<MediaStreamTrack> {
    stream
        .map(|s| {
            s.get_tracks()
                .iter()
                .filter_map(|t| t.dyn_into().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `tracks` has audio, and video.
fn has_kinds(tracks: &[MediaStreamTrack]) -> [bool; 2] {
    [Kind::Audio, Kind::Video].map(|kind| track_of(tracks, kind).is_some())
}

/// The first track of `kind` in `tracks`.
fn track_of(tracks: &[MediaStreamTrack], kind: Kind) -> Option<&MediaStreamTrack> {
    tracks.iter().find(|t| t.kind() == kind.as_str())
}

/// The browser's value for `direction`.
fn web_direction(direction: Direction) -> RtcRtpTransceiverDirection {
    match direction {
        Direction::SendRecv => RtcRtpTransceiverDirection::Sendrecv,
        Direction::SendOnly => RtcRtpTransceiverDirection::Sendonly,
        Direction::RecvOnly => RtcRtpTransceiverDirection::Recvonly,
        Direction::Inactive => RtcRtpTransceiverDirection::Inactive,
        Direction::Stopped => RtcRtpTransceiverDirection::Stopped,
    }
}

/// The `sdp` field of an `RTCSessionDescription` (or its init dictionary).
fn sdp_of(description: &JsValue) -> Result<String, JsValue> {
    Reflect::get(description, &JsValue::from_str("sdp"))?
        .as_string()
        .ok_or_else(|| JsValue::from_str("session description without sdp"))
}

/// A `getStats()` report's entries, reduced to what [`crate::diagnose`] reads.
pub fn stat_entries(report: &JsValue) -> Result<Vec<StatEntry>, JsValue> {
    // RTCStatsReport is maplike: its values are the stats dictionaries.
    let values: Function = Reflect::get(report, &JsValue::from_str("values"))?.dyn_into()?;
    let values = values.call0(report)?;
    let iter = js_sys::try_iter(&values)?.ok_or("the stats report is not iterable")?;
    let mut entries = Vec::new();
    for stat in iter {
        let stat = stat?;
        let text = |name: &str| {
            Reflect::get(&stat, &JsValue::from_str(name))
                .ok()
                .and_then(|v| v.as_string())
        };
        let flag = |name: &str| {
            Reflect::get(&stat, &JsValue::from_str(name))
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        let number = |name: &str| {
            Reflect::get(&stat, &JsValue::from_str(name))
                .ok()
                .and_then(|v| v.as_f64())
        };
        entries.push(StatEntry {
            bytes_received: number("bytesReceived").unwrap_or(0.0),
            packets_received: number("packetsReceived").unwrap_or(0.0),
            packets_lost: number("packetsLost").unwrap_or(0.0),
            frames_decoded: number("framesDecoded").unwrap_or(0.0),
            bytes_sent: number("bytesSent").unwrap_or(0.0),
            audio_energy: number("totalAudioEnergy").unwrap_or(0.0),
            audio_s: number("totalSamplesDuration").unwrap_or(0.0),
            rtt_s: number("currentRoundTripTime"),
            id: text("id").unwrap_or_default(),
            kind: text("type").unwrap_or_default(),
            selected_pair_id: text("selectedCandidatePairId"),
            local_candidate_id: text("localCandidateId"),
            remote_candidate_id: text("remoteCandidateId"),
            nominated: flag("nominated"),
            selected: flag("selected"),
            state: text("state"),
            candidate_type: text("candidateType"),
        });
    }
    Ok(entries)
}

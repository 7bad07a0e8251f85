//! The TURN crate's sockets, wrapped with what the crate does not decide itself.
//!
//! - [`ServerConn`] is the crate's listening socket (the STUN port). It answers STUN Binding
//!   requests as before, drops what is not STUN or ChannelData before the crate sees it, limits
//!   unauthenticated requests per address, answers 403 to an authenticated CreatePermission or
//!   ChannelBind towards a refused peer and 486 to an Allocate over quota, and never hands the
//!   crate a read error (its read loop ends for good on the first one, and an ICMP "port
//!   unreachable" surfaces as one).
//! - [`RelayConn`] is one allocation's relayed socket, from [`RelayPorts`]. Every datagram goes
//!   through the peer policy again (a permission is per IP address, so a permission for another
//!   allocation on the relay's own address would open every port there), through the
//!   per-allocation bandwidth cap, and into `/metrics`. Datagrams between two allocations of this
//!   server are handed over in memory, so relay to relay does not depend on the network
//!   hairpinning the relay's public address back to itself (cloud NATs often do not).
//!
//! The quotas need to know which allocations exist: an Allocate success the crate sends
//! records its holder ([`State::observe_sent`]), the crate's close notification removes it.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use stun::{
    agent::TransactionId,
    attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_REALM, ATTR_USERNAME},
    error_code::{ErrorCode, ErrorCodeAttribute, CODE_ALLOC_QUOTA_REACHED, CODE_FORBIDDEN},
    integrity::MessageIntegrity,
    message::{
        Getter, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, METHOD_ALLOCATE,
        METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
    },
    textattrs::TextAttribute,
};
use tokio::{net::UdpSocket, sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use turn::{
    allocation::AllocationInfo,
    auth::{generate_auth_key, AuthHandler},
    proto::peeraddr::PeerAddress,
    relay::RelayAddressGenerator,
    server::config::{ConnConfig, ServerConfig},
};
use webrtc_util::Conn;

use super::policy::{self, PeerPolicy, Quota, Refusal};
use crate::{ice::TurnSecret, limits::RateLimit, Relay};

/// How long a loop rests after a failed read, so that a socket that keeps failing cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Unauthenticated requests one address may send per second on average (a browser sends one
/// per allocation, then authenticates), and at once.
const UNAUTHENTICATED_RATE: f64 = 20.0;
const UNAUTHENTICATED_BURST: f64 = 60.0;

/// Addresses whose unauthenticated requests are counted at once; past this the counts start
/// over, so a flood from many addresses cannot grow the table.
const UNAUTHENTICATED_TABLE: usize = 16_384;

/// Allocate requests waiting for the crate's answer; past this the oldest are forgotten (a
/// forgotten one only goes uncounted by the quotas).
const PENDING_TABLE: usize = 4_096;

/// A datagram handed from one allocation to another, with the sender's relayed address.
type Datagram = (Vec<u8>, SocketAddr);

/// How many datagrams for one allocation may wait in memory.
const INBOX: usize = 256;

/// The client side and the server side of an allocation's 5-tuple (the transport is UDP).
type FiveTuple = (SocketAddr, SocketAddr);

/// Who holds an allocation, for the quotas.
#[derive(Clone, Debug)]
struct Holder {
    source: IpAddr,
    user: String,
}

#[derive(Debug)]
struct Pending {
    five_tuple: FiveTuple,
    holder: Holder,
    at: Instant,
}

/// What the server knows about its allocations: one lock, no `.await` under it.
#[derive(Default)]
struct Ledger {
    /// The inbox of every live relayed socket, by its advertised address.
    relays: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    /// The holder of every allocation the crate granted and has not closed.
    holders: HashMap<FiveTuple, Holder>,
    /// Allocate requests let through, by transaction id, until the crate answers.
    pending: HashMap<[u8; 12], Pending>,
    /// Unauthenticated requests, per source address.
    unauthenticated: HashMap<IpAddr, RateLimit>,
}

/// What the built-in TURN server's sockets share.
pub(crate) struct State {
    pub(crate) policy: PeerPolicy,
    pub(crate) quota: Quota,
    secret: TurnSecret,
    /// Bytes per second per allocation and direction; `None`: no cap.
    max_bytes_per_sec: Option<f64>,
    ports: RangeInclusive<u16>,
    bind_ip: IpAddr,
    public_ip: IpAddr,
    relay: Arc<Relay>,
    ledger: Mutex<Ledger>,
    stop: CancellationToken,
}

/// The crate server's settings for one listening `conn` (the UDP socket, or one TCP or TLS
/// connection): our relayed ports, our credentials, and `closed_tx` told of every allocation
/// that ends.
pub(super) fn crate_server_config(
    conn: Arc<dyn Conn + Send + Sync>,
    state: &Arc<State>,
    closed_tx: mpsc::Sender<AllocationInfo>,
) -> ServerConfig {
    ServerConfig {
        conn_configs: vec![ConnConfig {
            conn,
            relay_addr_generator: Box::new(RelayPorts(Arc::clone(state))),
        }],
        realm: super::REALM.to_owned(),
        auth_handler: Arc::new(Auth(Arc::clone(state))),
        // The crate's default, 10 minutes (RFC 5766 11).
        channel_bind_timeout: Duration::ZERO,
        alloc_close_notify: Some(closed_tx),
    }
}

/// What [`State::inspect`] makes of a datagram on the listening socket.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand it to the crate.
    Pass,
    /// Drop it.
    Drop,
    /// Send this back instead.
    Answer(Vec<u8>),
}

/// The settings [`State`] is made of.
pub(crate) struct StateConfig {
    pub policy: PeerPolicy,
    pub quota: Quota,
    pub secret: TurnSecret,
    pub max_kbps: u32,
    pub ports: RangeInclusive<u16>,
    pub bind_ip: IpAddr,
    pub public_ip: IpAddr,
}

impl State {
    pub(crate) fn new(config: StateConfig, relay: Arc<Relay>, stop: CancellationToken) -> Self {
        Self {
            policy: config.policy,
            quota: config.quota,
            secret: config.secret,
            max_bytes_per_sec: (config.max_kbps > 0).then(|| f64::from(config.max_kbps) * 125.0),
            ports: config.ports,
            bind_ip: config.bind_ip,
            public_ip: config.public_ip,
            relay,
            ledger: Mutex::new(Ledger::default()),
            stop,
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic under the lock leaves plain maps behind: still usable.
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn refused(&self, why: Refusal) {
        self.relay.metrics.turn_refused(why);
    }

    /// The long-term key of `username` in `realm` (RFC 5389 15.4), if the user name is a
    /// well-formed coturn REST name that has not expired.
    fn key_for(&self, username: &str, realm: &str) -> Result<Vec<u8>, Refusal> {
        policy::check_username(username, SystemTime::now())?;
        let password = crate::ice::turn_credential(&self.secret, username);
        Ok(generate_auth_key(username, realm, &password))
    }

    /// The key and user name of a request whose MESSAGE-INTEGRITY verifies. `None` for
    /// anything else, which the crate then answers as the RFC says (401 with a nonce, 400).
    fn verified(&self, m: &Message) -> Option<(Vec<u8>, String)> {
        let username = TextAttribute::get_from_as(m, ATTR_USERNAME).ok()?.text;
        let realm = TextAttribute::get_from_as(m, ATTR_REALM).ok()?.text;
        // An expired or malformed name is counted by the crate's call to [`Auth`].
        let key = self.key_for(&username, &realm).ok()?;
        if MessageIntegrity(key.clone()).check(&mut m.clone()).is_err() {
            self.refused(Refusal::Credentials);
            return None;
        }
        Some((key, username))
    }

    /// Decides what happens to `datagram` from `from` on the listening socket `local`.
    pub(super) fn inspect(&self, datagram: &[u8], from: SocketAddr, local: SocketAddr) -> Verdict {
        // ChannelData: the crate looks up the channel, and the relayed socket checks the peer.
        if datagram.first().is_some_and(|b| b & 0xc0 == 0x40) {
            return Verdict::Pass;
        }
        // The crate's check looks at the magic cookie only: a STUN message's first two bits
        // are zero too (RFC 5389 6), and what starts with 1 is neither STUN nor ChannelData
        // (RFC 5766 11: channel numbers 0x8000 and up are reserved). Found by fuzzing.
        if datagram.first().is_some_and(|b| b & 0xc0 != 0) || !stun::message::is_message(datagram) {
            return Verdict::Drop;
        }
        if datagram.starts_with(&[0x00, 0x01]) {
            // A Binding request: answered as before the TURN server, and counted the same.
            return match crate::stun::answer(datagram, from) {
                Some(reply) => {
                    self.relay
                        .metrics
                        .stun_requests
                        .fetch_add(1, Ordering::Relaxed);
                    Verdict::Answer(reply)
                }
                None => Verdict::Drop,
            };
        }
        let mut m = Message {
            raw: datagram.to_vec(),
            ..Message::default()
        };
        if m.decode().is_err() {
            return Verdict::Drop;
        }
        // Indications (Send) are checked by the relayed socket; responses go nowhere.
        if m.typ.class != CLASS_REQUEST {
            return Verdict::Pass;
        }
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return if self.allow_unauthenticated(from.ip()) {
                Verdict::Pass
            } else {
                self.refused(Refusal::Unauthenticated);
                Verdict::Drop
            };
        }
        match m.typ.method {
            METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND => self.check_peer(&m, from),
            METHOD_ALLOCATE => self.check_quota(&m, from, local),
            _ => Verdict::Pass,
        }
    }

    fn allow_unauthenticated(&self, ip: IpAddr) -> bool {
        let mut ledger = self.ledger();
        if ledger.unauthenticated.len() >= UNAUTHENTICATED_TABLE
            && !ledger.unauthenticated.contains_key(&ip)
        {
            ledger.unauthenticated.clear();
        }
        ledger
            .unauthenticated
            .entry(ip)
            .or_insert_with(|| RateLimit::new(UNAUTHENTICATED_RATE, UNAUTHENTICATED_BURST))
            .allow(Instant::now())
    }

    /// 403 to an authenticated CreatePermission or ChannelBind towards a refused peer. The crate
    /// honours only the first XOR-PEER-ADDRESS of a request, so that is the one checked.
    fn check_peer(&self, m: &Message, from: SocketAddr) -> Verdict {
        let Some((key, _)) = self.verified(m) else {
            return Verdict::Pass;
        };
        let mut peer = PeerAddress::default();
        if peer.get_from(m).is_err() {
            // The crate answers 400.
            return Verdict::Pass;
        }
        let peer = canonical(SocketAddr::new(peer.ip, peer.port));
        let own = self.ledger().relays.contains_key(&peer);
        match self.policy.check(peer, own) {
            Ok(()) => Verdict::Pass,
            Err(why) => {
                self.refused(why);
                tracing::debug!(%from, %peer, reason = why.label(), "TURN permission refused");
                error_response(m, CODE_FORBIDDEN, "Forbidden", key)
            }
        }
    }

    /// 486 to an authenticated Allocate over a quota; otherwise the request is remembered until
    /// the crate answers it.
    fn check_quota(&self, m: &Message, from: SocketAddr, local: SocketAddr) -> Verdict {
        let Some((key, username)) = self.verified(m) else {
            return Verdict::Pass;
        };
        let user = policy::user_of(&username).unwrap_or(&username).to_owned();
        let five_tuple = (from, local);
        let mut ledger = self.ledger();
        if ledger.holders.contains_key(&five_tuple) {
            // A retransmission, or a second Allocate the crate answers with 437.
            return Verdict::Pass;
        }
        let user_holds = ledger.holders.values().filter(|h| h.user == user).count();
        let source_holds = ledger
            .holders
            .values()
            .filter(|h| h.source == from.ip())
            .count();
        if let Err(why) = self.quota.check(user_holds, source_holds) {
            drop(ledger);
            self.refused(why);
            tracing::debug!(%from, reason = why.label(), "TURN allocation refused");
            return error_response(m, CODE_ALLOC_QUOTA_REACHED, "Allocation Quota Reached", key);
        }
        if ledger.pending.len() >= PENDING_TABLE {
            let now = Instant::now();
            ledger
                .pending
                .retain(|_, p| now.duration_since(p.at) < Duration::from_secs(5));
            if ledger.pending.len() >= PENDING_TABLE {
                ledger.pending.clear();
            }
        }
        ledger.pending.insert(
            m.transaction_id.0,
            Pending {
                five_tuple,
                holder: Holder {
                    source: from.ip(),
                    user,
                },
                at: Instant::now(),
            },
        );
        Verdict::Pass
    }

    /// Notes what the crate answers to an Allocate: a success makes its requester a holder.
    pub(super) fn observe_sent(&self, datagram: &[u8], to: SocketAddr, local: SocketAddr) {
        let allocate_answer = matches!(datagram.get(..2), Some([0x01, 0x03] | [0x01, 0x13]));
        if !allocate_answer || datagram.len() < 20 {
            return;
        }
        let mut id = [0u8; 12];
        id.copy_from_slice(&datagram[8..20]);
        let mut ledger = self.ledger();
        let Some(pending) = ledger.pending.remove(&id) else {
            return;
        };
        if datagram[1] == 0x03 && pending.five_tuple == (to, local) {
            ledger.holders.insert(pending.five_tuple, pending.holder);
            let live = ledger.holders.len() as u64;
            drop(ledger);
            let metrics = &self.relay.metrics;
            metrics.turn_allocations.store(live, Ordering::Relaxed);
            metrics
                .turn_allocations_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a TURN connection over TCP (`tls: false`) or TLS.
    pub(crate) fn stream_opened(&self, tls: bool) {
        let metrics = &self.relay.metrics;
        let count = if tls {
            &metrics.turn_tls_connections
        } else {
            &metrics.turn_tcp_connections
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets an allocation the crate closed (expired, refreshed to zero, or shut down).
    pub(crate) fn closed(&self, info: &AllocationInfo) {
        let five_tuple = (info.five_tuple.src_addr, info.five_tuple.dst_addr);
        let mut ledger = self.ledger();
        ledger.holders.remove(&five_tuple);
        let live = ledger.holders.len() as u64;
        drop(ledger);
        self.relay
            .metrics
            .turn_allocations
            .store(live, Ordering::Relaxed);
    }

    fn rate_limit(&self) -> Mutex<Option<RateLimit>> {
        // One second's worth at once: a key frame comes as a burst.
        Mutex::new(
            self.max_bytes_per_sec
                .map(|rate| RateLimit::new(rate, rate)),
        )
    }
}

/// An error response to `m` with `code`, signed with `key` (the requester authenticated, so
/// the answer is authenticated too).
fn error_response(m: &Message, code: ErrorCode, reason: &str, key: Vec<u8>) -> Verdict {
    let mut reply = Message::new();
    let setters: [Box<dyn Setter>; 4] = [
        Box::new(TransactionId(m.transaction_id.0)),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
        Box::new(MessageIntegrity(key)),
    ];
    match reply.build(&setters) {
        Ok(()) => Verdict::Answer(reply.raw),
        Err(_) => Verdict::Drop,
    }
}

/// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the policy and the crate want
/// a.b.c.d.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `addr` as `socket` can send to it: IPv4 as IPv4-mapped on an IPv6 socket.
fn reachable_from(socket: &UdpSocket, addr: SocketAddr) -> SocketAddr {
    match (socket.local_addr().map(|a| a.is_ipv6()), addr.ip()) {
        (Ok(true), IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port()),
        _ => addr,
    }
}

fn not_connected() -> webrtc_util::Error {
    webrtc_util::Error::Other("a TURN socket has no connected peer".into())
}

fn closed_error() -> webrtc_util::Error {
    webrtc_util::Error::Other("the TURN server is stopping".into())
}

/// The listening socket handed to the crate.
pub(crate) struct ServerConn {
    socket: UdpSocket,
    local: SocketAddr,
    state: Arc<State>,
}

impl ServerConn {
    pub(crate) fn new(socket: UdpSocket, state: Arc<State>) -> std::io::Result<Self> {
        let local = canonical(socket.local_addr()?);
        Ok(Self {
            socket,
            local,
            state,
        })
    }
}

#[async_trait]
impl Conn for ServerConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(not_connected())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(not_connected())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let received = tokio::select! {
                _ = self.state.stop.cancelled() => return Err(closed_error()),
                received = self.socket.recv_from(buf) => received,
            };
            let (len, from) = match received {
                Ok((len, from)) => (len, canonical(from)),
                Err(err) => {
                    tracing::debug!(%err, "TURN read failed");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            match self.state.inspect(&buf[..len], from, self.local) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Drop => {
                    tracing::trace!(%from, len, "dropped a datagram that is not STUN or TURN");
                }
                Verdict::Answer(reply) => {
                    let to = reachable_from(&self.socket, from);
                    if let Err(err) = self.socket.send_to(&reply, to).await {
                        tracing::debug!(%from, %err, "STUN answer not sent");
                    }
                }
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(not_connected())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        self.state.observe_sent(buf, target, self.local);
        let to = reachable_from(&self.socket, target);
        Ok(self.socket.send_to(buf, to).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// One allocation's relayed socket.
pub(crate) struct RelayConn {
    socket: UdpSocket,
    advertised: SocketAddr,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
    to_peers: Mutex<Option<RateLimit>>,
    from_peers: Mutex<Option<RateLimit>>,
    closed: CancellationToken,
    state: Arc<State>,
}

impl RelayConn {
    /// Whether `len` more bytes fit under the cap of one direction; counts what does not.
    fn within_cap(&self, bucket: &Mutex<Option<RateLimit>>, len: usize) -> bool {
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fits = bucket
            .as_mut()
            .is_none_or(|bucket| bucket.take(Instant::now(), len as f64));
        if !fits {
            self.state
                .relay
                .metrics
                .turn_dropped_over_cap
                .fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    fn relayed(&self, len: usize) {
        self.state
            .relay
            .metrics
            .turn_bytes_relayed
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    fn forget(&self) {
        self.state.ledger().relays.remove(&self.advertised);
    }
}

impl Drop for RelayConn {
    fn drop(&mut self) {
        self.forget();
    }
}

#[async_trait]
impl Conn for RelayConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(not_connected())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(not_connected())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut inbox = self.inbox.lock().await;
        loop {
            let (len, from, own) = tokio::select! {
                _ = self.closed.cancelled() => return Err(closed_error()),
                _ = self.state.stop.cancelled() => return Err(closed_error()),
                handed = inbox.recv() => match handed {
                    Some((data, from)) => {
                        let len = data.len().min(buf.len());
                        buf[..len].copy_from_slice(&data[..len]);
                        (len, from, true)
                    }
                    None => return Err(closed_error()),
                },
                received = self.socket.recv_from(buf) => match received {
                    Ok((len, from)) => {
                        let from = canonical(from);
                        let own = self.state.ledger().relays.contains_key(&from);
                        (len, from, own)
                    }
                    Err(err) => {
                        tracing::debug!(%err, "TURN relay read failed");
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            // Nothing from where nothing may be sent: a permission is per IP address.
            if self.state.policy.check(from, own).is_err() {
                continue;
            }
            if !self.within_cap(&self.from_peers, len) {
                continue;
            }
            self.relayed(len);
            return Ok((len, from));
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(not_connected())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let target = canonical(target);
        let inbox = self.state.ledger().relays.get(&target).cloned();
        // The crate takes a short count for an error: whatever is dropped here is reported sent.
        if let Some(inbox) = inbox {
            if self.within_cap(&self.to_peers, buf.len())
                && inbox.try_send((buf.to_vec(), self.advertised)).is_ok()
            {
                self.relayed(buf.len());
            }
            return Ok(buf.len());
        }
        if let Err(why) = self.state.policy.check(target, false) {
            self.state.refused(why);
            tracing::debug!(peer = %target, reason = why.label(), "TURN datagram to a refused peer dropped");
            return Ok(buf.len());
        }
        if !self.within_cap(&self.to_peers, buf.len()) {
            return Ok(buf.len());
        }
        let sent = self.socket.send_to(buf, target).await?;
        self.relayed(sent);
        Ok(sent)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.advertised)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.forget();
        self.closed.cancel();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Relayed sockets from `--turn-ports`, advertised at `--public-ip`.
pub(crate) struct RelayPorts(pub(crate) Arc<State>);

impl RelayPorts {
    /// A random port of the range first, then the next ones: random so that a relayed address
    /// is not guessable from the last one, in order so that a nearly full range still finds
    /// its free ports.
    fn candidates(&self, requested: u16) -> Vec<u16> {
        let (first, last) = (*self.0.ports.start(), *self.0.ports.end());
        if requested != 0 {
            return if self.0.ports.contains(&requested) {
                vec![requested]
            } else {
                Vec::new()
            };
        }
        let span = u32::from(last) - u32::from(first) + 1;
        let mut seed = [0u8; 4];
        let start = match getrandom::fill(&mut seed) {
            Ok(()) => u32::from_le_bytes(seed) % span,
            Err(_) => 0,
        };
        (0..span)
            .map(|i| u16::try_from(u32::from(first) + (start + i) % span).unwrap_or(first))
            .collect()
    }
}

#[async_trait]
impl RelayAddressGenerator for RelayPorts {
    fn validate(&self) -> Result<(), turn::Error> {
        if self.0.ports.is_empty() || *self.0.ports.start() == 0 {
            return Err(turn::Error::Other("an empty relay port range".into()));
        }
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let state = &self.0;
        if use_ipv4 != state.public_ip.is_ipv4() {
            return Err(turn::Error::Other(
                "the relay has no relayed address of that family".into(),
            ));
        }
        for port in self.candidates(requested_port) {
            let Ok(socket) = UdpSocket::bind((state.bind_ip, port)).await else {
                continue;
            };
            roomy_buffers(&socket);
            let advertised = SocketAddr::new(state.public_ip, port);
            let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
            state.ledger().relays.insert(advertised, inbox_tx);
            let conn = RelayConn {
                socket,
                advertised,
                inbox: tokio::sync::Mutex::new(inbox_rx),
                to_peers: state.rate_limit(),
                from_peers: state.rate_limit(),
                closed: CancellationToken::new(),
                state: Arc::clone(state),
            };
            return Ok((Arc::new(conn), advertised));
        }
        Err(turn::Error::Other("no free port in --turn-ports".into()))
    }
}

/// Socket buffers for a TURN socket, each way: media comes in bursts (a video frame is a dozen
/// datagrams at once), and a relay whose threads are busy elsewhere for a moment must not drop
/// them. With the system's default (208 KiB here) the side-by-side benchmark lost 56 and 108 of
/// 48,000 datagrams in one of two runs on a loaded machine, coturn none
/// (`bench/turn-vs-coturn.sh`). The system caps it at `net.core.rmem_max`/`wmem_max`.
pub(crate) const SOCKET_BUFFER: usize = 1 << 20;

/// Asks for [`SOCKET_BUFFER`] on `socket`; the system's default stays where it says no.
pub(crate) fn roomy_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(err) = socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER))
    {
        tracing::debug!(%err, "TURN socket buffers stay at the system's default");
    }
}

/// The crate's credential check: coturn's REST scheme with the relay's secret.
pub(crate) struct Auth(pub(crate) Arc<State>);

impl AuthHandler for Auth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        self.0.key_for(username, realm).map_err(|why| {
            self.0.refused(why);
            turn::Error::Other(why.label().into())
        })
    }
}

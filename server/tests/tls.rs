//! The relay over https and wss, on real sockets: each test starts `server::serve` with an http
//! and an https listener on ephemeral ports and a certificate the relay issued in a temporary
//! data directory, and connects clients (rustls, trusting exactly that certificate) to it.
//!
//! Certificates are issued for `localhost` and 127.0.0.1 only, so that the tests do not depend
//! on the machine's interfaces.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, PeerId, ServerMsg, CLOSE_GOING_AWAY};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
use server::{
    tls::{self, CertNames},
    Listeners, Tls,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::{client::TlsStream, TlsConnector};
use tokio_tungstenite::{
    client_async,
    tungstenite::{self, client::IntoClientRequest, http::HeaderValue, Message},
    WebSocketStream,
};
use tokio_util::sync::{CancellationToken, DropGuard};

mod common;
use common::{next_frame, recv, RECV_TIMEOUT};

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// How often the reload test's relay looks at its certificate files.
const RELOAD_INTERVAL: Duration = Duration::from_millis(50);

fn loopback_names() -> CertNames {
    CertNames {
        dns: vec!["localhost".into()],
        ips: vec![IpAddr::from([127, 0, 0, 1])],
    }
}

/// One relay with http and https on ephemeral ports; stopped when dropped.
struct TlsRelay {
    http: SocketAddr,
    https: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
    _stop: DropGuard,
}

impl TlsRelay {
    async fn start(tls: Tls) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let https = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let (http_addr, https_addr) = (
            http.local_addr().expect("address"),
            https.local_addr().expect("address"),
        );
        let config = server::Config {
            dist: PathBuf::from("/nonexistent/relay-test-dist"),
            tls: Some(tls),
            ..server::Config::default()
        };
        let listeners = Listeners {
            http,
            https: Some(https),
            stun: None,
            turn_tls: None,
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server::serve(listeners, config, shutdown.clone()));
        Self {
            http: http_addr,
            https: https_addr,
            _stop: shutdown.clone().drop_guard(),
            shutdown,
            handle,
        }
    }
}

/// A rustls client that trusts the certificates in `pems` and nothing else.
fn trusting(pems: &[&Path]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for pem in pems {
        for cert in CertificateDer::pem_file_iter(pem).expect("reads the certificate") {
            roots
                .add(cert.expect("a certificate"))
                .expect("a usable root");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(RECV_TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("the handshake finishes in time")
        .expect("the certificate is trusted")
}

/// The SHA-256 fingerprint of the certificate the relay presents to a new connection.
async fn presented(addr: SocketAddr, connector: &TlsConnector) -> String {
    let stream = tls_connect(addr, connector).await;
    let (_, session) = stream.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the relay presents a certificate");
    tls::fingerprint(cert)
}

/// What a raw HTTP/1.1 request got back.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends `GET path` with `Connection: close` over `stream` and reads the whole answer.
async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("the answer comes in time")
        .expect("reads");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Opens a wss WebSocket with `Host: host` and, if given, `Origin: origin`.
async fn try_wss(
    addr: SocketAddr,
    connector: &TlsConnector,
    host: Option<&str>,
    origin: Option<&str>,
) -> Result<Wss, tungstenite::Error> {
    let mut request = format!("wss://{addr}/ws")
        .into_client_request()
        .expect("a valid request");
    let headers = request.headers_mut();
    if let Some(host) = host {
        headers.insert("host", HeaderValue::from_str(host).expect("a valid header"));
    }
    if let Some(origin) = origin {
        headers.insert(
            "origin",
            HeaderValue::from_str(origin).expect("a valid header"),
        );
    }
    let stream = tls_connect(addr, connector).await;
    tokio::time::timeout(RECV_TIMEOUT, client_async(request, stream))
        .await
        .expect("the upgrade is answered in time")
        .map(|(ws, _)| ws)
}

async fn wss(addr: SocketAddr, connector: &TlsConnector) -> Wss {
    try_wss(addr, connector, None, None)
        .await
        .expect("the WebSocket handshake succeeds")
}

/// Joins `room` and returns the id of the welcome.
async fn join(ws: &mut Wss, room: &str) -> PeerId {
    let msg = ClientMsg::join(room);
    ws.send(Message::text(msg.to_json())).await.expect("sends");
    match recv(ws).await {
        ServerMsg::Welcome { id, room: got, .. } => {
            assert_eq!(got, room);
            id
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

fn status_of(result: Result<Wss, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, but the upgrade succeeded"),
    }
}

#[tokio::test]
async fn https_and_wss_work_with_the_generated_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues a certificate");
    let fingerprint = tls.fingerprint();
    let relay = TlsRelay::start(tls).await;
    let client = trusting(&[&dir.path().join(tls::CERT_FILE)]);

    assert_eq!(presented(relay.https, &client).await, fingerprint);
    let health = get_over(tls_connect(relay.https, &client).await, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.head);
    assert_eq!(health.body, "ok\n");

    let mut a = wss(relay.https, &client).await;
    let mut b = wss(relay.https, &client).await;
    let a_id = join(&mut a, "secure").await;
    let b_id = join(&mut b, "secure").await;
    assert_ne!(a_id, b_id);
    assert!(matches!(recv(&mut a).await, ServerMsg::PeerJoined { peer } if peer.id == b_id));
    let offer = ClientMsg::Offer {
        to: None,
        sdp: "v=0 over tls".into(),
    };
    b.send(Message::text(offer.to_json())).await.expect("sends");
    assert!(
        matches!(recv(&mut a).await, ServerMsg::Offer { from, sdp, .. } if from == b_id && sdp == "v=0 over tls")
    );

    // Shutdown reaches the wss connections too, and the relay finishes.
    relay.shutdown.cancel();
    for ws in [&mut a, &mut b] {
        match next_frame(ws).await {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), CLOSE_GOING_AWAY),
            other => panic!("expected Close 1001, got {other:?}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(10), relay.handle)
        .await
        .expect("the relay stops in time")
        .expect("the task ends")
        .expect("the relay ends cleanly");
}

/// Connects to `addr` but checks the certificate for `name`, as a browser that typed `name`.
async fn tls_connect_as(
    addr: SocketAddr,
    name: IpAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        RECV_TIMEOUT,
        connector.connect(ServerName::IpAddress(name.into()), tcp),
    )
    .await
    .expect("the handshake finishes in time")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_certificate_is_issued_once_and_keeps_its_key_when_names_change() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = (
        dir.path().join(tls::CERT_FILE),
        dir.path().join(tls::KEY_FILE),
    );
    let first = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues");
    let key_pem = std::fs::read(&key).expect("the key was written");
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600, "the key is readable by its owner only");
    let pin = tls::spki_pin(&cert).expect("a pin");
    assert_eq!(first.spki_pin().as_ref(), Some(&pin));
    assert_eq!(pin.len(), 44, "base64 of 32 bytes: {pin}");

    let again = Tls::self_signed_for(dir.path(), &loopback_names()).expect("reuses");
    assert_eq!(
        again.fingerprint(),
        first.fingerprint(),
        "the same certificate"
    );

    // The machine got a new address: a new certificate, with the same key.
    let lan = IpAddr::from([192, 0, 2, 7]);
    let mut more = loopback_names();
    more.ips.push(lan);
    let renewed = Tls::self_signed_for(dir.path(), &more).expect("issues again");
    assert_ne!(renewed.fingerprint(), first.fingerprint());
    assert_eq!(tls::spki_pin(&cert).expect("a pin"), pin, "the same key");
    assert_eq!(std::fs::read(&key).expect("still there"), key_pem);

    // The address went away again: the certificate that covers it still covers the rest.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let back = Tls::self_signed_for(dir.path(), &loopback_names()).expect("reuses");
    assert_eq!(back.fingerprint(), renewed.fingerprint());
    #[cfg(unix)]
    assert_eq!(
        mode(&key),
        0o600,
        "a key left readable by others is closed again"
    );

    // And it really is valid for the new address.
    let relay = TlsRelay::start(back).await;
    let client = trusting(&[&cert]);
    tls_connect_as(relay.https, lan, &client)
        .await
        .expect("the certificate covers the new address");
    let other = IpAddr::from([192, 0, 2, 8]);
    assert!(
        tls_connect_as(relay.https, other, &client).await.is_err(),
        "but not any address"
    );
}

/// Copies `from`'s certificate and key (a relay data directory) to `cert` and `key`.
fn install(from: &Path, cert: &Path, key: &Path) {
    std::fs::copy(from.join(tls::KEY_FILE), key).expect("copies the key");
    std::fs::copy(from.join(tls::CERT_FILE), cert).expect("copies the certificate");
}

/// Polls new handshakes until the relay presents `want`.
async fn wait_presented(addr: SocketAddr, client: &TlsConnector, want: &str) {
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        let got = presented(addr, client).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still presenting {got}, not {want}"
        );
        tokio::time::sleep(RELOAD_INTERVAL).await;
    }
}

#[tokio::test]
async fn renewed_certificate_files_are_used_without_dropping_connections() {
    let issued: Vec<_> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues");
            (dir, tls.fingerprint())
        })
        .collect();
    let [(a_dir, a_print), (b_dir, b_print), (c_dir, c_print)] = &issued[..] else {
        unreachable!()
    };
    let live = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = (
        live.path().join("fullchain.pem"),
        live.path().join("privkey.pem"),
    );
    install(a_dir.path(), &cert, &key);
    let mut tls = Tls::from_files(&cert, &key).expect("loads");
    tls.reload_interval = RELOAD_INTERVAL;
    assert_eq!(&tls.fingerprint(), a_print);
    let relay = TlsRelay::start(tls).await;
    let pems: Vec<PathBuf> = [a_dir, b_dir, c_dir]
        .iter()
        .map(|d| d.path().join(tls::CERT_FILE))
        .collect();
    let client = trusting(&pems.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    assert_eq!(&presented(relay.https, &client).await, a_print);
    let mut early = wss(relay.https, &client).await;
    join(&mut early, "renewal").await;

    install(b_dir.path(), &cert, &key);
    wait_presented(relay.https, &client, b_print).await;

    // Halfway through a renewal (the new certificate beside the old key), and a file that
    // does not parse: the relay keeps what it has.
    std::fs::copy(c_dir.path().join(tls::CERT_FILE), &cert).expect("copies");
    tokio::time::sleep(RELOAD_INTERVAL * 4).await;
    assert_eq!(&presented(relay.https, &client).await, b_print);
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("writes");
    tokio::time::sleep(RELOAD_INTERVAL * 4).await;
    assert_eq!(&presented(relay.https, &client).await, b_print);
    install(c_dir.path(), &cert, &key);
    wait_presented(relay.https, &client, c_print).await;

    // The connection opened under the first certificate is still there.
    let mut late = wss(relay.https, &client).await;
    let late_id = join(&mut late, "renewal").await;
    assert!(matches!(recv(&mut early).await, ServerMsg::PeerJoined { peer } if peer.id == late_id));
}

/// Whether the relay closed `stream` within `within` (end of file or an error).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // A TLS alert, say: keep reading until the close.
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_clients_hold_up_nobody() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues");
    let handshake_timeout = Duration::from_secs(3);
    tls.handshake_timeout = handshake_timeout;
    let relay = TlsRelay::start(tls).await;
    let client = trusting(&[&dir.path().join(tls::CERT_FILE)]);

    let connect = || TcpStream::connect(relay.https);
    let mut garbage = connect().await.expect("connects");
    garbage
        .write_all(b"\x00\x01\x02 certainly not TLS \xff\xfe\r\n\r\n")
        .await
        .expect("writes");
    let mut plain_http = connect().await.expect("connects");
    plain_http
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("writes");
    // A handshake record that promises 200 bytes and brings one.
    let mut half = connect().await.expect("connects");
    half.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .await
        .expect("writes");
    let mut aborted = connect().await.expect("connects");
    aborted
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .await
        .expect("writes");
    drop(aborted);
    let mut silent = connect().await.expect("connects");

    // Meanwhile a good client gets through at once.
    let started = Instant::now();
    let mut ws = wss(relay.https, &client).await;
    join(&mut ws, "busy").await;
    let health = get_over(tls_connect(relay.https, &client).await, "/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        started.elapsed() < handshake_timeout / 2,
        "the good client waited {:?}",
        started.elapsed()
    );

    // The bad ones are closed: at once for what is not TLS, after the handshake timeout for
    // the ones that stall.
    assert!(closed_within(&mut garbage, RECV_TIMEOUT).await);
    assert!(closed_within(&mut plain_http, RECV_TIMEOUT).await);
    assert!(closed_within(&mut half, handshake_timeout + RECV_TIMEOUT).await);
    assert!(closed_within(&mut silent, handshake_timeout + RECV_TIMEOUT).await);
    let metrics = get_over(
        TcpStream::connect(relay.http).await.expect("connects"),
        "/metrics",
    )
    .await;
    let failed: u64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("relay_tls_handshakes_failed_total "))
        .and_then(|v| v.parse().ok())
        .expect("the counter is there");
    assert!(failed >= 4, "{}", metrics.body);

    // The good connection is still fine.
    ws.send(Message::text(r#"{"type":"dance"}"#))
        .await
        .expect("sends");
    assert!(matches!(recv(&mut ws).await, ServerMsg::Error { .. }));
}

#[tokio::test]
async fn this_machine_is_served_plain_http_without_a_redirect() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues");
    let relay = TlsRelay::start(tls).await;
    let plain = || async { TcpStream::connect(relay.http).await.expect("connects") };
    let page = get_over(plain().await, "/?room=here").await;
    assert_ne!(page.status, 308, "{}", page.head);
    assert_eq!(page.status, 404, "no bundle in this test: {}", page.head);
    let health = get_over(plain().await, "/healthz").await;
    assert_eq!(health.status, 200);

    // ws:// from this machine works as before.
    let (mut ws, _) = tokio::time::timeout(
        RECV_TIMEOUT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.http)),
    )
    .await
    .expect("in time")
    .expect("upgrades");
    let msg = ClientMsg::join("plain");
    ws.send(Message::text(msg.to_json())).await.expect("sends");
    // The relay pings at once: skip to the first text frame.
    let welcome = loop {
        let frame = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("reads");
        if let Message::Text(text) = frame {
            break ServerMsg::parse(text.as_str()).expect("a ServerMsg");
        }
    };
    assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
}

#[tokio::test]
async fn pages_of_the_relays_own_https_origin_may_connect_others_may_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues");
    let relay = TlsRelay::start(tls).await;
    let client = trusting(&[&dir.path().join(tls::CERT_FILE)]);
    let host = format!("relay.test:{}", relay.https.port());
    let own = format!("https://{host}");
    let mut ws = try_wss(relay.https, &client, Some(&host), Some(&own))
        .await
        .expect("its own origin is let in");
    join(&mut ws, "origin").await;
    let foreign = try_wss(
        relay.https,
        &client,
        Some(&host),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status_of(foreign), 403);
}

/// A client like [`trusting`] that speaks only `version`.
fn trusting_only(pem: &Path, version: &'static rustls::SupportedProtocolVersion) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).expect("reads the certificate") {
        roots
            .add(cert.expect("a certificate"))
            .expect("a usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_are_served() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues a certificate");
    let relay = TlsRelay::start(tls).await;
    let cert = dir.path().join(tls::CERT_FILE);
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let stream = tls_connect(relay.https, &trusting_only(&cert, version)).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        let health = get_over(stream, "/healthz").await;
        assert_eq!(health.status, 200, "{want:?}: {}", health.head);
    }
}

/// A ClientHello of a client whose newest version is `version` (0x0301 for TLS 1.0, 0x0302
/// for 1.1): no `supported_versions` extension (TLS 1.3 added it), CBC and RC4 suites, no
/// compression. With `modern_extensions`, it also names signature algorithms and groups, as a
/// current library limited to TLS 1.1 may, so that the version is all that is wrong with it.
fn old_client_hello(version: u16, modern_extensions: bool) -> Vec<u8> {
    let suites: [u16; 4] = [0xc013, 0xc014, 0x002f, 0x0005];
    let length = |n: usize| u16::try_from(n).expect("short").to_be_bytes();
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&length(suites.len() * 2));
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    if modern_extensions {
        // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
        // rsa_pkcs1_sha256; supported_groups: x25519, secp256r1.
        let extensions: [&[u8]; 2] = [
            &[0x00, 0x0d, 0, 8, 0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
            &[0x00, 0x0a, 0, 6, 0, 4, 0x00, 0x1d, 0x00, 0x17],
        ];
        let extensions = extensions.concat();
        body.extend_from_slice(&length(extensions.len()));
        body.extend_from_slice(&extensions);
    }
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).expect("short").to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake, record version TLS 1.0
    record.extend_from_slice(&length(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

/// What the relay answers to `hello` before it closes the connection.
async fn answer_to(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(hello).await.expect("sends the hello");
    let mut answer = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("the relay answers and closes in time")
        .expect("reads");
    answer
}

#[tokio::test]
async fn tls_1_0_and_1_1_clients_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tls = Tls::self_signed_for(dir.path(), &loopback_names()).expect("issues a certificate");
    let relay = TlsRelay::start(tls).await;
    for version in [0x0301, 0x0302] {
        // One alert record (21): fatal (2), protocol_version (70); then the close.
        let answer = answer_to(relay.https, &old_client_hello(version, true)).await;
        assert_eq!(answer.len(), 7, "{version:#06x}: {answer:02x?}");
        assert_eq!(answer[0], 21, "{version:#06x}: {answer:02x?}");
        assert_eq!(&answer[5..], [2, 70], "{version:#06x}: {answer:02x?}");
        // Without signature algorithms (TLS 1.2 added them) rustls refuses the hello for that
        // first: handshake_failure (40). Refused either way.
        let answer = answer_to(relay.https, &old_client_hello(version, false)).await;
        assert_eq!(answer.len(), 7, "{version:#06x}: {answer:02x?}");
        assert_eq!(answer[0], 21, "{version:#06x}: {answer:02x?}");
        assert_eq!(&answer[5..], [2, 40], "{version:#06x}: {answer:02x?}");
    }
}

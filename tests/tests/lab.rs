//! Calls across real network boundaries, on this machine: hosts are network namespaces, the
//! relay is the real binary, the pages are real headless Chrome, and TURN is the relay's own
//! or Debian's coturn.
//!
//! - A LAN: the relay on one host, two browsers on two others behind one switch, pages opened
//!   at `https://<relay's LAN address>:8443/` with the certificate the relay generated trusted
//!   as a person who accepted it would (its key pinned with
//!   `--ignore-certificate-errors-spki-list`); plain http from the LAN is redirected to https.
//!   A device that changes its address mid-call gets its call back by an ICE restart.
//! - Two homes behind two NAT routers whose firewalls let out only traffic to the server's
//!   address: the call connects only through TURN, the relay binary's own (no coturn) or
//!   coturn's; with a wrong secret for coturn the page says that the TURN server refused the
//!   credentials.
//! - A home whose firewall drops all UDP (the call goes over TURN on TCP), and one that lets
//!   out only TCP to the relay's https port (TURN over TLS on that port, which serves the page
//!   too).
//! - A stranger with credentials asks the relay's TURN server to send to a machine in the
//!   server's private network and to the server's loopback: refused (403), and the targets
//!   themselves see nothing arrive; a relay with `--turn-allow-private` does reach the private
//!   one, so the check could have seen it.
//!
//! Needs root; `make test-lab` runs them (as root in CI). Every lab is torn down when its test
//! ends, also when it fails.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use e2e::{
    browser::{self, status_of, wait_long},
    lab::Lab,
};

/// The relay binary, built beside this test (`cargo build -p server`; `SERVER_BIN` overrides).
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SERVER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/lab-<hash> -> target/debug/server
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("server");
    assert!(
        bin.is_file(),
        "no relay binary at {}: run `cargo build -p server` (make test-lab does)",
        bin.display()
    );
    bin
}

/// Starts the relay binary in host `ns` with `args` after the common ones, and waits until its
/// HTTPS port answers at `tls`.
async fn start_relay(lab: &mut Lab, ns: &str, log: &str, tls: SocketAddr, args: &[&str]) {
    let data = lab.dir().join("relay-data");
    // Its connections' failures too (a TLS handshake, an HTTP exchange cut short), for a page
    // of a failing test that stayed at "Loading…".
    let mut all: Vec<String> = vec![
        "RUST_LOG=info,server::http=debug".into(),
        server_bin().display().to_string(),
        "--dist".into(),
        e2e::relay::dist_dir().display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    lab.spawn(ns, log, "env", &all);
    lab.wait_listening(ns, tls, log).await;
}

/// The flag that makes Chrome trust the relay's generated certificate, as a person who
/// accepted it once would.
fn trust_relay_certificate(lab: &Lab) -> Vec<String> {
    let cert = lab.dir().join("relay-data").join("cert.pem");
    let pin = server::tls::spki_pin(&cert).expect("the relay wrote its certificate");
    vec![format!("--ignore-certificate-errors-spki-list={pin}")]
}

/// A plain `GET path` over `stream`; returns the response head.
fn http_get(mut stream: std::net::TcpStream, host: &str, path: &str) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// A LAN: the relay's host `srv` (10.77.0.1) and two devices `a` (10.77.0.2) and `b`
/// (10.77.0.3) on one switch; the relay runs with its defaults (https on 8443, STUN).
async fn lan(lab: &mut Lab) -> (String, String, String) {
    let srv = lab.host("srv");
    let a = lab.host("a");
    let b = lab.host("b");
    lab.cable((&a, "eth0", Some("10.77.0.2/24")), (&srv, "pa", None));
    lab.cable((&b, "eth0", Some("10.77.0.3/24")), (&srv, "pb", None));
    lab.bridge(&srv, "br0", "10.77.0.1/24", &["pa", "pb"]);
    for host in [&a, &b] {
        // mDNS host candidates are resolved by multicast on the LAN.
        lab.exec(host, &["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"]);
    }
    let tls: SocketAddr = "10.77.0.1:8443".parse().expect("address");
    start_relay(lab, &srv, "relay", tls, &[]).await;
    (srv, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_lan_call_over_https() {
    let Some(mut lab) = Lab::new("lan") else {
        return;
    };
    let (_srv, a, b) = lan(&mut lab).await;

    // Plain http from another device is sent to https, path and query kept.
    let plain = lab
        .connect(&a, "10.77.0.1:8080".parse().expect("address"))
        .await
        .expect("connect over plain http");
    let head = http_get(plain, "10.77.0.1:8080", "/?room=lan");
    let first = head.lines().next().unwrap_or_default();
    assert!(first.contains(" 308 "), "not a redirect: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("location: https://10.77.0.1:8443/?room=lan"),
        "redirected elsewhere: {head}"
    );

    let trust = trust_relay_certificate(&lab);
    let callee = lab.browser(&a, &trust).await;
    let caller = lab.browser(&b, &trust).await;
    let ms = browser::call(&callee, &caller, "https://10.77.0.1:8443/?room=lan").await;
    println!("call setup (LAN lab, https): {ms} ms from opening /#true to frames on both sides");
    for page in [&caller, &callee] {
        let path = browser::connection_path(page).await;
        assert!(
            ["host", "srflx", "prflx"].contains(&path.as_str()),
            "a LAN call took the path {path}"
        );
        println!("LAN lab path: {path}");
    }
    caller.close().await.expect("close the caller");
    callee.close().await.expect("close the callee");
}

/// The shared secret of the lab's coturn.
const TURN_SECRET: &str = "lab-turn-secret";

/// The relay's address on the lab's "internet".
const SERVER: &str = "10.88.0.1";

/// What each home's firewall lets out, as iptables matches after `-i lan -o wan`.
const TO_THE_SERVER: &str = "-d 10.88.0.1";
const TCP_TO_THE_SERVER: &str = "-d 10.88.0.1 -p tcp";
const TCP_TO_THE_HTTPS_PORT: &str = "-d 10.88.0.1 -p tcp --dport 8443";

/// The hosts of [`two_homes`].
struct Homes {
    srv: String,
    h1: String,
    h2: String,
}

/// The "internet": the server's host `srv` (10.88.0.1) and two home routers on one switch,
/// each with a home behind it (`h1` in 10.91.0.0/24, `h2` in 10.92.0.0/24). A home router
/// masquerades, lets out only what `out[i]` matches (iptables, e.g. [`TO_THE_SERVER`]) and
/// lets in only the answers: no two homes can reach each other directly.
fn two_homes(lab: &mut Lab, out: [&str; 2]) -> Homes {
    let srv = lab.host("srv");
    let r1 = lab.host("r1");
    let r2 = lab.host("r2");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.cable((&r1, "wan", Some("10.88.0.11/24")), (&srv, "r1w", None));
    lab.cable((&r2, "wan", Some("10.88.0.12/24")), (&srv, "r2w", None));
    lab.bridge(&srv, "br0", "10.88.0.1/24", &["r1w", "r2w"]);
    // The rest of the internet: on the real one, packets to somebody's private address vanish
    // somewhere on the way. Here a default route into a dummy interface (which has no link
    // anywhere) swallows them. Without it a TURN server's sends to the homes' host candidates
    // fail with "network unreachable", and coturn closes the allocation that carries the call.
    for host in [&srv, &r1, &r2] {
        lab.blackhole_default_route(host);
    }
    for ((router, home, net), out) in [(&r1, &h1, "10.91.0"), (&r2, &h2, "10.92.0")]
        .into_iter()
        .zip(out)
    {
        lab.cable(
            (router, "lan", Some(&format!("{net}.1/24"))),
            (home, "eth0", Some(&format!("{net}.2/24"))),
        );
        lab.exec(
            home,
            &["ip", "route", "add", "default", "via", &format!("{net}.1")],
        );
        let let_out = format!("iptables -A FORWARD -i lan -o wan {out} -j ACCEPT");
        for rule in [
            "sysctl -qw net.ipv4.ip_forward=1",
            "iptables -t nat -A POSTROUTING -o wan -j MASQUERADE",
            "iptables -P FORWARD DROP",
            &let_out,
            "iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        ] {
            lab.exec(router, &rule.split(' ').collect::<Vec<_>>());
        }
    }
    Homes { srv, h1, h2 }
}

/// The relay binary on `srv` with its own TURN server and nothing else: its defaults, with the
/// address peers reach it at named (as on a cloud machine: `srv` has other addresses too).
async fn start_relay_with_its_own_turn(lab: &mut Lab, srv: &str) {
    let tls: SocketAddr = format!("{SERVER}:8443").parse().expect("address");
    start_relay(lab, srv, "relay", tls, &["--public-ip", SERVER]).await;
}

/// The relay's `/metrics`, fetched on its own host's loopback.
async fn metrics(lab: &Lab, srv: &str, port: u16) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = lab.connect(srv, addr).await.expect("connect to the relay");
    http_get(stream, &addr.to_string(), "/metrics")
}

/// The value of the metric line that starts with `name ` (labels included), 0 if none.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Calls from `h2` to `h1` at `https://10.88.0.1:8443/?room=<room>`, checks that both sides
/// go through TURN and that frames keep coming both ways through it, and prints the call setup
/// time as `what`. Returns the pages, the callee's first.
async fn call_through_turn(
    lab: &mut Lab,
    homes: &Homes,
    room: &str,
    what: &str,
) -> (fantoccini::Client, fantoccini::Client) {
    let trust = trust_relay_certificate(lab);
    let callee = lab.browser(&homes.h1, &trust).await;
    let caller = lab.browser(&homes.h2, &trust).await;
    let url = format!("https://{SERVER}:8443/?room={room}");
    let ms = browser::call(&callee, &caller, &url).await;
    println!("call setup ({what}): {ms} ms from opening /#true to frames on both sides");
    for page in [&caller, &callee] {
        assert_eq!(browser::connection_path(page).await, "relay");
    }
    // The call stays up through the relay: seconds later, frames still arrive both ways (an
    // allocation that was dropped would have stopped them within a few seconds).
    let before = [
        browser::frames(&caller).await,
        browser::frames(&callee).await,
    ];
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (page, before) in [&caller, &callee].into_iter().zip(before) {
        let after = browser::frames(page).await;
        assert!(
            after > before + 30,
            "only {} frames in 8 s through TURN ({what})",
            after - before
        );
    }
    (callee, caller)
}

/// Closes the pages of a call.
async fn hang_up((callee, caller): (fantoccini::Client, fantoccini::Client)) {
    caller.close().await.expect("close the caller");
    callee.close().await.expect("close the callee");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_two_strict_nats_call_through_the_relays_own_turn() {
    let Some(mut lab) = Lab::new("own-turn") else {
        return;
    };
    let homes = two_homes(&mut lab, [TO_THE_SERVER; 2]);
    start_relay_with_its_own_turn(&mut lab, &homes.srv).await;
    let call = call_through_turn(
        &mut lab,
        &homes,
        "own-turn",
        "two NATs, the relay's own TURN over UDP",
    )
    .await;
    let metrics = metrics(&lab, &homes.srv, 8080).await;
    assert!(
        metric(&metrics, "relay_turn_allocations_total") >= 2,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "relay_turn_bytes_relayed_total") > 1_000_000,
        "{metrics}"
    );
    hang_up(call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_a_home_without_udp_calls_over_turn_on_tcp() {
    let Some(mut lab) = Lab::new("no-udp") else {
        return;
    };
    let homes = two_homes(&mut lab, [TCP_TO_THE_SERVER, TO_THE_SERVER]);
    start_relay_with_its_own_turn(&mut lab, &homes.srv).await;
    let call = call_through_turn(
        &mut lab,
        &homes,
        "no-udp",
        "one home drops all UDP: TURN over TCP",
    )
    .await;
    let metrics = metrics(&lab, &homes.srv, 8080).await;
    assert!(
        metric(&metrics, "relay_turn_connections_total{transport=\"tcp\"}") >= 1,
        "{metrics}"
    );
    hang_up(call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_a_home_that_lets_out_only_the_https_port_calls_over_turns_there() {
    let Some(mut lab) = Lab::new("https-only") else {
        return;
    };
    let homes = two_homes(&mut lab, [TCP_TO_THE_HTTPS_PORT, TO_THE_SERVER]);
    start_relay_with_its_own_turn(&mut lab, &homes.srv).await;
    let call = call_through_turn(
        &mut lab,
        &homes,
        "https-only",
        "one home lets out only TCP to the https port: TURN over TLS there",
    )
    .await;
    let metrics = metrics(&lab, &homes.srv, 8080).await;
    assert!(
        metric(&metrics, "relay_turn_connections_total{transport=\"tls\"}") >= 1,
        "{metrics}"
    );
    hang_up(call).await;
}

/// A UDP echo server on `addr` in host `ns` that logs each datagram it gets as `got ...`.
fn udp_target(lab: &mut Lab, ns: &str, log: &str, addr: SocketAddr) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{ip}', {port}))\n\
         print('listening', flush=True)\n\
         while True:\n    d, a = s.recvfrom(65535)\n    print('got', len(d), a, flush=True)\n    s.sendto(d, a)\n",
        ip = addr.ip(),
        port = addr.port()
    );
    lab.spawn(ns, log, "python3", &["-u".into(), "-c".into(), script]);
}

/// Datagrams the target logged as `log` has received.
fn received(lab: &Lab, log: &str) -> usize {
    lab.log(log)
        .iter()
        .filter(|l| l.starts_with("got "))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_turn_refuses_private_and_loopback_peers_and_nothing_reaches_them() {
    let Some(mut lab) = Lab::new("refuse") else {
        return;
    };
    let homes = two_homes(&mut lab, [TO_THE_SERVER; 2]);
    // A machine in the server's private network, and a service on the server's loopback: what
    // a stranger with credentials must not reach through the relay.
    let inside = lab.host("inside");
    lab.cable(
        (&inside, "eth0", Some("10.88.0.50/24")),
        (&homes.srv, "inw", None),
    );
    lab.exec(&homes.srv, &["ip", "link", "set", "inw", "master", "br0"]);
    let private: SocketAddr = "10.88.0.50:7000".parse().expect("address");
    let loopback: SocketAddr = "127.0.0.1:7000".parse().expect("address");
    udp_target(&mut lab, &inside, "private-target", private);
    udp_target(&mut lab, &homes.srv, "loopback-target", loopback);
    start_relay_with_its_own_turn(&mut lab, &homes.srv).await;
    // Another relay beside it that may relay to private addresses (--turn-allow-private).
    let lenient_tls: SocketAddr = format!("{SERVER}:8444").parse().expect("address");
    let lenient = [
        "--public-ip",
        SERVER,
        "--port",
        "8081",
        "--tls-port",
        "8444",
        "--stun-port",
        "3480",
        "--turn-ports",
        "49300-49399",
        "--turn-allow-private",
    ];
    start_relay(&mut lab, &homes.srv, "relay-lenient", lenient_tls, &lenient).await;
    for log in ["private-target", "loopback-target"] {
        assert!(lab.running(log), "{log}: {:?}", lab.log(log));
    }

    // coturn's client in a home, with credentials as the relay mints them, asks to send to a
    // peer: with a channel (ChannelBind) and without (CreatePermission, then Send).
    let secret = std::fs::read_to_string(lab.dir().join("relay-data").join("turn-secret"))
        .expect("the relay keeps its TURN secret");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let username = format!("{expiry}:lab");
    let password = server::turn_credential(&server::TurnSecret::new(secret.trim()), &username);
    let send = |lab: &Lab, port: &str, peer: SocketAddr, channel: bool| -> String {
        let peer_ip = peer.ip().to_string();
        let peer_port = peer.port().to_string();
        let mut args = vec![
            "turnutils_uclient",
            "-e",
            &peer_ip,
            "-r",
            &peer_port,
            "-n",
            "5",
            "-m",
            "1",
            "-l",
            "100",
            "-u",
            &username,
            "-w",
            &password,
            "-p",
            port,
        ];
        if !channel {
            args.push("-c");
        }
        args.push(SERVER);
        lab.output(&homes.h1, Duration::from_secs(20), &args)
    };

    for peer in [private, loopback] {
        for channel in [true, false] {
            let out = send(&lab, "3478", peer, channel);
            assert!(
                out.contains("403"),
                "a permission to {peer} (channel: {channel}) was not refused:\n{out}"
            );
        }
    }
    // A moment for anything that got through to arrive, then the targets' own view.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        received(&lab, "private-target"),
        0,
        "relayed to a private address"
    );
    assert_eq!(received(&lab, "loopback-target"), 0, "relayed to loopback");
    let metrics = metrics(&lab, &homes.srv, 8080).await;
    assert!(
        metric(&metrics, "relay_turn_refused_total{reason=\"private\"}") >= 2,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "relay_turn_refused_total{reason=\"loopback\"}") >= 2,
        "{metrics}"
    );

    // The same request through the lenient relay reaches the private machine, so the check
    // above could have seen it; loopback stays refused there too.
    let out = send(&lab, "3480", private, false);
    assert!(
        !out.contains("403"),
        "refused with --turn-allow-private:\n{out}"
    );
    assert!(
        received(&lab, "private-target") > 0,
        "nothing arrived:\n{out}"
    );
    let out = send(&lab, "3480", loopback, false);
    assert!(out.contains("403"), "loopback allowed:\n{out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(received(&lab, "loopback-target"), 0, "relayed to loopback");
    println!(
        "TURN refusals seen from the targets: private and loopback refused (403), nothing arrived; with --turn-allow-private the private one got {} datagrams",
        received(&lab, "private-target")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_two_homes_behind_nat_call_through_coturn() {
    let Some(mut lab) = Lab::new("nat") else {
        return;
    };
    let homes = two_homes(&mut lab, [TO_THE_SERVER; 2]);
    let srv = homes.srv.clone();
    let coturn: Vec<String> = [
        "-n",
        "--no-cli",
        "--listening-ip=10.88.0.1",
        "--relay-ip=10.88.0.1",
        "--listening-port=3479",
        "--min-port=49160",
        "--max-port=49260",
        "--use-auth-secret",
        &format!("--static-auth-secret={TURN_SECRET}"),
        "--realm=lab.test",
        "--no-tls",
        "--no-dtls",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    lab.spawn(&srv, "coturn", "turnserver", &coturn);

    let tls: SocketAddr = "10.88.0.1:8443".parse().expect("address");
    let turn = ["--turn-url", "turn:10.88.0.1:3479"];
    let secret = ["--turn-secret", TURN_SECRET];
    start_relay(
        &mut lab,
        &srv,
        "relay",
        tls,
        &[&turn[..], &secret[..]].concat(),
    )
    .await;
    assert!(
        lab.running("coturn"),
        "coturn exited: {:?}",
        lab.log("coturn")
    );
    let (callee, caller) =
        call_through_turn(&mut lab, &homes, "nat", "two NATs, through coturn").await;

    // A relay whose secret is not coturn's: the page says the TURN server refused it.
    let wrong_tls: SocketAddr = "10.88.0.1:8444".parse().expect("address");
    let wrong = [
        "--port",
        "8081",
        "--tls-port",
        "8444",
        "--stun-port",
        "0",
        "--turn-secret",
        "not-the-secret",
    ];
    start_relay(
        &mut lab,
        &srv,
        "relay-wrong-secret",
        wrong_tls,
        &[&turn[..], &wrong[..]].concat(),
    )
    .await;
    let url = "https://10.88.0.1:8444/?room=wrong";
    callee.goto(url).await.expect("open the callee page");
    caller
        .goto(&format!("{url}#true"))
        .await
        .expect("open the caller page");
    for page in [&caller, &callee] {
        wait_long(
            page,
            "the page to say that TURN refused the credentials",
            "const s = document.getElementById('status');
             return s.dataset.state === 'error' && s.textContent.includes('refused the credentials');",
            Duration::from_secs(90),
        )
        .await;
        assert_eq!(browser::frames(page).await, 0, "media without a path");
    }
    println!("NAT lab, wrong TURN secret: {}", status_of(&caller).await.1);
    caller.close().await.expect("close the caller");
    callee.close().await.expect("close the callee");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_address_change_mid_call_recovers_by_ice_restart() {
    let Some(mut lab) = Lab::new("move") else {
        return;
    };
    let (_srv, a, b) = lan(&mut lab).await;
    let trust = trust_relay_certificate(&lab);
    let callee = lab.browser(&a, &trust).await;
    let caller = lab.browser(&b, &trust).await;
    browser::call(&callee, &caller, "https://10.77.0.1:8443/?room=move").await;

    // A's device gets another address on the network (a new DHCP lease, another Wi-Fi): its
    // candidates, and its socket to the relay, are gone with the old one.
    let moved = std::time::Instant::now();
    // (Old one out first: deleting a subnet's primary address takes its secondaries with it.)
    lab.exec(&a, &["ip", "addr", "del", "10.77.0.2/24", "dev", "eth0"]);
    lab.exec(&a, &["ip", "addr", "add", "10.77.0.12/24", "dev", "eth0"]);
    // Both connections drop; the impolite side restarts ICE (the polite one would after a
    // grace period), through the relay that the moved page has meanwhile rejoined.
    let dropped = "return (window.__callLog || []).some(l => l.includes('State(Disconnected)'));";
    browser::wait_pages(
        &[("moved", &callee), ("stayed", &caller)],
        "the call to notice the move",
        dropped,
        Duration::from_secs(60),
    )
    .await;
    for page in [&callee, &caller] {
        page.execute(
            &format!(
                "{} window.__framesBefore = frames();",
                browser::REMOTE_FRAMES_FN
            ),
            vec![],
        )
        .await
        .expect("script runs");
    }
    browser::wait_pages(
        &[("moved", &callee), ("stayed", &caller)],
        "frames again after the address change",
        &format!(
            "{} return frames() > window.__framesBefore + 10
                && document.querySelector('#remotes figure[data-conn]').dataset.state === 'connected';",
            browser::REMOTE_FRAMES_FN
        ),
        Duration::from_secs(60),
    )
    .await;
    println!(
        "address change: frames flowing again both ways {} ms after the device moved (ICE restart, no reload)",
        moved.elapsed().as_millis()
    );
    let mut restarted = 0;
    for page in [&callee, &caller] {
        let did = page
            .execute(
                "return (window.__callLog || []).some(l => l.includes('RestartIce'));",
                vec![],
            )
            .await
            .expect("script runs");
        restarted += usize::from(did.as_bool() == Some(true));
    }
    assert!(restarted >= 1, "recovered without an ICE restart");
    // The same call, not a new one: still the first connection on both pages.
    for page in [&callee, &caller] {
        let conn = page
            .execute(
                "return document.querySelector('#remotes figure[data-conn]').dataset.conn",
                vec![],
            )
            .await
            .expect("script runs");
        assert_eq!(conn.as_str(), Some("0"), "the call was rebuilt");
    }
    caller.close().await.expect("close the caller");
    callee.close().await.expect("close the callee");
}

//! Fuzz targets for what the relay reads from strangers before any WebSocket exists: STUN
//! Binding requests ([`crate::stun::answer`]), the `Host` and `Origin` headers
//! ([`crate::host`], [`crate::limits::origin_allowed`], [`crate::redirect_target`]) and the
//! upgrade request's headers ([`Upgrade`]). The TURN pre-filter and TCP framing have theirs in
//! `turn_server/fuzz.rs`, the JSON readers in `protocol/tests/fuzz.rs`, and whole requests and
//! frames over a socket in `tests/fuzz.rs`. See the `fuzzing` crate for how they run.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::FromRequestParts,
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode},
    response::IntoResponse,
};
use bytecodec::DecodeExt;
use fuzzing::{
    byte_edits, bytes, check, edit_bytes, proptest::prelude::*,
    proptest::test_runner::TestCaseError, run,
};
use stun_codec::{
    rfc5389::{attributes::XorMappedAddress, methods::BINDING, Attribute},
    MessageClass, MessageDecoder,
};

use crate::{
    host::{hostname, url_host},
    limits::origin_allowed,
    redirect_target,
    upgrade::Upgrade,
};

/// Cases per target in `cargo test`: about a second each in a debug build.
const CASES: u32 = 300;

/// The STUN attribute types worth hitting: the ones RFC 5389 and RFC 5766 define, and some
/// unknown ones, comprehension-required and not.
const ATTRIBUTES: [u16; 22] = [
    0x0001, 0x0006, 0x0008, 0x0009, 0x000a, 0x000c, 0x000d, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016,
    0x0017, 0x0018, 0x0019, 0x001a, 0x0020, 0x0024, 0x8022, 0x8028, 0x7fff, 0xffff,
];

/// A STUN message with a valid header (magic cookie, length of what follows) and attributes
/// of known and unknown types, with values well formed (an address) or not.
pub(crate) fn stun_message(types: &'static [u16]) -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        // An address attribute's value: reserved, family (1 or 2 valid), port, address.
        (
            0u8..4,
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 4..=16)
        )
            .prop_map(|(family, port, address)| {
                let mut value = vec![0, family];
                value.extend_from_slice(&port.to_be_bytes());
                value.extend_from_slice(&address);
                value
            }),
    ];
    let attribute = (
        prop_oneof![3 => prop::sample::select(&ATTRIBUTES[..]), 1 => any::<u16>()],
        value,
    );
    (
        prop_oneof![3 => prop::sample::select(types), 1 => any::<u16>()],
        any::<[u8; 12]>(),
        prop::collection::vec(attribute, 0..5),
    )
        .prop_map(|(kind, transaction, attributes)| {
            let mut body = Vec::new();
            for (kind, value) in attributes {
                body.extend_from_slice(&kind.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(&value);
                body.resize(body.len().div_ceil(4) * 4, 0);
            }
            let mut message = kind.to_be_bytes().to_vec();
            message.extend_from_slice(&(body.len() as u16).to_be_bytes());
            message.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            message.extend_from_slice(&transaction);
            message.extend_from_slice(&body);
            message
        })
}

/// Datagrams for a STUN reader: arbitrary bytes, and STUN messages of `types` as built or
/// with a few bytes, length fields or the end changed.
pub(crate) fn datagrams(types: &'static [u16]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => bytes(600),
        3 => (stun_message(types), byte_edits()).prop_map(|(m, edits)| edit_bytes(m, &edits)),
    ]
}

/// Any source address, IPv4, IPv6 or IPv4 as a dual-stack socket reports it.
fn source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        any::<(u32, u16)>().prop_map(|(ip, port)| SocketAddr::from((ip.to_be_bytes(), port))),
        any::<(u128, u16)>().prop_map(|(ip, port)| SocketAddr::from((ip.to_be_bytes(), port))),
        any::<(u32, u16)>().prop_map(|(ip, port)| {
            let ip = std::net::Ipv4Addr::from(ip).to_ipv6_mapped();
            SocketAddr::from((ip, port))
        }),
    ]
}

/// The STUN server answers a Binding request, and only that, with the address it came from;
/// whatever else arrives is dropped without a panic.
#[test]
fn fuzz_stun_binding() {
    const TYPES: &[u16] = &[0x0001, 0x0011, 0x0101, 0x0111, 0x0003];
    run(
        "stun-binding",
        CASES,
        (datagrams(TYPES), source()),
        |(datagram, from)| {
            let Some(reply) = crate::stun::answer(&datagram, from) else {
                return Ok(());
            };
            check(datagram.starts_with(&[0x00, 0x01]), || {
                "answered a non-request".into()
            })?;
            let response = MessageDecoder::<Attribute>::new()
                .decode_from_bytes(&reply)
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| TestCaseError::fail("the answer does not decode"))?;
            check(
                response.class() == MessageClass::SuccessResponse && response.method() == BINDING,
                || "not a Binding success".into(),
            )?;
            check(
                response.transaction_id().as_bytes()[..] == datagram[8..20],
                || "another transaction".into(),
            )?;
            let mapped = response
                .get_attribute::<XorMappedAddress>()
                .map(|a| a.address());
            let expected = SocketAddr::new(from.ip().to_canonical(), from.port());
            check(mapped == Some(expected), || {
                format!("mapped {mapped:?}, not {expected}")
            })
        },
    );
}

/// Host names, well formed and not: names and addresses, ports, brackets, user names, paths,
/// spaces, zone ids and arbitrary text.
fn authority() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        prop::sample::select(
            &[
                "relay",
                "RELAY.example",
                "relay.example",
                "evil.example",
                "localhost",
                "127.0.0.1",
                "127.9.9.9",
                "192.168.1.20",
                "[::1]",
                "[fd00::1]",
                "[fe80::1%eth0]",
                "[nope]",
                "[::1",
                "::1",
                "",
                "user@relay",
                "relay@evil.example",
                "relay/path",
                "a b",
                "relay?transport=tcp",
                "relay.evil.example",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z0-9.\\-]{1,300}",
        any::<String>(),
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":8443".to_owned()),
        Just(":".to_owned()),
        "[ -~]{0,8}".prop_map(|s| format!(":{s}")),
    ];
    (host, port).prop_map(|(host, port)| format!("{host}{port}"))
}

/// A host for a URL is a plain name or address or a bracketed IPv6 address, taken out of the
/// header unchanged; a redirect never goes elsewhere than that host.
#[test]
fn fuzz_host_header() {
    let cases = (authority(), any::<bool>(), "[ -~]{0,20}", any::<u16>());
    run(
        "host-header",
        CASES,
        cases,
        |(authority, lan, path, port)| {
            let host = hostname(&authority);
            check(authority.starts_with(host), || {
                format!("{host:?} is not of {authority:?}")
            })?;
            let Some(url) = url_host(&authority) else {
                return Ok(());
            };
            check(authority.contains(url), || {
                format!("{url:?} is not of {authority:?}")
            })?;
            let plain = url.len() <= 253
                && !url.is_empty()
                && url
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            let v6 = url
                .strip_prefix('[')
                .and_then(|u| u.strip_suffix(']'))
                .is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
            check(plain || v6, || format!("{url:?} would bend a URL"))?;
            let client: IpAddr = if lan {
                [192, 168, 1, 9].into()
            } else {
                [127, 0, 0, 1].into()
            };
            if let Some(target) = redirect_target(client, Some(&authority), &path, port) {
                let expected = format!("https://{url}");
                let rest = target.strip_prefix(&expected).unwrap_or_default();
                check(rest.starts_with(':') || rest.starts_with('/'), || {
                    format!("{target:?} does not go to {url:?}")
                })?;
            }
            Ok(())
        },
    );
}

/// The header value of `text`, if it can be one.
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "[::1]" || host.starts_with("127.")
}

/// A page may open a socket only from the relay's own host (any port, loopback names being
/// one), or from an allowed origin when there is a list; a request without `Origin` is no
/// browser's and goes ahead.
#[test]
fn fuzz_origin() {
    const HOSTS: &[&str] = &[
        "relay",
        "RELAY",
        "relay.example",
        "evil.example",
        "relay.example.evil",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "[fd00::1]",
        "",
    ];
    let browser = (
        prop::sample::select(&["http", "https", "chrome-extension"][..]),
        prop::sample::select(HOSTS),
        prop::option::of(any::<u16>()),
        prop::sample::select(HOSTS),
        prop::option::of(any::<u16>()),
    );
    let junk = (prop::option::of(authority()), authority());
    let list = prop::collection::vec(
        prop_oneof![
            Just("*".to_owned()),
            Just("https://relay.example".to_owned()),
            authority()
        ],
        0..3,
    );
    let cases = prop_oneof![
        browser.prop_map(|(scheme, origin, origin_port, host, host_port)| {
            let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
            (
                Some(format!("{scheme}://{origin}{}", port(origin_port))),
                format!("{host}{}", port(host_port)),
                true,
            )
        }),
        junk.prop_map(|(origin, host)| (origin, host, false)),
    ];
    run(
        "origin",
        CASES,
        (cases, list),
        |((origin, host, shaped), list)| {
            let mut headers = HeaderMap::new();
            if let Some(value) = header_value(&host) {
                headers.insert(header::HOST, value);
            }
            let origin = origin.as_deref().and_then(|o| Some((o, header_value(o)?)));
            if let Some((_, value)) = &origin {
                headers.insert(header::ORIGIN, value.clone());
            }
            let allowed = origin_allowed(&headers, &list);
            let Some((origin, _)) = origin else {
                return check(allowed, || "a request without Origin was refused".into());
            };
            if headers
                .get(header::ORIGIN)
                .is_some_and(|o| o.to_str().is_err())
            {
                // Not text: no browser sends it, and the relay cannot compare it.
                return check(!allowed, || format!("{origin:?} allowed"));
            }
            if !list.is_empty() {
                let listed = list
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
                return check(allowed == listed, || {
                    format!("{origin:?} allowed: {allowed}")
                });
            }
            if shaped {
                // A browser's origin: scheme://host[:port].
                let origin_host = hostname(origin.split_once("://").map_or("", |(_, a)| a));
                let host = if headers.contains_key(header::HOST) {
                    hostname(&host)
                } else {
                    ""
                };
                let same = !origin_host.is_empty()
                    && (origin_host.eq_ignore_ascii_case(host)
                        || loopback(origin_host) && loopback(host));
                return check(allowed == same, || {
                    format!("{origin:?} from a page, relay at {host:?}: allowed {allowed}")
                });
            }
            Ok(())
        },
    );
}

/// The headers an upgrade request may carry, right and wrong.
fn upgrade_headers() -> impl Strategy<Value = Vec<(HeaderName, String)>> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::ORIGIN,
            header::HOST,
        ]),
        1 => "[a-z\\-]{1,20}".prop_filter_map("a header name", |n| HeaderName::try_from(n).ok()),
    ];
    let value = prop_oneof![
        prop::sample::select(
            &[
                "Upgrade",
                "keep-alive, Upgrade",
                "upgrade",
                "close",
                "websocket",
                "WebSocket",
                "websocket, h2c",
                "13",
                "8",
                "13, 8",
                "",
                "dGhlIHNhbXBsZSBub25jZQ==",
            ][..]
        )
        .prop_map(str::to_owned),
        "[ -~\u{80}-\u{ff}]{0,40}",
        any::<String>(),
    ];
    prop::collection::vec((name, value), 0..8)
}

/// The upgrade's checks answer every request with axum's status for what is wrong first, and
/// never panic; a request that passes them all still needs hyper's upgrade state, which only a
/// real connection has (`tests/fuzz.rs` sends those).
#[test]
fn fuzz_upgrade_request() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let method = prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::HEAD),
        "[A-Za-z]{1,8}".prop_filter_map("a method", |m| Method::from_bytes(m.as_bytes()).ok()),
    ];
    run(
        "upgrade-request",
        CASES,
        (method, upgrade_headers()),
        |(method, headers)| {
            let mut request = Request::builder().method(method.clone()).uri("/ws");
            for (name, value) in &headers {
                if let Some(value) = header_value(value) {
                    request = request.header(name, value);
                }
            }
            let (mut parts, ()) = request.body(()).expect("a request").into_parts();
            let got = runtime.block_on(Upgrade::from_request_parts(&mut parts, &()));
            let Err(refusal) = got else {
                return check(false, || "upgraded without hyper's upgrade state".into());
            };
            let status = refusal.into_response().status();
            let h = &parts.headers;
            let eq = |name, value: &str| {
                h.get(name)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
            };
            let expected = if method != Method::GET {
                StatusCode::METHOD_NOT_ALLOWED
            } else if !h
                .get(header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
                || !eq(header::UPGRADE, "websocket")
                || !h.contains_key(header::SEC_WEBSOCKET_KEY)
                || !eq(header::SEC_WEBSOCKET_VERSION, "13")
            {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UPGRADE_REQUIRED
            };
            check(status == expected, || format!("{status}, not {expected}"))
        },
    );
}

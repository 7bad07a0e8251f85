//! The page's security headers over real sockets: the relay serves a client directory made in
//! a temporary directory (the built `dist/` is not there before the client is built), and the
//! tests read the raw HTTP/1.1 answers.
//!
//! The hashes the tests expect are computed here, from the scripts the tests wrote or found
//! with a scan of their own, not with the relay's code: a mistake in the relay's reading of the
//! page must fail a test, not agree with itself.

use std::{net::SocketAddr, path::Path, time::Duration};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::{CancellationToken, DropGuard};

mod common;

use common::http::Response;

/// How long a response may take before the test fails instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The early script of the test page: the language texts, as the real page has them.
const EARLY: &str =
    "\n    window.__lang = 0;\n    window.__early = function (en) { return en; };\n  ";

/// The test page's wasm loader, as scripts/build-client.sh writes it.
const LOADER: &str =
    r#"import init from "./client-0123.js"; init().catch((e) => { console.error(e); });"#;

/// A page like the built one: an early inline script, a stylesheet, the module loader inline,
/// and an external script, which needs no hash.
fn page() -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <script>{EARLY}</script>\n  <link rel=\"stylesheet\" href=\"./style.css\">\n  \
         <link rel=\"modulepreload\" href=\"./client-0123.js\">\n  \
         <script type=\"module\">{LOADER}</script>\n  <script src=\"./other.js\"></script>\n\
         </head>\n<body><p id=\"status\">Loading…</p></body>\n</html>\n"
    )
}

/// CSP's `'sha256-…'` of a script's text.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The policy the relay must send for a page with inline `scripts`, reached at `host`.
fn expected_policy(scripts: &[&str], host: &str) -> String {
    let hashes: String = scripts
        .iter()
        .map(|s| format!(" {}", csp_hash(s)))
        .collect();
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self'; \
         connect-src 'self' ws://{host} wss://{host}; img-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    )
}

/// A relay on plain http serving `dist`; stopped when dropped.
struct Relay {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl Relay {
    async fn serving(dist: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let config = server::Config {
            dist: dist.to_owned(),
            ..server::Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(listener, config, shutdown.clone()));
        Self {
            addr,
            _stop: shutdown.drop_guard(),
        }
    }
}

/// `GET path` with `Accept-Encoding: identity`, so that the body reads as sent.
async fn get(addr: SocketAddr, path: &str) -> Response {
    common::http::get_with(addr, path, "Accept-Encoding: identity\r\n").await
}

/// A temporary client directory holding `index.html` and the files it names.
fn dist_with(index: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("index.html"), index).expect("writes index.html");
    std::fs::write(dir.path().join("style.css"), "body { margin: 0 }\n").expect("writes");
    std::fs::write(dir.path().join("client-0123.js"), "export default 1;\n").expect("writes");
    dir
}

/// The same-for-every-response headers, with their exact values.
fn assert_fixed_headers(response: &Response, what: &str) {
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        response.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        response.header("permissions-policy"),
        Some("camera=(self), microphone=(self), display-capture=(self)"),
        "{what}"
    );
}

#[tokio::test]
async fn the_page_has_its_headers_at_both_of_its_addresses() {
    let dist = dist_with(&page());
    let relay = Relay::serving(dist.path()).await;
    let policy = expected_policy(&[EARLY, LOADER], &relay.addr.to_string());
    for path in ["/", "/index.html"] {
        let response = get(relay.addr, path).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.text(), page(), "{path}");
        assert_fixed_headers(&response, path);
        assert_eq!(
            response.header("content-security-policy"),
            Some(policy.as_str()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn other_responses_have_the_headers_that_concern_them() {
    let dist = dist_with(&page());
    let relay = Relay::serving(dist.path()).await;
    for path in [
        "/style.css",
        "/client-0123.js",
        "/healthz",
        "/metrics",
        "/missing",
    ] {
        let response = get(relay.addr, path).await;
        assert_fixed_headers(&response, path);
        // A policy is a page's: a stylesheet or a text has no scripts to restrict.
        assert!(response.all("content-security-policy").is_empty(), "{path}");
    }
    let script = get(relay.addr, "/client-0123.js").await;
    let kind = script.header("content-type");
    assert!(
        kind.is_some_and(|kind| kind.starts_with("text/javascript")),
        "nosniff needs a script type: {kind:?}"
    );
}

#[tokio::test]
async fn a_rebuilt_page_is_served_with_its_new_hashes() {
    let dist = dist_with(&page());
    let relay = Relay::serving(dist.path()).await;
    let changed = page().replace("__lang = 0", "__lang = 1");
    std::fs::write(dist.path().join("index.html"), &changed).expect("rewrites index.html");
    let response = get(relay.addr, "/").await;
    assert_eq!(response.text(), changed);
    let early = EARLY.replace("__lang = 0", "__lang = 1");
    assert_eq!(
        response.header("content-security-policy"),
        Some(expected_policy(&[&early, LOADER], &relay.addr.to_string()).as_str())
    );
}

#[tokio::test]
async fn a_foreign_host_header_cannot_bend_the_policy() {
    let dist = dist_with(&page());
    let relay = Relay::serving(dist.path()).await;
    let mut stream = TcpStream::connect(relay.addr).await.expect("connects");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x; script-src *\r\nConnection: close\r\n\r\n")
        .await
        .expect("sends");
    let mut raw = Vec::new();
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("the response arrives in time")
        .expect("reads");
    let text = String::from_utf8_lossy(&raw);
    let policy = text
        .lines()
        .find_map(|line| line.strip_prefix("content-security-policy: "))
        .expect("a policy");
    assert!(policy.contains("connect-src 'self';"), "{policy}");
    assert!(!policy.contains('*'), "{policy}");
}

/// The inline scripts of `html` as a browser would run them, by a plain scan: every
/// `<script ...>` without `src=` up to the next `</script>`.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let tag = &rest[start..];
        let open_end = tag.find('>').expect("a start tag ends");
        let close = tag.find("</script>").expect("a script ends");
        if !tag[..open_end].contains(" src=") {
            found.push(&tag[open_end + 1..close]);
        }
        rest = &tag[close..];
    }
    found
}

/// The real page (www/index.html) with the loader scripts/build-client.sh puts in place of
/// Trunk's lines, so that the test sees the scripts a browser will run.
fn built_page() -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/index.html");
    let html = std::fs::read_to_string(&source).expect("reads www/index.html");
    let loader = format!(
        "<link rel=\"stylesheet\" href=\"./style.css\">\n  <script type=\"module\">{LOADER}</script>"
    );
    html.lines()
        .filter(|line| !line.contains("data-trunk rel=\"rust\""))
        .map(|line| {
            if line.contains("data-trunk rel=\"css\"") {
                format!("  {loader}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_policy_lets_the_real_page_run_its_scripts() {
    let html = built_page();
    let scripts = inline_scripts(&html);
    assert!(
        scripts.len() >= 2,
        "the early script and the loader: {scripts:?}"
    );
    let dist = dist_with(&html);
    let relay = Relay::serving(dist.path()).await;
    let response = get(relay.addr, "/").await;
    assert_eq!(response.text(), html);
    let policy = response
        .header("content-security-policy")
        .expect("a policy");
    let script_src = policy
        .split(';')
        .map(str::trim)
        .find_map(|directive| directive.strip_prefix("script-src "))
        .expect("a script-src");
    for script in scripts {
        let hash = csp_hash(script);
        assert!(
            script_src.split(' ').any(|source| source == hash),
            "{hash} (of {script:?}) is not in {script_src}"
        );
    }
}

#[test]
fn the_page_has_nothing_inline_that_a_hash_cannot_allow() {
    // Hashes allow `<script>` elements only: event handler attributes, `javascript:` URLs and
    // `style` attributes or elements would be blocked by the policy.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/index.html");
    let html = std::fs::read_to_string(source)
        .expect("reads www/index.html")
        .to_ascii_lowercase();
    let mut words = html.split(|c: char| c.is_ascii_whitespace() || c == '<');
    assert!(
        !words.any(|word| word.starts_with("on") && word.contains('=')),
        "an inline event handler in www/index.html"
    );
    for blocked in ["javascript:", " style=", "<style"] {
        assert!(!html.contains(blocked), "{blocked:?} in www/index.html");
    }
}

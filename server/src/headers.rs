//! The security headers every response carries, and the page's Content-Security-Policy.
//!
//! The policy allows exactly what the page does: its own scripts, styles and WebSocket, the
//! compilation of its WebAssembly, and the inline scripts of the `index.html` it is served with,
//! by their SHA-256 hashes. Those hashes are taken from `index.html` in the client directory
//! each time a page is served, so that a rebuilt page (scripts/build-client.sh, `trunk build`,
//! an edited `www/index.html`) can never be served with a policy that blocks its own code.

use std::{path::PathBuf, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::host::{hostname, url_host};

/// `nosniff`: a response is only ever what its `Content-Type` says, so that a file or a text
/// the relay serves (a chat line in a log, a metrics label) is never run as script or HTML.
pub const CONTENT_TYPE_OPTIONS: &str = "nosniff";

/// `no-referrer`: the page loads nothing from anywhere else and links nowhere, and its address
/// names the room, which must not leave with a request. Browsers still send `Origin` on the
/// WebSocket upgrade, which the relay's origin check reads.
pub const REFERRER_POLICY: &str = "no-referrer";

/// Camera, microphone and screen capture for the page's own origin only: no frame of another
/// origin may ask for them, even one the page were to embed.
pub const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(self), display-capture=(self)";

/// The Content-Security-Policy of a page whose inline scripts are `scripts` and inline styles
/// `styles` (their texts), served under the `Host` header `host` (`None` if it had none or an
/// unusable one).
///
/// Everything not named is refused (`default-src 'none'`); what is named, and why:
/// - `script-src 'self' 'wasm-unsafe-eval'` and a hash per inline script: the glue and the
///   module loader, and compiling the `.wasm` (WebAssembly needs `'wasm-unsafe-eval'`).
/// - `style-src 'self'`, and a hash per inline style if there are any: the stylesheet.
/// - `connect-src 'self'` and `ws:`/`wss:` on the page's own host and port: the `.wasm`
///   download and the relay's WebSocket. CSP Level 3 counts same-host `ws:`/`wss:` as `'self'`,
///   and current browsers follow it, but Safari did not until 2022 (phones keep old ones), so
///   the socket's URL is named as well.
/// - `img-src 'self'`: nothing but the `/favicon.ico` browsers ask for on their own, which
///   Firefox checks against the page's policy.
/// - `base-uri`, `form-action`, `frame-ancestors` and `object-src 'none'`: the first three do
///   not fall back to `default-src`; `object-src` does, and is named for whoever reads the
///   header.
///
/// Video and audio are attached as `srcObject` streams, which no fetch directive governs.
pub fn content_security_policy(scripts: &[&str], styles: &[&str], host: Option<&str>) -> String {
    let hashes =
        |texts: &[&str]| -> String { texts.iter().map(|t| format!(" {}", hash(t))).collect() };
    let sockets = host.map_or_else(String::new, |host| format!(" ws://{host} wss://{host}"));
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{}; style-src 'self'{}; \
         connect-src 'self'{sockets}; img-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; object-src 'none'",
        hashes(scripts),
        hashes(styles),
    )
}

/// `'sha256-<base64>'` of `text` (UTF-8), the form CSP takes for an inline script or style.
pub fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The texts of the inline `<script>` elements of `html` (those without `src`), as the browser
/// hashes them: everything between the start tag and `</script`.
pub fn inline_scripts(html: &str) -> Vec<&str> {
    inline_elements(html, "script")
}

/// The texts of the `<style>` elements of `html`.
pub fn inline_styles(html: &str) -> Vec<&str> {
    inline_elements(html, "style")
}

/// The contents of every `<name>` element of `html` that has no `src` attribute. Script and
/// style contents are raw text in HTML: they end at the first `</name`, whatever comes before.
/// A tag inside a comment counts too, which can only add a hash of the page's own text.
fn inline_elements<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    // ASCII lower-casing keeps every byte where it was, so offsets hold in both strings.
    let lower = html.to_ascii_lowercase();
    let (open, close) = (format!("<{name}"), format!("</{name}"));
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find(&open).map(|i| at + i + open.len()) {
        at = start;
        // `<scripts>` or `<script-x>` is another element.
        let ends_name = matches!(
            lower.as_bytes().get(start),
            Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
        );
        if !ends_name {
            continue;
        }
        let Some(tag_end) = start_tag_end(&lower, start) else {
            break;
        };
        let body = tag_end + 1;
        let end = lower[body..].find(&close).map_or(lower.len(), |i| body + i);
        if !attribute_names(&lower[start..tag_end]).any(|attr| attr == "src") {
            found.push(&html[body..end]);
        }
        at = end;
    }
    found
}

/// Where the start tag whose attributes begin at `from` ends (its `>`), skipping quoted values.
fn start_tag_end(html: &str, from: usize) -> Option<usize> {
    let mut quote = None;
    for (i, b) in html.bytes().enumerate().skip(from) {
        match (quote, b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

/// The attribute names of a start tag's attribute text (`src="x" async type=module`).
fn attribute_names(attrs: &str) -> impl Iterator<Item = &str> {
    let mut rest = attrs;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        if let Some(value) = rest.strip_prefix('=') {
            let value = value.trim_start();
            rest = match value.chars().next() {
                Some(q @ ('"' | '\'')) => value[1..].find(q).map_or("", |i| &value[i + 2..]),
                _ => value
                    .find(|c: char| c.is_ascii_whitespace())
                    .map_or("", |i| &value[i..]),
            };
        }
        Some(name)
    })
}

/// `host:port` of a `Host` header, if it is a plain host (see `url_host`) with at most a
/// numeric port: it goes into the policy, which a `;` or a space would bend.
fn socket_host(authority: &str) -> Option<&str> {
    let authority = authority.trim();
    url_host(authority)?;
    let port = &authority[hostname(authority).len()..];
    let plain_port = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            p.parse::<u16>().is_ok_and(|p| p != 0) && p.bytes().all(|b| b.is_ascii_digit())
        });
    plain_port.then_some(authority)
}

/// Middleware: the security headers on every response, and on HTML ones the page's policy with
/// the hashes of the `index.html` in `dist` as it is now.
pub(crate) async fn add(
    State(dist): State<Arc<PathBuf>>,
    request: Request,
    next: Next,
) -> Response {
    let host = crate::host::host_header(request.headers())
        .and_then(socket_host)
        .map(str::to_owned);
    let mut response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let headers = response.headers_mut();
    fixed(headers);
    if html {
        // Read again for each page: a page is served once per visit, the file is a few KB,
        // and a policy kept from before a rebuild would block the new page's scripts.
        // Without the file the policy has no hashes, and blocks every inline script.
        let page = tokio::fs::read_to_string(dist.join("index.html"))
            .await
            .unwrap_or_default();
        let policy = content_security_policy(
            &inline_scripts(&page),
            &inline_styles(&page),
            host.as_deref(),
        );
        if let Ok(policy) = HeaderValue::from_str(&policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
    }
    response
}

/// The headers that are the same on every response.
fn fixed(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static(CONTENT_TYPE_OPTIONS),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_found_and_external_ones_skipped() {
        let html = r#"<head><SCRIPT>a()</SCRIPT>
            <script type="module" data-x='>'>import "./x.js";</script >
            <script src="./y.js"></script><script async src=z.js></script>
            <scripts>not one</scripts><script
            >b()</script><noscript>c</noscript></head>"#;
        assert_eq!(
            inline_scripts(html),
            vec!["a()", r#"import "./x.js";"#, "b()"]
        );
    }

    #[test]
    fn a_src_inside_a_value_does_not_make_a_script_external() {
        let html = r#"<script data-note="src=x">a()</script><script data-src="x">b()</script>"#;
        assert_eq!(inline_scripts(html), vec!["a()", "b()"]);
    }

    #[test]
    fn an_unterminated_script_runs_to_the_end() {
        assert_eq!(inline_scripts("<script>a()"), vec!["a()"]);
        assert!(inline_scripts("<script type='x").is_empty());
    }

    #[test]
    fn hashes_are_the_ones_browsers_compute() {
        // The example of the CSP Level 3 specification: `alert('Hello, world.');`.
        assert_eq!(
            hash("alert('Hello, world.');"),
            "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
        );
    }

    #[test]
    fn the_policy_names_the_hashes_and_the_socket() {
        let policy = content_security_policy(&["a()"], &[], Some("relay.example:8443"));
        assert_eq!(
            policy,
            format!(
                "default-src 'none'; script-src 'self' 'wasm-unsafe-eval' {}; style-src 'self'; \
                 connect-src 'self' ws://relay.example:8443 wss://relay.example:8443; \
                 img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
                 object-src 'none'",
                hash("a()")
            )
        );
    }

    #[test]
    fn hosts_that_would_bend_the_policy_are_left_out() {
        assert_eq!(socket_host("relay:8080"), Some("relay:8080"));
        assert_eq!(socket_host("[::1]:8443"), Some("[::1]:8443"));
        assert_eq!(socket_host("relay"), Some("relay"));
        for bad in [
            "relay:80; script-src *",
            "relay:x",
            "relay:",
            "relay:0",
            "a b",
            "",
        ] {
            assert_eq!(socket_host(bad), None, "{bad:?}");
        }
    }
}

//! A plain HTTP/1.1 GET against a relay under test: the relay's tests read its page, files,
//! headers, `/healthz` and `/metrics` with it, and the call across two instances
//! (`tests/tests/backplane_call.rs`, which includes this file by path) reads them the same way.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long a response may take before the test fails instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A response as the tests read it.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines, names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body, as sent (ask for `Accept-Encoding: identity` to keep it uncompressed).
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of the header `name` (in lower case), in the order sent.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the header `name`, or `None` if it was not sent; fails if it was sent more
    /// than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.all(name)[..] {
            [] => None,
            [value] => Some(value),
            ref values => panic!("expected one {name}, got {values:?}"),
        }
    }

    /// The body as text; fails if it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a text body")
    }
}

/// Sends `GET path` over a fresh connection and returns the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = get_with(addr, path, "").await;
    (response.status, response.text().to_owned())
}

/// Sends `GET path` with the header lines `extra` (each ending in CRLF) over a fresh connection.
pub async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sends the request");
    let mut raw = Vec::new();
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("the response arrives in time")
        .expect("reads the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head and a body");
    let head = std::str::from_utf8(&raw[..split]).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad response {head:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

//! A stand-in for the relay, written for the tests of a hostile relay: it serves the built page
//! like the real one and answers `GET /ws` with a WebSocket that the test speaks through, frame
//! by frame. The test reads what the page sends and sends whatever it likes: frames that are
//! not JSON, unknown types, megabytes, events out of order.
//!
//! It can also cut off the first downloads of the page's code, as a dropped connection would
//! ([`StandIn::cutting_downloads`]), and count what the page asked for.
//!
//! Only `ping` is answered by the stand-in itself (with `pong`), whenever it comes: the page
//! asks every 10 s and drops a relay that does not answer within 3 s, which would make a slow
//! step of a test look like a lost relay.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        Request, State,
    },
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

use crate::{browser::PATIENCE, relay::dist_dir};

/// The stand-in relay, on a loopback port; stops when dropped.
pub struct StandIn {
    addr: SocketAddr,
    sockets_rx: mpsc::UnboundedReceiver<Script>,
    downloads: Arc<Downloads>,
    shutdown: CancellationToken,
}

/// The page's requests for its code, and how many of them to cut off.
#[derive(Debug, Default)]
struct Downloads {
    /// How many times each code file is cut off before it is served whole.
    cut: usize,
    /// Requests per path (queries left out).
    asked: Mutex<HashMap<String, usize>>,
}

/// One page's socket, as the test drives it.
pub struct Script {
    /// The page's frames (text, or what else it sent, in words), `ping` left out.
    from_page_rx: mpsc::UnboundedReceiver<String>,
    /// Frames for the page: text, or `None` to close the socket.
    to_page_tx: mpsc::UnboundedSender<Option<String>>,
}

impl StandIn {
    /// Serves `dist/` and `/ws` on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::cutting_downloads(0).await
    }

    /// [`StandIn::start`], with the first `cut` downloads of each of the page's code files
    /// (its `.js` and `.wasm`) cut off: the connection dropped before the file.
    pub async fn cutting_downloads(cut: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in relay");
        let addr = listener.local_addr().expect("its address");
        let (sockets_tx, sockets_rx) = mpsc::unbounded_channel();
        let downloads = Arc::new(Downloads {
            cut,
            ..Downloads::default()
        });
        let app = Router::new()
            .route("/ws", get(upgrade))
            .fallback_service(ServeDir::new(dist_dir()))
            .layer(middleware::from_fn_with_state(downloads.clone(), cut_off))
            .with_state(sockets_tx);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .expect("the stand-in relay serves");
        });
        Self {
            addr,
            sockets_rx,
            downloads,
            shutdown,
        }
    }

    /// How many times the page asked for files whose path ends with `suffix` (`.js`, say).
    pub fn asked_for(&self, suffix: &str) -> usize {
        let asked = self.downloads.asked.lock().expect("the counts");
        asked
            .iter()
            .filter(|(path, _)| path.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Where the page is: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next socket a page opened.
    pub async fn accept(&mut self) -> Script {
        tokio::time::timeout(PATIENCE, self.sockets_rx.recv())
            .await
            .expect("a page to open a socket to the stand-in relay")
            .expect("the stand-in relay runs")
    }

    /// Whether a page opened another socket within `wait`, which it should not have.
    pub async fn another_socket(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.sockets_rx.recv())
            .await
            .is_ok()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Counts the requests for the page's code, and cuts off the first [`Downloads::cut`] of each
/// file: held a moment (so that the page's other asks for it join this one, as a browser does
/// with a fetch in flight), then the body fails and the server drops the connection.
async fn cut_off(
    State(downloads): State<Arc<Downloads>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if !(path.ends_with(".js") || path.ends_with(".wasm")) {
        return next.run(request).await;
    }
    let asked = {
        let mut asked = downloads.asked.lock().expect("the counts");
        let n = asked.entry(path).or_default();
        *n += 1;
        *n
    };
    if asked > downloads.cut {
        return next.run(request).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (parts, _whole) = next.run(request).await.into_parts();
    let cut = futures_util::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::other("the download was cut off"))
    });
    Response::from_parts(parts, Body::from_stream(cut))
}

async fn upgrade(
    ws: WebSocketUpgrade,
    State(sockets_tx): State<mpsc::UnboundedSender<Script>>,
) -> Response {
    ws.on_upgrade(move |socket| async move {
        let (from_page_tx, from_page_rx) = mpsc::unbounded_channel();
        let (to_page_tx, to_page_rx) = mpsc::unbounded_channel();
        if sockets_tx
            .send(Script {
                from_page_rx,
                to_page_tx,
            })
            .is_ok()
        {
            speak(socket, from_page_tx, to_page_rx).await;
        }
    })
}

/// Carries frames between the page and its [`Script`], answering `ping` on the way.
async fn speak(
    socket: WebSocket,
    from_page_tx: mpsc::UnboundedSender<String>,
    mut to_page_rx: mpsc::UnboundedReceiver<Option<String>>,
) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = to_page_rx.recv() => match frame {
                Some(Some(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // The script closed the socket, or was dropped.
                _ => {
                    let _ = sink.close().await;
                    return;
                }
            },
            read = stream.next() => match read {
                Some(Ok(Message::Text(text))) if is_ping(&text) => {
                    let pong = Message::Text(r#"{"type":"pong"}"#.into());
                    if sink.send(pong).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    let _ = from_page_tx.send(text.to_string());
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let _ = from_page_tx.send(format!("(a binary frame of {} bytes)", bytes.len()));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}

fn is_ping(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "ping")
}

impl Script {
    /// Sends `frame` to the page as one text frame, as it is.
    pub fn send(&self, frame: impl Into<String>) {
        self.to_page_tx
            .send(Some(frame.into()))
            .expect("the page's socket is open");
    }

    /// Sends `msg` to the page as JSON.
    pub fn send_json(&self, msg: &Value) {
        self.send(msg.to_string());
    }

    /// Closes the socket (with a normal close frame).
    pub fn close(&self) {
        let _ = self.to_page_tx.send(None);
    }

    /// The page's next frame, parsed; fails the test after [`PATIENCE`] or on one that is not
    /// JSON.
    pub async fn recv(&mut self) -> Value {
        let frame = tokio::time::timeout(PATIENCE, self.from_page_rx.recv())
            .await
            .expect("a frame from the page")
            .expect("the page's socket is open");
        serde_json::from_str(&frame).unwrap_or_else(|_| panic!("the page sent {frame:?}"))
    }

    /// The page's next frame of type `kind`, passing over others (its candidates, say).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    /// What the page sent and the test has not read yet.
    pub fn unread(&mut self) -> Vec<Value> {
        let mut unread = Vec::new();
        while let Ok(frame) = self.from_page_rx.try_recv() {
            unread.push(serde_json::from_str(&frame).unwrap_or(Value::String(frame)));
        }
        unread
    }
}

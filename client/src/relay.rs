//! The relay connection: gloo-net's WebSocket (a `Stream` of the frames read and a `Sink` of
//! those sent, which owns its handlers and removes them when dropped), run by a task of its
//! own. Frames sent before it opens wait for it; each frame received is read as a
//! [`ServerMsg`]; its end is reported once, in words for the person.

use std::{future::poll_fn, task::Poll};

use futures::{
    channel::{
        mpsc::{self, UnboundedReceiver, UnboundedSender},
        oneshot,
    },
    FutureExt, SinkExt, StreamExt,
};
use gloo_net::websocket::{futures::WebSocket, Message, State, WebSocketError};
use protocol::ServerMsg;
use wasm_bindgen::JsCast;

use crate::text::RelayWhy;

/// What the relay connection reports.
#[derive(Debug)]
pub enum RelayEvent {
    /// A message from the relay.
    Message(ServerMsg),
    /// The connection ended (or never opened), with words for the person.
    Lost(RelayWhy),
}

/// One WebSocket to the relay. Dropping it closes the socket (with
/// [`protocol::CLOSE_RECONNECTING`]), and nothing more is reported.
pub struct RelaySocket {
    /// Frames for the socket's task to send.
    outbox: UnboundedSender<String>,
    /// Dropped with this: the task stops on its next turn, before anything else (frames still
    /// in `outbox` are not sent), and drops the socket, which closes it.
    _alive: oneshot::Sender<()>,
}

impl RelaySocket {
    /// Connects to `url`, reporting through `report`: takes over the socket `index.html`
    /// opened while this code loaded, if it is to `url` and has not failed, else opens one.
    pub fn open(url: &str, report: impl Fn(RelayEvent) + 'static) -> Result<Self, RelayWhy> {
        let ws = match take_early_socket(url) {
            Some(ws) => WebSocket::try_from(ws),
            None => WebSocket::open(url),
        }
        .map_err(|err| {
            web_sys::console::warn_1(&format!("relay socket: {}", err.message).into());
            RelayWhy::Unreachable
        })?;
        let (outbox, frames) = mpsc::unbounded();
        let (alive, dropped) = oneshot::channel();
        wasm_bindgen_futures::spawn_local(run(ws, frames, dropped, report));
        Ok(Self {
            outbox,
            _alive: alive,
        })
    }

    /// Sends one text frame now, or once the socket opens. A socket that is closing takes
    /// nothing: the engine sends again what matters once it has joined anew.
    pub fn send(&self, frame: String) {
        let _ = self.outbox.unbounded_send(frame);
    }
}

/// What the socket's task does next.
enum Step {
    /// Its [`RelaySocket`] was dropped.
    Stop,
    /// Send a frame.
    Send(String),
    /// The socket opened: the frames that waited for it go out.
    Opened,
    /// What the socket read; `None` after its close.
    Read(Option<Result<Message, WebSocketError>>),
}

/// Runs one relay socket until it closes or its [`RelaySocket`] is dropped.
async fn run(
    mut ws: WebSocket,
    mut frames: UnboundedReceiver<String>,
    mut dropped: oneshot::Receiver<()>,
    report: impl Fn(RelayEvent),
) {
    // A socket taken over may have opened already: then frames go out at once.
    let mut opened = matches!(ws.state(), State::Open);
    let mut waiting = Vec::new();
    loop {
        let step = poll_fn(|cx| {
            // First, on every turn: once the RelaySocket is gone, nothing more is sent, read
            // or reported.
            if dropped.poll_unpin(cx).is_ready() {
                return Poll::Ready(Step::Stop);
            }
            if let Poll::Ready(Some(frame)) = frames.poll_next_unpin(cx) {
                return Poll::Ready(Step::Send(frame));
            }
            // The sink is ready once the socket has left `CONNECTING`, open or failed (a
            // failed one then reads its error and close).
            if !opened && ws.poll_ready_unpin(cx).is_ready() && matches!(ws.state(), State::Open) {
                return Poll::Ready(Step::Opened);
            }
            ws.poll_next_unpin(cx).map(Step::Read)
        })
        .await;
        match step {
            // The page drops a socket only to connect again: the close code says so, and the
            // relay keeps our place (a plain Close would be a goodbye, and the others would end
            // their calls with us). Dropping `ws` then removes its handlers.
            Step::Stop => {
                let _ = ws.close(Some(protocol::CLOSE_RECONNECTING), None);
                return;
            }
            Step::Send(frame) if opened => send(&mut ws, frame).await,
            Step::Send(frame) => waiting.push(frame),
            Step::Opened => {
                opened = true;
                for frame in std::mem::take(&mut waiting) {
                    send(&mut ws, frame).await;
                }
            }
            Step::Read(Some(Ok(Message::Text(text)))) => read(&text, &report),
            // The relay sends text only; anything else is not for us.
            Step::Read(Some(Ok(Message::Bytes(_)))) => {}
            Step::Read(Some(Err(WebSocketError::ConnectionClose(event)))) => {
                report(RelayEvent::Lost(lost_why(
                    event.code,
                    &event.reason,
                    opened,
                )));
                return;
            }
            // An `error` event: the `close` event that follows says more.
            Step::Read(Some(Err(_))) => {}
            // The stream ends only after the close event, which has returned already.
            Step::Read(None) => {
                report(RelayEvent::Lost(lost_why(1006, "", opened)));
                return;
            }
        }
    }
}

/// Sends `frame` on an open socket (so at once). A socket that is closing discards it
/// without an error; its close event follows.
async fn send(ws: &mut WebSocket, frame: String) {
    let _ = ws.send(Message::Text(frame)).await;
}

/// Reports `text`, a frame from the relay, as a [`ServerMsg`]; one that cannot be read goes
/// to the console, its start only: a relay that is not ours may send megabytes, and the
/// browser keeps its console's messages.
fn read(text: &str, report: &impl Fn(RelayEvent)) {
    let read = crate::json::parse(text)
        .ok_or_else(|| protocol::ReadError::new("not JSON"))
        .and_then(ServerMsg::read);
    match read {
        Ok(msg) => report(RelayEvent::Message(msg)),
        Err(err) => web_sys::console::warn_1(
            &format!(
                "the relay sent something unreadable ({err}), {} bytes: {}",
                text.len(),
                crate::trace::line("", &text)
            )
            .into(),
        ),
    }
}

/// The socket `index.html` opened before this code loaded (`window.__earlyRelay`), once: if it
/// goes to `url` and is opening or open. One that failed is closed and left; the caller opens
/// its own, which reports the failure the usual way.
fn take_early_socket(url: &str) -> Option<web_sys::WebSocket> {
    let ws = crate::take_early("__earlyRelay")?
        .dyn_into::<web_sys::WebSocket>()
        .ok()?;
    let usable = matches!(
        ws.ready_state(),
        web_sys::WebSocket::CONNECTING | web_sys::WebSocket::OPEN
    );
    if usable && ws.url() == url {
        Some(ws)
    } else {
        let _ = ws.close();
        None
    }
}

/// Why the relay connection ended with close `code` and `reason`; `opened` tells a relay
/// that went away from one that was never reached. The relay's own words (`reason`) go to the
/// console, not to the person.
pub fn lost_why(code: u16, reason: &str, opened: bool) -> RelayWhy {
    if !reason.is_empty() {
        web_sys::console::info_1(&format!("relay closed: {code} {reason}").into());
    }
    match code {
        1001 => RelayWhy::ShuttingDown,
        1009 => RelayWhy::TooBig,
        // 1006: no close frame, the connection just ended (or never began).
        1006 if !opened => RelayWhy::Unreachable,
        1006 => RelayWhy::Lost,
        code => RelayWhy::Closed(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_relay_connection_is_told_by_its_code() {
        assert_eq!(lost_why(1001, "", true), RelayWhy::ShuttingDown);
        assert_eq!(lost_why(1006, "", false), RelayWhy::Unreachable);
        assert_eq!(lost_why(1006, "", true), RelayWhy::Lost);
        assert_eq!(lost_why(1009, "", true), RelayWhy::TooBig);
        assert_eq!(lost_why(1000, "", true), RelayWhy::Closed(1000));
    }
}

//! The relay connection: the browser's WebSocket, whose handlers live exactly as long as it
//! does. Frames sent before it opens wait for it; each frame received is read as a
//! [`ServerMsg`]; its end is reported once, in words for the person.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use protocol::ServerMsg;
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What the relay connection reports.
#[derive(Debug)]
pub enum RelayEvent {
    /// A message from the relay.
    Message(ServerMsg),
    /// The connection ended (or never opened), with words for the person.
    Lost(String),
}

/// One WebSocket to the relay. Dropping it closes the socket, and nothing more is reported.
pub struct RelaySocket {
    ws: WebSocket,
    /// Frames sent while the socket was still connecting.
    outbox: Rc<RefCell<Vec<String>>>,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl RelaySocket {
    /// Connects to `url`, reporting through `report`: takes over the socket `index.html`
    /// opened while this code loaded, if it is to `url` and has not failed, else opens one.
    pub fn open(url: &str, report: impl Fn(RelayEvent) + 'static) -> Result<Self, String> {
        let ws = match take_early_socket(url) {
            Some(ws) => ws,
            None => Self::connect(url)?,
        };
        Ok(Self::watch(ws, report))
    }

    fn connect(url: &str) -> Result<WebSocket, String> {
        WebSocket::new(url).map_err(|err| {
            let why = js_sys::Reflect::get(&err, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
                .unwrap_or_default();
            format!("Cannot reach the relay: {why}")
        })
    }

    fn watch(ws: WebSocket, report: impl Fn(RelayEvent) + 'static) -> Self {
        let report = Rc::new(report);
        let outbox: Rc<RefCell<Vec<String>>> = Rc::default();
        // A socket taken over may have opened already: then frames go out at once.
        let opened = Rc::new(Cell::new(ws.ready_state() == WebSocket::OPEN));
        let on_open = {
            let ws = ws.clone();
            let outbox = outbox.clone();
            let opened = opened.clone();
            Closure::<dyn FnMut(_)>::new(move |_: web_sys::Event| {
                opened.set(true);
                for frame in outbox.borrow_mut().drain(..) {
                    let _ = ws.send_with_str(&frame);
                }
            })
        };
        let on_message = {
            let report = report.clone();
            Closure::<dyn FnMut(_)>::new(move |event: MessageEvent| {
                // The relay sends text only; anything else is not for us.
                let Some(text) = event.data().as_string() else {
                    return;
                };
                let read = crate::json::parse(&text)
                    .ok_or_else(|| protocol::ReadError::new("not JSON"))
                    .and_then(ServerMsg::read);
                match read {
                    Ok(msg) => report(RelayEvent::Message(msg)),
                    Err(err) => web_sys::console::warn_1(
                        &format!("the relay sent something unreadable ({err}): {text}").into(),
                    ),
                }
            })
        };
        let on_close = Closure::<dyn FnMut(_)>::new(move |event: CloseEvent| {
            report(RelayEvent::Lost(lost_words(
                event.code(),
                &event.reason(),
                opened.get(),
            )));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Self {
            ws,
            outbox,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        }
    }

    /// Sends one text frame now, or once the socket opens. A socket that is closing takes
    /// nothing: the engine sends again what matters once it has joined anew.
    pub fn send(&self, frame: String) {
        match self.ws.ready_state() {
            WebSocket::CONNECTING => self.outbox.borrow_mut().push(frame),
            WebSocket::OPEN => {
                let _ = self.ws.send_with_str(&frame);
            }
            _ => {}
        }
    }
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// The socket `index.html` opened before this code loaded (`window.__earlyRelay`), once: if it
/// goes to `url` and is opening or open. One that failed is closed and left; the caller opens
/// its own, which reports the failure the usual way.
fn take_early_socket(url: &str) -> Option<WebSocket> {
    let ws = crate::take_early("__earlyRelay")?
        .dyn_into::<WebSocket>()
        .ok()?;
    let usable = matches!(ws.ready_state(), WebSocket::CONNECTING | WebSocket::OPEN);
    if usable && ws.url() == url {
        Some(ws)
    } else {
        let _ = ws.close();
        None
    }
}

/// What the person is told when the relay connection ends with close `code` and `reason`;
/// `opened` tells a relay that went away from one that was never reached.
pub fn lost_words(code: u16, reason: &str, opened: bool) -> String {
    match code {
        1001 => "The relay is shutting down.".to_owned(),
        1009 => "The relay closed the connection: a message was too big.".to_owned(),
        // 1006: no close frame, the connection just ended (or never began).
        1006 if !opened => "Cannot reach the relay: is the server running?".to_owned(),
        1006 => "Lost the connection to the relay.".to_owned(),
        code if reason.is_empty() => format!("The relay closed the connection (code {code})."),
        code => format!("The relay closed the connection (code {code}: {reason})."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_relay_connection_is_told_in_words() {
        assert_eq!(lost_words(1001, "", true), "The relay is shutting down.");
        assert!(lost_words(1006, "", false).contains("is the server running"));
        assert_eq!(
            lost_words(1006, "", true),
            "Lost the connection to the relay."
        );
        assert!(lost_words(1009, "", true).contains("too big"));
        assert_eq!(
            lost_words(4000, "kicked", true),
            "The relay closed the connection (code 4000: kicked)."
        );
        assert_eq!(
            lost_words(1000, "", true),
            "The relay closed the connection (code 1000)."
        );
    }
}

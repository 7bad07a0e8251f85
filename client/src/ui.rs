//! The page's elements: two videos, three buttons and a status line.
//!
//! The ids are the ones the original JavaScript pages used, so their scripts and tests still
//! find them: `localVideo`, `remoteVideo`, `startButton`, `callButton`, `hangupButton`, and
//! `status` for the line that tells the person what is happening, and `connectionPath` for the
//! network path the call took.

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, HtmlButtonElement, HtmlElement, HtmlVideoElement, MediaStream};

use crate::diagnose::Path;

/// What the status line says, also exposed as its `data-state` attribute for scripts and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Asking for camera and microphone, or joining the room.
    Starting,
    /// In the room alone, or with someone who has not called yet.
    Waiting(String),
    /// Negotiating a call.
    Connecting,
    /// Media flows both ways.
    Connected,
    /// The call was hung up.
    Ended(String),
    /// Something the person must know about.
    Error(String),
}

impl Status {
    fn state(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Waiting(_) => "waiting",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Ended(_) => "ended",
            Status::Error(_) => "error",
        }
    }

    fn text(&self) -> &str {
        match self {
            Status::Starting => "Starting: asking for camera and microphone…",
            Status::Connecting => "Connecting…",
            Status::Connected => "Connected.",
            Status::Waiting(text) | Status::Ended(text) | Status::Error(text) => text,
        }
    }
}

/// The buttons of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Button {
    /// Ask for camera and microphone again.
    Start,
    /// Call the other person.
    Call,
    /// End the call.
    HangUp,
}

impl Button {
    /// Every button, with its element id.
    pub const ALL: [(Button, &'static str); 3] = [
        (Button::Start, "startButton"),
        (Button::Call, "callButton"),
        (Button::HangUp, "hangupButton"),
    ];
}

/// Handles to the page's elements.
pub struct Ui {
    /// The local camera preview.
    pub local_video: HtmlVideoElement,
    /// The other person.
    pub remote_video: HtmlVideoElement,
    start: HtmlButtonElement,
    call: HtmlButtonElement,
    hang_up: HtmlButtonElement,
    status: HtmlElement,
    path: HtmlElement,
}

impl Ui {
    /// Finds the elements in `document`.
    pub fn find(document: &Document) -> Result<Self, JsValue> {
        Ok(Self {
            local_video: by_id(document, "localVideo")?,
            remote_video: by_id(document, "remoteVideo")?,
            start: by_id(document, "startButton")?,
            call: by_id(document, "callButton")?,
            hang_up: by_id(document, "hangupButton")?,
            status: by_id(document, "status")?,
            path: by_id(document, "connectionPath")?,
        })
    }

    /// The element for `button`.
    pub fn button(&self, button: Button) -> &HtmlButtonElement {
        match button {
            Button::Start => &self.start,
            Button::Call => &self.call,
            Button::HangUp => &self.hang_up,
        }
    }

    /// Shows `status` on the status line.
    pub fn set_status(&self, status: &Status) {
        self.status.set_text_content(Some(status.text()));
        let _ = self.status.set_attribute("data-state", status.state());
    }

    /// Shows the path of the call's media, with `data-path` set to `host`, `srflx`, `prflx`
    /// or `relay`; `None` clears it.
    pub fn show_path(&self, path: Option<Path>) {
        let (text, value) = path.map_or((String::new(), ""), |p| (p.to_string(), p.as_str()));
        self.path.set_text_content(Some(&text));
        let _ = self.path.set_attribute("data-path", value);
    }

    /// Enables exactly the buttons that make sense now.
    pub fn enable(&self, start: bool, call: bool, hang_up: bool) {
        self.start.set_disabled(!start);
        self.call.set_disabled(!call);
        self.hang_up.set_disabled(!hang_up);
    }

    /// Shows `stream` in the remote video, or clears it.
    pub fn show_remote(&self, stream: Option<&MediaStream>) {
        self.remote_video.set_src_object(stream);
    }

    /// Shows `stream` as the local preview.
    pub fn show_local(&self, stream: Option<&MediaStream>) {
        self.local_video.set_src_object(stream);
    }
}

fn by_id<T: JsCast>(document: &Document, id: &str) -> Result<T, JsValue> {
    document
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("the page has no #{id}")))?
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("#{id} is not the expected element")))
}

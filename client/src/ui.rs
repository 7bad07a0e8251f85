//! The page's elements: your video, one tile per other person, three buttons, a status line.
//!
//! The ids are the ones the original JavaScript pages used, so their scripts and tests still
//! find them: `localVideo`, `remoteVideo` (the first other person's video), `startButton`,
//! `callButton`, `hangupButton`; `status` for the line that tells the person what is happening,
//! `connectionPath` for the network path of the call, and `remotes` holding one tile per other
//! person: a `<figure data-peer data-conn data-state>` with a `<video data-peer>` and a caption.
//! The chat: `chatInput`, `chatSend`, `chatLog` (one `<p data-from>` per message, and one
//! `<p data-from data-dropped>` where what a peer sent was left out) and `chatNote` (what went
//! wrong with the last message). `handButton` raises and lowers our hand (`aria-pressed`); a
//! raised hand shows on that person's tile elsewhere as `data-hand`. `reactionButton` opens
//! the picker `reactions` (one button per reaction, `data-reaction`); a reaction shows on the
//! sender's tile elsewhere as `data-reaction` for a few seconds (the stylesheet draws it).
//! `noiseButton` switches the microphone's noise suppression (`aria-pressed`), and `micLevel`
//! shows its level while it is on. `fileInput` sends a file to whoever `fileTo` says
//! (everybody, or one person); each transfer, out or in, is a child of `transfers` with
//! `data-progress` (0–100), `data-refused` when it was not sent or not taken, and a received
//! file's link with `download`. `langSelect` picks the language; every word comes from
//! [`crate::text`], and `<html lang>` says which language is shown. `chatPanelButton` and
//! `settingsPanelButton` open and close the panels `chatPanel` and `settingsPanel`
//! (`aria-expanded`; `data-open` on the panel once the person chose); `moveMeButton`, over
//! our own picture (`figure.me`), moves it to another corner of the stage (`data-corner`); a tile whose picture is wider than a camera's (a shared
//! screen) is marked `data-screen`. The rest of the layout (the grid of tiles, the bar, the
//! panels' places) is the stylesheet's.

use protocol::PeerId;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    Document, Element, HtmlButtonElement, HtmlElement, HtmlInputElement, HtmlSelectElement,
    HtmlVideoElement, MediaStream,
};

use crate::{
    chat,
    core::{chat_guard::Dropped, files::FileError, ConnId, MediaState, Status, Tile},
    diagnose::Path,
    media::{self, Device},
    small::VecMap,
    stats::History,
    text::{label, Lang, Text},
};

/// The buttons of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Button {
    /// Ask for camera and microphone again.
    Start,
    /// Call the people in the room.
    Call,
    /// End the calls.
    HangUp,
    /// Send what is in the chat field.
    ChatSend,
    /// Mute or unmute the microphone.
    Mute,
    /// Turn the camera off or on.
    Camera,
    /// Use the name in the name field.
    Name,
    /// Copy the link to this room.
    CopyLink,
    /// Go to a new room nobody can guess.
    NewRoom,
    /// Start the sound the browser would not play without a click.
    StartAudio,
    /// Show or hide the call stats.
    Stats,
    /// Share the screen instead of the camera, or stop.
    Share,
    /// Raise or lower our hand.
    Hand,
    /// Open or close the reaction picker.
    Reaction,
    /// Turn the microphone's noise suppression on or off.
    Noise,
}

impl Button {
    /// Every button, with its element id.
    pub const ALL: [(Button, &'static str); 15] = [
        (Button::Start, "startButton"),
        (Button::Call, "callButton"),
        (Button::HangUp, "hangupButton"),
        (Button::ChatSend, "chatSend"),
        (Button::Mute, "muteButton"),
        (Button::Camera, "cameraButton"),
        (Button::Name, "nameButton"),
        (Button::CopyLink, "copyLinkButton"),
        (Button::NewRoom, "newRoomButton"),
        (Button::StartAudio, "startAudioButton"),
        (Button::Stats, "statsButton"),
        (Button::Share, "shareButton"),
        (Button::Hand, "handButton"),
        (Button::Reaction, "reactionButton"),
        (Button::Noise, "noiseButton"),
    ];
}

/// The elements of what people do in a call besides talking: a struct of their own, found
/// together, because each field of [`Ui`] found after others makes every later one's failure
/// path drop them all (some 400 bytes of WebAssembly a field).
pub struct InCall {
    hand: HtmlButtonElement,
    reaction: HtmlButtonElement,
    noise: HtmlButtonElement,
    /// The microphone's level (`<meter id="micLevel">`), while it is shown.
    pub mic_level: Element,
    /// The file to send, and to whom (`""`: everybody; else a connection's number).
    pub file_input: HtmlInputElement,
    /// See [`InCall::file_input`].
    pub file_to: HtmlSelectElement,
    transfers: Element,
    /// The reaction picker: one button per reaction, each with its `data-reaction`.
    pub reactions: HtmlElement,
}

impl InCall {
    fn find(document: &Document) -> Result<Self, JsValue> {
        Ok(Self {
            hand: by_id(document, "handButton")?,
            reaction: by_id(document, "reactionButton")?,
            noise: by_id(document, "noiseButton")?,
            mic_level: by_id(document, "micLevel")?,
            file_input: by_id(document, "fileInput")?,
            file_to: by_id(document, "fileTo")?,
            transfers: by_id(document, "transfers")?,
            reactions: by_id(document, "reactions")?,
        })
    }
}

/// A button of the stage's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Opens or closes panel `.0` of [`PANELS`].
    Panel(usize),
    /// Moves our own picture to the next corner.
    MoveMe,
}

impl Stage {
    /// Every one, with its button's id.
    pub const ALL: [(&'static str, Stage); 3] = [
        ("chatPanelButton", Stage::Panel(0)),
        ("settingsPanelButton", Stage::Panel(1)),
        ("moveMeButton", Stage::MoveMe),
    ];
}

/// The panels the control bar opens and closes: the button's id, the panel's.
pub const PANELS: [(&str, &str); 2] = [
    ("chatPanelButton", "chatPanel"),
    ("settingsPanelButton", "settingsPanel"),
];

/// The transfers `#transfers` keeps: older ones go, with the memory of their files, so that
/// the files a page holds stay within this many times [`crate::core::files::MAX_BYTES`].
pub const TRANSFERS: u32 = 10;

/// One person's tile on the page.
struct TileView {
    figure: Element,
    video: HtmlVideoElement,
    caption: Element,
    /// The call's verification code (`.verify`; the first tile's is `#verifyCode`).
    verify: Element,
}

/// Handles to the page's elements.
pub struct Ui {
    document: Document,
    /// The local camera preview.
    pub local_video: HtmlVideoElement,
    /// The first other person's video; it stays in the page (empty) while nobody is there.
    pub remote_video: HtmlVideoElement,
    remotes: Element,
    start: HtmlButtonElement,
    call: HtmlButtonElement,
    hang_up: HtmlButtonElement,
    mute: HtmlButtonElement,
    camera: HtmlButtonElement,
    status: HtmlElement,
    path: HtmlElement,
    tiles: VecMap<ConnId, TileView>,
    /// The chat: the field, its button, the messages, and a line for what went wrong.
    pub chat_input: HtmlInputElement,
    chat_send: HtmlButtonElement,
    chat_log: HtmlElement,
    chat_note: HtmlElement,
    /// The person's name: the field, its button, and a line for what went wrong.
    pub name_input: HtmlInputElement,
    name_button: HtmlButtonElement,
    name_note: HtmlElement,
    copy_link: HtmlButtonElement,
    new_room: HtmlButtonElement,
    invite_note: HtmlElement,
    start_audio: HtmlButtonElement,
    stats_button: HtmlButtonElement,
    stats: HtmlElement,
    share: HtmlButtonElement,
    /// The elements of what people do in a call besides talking.
    pub in_call: InCall,
    /// Who `fileTo` lists now, besides everybody.
    file_to_listed: Vec<(ConnId, Option<String>)>,
    /// The camera and microphone choices.
    pub camera_select: HtmlSelectElement,
    /// See [`Ui::camera_select`].
    pub mic_select: HtmlSelectElement,
    /// The language choice.
    pub lang_select: HtmlSelectElement,
    /// The language the page is shown in.
    lang: Lang,
    /// What the notes under the name, the chat and the invite buttons say (the invite's with
    /// its link), kept to be said again in another language.
    notes: [Option<(Text, Option<String>)>; 3],
}

/// Which note: see [`Ui::notes`](Ui).
#[derive(Clone, Copy)]
enum Note {
    Name = 0,
    Chat = 1,
    Invite = 2,
}

impl Ui {
    /// Finds the elements in `document`.
    pub fn find(document: &Document) -> Result<Self, JsValue> {
        Ok(Self {
            // First, so that an element found after it that is missing has one field less to
            // drop.
            in_call: InCall::find(document)?,
            document: document.clone(),
            local_video: by_id(document, "localVideo")?,
            remote_video: by_id(document, "remoteVideo")?,
            remotes: by_id(document, "remotes")?,
            start: by_id(document, "startButton")?,
            call: by_id(document, "callButton")?,
            hang_up: by_id(document, "hangupButton")?,
            mute: by_id(document, "muteButton")?,
            camera: by_id(document, "cameraButton")?,
            status: by_id(document, "status")?,
            path: by_id(document, "connectionPath")?,
            tiles: VecMap::new(),
            chat_input: by_id(document, "chatInput")?,
            chat_send: by_id(document, "chatSend")?,
            chat_log: by_id(document, "chatLog")?,
            chat_note: by_id(document, "chatNote")?,
            name_input: by_id(document, "nameInput")?,
            name_button: by_id(document, "nameButton")?,
            name_note: by_id(document, "nameNote")?,
            copy_link: by_id(document, "copyLinkButton")?,
            new_room: by_id(document, "newRoomButton")?,
            invite_note: by_id(document, "inviteNote")?,
            start_audio: by_id(document, "startAudioButton")?,
            stats_button: by_id(document, "statsButton")?,
            stats: by_id(document, "stats")?,
            share: by_id(document, "shareButton")?,
            file_to_listed: Vec::new(),
            camera_select: by_id(document, "cameraSelect")?,
            mic_select: by_id(document, "micSelect")?,
            lang_select: by_id(document, "langSelect")?,
            lang: Lang::En,
            notes: [None, None, None],
        })
    }

    /// The language the page is shown in.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// Shows the page in `lang`: `<html lang>`, the title, every fixed word (`data-t`,
    /// `data-t-label`, `data-t-placeholder`, `data-t-title`), the language choice and the
    /// notes. The status line and the tiles follow with the next [`Ui::set_status`] and
    /// [`Ui::sync_tiles`].
    pub fn set_lang(&mut self, lang: Lang) {
        self.lang = lang;
        if let Some(root) = self.document.document_element() {
            let _ = root.set_attribute("lang", lang.tag());
        }
        if let Some(title) = label("title", lang) {
            self.document.set_title(title);
        }
        for (selector, attribute) in [
            ("[data-t]", None),
            ("[data-t-label]", Some("aria-label")),
            ("[data-t-placeholder]", Some("placeholder")),
            ("[data-t-title]", Some("title")),
        ] {
            let Ok(found) = self.document.query_selector_all(selector) else {
                continue;
            };
            let key_attribute = &selector[1..selector.len() - 1];
            for n in 0..found.length() {
                let Some(element) = found.get(n).and_then(|e| e.dyn_into::<Element>().ok()) else {
                    continue;
                };
                let key = element.get_attribute(key_attribute).unwrap_or_default();
                let Some(words) = label(&key, lang) else {
                    continue;
                };
                match attribute {
                    None => element.set_text_content(Some(words)),
                    Some(attribute) => {
                        let _ = element.set_attribute(attribute, words);
                    }
                }
            }
        }
        if self.lang_select.length() == 0 {
            for choice in Lang::ALL {
                if let Ok(option) = self.document.create_element("option") {
                    let _ = option.set_attribute("value", choice.tag());
                    let _ = option.set_attribute("lang", choice.tag());
                    option.set_text_content(Some(choice.name()));
                    let _ = self.lang_select.append_child(&option);
                }
            }
        }
        self.lang_select.set_value(lang.tag());
        for note in [Note::Name, Note::Chat, Note::Invite] {
            let kept = self.notes[note as usize].take();
            self.note(note, kept);
        }
        for view in self.tiles.values() {
            let _ = view
                .verify
                .set_attribute("title", &Text::CheckHelp.show(lang));
            // Said again by the next sync.
            let _ = view.verify.remove_attribute("data-code");
        }
    }

    /// Says `text` (with `link` after it) in the element of `note`, or nothing.
    fn note(&mut self, note: Note, text: Option<(Text, Option<String>)>) {
        let element = match note {
            Note::Name => &self.name_note,
            Note::Chat => &self.chat_note,
            Note::Invite => &self.invite_note,
        };
        let words = text.as_ref().map(|(text, link)| match link {
            Some(link) => format!("{} {link}", text.show(self.lang)),
            None => text.show(self.lang),
        });
        element.set_text_content(words.as_deref());
        if let Note::Invite = note {
            let _ = match text.as_ref().and_then(|(_, link)| link.as_deref()) {
                Some(link) => element.set_attribute("data-link", link),
                None => element.remove_attribute("data-link"),
            };
        }
        self.notes[note as usize] = text;
    }

    /// The element for `button`.
    pub fn button(&self, button: Button) -> &HtmlButtonElement {
        match button {
            Button::Start => &self.start,
            Button::Call => &self.call,
            Button::HangUp => &self.hang_up,
            Button::ChatSend => &self.chat_send,
            Button::Mute => &self.mute,
            Button::Camera => &self.camera,
            Button::Name => &self.name_button,
            Button::CopyLink => &self.copy_link,
            Button::NewRoom => &self.new_room,
            Button::StartAudio => &self.start_audio,
            Button::Stats => &self.stats_button,
            Button::Share => &self.share,
            Button::Hand => &self.in_call.hand,
            Button::Reaction => &self.in_call.reaction,
            Button::Noise => &self.in_call.noise,
        }
    }

    /// Lists the devices of `kind` in its choice, `selected` chosen.
    pub fn show_devices(&self, kind: &str, devices: &[Device], selected: Option<&str>) {
        let select = if kind == "videoinput" {
            &self.camera_select
        } else {
            &self.mic_select
        };
        select.set_text_content(None);
        for (n, device) in devices.iter().filter(|d| d.kind == kind).enumerate() {
            let Ok(option) = self.document.create_element("option") else {
                continue;
            };
            let _ = option.set_attribute("value", &device.id);
            option.set_text_content(Some(&media::device_label(device, n, self.lang)));
            if selected == Some(device.id.as_str()) {
                let _ = option.set_attribute("selected", "");
            }
            let _ = select.append_child(&option);
        }
        select.set_disabled(select.length() == 0);
    }

    /// Shows on the share button (`aria-pressed`) whether we share the screen.
    pub fn show_share(&self, sharing: bool) {
        let _ = self
            .share
            .set_attribute("aria-pressed", if sharing { "true" } else { "false" });
    }

    /// Shows on the hand button (`aria-pressed`) whether our hand is up.
    pub fn show_hand(&self, hand: bool) {
        let _ = self
            .in_call
            .hand
            .set_attribute("aria-pressed", if hand { "true" } else { "false" });
    }

    /// Lists the people of `tiles` in `fileTo`, after everybody, when they changed; one
    /// chosen who is gone leaves everybody chosen.
    pub fn list_file_to(&mut self, tiles: &[Tile]) {
        let listed: Vec<(ConnId, Option<String>)> =
            tiles.iter().map(|t| (t.conn, t.name.clone())).collect();
        if listed == self.file_to_listed {
            return;
        }
        let chosen = self.in_call.file_to.value();
        while self.in_call.file_to.length() > 1 {
            self.in_call.file_to.remove_with_index(1);
        }
        let someone = Text::Someone.show(self.lang);
        for (conn, name) in &listed {
            if let Ok(option) = self.document.create_element("option") {
                let _ = option.set_attribute("value", &conn.0.to_string());
                option.set_text_content(Some(name.as_deref().unwrap_or(&someone)));
                let _ = self.in_call.file_to.append_child(&option);
            }
        }
        self.in_call.file_to.set_value(&chosen);
        if self.in_call.file_to.selected_index() < 0 {
            self.in_call.file_to.set_value("");
        }
        self.file_to_listed = listed;
    }

    /// Adds a transfer to `#transfers`, said in `words`, at 0 %; the oldest go beyond
    /// [`TRANSFERS`] (with the memory of their files).
    pub fn add_transfer(&self, words: &str) -> Option<Element> {
        let entry = self.document.create_element("li").ok()?;
        let _ = entry.set_attribute("data-progress", "0");
        // Markup of our own; the words go in as text. The label names the bar.
        entry.set_inner_html(
            "<label><span></span> <progress max=\"100\" value=\"0\"></progress></label>",
        );
        if let Ok(Some(text)) = entry.query_selector("span") {
            text.set_text_content(Some(words));
        }
        let _ = self.in_call.transfers.append_child(&entry);
        while self.in_call.transfers.child_element_count() > TRANSFERS {
            let Some(oldest) = self.in_call.transfers.first_element_child() else {
                break;
            };
            if let Ok(Some(link)) = oldest.query_selector("a[href]") {
                let _ = web_sys::Url::revoke_object_url(
                    &link.get_attribute("href").unwrap_or_default(),
                );
            }
            oldest.remove();
        }
        Some(entry)
    }

    /// Shows a transfer `percent` done.
    pub fn transfer_progress(entry: &Element, percent: u8) {
        let percent = percent.to_string();
        let _ = entry.set_attribute("data-progress", &percent);
        if let Ok(Some(bar)) = entry.query_selector("progress") {
            let _ = bar.set_attribute("value", &percent);
        }
    }

    /// Shows a transfer not sent or not taken (`data-refused`), and why in `words`.
    pub fn transfer_refused(entry: &Element, why: &FileError, words: &str) {
        let _ = entry.set_attribute("data-refused", why.as_str());
        entry.set_text_content(Some(words));
    }

    /// Shows a received file as a link that downloads it as `name` from `url` (a `blob:` of
    /// this page); the page never opens it.
    pub fn transfer_link(&self, entry: &Element, name: &str, url: &str) {
        Self::transfer_progress(entry, 100);
        let Ok(link) = self.document.create_element("a") else {
            return;
        };
        let _ = link.set_attribute("href", url);
        let _ = link.set_attribute("download", name);
        link.set_text_content(Some(name));
        if let Ok(Some(bar)) = entry.query_selector("progress") {
            bar.remove();
        }
        let _ = entry.append_child(&link);
    }

    /// Shows on the noise switch (`aria-pressed`) whether the microphone's noise is
    /// suppressed.
    pub fn show_noise(&self, on: bool) {
        let _ = self
            .in_call
            .noise
            .set_attribute("aria-pressed", if on { "true" } else { "false" });
    }

    /// Shows the microphone's level (`#micLevel`), or hides it at 0.
    pub fn show_mic_level(&self, shown: bool) {
        if shown != self.in_call.mic_level.has_attribute("hidden") {
            return;
        }
        let _ = if shown {
            self.in_call.mic_level.remove_attribute("hidden")
        } else {
            let _ = self.in_call.mic_level.set_attribute("value", "0");
            self.in_call.mic_level.set_attribute("hidden", "")
        };
    }

    /// Opens the reaction picker, or closes it (`open`: `None` turns it over).
    pub fn show_reactions(&self, open: Option<bool>) {
        let open = open.unwrap_or(self.in_call.reactions.hidden());
        self.in_call.reactions.set_hidden(!open);
        let _ = self
            .in_call
            .reaction
            .set_attribute("aria-expanded", if open { "true" } else { "false" });
    }

    /// Opens panel `n` of [`PANELS`] or closes it (`open`: `None` turns it over), with
    /// `change`; then shows on each panel's button (`aria-expanded`) whether its panel is shown.
    /// A panel the person has not opened or closed (`data-open`) is shown as the stylesheet
    /// decides: beside the stage on a wide window, not on a phone's.
    pub fn show_panels(&self, change: Option<(usize, Option<bool>)>) {
        for (n, (button, panel)) in PANELS.into_iter().enumerate() {
            let (Some(button), Some(panel)) = (
                self.document.get_element_by_id(button),
                self.document.get_element_by_id(panel),
            ) else {
                continue;
            };
            let mut shown = panel.client_width() > 0;
            if let Some((_, open)) = change.filter(|(m, _)| *m == n) {
                shown = open.unwrap_or(!shown);
                let _ = panel.set_attribute("data-open", bool_str(shown));
            }
            let _ = button.set_attribute("aria-expanded", bool_str(shown));
        }
    }

    /// Moves our own picture to the next corner of the stage, clockwise (`data-corner`: none
    /// for the top right, then `br`, `bl`, `tl`).
    pub fn move_me(&self) {
        let Some(me) = self.local_video.parent_element() else {
            return;
        };
        let next = match me.get_attribute("data-corner").as_deref() {
            None => "br",
            Some("br") => "bl",
            Some("bl") => "tl",
            _ => {
                let _ = me.remove_attribute("data-corner");
                return;
            }
        };
        let _ = me.set_attribute("data-corner", next);
    }

    /// Shows or hides the stats panel (`#stats`).
    pub fn toggle_stats(&self) {
        let open = self.stats.hidden();
        self.stats.set_hidden(!open);
        let _ = self
            .stats_button
            .set_attribute("aria-pressed", if open { "true" } else { "false" });
    }

    /// Fills the open stats panel: per person, their figures, the path and a minute's graph of
    /// what arrives from them.
    pub fn show_stats(&self, tiles: &[Tile], stats: &VecMap<ConnId, (History, Option<Path>)>) {
        if self.stats.hidden() {
            return;
        }
        self.stats.set_text_content(None);
        if tiles.is_empty() {
            self.stats
                .set_text_content(Some(&Text::NoStatsYet.show(self.lang)));
            return;
        }
        let measuring = Text::Measuring.show(self.lang);
        let someone = Text::Someone.show(self.lang);
        for tile in tiles {
            let Ok(row) = self.document.create_element("div") else {
                continue;
            };
            let _ = row.set_attribute("data-conn", &tile.conn.0.to_string());
            let (figures, path, graph) = match stats.get(&tile.conn) {
                Some((history, path)) => (
                    history
                        .figures
                        .map_or_else(|| measuring.clone(), |f| f.line()),
                    path.map(|p| Text::Path(p.0).show(self.lang))
                        .unwrap_or_default(),
                    history.graph(),
                ),
                None => (measuring.clone(), String::new(), String::new()),
            };
            for (class, text) in [
                ("who", tile.name.as_deref().unwrap_or(&someone)),
                ("figures", figures.as_str()),
                ("path", path.as_str()),
                ("graph", graph.as_str()),
            ] {
                if let Ok(part) = self.document.create_element("span") {
                    part.set_class_name(class);
                    part.set_text_content(Some(text));
                    let _ = row.append_child(&part);
                }
            }
            let _ = self.stats.append_child(&row);
        }
    }

    /// The person clicked to start the sound: every remote video plays with its sound now
    /// (a click lets the page do so).
    pub fn start_audio(&self) {
        for view in self.tiles.values() {
            view.video.set_muted(false);
            let _ = view.video.play();
        }
        self.start_audio.set_hidden(true);
    }

    /// Says `text` about inviting, with the room's `link` after it (as text, and in
    /// `data-link`).
    pub fn invite_note(&mut self, text: Text, link: Option<&str>) {
        self.note(Note::Invite, Some((text, link.map(str::to_owned))));
    }

    /// Says what is wrong with the typed name, or nothing.
    pub fn name_note(&mut self, text: Option<Text>) {
        self.note(Note::Name, text.map(|text| (text, None)));
    }

    /// Shows on the buttons (`aria-pressed`) whether we are muted and have the camera off.
    pub fn show_media(&self, media: MediaState) {
        let pressed = |on: bool| if on { "true" } else { "false" };
        let _ = self
            .mute
            .set_attribute("aria-pressed", pressed(media.muted));
        let _ = self
            .camera
            .set_attribute("aria-pressed", pressed(media.camera_off));
    }

    /// Adds a chat message to the log: `from` is the sender's relay id (`data-from`), `None`
    /// for our own (`data-from="me"`); `at` in milliseconds since the epoch. The text is set as
    /// text, never parsed as markup.
    pub fn add_chat(&self, from: Option<PeerId>, who: &str, at: u64, text: &str) {
        let Ok(line) = self.document.create_element("p") else {
            return;
        };
        let from = from.map_or_else(|| "me".to_owned(), |id| id.to_string());
        let _ = line.set_attribute("data-from", &from);
        let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
        let time = format!("{:02}:{:02}", date.get_hours(), date.get_minutes());
        for (tag, words) in [("b", who), ("time", time.as_str()), ("span", text)] {
            if let Ok(part) = self.document.create_element(tag) {
                part.set_text_content(Some(words));
                let _ = line.append_child(&part);
            }
        }
        self.add_chat_line(&line);
    }

    /// Says in the chat log that what `from` sent was left out, as `text` words it, with
    /// `data-dropped` saying why (`too-big`, `too-fast`).
    pub fn add_chat_dropped(&self, from: PeerId, why: Dropped, text: &Text) {
        let Ok(line) = self.document.create_element("p") else {
            return;
        };
        let _ = line.set_attribute("data-from", &from.to_string());
        let _ = line.set_attribute("data-dropped", why.as_str());
        if let Ok(words) = self.document.create_element("span") {
            words.set_text_content(Some(&text.show(self.lang)));
            let _ = line.append_child(&words);
        }
        self.add_chat_line(&line);
    }

    /// Adds `line` at the end of the chat log, which keeps its last [`chat::LOG_LINES`], and
    /// scrolls to it.
    fn add_chat_line(&self, line: &Element) {
        let _ = self.chat_log.append_child(line);
        while self.chat_log.child_element_count() > chat::LOG_LINES {
            match self.chat_log.first_element_child() {
                Some(oldest) => oldest.remove(),
                None => break,
            }
        }
        self.chat_log.set_scroll_top(self.chat_log.scroll_height());
    }

    /// Says what went wrong with the last message (`None` clears it).
    pub fn chat_note(&mut self, note: Option<Text>) {
        self.note(Note::Chat, note.map(|text| (text, None)));
    }

    /// Shows `status` on the status line, with its `data-state`.
    pub fn set_status(&self, status: &Status) {
        let words = status.words(self.lang);
        if self.status.text_content().as_deref() != Some(words.as_str()) {
            self.status.set_text_content(Some(&words));
        }
        let _ = self.status.set_attribute("data-state", status.state());
    }

    /// Shows the path of the call's media, with `data-path` set to `host`, `srflx`, `prflx`
    /// or `relay`; `None` clears it.
    pub fn show_path(&self, path: Option<Path>) {
        let (text, value) = path.map_or((String::new(), ""), |p| {
            (Text::Path(p.0).show(self.lang), p.as_str())
        });
        self.path.set_text_content(Some(&text));
        let _ = self.path.set_attribute("data-path", value);
    }

    /// Marks the tile of who speaks (`data-speaker`), and no other.
    pub fn show_speaker(&self, speaker: Option<ConnId>) {
        for conn in self.tiles.keys() {
            if let Some(view) = self.tiles.get(conn) {
                set_flag(&view.figure, "data-speaker", Some(*conn) == speaker);
            }
        }
    }

    /// Marks a person's tile with the path their media takes.
    pub fn show_tile_path(&self, conn: ConnId, path: Path) {
        if let Some(view) = self.tiles.get(&conn) {
            let _ = view.figure.set_attribute("data-path", path.as_str());
        }
    }

    /// Enables exactly the buttons that make sense now.
    pub fn enable(&self, start: bool, call: bool, hang_up: bool) {
        self.start.set_disabled(!start);
        self.call.set_disabled(!call);
        self.hang_up.set_disabled(!hang_up);
    }

    /// Shows `stream` as the local preview.
    pub fn show_local(&self, stream: Option<&MediaStream>) {
        self.local_video.set_src_object(stream);
    }

    /// Makes the tiles on the page match `tiles` (in that order), showing each connection's
    /// stream from `streams`. The first tile's video is `#remoteVideo`; with nobody there, the
    /// page's own (hidden, empty) placeholder video is.
    pub fn sync_tiles(&mut self, tiles: &[Tile], streams: &VecMap<ConnId, MediaStream>) {
        let gone: Vec<ConnId> = self
            .tiles
            .keys()
            .filter(|conn| !tiles.iter().any(|t| t.conn == **conn))
            .copied()
            .collect();
        for conn in gone {
            if let Some(view) = self.tiles.remove(&conn) {
                view.video.set_src_object(None);
                if view.video.is_same_node(Some(&self.remote_video)) {
                    // The placeholder stays in the page for the original scripts.
                    for name in [
                        "data-peer",
                        "data-conn",
                        "data-state",
                        "data-path",
                        "data-muted",
                        "data-camera-off",
                        "data-hand",
                        "data-reaction",
                        "data-screen",
                        "data-speaker",
                    ] {
                        let _ = view.figure.remove_attribute(name);
                    }
                    let _ = view.video.remove_attribute("data-peer");
                    let _ = view.verify.remove_attribute("data-code");
                    view.verify.set_text_content(None);
                    view.caption.set_text_content(None);
                } else {
                    view.figure.remove();
                }
            }
        }
        for (index, tile) in tiles.iter().enumerate() {
            if !self.tiles.contains_key(&tile.conn) {
                match self.new_tile() {
                    Ok(view) => {
                        self.tiles.insert(tile.conn, view);
                    }
                    Err(err) => {
                        web_sys::console::warn_2(&"cannot add a tile".into(), &err);
                        continue;
                    }
                }
            }
            let Some(view) = self.tiles.get(&tile.conn) else {
                continue;
            };
            let peer = tile.peer.to_string();
            let _ = view.figure.set_attribute("data-peer", &peer);
            let _ = view
                .figure
                .set_attribute("data-conn", &tile.conn.0.to_string());
            let _ = view.figure.set_attribute("data-state", tile.state.as_str());
            let _ = view
                .figure
                .set_attribute("data-offers", &tile.offers.to_string());
            let _ = view.figure.remove_attribute("hidden");
            let _ = view.video.set_attribute("data-peer", &peer);
            set_flag(&view.figure, "data-muted", tile.media.muted);
            set_flag(&view.figure, "data-camera-off", tile.media.camera_off);
            set_flag(&view.figure, "data-hand", tile.hand);
            match tile.reaction {
                Some(reaction) => view
                    .figure
                    .set_attribute("data-reaction", reaction.as_str()),
                None => view.figure.remove_attribute("data-reaction"),
            }
            .ok();
            let caption = Text::Caption {
                name: tile.name.clone(),
                state: tile.state,
                muted: tile.media.muted,
                camera_off: tile.media.camera_off,
                hand: tile.hand,
            }
            .show(self.lang);
            if view.caption.text_content().as_deref() != Some(caption.as_str()) {
                view.caption.set_text_content(Some(&caption));
            }
            let code = tile.verify.as_deref().unwrap_or_default();
            if view.verify.get_attribute("data-code").as_deref() != Some(code) {
                let _ = view.verify.set_attribute("data-code", code);
                view.verify.set_text_content(
                    tile.verify
                        .as_ref()
                        .map(|code| Text::Check(code.clone()).show(self.lang))
                        .as_deref(),
                );
            }
            view.verify
                .set_id(if index == 0 { "verifyCode" } else { "" });
            let stream = streams.get(&tile.conn);
            let shown = view.video.src_object().map(JsValue::from);
            if shown != stream.cloned().map(JsValue::from) {
                view.video.set_src_object(stream);
                if stream.is_some() {
                    self.play(&view.video);
                }
            }
            view.video
                .set_id(if index == 0 { "remoteVideo" } else { "" });
            // A picture wider than a camera sends (640 px unless asked for more, and the page
            // does not ask): a shared screen, most likely. The stylesheet gives it the large
            // place, shown whole.
            set_flag(&view.figure, "data-screen", view.video.video_width() > 640);
            // In the order of `tiles`.
            let _ = self.remotes.append_child(&view.figure);
        }
        let placeholder_used = self
            .tiles
            .values()
            .any(|v| v.video.is_same_node(Some(&self.remote_video)));
        if !placeholder_used {
            self.remote_video
                .set_id(if tiles.is_empty() { "remoteVideo" } else { "" });
            if let Some(figure) = self.remote_video.parent_element() {
                let _ = figure.set_attribute("hidden", "");
            }
        }
    }

    /// A new tile at the end of `#remotes`. The first one reuses the placeholder's elements.
    fn new_tile(&mut self) -> Result<TileView, JsValue> {
        let placeholder_free = !self
            .tiles
            .values()
            .any(|v| v.video.is_same_node(Some(&self.remote_video)));
        if placeholder_free {
            if let Some(figure) = self.remote_video.parent_element() {
                let caption = match figure.query_selector("figcaption")? {
                    Some(caption) => caption,
                    None => {
                        let caption = self.document.create_element("figcaption")?;
                        figure.append_child(&caption)?;
                        caption
                    }
                };
                let verify = match figure.query_selector(".verify")? {
                    Some(verify) => verify,
                    None => self.verify_element(&figure)?,
                };
                return Ok(TileView {
                    figure,
                    video: self.remote_video.clone(),
                    caption,
                    verify,
                });
            }
        }
        let figure = self.document.create_element("figure")?;
        figure.set_class_name("tile");
        let video: HtmlVideoElement = self.document.create_element("video")?.dyn_into()?;
        video.set_autoplay(true);
        let _ = video.set_attribute("playsinline", "");
        let caption = self.document.create_element("figcaption")?;
        figure.append_child(&video)?;
        figure.append_child(&caption)?;
        let verify = self.verify_element(&figure)?;
        self.remotes.append_child(&figure)?;
        Ok(TileView {
            figure,
            video,
            caption,
            verify,
        })
    }

    /// Plays a remote video. A browser that will not play sound before the person has clicked
    /// (Chrome on a page without a camera, Safari) refuses: the video then plays without sound
    /// and the "click to start audio" button appears.
    fn play(&self, video: &HtmlVideoElement) {
        let Ok(playing) = video.play() else {
            return;
        };
        let video = video.clone();
        let button = self.start_audio.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let Err(err) = wasm_bindgen_futures::JsFuture::from(playing).await else {
                return;
            };
            // Only a refusal to play is the autoplay policy; an interrupted play() (a new
            // stream) is not.
            let refused = js_sys::Reflect::get(&err, &"name".into())
                .ok()
                .and_then(|name| name.as_string())
                .is_some_and(|name| name == "NotAllowedError");
            if refused && !video.muted() {
                video.set_muted(true);
                // Shown first: play() stays pending until media arrives, which may be never.
                button.set_hidden(false);
                let _ = video.play();
            }
        });
    }

    /// A tile's place for the verification code, with the sentence that says what it is for.
    fn verify_element(&self, figure: &Element) -> Result<Element, JsValue> {
        let verify = self.document.create_element("p")?;
        verify.set_class_name("verify");
        verify.set_attribute("title", &Text::CheckHelp.show(self.lang))?;
        figure.append_child(&verify)?;
        Ok(verify)
    }
}

fn by_id<T: JsCast>(document: &Document, id: &str) -> Result<T, JsValue> {
    document
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("the page has no #{id}")))?
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("#{id} is not the expected element")))
}

/// Sets the attribute `name` to "true" when `on`, and takes it away otherwise.
fn set_flag(element: &Element, name: &str, on: bool) {
    let _ = if on {
        element.set_attribute(name, "true")
    } else {
        element.remove_attribute(name)
    };
}

/// `"true"` or `"false"`, for an ARIA state.
fn bool_str(on: bool) -> &'static str {
    if on {
        "true"
    } else {
        "false"
    }
}

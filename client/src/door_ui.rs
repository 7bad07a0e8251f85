//! The room's door on the page: `lockButton` (`aria-pressed` while the room is locked),
//! `passphraseInput` with `passphraseButton`, `knocks` (one `<li data-session>` per page
//! knocking, with a `data-admit` and a `data-refuse` button), and a `data-remove` button on each
//! remote tile for the person in control. What they show comes from the engine
//! ([`crate::core::door`]); the engine decides what pressing them does.

use protocol::{Knock, PeerId};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, HtmlButtonElement, HtmlInputElement};

use crate::{
    core::{door::Entry, Engine, Input},
    text::{label, Lang, Text},
};

/// The door's elements.
pub struct DoorUi {
    /// The page, whose clicks [`DoorUi::clicked`] reads.
    pub document: Document,
    /// Locks or opens the room.
    pub lock: HtmlButtonElement,
    /// The passphrase: the room's new one, or the one to join with.
    pub passphrase: HtmlInputElement,
    /// Uses what is in [`DoorUi::passphrase`]: the submit button of its form, so that Enter
    /// in the field presses it.
    use_passphrase: HtmlButtonElement,
    /// Who knocks.
    knocks: Element,
    /// The tiles, which get `data-remove` buttons.
    remotes: Element,
    /// The knocks listed now.
    listed: Vec<Knock>,
}

impl DoorUi {
    /// Finds the elements in `document`.
    pub fn find(document: &Document) -> Result<Self, JsValue> {
        let find = |id: &str| {
            document
                .get_element_by_id(id)
                .ok_or_else(|| JsValue::from_str(id))
        };
        Ok(Self {
            lock: find("lockButton")?.dyn_into()?,
            passphrase: find("passphraseInput")?.dyn_into()?,
            use_passphrase: find("passphraseButton")?.dyn_into()?,
            knocks: find("knocks")?,
            remotes: find("remotes")?,
            document: document.clone(),
            listed: Vec::new(),
        })
    }

    /// What a click on the page asks of the door, if anything: `lockButton`, a knock's
    /// `data-admit` or `data-refuse`, a tile's `data-remove`, or (`Some(None)`)
    /// `passphraseButton`, whose form it keeps from being sent.
    pub fn clicked(event: &web_sys::Event) -> Option<Option<Input>> {
        let target: Element = event.target()?.dyn_into().ok()?;
        let button = target
            .closest("#lockButton, #passphraseButton, [data-admit], [data-refuse], [data-remove]")
            .ok()??;
        Some(Some(match button.id().as_str() {
            "lockButton" => Input::ToggleLock,
            "passphraseButton" => {
                event.prevent_default();
                return Some(None);
            }
            _ => {
                if let Some(session) = button.get_attribute("data-admit") {
                    Input::Answer(session, true)
                } else if let Some(session) = button.get_attribute("data-refuse") {
                    Input::Answer(session, false)
                } else {
                    Input::Remove(PeerId(button.get_attribute("data-remove")?.parse().ok()?))
                }
            }
        }))
    }

    /// The passphrase typed, taken out of the field.
    pub fn take_passphrase(&self) -> String {
        let typed = self.passphrase.value();
        self.passphrase.set_value("");
        typed
    }

    /// Shows the door as `engine` knows it, in `lang`.
    pub fn render(&mut self, engine: &Engine, lang: Lang) {
        let door = engine.door();
        let in_control = engine.in_control();
        let _ = self
            .lock
            .set_attribute("aria-pressed", if door.locked() { "true" } else { "false" });
        self.lock.set_disabled(!in_control);
        let asked = matches!(door.entry(), Entry::Passphrase(_));
        self.use_passphrase.set_disabled(!in_control && !asked);
        self.passphrase.set_disabled(!in_control && !asked);
        let knocking = if engine.me().is_some() && door.entry() == Entry::Open {
            door.knocking()
        } else {
            &[]
        };
        if self.listed != knocking {
            self.listed = knocking.to_vec();
            self.list_knocks(lang);
        }
        self.sync_remove_buttons(in_control, lang);
    }

    /// One `<li data-session>` per knock: the name, and the two buttons.
    fn list_knocks(&self, lang: Lang) {
        self.knocks.set_text_content(None);
        for knock in &self.listed {
            let Ok(item) = self.document.create_element("li") else {
                continue;
            };
            let _ = item.set_attribute("data-session", &knock.session);
            let who = knock
                .name
                .clone()
                .unwrap_or_else(|| Text::Someone.show(lang));
            if let Ok(name) = self.document.create_element("span") {
                name.set_text_content(Some(&who));
                let _ = item.append_child(&name);
            }
            for (key, attribute) in [("admit", "data-admit"), ("refuse", "data-refuse")] {
                if let Some(button) = self.button(key, lang) {
                    let _ = button.set_attribute(attribute, &knock.session);
                    let _ = item.append_child(&button);
                }
            }
            let _ = self.knocks.append_child(&item);
        }
    }

    /// A `<button type=button data-t=key>` with its words in `lang`.
    fn button(&self, key: &str, lang: Lang) -> Option<Element> {
        let button = self.document.create_element("button").ok()?;
        let _ = button.set_attribute("type", "button");
        let _ = button.set_attribute("data-t", key);
        button.set_text_content(label(key, lang));
        Some(button)
    }

    /// Gives each shown remote tile a `data-remove` button while we are in control, and takes
    /// them away otherwise.
    fn sync_remove_buttons(&self, in_control: bool, lang: Lang) {
        let Ok(tiles) = self.remotes.query_selector_all("figure") else {
            return;
        };
        for index in 0..tiles.length() {
            let Some(tile) = tiles.item(index).and_then(|n| n.dyn_into::<Element>().ok()) else {
                continue;
            };
            let peer = tile
                .get_attribute("data-peer")
                .filter(|_| in_control && !tile.has_attribute("hidden"));
            let existing = tile.query_selector("[data-remove]").ok().flatten();
            match (peer, existing) {
                (Some(peer), Some(button)) => {
                    if button.get_attribute("data-remove").as_deref() != Some(peer.as_str()) {
                        let _ = button.set_attribute("data-remove", &peer);
                    }
                }
                (Some(peer), None) => {
                    if let Some(button) = self.button("remove", lang) {
                        let _ = button.set_attribute("data-remove", &peer);
                        let _ = tile.append_child(&button);
                    }
                }
                (None, Some(button)) => button.remove(),
                (None, None) => {}
            }
        }
    }
}

//! Keyboard shortcuts: which key does what, and when a key is the person typing instead.
//!
//! M mutes and unmutes, V turns the camera off and on, H raises and lowers the hand, C goes to
//! the chat field. A key pressed while typing in a field (the chat, the name) is a letter, not
//! a shortcut; one held with Ctrl, Alt or Meta is the browser's or the system's (Ctrl+C
//! copies); a key held down repeats nothing.

/// What a shortcut does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// The mute button.
    Mute,
    /// The camera button.
    Camera,
    /// The hand button.
    Hand,
    /// Into the chat field.
    Chat,
}

/// A key pressed (`keydown`), as the shortcuts need to know it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Key<'a> {
    /// `KeyboardEvent.key`: the character, as the keyboard's layout writes it.
    pub key: &'a str,
    /// `KeyboardEvent.code`: the physical key (`KeyM`), for layouts that write no Latin
    /// letters.
    pub code: &'a str,
    /// Ctrl, Alt or Meta is held.
    pub modified: bool,
    /// The key is held down and repeats.
    pub repeat: bool,
    /// The focus is in a field that takes text (an input, a text area, a choice, editable
    /// content).
    pub typing: bool,
}

/// Every shortcut with its key, in the order the page lists them.
pub const ALL: [(Shortcut, char); 4] = [
    (Shortcut::Mute, 'M'),
    (Shortcut::Camera, 'V'),
    (Shortcut::Hand, 'H'),
    (Shortcut::Chat, 'C'),
];

/// The shortcut `key` stands for, if any.
pub fn shortcut(key: Key) -> Option<Shortcut> {
    if key.modified || key.repeat || key.typing {
        return None;
    }
    let mut chars = key.key.chars();
    let letter = match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => c,
        // A layout without Latin letters: the physical key says which.
        _ => key
            .code
            .strip_prefix("Key")
            .filter(|c| c.len() == 1)?
            .chars()
            .next()?,
    };
    let letter = letter.to_ascii_uppercase();
    ALL.iter().find(|(_, k)| *k == letter).map(|(s, _)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(key: &'static str, code: &'static str) -> Key<'static> {
        Key {
            key,
            code,
            ..Key::default()
        }
    }

    #[test]
    fn the_letters_do_what_the_page_lists() {
        assert_eq!(shortcut(press("m", "KeyM")), Some(Shortcut::Mute));
        assert_eq!(
            shortcut(press("M", "KeyM")),
            Some(Shortcut::Mute),
            "with Shift"
        );
        assert_eq!(shortcut(press("v", "KeyV")), Some(Shortcut::Camera));
        assert_eq!(shortcut(press("h", "KeyH")), Some(Shortcut::Hand));
        assert_eq!(shortcut(press("c", "KeyC")), Some(Shortcut::Chat));
        for (key, code) in [
            ("x", "KeyX"),
            ("Enter", "Enter"),
            (" ", "Space"),
            ("1", "Digit1"),
        ] {
            assert_eq!(shortcut(press(key, code)), None, "{key:?}");
        }
        // A Russian layout writes "ь" on the M key: the key is what counts.
        assert_eq!(shortcut(press("ь", "KeyM")), Some(Shortcut::Mute));
        // AZERTY writes "m" on another key than QWERTY: the letter is what counts.
        assert_eq!(shortcut(press("m", "Semicolon")), Some(Shortcut::Mute));
    }

    #[test]
    fn the_page_lists_every_shortcut_and_its_controls_say_their_keys() {
        let page = include_str!("../../../www/index.html");
        for (shortcut, key) in ALL {
            assert!(page.contains(&format!("<kbd>{key}</kbd>")), "{shortcut:?}");
            assert!(
                page.contains(&format!("aria-keyshortcuts=\"{key}\"")),
                "{shortcut:?}"
            );
        }
    }

    #[test]
    fn typing_modifiers_and_repeats_are_not_shortcuts() {
        let m = press("m", "KeyM");
        assert_eq!(shortcut(Key { typing: true, ..m }), None);
        assert_eq!(
            shortcut(Key {
                modified: true,
                ..m
            }),
            None,
            "Ctrl+M"
        );
        assert_eq!(shortcut(Key { repeat: true, ..m }), None);
        let c = press("c", "KeyC");
        assert_eq!(
            shortcut(Key {
                modified: true,
                ..c
            }),
            None,
            "Ctrl+C copies"
        );
    }
}

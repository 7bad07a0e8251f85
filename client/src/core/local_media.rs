//! Our own camera, microphone and screen: what we send, as the person chose it. The browser
//! layer opens the devices and carries out [`Effect::SetMedia`] and [`Effect::Share`]; which
//! transceiver carries them is [`super::transceivers`]' to say.

use super::{Effect, MediaState, Out};

/// What we send of ourselves.
#[derive(Debug, Default)]
pub struct LocalMedia {
    /// Muted, camera off.
    state: MediaState,
    /// A screen is shared instead of the camera.
    sharing: bool,
    /// The camera and microphone opened.
    open: bool,
}

impl LocalMedia {
    /// What we send now: a new connection is told it first.
    pub fn state(&self) -> MediaState {
        self.state
    }

    /// Whether the camera and microphone are open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The camera and microphone opened: whether this is the first time.
    pub fn opened(&mut self) -> bool {
        !std::mem::replace(&mut self.open, true)
    }

    /// The mute button.
    pub fn toggle_mute(&mut self, out: &mut Out) {
        self.state.muted = !self.state.muted;
        out.push(Effect::SetMedia(self.state));
    }

    /// The camera button.
    pub fn toggle_camera(&mut self, out: &mut Out) {
        self.state.camera_off = !self.state.camera_off;
        out.push(Effect::SetMedia(self.state));
    }

    /// The share button: start sharing, or stop.
    pub fn toggle_share(&mut self, out: &mut Out) {
        self.sharing = !self.sharing;
        out.push(Effect::Share(self.sharing));
    }

    /// Sharing ended: stopped from the browser's own bar, or never started (refused). Said
    /// once.
    pub fn share_ended(&mut self, out: &mut Out) {
        if self.sharing {
            self.sharing = false;
            out.push(Effect::Share(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::VecSet;

    #[test]
    fn sharing_ends_once_and_the_buttons_toggle() {
        let mut media = LocalMedia::default();
        let mut out = Out::new(VecSet::new());
        media.toggle_share(&mut out);
        media.share_ended(&mut out);
        media.share_ended(&mut out);
        media.toggle_mute(&mut out);
        media.toggle_camera(&mut out);
        media.toggle_mute(&mut out);
        let (effects, _, _) = out.finish();
        assert_eq!(
            effects,
            [
                Effect::Share(true),
                Effect::Share(false),
                Effect::SetMedia(MediaState {
                    muted: true,
                    camera_off: false
                }),
                Effect::SetMedia(MediaState {
                    muted: true,
                    camera_off: true
                }),
                Effect::SetMedia(MediaState {
                    muted: false,
                    camera_off: true
                }),
            ]
        );
        assert!(media.opened());
        assert!(!media.opened(), "opened once");
    }
}

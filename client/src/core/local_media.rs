//! Our own camera, microphone and screen: what we send, as the person chose it. The browser
//! layer opens the devices and carries out [`Effect::SetMedia`], [`Effect::Share`] and
//! [`Effect::SetNoiseSuppression`]; which transceiver carries them is
//! [`super::transceivers`]' to say. [`mic_level`] turns what the microphone picks up into the
//! level the page shows while we are not muted.

use super::{Effect, MediaState, Out};

/// What we send of ourselves.
#[derive(Debug)]
pub struct LocalMedia {
    /// Muted, camera off.
    state: MediaState,
    /// A screen is shared instead of the camera.
    sharing: bool,
    /// The camera and microphone opened.
    open: bool,
    /// The browser suppresses the microphone's noise (and evens out its gain): what browsers
    /// do by default, and what a person in a noisy room wants; off for music, say.
    noise_suppression: bool,
}

impl Default for LocalMedia {
    fn default() -> Self {
        Self {
            state: MediaState::default(),
            sharing: false,
            open: false,
            noise_suppression: true,
        }
    }
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

    /// Whether the browser is to suppress the microphone's noise: a microphone opened later is
    /// opened so.
    pub fn noise_suppression(&self) -> bool {
        self.noise_suppression
    }

    /// The noise suppression switch.
    pub fn toggle_noise_suppression(&mut self, out: &mut Out) {
        self.noise_suppression = !self.noise_suppression;
        out.push(Effect::SetNoiseSuppression(self.noise_suppression));
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

/// The level to show for one look at the microphone: `samples` as an `AnalyserNode`'s
/// `getByteTimeDomainData` gives them (128 is silence), as 0 to 100, from their loudness in
/// decibels below full scale: -60 dB (a quiet room) and below is 0, full scale 100. Speech near
/// a microphone is around -30 to -10 dB, half the scale and more.
pub fn mic_level(samples: &[u8]) -> u8 {
    // The mean square of the samples, in integers: at most 128² (full scale).
    let sum: u64 = samples
        .iter()
        .map(|&s| (i32::from(s) - 128).pow(2) as u64)
        .sum();
    let Some(mean) = sum
        .checked_div(samples.len() as u64)
        .map(|m| m as u32)
        .filter(|&m| m > 0)
    else {
        return 0;
    };
    // log2 of it, the whole part from its highest bit and the rest taken as linear in between
    // (off by a quarter of a decibel at most), rather than a logarithm from a maths library,
    // which the page would have to carry.
    let whole = 31 - mean.leading_zeros();
    let log2 = whole as f32 + (mean as f32 / (1u32 << whole) as f32 - 1.0);
    // 10·log10 is 3.0103·log2; full scale, 128², is 2^14.
    let db = 3.0103 * (log2 - 14.0);
    ((db + 60.0) / 60.0 * 100.0 + 0.5).clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small::VecSet;

    #[test]
    fn the_level_follows_the_loudness() {
        assert_eq!(mic_level(&[]), 0);
        assert_eq!(mic_level(&[128; 256]), 0, "silence");
        // A faint hiss, one step either side of silence: about -42 dB.
        let hiss: Vec<u8> = (0..256)
            .map(|i| if i % 2 == 0 { 127 } else { 129 })
            .collect();
        let faint = mic_level(&hiss);
        assert!((20..40).contains(&faint), "{faint}");
        // A loud square wave at full scale is the top.
        let loud: Vec<u8> = (0..256).map(|i| if i % 2 == 0 { 0 } else { 255 }).collect();
        assert_eq!(mic_level(&loud), 100);
        // Louder is higher.
        let speech: Vec<u8> = (0..256)
            .map(|i| (128.0 + 20.0 * (i as f32 / 8.0).sin()) as u8)
            .collect();
        let said = mic_level(&speech);
        assert!(faint < said && said < 100, "{faint} {said}");
    }

    #[test]
    fn noise_suppression_is_on_until_switched_off() {
        let mut media = LocalMedia::default();
        assert!(media.noise_suppression());
        let mut out = Out::new(VecSet::new());
        media.toggle_noise_suppression(&mut out);
        assert!(!media.noise_suppression());
        media.toggle_noise_suppression(&mut out);
        let (effects, _, _) = out.finish();
        assert_eq!(
            effects,
            [
                Effect::SetNoiseSuppression(false),
                Effect::SetNoiseSuppression(true)
            ]
        );
    }

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

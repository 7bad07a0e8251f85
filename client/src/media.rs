//! Camera and microphone, and the errors a person meets getting them.

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamConstraints};

use crate::{
    core::local_media::mic_level,
    text::{Lang, MediaProblem, Text},
};

/// Why the page has no camera or microphone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaError {
    /// Opened over plain http from another machine: browsers offer `getUserMedia` only to
    /// secure contexts (https, or http on localhost).
    InsecureContext,
    /// The person, or the browser's settings, refused access.
    Denied,
    /// There is no camera and no microphone.
    NoDevice,
    /// The device exists but another program holds it.
    InUse,
    /// Anything else, with the browser's words.
    Other(String),
}

impl MediaError {
    /// What the person is told (the browser's own words, if any, go to the console).
    pub fn problem(&self) -> MediaProblem {
        match self {
            MediaError::InsecureContext => MediaProblem::InsecureContext,
            MediaError::Denied => MediaProblem::Denied,
            MediaError::NoDevice => MediaProblem::NoDevice,
            MediaError::InUse => MediaProblem::InUse,
            MediaError::Other(_) => MediaProblem::Other,
        }
    }
}

/// The page's first camera request: the one `index.html` started before this code loaded
/// (`window.__earlyMedia`, a `getUserMedia` promise for both devices), if it succeeded;
/// otherwise [`open_camera_and_microphone`], which sorts out a missing device or a refusal.
pub async fn first_camera_request() -> Result<MediaStream, MediaError> {
    let early =
        crate::take_early("__earlyMedia").and_then(|p| p.dyn_into::<js_sys::Promise>().ok());
    if let Some(promise) = early {
        if let Ok(stream) = JsFuture::from(promise).await.and_then(|s| s.dyn_into()) {
            return Ok(stream);
        }
    }
    open_camera_and_microphone().await
}

/// Asks for camera and microphone; with only one of the two present, takes that one.
pub async fn open_camera_and_microphone() -> Result<MediaStream, MediaError> {
    let window = web_sys::window().ok_or_else(|| MediaError::Other("no window".into()))?;
    if !window.is_secure_context() {
        return Err(MediaError::InsecureContext);
    }
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|_| MediaError::InsecureContext)?;
    let mut last = MediaError::NoDevice;
    for (audio, video) in [(true, true), (false, true), (true, false)] {
        let constraints = MediaStreamConstraints::new();
        constraints.set_audio(&JsValue::from_bool(audio));
        constraints.set_video(&JsValue::from_bool(video));
        let request = devices
            .get_user_media_with_constraints(&constraints)
            .map_err(classify)?;
        match JsFuture::from(request).await {
            Ok(stream) => {
                return stream
                    .dyn_into()
                    .map_err(|_| MediaError::Other("not a stream".into()))
            }
            // Only a missing device is worth a retry with less; a refusal stays a refusal.
            Err(err) => match classify(err) {
                MediaError::NoDevice => last = MediaError::NoDevice,
                other => return Err(other),
            },
        }
    }
    Err(last)
}

/// Asks to share a screen, a window or a tab (`getDisplayMedia`, video only). web-sys has it
/// behind unstable APIs, so it is called by name.
pub async fn open_screen() -> Result<MediaStream, Text> {
    let window = web_sys::window().ok_or(Text::ScreenUnsupported)?;
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|_| Text::Screen(MediaProblem::InsecureContext))?;
    let open = Reflect::get(&devices, &JsValue::from_str("getDisplayMedia"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or(Text::ScreenUnsupported)?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&JsValue::TRUE);
    let request = open
        .call1(&devices, &constraints)
        .map_err(|err| screen_refused(classify(err)))?;
    let stream = JsFuture::from(js_sys::Promise::from(request))
        .await
        .map_err(|err| screen_refused(classify(err)))?;
    stream
        .dyn_into()
        .map_err(|_| Text::Screen(MediaProblem::Other))
}

/// What the person is told when the screen cannot be shared; the browser's words go to the
/// console.
fn screen_refused(err: MediaError) -> Text {
    web_sys::console::warn_1(&format!("getDisplayMedia: {err:?}").into());
    Text::Screen(err.problem())
}

/// Sorts a `getUserMedia` rejection (a `DOMException`) by its name.
fn classify(err: JsValue) -> MediaError {
    let name = Reflect::get(&err, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => MediaError::Denied,
        "NotFoundError" | "OverconstrainedError" => MediaError::NoDevice,
        "NotReadableError" | "AbortError" => MediaError::InUse,
        _ => MediaError::Other(
            Reflect::get(&err, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
                // Not `{err:?}`: formatting a JsValue brings wasm-bindgen's whole
                // debug-string function into the bundle's glue.
                .unwrap_or_else(|| name.clone()),
        ),
    }
}

/// The cameras and microphones there are now (`enumerateDevices`).
pub async fn list_devices() -> Vec<Device> {
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else {
        return Vec::new();
    };
    let Ok(request) = devices.enumerate_devices() else {
        return Vec::new();
    };
    let Ok(list) = JsFuture::from(request).await else {
        return Vec::new();
    };
    let text = |item: &JsValue, name: &str| {
        Reflect::get(item, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    js_sys::Array::from(&list)
        .iter()
        .map(|item| Device {
            kind: text(&item, "kind"),
            id: text(&item, "deviceId"),
            label: text(&item, "label"),
        })
        .filter(|d| d.kind == "videoinput" || d.kind == "audioinput")
        .collect()
}

/// The microphone's processing as constraints: noise suppression and automatic gain on or off
/// together (off for music, say), echo cancellation on either way (without headphones a call
/// without it echoes).
fn processing(noise_suppression: bool) -> js_sys::Object {
    let constraints = js_sys::Object::new();
    for (name, on) in [
        ("noiseSuppression", noise_suppression),
        ("autoGainControl", noise_suppression),
        ("echoCancellation", true),
    ] {
        let _ = Reflect::set(&constraints, &name.into(), &JsValue::from_bool(on));
    }
    constraints
}

/// Asks the browser to suppress the noise of the microphone `track` or not
/// (`applyConstraints`); returns whether the track says it does as asked (`getSettings`).
pub async fn set_noise_suppression(track: &web_sys::MediaStreamTrack, on: bool) -> bool {
    let constraints = processing(on).unchecked_into::<web_sys::MediaTrackConstraints>();
    let applied = match track.apply_constraints_with_constraints(&constraints) {
        Ok(promise) => JsFuture::from(promise).await,
        Err(err) => Err(err),
    };
    if let Err(err) = applied {
        web_sys::console::warn_2(&"applyConstraints".into(), &err);
        return false;
    }
    setting(track, "noiseSuppression").and_then(|v| v.as_bool()) == Some(on)
}

/// Opens the camera or microphone `id` (`kind` as in [`Device`]) and returns its track; a
/// microphone with its noise suppressed or not, as `noise_suppression` says.
pub async fn open_device(
    kind: &str,
    id: &str,
    noise_suppression: bool,
) -> Result<web_sys::MediaStreamTrack, MediaError> {
    let window = web_sys::window().ok_or_else(|| MediaError::Other("no window".into()))?;
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|_| MediaError::InsecureContext)?;
    let exact = js_sys::Object::new();
    let _ = Reflect::set(&exact, &"exact".into(), &JsValue::from_str(id));
    let wanted = if kind == "videoinput" {
        js_sys::Object::new()
    } else {
        processing(noise_suppression)
    };
    let _ = Reflect::set(&wanted, &"deviceId".into(), &exact);
    let constraints = MediaStreamConstraints::new();
    if kind == "videoinput" {
        constraints.set_video(&wanted);
    } else {
        constraints.set_audio(&wanted);
    }
    let request = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(classify)?;
    let stream: MediaStream = JsFuture::from(request)
        .await
        .map_err(classify)?
        .dyn_into()
        .map_err(|_| MediaError::Other("not a stream".into()))?;
    stream
        .get_tracks()
        .get(0)
        .dyn_into()
        .map_err(|_| MediaError::NoDevice)
}

/// The `deviceId` a track was opened from.
pub fn device_of(track: &web_sys::MediaStreamTrack) -> Option<String> {
    setting(track, "deviceId")?.as_string()
}

/// The setting `name` of `track` (`getSettings()`), if it has one.
fn setting(track: &web_sys::MediaStreamTrack, name: &str) -> Option<JsValue> {
    let settings = Reflect::get(track, &"getSettings".into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?
        .call0(track)
        .ok()?;
    Reflect::get(&settings, &name.into())
        .ok()
        .filter(|v| !v.is_undefined())
}

/// The microphone's level, shown in a `<meter>` ten times a second while this lives, from an
/// `AnalyserNode` on its track ([`mic_level`] says how loud). Dropping it stops the timer and
/// closes its audio context.
pub struct MicMeter {
    /// The track it listens to.
    track: String,
    context: web_sys::AudioContext,
    _interval: gloo_timers::callback::Interval,
}

impl MicMeter {
    /// Starts showing the level of `track`, the audio track of `stream`, in `meter`.
    pub fn start(
        stream: &MediaStream,
        track: &web_sys::MediaStreamTrack,
        meter: web_sys::Element,
    ) -> Result<Self, JsValue> {
        let context = web_sys::AudioContext::new()?;
        let source = context.create_media_stream_source(stream)?;
        let analyser = context.create_analyser()?;
        // 512 samples: about 11 ms of sound at 48 kHz, enough for a level and cheap to read.
        analyser.set_fft_size(512);
        source.connect_with_audio_node(&analyser)?;
        let mut samples = vec![128u8; analyser.fft_size() as usize];
        let interval = gloo_timers::callback::Interval::new(100, move || {
            analyser.get_byte_time_domain_data(&mut samples);
            let _ = meter.set_attribute("value", &mic_level(&samples).to_string());
        });
        Ok(Self {
            track: track.id(),
            context,
            _interval: interval,
        })
    }

    /// Whether it listens to `track`.
    pub fn listens_to(&self, track: &web_sys::MediaStreamTrack) -> bool {
        self.track == track.id()
    }

    /// Lets the audio context run: a browser may hold it until the person has clicked.
    pub fn resume(&self) {
        let _ = self.context.resume();
    }
}

impl Drop for MicMeter {
    fn drop(&mut self) {
        let _ = self.context.close();
    }
}

/// One camera or microphone, as `enumerateDevices` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// `videoinput` or `audioinput`.
    pub kind: String,
    /// Its `deviceId`.
    pub id: String,
    /// Its label (empty before the person allowed the camera).
    pub label: String,
}

/// Which device of `kind` to use from `devices`: the one in use (`current`) while it is still
/// there, else the first of that kind (the one in use was unplugged), else none.
pub fn choose_device<'a>(
    devices: &'a [Device],
    kind: &str,
    current: Option<&str>,
) -> Option<&'a Device> {
    let mut of_kind = devices.iter().filter(|d| d.kind == kind);
    let first = of_kind.clone().next();
    current
        .and_then(|id| of_kind.find(|d| d.id == id))
        .or(first)
}

/// What the device choice shows for `device`, the `n`th of its kind: its label, or a number
/// before the browser tells labels.
pub fn device_label(device: &Device, n: usize, lang: Lang) -> String {
    if device.label.is_empty() {
        Text::Device {
            camera: device.kind == "videoinput",
            n: n + 1,
        }
        .show(lang)
    } else {
        device.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(kind: &str, id: &str) -> Device {
        Device {
            kind: kind.into(),
            id: id.into(),
            label: String::new(),
        }
    }

    #[test]
    fn the_device_in_use_stays_until_it_goes_away() {
        let devices = [
            device("audioinput", "m1"),
            device("videoinput", "c1"),
            device("videoinput", "c2"),
        ];
        assert_eq!(
            choose_device(&devices, "videoinput", Some("c2")).map(|d| d.id.as_str()),
            Some("c2")
        );
        // Unplugged: the first camera there is.
        assert_eq!(
            choose_device(&devices, "videoinput", Some("gone")).map(|d| d.id.as_str()),
            Some("c1")
        );
        assert_eq!(
            choose_device(&devices, "videoinput", None).map(|d| d.id.as_str()),
            Some("c1")
        );
        assert_eq!(choose_device(&devices[..1], "videoinput", Some("c1")), None);
        assert_eq!(device_label(&devices[1], 0, Lang::En), "Camera 1");
        assert_eq!(device_label(&devices[0], 1, Lang::En), "Microphone 2");
        assert_eq!(device_label(&devices[1], 0, Lang::ZhHant), "攝影機 1");
    }
}

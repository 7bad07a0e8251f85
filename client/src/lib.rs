//! The browser side of the video call.
//!
//! The page (`www/index.html`) loads this module; [`start`] finds the page's elements, reads the
//! options from the address (`#true` calls, `?room=NAME` picks a room) and runs [`app::App`]
//! until the page is closed.

pub mod app;
pub mod chat;
pub mod core;
pub mod diagnose;
pub mod door_ui;
pub mod invite;
pub mod json;
pub mod media;
pub mod peer;
pub mod relay;
pub mod small;
pub mod stats;
pub mod text;
pub mod trace;
pub mod ui;
pub mod verify;

use wasm_bindgen::prelude::*;

/// What `www/index.html` started before this code loaded, left in `window.NAME` (the camera
/// request, the relay socket): taken once, so that nothing else takes it again.
pub(crate) fn take_early(name: &str) -> Option<JsValue> {
    let early = page_value(name)?;
    let window: JsValue = web_sys::window()?.into();
    let _ = js_sys::Reflect::set(&window, &JsValue::from_str(name), &JsValue::NULL);
    Some(early)
}

/// What `www/index.html` left in `window.NAME`.
fn page_value(name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(&web_sys::window()?.into(), &JsValue::from_str(name)).ok()
}

/// What this browser lacks to make a call, if anything: WebRTC's `RTCPeerConnection` (a
/// WebKit built without it has the camera but cannot call), or `WebSocket`.
fn missing(window: &web_sys::Window) -> Option<text::Missing> {
    let has = |name: &str| {
        js_sys::Reflect::get(window, &JsValue::from_str(name)).is_ok_and(|v| v.is_function())
    };
    if !has("RTCPeerConnection") {
        Some(text::Missing::PeerConnection)
    } else if !has("WebSocket") {
        Some(text::Missing::WebSocket)
    } else {
        None
    }
}

/// Entry point, run by the browser when the module loads.
#[wasm_bindgen(start)]
pub async fn start() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    // wasm-bindgen-test loads this module into a page of its own, without our elements.
    if document.get_element_by_id("localVideo").is_none() {
        return Ok(());
    }
    let started = async {
        let mut ui = ui::Ui::find(&document)?;
        let options = app::Options::from_location(&window.location())?;
        // A browser without what a call needs is told so, in words, before anything starts
        // (and fails with an exception's text).
        if let Some(missing) = missing(&window) {
            ui.set_lang(options.lang);
            ui.set_status(&core::Status::Error(text::Text::Unsupported(missing)));
            ui.enable(false, false, false);
            return Ok(());
        }
        app::App::run(options, ui).await
    }
    .await;
    if let Err(err) = &started {
        // The person is told in words (`index.html`), the details go to the console.
        web_sys::console::error_2(&"the page could not start:".into(), err);
        let say = page_value("__notStarted").and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(say) = say {
            let _ = say.call0(&window);
        }
    }
    started
}

/// The page's allocator: Talc rather than the standard library's dlmalloc, for size. Measured
/// with `scripts/bundle-size.sh`: the bundle 2.5 KB smaller gzipped (120,069 → 117,570 bytes
/// of .wasm), and Talc's own benchmarks have it faster than dlmalloc on WebAssembly. Without
/// reallocation in place (`disable-realloc-in-place`, 80 bytes fewer): a growing buffer is
/// copied, which the page's few growing buffers (a received file's chunks) can afford.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

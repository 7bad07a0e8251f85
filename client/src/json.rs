//! Frames read with the browser's own `JSON.parse`, seen as a [`protocol::JsonView`]: the page
//! carries no JSON parser of its own.

use protocol::JsonView;
use wasm_bindgen::{JsCast, JsValue};

/// A value that `JSON.parse` made.
pub struct Js(JsValue);

/// Parses `text`, or `None` if it is not JSON.
pub fn parse(text: &str) -> Option<Js> {
    js_sys::JSON::parse(text).ok().map(Js)
}

impl JsonView for Js {
    fn field(&self, key: &str) -> Option<Self> {
        if !self.0.is_object() {
            return None;
        }
        js_sys::Reflect::get(&self.0, &JsValue::from_str(key))
            .ok()
            .filter(|value| !value.is_undefined() && !value.is_null())
            .map(Js)
    }

    fn string(&self) -> Option<String> {
        self.0.as_string()
    }

    fn integer(&self) -> Option<u64> {
        self.0.as_f64().and_then(protocol::exact_integer)
    }

    fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }

    fn items(&self) -> Option<Vec<Self>> {
        let array = self.0.dyn_ref::<js_sys::Array>()?;
        Some(array.iter().map(Js).collect())
    }
}

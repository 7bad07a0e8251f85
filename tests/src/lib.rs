//! Helpers for the end-to-end tests: real headless Chrome pages ([`browser`]) and Firefox pages
//! ([`firefox`]), the real relay in this process ([`relay`]), and a network lab of namespaces
//! on this machine ([`lab`]).

pub mod browser;
pub mod firefox;
pub mod lab;
pub mod relay;

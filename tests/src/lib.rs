//! Helpers for the end-to-end tests: real headless Chrome pages ([`browser`]), the real relay
//! in this process ([`relay`]), and a network lab of namespaces on this machine ([`lab`]).

pub mod browser;
pub mod lab;
pub mod relay;

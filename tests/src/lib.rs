//! Helpers for the end-to-end tests: real headless Chrome pages ([`browser`]) and Firefox pages
//! ([`firefox`]), the real relay in this process ([`relay`]), a stand-in for it whose every
//! frame the test writes ([`standin`]), and a network lab of namespaces on this machine
//! ([`lab`]).

pub mod browser;
pub mod firefox;
pub mod lab;
pub mod relay;
pub mod standin;

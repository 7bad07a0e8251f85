//! Helpers for the end-to-end tests: real headless Chrome pages ([`browser`]) and a network
//! lab of namespaces on this machine ([`lab`]).

pub mod browser;
pub mod lab;

//! The generator's TLS client for wss: trusts exactly the certificate our relay issued itself
//! (its `cert.pem`), speaks HTTP/1.1 over ALPN as a browser opening a WebSocket does, and either
//! pays a full handshake on every connection or resumes sessions with the tickets the relay
//! sends.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use rustls::{
    client::{
        ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
        Tls13ClientSessionValue,
    },
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, NamedGroup, RootCertStore,
};
use tokio_rustls::TlsConnector;

/// The name the generator asks for: the relay's own certificate is valid for `localhost` (and
/// 127.0.0.1, and the machine's names).
pub const SERVER_NAME: &str = "localhost";

/// Whether each connection pays a full TLS handshake or resumes an earlier session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// No session cache on the client: every connection is a full handshake (key exchange,
    /// the relay's certificate and its signature).
    Full,
    /// A connection resumes with a ticket from an earlier one when the client has one (key
    /// exchange, no certificate, no signature). The client keeps up to [`TICKETS`] tickets (see
    /// [`TicketStore`]).
    Resumed,
}

impl Handshake {
    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Full => "full TLS handshakes",
            Handshake::Resumed => "resumed TLS sessions",
        }
    }
}

/// A wss client that trusts the certificates in the PEM file `cert_pem` and nothing else.
#[derive(Clone)]
pub struct Client {
    /// Connects and does the TLS handshake.
    pub connector: TlsConnector,
    /// The name sent (SNI) and checked against the certificate.
    pub server_name: ServerName<'static>,
    /// How the handshakes go.
    pub handshake: Handshake,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server_name", &self.server_name)
            .field("handshake", &self.handshake)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// One client configuration for a whole burst (so one session cache, when it has one).
    pub fn new(cert_pem: &Path, handshake: Handshake) -> anyhow::Result<Client> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(cert_pem)
            .with_context(|| format!("reading {}", cert_pem.display()))?
        {
            let cert = cert.with_context(|| format!("parsing {}", cert_pem.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("trusting the certificate in {}", cert_pem.display()))?;
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "no certificate in {}",
            cert_pem.display()
        );
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .context("configuring TLS")?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = match handshake {
            Handshake::Full => Resumption::disabled(),
            Handshake::Resumed => Resumption::store(Arc::new(TicketStore::default())),
        };
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from(SERVER_NAME)?,
            handshake,
        })
    }
}

/// The most TLS 1.3 tickets the client keeps: as many as the relay's session cache (rustls's
/// default server cache holds 256 sessions).
pub const TICKETS: usize = 256;

/// A client session store for one server that keeps up to [`TICKETS`] TLS 1.3 tickets and uses
/// the newest first. rustls's own cache keeps 8 per server: in a burst of 64 handshakes at a time
/// the tickets of many connections that finish together overflow it, and only about a third of
/// the next connections find one (a browser, one connection at a time, always has one).
#[derive(Debug)]
pub struct TicketStore {
    tickets: Mutex<VecDeque<Tls13ClientSessionValue>>,
    /// The key-exchange hint and TLS 1.2 sessions, as rustls's cache keeps them.
    rest: ClientSessionMemoryCache,
}

impl Default for TicketStore {
    fn default() -> Self {
        TicketStore {
            tickets: Mutex::new(VecDeque::with_capacity(TICKETS)),
            rest: ClientSessionMemoryCache::new(8),
        }
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.rest.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.rest.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.rest.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.rest.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.rest.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        if tickets.len() == TICKETS {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_back()
    }
}

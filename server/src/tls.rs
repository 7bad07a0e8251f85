//! HTTPS and WSS: the certificate the relay presents and the listener that speaks TLS.
//!
//! The certificate is either the operator's (`--tls-cert`/`--tls-key`, e.g. certbot's
//! `fullchain.pem`/`privkey.pem`), picked up again whenever the files change on disk, or one the
//! relay issues itself and keeps in its data directory (see [`CertNames`]). Either way rustls asks
//! a [`ResolvesServerCert`] for the certificate at every handshake, so a renewed one is used by
//! the next connection and open connections are left alone.
//!
//! Every TLS connection does its handshake in its own task under a time limit (see `http`):
//! garbage, a half handshake or a client that says nothing costs one task for a few seconds and
//! never holds up the accept loop or another connection.

mod self_signed;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use base64::Engine;
use rustls::{
    crypto::{ring, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

pub use self_signed::CertNames;

/// The certificate's file in the data directory.
pub const CERT_FILE: &str = "cert.pem";

/// The private key's file in the data directory (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// How long a client may take to finish its TLS handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the operator's certificate files are checked for a renewal by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{path} holds no PEM certificate ({detail})")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The file holds no usable PEM private key.
    #[error("{path} holds no usable PEM private key ({detail})")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key and the certificate do not belong together, or rustls refuses them.
    #[error("the certificate {cert} and the key {key} cannot be used together: {error}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        error: rustls::Error,
    },
    /// rcgen could not issue a certificate.
    #[error("cannot issue a self-signed certificate: {0}")]
    Issue(rcgen::Error),
    /// The operating system gave no random bytes for a serial number.
    #[error("no randomness for the certificate's serial number: {0}")]
    Random(String),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(rustls::Error),
}

// Each message above already says what its cause said: no `#[source]`, so that an error chain
// (anyhow's "Caused by") does not say it twice.
impl From<rcgen::Error> for TlsError {
    fn from(error: rcgen::Error) -> Self {
        Self::Issue(error)
    }
}

impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> Self {
        Self::Config(error)
    }
}

/// The data directory when none is given: `$XDG_DATA_HOME/videocall`, else
/// `$HOME/.local/share/videocall`, else `./data`.
pub fn default_data_dir() -> PathBuf {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// [`default_data_dir`] for the given values of `XDG_DATA_HOME` and `HOME` (empty counts as
/// unset, as the XDG specification says).
pub fn data_dir_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let set = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = set(xdg_data_home) {
        xdg.join("videocall")
    } else if let Some(home) = set(home) {
        home.join(".local/share/videocall")
    } else {
        PathBuf::from("data")
    }
}

/// The SHA-256 fingerprint of a certificate as browsers show it: upper-case hex bytes separated
/// by colons.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The SPKI pin of the certificate in the PEM file `cert_pem` (the first one, for a chain):
/// base64 of the SHA-256 of its SubjectPublicKeyInfo, as Chrome's
/// `--ignore-certificate-errors-spki-list` and HPKP take it. The self-signed certificate keeps
/// its key when it is issued again, so its pin does not change.
pub fn spki_pin(cert_pem: &Path) -> Result<String, TlsError> {
    let pem = std::fs::read(cert_pem).map_err(|error| TlsError::Read {
        path: cert_pem.to_owned(),
        error,
    })?;
    let bad = |detail: &str| TlsError::BadCertificate {
        path: cert_pem.to_owned(),
        detail: detail.to_owned(),
    };
    let der = first_certificate(&pem).ok_or_else(|| bad("no certificate in it"))?;
    spki_pin_der(&der).ok_or_else(|| bad("the certificate does not parse"))
}

/// [`spki_pin`] of a DER certificate; `None` if it does not parse.
pub fn spki_pin_der(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let digest = Sha256::digest(cert.public_key().raw);
    Some(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The first certificate of a PEM text.
fn first_certificate(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::BadCertificate {
            path: cert.to_owned(),
            detail: err.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadCertificate {
            path: cert.to_owned(),
            detail: "no CERTIFICATE block".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::BadKey {
        path: key.to_owned(),
        detail: err.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|error| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        error,
    })
}

/// rustls with *ring*, named explicitly so that no process-wide default is needed.
fn provider() -> CryptoProvider {
    ring::default_provider()
}

/// Hands rustls the current certificate; [`CertResolver::set`] swaps it for the next handshakes.
struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The relay's TLS side: its certificate and how connections are handled.
#[derive(Clone)]
pub struct Tls {
    resolver: Arc<CertResolver>,
    /// The operator's certificate and key files, watched for renewals.
    watched: Option<(PathBuf, PathBuf)>,
    /// How long a client may take to finish its handshake.
    pub handshake_timeout: Duration,
    /// How often watched certificate files are checked for a change.
    pub reload_interval: Duration,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint())
            .field("watched", &self.watched)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("reload_interval", &self.reload_interval)
            .finish()
    }
}

impl Tls {
    /// The operator's certificate chain and key (PEM), picked up again when the files change.
    pub fn from_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let mut tls = Self::new(load(&cert, &key)?);
        tls.watched = Some((cert, key));
        Ok(tls)
    }

    /// The relay's own certificate for this machine's names, kept in `data_dir` as
    /// [`CERT_FILE`] and [`KEY_FILE`]: issued on first use, reused after, issued again with the
    /// same key when this machine has a name or address it does not cover or it ends within 30
    /// days.
    pub fn self_signed(data_dir: &Path) -> Result<Self, TlsError> {
        Self::self_signed_for(data_dir, &CertNames::of_this_machine())
    }

    /// [`Tls::self_signed`] for the given names instead of this machine's.
    pub fn self_signed_for(data_dir: &Path, names: &CertNames) -> Result<Self, TlsError> {
        let (cert, key) = self_signed::ensure(data_dir, names)?;
        Ok(Self::new(load(&cert, &key)?))
    }

    fn new(key: CertifiedKey) -> Self {
        Self {
            resolver: Arc::new(CertResolver {
                current: RwLock::new(Arc::new(key)),
            }),
            watched: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }

    /// The SHA-256 fingerprint of the certificate presented now (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        self.resolver
            .get()
            .cert
            .first()
            .map_or_else(String::new, |der| fingerprint(der))
    }

    /// The SPKI pin of the certificate presented now (see [`spki_pin`]).
    pub fn spki_pin(&self) -> Option<String> {
        spki_pin_der(self.resolver.get().cert.first()?)
    }

    /// TLS 1.2 and 1.3 only, with the cipher suites, key exchanges and signature schemes
    /// rustls chooses: rustls has no TLS 1.0 or 1.1 (nor SSL) to turn off, and its TLS 1.2
    /// suites are the ECDHE ones with AEAD ciphers only. A client offering nothing newer than
    /// TLS 1.1 gets a `protocol_version` alert (server/tests/tls.rs checks both).
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        // HTTP/1.1 only: WebSocket upgrades need it, and the page is a handful of files.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Checks the operator's files every [`Tls::reload_interval`] until `shutdown`, and presents
    /// the new certificate once both files load and belong together. A renewal caught halfway
    /// (a new certificate beside the old key) keeps the old certificate and is tried again when
    /// a file changes again.
    pub(crate) async fn watch(self, shutdown: CancellationToken) {
        let Some((cert, key)) = self.watched.clone() else {
            return;
        };
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = (stamp(&cert), stamp(&key));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.reload_interval) => {}
            }
            let now = (stamp(&cert), stamp(&key));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&cert, &key) {
                Ok(certified) => {
                    self.resolver.set(certified);
                    tracing::info!(fingerprint = %self.fingerprint(), "presenting the renewed certificate");
                }
                Err(err) => {
                    tracing::warn!(%err, "the changed certificate files do not load: keeping the current certificate");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_follows_xdg_then_home() {
        assert_eq!(
            data_dir_from(Some("/x".into()), Some("/home/u".into())),
            PathBuf::from("/x/videocall")
        );
        assert_eq!(
            data_dir_from(Some("".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.local/share/videocall")
        );
        assert_eq!(data_dir_from(None, None), PathBuf::from("data"));
    }

    #[test]
    fn fingerprints_look_like_the_browsers_ones() {
        let print = fingerprint(b"");
        assert_eq!(
            print,
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }
}

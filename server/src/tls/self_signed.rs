//! The relay's own certificate, for machines without a real one: issued on first start for
//! every name and address of the machine, kept in the data directory, and issued again, with
//! the same key, when the machine gains a name or the certificate nears its end. Keeping the key
//! keeps SPKI pins valid, and a browser that was told to trust the key keeps trusting it.

use std::{
    fs,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration as TimeDuration, OffsetDateTime};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use super::{TlsError, CERT_FILE, KEY_FILE};

/// How long an issued certificate is valid. Apple's platforms refuse server certificates valid
/// for more than 825 days.
const VALIDITY_DAYS: i64 = 800;

/// A certificate that ends within this many days is issued again.
const RENEW_BEFORE_DAYS: i64 = 30;

/// The most names one certificate carries: names it had before are kept (a laptop that moves
/// between networks keeps one certificate for all of them) until there are this many.
const MAX_NAMES: usize = 100;

/// The names and addresses a certificate must cover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    /// DNS names, e.g. `localhost` and the host name.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl CertNames {
    /// This machine's names: `localhost`, its host name (and `<host name>.local`, which phones
    /// resolve with mDNS), 127.0.0.1, ::1 and the address of every network interface except
    /// IPv6 link-local ones (a browser cannot open those without a zone id).
    pub fn of_this_machine() -> Self {
        let mut dns = vec!["localhost".to_owned()];
        if let Some(host) = gethostname::gethostname().to_str() {
            let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
            let usable = !host.is_empty()
                && host != "localhost"
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if usable {
                if !host.contains('.') {
                    dns.push(format!("{host}.local"));
                }
                dns.insert(1, host);
            }
        }
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => {
                for ip in interfaces.iter().map(if_addrs::Interface::ip) {
                    if !is_v6_link_local(ip) && !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "cannot list the network interfaces"),
        }
        Self { dns, ips }
    }

    fn contains_all(&self, other: &CertNames) -> bool {
        other
            .dns
            .iter()
            .all(|name| self.dns.iter().any(|n| n.eq_ignore_ascii_case(name)))
            && other.ips.iter().all(|ip| self.ips.contains(ip))
    }

    /// `self`, then those of `older` that are not in it, up to [`MAX_NAMES`] in all.
    fn with_older(&self, older: &CertNames) -> CertNames {
        let mut merged = self.clone();
        for name in &older.dns {
            if merged.dns.len() + merged.ips.len() >= MAX_NAMES {
                break;
            }
            if !merged.dns.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                merged.dns.push(name.clone());
            }
        }
        for ip in &older.ips {
            if merged.dns.len() + merged.ips.len() >= MAX_NAMES {
                break;
            }
            if !merged.ips.contains(ip) {
                merged.ips.push(*ip);
            }
        }
        merged
    }
}

fn is_v6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// What a certificate on disk says about itself.
struct Existing {
    names: CertNames,
    not_after: i64,
    spki: Vec<u8>,
}

impl Existing {
    fn read(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut names = CertNames::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            names.ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            names.ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Self {
            names,
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
        })
    }
}

/// Makes sure `dir` holds a key and a certificate for `names`, valid for at least 30 more
/// days; returns the paths of the certificate and the key.
pub(super) fn ensure(dir: &Path, names: &CertNames) -> Result<(PathBuf, PathBuf), TlsError> {
    create_private_dir(dir)?;
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let key = match read_if_exists(&key_path)? {
        Some(pem) => {
            let pem = String::from_utf8_lossy(&pem);
            let key = KeyPair::from_pem(&pem).map_err(|err| TlsError::BadKey {
                path: key_path.clone(),
                detail: format!("{err}; move it away to have a new key made"),
            })?;
            keep_private(&key_path)?;
            key
        }
        None => {
            let key = KeyPair::generate()?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            tracing::info!(key = %key_path.display(), "generated a new key for the self-signed certificate");
            key
        }
    };

    let now = OffsetDateTime::now_utc();
    let existing = read_if_exists(&cert_path)?.and_then(|pem| {
        let der = super::first_certificate(&pem)?;
        Existing::read(&der)
    });
    let reason = match &existing {
        None => "there was none",
        Some(old) if old.spki != key.subject_public_key_info() => "it was not for this key",
        Some(old) if old.not_after - now.unix_timestamp() < RENEW_BEFORE_DAYS * 86_400 => {
            "it expires within 30 days"
        }
        Some(old) if !old.names.contains_all(names) => "this machine has new names or addresses",
        Some(_) => {
            tracing::info!(cert = %cert_path.display(), "using the self-signed certificate made earlier");
            return Ok((cert_path, key_path));
        }
    };
    let names = match &existing {
        Some(old) if old.spki == key.subject_public_key_info() => names.with_older(&old.names),
        _ => names.clone(),
    };
    let pem = issue(&key, &names, now)?;
    write_file(&cert_path, pem.as_bytes(), 0o644)?;
    if existing.is_some() {
        tracing::info!(
            cert = %cert_path.display(),
            reason,
            "issued a new self-signed certificate with the same key"
        );
    } else {
        tracing::info!(cert = %cert_path.display(), "issued a self-signed certificate");
    }
    Ok((cert_path, key_path))
}

fn issue(key: &KeyPair, names: &CertNames, now: OffsetDateTime) -> Result<String, TlsError> {
    let mut params = CertificateParams::default();
    for name in &names.dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.clone().try_into()?));
    }
    params
        .subject_alt_names
        .extend(names.ips.iter().copied().map(SanType::IpAddress));
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "videocall relay (self-signed)");
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // A day of slack for phones whose clock runs behind.
    params.not_before = now - TimeDuration::days(1);
    params.not_after = params.not_before + TimeDuration::days(VALIDITY_DAYS);
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|err| TlsError::Random(err.to_string()))?;
    serial[0] &= 0x7f; // A positive number.
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params.self_signed(key)?.pem())
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(TlsError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| TlsError::Write {
        path: dir.to_owned(),
        error,
    })
}

/// Makes the key readable by its owner only, if it was more open.
fn keep_private(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(key = %path.display(), "the key was readable by others: made it 0600");
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|error| {
                TlsError::Write {
                    path: path.to_owned(),
                    error,
                }
            })?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `bytes` to a new file beside `path` with `mode`, then renames it over `path`, so that
/// a reader never sees half a file and the key is never readable by others, not even briefly.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |error| TlsError::Write {
        path: path.to_owned(),
        error,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_at_least_its_loopback_names() {
        let names = CertNames::of_this_machine();
        assert_eq!(names.dns[0], "localhost");
        assert!(names.ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(names.ips.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(!names.ips.iter().any(|ip| is_v6_link_local(*ip)));
    }

    #[test]
    fn older_names_are_kept_after_the_new_ones() {
        let new = CertNames {
            dns: vec!["localhost".into()],
            ips: vec![[10, 0, 0, 2].into()],
        };
        let old = CertNames {
            dns: vec!["LOCALHOST".into(), "box".into()],
            ips: vec![[10, 0, 0, 1].into(), [10, 0, 0, 2].into()],
        };
        let merged = new.with_older(&old);
        assert_eq!(merged.dns, ["localhost", "box"]);
        assert_eq!(
            merged.ips,
            [IpAddr::from([10, 0, 0, 2]), IpAddr::from([10, 0, 0, 1])]
        );
        assert!(merged.contains_all(&new) && merged.contains_all(&old));
        assert!(!new.contains_all(&old));
    }
}

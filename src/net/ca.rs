//! The box's agent certificate authority and the TLS configurations of both ends.
//!
//! The box keeps, in `<state>/agents/` ([`AGENTS_DIR`], mode 0700), a self-signed CA
//! (`ca.pem`, `ca.key`; CN `coffer agent CA <box name>`, [`CA_YEARS`] years) and its TLS
//! server identity signed by that CA (`server.pem`, `server.key`; SAN [`SERVER_NAME`],
//! [`SERVER_YEARS`] years). Keys are PKCS#8 PEM, mode 0600. People and agents know the box by
//! the SHA-256 fingerprint of the server certificate, spelled as
//! [`crate::service::tls::fingerprint`] spells it.
//!
//! Enrolment: an agent makes a key pair and a CSR ([`new_agent_key`]), connects trusting
//! exactly the pinned server fingerprint and presenting no certificate ([`enroll_config`]), and
//! the box, once the protocol above this module has checked the agent's one-time token, signs
//! a certificate for the agent's name ([`BoxCa::issue`]: CN = name, client-auth EKU,
//! [`AGENT_YEARS`] years). From then on the agent connects with that certificate
//! ([`agent_config`]) and the box learns who it is from the verified chain ([`peer_agent`]).
//! What an agent keeps is [`AgentIdentity`].
//!
//! Invariants:
//! - The same files give the same server certificate, hence the same fingerprint, on every
//!   start. A file that is missing is made only where nobody can depend on it yet: a missing
//!   CA certificate makes a new CA and server identity (no agent certificate chains to a CA
//!   that was never written whole); a missing server certificate makes a new server identity.
//!   A certificate whose key is missing is an error, never silently replaced: agents pin the
//!   server certificate and their certificates chain to the CA.
//! - What is read is checked: keys have no group or other access, each key belongs to its
//!   certificate, the server certificate is signed by the CA.
//! - [`BoxCa::issue`] takes only the public key from a CSR, after checking the CSR's
//!   signature: the name, validity and usage of the certificate are the box's.
//! - The client verifies the server by fingerprint instead of chain and name (the pin is the
//!   trust; dates and names are not checked), and verifies the handshake signatures as usual.
//!   The server requests a client certificate and accepts a connection without one (that is
//!   enrolment, which the token guards); a certificate that is presented must chain to the CA.
//!
//! Fault model: a crash while files are made leaves each file whole or absent (written under a
//! temporary name and renamed, the key before its certificate), so the next start either
//! reads a whole pair or makes the missing part again. rustls with the `ring` provider only, as
//! the status endpoint ([`crate::service::tls`]); TLS 1.2 and 1.3; ALPN [`ALPN`].

mod agent;

pub use agent::{
    AGENT_CERT_FILE, AGENT_KEY_FILE, AgentIdentity, BOX_FILE, agent_config, enroll_config, new_agent_key,
    parse_fingerprint,
};

use std::fs::DirBuilder;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::service::tls::fingerprint;

/// The directory under the state directory holding the agent CA and the server identity.
pub const AGENTS_DIR: &str = "agents";
/// The CA certificate's file in [`AGENTS_DIR`].
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file in [`AGENTS_DIR`] (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The server certificate's file in [`AGENTS_DIR`].
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The server key's file in [`AGENTS_DIR`] (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// The one application protocol both ends speak.
pub const ALPN: &[u8] = b"coffer-agent/1";
/// The server certificate's DNS name, and the server name clients connect with (the pinned
/// verifier ignores it; rustls needs one).
pub const SERVER_NAME: &str = "coffer-box";
/// Years the CA certificate is valid.
pub const CA_YEARS: u32 = 20;
/// Years the server certificate is valid.
pub const SERVER_YEARS: u32 = 10;
/// Years an agent certificate is valid.
pub const AGENT_YEARS: u32 = 10;
/// The longest agent name, in characters (X.509's upper bound for a common name).
pub const AGENT_NAME_MAX: usize = 64;
/// Certificates are valid from this long before they are made, so that a peer whose clock is
/// a little behind does not refuse a fresh one.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Random bytes of a certificate serial number (RFC 5280 allows up to 20).
const SERIAL_BYTES: usize = 16;
/// The longest certificate, key or CSR file read, in bytes (a P-256 pair is under 1 KiB; an
/// RSA-4096 key under 4 KiB).
const FILE_MAX: u64 = 64 * 1024;
const _: () = assert!(SERIAL_BYTES <= 20);

/// Why the CA, a TLS configuration or an agent identity cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file cannot be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file holds nothing usable, or files that belong together do not.
    #[error("{path}: {what}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// A private key can be read by others than its owner.
    #[error(
        "{path}: the private key has mode {mode:03o}, open to others: `chmod 600 {path}`, and consider it exposed"
    )]
    Exposed {
        /// The key's file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An agent directory holds no identity (enrolment never finished there).
    #[error("{dir}: no agent identity ({BOX_FILE} is missing): enrol with `coffer agent enroll`")]
    NotEnrolled {
        /// The agent's state directory.
        dir: PathBuf,
    },
    /// A pinned fingerprint is not a SHA-256 fingerprint.
    #[error(
        "{given:?} is not a SHA-256 fingerprint: expected 64 hex digits, colons optional, as `coffer agent add` prints it"
    )]
    Fingerprint {
        /// What was given.
        given: String,
    },
    /// An agent name cannot be put in a certificate.
    #[error("agent name {name:?} {why}")]
    AgentName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An agent's private key cannot be used.
    #[error("the agent's private key cannot be used: {0}: enrol again")]
    AgentKey(String),
    /// A certificate signing request cannot be read or names a key type the box cannot sign.
    #[error("the certificate signing request is refused: {0}")]
    Csr(String),
    /// A certificate signing request's signature does not verify with its own key.
    #[error("the certificate signing request is refused: its signature does not match its key")]
    CsrSignature,
    /// The system's random source failed.
    #[error("the system's random source failed: {0}")]
    Random(String),
    /// A key or certificate could not be made.
    #[error("cannot make a key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration (a key that does not match its certificate, say).
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The box's agent CA and its TLS server identity, kept in `<state>/agents/` (keys 0600):
/// ca.pem + ca.key (self-signed CA, CN "coffer agent CA <box name>", 20 years), server.pem +
/// server.key (signed by the CA, 10 years).
pub struct BoxCa {
    /// `<state>/agents/`, for messages.
    dir: PathBuf,
    ca_cert: CertificateDer<'static>,
    ca_key: rcgen::KeyPair,
    server_cert: CertificateDer<'static>,
    server_key: rcgen::KeyPair,
    fingerprint: String,
}

impl std::fmt::Debug for BoxCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("BoxCa")
            .field("ca", &fingerprint(&self.ca_cert))
            .field("server", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl BoxCa {
    /// The CA and server identity in `<state>/agents/`, made now where they are missing (see
    /// the module doc for which). The same files give the same fingerprint on every start.
    pub fn load_or_create(state: &Path, box_name: &str) -> Result<BoxCa, CaError> {
        let dir = state.join(AGENTS_DIR);
        make_private_dir(&dir)?;
        let now = SystemTime::now();
        let (ca_pem, ca_key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let (server_pem, server_key_path) = (dir.join(SERVER_CERT_FILE), dir.join(SERVER_KEY_FILE));
        let (ca_cert, ca_key, ca_made) = match read_pair(&ca_pem, &ca_key_path)? {
            Some((cert, key)) => (cert, key, false),
            None => {
                let key = rcgen::KeyPair::generate()?;
                let cert = ca_params(box_name, now)?.self_signed(&key)?.der().clone();
                write_pair(&ca_pem, &ca_key_path, &cert, &key)?;
                tracing::info!(target: "net", "agent CA made: {}", ca_pem.display());
                (cert, key, true)
            }
        };
        let stored = if ca_made { None } else { read_pair(&server_pem, &server_key_path)? };
        let (server_cert, server_key) = match stored {
            Some(pair) => pair,
            None => {
                let key = rcgen::KeyPair::generate()?;
                let issuer = issuer(&ca_cert, &ca_key, &ca_pem)?;
                let cert = server_params(box_name, now)?.signed_by(&key, &issuer)?.der().clone();
                write_pair(&server_pem, &server_key_path, &cert, &key)?;
                tracing::info!(target: "net", "agent server certificate made: {}", server_pem.display());
                (cert, key)
            }
        };
        check_signed_by(&server_cert, &server_pem, &ca_cert)?;
        let fingerprint = fingerprint(&server_cert);
        Ok(BoxCa { dir, ca_cert, ca_key, server_cert, server_key, fingerprint })
    }

    /// SHA-256 of the server certificate (DER), as [`crate::service::tls::fingerprint`]
    /// spells it: what agents pin.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca_cert.to_vec()
    }

    /// TLS server config: TLS 1.2/1.3; a client certificate is optional (enrolment has none)
    /// but, when presented, must chain to this CA. ALPN [`ALPN`].
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let provider = provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.clone())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(format!("client certificate verifier: {e}")))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], key)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs a certificate for agent `name` from its CSR (DER): subject CN = name (and a DNS
    /// SAN of it where it is a DNS name), client-auth EKU, [`AGENT_YEARS`] years. Only the
    /// CSR's public key is used, once its signature verifies; its subject, attributes and
    /// extensions are ignored. Returns the certificate DER.
    pub fn issue(&self, name: &str, csr_der: &[u8]) -> Result<Vec<u8>, CaError> {
        check_agent_name(name)?;
        let public_key = csr_public_key(csr_der)?;
        let issuer = issuer(&self.ca_cert, &self.ca_key, &self.dir.join(CA_CERT_FILE))?;
        let cert = agent_params(name, SystemTime::now())?.signed_by(&public_key, &issuer)?;
        Ok(cert.der().to_vec())
    }
}

/// The verified peer of a server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAgent {
    /// The agent's name: the client certificate's CN.
    pub name: String,
    /// SHA-256 of the client certificate (DER), as [`crate::service::tls::fingerprint`]
    /// spells it.
    pub fingerprint: String,
}

/// The verified peer of a server connection: the agent name from the client certificate's CN
/// and the certificate's fingerprint; None without a client certificate. rustls has verified
/// the chain to the CA before the handshake completes; call this after it has.
pub fn peer_agent(conn: &rustls::ServerConnection) -> Option<PeerAgent> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(PeerAgent { name, fingerprint: fingerprint(cert) })
}

/// rustls's `ring` provider. ring rather than aws-lc-rs: aws-lc-rs needs cmake and nasm to
/// build (see [`crate::service::tls`]).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Refuses names that cannot be a certificate's CN or would mislead in logs.
fn check_agent_name(name: &str) -> Result<(), CaError> {
    let refuse = |why| Err(CaError::AgentName { name: name.to_owned(), why });
    if name.is_empty() {
        return refuse("is empty");
    }
    if name.chars().count() > AGENT_NAME_MAX {
        return refuse("is longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return refuse("holds control characters");
    }
    if name.trim() != name {
        return refuse("begins or ends with white space");
    }
    Ok(())
}

/// The public key of a CSR whose signature verifies with it.
fn csr_public_key(csr_der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, CaError> {
    use x509_parser::certification_request::X509CertificationRequest;
    let (rest, csr) =
        X509CertificationRequest::from_der(csr_der).map_err(|e| CaError::Csr(format!("not DER: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::Csr(format!("{} bytes after its end", rest.len())));
    }
    csr.verify_signature().map_err(|_| CaError::CsrSignature)?;
    let spki = csr.certification_request_info.subject_pki.raw;
    rcgen::SubjectPublicKeyInfo::from_der(spki).map_err(|e| {
        CaError::Csr(format!("its key type cannot be signed ({e}): make an ECDSA P-256, Ed25519 or RSA key"))
    })
}

fn validity(params: &mut rcgen::CertificateParams, now: SystemTime, years: u32) {
    const YEAR: Duration = Duration::from_secs(365 * 86400 + 6 * 3600);
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + YEAR * years).into();
}

fn random_serial() -> Result<rcgen::SerialNumber, CaError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| CaError::Random(e.to_string()))?;
    // Positive, and never shorter than SERIAL_BYTES.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

fn ca_params(box_name: &str, now: SystemTime) -> Result<rcgen::CertificateParams, CaError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("coffer agent CA {box_name}"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, CA_YEARS);
    Ok(params)
}

fn server_params(box_name: &str, now: SystemTime) -> Result<rcgen::CertificateParams, CaError> {
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("coffer box {box_name}"));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, SERVER_YEARS);
    Ok(params)
}

fn agent_params(name: &str, now: SystemTime) -> Result<rcgen::CertificateParams, CaError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    // A DNS name too where the agent's name is one: tools that look for names in SANs only
    // find it there.
    if rustls::pki_types::DnsName::try_from(name).is_ok()
        && let Ok(dns) = rcgen::string::Ia5String::try_from(name)
    {
        params.subject_alt_names = vec![rcgen::SanType::DnsName(dns)];
    }
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, AGENT_YEARS);
    Ok(params)
}

/// The CA as an issuer: its subject and key identifier read back from its certificate, so
/// what it signs names it exactly as the certificate does.
fn issuer<'a>(
    ca_cert: &CertificateDer<'_>,
    ca_key: &'a rcgen::KeyPair,
    ca_path: &Path,
) -> Result<rcgen::Issuer<'static, &'a rcgen::KeyPair>, CaError> {
    rcgen::Issuer::from_ca_cert_der(ca_cert, ca_key)
        .map_err(|e| unusable(ca_path, format!("the CA certificate cannot be read back: {e}")))
}

fn unusable(path: &Path, what: impl Into<String>) -> CaError {
    CaError::Unusable { path: path.to_owned(), what: what.into() }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + use<> {
    let path = path.to_owned();
    move |error| CaError::File { path, error }
}

/// Creates `dir` (and its parents) if it is missing, the last with mode 0700.
fn make_private_dir(dir: &Path) -> Result<(), CaError> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(file_error(dir))
}

/// The whole of a small file, or None if it does not exist.
fn read_small(path: &Path) -> Result<Option<(Vec<u8>, u32)>, CaError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path)(e)),
    };
    let mode = file.metadata().map_err(file_error(path))?.permissions().mode();
    let mut bytes = Vec::new();
    file.take(FILE_MAX + 1).read_to_end(&mut bytes).map_err(file_error(path))?;
    if bytes.len() as u64 > FILE_MAX {
        return Err(unusable(path, format!("longer than {FILE_MAX} bytes: not a certificate or key")));
    }
    Ok(Some((bytes, mode)))
}

/// The first certificate of a PEM file, or None if the file does not exist.
fn read_cert(path: &Path) -> Result<Option<CertificateDer<'static>>, CaError> {
    let Some((pem, _)) = read_small(path)? else { return Ok(None) };
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| unusable(path, "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"))?
        .map_err(|e| unusable(path, format!("not a PEM certificate: {e}")))?;
    Ok(Some(cert))
}

/// A private key file (PKCS#8 PEM) that only its owner can read, and its text, or None if it
/// does not exist.
fn read_key(path: &Path) -> Result<Option<(rcgen::KeyPair, String)>, CaError> {
    let Some((pem, mode)) = read_small(path)? else { return Ok(None) };
    if mode & 0o077 != 0 {
        return Err(CaError::Exposed { path: path.to_owned(), mode: mode & 0o7777 });
    }
    let pem = String::from_utf8(pem).map_err(|_| unusable(path, "not a PEM key: not text"))?;
    let key = rcgen::KeyPair::from_pem(&pem)
        .map_err(|e| unusable(path, format!("not a PKCS#8 PEM private key ({e})")))?;
    Ok(Some((key, pem)))
}

/// Whether `key` is the private half of `cert`'s public key.
fn check_key_matches(
    cert: &CertificateDer<'_>,
    cert_path: &Path,
    key: &rcgen::KeyPair,
) -> Result<(), CaError> {
    use rcgen::PublicKeyData;
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| unusable(cert_path, format!("the certificate cannot be read: {e}")))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(unusable(
            cert_path,
            "the certificate is not for the key beside it: remove both to make new ones",
        ));
    }
    Ok(())
}

/// A certificate and its key, or None if the certificate does not exist (a key without its
/// certificate is what a crash between the two writes leaves). A certificate without its key
/// is an error: what it identifies cannot be replaced silently.
fn read_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Option<(CertificateDer<'static>, rcgen::KeyPair)>, CaError> {
    let Some(cert) = read_cert(cert_path)? else { return Ok(None) };
    let Some((key, _)) = read_key(key_path)? else {
        return Err(unusable(
            key_path,
            format!(
                "missing, but its certificate {} is there: restore the key, or remove the certificate to make a new one (agents must then enrol again)",
                cert_path.display()
            ),
        ));
    };
    check_key_matches(&cert, cert_path, &key)?;
    Ok(Some((cert, key)))
}

/// Writes a key (0600) and then its certificate (0644), each atomically.
fn write_pair(
    cert_path: &Path,
    key_path: &Path,
    cert: &CertificateDer<'_>,
    key: &rcgen::KeyPair,
) -> Result<(), CaError> {
    crate::atomic::write_whole(key_path, key.serialize_pem().as_bytes(), 0o600)
        .map_err(file_error(key_path))?;
    crate::atomic::write_whole(cert_path, cert_pem(cert).as_bytes(), 0o644).map_err(file_error(cert_path))
}

/// A certificate in PEM, 64 characters a line.
fn cert_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Whether the server certificate is signed by the CA.
fn check_signed_by(
    cert: &CertificateDer<'_>,
    cert_path: &Path,
    ca: &CertificateDer<'_>,
) -> Result<(), CaError> {
    let parse = |der| {
        X509Certificate::from_der(der)
            .map(|(_, c)| c)
            .map_err(|e| unusable(cert_path, format!("the certificate cannot be read: {e}")))
    };
    let (cert, ca) = (parse(cert)?, parse(ca)?);
    cert.verify_signature(Some(ca.public_key())).map_err(|_| {
        unusable(
            cert_path,
            format!(
                "not signed by the agent CA beside it ({CA_CERT_FILE}): remove it and its key to make a new one (agents must then enrol again)"
            ),
        )
    })
}

#[cfg(test)]
mod tests;

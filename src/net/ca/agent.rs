//! The agent's side: its key pair and CSR, the client configurations that trust the box by its
//! pinned server fingerprint, and the identity an enrolled agent keeps.
//!
//! An agent's state directory (mode 0700) holds [`AGENT_KEY_FILE`] (PKCS#8 PEM, 0600),
//! [`AGENT_CERT_FILE`] (PEM) and [`BOX_FILE`] (JSON: `name`, `server`, `fingerprint`), each
//! written atomically, `box.json` last: a directory without it holds no identity, whatever
//! else a crash left there, and the next enrolment overwrites the rest.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    ALPN, CaError, cert_pem, check_agent_name, check_key_matches, file_error, make_private_dir, provider,
    read_cert, read_key, read_small, unusable,
};
use crate::service::tls::fingerprint;

/// The agent's private key in its state directory (mode 0600).
pub const AGENT_KEY_FILE: &str = "agent.key";
/// The agent's certificate in its state directory.
pub const AGENT_CERT_FILE: &str = "agent.pem";
/// The box the agent is enrolled with, in its state directory.
pub const BOX_FILE: &str = "box.json";

/// Client side: a new key pair (ECDSA P-256) and a CSR for `name`: the key in PKCS#8 PEM to
/// store, the CSR in DER to send.
pub fn new_agent_key(name: &str) -> Result<(String, Vec<u8>), CaError> {
    check_agent_name(name)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// A SHA-256 fingerprint as people may type it (any case, colons optional, white space
/// around) in the spelling [`fingerprint`] gives: upper-case hex pairs joined by colons.
pub fn parse_fingerprint(given: &str) -> Result<String, CaError> {
    let hex: Vec<u8> = given.trim().bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(CaError::Fingerprint { given: given.to_owned() });
    }
    let pairs: Vec<String> = hex.chunks(2).map(|p| String::from_utf8_lossy(p).to_ascii_uppercase()).collect();
    Ok(pairs.join(":"))
}

/// A client config that trusts exactly the server certificate whose fingerprint is `pinned`
/// (SHA-256 of the end-entity DER; any case, colons optional) and presents no client
/// certificate: enrolment. ALPN [`ALPN`]. Connect with the server name
/// [`super::SERVER_NAME`]; it is not checked.
pub fn enroll_config(pinned: &str) -> Result<Arc<rustls::ClientConfig>, CaError> {
    client_config(pinned, rustls::DEFAULT_VERSIONS, None)
}

/// The same as [`enroll_config`], presenting the agent's certificate and key (mutual TLS).
pub fn agent_config(
    pinned: &str,
    key_pem: &str,
    cert_der: &[u8],
) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CaError::AgentKey(format!("not a PEM private key: {e}")))?;
    client_config(pinned, rustls::DEFAULT_VERSIONS, Some((CertificateDer::from(cert_der.to_vec()), key)))
}

/// A pinned client config for the given protocol versions, with or without a client
/// certificate.
pub(super) fn client_config(
    pinned: &str,
    versions: &[&'static SupportedProtocolVersion],
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let provider = provider();
    let verifier = PinnedServer {
        pinned: parse_fingerprint(pinned)?,
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key)?,
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Trusts the server whose end-entity certificate has the pinned fingerprint: the pin takes
/// the place of chain, name and date checks. The handshake signatures are verified as usual,
/// so the server must hold the pinned certificate's key.
#[derive(Debug)]
struct PinnedServer {
    /// In [`fingerprint`]'s spelling.
    pinned: String,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The server presented another certificate than the pinned one. rustls shows it with
/// `Debug` (`invalid peer certificate: Other(OtherError(…))`), so that says what `Display`
/// says.
#[derive(thiserror::Error)]
#[error(
    "the server's certificate has fingerprint {seen}, not the pinned {pinned}: check the address, and the fingerprint `coffer agent add` printed on the box"
)]
struct PinMismatch {
    seen: String,
    pinned: String,
}

impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        if seen == self.pinned {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch { seen, pinned: self.pinned.clone() };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            mismatch,
        )))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What an enrolled agent keeps in its state directory (`agent.key` 0600, `agent.pem`,
/// `box.json` with server address, pinned fingerprint, agent name), written atomically; load
/// refuses files with group/other access to the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The agent's name, its certificate's CN.
    pub name: String,
    /// The box's address, `HOST:PORT`.
    pub server: String,
    /// The box's pinned server fingerprint.
    pub fingerprint: String,
    /// The agent's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The agent's certificate, DER.
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("AgentIdentity")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("fingerprint", &self.fingerprint)
            .field("cert", &fingerprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

/// `box.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxRecord {
    name: String,
    server: String,
    fingerprint: String,
}

impl AgentIdentity {
    /// Writes the identity to `dir` (made 0700 if missing): key, certificate, then `box.json`,
    /// each atomically. The key must belong to the certificate, the certificate name the
    /// agent, and the fingerprint be one; it is stored in [`fingerprint`]'s spelling.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        let cert_path = dir.join(AGENT_CERT_FILE);
        let key = rcgen::KeyPair::from_pem(&self.key_pem)
            .map_err(|e| CaError::AgentKey(format!("not a PKCS#8 PEM private key ({e})")))?;
        let cert = CertificateDer::from(self.cert_der.as_slice());
        check_key_matches(&cert, &cert_path, &key)?;
        check_names_agent(&cert, &cert_path, &self.name)?;
        let record = BoxRecord {
            name: self.name.clone(),
            server: self.server.clone(),
            fingerprint: parse_fingerprint(&self.fingerprint)?,
        };
        let mut json = serde_json::to_string_pretty(&record).expect("plain strings serialise");
        json.push('\n');
        make_private_dir(dir)?;
        let write = |name: &str, bytes: &[u8], mode| {
            let path = dir.join(name);
            crate::atomic::write_whole(&path, bytes, mode).map_err(file_error(&path))
        };
        write(AGENT_KEY_FILE, self.key_pem.as_bytes(), 0o600)?;
        write(AGENT_CERT_FILE, cert_pem(&self.cert_der).as_bytes(), 0o644)?;
        write(BOX_FILE, json.as_bytes(), 0o644)
    }

    /// Reads the identity from `dir`, checked as [`AgentIdentity::save`] checks it; a key
    /// with group or other access is refused ([`CaError::Exposed`]), a directory without
    /// `box.json` holds none ([`CaError::NotEnrolled`]).
    pub fn load(dir: &Path) -> Result<AgentIdentity, CaError> {
        let box_path = dir.join(BOX_FILE);
        let Some((json, _)) = read_small(&box_path)? else {
            return Err(CaError::NotEnrolled { dir: dir.to_owned() });
        };
        let record: BoxRecord = serde_json::from_slice(&json)
            .map_err(|e| unusable(&box_path, format!("not an agent's {BOX_FILE}: {e}")))?;
        let fingerprint =
            parse_fingerprint(&record.fingerprint).map_err(|e| unusable(&box_path, e.to_string()))?;
        let missing =
            |name: &str| unusable(&dir.join(name), format!("missing, but {BOX_FILE} is there: enrol again"));
        let key_path = dir.join(AGENT_KEY_FILE);
        let (key, key_pem) = read_key(&key_path)?.ok_or_else(|| missing(AGENT_KEY_FILE))?;
        let cert_path = dir.join(AGENT_CERT_FILE);
        let cert = read_cert(&cert_path)?.ok_or_else(|| missing(AGENT_CERT_FILE))?;
        check_key_matches(&cert, &cert_path, &key)?;
        check_names_agent(&cert, &cert_path, &record.name)?;
        Ok(AgentIdentity {
            name: record.name,
            server: record.server,
            fingerprint,
            key_pem,
            cert_der: cert.to_vec(),
        })
    }
}

/// Whether the certificate's CN is the agent's name.
fn check_names_agent(cert: &CertificateDer<'_>, cert_path: &Path, name: &str) -> Result<(), CaError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| unusable(cert_path, format!("the certificate cannot be read: {e}")))?;
    let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
    if cn != Some(name) {
        return Err(unusable(
            cert_path,
            format!("the certificate is issued to {cn:?}, not to agent {name:?}: enrol again"),
        ));
    }
    Ok(())
}

//! A TLS client for the status endpoint beyond loopback (rustls, ring): one HTTP/1.1 GET, and
//! the SHA-256 fingerprint of the certificate the server presented.
//!
//! The endpoint's certificate is usually self-signed, made by the box at its first start, so no
//! CA vouches for it: a client either pins the fingerprint the box shows (`coffer status`, the
//! console), or, where it only wants the box's answers and not proof of its identity, accepts
//! any certificate deliberately ([`Trust::AnyCertificate`]). Signatures of the handshake are
//! checked either way: the server must hold the key of the certificate it presents.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::HttpAnswer;

/// Which server certificate to accept.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Any: the caller wants the box's answers, not proof of who it is.
    AnyCertificate,
    /// Only the one with this SHA-256 fingerprint (colon-separated upper-case hex).
    Fingerprint(String),
}

/// An answer over TLS.
#[derive(Debug, Clone)]
pub struct TlsAnswer {
    /// The HTTP answer.
    pub http: HttpAnswer,
    /// The fingerprint of the certificate the server presented.
    pub fingerprint: String,
}

/// SHA-256 of `der`, as the box shows fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[derive(Debug)]
struct Verifier {
    trust: Trust,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let f = fingerprint(end_entity);
        *self.seen.lock().unwrap() = Some(f.clone());
        match &self.trust {
            Trust::Fingerprint(want) if *want != f => {
                Err(rustls::Error::General(format!("certificate {f} is not the pinned {want}")))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTPS GET on 127.0.0.1:`port` with an `Authorization` header if given. An error says
/// what failed (connect, handshake, a certificate not pinned, no HTTP answer).
pub fn https_get(
    port: u16,
    path: &str,
    authorization: Option<&str>,
    trust: &Trust,
) -> Result<TlsAnswer, String> {
    // The ring provider, as the service uses: see src/service/tls.rs for why it is not
    // deprecated in practice here.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        Arc::new(Verifier { trust: trust.clone(), seen: Mutex::new(None), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("coffer").expect("a valid name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(tls, "GET {path} HTTP/1.1\r\nHost: coffer\r\n{auth}Connection: close\r\n\r\n")
        .map_err(|e| format!("TLS: {e}"))?;
    let mut raw = Vec::new();
    // The server may close without close_notify once it has answered: keep what came.
    if let Err(e) = tls.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(format!("TLS: {e}"));
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let fingerprint = verifier.seen.lock().unwrap().clone().ok_or("no certificate presented")?;
    Ok(TlsAnswer { http: HttpAnswer { code, headers, body: body.to_owned() }, fingerprint })
}

//! The status endpoint's TLS identity: the certificate and key the board names, or a
//! self-signed pair the box makes at its first start and keeps in `<state>/tls/` (the key
//! 0600), so that its fingerprint stays the same from one start to the next. People check the
//! certificate by its SHA-256 fingerprint, shown on the console's `status` and by `coffer
//! status`.
//!
//! rustls with the `ring` provider only (no build-time cmake or nasm); TLS 1.2 and 1.3;
//! ALPN `http/1.1`, the only protocol the endpoint speaks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::board::Status;

/// The directory under the state directory holding a self-made certificate and key.
pub const TLS_DIR: &str = "tls";
/// The self-made certificate's file in [`TLS_DIR`].
pub const CERT_FILE: &str = "cert.pem";
/// The self-made key's file in [`TLS_DIR`] (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// Why the endpoint's TLS identity cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what is expected.
        what: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("the certificate and key cannot be used together: {0}")]
    Config(#[from] rustls::Error),
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What the endpoint serves with.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The server's TLS configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate (DER), as [`fingerprint`] spells it.
    pub fingerprint: String,
    /// Where the certificate came from, for people.
    pub source: String,
}

/// The SHA-256 of a DER certificate as people compare it: 32 upper-case hex pairs joined by
/// colons, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The endpoint's identity: the board's certificate and key, else the self-made pair in
/// `state` (made now if there is none).
pub fn identity(status: &Status, state: &Path) -> Result<Identity, TlsError> {
    let (cert, key, source) = match (&status.cert, &status.key) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k), format!("certificate {c}")),
        _ => {
            let dir = state.join(TLS_DIR);
            let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            let made = if cert.exists() && key.exists() {
                "self-signed"
            } else {
                make_self_signed(&dir, &cert, &key)?;
                "self-signed, made now"
            };
            let source = format!("{made}, {}", cert.display());
            (cert, key, source)
        }
    };
    load(&cert, &key, source)
}

fn load(cert_path: &Path, key_path: &Path, source: String) -> Result<Identity, TlsError> {
    let pem = |path: &Path, e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(error) => TlsError::File { path: path.to_owned(), error },
        e => TlsError::Pem { path: path.to_owned(), what: e.to_string() },
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem(cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert_path, e))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Pem {
            path: cert_path.to_owned(),
            what: "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        });
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem(key_path, e))?;
    // ring rather than aws-lc-rs: aws-lc-rs needs cmake and nasm to build. rustls deprecates
    // ring's provider for lacking post-quantum key exchange; X25519 and the NIST curves are
    // what the endpoint's clients (browsers, Prometheus, curl) offer today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity { config: Arc::new(config), fingerprint, source })
}

/// Makes a self-signed certificate for the box and writes it and its key (0600) to `dir`.
/// Each file is written whole under a temporary name and renamed into place, the key first:
/// a crash leaves either no certificate (made again at the next start) or a whole pair.
fn make_self_signed(dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let file = |path: &Path| {
        let path = path.to_owned();
        move |error| TlsError::File { path, error }
    };
    std::fs::create_dir_all(dir).map_err(file(dir))?;
    // Clients pin the fingerprint rather than check names: the names are for people reading
    // the certificate (the image's host name is `coffer`).
    let names = vec!["coffer".to_owned(), "localhost".to_owned()];
    let made = rcgen::generate_simple_self_signed(names)?;
    crate::atomic::write_whole(key, made.signing_key.serialize_pem().as_bytes(), 0o600).map_err(file(key))?;
    crate::atomic::write_whole(cert, made.cert.pem().as_bytes(), 0o644).map_err(file(cert))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn status(cert: Option<&Path>, key: Option<&Path>) -> Status {
        Status {
            listen: "0.0.0.0:8470".into(),
            token: "x".repeat(32),
            tls: None,
            cert: cert.map(|p| p.display().to_string()),
            key: key.map(|p| p.display().to_string()),
        }
    }

    #[test]
    fn a_fingerprint_is_sha256_in_colon_separated_hex() {
        // SHA-256 of the empty string.
        let f = fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC:1C:14:"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn the_self_made_certificate_is_kept_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = identity(&status(None, None), dir.path()).unwrap();
        assert!(first.source.contains("made now"), "{}", first.source);
        let key = dir.path().join(TLS_DIR).join(KEY_FILE);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key is the owner's only");
        let cert_pem = std::fs::read(dir.path().join(TLS_DIR).join(CERT_FILE)).unwrap();
        let der = CertificateDer::pem_slice_iter(&cert_pem).next().unwrap().unwrap();
        assert_eq!(first.fingerprint, fingerprint(&der), "the fingerprint is the served certificate's");
        // The next start serves the same certificate.
        let again = identity(&status(None, None), dir.path()).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);
        assert!(!again.source.contains("made now"));
        // The board's own pair wins over the self-made one.
        let other = tempfile::tempdir().unwrap();
        identity(&status(None, None), other.path()).unwrap();
        let (c, k) = (other.path().join("tls/cert.pem"), other.path().join("tls/key.pem"));
        let named = identity(&status(Some(&c), Some(&k)), dir.path()).unwrap();
        assert_ne!(named.fingerprint, first.fingerprint);
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (c, k, named) in [(&junk, &junk, &junk), (&missing, &junk, &missing)] {
            let e = identity(&status(Some(c), Some(k)), dir.path()).unwrap_err().to_string();
            assert!(e.contains(named.to_str().unwrap()), "{e}");
        }
    }
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use x509_parser::extensions::ParsedExtension;

use super::*;

/// A guard against a hung test, not a timing assertion: every read on a test socket ends.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// An agent with a certificate from `ca`: its key PEM and certificate DER.
fn enrolled(ca: &BoxCa, name: &str) -> (String, Vec<u8>) {
    let (key_pem, csr) = new_agent_key(name).unwrap();
    (key_pem, ca.issue(name, &csr).unwrap())
}

/// Runs one connection over loopback: the server's peer agent (after its handshake) or its
/// error, and the client's error if it failed. The server sends two bytes, which the client
/// reads.
fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (Result<Option<PeerAgent>, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = std::thread::spawn(move || -> Result<Option<PeerAgent>, String> {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        assert_eq!(conn.alpn_protocol(), Some(ALPN));
        let peer = peer_agent(&conn);
        let mut tls = StreamOwned::new(conn, sock);
        tls.write_all(b"ok").and_then(|()| tls.flush()).map_err(|e| e.to_string())?;
        Ok(peer)
    });
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(client, ServerName::try_from(SERVER_NAME).unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    let mut got = [0u8; 2];
    let client = tls.read_exact(&mut got).map_err(|e| e.to_string()).map(|()| assert_eq!(&got, b"ok"));
    drop(tls);
    (server_side.join().unwrap(), client)
}

#[test]
fn the_same_files_give_the_same_fingerprint_and_keys_are_private() {
    let state = tempfile::tempdir().unwrap();
    let first = BoxCa::load_or_create(state.path(), "box1").unwrap();
    let dir = state.path().join(AGENTS_DIR);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(SERVER_KEY_FILE)), 0o600);
    let server_pem = std::fs::read(dir.join(SERVER_CERT_FILE)).unwrap();
    let der = CertificateDer::pem_slice_iter(&server_pem).next().unwrap().unwrap();
    assert_eq!(first.fingerprint(), fingerprint(&der), "the fingerprint is the stored server certificate's");
    let again = BoxCa::load_or_create(state.path(), "box1").unwrap();
    assert_eq!(again.fingerprint(), first.fingerprint());
    assert_eq!(again.ca_der(), first.ca_der());
    let other = BoxCa::load_or_create(tempfile::tempdir().unwrap().path(), "box1").unwrap();
    assert_ne!(other.fingerprint(), first.fingerprint());
    // The CA is named for the box, and is a CA.
    let ca_der = first.ca_der();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let cn = ca.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
    assert_eq!(cn, "coffer agent CA box1");
    assert!(ca.is_ca());
    // Shared across the service's tasks, and never shows a key.
    fn shared<T: Send + Sync>() {}
    shared::<BoxCa>();
    let shown = format!("{first:?}");
    assert!(shown.contains(&first.fingerprint()) && !shown.contains("PRIVATE"), "{shown}");
}

#[test]
fn stored_files_are_checked_and_never_silently_replaced() {
    let state = tempfile::tempdir().unwrap();
    let first = BoxCa::load_or_create(state.path(), "box").unwrap();
    let dir = state.path().join(AGENTS_DIR);
    // A key open to others is refused.
    std::fs::set_permissions(dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = BoxCa::load_or_create(state.path(), "box").unwrap_err();
    assert!(matches!(e, CaError::Exposed { mode: 0o640, .. }), "{e}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(dir.join(CA_KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A server certificate without its key is an error, not a new identity.
    let server_key = std::fs::read(dir.join(SERVER_KEY_FILE)).unwrap();
    std::fs::remove_file(dir.join(SERVER_KEY_FILE)).unwrap();
    let e = BoxCa::load_or_create(state.path(), "box").unwrap_err();
    assert!(matches!(&e, CaError::Unusable { path, .. } if path.ends_with(SERVER_KEY_FILE)), "{e}");
    // Another key beside the certificate is refused.
    crate::atomic::write_whole(
        &dir.join(SERVER_KEY_FILE),
        rcgen::KeyPair::generate().unwrap().serialize_pem().as_bytes(),
        0o600,
    )
    .unwrap();
    let e = BoxCa::load_or_create(state.path(), "box").unwrap_err().to_string();
    assert!(e.contains("not for the key beside it"), "{e}");
    crate::atomic::write_whole(&dir.join(SERVER_KEY_FILE), &server_key, 0o600).unwrap();
    assert_eq!(BoxCa::load_or_create(state.path(), "box").unwrap().fingerprint(), first.fingerprint());
    // A server identity from another CA is refused.
    let other = tempfile::tempdir().unwrap();
    BoxCa::load_or_create(other.path(), "box").unwrap();
    for file in [SERVER_CERT_FILE, SERVER_KEY_FILE] {
        std::fs::copy(other.path().join(AGENTS_DIR).join(file), dir.join(file)).unwrap();
    }
    let e = BoxCa::load_or_create(state.path(), "box").unwrap_err().to_string();
    assert!(e.contains("not signed by the agent CA"), "{e}");
    // A server certificate that is missing (a crash before it was written) is made again.
    std::fs::remove_file(dir.join(SERVER_CERT_FILE)).unwrap();
    let remade = BoxCa::load_or_create(state.path(), "box").unwrap();
    assert_eq!(remade.ca_der(), first.ca_der());
    assert_ne!(remade.fingerprint(), first.fingerprint());
}

#[test]
fn an_enrolling_client_has_no_peer_agent() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let (server, client) = connect(ca.server_config().unwrap(), enroll_config(&ca.fingerprint()).unwrap());
    assert_eq!(server, Ok(None));
    assert_eq!(client, Ok(()));
}

#[test]
fn an_agent_is_known_by_its_certificate() {
    let state = tempfile::tempdir().unwrap();
    BoxCa::load_or_create(state.path(), "box").unwrap();
    // Issued by the CA as read back from its files.
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let (key_pem, cert) = enrolled(&ca, "db-1.example");
    // The pin as people may type it: lower case, no colons.
    let pin = ca.fingerprint().replace(':', "").to_lowercase();
    let expected = PeerAgent { name: "db-1.example".into(), fingerprint: fingerprint(&cert) };
    let (server, client) = connect(ca.server_config().unwrap(), agent_config(&pin, &key_pem, &cert).unwrap());
    assert_eq!(server, Ok(Some(expected.clone())));
    assert_eq!(client, Ok(()));
    // And over TLS 1.2, whose handshake signature the pinned verifier checks differently.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let tls12 =
        agent::client_config(&pin, &[&rustls::version::TLS12], Some((cert.clone().into(), key))).unwrap();
    let (server, client) = connect(ca.server_config().unwrap(), tls12);
    assert_eq!(server, Ok(Some(expected)));
    assert_eq!(client, Ok(()));
}

#[test]
fn a_client_pinning_another_fingerprint_fails_the_handshake() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let other = BoxCa::load_or_create(tempfile::tempdir().unwrap().path(), "box").unwrap();
    let (server, client) = connect(ca.server_config().unwrap(), enroll_config(&other.fingerprint()).unwrap());
    let client = client.unwrap_err();
    assert!(client.contains(&ca.fingerprint()) && client.contains("not the pinned"), "{client}");
    assert!(server.is_err(), "{server:?}");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    // Another box of the same name has a CA of the same name: its signature tells them apart.
    for (other_name, refusal) in [("box", "BadSignature"), ("other", "UnknownIssuer")] {
        let other = BoxCa::load_or_create(tempfile::tempdir().unwrap().path(), other_name).unwrap();
        let (key_pem, cert) = enrolled(&other, "intruder");
        let client = agent_config(&ca.fingerprint(), &key_pem, &cert).unwrap();
        let (server, client) = connect(ca.server_config().unwrap(), client);
        let server = server.unwrap_err();
        assert!(server.contains("invalid peer certificate") && server.contains(refusal), "{server}");
        assert!(client.is_err());
    }
}

#[test]
fn issue_takes_only_the_key_from_the_csr() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    // A CSR asking for another name, a server's usage and to be a CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut asked = rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    asked.distinguished_name.push(rcgen::DnType::CommonName, "root");
    asked.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    asked.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = asked.serialize_request(&key).unwrap();
    let der = ca.issue("laptop", csr.der()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    use rcgen::PublicKeyData;
    assert_eq!(cert.public_key().raw, key.subject_public_key_info().as_slice());
    let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
    assert_eq!(cn, "laptop");
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth, "{eku:?}");
    let sans: Vec<String> = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                Some(san.general_names.iter().map(|n| n.to_string()))
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(sans, ["DNSName(laptop)"]);
    let years =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86400 / 365;
    assert_eq!(years, i64::from(AGENT_YEARS));
    let ca_der = ca.ca_der();
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    // Each certificate has its own serial number.
    let again = ca.issue("laptop", csr.der()).unwrap();
    assert_ne!(X509Certificate::from_der(&again).unwrap().1.serial, cert.serial);
}

#[test]
fn a_broken_csr_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let (_, csr) = new_agent_key("agent").unwrap();
    // The signature is the CSR's last field.
    let mut forged = csr.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    assert!(matches!(ca.issue("agent", &forged), Err(CaError::CsrSignature)));
    // The request signed by one key but naming another.
    let (_, other) = new_agent_key("agent").unwrap();
    let (spki, other_spki) = (csr_spki(&csr), csr_spki(&other));
    let swapped = replace(&csr, &spki, &other_spki);
    assert!(matches!(ca.issue("agent", &swapped), Err(CaError::CsrSignature)));
    assert!(matches!(ca.issue("agent", b"not a CSR"), Err(CaError::Csr(_))));
    let mut trailing = csr.clone();
    trailing.push(0);
    assert!(matches!(ca.issue("agent", &trailing), Err(CaError::Csr(_))));
    assert!(ca.issue("agent", &csr).is_ok());
}

fn csr_spki(csr: &[u8]) -> Vec<u8> {
    use x509_parser::certification_request::X509CertificationRequest;
    X509CertificationRequest::from_der(csr).unwrap().1.certification_request_info.subject_pki.raw.to_vec()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = haystack.windows(from.len()).position(|w| w == from).unwrap();
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

#[test]
fn agent_names_that_cannot_be_a_common_name_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let (_, csr) = new_agent_key("ok").unwrap();
    for name in ["", " padded", "line\nbreak", &"x".repeat(AGENT_NAME_MAX + 1)] {
        assert!(matches!(ca.issue(name, &csr), Err(CaError::AgentName { .. })), "{name:?}");
        assert!(matches!(new_agent_key(name), Err(CaError::AgentName { .. })), "{name:?}");
    }
    // Names need not be DNS names: no SAN then, the CN alone.
    let der = ca.issue("Büro PC 3", &csr).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "Büro PC 3");
    assert!(cert.subject_alternative_name().unwrap().is_none());
}

#[test]
fn fingerprints_are_read_as_people_type_them() {
    let canonical = fingerprint(b"");
    assert_eq!(parse_fingerprint(&canonical).unwrap(), canonical);
    assert_eq!(parse_fingerprint(&canonical.to_lowercase()).unwrap(), canonical);
    assert_eq!(parse_fingerprint(&format!(" {} \n", canonical.replace(':', ""))).unwrap(), canonical);
    for bad in ["", "E3:B0", &canonical[3..], &format!("{canonical}:00"), &canonical.replace('E', "G")] {
        assert!(matches!(parse_fingerprint(bad), Err(CaError::Fingerprint { .. })), "{bad:?}");
        assert!(enroll_config(bad).is_err());
    }
}

fn identity(ca: &BoxCa) -> AgentIdentity {
    let (key_pem, cert_der) = enrolled(ca, "laptop");
    AgentIdentity {
        name: "laptop".into(),
        server: "backup.example:8471".into(),
        fingerprint: ca.fingerprint(),
        key_pem,
        cert_der,
    }
}

#[test]
fn an_agent_identity_round_trips_and_its_key_stays_private() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let agent = tempfile::tempdir().unwrap();
    let dir = agent.path().join("coffer-agent");
    assert!(matches!(AgentIdentity::load(&dir), Err(CaError::NotEnrolled { .. })));
    let id = identity(&ca);
    id.save(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(AGENT_KEY_FILE)), 0o600);
    assert_eq!(AgentIdentity::load(&dir).unwrap(), id);
    let shown = format!("{id:?}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
    // The loaded identity connects.
    let loaded = AgentIdentity::load(&dir).unwrap();
    let client = agent_config(&loaded.fingerprint, &loaded.key_pem, &loaded.cert_der).unwrap();
    let (server, _) = connect(ca.server_config().unwrap(), client);
    assert_eq!(server.unwrap().unwrap().name, "laptop");
    // A key others can read is refused.
    std::fs::set_permissions(dir.join(AGENT_KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = AgentIdentity::load(&dir).unwrap_err();
    assert!(matches!(e, CaError::Exposed { mode: 0o644, .. }), "{e}");
}

#[test]
fn an_agent_identity_that_does_not_hold_together_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let ca = BoxCa::load_or_create(state.path(), "box").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = identity(&ca);
    // Another agent's key, another name, or no fingerprint are not saved.
    let (other_key, _) = new_agent_key("laptop").unwrap();
    let bad = [
        AgentIdentity { key_pem: other_key, ..id.clone() },
        AgentIdentity { name: "desktop".into(), ..id.clone() },
        AgentIdentity { fingerprint: "none".into(), ..id.clone() },
    ];
    for bad in bad {
        assert!(bad.save(dir.path()).is_err(), "{bad:?}");
        assert!(matches!(AgentIdentity::load(dir.path()), Err(CaError::NotEnrolled { .. })));
    }
    // The fingerprint is kept in the box's spelling.
    let typed = AgentIdentity { fingerprint: id.fingerprint.replace(':', "").to_lowercase(), ..id.clone() };
    typed.save(dir.path()).unwrap();
    assert_eq!(AgentIdentity::load(dir.path()).unwrap(), id);
    // A box.json with fields it should not have, or without its key.
    let box_path = dir.path().join(BOX_FILE);
    let json = std::fs::read_to_string(&box_path).unwrap();
    std::fs::write(&box_path, json.replacen('{', "{\"token\": \"x\",", 1)).unwrap();
    let e = AgentIdentity::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("unknown field `token`"), "{e}");
    std::fs::write(&box_path, json).unwrap();
    std::fs::remove_file(dir.path().join(AGENT_KEY_FILE)).unwrap();
    let e = AgentIdentity::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("agent.key: missing"), "{e}");
}

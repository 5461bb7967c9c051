//! The box's side of its backup agents: the listener on `[agents] listen`, enrolment, and the
//! connections of enrolled agents.
//!
//! Every connection is TLS with the box's agent CA ([`BoxCa`]). A client without a certificate
//! may only enrol: it sends its name's token and a CSR, and gets a certificate signed by the
//! box (the token is used once, within its time). A client with a certificate says `Hello` with
//! its name; it is accepted when the name is the certificate's, the agent is enrolled and not
//! revoked, and the certificate is the very one the box signed at enrolment. Anything else —
//! malformed frames, a name it was not enrolled with, another CA, a revoked agent, silence — is
//! refused with a reason, the connection closed and the refusal logged with the peer's address;
//! no other agent is affected.
//!
//! Revoking an agent closes its connection at once ([`Connected::kick`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::catalog::{AgentEnrolled, AgentState, Record};
use crate::net::ca::{BoxCa, peer_agent};
use crate::net::frame::{FrameError, Message, read_message, write_message};
use crate::store::SharedStore;

/// How long a client has for the TLS handshake and its first message.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An agent that says nothing for this long (it pings every [`PING_EVERY`]) is gone.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How often an agent pings the box.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Connections handled at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;

const _: () = assert!(SILENCE_LIMIT.as_secs() >= 3 * PING_EVERY.as_secs());

/// An agent connected now.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Where from.
    pub address: SocketAddr,
    /// Since when, seconds since the epoch.
    pub since: u64,
    /// The agent's coffer version.
    pub version: String,
    /// Tells the connection's task to close it.
    close: watch::Sender<bool>,
}

/// The agents connected now, by name: shared by the listener, the status and the commands the
/// service runs (`agent list`, `agent revoke`).
#[derive(Debug, Clone, Default)]
pub struct Connected(Arc<Mutex<BTreeMap<String, Connection>>>);

impl Connected {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Connection>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who is connected, by name.
    pub fn list(&self) -> BTreeMap<String, Connection> {
        self.lock().clone()
    }

    /// Closes `name`'s connection, if it has one (it was revoked).
    pub fn kick(&self, name: &str) -> bool {
        match self.lock().remove(name) {
            Some(c) => {
                let _ = c.close.send(true);
                true
            }
            None => false,
        }
    }

    /// Records `name`'s connection, closing an older one of the same agent.
    fn add(&self, name: &str, c: Connection) {
        if let Some(old) = self.lock().insert(name.to_owned(), c) {
            let _ = old.close.send(true);
        }
    }

    /// Forgets `name`'s connection if it is still the one from `address` since `since`.
    fn remove(&self, name: &str, address: SocketAddr, since: u64) {
        let mut map = self.lock();
        if map.get(name).is_some_and(|c| c.address == address && c.since == since) {
            map.remove(name);
        }
    }
}

/// What every connection's task needs.
#[derive(Clone)]
struct Listener {
    acceptor: tokio_rustls::TlsAcceptor,
    ca: Arc<BoxCa>,
    store: SharedStore,
    connected: Connected,
    box_name: String,
}

/// Serves agents on `listener` until the runtime stops.
pub async fn serve(
    listener: TcpListener,
    ca: Arc<BoxCa>,
    store: SharedStore,
    connected: Connected,
    box_name: String,
) {
    let config = match ca.server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "agents", "agent listener not started: {e}");
            return;
        }
    };
    let shared =
        Listener { acceptor: tokio_rustls::TlsAcceptor::from(config), ca, store, connected, box_name };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(target: "agents", "accepting an agent connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(why) = handle(shared, stream, peer).await {
                tracing::warn!(target: "agents", "agent connection from {peer} refused: {why}");
            }
            drop(permit);
        });
    }
}

/// One connection, from handshake to close. An error is the reason it was refused or closed.
async fn handle(l: Listener, stream: TcpStream, peer: SocketAddr) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, l.acceptor.accept(stream))
        .await
        .map_err(|_| "no TLS handshake within 10 s".to_owned())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let mut tls = tls;
    let agent = peer_agent(tls.get_ref().1);
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_message(&mut tls))
        .await
        .map_err(|_| "no message within 10 s of the handshake".to_owned())?;
    let first = match first {
        Ok(m) => m,
        Err(e) => return refuse(&mut tls, frame_reason(&e)).await,
    };
    match (first, agent) {
        (Message::Enroll { name, token, csr_der }, None) => {
            // The store's lock may be held for seconds (a session's index being written): never
            // on the runtime's one thread.
            let (l2, n) = (l.clone(), name.clone());
            let answer = tokio::task::spawn_blocking(move || enrol(&l2, &n, &token, &csr_der))
                .await
                .map_err(|e| format!("enrolment failed: {e}"))?;
            match answer {
                Ok(cert_der) => {
                    let reply = Message::Enrolled { cert_der, ca_der: l.ca.ca_der() };
                    write_message(&mut tls, &reply).await.map_err(|e| e.to_string())?;
                    tracing::info!(target: "agents", "agent {name} enrolled from {peer}");
                    Ok(())
                }
                Err(why) => refuse(&mut tls, why).await,
            }
        }
        (Message::Enroll { .. }, Some(_)) => {
            refuse(&mut tls, "an enrolled agent does not enrol again: revoke and add it on the box".into())
                .await
        }
        (Message::Hello { name, version }, Some(cert)) => {
            let digest = cert_digest(tls.get_ref().1);
            let (l2, n) = (l.clone(), name.clone());
            let admitted = tokio::task::spawn_blocking(move || admit(&l2, &n, &cert.name, &digest))
                .await
                .map_err(|e| format!("admission failed: {e}"))?;
            if let Err(why) = admitted {
                return refuse(&mut tls, why).await;
            }
            write_message(&mut tls, &Message::Welcome { box_name: l.box_name.clone() })
                .await
                .map_err(|e| e.to_string())?;
            let since = crate::clock::unix_now();
            let (close, mut closed) = watch::channel(false);
            l.connected.add(&name, Connection { address: peer, since, version: version.clone(), close });
            // A revocation between the check above and this registration found nothing to
            // close: look again now that a revocation would find this connection.
            let (l2, n) = (l.clone(), name.clone());
            let still = tokio::task::spawn_blocking(move || admit(&l2, &n, &n, &digest)).await;
            if let Some(why) = still.map_or_else(|e| Some(e.to_string()), Result::err) {
                l.connected.remove(&name, peer, since);
                return refuse(&mut tls, why).await;
            }
            tracing::info!(target: "agents", "agent {name} connected from {peer} (coffer {version})");
            let ended = converse(&mut tls, &mut closed).await;
            l.connected.remove(&name, peer, since);
            match ended {
                Ok(why) => {
                    tracing::info!(target: "agents", "agent {name} from {peer}: {why}");
                    Ok(())
                }
                Err(why) => Err(format!("agent {name}: {why}")),
            }
        }
        (Message::Hello { .. }, None) => {
            refuse(&mut tls, "no client certificate: enrol first (`coffer agent enroll`)".into()).await
        }
        (other, _) => refuse(&mut tls, format!("{} is not how a connection starts", other.name())).await,
    }
}

/// After the welcome: pongs to pings, until the agent leaves, falls silent, breaks the
/// protocol or is revoked. Returns why it ended (Ok: an orderly end).
async fn converse<S>(tls: &mut S, closed: &mut watch::Receiver<bool>) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            _ = closed.changed() => {
                let _ = write_message(tls, &Message::Refused { reason: "revoked on the box".into() }).await;
                return Ok("revoked: connection closed".into());
            }
            read = tokio::time::timeout(SILENCE_LIMIT, read_message(tls)) => {
                match read {
                    Err(_) => return Err(format!("silent for {} s: connection closed", SILENCE_LIMIT.as_secs())),
                    Ok(Err(FrameError::Closed)) => return Ok("disconnected".into()),
                    Ok(Err(e)) => {
                        let why = frame_reason(&e);
                        let _ = write_message(tls, &Message::Refused { reason: why.clone() }).await;
                        return Err(why);
                    }
                    Ok(Ok(Message::Ping { seq })) => {
                        write_message(tls, &Message::Pong { seq }).await.map_err(|e| e.to_string())?;
                    }
                    Ok(Ok(other)) => {
                        let why = format!("unexpected {} from an idle agent", other.name());
                        let _ = write_message(tls, &Message::Refused { reason: why.clone() }).await;
                        return Err(why);
                    }
                }
            }
        }
    }
}

/// Sends the reason and ends the connection as refused.
async fn refuse<S: tokio::io::AsyncWrite + Unpin>(tls: &mut S, why: String) -> Result<(), String> {
    let _ = write_message(tls, &Message::Refused { reason: why.clone() }).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(tls).await;
    Err(why)
}

/// What to tell a peer whose frame was refused.
fn frame_reason(e: &FrameError) -> String {
    format!("bad frame: {e}")
}

/// SHA-256 of the client certificate of `conn`.
fn cert_digest(conn: &rustls::ServerConnection) -> [u8; 32] {
    let der =
        conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).unwrap_or_default();
    Sha256::digest(&der).into()
}

/// Checks an enrolment: the agent is pending, the token is its own and in time; signs the
/// CSR and journals the enrolment. Returns the certificate.
fn enrol(l: &Listener, name: &str, token: &str, csr_der: &[u8]) -> Result<Vec<u8>, String> {
    let now = crate::clock::unix_now();
    let mut store = l.store.lock();
    let agent = store.catalog().agent(name).ok_or_else(|| format!("no agent {name} on this box"))?;
    let added = agent.added();
    // One answer for a wrong token and a used one: the peer learns nothing about which.
    let token_ok = crate::net::token::matches(token, &added.token_sha256);
    if agent.state() != AgentState::Pending || !token_ok {
        return Err(format!("the token is not agent {name}'s, or was used already"));
    }
    if now > added.expires {
        return Err(format!("agent {name}'s token expired: add the agent again on the box for a new one"));
    }
    let cert_der = l.ca.issue(name, csr_der).map_err(|e| format!("cannot sign the request: {e}"))?;
    let record =
        AgentEnrolled { name: name.to_owned(), cert_sha256: Sha256::digest(&cert_der).into(), at: now };
    store.commit(&[Record::from(record)]).map_err(|e| format!("the box cannot record the enrolment: {e}"))?;
    Ok(cert_der)
}

/// Checks a `Hello`: the name is the certificate's, the agent is enrolled and not revoked, and
/// the certificate is the one signed at its enrolment.
fn admit(l: &Listener, said: &str, cert_name: &str, digest: &[u8; 32]) -> Result<(), String> {
    if said != cert_name {
        return Err(format!("says it is {said:?} but its certificate is {cert_name:?}'s"));
    }
    let store = l.store.lock();
    let agent = store.catalog().agent(said).ok_or_else(|| format!("no agent {said} on this box"))?;
    match (agent.state(), agent.enrolled()) {
        (AgentState::Revoked, _) => Err(format!("agent {said} is revoked")),
        (AgentState::Enrolled, Some(e)) if &e.cert_sha256 == digest => Ok(()),
        (AgentState::Enrolled, _) => {
            Err(format!("agent {said} enrolled again since this certificate was signed: use the new one"))
        }
        (AgentState::Pending, _) => Err(format!("agent {said} has not enrolled")),
    }
}

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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{mpsc, oneshot, watch};

use std::collections::HashSet;

use crate::catalog::StoredObject;
use crate::net::frame::MAX_CHUNK;
use crate::pipeline::readback::Decoded;
use crate::pipeline::readback::Item;
use crate::pipeline::remote::{Agents, Delivery, RemoteAsk, WireItem};
use crate::pipeline::restore::RestoreReport;

use crate::catalog::{AgentEnrolled, AgentState, Record};
use crate::net::ca::{BoxCa, peer_agent};
use crate::net::frame::{FrameError, FrameReader, Message, read_message, write_message};
use crate::store::{SharedStore, State};

/// How often a running backup looks whether its job was cancelled.
const CANCEL_LOOK: Duration = Duration::from_millis(250);
/// How long a client has for the TLS handshake and its first message.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An agent that says nothing for this long (it pings every [`PING_EVERY`]) is gone.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How often an agent pings the box.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Connections handled at once; more are refused.
pub const MAX_CONNECTIONS: usize = 256;
/// Of those, connections still in their handshake or first message (at most 20 s each).
pub const MAX_UNPROVEN: usize = 32;

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
    /// Tells the connection's task to close it, and why (what the agent is told).
    close: watch::Sender<Option<String>>,
    /// Hands the connection's task a backup to run.
    asks: mpsc::Sender<Ask>,
    /// A backup or restore runs on the connection (one at a time; another is refused).
    busy: Arc<AtomicBool>,
    /// Bytes of units received, for the status's throughput.
    pub bytes: Arc<AtomicU64>,
}

/// A backup for a connection's task to run: what to ask, where the deliveries go.
#[derive(Debug)]
enum Ask {
    /// Back up a tree of the agent.
    Backup(BackupAsk),
    /// Recreate a session's objects on the agent.
    Restore(RestoreAsk),
}

/// A backup for a connection's task: what to ask, where the deliveries go.
#[derive(Debug)]
struct BackupAsk {
    ask: RemoteAsk,
    to: mpsc::Sender<Delivery>,
}

/// A restore onto the agent: the `Restore` to send, then what the restore reads, and where
/// the agent's answer goes.
#[derive(Debug)]
struct RestoreAsk {
    start: Message,
    from: mpsc::Receiver<Message>,
    done: oneshot::Sender<Result<Message, String>>,
}

/// Where a connection takes its one backup or restore at a time.
struct Hand {
    asks: mpsc::Sender<Ask>,
    busy: Arc<AtomicBool>,
}

impl Hand {
    /// Hands the connection `ask`, unless it is busy with another.
    fn give(&self, agent: &str, ask: Ask) -> Result<(), String> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "agent {agent} is busy with another backup or restore: try again when it ends"
            ));
        }
        self.asks.try_send(ask).map_err(|_| {
            self.busy.store(false, Ordering::Release);
            format!("agent {agent} disconnected")
        })
    }
}

/// Deliveries in flight between a connection and the reader: a few units, so that the network
/// and the pipeline overlap without holding more than that.
const DELIVERIES_IN_FLIGHT: usize = 4;

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
                let _ = c.close.send(Some("revoked on the box".into()));
                true
            }
            None => false,
        }
    }

    /// Where `name`'s connection takes a backup or restore.
    fn hand(&self, name: &str) -> Result<Hand, String> {
        self.lock()
            .get(name)
            .map(|c| Hand { asks: c.asks.clone(), busy: c.busy.clone() })
            .ok_or_else(|| format!("agent {name} is not connected"))
    }

    /// Records `name`'s connection, closing an older one of the same agent.
    fn add(&self, name: &str, c: Connection) {
        let from = c.address;
        if let Some(old) = self.lock().insert(name.to_owned(), c) {
            // Two processes with one identity (a cloned machine, a second `agent run`): the
            // older one is told why it is closed, and stops.
            let why = format!("replaced by a newer connection of agent {name} from {from}");
            let _ = old.close.send(Some(why));
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
    let strangers = Arc::new(tokio::sync::Semaphore::new(MAX_UNPROVEN));
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
        // Full: refused at once rather than left waiting in the backlog; a peer that has not
        // proven itself yet takes one of fewer places, so idle strangers cannot keep
        // enrolled agents out.
        let (Ok(permit), Ok(unproven)) =
            (permits.clone().try_acquire_owned(), strangers.clone().try_acquire_owned())
        else {
            tracing::warn!(target: "agents", "agent connection from {peer} refused: too many connections");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(why) = handle(shared, stream, peer, unproven).await {
                tracing::warn!(target: "agents", "agent connection from {peer} refused: {why}");
            }
            drop(permit);
        });
    }
}

/// One connection, from handshake to close. An error is the reason it was refused or closed.
async fn handle(
    l: Listener,
    stream: TcpStream,
    peer: SocketAddr,
    unproven: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), String> {
    crate::net::tune(&stream);
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
            // An enrolled agent: no longer one of the strangers.
            drop(unproven);
            write_message(&mut tls, &Message::Welcome { box_name: l.box_name.clone() })
                .await
                .map_err(|e| e.to_string())?;
            let since = crate::clock::unix_now();
            let (close, mut closed) = watch::channel(None);
            let (asks, mut asked) = mpsc::channel(1);
            let bytes = Arc::new(AtomicU64::new(0));
            let busy = Arc::new(AtomicBool::new(false));
            let c = Connection {
                busy: busy.clone(),
                address: peer,
                since,
                version: version.clone(),
                close,
                asks,
                bytes: bytes.clone(),
            };
            l.connected.add(&name, c);
            // A revocation between the check above and this registration found nothing to
            // close: look again now that a revocation would find this connection.
            let (l2, n) = (l.clone(), name.clone());
            let still = tokio::task::spawn_blocking(move || admit(&l2, &n, &n, &digest)).await;
            if let Some(why) = still.map_or_else(|e| Some(e.to_string()), Result::err) {
                l.connected.remove(&name, peer, since);
                return refuse(&mut tls, why).await;
            }
            tracing::info!(target: "agents", "agent {name} connected from {peer} (coffer {version})");
            let ended = converse(&mut tls, &mut closed, &mut asked, &bytes, &busy).await;
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

/// After the welcome: pongs to pings and backups the box asks for, until the agent leaves,
/// falls silent, breaks the protocol or is revoked. Returns why it ended (Ok: an orderly end).
async fn converse<S>(
    tls: &mut S,
    closed: &mut watch::Receiver<Option<String>>,
    asked: &mut mpsc::Receiver<Ask>,
    bytes: &AtomicU64,
    busy: &AtomicBool,
) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut frames = FrameReader::new();
    loop {
        tokio::select! {
            _ = closed.changed() => {
                let why = closed.borrow().clone().unwrap_or_else(|| "closed by the box".into());
                let _ = write_message(tls, &Message::Refused { reason: why.clone() }).await;
                return Ok(format!("{why}: connection closed"));
            }
            // A failed conversation closes the connection without `Refused`, which would stop
            // the agent for good: it reconnects and takes the next job.
            Some(ask) = asked.recv() => {
                match ask {
                    Ask::Backup(ask) => {
                        let to = ask.to.clone();
                        if let Err(why) = backup(tls, &mut frames, closed, ask, bytes, busy).await {
                            let _ = to.try_send(Delivery::Lost(why.clone()));
                            return Err(why);
                        }
                    }
                    Ask::Restore(ask) => restore(tls, &mut frames, closed, ask, busy).await?,
                }
                busy.store(false, Ordering::Release);
            }
            read = tokio::time::timeout(SILENCE_LIMIT, frames.next(tls)) => {
                match read {
                    Err(_) => return Err(format!("silent for {} s: connection closed", SILENCE_LIMIT.as_secs())),
                    Ok(Err(FrameError::Closed)) => return Ok("disconnected".into()),
                    Ok(Err(e)) => return Err(frame_reason(&e)),
                    Ok(Ok(Message::Ping { seq })) => {
                        write_message(tls, &Message::Pong { seq }).await.map_err(|e| e.to_string())?;
                    }
                    Ok(Ok(other)) => return Err(format!("unexpected {} from an idle agent", other.name())),
                }
            }
        }
    }
}

/// Most bytes one unit may take on the wire: a unit's data plus the objects of a pack of
/// empty files (about 100 bytes each, at most one per 48 bytes of pack).
fn max_unit_bytes(unit: usize) -> usize {
    unit * 4 + (1 << 20)
}

/// Runs one backup on the connection: asks it, passes the units on to the reader, answers
/// pings, until the agent says `Done`. The reader going away (the job was cancelled or
/// failed) cancels the agent's walk; its `Done` is still awaited. An error ends the
/// connection.
async fn backup<S>(
    tls: &mut S,
    frames: &mut FrameReader,
    closed: &mut watch::Receiver<Option<String>>,
    ask: BackupAsk,
    bytes: &AtomicU64,
    busy: &AtomicBool,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let BackupAsk { ask, to } = ask;
    let job = ask.job;
    let start = Message::Backup {
        job,
        root: ask.root.clone(),
        prefix: ask.prefix.clone().unwrap_or_default(),
        first_seq: ask.first_seq,
        first_object: ask.first_object,
        unit: ask.unit as u64,
        one_file_system: ask.one_file_system,
        incremental: ask.incremental.is_some(),
        compress: ask.compress,
    };
    write_message(tls, &start).await.map_err(|e| e.to_string())?;
    let limit = max_unit_bytes(ask.unit);
    let mut unit = Vec::new();
    // Where units go until the job is cancelled or its reader is gone; then the agent is told
    // to stop, and has a silence limit's time to say Done.
    let mut to = Some(to);
    let mut stopping: Option<tokio::time::Instant> = None;
    let mut look = tokio::time::interval(CANCEL_LOOK);
    let mut heard = tokio::time::Instant::now();
    loop {
        if to.is_some() && ask.cancel.is_cancelled() {
            to = None;
        }
        if to.is_none() && stopping.is_none() {
            write_message(tls, &Message::Cancel { job }).await.map_err(|e| e.to_string())?;
            stopping = Some(tokio::time::Instant::now());
        }
        if stopping.is_some_and(|t| t.elapsed() > SILENCE_LIMIT) {
            return Err(format!(
                "asked to stop backup {job}, it did not end within {} s",
                SILENCE_LIMIT.as_secs()
            ));
        }
        let m = tokio::select! {
            _ = closed.changed() => {
                return Err(closed.borrow().clone().unwrap_or_else(|| "closed by the box".into()));
            }
            _ = look.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return Err(format!("silent for {} s in a backup", SILENCE_LIMIT.as_secs()));
                }
                continue;
            }
            read = frames.next(tls) => {
                heard = tokio::time::Instant::now();
                read.map_err(|e| frame_reason(&e))?
            }
        };
        match m {
            Message::Ping { seq } => {
                write_message(tls, &Message::Pong { seq }).await.map_err(|e| e.to_string())?
            }
            Message::Units { job: j, last, bytes: piece } if j == job => {
                if unit.len() + piece.len() > limit {
                    return Err(format!("a unit of over {limit} bytes"));
                }
                bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
                unit.extend_from_slice(&piece);
                if !last {
                    continue;
                }
                let whole = std::mem::take(&mut unit);
                if let Some(tx) = &to {
                    // The reader's pace holds the agent back; a revocation does not wait for it.
                    let sent = tokio::select! {
                        r = tx.send(Delivery::Unit(whole)) => r.is_ok(),
                        _ = closed.changed() => {
                            return Err(closed.borrow().clone().unwrap_or_else(|| "closed by the box".into()));
                        }
                    };
                    if !sent {
                        to = None;
                    }
                }
            }
            Message::Judge { job: j, bytes: asked } if j == job => {
                // Index lookups read files: off the control plane's thread.
                let ask = ask.clone();
                let answer = tokio::task::spawn_blocking(move || ask.judge(&asked))
                    .await
                    .map_err(|e| format!("judging what to leave out failed: {e}"))??;
                write_message(tls, &Message::Judged { job, skip: answer })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Message::Done { job: j, next_seq, next_object, problems, error } if j == job => {
                if !unit.is_empty() {
                    return Err("ended inside a unit".into());
                }
                let error = (!error.is_empty()).then_some(error);
                // Free before the reader hears the end: its next ask of this agent (the next
                // group of a job) must find it free.
                busy.store(false, Ordering::Release);
                if let Some(tx) = to {
                    let _ = tx.send(Delivery::Done { next_seq, next_object, problems, error }).await;
                }
                return Ok(());
            }
            other => return Err(format!("unexpected {} in backup {job}", other.name())),
        }
    }
}

/// Runs one restore onto the agent: sends `Restore`, then what the box reads as it comes,
/// answers pings, until the agent says `Restored` (passed to the waiting sink). The box's side
/// ending early (its reading failed) still sends `Finish`, so the agent reports what it made.
async fn restore<S>(
    tls: &mut S,
    frames: &mut FrameReader,
    closed: &mut watch::Receiver<Option<String>>,
    ask: RestoreAsk,
    busy: &AtomicBool,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let RestoreAsk { start, mut from, done } = ask;
    let Message::Restore { job, .. } = start else { unreachable!("a restore starts with Restore") };
    let result = async {
        write_message(tls, &start).await.map_err(|e| e.to_string())?;
        let mut sending = true;
        loop {
            tokio::select! {
                _ = closed.changed() => {
                    return Err(closed.borrow().clone().unwrap_or_else(|| "closed by the box".into()));
                }
                m = from.recv(), if sending => {
                    let m = m.unwrap_or(Message::Finish { job });
                    sending = !matches!(m, Message::Finish { .. });
                    write_message(tls, &m).await.map_err(|e| e.to_string())?;
                }
                read = frames.next(tls) => match read.map_err(|e| frame_reason(&e))? {
                    Message::Ping { seq } => write_message(tls, &Message::Pong { seq }).await.map_err(|e| e.to_string())?,
                    m @ Message::Restored { job: j, .. } if j == job => return Ok(m),
                    other => return Err(format!("unexpected {} in restore {job}", other.name())),
                },
            }
        }
    }
    .await;
    let failed = result.as_ref().err().cloned();
    // Free before the sink hears the answer: the next session of a chain asks at once.
    if failed.is_none() {
        busy.store(false, Ordering::Release);
    }
    let _ = done.send(result);
    match failed {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// A restore conversation in progress: where the box's records go, and the agent's answer.
type Talk = (mpsc::Sender<Message>, oneshot::Receiver<Result<Message, String>>);

/// A restore's reading on the box, sent to an agent that recreates the objects
/// ([`crate::pipeline::restore::RemoteSink`]). One conversation per session read (an
/// incremental chain's sessions one after the other).
#[derive(Debug)]
pub struct AgentSink {
    links: Links,
    agent: String,
    root: String,
    job: u64,
    /// Compare with the agent's files under `root` rather than recreate them.
    compare: bool,
    talk: Mutex<Option<Talk>>,
    /// The objects the agent was told of: no record of any other reaches it (a multiplexed
    /// session holds other agents' objects too).
    sent: Mutex<HashSet<u64>>,
}

impl AgentSink {
    /// A restore onto `agent` under `root`, once the agent may be restored to there: `root`
    /// lies under its `--restore-to` paths. With `compare` (`verify --compare`), nothing is
    /// written: the objects are compared with the agent's files under `root`, which must lie
    /// under the paths it may be backed up under (what the box may read there).
    pub fn new(links: Links, agent: &str, root: &str, job: u64, compare: bool) -> Result<AgentSink, String> {
        let allowed = links.store.read(|c| match c.agent(agent) {
            None => Err(format!("no agent {agent} on this box: `coffer agent list` lists them")),
            Some(a) if a.state() != AgentState::Enrolled => Err(format!("agent {agent} is not enrolled")),
            Some(a) if compare => Ok(a.added().paths.clone()),
            Some(a) => Ok(a.added().restore_to.clone()),
        })?;
        if compare {
            if !allowed.iter().any(|p| under(root, p)) {
                return Err(format!(
                    "{root} is not under the paths agent {agent} may be backed up under ({}): a compare reads only there",
                    allowed.join(", ")
                ));
            }
        } else if !allowed.iter().any(|p| under(root, p)) {
            let paths = if allowed.is_empty() {
                "none: add it again with --restore-to".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(format!("{root} is not under the paths agent {agent} may restore into ({paths})"));
        }
        Ok(AgentSink {
            links,
            agent: agent.to_owned(),
            root: root.to_owned(),
            job,
            compare,
            talk: Mutex::new(None),
            sent: Mutex::new(HashSet::new()),
        })
    }

    fn send(&self, m: Message) -> Result<(), String> {
        let talk = self.talk.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, _) = talk.as_ref().ok_or("the restore was not begun")?;
        tx.blocking_send(m)
            .map_err(|_| format!("agent {}: the connection ended during the restore", self.agent))
    }
}

impl crate::pipeline::restore::RemoteSink for AgentSink {
    fn begin(
        &self,
        session: u64,
        objects: &[StoredObject],
        selected: Option<&HashSet<u64>>,
    ) -> Result<(), String> {
        let hand = self.links.connected.hand(&self.agent)?;
        let (tx, from) = mpsc::channel(DELIVERIES_IN_FLIGHT);
        let (done, answer) = oneshot::channel();
        let start = Message::Restore {
            job: self.job,
            session,
            root: self.root.clone(),
            all: selected.is_none(),
            compare: self.compare,
        };
        hand.give(&self.agent, Ask::Restore(RestoreAsk { start, from, done }))?;
        *self.talk.lock().unwrap_or_else(|e| e.into_inner()) = Some((tx, answer));
        // The objects in pieces of at most one chunk.
        let mut batch: Vec<(&StoredObject, bool)> = Vec::new();
        let mut size = 0;
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        // Only the selected objects: the agent learns nothing else of the session.
        for o in objects.iter().filter(|o| selected.is_none_or(|s| s.contains(&o.id))) {
            sent.insert(o.id);
            let one = (o, true);
            let n = postcard::experimental::serialized_size(&one).unwrap_or(usize::MAX);
            if !batch.is_empty() && size + n + 16 > MAX_CHUNK {
                self.send(Message::Objects {
                    job: self.job,
                    bytes: postcard::to_allocvec(&batch).expect("objects serialize"),
                })?;
                batch.clear();
                size = 0;
            }
            batch.push(one);
            size += n;
        }
        if !batch.is_empty() {
            self.send(Message::Objects {
                job: self.job,
                bytes: postcard::to_allocvec(&batch).expect("objects serialize"),
            })?;
        }
        Ok(())
    }

    fn item(&self, item: Item) -> Result<(), String> {
        let ours = {
            let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            match &item.decoded {
                Decoded::Meta(id, _)
                | Decoded::Segment(id, _)
                | Decoded::End(id, _)
                | Decoded::Data { id, .. } => sent.contains(id),
                Decoded::Pack { entries, .. } => entries.iter().any(|(e, _, _)| sent.contains(&e.object_id)),
                Decoded::Bad(_) => true,
            }
        };
        if !ours {
            return Ok(());
        }
        let bytes = WireItem::of(&item).encode();
        let mut pieces = bytes.chunks(MAX_CHUNK).peekable();
        while let Some(piece) = pieces.next() {
            self.send(Message::Items {
                job: self.job,
                last: pieces.peek().is_none(),
                bytes: piece.to_vec(),
            })?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<RestoreReport, String> {
        let (tx, answer) =
            self.talk.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or("the restore was not begun")?;
        let _ = tx.blocking_send(Message::Finish { job: self.job });
        drop(tx);
        let answer = answer
            .blocking_recv()
            .map_err(|_| format!("agent {}: the connection ended during the restore", self.agent))?;
        match answer? {
            Message::Restored { objects, bytes, mut failures, more, .. } => {
                if more > 0 {
                    failures.push(format!("… and {more} more failures (see the agent's log)"));
                }
                let failures =
                    failures.into_iter().map(|f| format!("on agent {}: {f}", self.agent)).collect();
                Ok(RestoreReport { objects, bytes, failures, ..RestoreReport::default() })
            }
            other => Err(format!("agent {} answered the restore with {}", self.agent, other.name())),
        }
    }
}

/// The agents as backups reach them: checks that an agent may be backed up where asked, and
/// hands its connection the backup.
#[derive(Debug, Clone)]
pub struct Links {
    /// The connections.
    pub connected: Connected,
    /// The catalog, for each agent's paths.
    pub store: SharedStore,
    /// The board's spool for agents' backups to tape.
    pub spool: Option<crate::pipeline::spool::SpoolSpec>,
}

/// Whether `root` is `base` or under it, by whole components.
fn under(root: &str, base: &str) -> bool {
    base == "/" || root == base || root.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

impl Links {
    /// The connection's hand-in for backups, once the agent may be backed up at `root`.
    fn asks(&self, agent: &str, root: &str) -> Result<Hand, String> {
        let paths = self.store.read(|c| match c.agent(agent) {
            None => Err(format!("no agent {agent} on this box: `coffer agent list` lists them")),
            Some(a) if a.state() != AgentState::Enrolled => Err(format!("agent {agent} is not enrolled")),
            Some(a) => Ok(a.added().paths.clone()),
        })?;
        if !paths.iter().any(|p| under(root, p)) {
            return Err(format!(
                "{root} is not under the paths agent {agent} may be backed up under ({})",
                paths.join(", ")
            ));
        }
        self.connected.hand(agent)
    }
}

impl Agents for Links {
    fn check(&self, agent: &str, root: &str) -> Result<(), String> {
        self.asks(agent, root).map(drop)
    }

    fn backup(&self, agent: &str, ask: RemoteAsk) -> Result<mpsc::Receiver<Delivery>, String> {
        let hand = self.asks(agent, &ask.root)?;
        let (to, rx) = mpsc::channel(DELIVERIES_IN_FLIGHT);
        hand.give(agent, Ask::Backup(BackupAsk { ask, to }))?;
        Ok(rx)
    }

    fn spool(&self) -> Option<crate::pipeline::spool::SpoolSpec> {
        self.spool.clone()
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
    match e {
        // The link failed, not the peer's framing.
        FrameError::Io(_) | FrameError::Truncated | FrameError::Closed => e.to_string(),
        _ => format!("bad frame: {e}"),
    }
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

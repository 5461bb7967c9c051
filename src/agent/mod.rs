//! The backup agent: the client side of `coffer agent`, run on the machines the box protects.
//!
//! [`enroll`] trades a one-time token for a certificate signed by the box's CA, trusting the
//! box only by the fingerprint the operator read off it, and keeps the identity in the agent's
//! state directory. [`run`] then stays connected to the box over mutual TLS, pings it, and
//! reconnects (with back-off) when the link or the box goes away. A refusal from the box (the
//! agent was revoked, or enrolled again elsewhere) ends it: retrying cannot mend that.

mod backup;
mod restore;

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::net::ca::{self, AgentIdentity, CaError};
use crate::net::frame::{FrameError, FrameReader, Message, read_message, write_message};
use crate::net::token;
use crate::pipeline::Cancel;
use tokio::sync::mpsc;

/// How long connecting, the TLS handshake and the box's first answer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connected agent pings the box; the box closes a connection silent for four.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// A box that answers no ping for this long is gone: the agent reconnects.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(45);
/// Longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the agent cannot enrol or stay connected.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The token is not one.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// Keys, certificates or the identity files.
    #[error(transparent)]
    Identity(#[from] CaError),
    /// The box cannot be reached.
    #[error("cannot reach the box at {server}: {why}")]
    Unreachable {
        /// `HOST:PORT`.
        server: String,
        /// What failed.
        why: String,
    },
    /// The box refused the agent; trying again will not help.
    #[error("the box at {server} refused this agent: {reason}")]
    Refused {
        /// `HOST:PORT`.
        server: String,
        /// The box's reason.
        reason: String,
    },
    /// The box broke the protocol.
    #[error("the box at {server} broke the protocol: {why}")]
    Protocol {
        /// `HOST:PORT`.
        server: String,
        /// What it did.
        why: String,
    },
}

/// What `enroll` did.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The agent's name, from the token.
    pub name: String,
    /// The box's pinned fingerprint.
    pub fingerprint: String,
}

/// Enrols with the box at `server` (`HOST:PORT`) with `token`, trusting only the server
/// certificate with `fingerprint`; stores the key (0600), the certificate and the box in
/// `dir`. An identity already in `dir` is replaced only once the box has signed the new one.
pub async fn enroll(
    server: &str,
    token: &str,
    fingerprint: &str,
    dir: &Path,
) -> Result<Enrolled, AgentError> {
    let name = token::name_of(token)?;
    let fingerprint = ca::parse_fingerprint(fingerprint)?;
    let (key_pem, csr_der) = ca::new_agent_key(&name)?;
    let config = ca::enroll_config(&fingerprint)?;
    let mut tls = connect(server, config).await?;
    let ask = Message::Enroll { name: name.clone(), token: token.trim().to_owned(), csr_der };
    let answer = exchange(server, &mut tls, &ask).await?;
    let cert_der = match answer {
        Message::Enrolled { cert_der, .. } => cert_der,
        Message::Refused { reason } => return Err(AgentError::Refused { server: server.to_owned(), reason }),
        other => return Err(protocol(server, format!("answered an enrolment with {}", other.name()))),
    };
    let identity =
        AgentIdentity { name: name.clone(), server: server.to_owned(), fingerprint, key_pem, cert_der };
    identity.save(dir)?;
    Ok(Enrolled { name, fingerprint: identity.fingerprint })
}

/// What the agent reports while it runs (to systemd's status line and the log).
pub trait Report {
    /// The connection's state changed.
    fn status(&mut self, line: &str);
}

/// Stays connected to the box as the identity in `dir` says, until the box refuses the agent
/// (an error) or `stop` resolves (Ok). Connection failures are retried with back-off.
pub async fn run(
    dir: &Path,
    report: &mut dyn Report,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let id = AgentIdentity::load(dir)?;
    let config = ca::agent_config(&id.fingerprint, &id.key_pem, &id.cert_der)?;
    let mut backoff = Duration::from_secs(1);
    tokio::pin!(stop);
    loop {
        let mut welcomed = false;
        let attempt = async {
            let mut tls = connect(&id.server, config.clone()).await?;
            let hello =
                Message::Hello { name: id.name.clone(), version: env!("CARGO_PKG_VERSION").to_owned() };
            match exchange(&id.server, &mut tls, &hello).await? {
                Message::Welcome { box_name } => {
                    welcomed = true;
                    report.status(&format!("connected to box {box_name} at {}", id.server));
                }
                Message::Refused { reason } => {
                    return Err(AgentError::Refused { server: id.server.clone(), reason });
                }
                other => return Err(protocol(&id.server, format!("answered hello with {}", other.name()))),
            }
            connected(&id.server, &mut tls).await
        };
        let ended = tokio::select! {
            r = attempt => r,
            () = &mut stop => return Ok(()),
        };
        if welcomed {
            // It was connected: a link that just failed is tried again at once, whatever the
            // outages before it grew the wait to.
            backoff = Duration::from_secs(1);
        }
        match ended {
            Err(e @ AgentError::Refused { .. }) => return Err(e),
            Err(e) => report.status(&format!("{e}; trying again in {} s", backoff.as_secs())),
            Ok(()) => report.status(&format!(
                "the box closed the connection; connecting again in {} s",
                backoff.as_secs()
            )),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The running backup: its job, its cancel, and where the box's `Judged` go (incremental).
type Running = (u64, Cancel, Option<std::sync::mpsc::Sender<Vec<u8>>>);

/// Connected and welcomed: pings, runs the backups the box asks for, until the link fails
/// (an error to retry), the box closes it (Ok) or refuses the agent (an error not to retry).
async fn connected<S: AsyncRead + AsyncWrite + Unpin>(server: &str, tls: &mut S) -> Result<(), AgentError> {
    let mut seq = 0u64;
    let mut last_heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frames = FrameReader::new();
    // Frames of the running backup, from its threads; bounded, so a slow link holds the reader.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(4);
    let mut running: Option<Running> = None;
    // The running restore's job and where its records go (None once it has them all).
    let mut restoring: Option<(u64, Option<mpsc::Sender<Message>>)> = None;
    let lost = |e: FrameError| unreachable(server, e.to_string());
    let ended = loop {
        tokio::select! {
            _ = ping.tick() => {
                // While a backup runs the box may not read for minutes (a tape being loaded):
                // the socket's keepalives and retransmission limit find a dead link then.
                if running.is_none() && restoring.is_none() && last_heard.elapsed() > ANSWER_LIMIT {
                    break Err(unreachable(server, format!("no answer for {} s", ANSWER_LIMIT.as_secs())));
                }
                seq += 1;
                if let Err(e) = write_message(tls, &Message::Ping { seq }).await {
                    break Err(lost(e));
                }
            }
            Some(m) = out_rx.recv() => {
                if matches!(m, Message::Done { .. }) {
                    running = None;
                }
                if let Err(e) = write_message(tls, &m).await {
                    break Err(lost(e));
                }
            }
            read = frames.next(tls) => {
                last_heard = tokio::time::Instant::now();
                match read {
                    Ok(Message::Pong { .. }) => {}
                    Ok(Message::Ping { seq }) => {
                        if let Err(e) = write_message(tls, &Message::Pong { seq }).await {
                            break Err(lost(e));
                        }
                    }
                    Ok(Message::Backup { job, root, prefix, first_seq, first_object, unit, one_file_system, incremental, compress }) => {
                        if running.is_some() {
                            break Err(protocol(server, "asked for a second backup while one runs".into()));
                        }
                        tracing::info!(target: "agent", "backup of {root} for job {job}");
                        let cancel = Cancel::default();
                        let asked = backup::Asked {
                            job,
                            root: root.into(),
                            prefix: (!prefix.is_empty()).then_some(prefix),
                            first_seq,
                            first_object,
                            unit: unit as usize,
                            one_file_system,
                            incremental,
                            compress,
                        };
                        match backup::start(asked, out_tx.clone(), cancel.clone()) {
                            Ok(judged) => running = Some((job, cancel, judged)),
                            Err(done) => {
                                if let Err(e) = write_message(tls, &done).await {
                                    break Err(lost(e));
                                }
                            }
                        }
                    }
                    Ok(Message::Restore { job, session, root, all, compare }) => {
                        if running.is_some() || restoring.is_some() {
                            break Err(protocol(server, "asked for a restore while busy".into()));
                        }
                        tracing::info!(target: "agent", "restore of session {session} into {root} for job {job}");
                        let (tx, rx) = mpsc::channel(4);
                        // Its frames go to the restore until the box's Finish, even when the
                        // restore has answered early.
                        match restore::start(job, root.into(), all, compare, rx, out_tx.clone()) {
                            Ok(()) => restoring = Some((job, Some(tx))),
                            Err(answer) => {
                                restoring = Some((job, None));
                                if let Err(e) = write_message(tls, &answer).await {
                                    break Err(lost(e));
                                }
                            }
                        }
                    }
                    Ok(m @ (Message::Objects { .. } | Message::Items { .. } | Message::Finish { .. })) => {
                        let Some((_, to)) = restoring.as_mut() else {
                            break Err(protocol(server, format!("sent {} with no restore running", m.name())));
                        };
                        let finish = matches!(m, Message::Finish { .. });
                        // A restore that stopped early drops what follows.
                        if let Some(tx) = to.as_ref() {
                            let _ = tx.send(m).await;
                        }
                        // The box's Finish ends the restore's frames; its answer may come
                        // before or after.
                        if finish {
                            restoring = None;
                        }
                    }
                    Ok(Message::Judged { job, skip }) => {
                        let Some(to) = running.as_ref().filter(|r| r.0 == job).and_then(|r| r.2.as_ref()) else {
                            break Err(protocol(server, format!("sent Judged for job {job}, which asked none")));
                        };
                        // The walk waiting for it may have stopped: nothing to answer then.
                        let _ = to.send(skip);
                    }
                    Ok(Message::Cancel { job }) => {
                        if let Some((_, cancel, _)) = running.as_ref().filter(|r| r.0 == job) {
                            tracing::info!(target: "agent", "the box cancelled job {job}");
                            cancel.cancel();
                        }
                    }
                    Ok(Message::Refused { reason }) => {
                        break Err(AgentError::Refused { server: server.to_owned(), reason });
                    }
                    Ok(other) => break Err(protocol(server, format!("sent {} to a connected agent", other.name()))),
                    Err(FrameError::Closed) => break Ok(()),
                    Err(e @ (FrameError::Io(_) | FrameError::Truncated)) => break Err(lost(e)),
                    Err(e) => break Err(protocol(server, e.to_string())),
                }
            }
        }
    };
    // A backup still running has lost its box: stop it.
    if let Some((_, cancel, _)) = running {
        cancel.cancel();
    }
    ended
}

/// TCP and TLS to `server`, within [`CONNECT_TIMEOUT`].
async fn connect(
    server: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, AgentError> {
    let work = async {
        let tcp = TcpStream::connect(server).await.map_err(|e| unreachable(server, e.to_string()))?;
        crate::net::tune(&tcp);
        let name = rustls::pki_types::ServerName::try_from(ca::SERVER_NAME).expect("a valid DNS name");
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(server, format!("TLS handshake failed: {e}")))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| unreachable(server, format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))?
}

/// Sends `m` and reads the box's answer within [`CONNECT_TIMEOUT`].
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    server: &str,
    tls: &mut S,
    m: &Message,
) -> Result<Message, AgentError> {
    write_message(tls, m).await.map_err(|e| unreachable(server, e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, read_message(tls)).await {
        Err(_) => Err(unreachable(server, format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(FrameError::Closed)) => Err(unreachable(server, "the box closed the connection".into())),
        Ok(Err(e @ (FrameError::Io(_) | FrameError::Truncated))) => Err(unreachable(server, e.to_string())),
        Ok(Err(e)) => Err(protocol(server, e.to_string())),
    }
}

fn unreachable(server: &str, why: String) -> AgentError {
    AgentError::Unreachable { server: server.to_owned(), why }
}

fn protocol(server: &str, why: String) -> AgentError {
    AgentError::Protocol { server: server.to_owned(), why }
}

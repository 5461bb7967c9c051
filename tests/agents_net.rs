//! Backup agents and the box over real TCP between network namespaces (tests/common/netns.rs):
//! the service runs in the box namespace listening on `[agents] listen`, each agent in its own
//! client namespace with its own address, so the box sees every agent come from where it
//! really is, and a link can be cut under a live connection.
//!
//! - three agents enrol and connect, and the box lists each from its own address; a used
//!   token is refused and the refusal logged with the peer's address;
//! - a revoked agent's connection is closed at once and `agent run` exits 3, now and on every
//!   start; added again, it enrols and connects anew and its old certificate is refused;
//! - an agent survives a cut link and a restarted box and reconnects on its own; a link cut
//!   for longer than the box's silence limit is noticed by both ends and survived too;
//! - hostile clients (garbage, bad frames, wrong tokens, another CA's certificate, another
//!   agent's name) are refused and logged, and a connected agent is not disturbed.
//!
//! The status (`/api/status`, `coffer status`) does not show agents yet, so it is not checked.
//!
//! Needs root: elsewhere these tests are skipped, and under CI they fail (`skip_unless_ci`).
//! Every wait is bounded by a guard against a hang, never an assertion on speed.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer::net::ca::{self, AgentIdentity, BoxCa};
use coffer::net::frame::{self, Decoder, MAX_PAYLOAD, Message};
use coffer::net::token;
use common::agents::{Proc, coffer_in, network, start_agent, wait_for};
use common::netns::{Net, in_ns};
use common::{Env, Run, run};
use serde_json::Value;

/// The port the box listens for agents on, in its own namespace (free in a fresh one).
const PORT: u16 = 8471;

/// The box's name, as agents are welcomed with it.
const BOX_NAME: &str = "netbox";

/// Bound on the service starting (READY=1) or stopping after SIGTERM.
const SERVICE_GUARD: Duration = Duration::from_secs(60);

/// Bound on an agent being listed connected after it was started.
const CONNECT_GUARD: Duration = Duration::from_secs(60);

/// Bound on `agent run` exiting once the box refuses it.
const EXIT_GUARD: Duration = Duration::from_secs(20);

/// Bound on an agent reconnecting by itself after a cut link and a restarted box: its
/// back-off is at most 30 s and it notices a dead connection after 45 to 60 s of silence.
const RECONNECT_GUARD: Duration = Duration::from_secs(150);

/// Bound on a raw client's connect, handshake and reads, and on a log line appearing.
const IO_GUARD: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Processes

/// The box: its world (state directory) and its running service in the box namespace.
struct TheBox {
    env: Env,
    board: PathBuf,
    ns: String,
    service: Option<Proc>,
}

impl TheBox {
    /// Writes the board (agents on 0.0.0.0:PORT) and starts the service in `net`'s box
    /// namespace.
    fn start(net: &Net) -> TheBox {
        let env = Env::new();
        let board = env.path("board.toml");
        fs::write(&board, format!("name = \"{BOX_NAME}\"\n[agents]\nlisten = \"0.0.0.0:{PORT}\"\n")).unwrap();
        let mut b = TheBox { env, board, ns: net.box_ns().to_owned(), service: None };
        b.serve();
        b
    }

    /// Starts `coffer serve` and waits for READY=1 (the agent listener is bound before it).
    fn serve(&mut self) {
        assert!(self.service.is_none(), "the service runs already");
        let sock_path = self.env.path("notify.sock");
        let _ = fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let board = self.board.to_str().unwrap().to_owned();
        let mut cmd = coffer_in(&self.ns, &self.env.state, &["--board", &board, "serve"]);
        cmd.env("NOTIFY_SOCKET", &sock_path);
        let mut p = Proc::spawn("coffer serve (the box)", cmd);
        let deadline = Instant::now() + SERVICE_GUARD;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1")
            {
                break;
            }
            if let Some(code) = p.exited() {
                panic!("the service exited with status {code} before READY=1\n{}", p.output());
            }
            assert!(Instant::now() < deadline, "no READY=1 within {SERVICE_GUARD:?}\n{}", p.output());
        }
        // Later notifications find no socket and are dropped; the service does not mind.
        drop(sock);
        let _ = fs::remove_file(&sock_path);
        self.service = Some(p);
    }

    /// SIGTERM to the service; waits for it to end, successfully.
    fn stop(&mut self) {
        let mut p = self.service.take().expect("the service runs");
        common::terminate(&p.child);
        let code = p.wait_exit(SERVICE_GUARD);
        assert_eq!(code, 0, "the service ended badly after SIGTERM\n{}", p.output());
    }

    /// The service's log (its standard error) so far.
    fn log(&self) -> String {
        self.service.as_ref().map_or_else(String::new, Proc::stderr)
    }

    /// `coffer --state BOX --json ARGS...`, run through the service's control socket (from the
    /// test's own namespace: the socket is a file).
    fn coffer(&self, args: &[&str]) -> Run {
        self.env.coffer_json(args)
    }

    /// `agent add NAME --paths /srv`: the token and the fingerprint to enrol with.
    #[track_caller]
    fn add(&self, name: &str) -> (String, String) {
        let r = self.coffer(&["agent", "add", name, "--paths", "/srv"]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(j["agent"], name, "{r}");
        assert_eq!(j["paths"], serde_json::json!(["/srv"]), "{r}");
        assert_eq!(j["listen"], format!("0.0.0.0:{PORT}"), "{r}");
        let token = j["token"].as_str().expect("a token").to_owned();
        let fingerprint = j["fingerprint"].as_str().expect("a fingerprint").to_owned();
        (token, fingerprint)
    }

    /// `agent list --json`, by name.
    #[track_caller]
    fn agents(&self) -> serde_json::Map<String, Value> {
        let r = self.coffer(&["agent", "list"]);
        r.expect_code(0);
        r.json()
            .as_array()
            .unwrap_or_else(|| panic!("agent list is not an array: {r}"))
            .iter()
            .map(|a| (a["agent"].as_str().expect("agent name").to_owned(), a.clone()))
            .collect()
    }

    /// `agent show NAME --json`.
    #[track_caller]
    fn show(&self, name: &str) -> Value {
        let r = self.coffer(&["agent", "show", name]);
        r.expect_code(0);
        r.json()
    }

    /// Waits until `agent list` shows `name` connected from `from` (any port) and, when given,
    /// not the connection `not` any more; returns its `connected` object.
    #[track_caller]
    fn wait_connected(&self, name: &str, from: Ipv4Addr, not: Option<&Value>, guard: Duration) -> Value {
        wait_for(
            guard,
            &format!("agent {name} listed connected from {from}"),
            || {
                let c = self.agents().get(name)?["connected"].clone();
                let ip = c["address"].as_str()?.parse::<SocketAddr>().ok()?.ip();
                (ip == from && Some(&c) != not).then_some(c)
            },
            || format!("agent list: {:?}\n--- box log\n{}", self.agents(), self.log()),
        )
    }

    /// Waits until the log has a line saying a connection from `peer` was refused, containing
    /// `why`; returns the line.
    #[track_caller]
    fn wait_refusal(&self, peer: &str, why: &str) -> String {
        let head = format!("agent connection from {peer}");
        wait_for(
            IO_GUARD,
            &format!("a log line \"{head}… refused: …{why}…\""),
            || {
                self.log()
                    .lines()
                    .find(|l| l.contains(&head) && l.contains(" refused: ") && l.contains(why))
                    .map(str::to_owned)
            },
            || format!("--- box log\n{}", self.log()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

/// `agent enroll` in client `k`'s namespace with state `state`, against the box's address on
/// `k`'s link.
fn enroll(net: &Net, k: usize, state: &Path, token: &str, fingerprint: &str) -> Run {
    let server = format!("{}:{PORT}", net.box_addr(k));
    let args = ["agent", "enroll", "--server", &server, "--token", token, "--fingerprint", fingerprint];
    run(coffer_in(net.client_ns(k), state, &args))
}

/// Enrols and checks it went well: the agent's identity is in `state/agent`, its key 0600.
#[track_caller]
fn enroll_ok(net: &Net, k: usize, state: &Path, name: &str, token: &str, fingerprint: &str) {
    let r = enroll(net, k, state, token, fingerprint);
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("enrolled as agent {name}")), "{r}");
    let dir = state.join("agent");
    let key_mode = fs::metadata(dir.join("agent.key")).expect("agent.key").permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "agent.key of {name}");
    let dir_mode = fs::metadata(&dir).expect("agent dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode & 0o077, 0, "the agent directory of {name} is open to others: {dir_mode:03o}");
    let id = AgentIdentity::load(&dir).unwrap_or_else(|e| panic!("{name}'s identity: {e}"));
    assert_eq!(id.name, name);
    assert_eq!(id.server, format!("{}:{PORT}", net.box_addr(k)));
}

/// How many times an agent's log says it was welcomed by the box.
fn welcomes(agent: &Proc) -> usize {
    let line = format!("connected to box {BOX_NAME} at ");
    agent.stderr().lines().filter(|l| l.contains(&line)).count()
}

// ---------------------------------------------------------------------------------------------
// Raw clients

/// What a raw client got from the box.
#[derive(Debug)]
struct Answer {
    /// The client's address, as the box saw it.
    local: SocketAddr,
    /// The handshake's error, if it failed.
    handshake: Option<String>,
    /// The messages the box sent.
    messages: Vec<Message>,
    /// How the connection ended: "closed", or the error reading ended with.
    ended: String,
}

impl Answer {
    /// The reason of the one `Refused` the box sent; panics when it sent anything else.
    #[track_caller]
    fn refused(&self) -> &str {
        match self.messages.as_slice() {
            // Said, then closed in order (close_notify): nothing cut short.
            [Message::Refused { reason }] if self.ended == "closed" => reason,
            _ => panic!("expected one Refused from the box, then the connection closed: {self:?}"),
        }
    }

    /// The address as the box's log writes it.
    fn peer(&self) -> String {
        self.local.to_string()
    }
}

/// A TCP connection to `to` from inside namespace `ns`.
fn tcp_from(ns: &str, to: SocketAddr) -> TcpStream {
    let s = in_ns(ns, move || TcpStream::connect_timeout(&to, IO_GUARD))
        .unwrap_or_else(|e| panic!("connect to {to} from {ns}: {e}"));
    s.set_read_timeout(Some(IO_GUARD)).unwrap();
    s.set_write_timeout(Some(IO_GUARD)).unwrap();
    s
}

/// Reads until the box closes the connection; returns the bytes and how it ended. A read
/// that times out means the box kept a connection it should have closed.
#[track_caller]
fn read_to_close(r: &mut impl Read, what: &str) -> (Vec<u8>, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (got, "closed".to_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "{what}: the box did not close the connection within {IO_GUARD:?} (got {} bytes)",
                    got.len()
                )
            }
            Err(e) => return (got, e.to_string()),
        }
    }
}

/// Plain TCP from `ns` to `to`: sends `bytes`, reads until the box closes.
fn plain_exchange(ns: &str, to: SocketAddr, bytes: &[u8]) -> (SocketAddr, String) {
    let mut s = tcp_from(ns, to);
    let local = s.local_addr().unwrap();
    let _ = s.write_all(bytes);
    let (_, ended) = read_to_close(&mut s, "plain TCP garbage");
    (local, ended)
}

/// TLS from `ns` to `to` with `config`: completes the handshake, sends `bytes` (one or more
/// frames, or not), and reads what the box answers until it closes.
fn tls_exchange(ns: &str, to: SocketAddr, config: Arc<rustls::ClientConfig>, bytes: &[u8]) -> Answer {
    let tcp = tcp_from(ns, to);
    let local = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from(ca::SERVER_NAME).expect("a DNS name");
    let conn = rustls::ClientConnection::new(config, name).expect("a client connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut handshake = None;
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "no TLS handshake with the box within {IO_GUARD:?}"
            );
            handshake = Some(e.to_string());
            break;
        }
    }
    if handshake.is_some() {
        return Answer { local, handshake, messages: Vec::new(), ended: "handshake failed".to_owned() };
    }
    // The box may have closed already (it refused the certificate): what it said still comes.
    let _ = tls.write_all(bytes).and_then(|()| tls.flush());
    let (got, ended) = read_to_close(&mut tls, "a TLS client");
    let mut d = Decoder::new();
    d.push(&got).expect("the box's answer fits the decoder");
    let mut messages = Vec::new();
    while let Some(m) = d.next().unwrap_or_else(|e| panic!("the box sent a bad frame: {e}")) {
        messages.push(m);
    }
    assert_eq!(d.buffered(), 0, "the box's last frame was cut short: {messages:?}");
    Answer { local, handshake, messages, ended }
}

fn encode(m: &Message) -> Vec<u8> {
    frame::encode(m).expect("a valid message")
}

fn enroll_frame(name: &str, token: &str) -> Vec<u8> {
    let (_, csr_der) = ca::new_agent_key(name).expect("a key and CSR");
    encode(&Message::Enroll { name: name.to_owned(), token: token.to_owned(), csr_der })
}

fn hello_frame(name: &str) -> Vec<u8> {
    encode(&Message::Hello { name: name.to_owned(), version: env!("CARGO_PKG_VERSION").to_owned() })
}

/// The mutual-TLS config of the identity enrolled in `state`.
fn identity_config(state: &Path) -> Arc<rustls::ClientConfig> {
    let id = AgentIdentity::load(&state.join("agent")).expect("an enrolled identity");
    ca::agent_config(&id.fingerprint, &id.key_pem, &id.cert_der).expect("an agent config")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn three_agents_enrol_connect_and_are_listed() {
    let Some(net) = network(3) else { return };
    let mut the_box = TheBox::start(&net);
    let names = ["c0", "c1", "c2"];
    let mut tokens = Vec::new();
    let mut states = Vec::new();
    let mut agents = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let (token, fingerprint) = the_box.add(name);
        let state = the_box.env.path(&format!("client-{k}"));
        enroll_ok(&net, k, &state, name, &token, &fingerprint);
        tokens.push((token, fingerprint));
        states.push(state);
    }
    for (k, name) in names.iter().enumerate() {
        agents.push(start_agent(&net, k, &states[k], name));
    }
    let mut connected = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let c = the_box.wait_connected(name, net.client_addr(k), None, CONNECT_GUARD);
        assert_eq!(c["version"], env!("CARGO_PKG_VERSION"), "{c}");
        assert!(c["since"].as_u64().is_some_and(|s| s > 0), "{c}");
        connected.push(c);
    }
    let list = the_box.agents();
    assert_eq!(list.len(), 3, "{list:?}");
    for (k, name) in names.iter().enumerate() {
        let a = &list[*name];
        assert_eq!(a["state"], "enrolled", "{a}");
        assert_eq!(a["paths"], serde_json::json!(["/srv"]), "{a}");
        let addr: SocketAddr = a["connected"]["address"].as_str().unwrap().parse().unwrap();
        assert_eq!(addr.ip(), net.client_addr(k), "{a}");
        agents[k].assert_running();
        assert_eq!(welcomes(&agents[k]), 1, "{}", agents[k].output());
    }
    let c1 = the_box.show("c1");
    assert_eq!(c1["agent"], "c1");
    assert_eq!(c1["state"], "enrolled", "{c1}");
    assert!(c1["enrolled"].as_u64().is_some(), "{c1}");
    assert!(c1["token_expires"].is_null(), "{c1}");
    assert!(c1["revoked"].is_null(), "{c1}");
    assert!(c1["certificate_sha256"].as_str().is_some_and(|h| h.len() == 64), "{c1}");
    assert_eq!(c1["connected"], connected[1], "{c1}");

    // c0's token again, from c0 into c0's own state: refused, and its identity untouched.
    let key = states[0].join("agent/agent.key");
    let key_before = fs::read(&key).unwrap();
    let (token, fingerprint) = &tokens[0];
    let again = enroll(&net, 0, &states[0], token, fingerprint);
    again.expect_code(2);
    assert!(again.stderr.contains("the token is not agent c0's, or was used already"), "{again}");
    assert_eq!(fs::read(&key).unwrap(), key_before, "a refused enrolment replaced c0's key");
    let line = the_box.wait_refusal(
        &format!("{}:", net.client_addr(0)),
        "the token is not agent c0's, or was used already",
    );
    assert!(line.contains("WARN"), "{line}");
    // Nobody was disturbed.
    let list = the_box.agents();
    for (k, name) in names.iter().enumerate() {
        assert_eq!(list[*name]["connected"], connected[k], "{name}: {list:?}");
        assert_eq!(list[*name]["state"], "enrolled");
        agents[k].assert_running();
    }
    // The service stops cleanly with agents connected.
    the_box.stop();
    drop(agents);
}

#[test]
fn a_revoked_agent_is_refused_at_once() {
    let Some(net) = network(1) else { return };
    let mut the_box = TheBox::start(&net);
    let state = the_box.env.path("client-0");
    let (token, fingerprint) = the_box.add("c0");
    enroll_ok(&net, 0, &state, "c0", &token, &fingerprint);
    let first_cert = the_box.show("c0")["certificate_sha256"].clone();
    // A copy of this identity, for after the agent is enrolled again.
    let old_state = the_box.env.path("client-0-old");
    fs::create_dir_all(old_state.join("agent")).unwrap();
    fs::set_permissions(old_state.join("agent"), fs::Permissions::from_mode(0o700)).unwrap();
    for f in ["agent.key", "agent.pem", "box.json"] {
        fs::copy(state.join("agent").join(f), old_state.join("agent").join(f)).unwrap();
    }
    let mut agent = start_agent(&net, 0, &state, "c0");
    the_box.wait_connected("c0", net.client_addr(0), None, CONNECT_GUARD);

    let r = the_box.coffer(&["agent", "revoke", "c0"]);
    r.expect_code(0);
    assert_eq!(r.json()["state"], "revoked", "{r}");
    assert_eq!(r.json()["disconnected"], true, "{r}");
    let code = agent.wait_exit(EXIT_GUARD);
    assert_eq!(code, 3, "agent run after its revocation\n{}", agent.output());
    let err = agent.stderr();
    assert!(err.contains("refused this agent") && err.contains("revoked"), "{}", agent.output());
    let a = &the_box.agents()["c0"];
    assert_eq!(a["state"], "revoked", "{a}");
    assert!(a["connected"].is_null(), "{a}");
    assert!(a["revoked"].as_u64().is_some(), "{a}");

    // Started again it is refused at once, and says so.
    let mut again = start_agent(&net, 0, &state, "c0");
    let code = again.wait_exit(EXIT_GUARD);
    assert_eq!(code, 3, "agent run of a revoked agent\n{}", again.output());
    assert!(again.stderr().contains("refused this agent: agent c0 is revoked"), "{}", again.output());
    assert_eq!(welcomes(&again), 0, "{}", again.output());
    the_box.wait_refusal(&format!("{}:", net.client_addr(0)), "agent c0 is revoked");
    assert!(the_box.agents()["c0"]["connected"].is_null());

    // Added again: a new token, which enrols again (replacing the identity) and connects.
    let (token2, fingerprint2) = the_box.add("c0");
    assert_ne!(token2, token);
    assert_eq!(fingerprint2, fingerprint, "the box's fingerprint changed");
    assert_eq!(the_box.show("c0")["state"], "pending");
    enroll_ok(&net, 0, &state, "c0", &token2, &fingerprint2);
    let shown = the_box.show("c0");
    assert_eq!(shown["state"], "enrolled", "{shown}");
    assert!(shown["revoked"].is_null(), "{shown}");
    assert_ne!(shown["certificate_sha256"], first_cert, "{shown}");
    let mut renewed = start_agent(&net, 0, &state, "c0");
    let c = the_box.wait_connected("c0", net.client_addr(0), None, CONNECT_GUARD);

    // The certificate from before the revocation is refused, and the agent stays connected.
    let mut old = start_agent(&net, 0, &old_state, "c0 (old certificate)");
    let code = old.wait_exit(EXIT_GUARD);
    assert_eq!(code, 3, "agent run with a certificate signed before the revocation\n{}", old.output());
    assert!(old.stderr().contains("enrolled again since this certificate was signed"), "{}", old.output());
    renewed.assert_running();
    assert_eq!(the_box.agents()["c0"]["connected"], c);
    the_box.stop();
}

#[test]
fn a_cut_link_and_a_restarted_box_are_survived() {
    let Some(net) = network(1) else { return };
    let mut the_box = TheBox::start(&net);
    let state = the_box.env.path("client-0");
    let (token, fingerprint) = the_box.add("c0");
    enroll_ok(&net, 0, &state, "c0", &token, &fingerprint);
    let mut agent = start_agent(&net, 0, &state, "c0");
    let before = the_box.wait_connected("c0", net.client_addr(0), None, CONNECT_GUARD);
    let pid = agent.child.id();

    net.set_link(0, false);
    the_box.stop();
    the_box.serve();
    // The new service knows the agent, and does not have it.
    let a = &the_box.agents()["c0"];
    assert_eq!(a["state"], "enrolled", "{a}");
    assert!(a["connected"].is_null(), "{a}");
    net.set_link(0, true);

    let after = the_box.wait_connected("c0", net.client_addr(0), Some(&before), RECONNECT_GUARD);
    agent.assert_running();
    assert_eq!(agent.child.id(), pid);
    assert!(after["since"].as_u64() >= before["since"].as_u64(), "{before} then {after}");
    assert_eq!(welcomes(&agent), 2, "{}", agent.output());
    let log = the_box.log();
    assert!(log.contains(&format!("agent c0 connected from {}:", net.client_addr(0))), "{log}");
    the_box.stop();
}

#[test]
fn a_link_cut_for_longer_than_the_silence_limit_is_survived() {
    let Some(net) = network(1) else { return };
    let mut the_box = TheBox::start(&net);
    let state = the_box.env.path("client-0");
    let (token, fingerprint) = the_box.add("c0");
    enroll_ok(&net, 0, &state, "c0", &token, &fingerprint);
    let mut agent = start_agent(&net, 0, &state, "c0");
    let before = the_box.wait_connected("c0", net.client_addr(0), None, CONNECT_GUARD);

    // Cut, the box hears no pings: it closes the connection after its silence limit (60 s
    // after the last ping, at most 15 s before the cut) and no longer lists the agent.
    net.set_link(0, false);
    wait_for(
        RECONNECT_GUARD,
        "the box drops the silent agent",
        || the_box.agents()["c0"]["connected"].is_null().then_some(()),
        || format!("--- box log\n{}", the_box.log()),
    );
    let peer = before["address"].as_str().unwrap();
    the_box.wait_refusal(peer, "agent c0: silent for 60 s");
    agent.assert_running();

    // Back: the agent reconnects by itself.
    net.set_link(0, true);
    the_box.wait_connected("c0", net.client_addr(0), Some(&before), RECONNECT_GUARD);
    agent.assert_running();
    assert_eq!(welcomes(&agent), 2, "{}", agent.output());
    the_box.stop();
}

#[test]
fn hostile_clients_are_refused_and_do_not_disturb_others() {
    let Some(net) = network(2) else { return };
    let mut the_box = TheBox::start(&net);
    // The good agent, on client 0.
    let (token, fingerprint) = the_box.add("good");
    let good_state = the_box.env.path("client-0");
    enroll_ok(&net, 0, &good_state, "good", &token, &fingerprint);
    let mut good = start_agent(&net, 0, &good_state, "good");
    let connected = the_box.wait_connected("good", net.client_addr(0), None, CONNECT_GUARD);
    // On client 1: an enrolled agent that does not run, and two pending ones.
    let spare_state = the_box.env.path("client-1-spare");
    let (spare_token, _) = the_box.add("spare");
    enroll_ok(&net, 1, &spare_state, "spare", &spare_token, &fingerprint);
    let (pend_token, _) = the_box.add("pend");
    let (other_token, _) = the_box.add("other");

    let ns = net.client_ns(1).to_owned();
    let to = SocketAddr::from((net.box_addr(1), PORT));
    let enrolling = || ca::enroll_config(&fingerprint).expect("an enrolment config");

    // (a) Not TLS at all.
    let mut garbage = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    garbage.extend_from_slice(&common::random_bytes(1, 4096));
    let (local, ended) = plain_exchange(&ns, to, &garbage);
    // Closed, or reset for the garbage it never read.
    assert!(ended == "closed" || ended.contains("reset"), "garbage: the connection ended: {ended}");
    the_box.wait_refusal(&local.to_string(), "TLS handshake failed");

    // (b) A frame of another protocol version: version 1, an agent of before incremental
    // backups.
    let mut frame = encode(&Message::Ping { seq: 1 });
    frame[4] = 1;
    let a = tls_exchange(&ns, to, enrolling(), &frame);
    assert!(a.refused().contains("protocol version 1"), "{a:?}");
    the_box.wait_refusal(&a.peer(), "bad frame: peer speaks agent protocol version 1");

    // (c) A length over the limit: refused from the header alone.
    let mut header = encode(&Message::Ping { seq: 1 })[..frame::HEADER_LEN].to_vec();
    header[5] = frame::kind::ENROLL;
    header[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
    let a = tls_exchange(&ns, to, enrolling(), &header);
    assert!(a.refused().contains("over the limit"), "{a:?}");
    the_box.wait_refusal(&a.peer(), &format!("frame of {} payload bytes is over the limit", MAX_PAYLOAD + 1));

    // (d) Enrolments with a wrong token: another agent's, a made-up one; an unknown agent.
    let wrong = "the token is not agent pend's, or was used already";
    for (what, t) in
        [("another agent's token", other_token.clone()), ("a made-up token", token::make("pend").unwrap())]
    {
        let a = tls_exchange(&ns, to, enrolling(), &enroll_frame("pend", &t));
        assert_eq!(a.refused(), wrong, "{what}: {a:?}");
        the_box.wait_refusal(&a.peer(), wrong);
    }
    let a = tls_exchange(&ns, to, enrolling(), &enroll_frame("ghost", &token::make("ghost").unwrap()));
    assert_eq!(a.refused(), "no agent ghost on this box", "{a:?}");
    the_box.wait_refusal(&a.peer(), "no agent ghost on this box");
    // A used token, sent by hand.
    let a = tls_exchange(&ns, to, enrolling(), &enroll_frame("spare", &spare_token));
    assert_eq!(a.refused(), "the token is not agent spare's, or was used already", "{a:?}");

    // Hello without a certificate; Enroll with one.
    let a = tls_exchange(&ns, to, enrolling(), &hello_frame("good"));
    assert!(a.refused().contains("no client certificate"), "{a:?}");
    the_box.wait_refusal(&a.peer(), "no client certificate");
    let a = tls_exchange(&ns, to, identity_config(&spare_state), &enroll_frame("spare", &other_token));
    assert!(a.refused().contains("an enrolled agent does not enrol again"), "{a:?}");
    the_box.wait_refusal(&a.peer(), "an enrolled agent does not enrol again");

    // (e) A certificate for "good" from another CA: the handshake (or what follows) fails.
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue = BoxCa::load_or_create(rogue_dir.path(), "rogue").expect("a second CA");
    let (key_pem, csr) = ca::new_agent_key("good").unwrap();
    let cert = rogue.issue("good", &csr).expect("a rogue certificate");
    let config = ca::agent_config(&fingerprint, &key_pem, &cert).unwrap();
    let a = tls_exchange(&ns, to, config, &hello_frame("good"));
    assert!(!a.messages.iter().any(|m| matches!(m, Message::Welcome { .. })), "{a:?}");
    assert!(a.messages.is_empty(), "no frame can come after a refused handshake: {a:?}");
    // With TLS 1.3 the client finishes its side first and hears the box's alert after.
    assert!(a.handshake.is_some() || a.ended.contains("alert"), "{a:?}");
    the_box.wait_refusal(&a.peer(), "TLS handshake failed");

    // (f) An enrolled agent's real certificate, with another agent's name (both ways).
    let a = tls_exchange(&ns, to, identity_config(&spare_state), &hello_frame("good"));
    let why = "says it is \"good\" but its certificate is \"spare\"'s";
    assert_eq!(a.refused(), why, "{a:?}");
    the_box.wait_refusal(&a.peer(), why);
    let a = tls_exchange(&ns, to, identity_config(&good_state), &hello_frame("spare"));
    let why = "says it is \"spare\" but its certificate is \"good\"'s";
    assert_eq!(a.refused(), why, "{a:?}");
    the_box.wait_refusal(&a.peer(), why);

    // None of it disturbed the good agent: the same connection, never dropped.
    good.assert_running();
    assert_eq!(welcomes(&good), 1, "{}", good.output());
    let list = the_box.agents();
    assert_eq!(list["good"]["connected"], connected, "{list:?}");
    assert!(list["spare"]["connected"].is_null(), "{list:?}");
    assert_eq!(list["spare"]["state"], "enrolled");
    assert!(!list.contains_key("ghost"), "{list:?}");
    // The wrong tokens did not use pend's: it still enrols.
    assert_eq!(list["pend"]["state"], "pending");
    enroll_ok(&net, 1, &the_box.env.path("client-1-pend"), "pend", &pend_token, &fingerprint);
    assert_eq!(the_box.show("pend")["state"], "enrolled");
    assert_eq!(the_box.show("good")["connected"], connected);
    the_box.stop();
}

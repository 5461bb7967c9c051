//! The network-namespace harness (tests/common/netns.rs) proves itself before agent tests rely
//! on it: real TCP from a client namespace to the box, clients isolated from each other, a cut
//! link that refuses connections and comes back, nothing left behind when a network drops, and
//! the namespaces of a dead run swept away.
//!
//! Needs root: elsewhere these tests are skipped, and under CI they fail (`skip_unless_ci`).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::{Net, command_in, in_ns, netns_available};
use common::{run, skip_unless_ci};

/// How long a connect may try. Every connect the tests expect to fail fails at once (no
/// route); this only bounds the wait should one hang instead.
const CONNECT_GUARD: Duration = Duration::from_secs(2);

/// Bound on waiting for a connection to arrive or bytes to come back: a guard against a hang,
/// not an assertion on speed.
const IO_GUARD: Duration = Duration::from_secs(10);

/// A network of `clients` clients, or `None` (after `skip_unless_ci`) when this machine cannot
/// make one.
fn network(clients: usize) -> Option<Net> {
    if let Err(why) = netns_available() {
        skip_unless_ci(&format!("cannot make network namespaces: {why}"));
        return None;
    }
    Some(Net::new(clients).unwrap_or_else(|e| panic!("building a network of {clients} clients: {e}")))
}

/// A listener on `addr` (any port) inside namespace `ns`; it stays there whatever thread
/// accepts on it.
fn listen(ns: &str, addr: Ipv4Addr) -> TcpListener {
    in_ns(ns, move || TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("bind {addr}:0: {e}")))
}

/// A connection to `to` made from inside namespace `ns`.
fn connect_from(ns: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    in_ns(ns, move || TcpStream::connect_timeout(&to, CONNECT_GUARD))
}

/// The next connection to `listener`, waiting at most [`IO_GUARD`].
#[track_caller]
fn accept_within(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + IO_GUARD;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking stream");
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection to {:?} within {IO_GUARD:?}: {e}", listener.local_addr()),
        }
    }
}

/// Whether a connection is waiting on `listener` (without waiting for one).
fn pending(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).expect("nonblocking listener");
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

/// Sends a line each way over a connection and checks both arrive whole.
#[track_caller]
fn exchange(client: &mut TcpStream, server: &mut TcpStream, what: &str) {
    for s in [&*client, &*server] {
        s.set_read_timeout(Some(IO_GUARD)).expect("read timeout");
    }
    let hello = format!("hello from {what}\n");
    client.write_all(hello.as_bytes()).expect("client writes");
    let mut got = vec![0u8; hello.len()];
    server.read_exact(&mut got).expect("server reads");
    assert_eq!(got, hello.as_bytes(), "{what}: the box got other bytes");
    let reply = format!("box answers {what}\n");
    server.write_all(reply.as_bytes()).expect("server writes");
    let mut got = vec![0u8; reply.len()];
    client.read_exact(&mut got).expect("client reads");
    assert_eq!(got, reply.as_bytes(), "{what}: the client got other bytes");
}

/// The names `ip netns list` shows.
fn listed() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    assert!(out.status.success(), "ip netns list: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn clients_reach_the_box_not_each_other_and_a_cut_link_comes_back() {
    let Some(net) = network(2) else { return };
    let (box_ns, c0, c1) =
        (net.box_ns().to_owned(), net.client_ns(0).to_owned(), net.client_ns(1).to_owned());
    assert_eq!(net.clients(), 2);

    // Client 0 reaches the box at the box's address on its link, and the box sees it come from
    // client 0's address.
    let server = listen(&box_ns, net.box_addr(0));
    let box_at = server.local_addr().expect("listener address");
    assert_eq!(box_at.ip(), net.box_addr(0));
    let mut client = connect_from(&c0, box_at)
        .unwrap_or_else(|e| panic!("client 0 cannot reach the box at {box_at}: {e}"));
    let mut accepted = accept_within(&server);
    assert_eq!(accepted.peer_addr().expect("peer").ip(), net.client_addr(0));
    exchange(&mut client, &mut accepted, "client 0");

    // Client 1 is not reachable from client 0, though it listens and the box reaches it: the
    // failure is the isolation, not an absent listener.
    let c1_server = listen(&c1, net.client_addr(1));
    let c1_at = c1_server.local_addr().expect("listener address");
    let mut from_box =
        connect_from(&box_ns, c1_at).unwrap_or_else(|e| panic!("box cannot reach client 1: {e}"));
    let mut at_c1 = accept_within(&c1_server);
    exchange(&mut from_box, &mut at_c1, "the box to client 1");
    let err = connect_from(&c0, c1_at).expect_err("client 0 reached client 1");
    eprintln!("client 0 -> client 1 ({c1_at}): {err}");
    assert!(!pending(&c1_server), "a connection from client 0 arrived at client 1");
    // Nor does client 0 have a route to the box's address on client 1's link.
    let box_on_c1 = SocketAddr::from((net.box_addr(1), box_at.port()));
    connect_from(&c0, box_on_c1).expect_err("client 0 reached the box's address on client 1's link");

    // Cut client 0 off: it can no longer connect, while client 1 still can.
    net.set_link(0, false);
    let err = connect_from(&c0, box_at).expect_err("client 0 connected over a cut link");
    eprintln!("client 0 -> box over a cut link: {err}");
    assert!(!pending(&server), "a connection arrived over a cut link");
    let c1_box = listen(&box_ns, net.box_addr(1));
    let c1_box_at = c1_box.local_addr().expect("listener address");
    let mut c1_client = connect_from(&c1, c1_box_at).expect("client 1 reaches the box while client 0 is cut");
    let mut c1_accepted = accept_within(&c1_box);
    exchange(&mut c1_client, &mut c1_accepted, "client 1 while client 0 is cut");

    // Restore it: the same listener takes a new connection.
    net.set_link(0, true);
    let mut client =
        connect_from(&c0, box_at).unwrap_or_else(|e| panic!("client 0 after the link came back: {e}"));
    let mut accepted = accept_within(&server);
    exchange(&mut client, &mut accepted, "client 0 after the link came back");

    // Dropping the network deletes its namespaces. (The sockets above still hold them alive
    // but nameless until they close; the names are what must be gone.)
    let names = [box_ns, c0, c1];
    assert!(names.iter().all(|n| listed().contains(n)), "namespaces not listed: {names:?}");
    drop(net);
    let left = listed();
    for n in &names {
        assert!(!left.contains(n), "{n} still listed after the network dropped: {left:?}");
        assert!(!std::path::Path::new(&format!("/var/run/netns/{n}")).exists(), "{n} still mounted");
    }
}

#[test]
fn every_namespace_has_loopback_and_only_its_own_addresses() {
    let Some(net) = network(2) else { return };
    let all = [net.box_ns(), net.client_ns(0), net.client_ns(1)];
    for ns in all {
        let server = listen(ns, Ipv4Addr::LOCALHOST);
        let at = server.local_addr().expect("listener address");
        let mut client = connect_from(ns, at).unwrap_or_else(|e| panic!("{ns}: loopback: {e}"));
        let mut accepted = accept_within(&server);
        exchange(&mut client, &mut accepted, &format!("loopback in {ns}"));
    }

    // A process started with command_in sees the namespace's addresses and no others.
    let addrs = |ns: &str| {
        let r = run(command_in(ns, "ip", ["-o", "-4", "addr", "show"]));
        r.expect_code(0);
        r.stdout
    };
    let on_box = addrs(net.box_ns());
    for want in ["127.0.0.1/8", "10.77.0.1/30", "10.77.1.1/30"] {
        assert!(on_box.contains(want), "box lacks {want}:\n{on_box}");
    }
    let on_c0 = addrs(net.client_ns(0));
    assert!(on_c0.contains("10.77.0.2/30"), "client 0 lacks its address:\n{on_c0}");
    assert!(!on_c0.contains("10.77.1."), "client 0 has client 1's subnet:\n{on_c0}");
    let on_c1 = addrs(net.client_ns(1));
    assert!(on_c1.contains("10.77.1.2/30"), "client 1 lacks its address:\n{on_c1}");
    assert!(!on_c1.contains("10.77.0."), "client 1 has client 0's subnet:\n{on_c1}");
}

#[test]
fn a_dead_runs_namespaces_are_swept_and_a_live_ones_kept() {
    let Some(live) = network(1) else { return };
    // No process has this pid (above any pid_max), so whoever made it is gone. Our own pid in
    // the name keeps parallel runs of this test from sharing it.
    let stale = format!("{}4294967295-{}-box", common::netns::PREFIX, std::process::id());
    let out = Command::new("ip").args(["netns", "add", &stale]).output().expect("ip netns add");
    assert!(out.status.success(), "ip netns add {stale}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(listed().contains(&stale));

    let other = Net::new(1).expect("a second network");
    let left = listed();
    assert!(!left.contains(&stale), "{stale} of a dead run survived Net::new: {left:?}");
    for ns in [live.box_ns(), live.client_ns(0), other.box_ns(), other.client_ns(0)] {
        assert!(left.contains(&ns.to_owned()), "live namespace {ns} gone: {left:?}");
    }
}

#[test]
fn too_many_clients_is_an_error() {
    // Checked before anything is made, so it needs no root.
    let err = Net::new(257).expect_err("257 clients do not fit 10.77.K.0/30");
    assert!(err.contains("257"), "{err}");
}

//! Real TCP between Linux network namespaces, for the tests of the box and its backup agents.
//!
//! Agents talk to the box over TCP. Loopback would hide what matters there: distinct
//! addresses per client, clients that cannot see each other, and a link that goes away under
//! a live connection. So each test builds its own small network with iproute2's `ip`:
//!
//! ```text
//!               box namespace
//!    veth-c0 10.77.0.1/30   veth-c1 10.77.1.1/30  ...
//!         |                      |
//!    veth-box 10.77.0.2/30  veth-box 10.77.1.2/30
//!     client 0 namespace     client 1 namespace   ...
//! ```
//!
//! Every client has its own veth pair to the box and no route anywhere else; the box does not
//! forward (a new namespace starts with forwarding off), so clients are isolated from each other
//! as agents on separate machines would be. Code runs in a namespace either as a process
//! ([`command_in`]) or on a thread of the test ([`in_ns`]).
//!
//! Needs root (and a kernel with network namespaces and veth): tests call
//! [`netns_available`] first and `skip_unless_ci` when it fails.

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Every namespace this module makes is named `coffer-t-<pid>-...`: the prefix marks it as a
/// test's and the pid says whose, so a later run can remove what a killed run left behind.
pub const PREFIX: &str = "coffer-t-";

/// The client's end of its veth pair, in the client namespace (each client namespace has one,
/// so the name can be the same in all of them).
pub const CLIENT_LINK: &str = "veth-box";

/// Where `ip netns add` keeps the namespaces it names (a bind mount per namespace).
const NETNS_DIR: &str = "/var/run/netns";

/// Clients per network: client K uses the subnet 10.77.K.0/30.
const MAX_CLIENTS: usize = 256;

/// How long [`Net::set_link`] waits for a restored link to carry traffic. A guard against a
/// hang, not a speed requirement.
const LINK_UP_GUARD: Duration = Duration::from_secs(10);

/// Numbers the networks (and probes) of this process, so that tests running in parallel
/// threads never pick the same names.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The box's end of client `k`'s veth pair, in the box namespace (at most 9 characters; an
/// interface name has at most 15).
pub fn box_link(k: usize) -> String {
    format!("veth-c{k}")
}

/// One test's network: a box namespace and client namespaces, each client joined to the box
/// by its own veth pair.
///
/// Dropping it deletes every namespace it made; the veth pairs go with them. It kills nothing:
/// processes started in the namespaces are the caller's to stop. A process still inside a
/// namespace when it is deleted keeps that namespace (and its links and addresses) alive, but
/// nameless and unreachable by name, only until it exits; stop such processes before the `Net`
/// drops, or at least do not count on them being able to talk.
#[derive(Debug)]
pub struct Net {
    /// The box namespace's name.
    box_ns: String,
    /// The client namespaces' names, by client index.
    clients: Vec<String>,
    /// Every namespace created so far, in order of creation: what `Drop` deletes, also when
    /// [`Net::new`] fails half-way.
    created: Vec<String>,
}

impl Net {
    /// Builds a network of a box and `clients` clients (at most 256): the namespaces, a veth
    /// pair per client with 10.77.K.1/30 on the box side and 10.77.K.2/30 on the client side,
    /// every link and every loopback up.
    ///
    /// First removes the namespaces of earlier runs that died without cleaning up (their pid is
    /// no longer a live process); a namespace of a run still going is left alone.
    ///
    /// On failure it deletes whatever it had created and returns the failing `ip` command and
    /// what it printed.
    pub fn new(clients: usize) -> Result<Net, String> {
        if clients > MAX_CLIENTS {
            return Err(format!("{clients} clients asked for; at most {MAX_CLIENTS} (10.77.K.0/30 each)"));
        }
        remove_stale();
        let base = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut net = Net {
            box_ns: format!("{base}-box"),
            clients: (0..clients).map(|k| format!("{base}-c{k}")).collect(),
            created: Vec::new(),
        };
        // On an error `net` drops here and deletes what `build` created.
        net.build()?;
        Ok(net)
    }

    /// Creates the namespaces and links, recording each namespace as soon as it exists.
    fn build(&mut self) -> Result<(), String> {
        let box_ns = self.box_ns.clone();
        ip(&["netns", "add", &box_ns])?;
        self.created.push(box_ns.clone());
        ip(&["-n", &box_ns, "link", "set", "lo", "up"])?;
        for k in 0..self.clients.len() {
            let client = self.clients[k].clone();
            ip(&["netns", "add", &client])?;
            self.created.push(client.clone());
            ip(&["-n", &client, "link", "set", "lo", "up"])?;
            // The pair is born in the box namespace with its peer placed straight into the
            // client's: neither end ever exists in the host's namespace, so names cannot clash
            // with the host's or another test's, and nothing is left there if the run dies.
            let box_end = box_link(k);
            ip(&[
                "-n",
                &box_ns,
                "link",
                "add",
                &box_end,
                "type",
                "veth",
                "peer",
                "name",
                CLIENT_LINK,
                "netns",
                &client,
            ])?;
            let box_cidr = format!("{}/30", self.box_addr(k));
            let client_cidr = format!("{}/30", self.client_addr(k));
            ip(&["-n", &box_ns, "addr", "add", &box_cidr, "dev", &box_end])?;
            ip(&["-n", &client, "addr", "add", &client_cidr, "dev", CLIENT_LINK])?;
            ip(&["-n", &box_ns, "link", "set", &box_end, "up"])?;
            ip(&["-n", &client, "link", "set", CLIENT_LINK, "up"])?;
        }
        for k in 0..self.clients.len() {
            self.wait_carrier(k)?;
        }
        Ok(())
    }

    /// The box namespace's name.
    pub fn box_ns(&self) -> &str {
        &self.box_ns
    }

    /// Client `k`'s namespace's name.
    #[track_caller]
    pub fn client_ns(&self, k: usize) -> &str {
        &self.clients[self.check(k)]
    }

    /// The number of clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The box's address on client `k`'s link: the address client `k` reaches the box at (the
    /// only box address it has a route to).
    #[track_caller]
    pub fn box_addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.check(k) as u8, 1)
    }

    /// Client `k`'s address (the box sees its connections come from here).
    #[track_caller]
    pub fn client_addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.check(k) as u8, 2)
    }

    /// Cuts client `k` off (`up == false`: both ends of its veth pair down) or restores it
    /// (both up, then waits until the link carries traffic), for fault tests.
    ///
    /// While cut, the routes over the link are gone: new connections either way fail at once
    /// (network unreachable), and established ones are not reset but hear nothing, like a
    /// pulled cable, until they time out or the link comes back.
    ///
    /// Panics when `ip` fails: the network was built, so a failure here is a broken harness
    /// and the test cannot mean anything.
    #[track_caller]
    pub fn set_link(&self, k: usize, up: bool) {
        let client = self.client_ns(k).to_owned();
        let box_end = box_link(k);
        let state = if up { "up" } else { "down" };
        let result = ip(&["-n", &self.box_ns, "link", "set", &box_end, state])
            .and_then(|()| ip(&["-n", &client, "link", "set", CLIENT_LINK, state]))
            .and_then(|()| if up { self.wait_carrier(k) } else { Ok(()) });
        if let Err(e) = result {
            panic!("set client {k}'s link {state}: {e}");
        }
    }

    /// Waits (bounded) until both ends of client `k`'s pair report a carrier (LOWER_UP): a veth
    /// carries traffic only once both ends are up.
    fn wait_carrier(&self, k: usize) -> Result<(), String> {
        let ends = [(self.box_ns.as_str(), box_link(k)), (self.clients[k].as_str(), CLIENT_LINK.to_owned())];
        let deadline = Instant::now() + LINK_UP_GUARD;
        loop {
            let mut all = true;
            for (ns, dev) in &ends {
                let out = ip_output(&["-n", ns, "-o", "link", "show", "dev", dev])?;
                all &= out.contains("LOWER_UP");
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("client {k}'s link has no carrier after {LINK_UP_GUARD:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn check(&self, k: usize) -> usize {
        assert!(k < self.clients.len(), "no client {k}: this network has {} clients", self.clients.len());
        k
    }
}

impl Drop for Net {
    /// Deletes every namespace made, clients first. A failure is printed, not raised: a drop
    /// may run while a failed test unwinds, and a panic there would abort and hide that
    /// failure. What is left is removed by the next run's stale sweep.
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns harness: cannot delete namespace {ns}: {e}");
            }
        }
    }
}

/// `ip netns exec NS PROGRAM ARGS...`, for the caller to set environment and stdio and spawn
/// or run: a process in namespace `ns`, with its addresses and routes and nothing else.
pub fn command_in<I, S>(ns: &str, program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program).args(args);
    c
}

/// Runs `f` on a new thread that has entered network namespace `ns` and returns its result
/// (a panic in `f` is raised again here).
///
/// Only that thread moves: `setns(2)` changes the calling thread's namespace, and the test's
/// other threads stay where they are. A socket belongs to the namespace it was created in for
/// its whole life, whatever thread uses it later, so `f` can create a listener or connect and
/// hand the socket back to be used from the test's own thread.
#[track_caller]
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("{NETNS_DIR}/{ns}");
    let handle = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open namespace {path}: {e}"));
        // SAFETY: setns on a descriptor this thread holds open for the call; it affects only
        // this thread's network namespace, which no Rust value depends on.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            panic!("setns into {path}: {}", std::io::Error::last_os_error());
        }
        drop(file);
        f()
    });
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Whether this machine can build a [`Net`], or why not: we must be root, and `ip` must be able
/// to add a namespace, make a veth pair in it and delete it again (a throwaway one).
pub fn netns_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root (ip netns add)".into());
    }
    let probe = format!("{PREFIX}{}-probe{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    ip(&["netns", "add", &probe])?;
    let veth = ip(&["-n", &probe, "link", "add", "probe-a", "type", "veth", "peer", "name", "probe-b"]);
    let del = ip(&["netns", "del", &probe]);
    veth.and(del)
}

/// Deletes the namespaces named with [`PREFIX`] whose pid is not a live process: left by a run
/// that was killed before its `Net`s dropped. Failures are ignored (another test process may be
/// sweeping the same ones at the same moment).
fn remove_stale() {
    let Ok(list) = ip_output(&["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `ip ARGS...`; an error names the command and carries its exit status and stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    ip_output(args).map(drop)
}

/// Runs `ip ARGS...` and returns its standard output; an error names the command and carries
/// its exit status and stderr. (`ip` only asks the kernel and exits; there is nothing for it to
/// wait on, so no timeout.)
fn ip_output(args: &[&str]) -> Result<String, String> {
    let what = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{what}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{what}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

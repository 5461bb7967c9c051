//! Processes of the agent tests: the service and agents started in network namespaces, their
//! output collected as it comes, killed when a test ends however it ends.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::netns::{Net, command_in, netns_available};
use super::{COFFER, skip_unless_ci};

/// Text a child writes to a pipe, collected by a thread as it comes.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// Collects everything `r` gives until it ends.
    pub fn collect(r: impl Read + Send + 'static) -> Captured {
        let c = Captured::default();
        let text = c.0.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => text.lock().unwrap().push_str(&String::from_utf8_lossy(&line)),
                }
            }
        });
        c
    }

    /// What was collected so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A process the test started (in a namespace or not), with its output collected. Dropping it
/// kills it if it still runs: a failing test leaves nothing behind.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub what: String,
    /// The process.
    pub child: Child,
    /// Its standard output so far.
    pub stdout: Captured,
    /// Its standard error so far.
    pub stderr: Captured,
}

impl Proc {
    pub fn spawn(what: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Captured::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Captured::collect(child.stderr.take().expect("piped stderr"));
        Proc { what: what.to_owned(), child, stdout, stderr }
    }

    /// Its exit status, if it has exited (-1 when killed by a signal).
    pub fn exited(&mut self) -> Option<i32> {
        let status = self.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what))?;
        Some(status.code().unwrap_or(-1))
    }

    /// Waits (at most `guard`) for it to exit and returns its exit status.
    #[track_caller]
    pub fn wait_exit(&mut self, guard: Duration) -> i32 {
        let deadline = Instant::now() + guard;
        loop {
            if let Some(code) = self.exited() {
                // The pipes close with the process: let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {guard:?}\n{}",
                self.what,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts it still runs.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(code) = self.exited() {
            panic!("{} exited with status {code}\n{}", self.what, self.output());
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap_or_else(|e| panic!("kill {}: {e}", self.what));
        self.child.wait().unwrap_or_else(|e| panic!("reap {}: {e}", self.what));
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    pub fn output(&self) -> String {
        format!("--- stdout of {}\n{}--- stderr\n{}", self.what, self.stdout.text(), self.stderr.text())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `coffer --state STATE ARGS...` in namespace `ns`, with an environment that cannot leak
/// into the test. (`ip netns exec` execs coffer, so the child's pid is coffer's.)
pub fn coffer_in(ns: &str, state: &Path, args: &[&str]) -> Command {
    let mut all: Vec<&str> = vec!["--state", state.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let mut c = command_in(ns, COFFER, all);
    c.env_remove("COFFER_STATE")
        .env_remove("RUST_LOG")
        .env_remove("XDG_STATE_HOME")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Polls `f` until it gives a value, at most `guard`; the panic says what was awaited and
/// what `last` says about the state then.
#[track_caller]
pub fn wait_for<T>(
    guard: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {guard:?}\n{}", last());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A network of `clients` clients, or `None` (after `skip_unless_ci`) when this machine cannot
/// make one.
pub fn network(clients: usize) -> Option<Net> {
    if let Err(why) = netns_available() {
        skip_unless_ci(&format!("cannot make network namespaces: {why}"));
        return None;
    }
    Some(Net::new(clients).unwrap_or_else(|e| panic!("building a network of {clients} clients: {e}")))
}

/// `agent run` in client `k`'s namespace, left running.
pub fn start_agent(net: &Net, k: usize, state: &Path, name: &str) -> Proc {
    Proc::spawn(
        &format!("coffer agent run ({name}, client {k})"),
        coffer_in(net.client_ns(k), state, &["agent", "run"]),
    )
}

//! Backups and restores of real trees through backup agents, over real TCP between network
//! namespaces (tests/common/netns.rs): the service runs in the box namespace with a virtual
//! library and `[agents] listen`, each agent in its own client namespace, enrolled with
//! `--paths` (the directory its trees are in) and `--restore-to` (a directory of its own). The
//! namespaces share the file system: the trees are directories of the test's temporary
//! directory, read by the agents, and restored trees are compared with them entry by entry.
//!
//! - three agents are backed up (three `coffer backup agent:…` through the service, queued as
//!   jobs), each session restores onto its agent and on the box identical to the source, and a
//!   job file naming the three agents' trees makes one session, the three multiplexed onto one
//!   drive (`multiplex = 3`), from which each agent gets back its own tree, demultiplexed;
//! - the catalog of a multiplexed session rebuilt from the cartridges alone (`coffer scan`)
//!   still restores one agent's tree demultiplexed, identical to its source;
//! - the access lists hold: outside an agent's paths, an unknown agent, another agent's
//!   session, outside its restore paths: refused, naming why, and no session is made;
//! - an agent killed mid-backup multiplexed with another fails the job naming it once the
//!   other agent's backup completed, leaves a failed session whose committed objects verify
//!   and restore (the other's tree whole), and started again it is backed up whole;
//! - a link cut mid-backup fails the job within the sockets' timeouts, and once the link is
//!   back the same agent process reconnects and is backed up whole.
//!
//! Needs root: elsewhere these tests are skipped, and under CI they fail (`skip_unless_ci`).
//! Every wait is bounded by a guard against a hang, never an assertion on speed.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agents::{Proc, coffer_in, network, start_agent, wait_for};
use common::netns::Net;
use common::{
    Env, Ignore, Run, Snapshot, assert_same_tree, build_full_tree, ls_kinds, ls_path, random_bytes, run,
    snapshot, text_bytes, walk_paths, write_file,
};
use serde_json::Value;

/// The port the box listens for agents on, in its own namespace (free in a fresh one).
const PORT: u16 = 8471;

/// The box's name, as agents are welcomed with it.
const BOX_NAME: &str = "databox";

/// The library of the data tests: room for a dozen sessions of the trees below.
const LIBRARY: &str = "[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 12\n\
                       cartridges = 10\ncapacity = \"256M\"\nmultiplex = 3\n";

/// The library of the fault tests: slow drives with a small buffer, so that a backup of
/// [`SLOW_FILES`] takes many seconds, and small cartridges, so that parts close (and their
/// objects are committed) while it runs.
const SLOW_LIBRARY: &str = "[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 2\nslots = 24\n\
                            cartridges = 20\ncapacity = \"32M\"\ndrive_rate = \"12M\"\n\
                            drive_buffer = \"1M\"\ndrive_reposition_ms = 10\n";

/// Files of the fault tests' tree, [`SLOW_FILE_LEN`] bytes of random data each.
const SLOW_FILES: u64 = 48;
const SLOW_FILE_LEN: usize = 4 << 20;

/// Bound on the service starting (READY=1) or stopping after SIGTERM.
const SERVICE_GUARD: Duration = Duration::from_secs(60);

/// Bound on an agent being listed connected after it was started.
const CONNECT_GUARD: Duration = Duration::from_secs(60);

/// Bound on one backup through the service (queued behind others, on slow drives).
const BACKUP_GUARD: Duration = Duration::from_secs(600);

/// Bound on the status showing what happened (it is refreshed about once a second).
const STATUS_GUARD: Duration = Duration::from_secs(30);

/// Bound on a backup's session committing its first objects.
const COMMIT_GUARD: Duration = Duration::from_secs(120);

/// Bound on a job failing once its agent is gone: the box waits at most its silence limit
/// (60 s) for a frame; the rest is slack.
const LOST_GUARD: Duration = Duration::from_secs(150);

/// Bound on an agent reconnecting by itself after a cut link: its back-off is at most 30 s,
/// and once the link is back the box's reset of the closed connection ends the old one.
const RECONNECT_GUARD: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------------------------
// Processes

/// A path as a `&str` (the test's paths are UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------------------------
// The box

/// The box: its world (state directory), its board and its running service in the box
/// namespace.
struct TheBox {
    env: Env,
    board: PathBuf,
    ns: String,
    service: Option<Proc>,
}

impl TheBox {
    /// Writes the board (agents on 0.0.0.0:PORT, the library `library`, a spool of
    /// `spool_size` in the box's world when given) and starts the service in `net`'s box
    /// namespace.
    fn start(net: &Net, library: &str, spool_size: Option<&str>) -> TheBox {
        let env = Env::new();
        let board = env.path("board.toml");
        let spool = spool_size.map_or(String::new(), |size| {
            format!("spool = \"{}\"\nspool_size = \"{size}\"\n", env.path("spool").display())
        });
        let text = format!(
            "name = \"{BOX_NAME}\"\n[jobs]\nscan_seconds = 1\n[agents]\nlisten = \"0.0.0.0:{PORT}\"\n{spool}{library}"
        );
        fs::write(&board, text).unwrap();
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
        let mut cmd = coffer_in(&self.ns, &self.env.state, &["--board", s(&self.board), "serve"]);
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

    /// `coffer --state BOX --json ARGS...`, through the service's control socket (from the
    /// test's own namespace: the socket is a file).
    fn coffer(&self, args: &[&str]) -> Run {
        self.env.coffer_json(args)
    }

    /// `coffer --state BOX ARGS...` (text), through the service.
    fn coffer_text(&self, args: &[&str]) -> Run {
        self.env.coffer(args)
    }

    /// `agent add NAME --paths PATHS --restore-to RESTORE`: the token and the fingerprint.
    #[track_caller]
    fn add(&self, name: &str, paths: &Path, restore_to: &Path) -> (String, String) {
        let r = self.coffer(&["agent", "add", name, "--paths", s(paths), "--restore-to", s(restore_to)]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(j["agent"], name, "{r}");
        assert_eq!(j["paths"], serde_json::json!([s(paths)]), "{r}");
        assert_eq!(j["restore_to"], serde_json::json!([s(restore_to)]), "{r}");
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

    /// The sessions, as `ls --json` lists them.
    #[track_caller]
    fn sessions(&self) -> Vec<Value> {
        let r = self.coffer(&["ls"]);
        r.expect_code(0);
        r.json().as_array().unwrap_or_else(|| panic!("ls lists no sessions: {r}")).clone()
    }

    /// Session `id`, as `ls --json` lists it.
    #[track_caller]
    fn session(&self, id: u64) -> Value {
        let all = self.sessions();
        all.iter().find(|x| x["session"] == id).cloned().unwrap_or_else(|| panic!("no session {id}: {all:?}"))
    }

    /// The objects of session `id`, as `ls SESSION --json` lists them.
    #[track_caller]
    fn objects(&self, id: u64) -> Vec<Value> {
        let r = self.coffer(&["ls", &id.to_string()]);
        r.expect_code(0);
        r.json().as_array().unwrap_or_else(|| panic!("ls {id} lists no objects: {r}")).clone()
    }

    /// `coffer backup SOURCE` (text), left running: the service makes it a job.
    fn backup(&self, source: &str) -> Proc {
        Proc::spawn(&format!("coffer backup {source}"), self.env.command(&["backup", source]))
    }

    /// `coffer backup SOURCE` to its end (at most `guard`).
    #[track_caller]
    fn backup_ended(&self, source: &str, guard: Duration) -> Ended {
        let mut p = self.backup(source);
        let code = p.wait_exit(guard);
        Ended::of(code, &p)
    }

    /// Restores session `id` whole onto agent `agent` under `dir` (text), and expects it to
    /// go well: `objects` objects made.
    #[track_caller]
    fn restore_onto(&self, id: u64, agent: &str, dir: &Path, objects: usize) {
        let to = format!("agent:{agent}:{}", s(dir));
        let r = self.coffer_text(&["restore", &id.to_string(), "--to", &to]);
        r.expect_code(0);
        assert!(r.stdout.contains(&format!("restore of session {id}: ok: {objects} objects, ")), "{r}");
    }

    /// Restores session `id` whole on the box into `dir` (JSON), and expects it to go well.
    #[track_caller]
    fn restore_here(&self, id: u64, dir: &Path, objects: usize) {
        let r = self.coffer(&["restore", &id.to_string(), "--to", s(dir)]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(j["ok"], true, "{r}");
        assert_eq!(j["objects"], objects as u64, "{r}");
        assert!(j["failures"].as_array().is_some_and(Vec::is_empty), "{r}");
    }
}

/// How a `coffer backup` run through the service ended: its last line says
/// `job N STATE: MESSAGE`, and a backup that started a session begins its message with
/// `session S: `.
#[derive(Debug)]
struct Ended {
    code: i32,
    job: u64,
    state: String,
    message: String,
    session: Option<u64>,
    output: String,
}

impl Ended {
    #[track_caller]
    fn of(code: i32, p: &Proc) -> Ended {
        let output = p.output();
        let stdout = p.stdout.text();
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("job "))
            .unwrap_or_else(|| panic!("no `job N STATE: …` line\n{output}"));
        let parsed = line.strip_prefix("job ").and_then(|rest| {
            let (job, rest) = rest.split_once(' ')?;
            let (state, message) = rest.split_once(": ")?;
            Some((job.parse().ok()?, state.to_owned(), message.to_owned()))
        });
        let (job, state, message) =
            parsed.unwrap_or_else(|| panic!("a malformed last line {line:?}\n{output}"));
        let session =
            message.strip_prefix("session ").and_then(|m| m.split(':').next()).and_then(|n| n.parse().ok());
        Ended { code, job, state, message, session, output }
    }

    /// Asserts it is DONE (exit 0) and returns its session.
    #[track_caller]
    fn done(&self) -> u64 {
        assert_eq!((self.code, self.state.as_str()), (0, "DONE"), "{self:#?}\n{}", self.output);
        self.session.unwrap_or_else(|| panic!("a DONE backup names no session: {self:#?}"))
    }

    /// Asserts it FAILED (exit 2) and that its message contains `why`.
    #[track_caller]
    fn failed(&self, why: &str) {
        assert_eq!((self.code, self.state.as_str()), (2, "FAILED"), "{}", self.output);
        assert!(self.message.contains(why), "the message does not say {why:?}:\n{}", self.output);
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

/// An agent on client `k` of the network: its directories, its state, its running process.
struct Agent {
    name: String,
    k: usize,
    /// Its state directory (on the client).
    state: PathBuf,
    /// The directory its trees are in: its `--paths`.
    home: PathBuf,
    /// Its `--restore-to`.
    restore_to: PathBuf,
    /// `agent run`.
    proc: Proc,
    /// Its connection as `agent list` shows it.
    connected: Value,
}

impl Agent {
    /// Adds agent `cK` on the box (paths and restore directory in the box's world), enrols it
    /// from client `k`, starts it and waits until the box lists it connected.
    fn start(net: &Net, the_box: &TheBox, k: usize) -> Agent {
        let name = format!("c{k}");
        let home = the_box.env.path(&name);
        let restore_to = the_box.env.path(&format!("{name}-restore"));
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&restore_to).unwrap();
        let (token, fingerprint) = the_box.add(&name, &home, &restore_to);
        let state = the_box.env.path(&format!("client-{k}"));
        let server = format!("{}:{PORT}", net.box_addr(k));
        let enroll =
            ["agent", "enroll", "--server", &server, "--token", &token, "--fingerprint", &fingerprint];
        let r = run(coffer_in(net.client_ns(k), &state, &enroll));
        r.expect_code(0);
        assert!(r.stdout.contains(&format!("enrolled as agent {name}")), "{r}");
        let proc = start_agent(net, k, &state, &name);
        let connected = the_box.wait_connected(&name, net.client_addr(k), None, CONNECT_GUARD);
        Agent { name, k, state, home, restore_to, proc, connected }
    }

    /// Its tree: `HOME/treeK`.
    fn tree(&self) -> PathBuf {
        self.home.join(format!("tree{}", self.k))
    }

    /// `agent:cK:PATH`.
    fn source(&self, path: &Path) -> String {
        format!("agent:{}:{}", self.name, s(path))
    }

    /// Starts `agent run` again (after it was killed) and waits until the box lists its new
    /// connection.
    fn restart(&mut self, net: &Net, the_box: &TheBox) {
        self.proc = start_agent(net, self.k, &self.state, &self.name);
        self.connected =
            the_box.wait_connected(&self.name, net.client_addr(self.k), Some(&self.connected), CONNECT_GUARD);
    }
}

/// How many times an agent's log says it was welcomed by the box.
fn welcomes(agent: &Proc) -> usize {
    let line = format!("connected to box {BOX_NAME} at ");
    agent.stderr().lines().filter(|l| l.contains(&line)).count()
}

// ---------------------------------------------------------------------------------------------
// Trees

/// The full tree of every kind (tests/common), plus larger files of agent `k`'s own that span
/// several units (4 MiB): random and text, so that no two agents' trees are alike.
fn data_tree(root: &Path, k: u64) -> Snapshot {
    let t = build_full_tree(root);
    if !t.has_chardev {
        eprintln!("note: mknod of a char device was refused here: the tree has none");
    }
    write_file(&root.join("data/random.bin"), &random_bytes(1000 + k, (5 << 20) + 17));
    write_file(&root.join("data/text.txt"), &text_bytes(2000 + k, 4 << 20));
    write_file(&root.join("data/more/random2.bin"), &random_bytes(3000 + k, (3 << 20) + 4095));
    write_file(&root.join(format!("data/agent-{k}")), format!("agent {k}'s own file\n").as_bytes());
    snapshot(root)
}

/// A tree the fault tests back up slowly: [`SLOW_FILES`] files of random bytes and a few
/// small ones.
fn slow_tree(root: &Path) -> Snapshot {
    for i in 0..SLOW_FILES {
        write_file(&root.join(format!("d{}/f{i:03}.bin", i % 4)), &random_bytes(500 + i, SLOW_FILE_LEN));
    }
    write_file(&root.join("small/a.txt"), &text_bytes(1, 5000));
    write_file(&root.join("small/b.txt"), &text_bytes(2, 50));
    snapshot(root)
}

/// `ls --json`'s kind of every entry of `tree`, each path under `prefix` when given.
fn expected_kinds(tree: &Snapshot, prefix: Option<&str>) -> BTreeMap<String, String> {
    let name = |p: &Path| match (prefix, p.as_os_str().is_empty()) {
        (None, _) => ls_path(p),
        (Some(pre), true) => pre.to_owned(),
        (Some(pre), false) => format!("{pre}/{}", ls_path(p)),
    };
    let mut want: BTreeMap<String, String> =
        tree.nodes.iter().map(|(p, n)| (name(p), n.kind.ls_name().to_owned())).collect();
    // The second name of each hard-link group is stored as a hard link to the first.
    for g in &tree.link_groups {
        for p in &g[1..] {
            want.insert(name(p), "hardlink".into());
        }
    }
    want
}

/// Every regular file restored under `dest` is the file of the same path under `src`, byte
/// for byte; returns how many there are.
fn restored_files_match(src: &Path, dest: &Path) -> usize {
    let mut n = 0;
    for p in walk_paths(dest) {
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            let rel = p.strip_prefix(dest).unwrap();
            let want = fs::read(src.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            assert!(fs::read(&p).unwrap() == want, "{} differs from its source", rel.display());
            n += 1;
        }
    }
    n
}

/// Waits until a running session of `source` has committed objects; returns its row.
#[track_caller]
fn wait_committed(the_box: &TheBox, source: &str, backup: &mut Proc) -> Value {
    wait_for(
        COMMIT_GUARD,
        &format!("a running session of {source} with committed objects"),
        || {
            // A backup that ended already cannot be interrupted: say so at once.
            if let Some(code) = backup.exited() {
                panic!(
                    "the backup ended (status {code}) before it could be interrupted\n{}",
                    backup.output()
                );
            }
            the_box.sessions().into_iter().find(|x| {
                x["source"] == source
                    && x["status"] == "running"
                    && x["objects"].as_u64().is_some_and(|n| n > 0)
            })
        },
        || format!("sessions: {:?}\n--- box log\n{}", the_box.sessions(), the_box.log()),
    )
}

/// After a backup of `agent`'s slow tree failed mid-way: its session is listed failed with
/// some but not all of the tree's objects, `verify` reads those back intact, and a restore on
/// the box gives files identical to the source's.
#[track_caller]
fn failed_session_is_restorable(the_box: &TheBox, agent: &Agent, session: u64, tree: &Snapshot) {
    let row = the_box.session(session);
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["source"], agent.source(&agent.tree()), "{row}");
    let committed = row["objects"].as_u64().expect("objects");
    assert!(committed > 0 && committed < tree.nodes.len() as u64, "not a backup cut mid-way: {row}");
    let r = the_box.coffer(&["verify", &session.to_string()]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(j["ok"], true, "{r}");
    assert_eq!(j["objects"], committed, "{r}");
    assert!(j["failures"].as_array().is_some_and(Vec::is_empty), "{r}");
    let dest = the_box.env.path(&format!("failed-{session}"));
    the_box.restore_here(session, &dest, committed as usize);
    let files = restored_files_match(&agent.tree(), &dest);
    assert!(files > 0, "the failed session restored no file");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn three_agents_back_up_and_restore_onto_themselves() {
    let Some(net) = network(3) else { return };
    let mut the_box = TheBox::start(&net, LIBRARY, Some("16M"));
    let agents: Vec<Agent> = (0..3).map(|k| Agent::start(&net, &the_box, k)).collect();
    let trees: Vec<Snapshot> = agents.iter().map(|a| data_tree(&a.tree(), a.k as u64)).collect();

    // Three backups at once: three jobs of the queue, run one after the other, all DONE.
    let mut running: Vec<Proc> = agents.iter().map(|a| the_box.backup(&a.source(&a.tree()))).collect();
    let ended: Vec<Ended> = running
        .iter_mut()
        .map(|p| {
            let code = p.wait_exit(BACKUP_GUARD);
            Ended::of(code, p)
        })
        .collect();
    let sessions: Vec<u64> = ended.iter().map(Ended::done).collect();
    let mut jobs: Vec<u64> = ended.iter().map(|e| e.job).collect();
    jobs.sort_unstable();
    jobs.dedup();
    assert_eq!(jobs.len(), 3, "three backups, three jobs: {ended:#?}");
    let mut distinct = sessions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "three backups, three sessions: {ended:#?}");

    for (a, (&session, tree)) in agents.iter().zip(sessions.iter().zip(&trees)) {
        let row = the_box.session(session);
        assert_eq!(row["status"], "complete", "{row}");
        assert_eq!(row["source"], a.source(&a.tree()), "{row}");
        assert_eq!(row["objects"], tree.nodes.len() as u64, "{row}");

        // The objects, as `ls` lists them: the agent's tree, every entry of its kind.
        let objects = the_box.objects(session);
        assert_eq!(objects.len(), tree.nodes.len(), "session {session}");
        assert_eq!(ls_kinds(&objects), expected_kinds(tree, None), "session {session}");

        // Onto the agent itself, under its restore directory: identical to its source.
        let onto = a.restore_to.join(format!("s{session}"));
        the_box.restore_onto(session, &a.name, &onto, tree.nodes.len());
        let restored = snapshot(&onto);
        assert_same_tree(tree, &restored, Ignore::default());
        // Its holes stay holes.
        let sparse = restored.allocated[Path::new("sparse.img")];
        assert!(sparse < 1 << 20, "the sparse file restored onto {} has {sparse} bytes allocated", a.name);

        // On the box: identical too.
        let here = the_box.env.path(&format!("box-restore-{session}"));
        the_box.restore_here(session, &here, tree.nodes.len());
        assert_same_tree(tree, &snapshot(&here), Ignore::default());
    }
    // A part of a session onto its agent: that part, and nothing else.
    let (a, session) = (&agents[0], sessions[0]);
    let part = snapshot(&a.tree().join("sub"));
    let onto = a.restore_to.join("part");
    let r = the_box.coffer_text(&["restore", &session.to_string(), "--to", &a.source(&onto), "sub"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(&format!("restore of session {session}: ok: {} objects, ", part.nodes.len())),
        "{r}"
    );
    let top: Vec<String> =
        fs::read_dir(&onto).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(top, ["sub"]);
    assert_same_tree(&part, &snapshot(&onto.join("sub")), Ignore::default());

    // The sources are as they were.
    for (a, tree) in agents.iter().zip(&trees) {
        assert_same_tree(tree, &snapshot(&a.tree()), Ignore::default());
    }

    // A job file naming the three agents' trees: one session, the three multiplexed onto one
    // drive at once (`multiplex = 3`), each tree under its name, compressed on the agents.
    let job_file = the_box.env.path("three-agents.toml");
    let sources: Vec<String> = agents.iter().map(|a| format!("\"{}\"", a.source(&a.tree()))).collect();
    let text =
        format!("name = \"three-agents\"\nsources = [{}]\ncompression = \"agent\"\n", sources.join(", "));
    fs::write(&job_file, text).unwrap();
    let r = the_box.coffer(&["job", "submit", "--hold", s(&job_file)]);
    r.expect_code(0);
    let job = r.json()["job"].as_u64().unwrap_or_else(|| panic!("submit names no job: {r}"));
    the_box.coffer(&["job", "run", &job.to_string()]).expect_code(0);
    let shown = wait_for(
        BACKUP_GUARD,
        &format!("job {job} ends"),
        || {
            let r = the_box.coffer(&["job", "show", &job.to_string()]);
            r.expect_code(0);
            let j = r.json();
            matches!(j["state"].as_str(), Some("done" | "failed" | "cancelled")).then_some(j)
        },
        || format!("--- box log\n{}", the_box.log()),
    );
    assert_eq!(shown["state"], "done", "{shown:#}");
    let mine: Vec<Value> = the_box.sessions().into_iter().filter(|x| x["job"] == job).collect();
    assert_eq!(mine.len(), 1, "job {job} made one session: {mine:?}");
    let session = mine[0]["session"].as_u64().unwrap();
    assert_eq!(mine[0]["status"], "complete", "{:?}", mine[0]);
    // Compressed all the same (the trees' text shrinks), only elsewhere.
    let (bytes_in, stored) =
        (mine[0]["bytes_in"].as_u64().unwrap_or(0), mine[0]["bytes_stored"].as_u64().unwrap_or(0));
    assert!(stored < bytes_in, "the agents' compressed session stores {stored} of {bytes_in} bytes");
    // On its way to the drive it went through the board's spool (16 MiB, less than the
    // session), whole, and the drive was started from it (the order and the bytes that came
    // out of it are what the restores below check).
    let log = the_box.log();
    let spooled = log.lines().rev().find(|l| l.contains("went through it, the drive started"));
    let spooled = spooled.unwrap_or_else(|| panic!("the log says nothing of the spool: {log}"));
    eprintln!("{spooled}");
    assert!(spooled.contains(&format!("spool {}: ", the_box.env.path("spool").display())), "{spooled}");
    assert!(!spooled.contains("failed"), "{spooled}");
    assert!(!spooled.contains("started 0 time"), "{spooled}");
    let objects = the_box.objects(session);
    let mut want = BTreeMap::new();
    for (a, tree) in agents.iter().zip(&trees) {
        want.extend(expected_kinds(tree, Some(&format!("{}:tree{}", a.name, a.k))));
    }
    assert_eq!(ls_kinds(&objects), want, "session {session}");
    let here = the_box.env.path("box-restore-three");
    the_box.restore_here(session, &here, want.len());
    for (a, tree) in agents.iter().zip(&trees) {
        assert_same_tree(tree, &snapshot(&here.join(format!("{}:tree{}", a.name, a.k))), Ignore::default());
    }
    // Each agent gets back its own tree, and only it: the restore demultiplexes, reading only
    // the runs of that agent's records.
    let mut read_all = 0;
    for (a, tree) in agents.iter().zip(&trees) {
        let onto = a.restore_to.join("three");
        let r = the_box.coffer(&["restore", &session.to_string(), "--to", &a.source(&onto)]);
        r.expect_code(0);
        let j = r.json();
        assert_eq!(
            (j["ok"].clone(), j["objects"].clone()),
            (Value::from(true), Value::from(tree.nodes.len())),
            "{r}"
        );
        let (read, parts) = (j["demux"]["read_bytes"].as_u64(), j["demux"]["part_bytes"].as_u64());
        let (Some(read), Some(parts)) = (read, parts) else { panic!("no demultiplexing figures: {r}") };
        eprintln!(
            "restore of {}'s tree from multiplexed session {session}: read {read} of {parts} bytes",
            a.name
        );
        assert!(read > 0 && read < parts, "{}: read {read} of {parts} bytes", a.name);
        read_all += read;
        let top: Vec<String> =
            fs::read_dir(&onto).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        let name = format!("{}:tree{}", a.name, a.k);
        assert_eq!(top, std::slice::from_ref(&name), "{} got back more than its own tree", a.name);
        assert_same_tree(tree, &snapshot(&onto.join(&name)), Ignore::default());
    }
    eprintln!("the three demultiplexing restores read {read_all} bytes");
    // Two agents' trees at once on the box: each run read once, the third agent's left.
    let two = the_box.env.path("box-restore-two");
    let r = the_box.coffer(&["restore", &session.to_string(), "--to", s(&two), "c0:tree0", "c1:tree1"]);
    r.expect_code(0);
    let j = r.json();
    let (read, parts) =
        (j["demux"]["read_bytes"].as_u64().unwrap_or(0), j["demux"]["part_bytes"].as_u64().unwrap_or(0));
    eprintln!("restore of c0's and c1's trees at once: read {read} of {parts} bytes");
    assert!(read > 0 && read < parts, "read {read} of {parts} bytes: {r}");
    assert_same_tree(&trees[0], &snapshot(&two.join("c0:tree0")), Ignore::default());
    assert_same_tree(&trees[1], &snapshot(&two.join("c1:tree1")), Ignore::default());
    assert!(!two.join("c2:tree2").exists(), "c2's tree was restored too");

    // The status shows each agent connected, what it sent, and its last backup: this session
    // (the status is refreshed about once a second: waited for, within a guard).
    let fresh = |r: &Run| {
        r.json()["agents"].as_array().is_some_and(|l| {
            l.len() == agents.len()
                && l.iter().all(|x| {
                    x["last_backup"]["session"] == session && x["last_backup"]["status"] == "complete"
                })
        })
    };
    let r = wait_for(
        STATUS_GUARD,
        "the status showing the multiplexed session as every agent's last backup",
        || {
            let r = the_box.coffer(&["status"]);
            (r.code == 0 && fresh(&r)).then_some(r)
        },
        || format!("status: {}", the_box.coffer(&["status"]).stdout),
    );
    let status = r.json();
    let listed = status["agents"].as_array().unwrap_or_else(|| panic!("status lists no agents: {r}"));
    for a in &agents {
        let line =
            listed.iter().find(|l| l["name"] == a.name.as_str()).unwrap_or_else(|| panic!("{}: {r}", a.name));
        assert_eq!(line["address"], a.connected["address"], "{line}");
        assert!(line["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
        assert_eq!(line["last_backup"]["session"], session, "{line}");
        assert_eq!(line["last_backup"]["status"], "complete", "{line}");
    }
    let r = the_box.coffer_text(&["status"]);
    r.expect_code(0);
    for a in &agents {
        let want =
            format!("agent {}: connected from {}", a.name, a.connected["address"].as_str().unwrap_or("?"));
        assert!(r.stdout.contains(&want), "{want:?}: {r}");
        assert!(r.stdout.contains(&format!("last backup: session {session} complete")), "{r}");
    }
    // Another agent's tree in it, named: refused, and nothing made.
    let onto = agents[0].restore_to.join("not-mine");
    let r =
        the_box.coffer_text(&["restore", &session.to_string(), "--to", &agents[0].source(&onto), "c1:tree1"]);
    r.expect_code(2);
    assert!(r.stderr.contains("is not under agent c0's trees"), "{r}");
    assert!(!onto.exists(), "a refused restore made {}", onto.display());

    // None of it disturbed the agents: each on its first connection.
    let list = the_box.agents();
    for a in &agents {
        assert_eq!(list[&a.name]["connected"], a.connected, "{list:?}");
        assert_eq!(welcomes(&a.proc), 1, "{}", a.proc.output());
    }
    the_box.stop();
    drop(agents);
}

/// A multiplexed session's catalog rebuilt from the cartridges alone (`coffer scan` into a
/// fresh state directory) still knows where each agent's records lie: one agent's tree
/// restores on the box demultiplexed, reading only its runs, identical to its source. (The
/// agents' enrolment is in the old journal: the rebuilt box restores to its own disk.)
#[test]
fn a_multiplexed_session_rebuilt_by_scan_restores_demultiplexed() {
    let Some(net) = network(2) else { return };
    let mut the_box = TheBox::start(&net, LIBRARY, None);
    let agents: Vec<Agent> = (0..2).map(|k| Agent::start(&net, &the_box, k)).collect();
    let trees: Vec<Snapshot> = agents.iter().map(|a| data_tree(&a.tree(), a.k as u64)).collect();
    let sources: Vec<String> = agents.iter().map(|a| a.source(&a.tree())).collect();
    // Both in one job: multiplexed onto one drive.
    let mut backup =
        Proc::spawn("coffer backup (two agents)", the_box.env.command(&["backup", &sources[0], &sources[1]]));
    let code = backup.wait_exit(BACKUP_GUARD);
    let session = Ended::of(code, &backup).done();
    the_box.stop();
    drop(agents);

    // A fresh state directory and a board naming the same cartridges by their directory.
    let carts = the_box.env.state.join("library").join("vlib");
    assert!(carts.is_dir(), "no cartridges at {}", carts.display());
    let fresh = Env::new();
    let board = fresh.path("board.toml");
    fs::write(&board, format!("name = \"{BOX_NAME}\"\n{LIBRARY}dir = \"{}\"\n", s(&carts))).unwrap();
    let rebuilt = |args: &[&str]| fresh.coffer_json(&[&["--board", s(&board)], args].concat());
    let r = rebuilt(&["scan", "library:vlib"]);
    r.expect_code(0);
    assert_eq!(r.json()["sessions_added"], 1, "{r}");

    let dest = fresh.path("c0-restore");
    let r = rebuilt(&["restore", &session.to_string(), "--to", s(&dest), "c0:tree0"]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(
        (j["ok"].clone(), j["objects"].clone()),
        (Value::from(true), Value::from(trees[0].nodes.len())),
        "{r}"
    );
    let (read, parts) = (j["demux"]["read_bytes"].as_u64(), j["demux"]["part_bytes"].as_u64());
    let (Some(read), Some(parts)) = (read, parts) else { panic!("the rebuilt catalog has no runs: {r}") };
    eprintln!("restore of c0's tree from the rebuilt catalog: read {read} of {parts} bytes");
    assert!(read > 0 && read < parts, "read {read} of {parts} bytes: {r}");
    assert_same_tree(&trees[0], &snapshot(&dest.join("c0:tree0")), Ignore::default());
    assert!(!dest.join("c1:tree1").exists(), "c1's tree was restored too");
}

#[test]
fn access_lists_are_enforced() {
    let Some(net) = network(2) else { return };
    let mut the_box = TheBox::start(&net, LIBRARY, None);
    let mut agents: Vec<Agent> = (0..2).map(|k| Agent::start(&net, &the_box, k)).collect();
    let (c0, c1) = (&agents[0], &agents[1]);
    let tree0 = {
        let root = c0.tree();
        write_file(&root.join("a/file.txt"), &text_bytes(1, 20_000));
        write_file(&root.join("b.bin"), &random_bytes(2, 70_000));
        // Older than any session: an incremental backup can tell it unchanged.
        write_file(&root.join("keep.bin"), &random_bytes(3, 50_000));
        let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
        fs::File::options().write(true).open(root.join("keep.bin")).unwrap().set_modified(day_ago).unwrap();
        snapshot(&root)
    };
    let session = the_box.backup_ended(&c0.source(&c0.tree()), BACKUP_GUARD).done();
    let before = the_box.sessions();
    let c0_paths = s(&c0.home).to_owned();

    // Outside its paths: refused before a session starts, naming the paths it may be backed
    // up under. A path that only begins with the same letters is outside too.
    let mut elsewhere = c0.home.as_os_str().to_owned();
    elsewhere.push("-other");
    let elsewhere = PathBuf::from(elsewhere);
    fs::create_dir_all(&elsewhere).unwrap();
    for root in [Path::new("/etc"), elsewhere.as_path()] {
        let e = the_box.backup_ended(&c0.source(root), BACKUP_GUARD);
        e.failed(&format!("{} is not under the paths agent c0 may be backed up under ({c0_paths})", s(root)));
        assert_eq!(e.session, None, "{e:#?}");
        assert_eq!(the_box.sessions(), before, "a refused backup left a session");
    }
    // Another agent's tree, named through this agent: refused too.
    let e = the_box.backup_ended(&c0.source(&c1.tree()), BACKUP_GUARD);
    e.failed("is not under the paths agent c0 may be backed up under");
    // An agent the box does not know.
    let e = the_box.backup_ended("agent:ghost:/srv", BACKUP_GUARD);
    e.failed("no agent ghost on this box");
    assert_eq!(the_box.sessions(), before, "a refused backup left a session");

    // c0's session onto c1: refused, c1 gets back only its own data.
    let onto = c1.restore_to.join("from-c0");
    let r = the_box.coffer_text(&["restore", &session.to_string(), "--to", &c1.source(&onto)]);
    r.expect_code(2);
    assert!(r.stderr.contains("none of it agent c1's"), "{r}");
    assert!(r.stderr.contains("an agent gets back only its own data"), "{r}");
    assert!(!onto.exists(), "a refused restore made {}", onto.display());

    // c0's session onto c0 outside its restore paths (under its backup paths, beside its
    // restore directory, elsewhere): refused, naming the paths it may restore into.
    let restore_paths = s(&c0.restore_to).to_owned();
    let mut beside = c0.restore_to.as_os_str().to_owned();
    beside.push("x");
    let dirs = [c0.home.join("not-here"), PathBuf::from(beside), the_box.env.path("elsewhere")];
    for dir in &dirs {
        let r = the_box.coffer_text(&["restore", &session.to_string(), "--to", &c0.source(dir)]);
        r.expect_code(2);
        let why = format!("{} is not under the paths agent c0 may restore into ({restore_paths})", s(dir));
        assert!(r.stderr.contains(&why), "{r}");
        assert!(!dir.exists(), "a refused restore made {}", dir.display());
    }

    // What is allowed still works, and the refusals disturbed no connection.
    let onto = c0.restore_to.join("ok");
    the_box.restore_onto(session, "c0", &onto, tree0.nodes.len());
    assert_same_tree(&tree0, &snapshot(&onto), Ignore::default());

    // An incremental backup of the agent's tree: the box judges what the agent walked against
    // its baseline, the unchanged file is left out, and the restore of the new session gives
    // the tree as it is now (the deleted file gone, the unchanged one from the full session).
    let root = c0.tree();
    write_file(&root.join("a/file.txt"), &text_bytes(7, 30_000));
    write_file(&root.join("c.txt"), &text_bytes(8, 900));
    fs::remove_file(root.join("b.bin")).unwrap();
    let tree1 = snapshot(&root);
    let source = c0.source(&root);
    let mut p = Proc::spawn(
        "coffer backup --incremental",
        the_box.env.command(&["backup", "--incremental", &source]),
    );
    let code = p.wait_exit(BACKUP_GUARD);
    let inc = Ended::of(code, &p).done();
    let row = the_box.session(inc);
    assert_eq!(
        (row["kind"].clone(), row["base"].clone()),
        (Value::from("incremental"), Value::from(session)),
        "{row}"
    );
    let stored: Vec<String> =
        the_box.objects(inc).iter().filter_map(|o| o["path"].as_str().map(str::to_owned)).collect();
    assert!(!stored.iter().any(|p| p == "keep.bin"), "the unchanged file was stored again: {stored:?}");
    assert!(stored.iter().any(|p| p == "a/file.txt") && stored.iter().any(|p| p == "c.txt"), "{stored:?}");
    let onto = c0.restore_to.join("incremental");
    the_box.restore_onto(inc, "c0", &onto, tree1.nodes.len());
    assert_same_tree(&tree1, &snapshot(&onto), Ignore::default());

    // `verify --compare` with the agent's own files: the agent compares, nothing is written.
    let r = the_box.coffer(&["verify", &inc.to_string(), "--compare", &source]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(
        (j["ok"].clone(), j["objects"].clone()),
        (Value::from(true), Value::from(tree1.nodes.len())),
        "{r}"
    );
    write_file(&root.join("c.txt"), &text_bytes(9, 900));
    let r = the_box.coffer(&["verify", &inc.to_string(), "--compare", &source]);
    r.expect_code(1);
    let failures = r.json()["failures"].to_string();
    assert!(failures.contains("differs") && failures.contains("c.txt"), "{r}");
    // Outside the agent's backup paths: refused.
    let r = the_box.coffer_text(&["verify", &inc.to_string(), "--compare", &c0.source(Path::new("/etc"))]);
    r.expect_code(2);
    assert!(r.stderr.contains("a compare reads only there"), "{r}");
    let list = the_box.agents();
    for a in agents.iter_mut() {
        assert_eq!(list[&a.name]["connected"], a.connected, "{list:?}");
        a.proc.assert_running();
    }
    the_box.stop();
}

#[test]
fn an_agent_killed_mid_backup_leaves_a_restorable_session_and_reconnects() {
    let Some(net) = network(2) else { return };
    let mut the_box = TheBox::start(&net, SLOW_LIBRARY, None);
    let mut agent = Agent::start(&net, &the_box, 0);
    let other = Agent::start(&net, &the_box, 1);
    let tree = slow_tree(&agent.tree());
    let other_tree = slow_tree(&other.tree());
    let source = agent.source(&agent.tree());
    // Both in one job: multiplexed onto one drive (the default takes 4 at once).
    let both = format!("{source} {}", other.source(&other.tree()));

    // Killed once the session has committed objects (a part was closed), with much still to
    // read: the other agent's backup goes on to its end, then the job fails, naming the agent
    // killed.
    let mut backup = Proc::spawn(
        "coffer backup (two agents)",
        the_box.env.command(&["backup", &source, &other.source(&other.tree())]),
    );
    wait_committed(&the_box, &both, &mut backup);
    agent.proc.kill();
    let killed = Instant::now();
    let code = backup.wait_exit(LOST_GUARD);
    eprintln!("the job ended {:.1} s after the agent was killed", killed.elapsed().as_secs_f64());
    let e = Ended::of(code, &backup);
    eprintln!("job {}: {}", e.job, e.message);
    e.failed("agent c0");
    assert!(e.message.contains("the 1 other agent(s) of the group completed"), "{e:#?}");
    let session = e.session.unwrap_or_else(|| panic!("the failed job names no session: {e:#?}"));
    let row = the_box.session(session);
    assert_eq!(row["status"], "failed", "{row}");
    let committed = row["objects"].as_u64().expect("objects");
    // The other agent's tree is whole in it: every object, restored identical.
    let here = the_box.env.path("other-restore");
    let r = the_box.coffer(&["restore", &session.to_string(), "--to", s(&here), "c1:tree1"]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], other_tree.nodes.len() as u64, "{r}");
    assert_same_tree(&other_tree, &snapshot(&here.join("c1:tree1")), Ignore::default());
    // The killed agent's committed objects verify and restore as they were.
    let mine = committed - other_tree.nodes.len() as u64;
    assert!(mine > 0 && mine < tree.nodes.len() as u64, "not a backup cut mid-way: {row}");
    let r = the_box.coffer(&["verify", &session.to_string()]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], committed, "{r}");
    let dest = the_box.env.path("killed-restore");
    let r = the_box.coffer(&["restore", &session.to_string(), "--to", s(&dest), "c0:tree0"]);
    r.expect_code(0);
    assert_eq!(r.json()["objects"], mine, "{r}");
    assert!(restored_files_match(&agent.tree(), &dest.join("c0:tree0")) > 0, "no file of c0 restored");
    assert!(the_box.agents()["c0"]["connected"].is_null(), "{:?}", the_box.agents());

    // Started again: it reconnects, and is backed up whole.
    agent.restart(&net, &the_box);
    let session = the_box.backup_ended(&source, BACKUP_GUARD).done();
    let row = the_box.session(session);
    assert_eq!(row["status"], "complete", "{row}");
    assert_eq!(row["objects"], tree.nodes.len() as u64, "{row}");
    let onto = agent.restore_to.join("after");
    the_box.restore_onto(session, "c0", &onto, tree.nodes.len());
    assert_same_tree(&tree, &snapshot(&onto), Ignore::default());
    assert_eq!(welcomes(&agent.proc), 1, "{}", agent.proc.output());
    the_box.stop();
}

/// Slow by nature, 80 to 90 s here, most of it waiting: nothing tells either end that a cut
/// link is cut, so the job fails only once the box gives up on the silent agent (its silence
/// limit: 60 s, ~61 s seen); the link must stay down until
/// then, or the connection would simply resume. Then the agent reconnects (its back-off is at
/// most 30 s; a couple of seconds seen) and is backed up again on slow drives (~17 s).
#[test]
fn link_cut_mid_backup_fails_the_job_and_the_agent_reconnects() {
    let Some(net) = network(1) else { return };
    let mut the_box = TheBox::start(&net, SLOW_LIBRARY, None);
    let mut agent = Agent::start(&net, &the_box, 0);
    let tree = slow_tree(&agent.tree());
    let source = agent.source(&agent.tree());

    let mut backup = the_box.backup(&source);
    wait_committed(&the_box, &source, &mut backup);
    net.set_link(0, false);
    let cut = Instant::now();
    let code = backup.wait_exit(LOST_GUARD);
    eprintln!("the job ended {:.1} s after the link was cut", cut.elapsed().as_secs_f64());
    let e = Ended::of(code, &backup);
    eprintln!("job {}: {}", e.job, e.message);
    e.failed("agent c0");
    let session = e.session.unwrap_or_else(|| panic!("the failed job names no session: {e:#?}"));
    failed_session_is_restorable(&the_box, &agent, session, &tree);
    // The box has closed the connection; the agent process lives on through the cut.
    wait_for(
        CONNECT_GUARD,
        "the box drops the lost connection",
        || the_box.agents()["c0"]["connected"].is_null().then_some(()),
        || format!("--- box log\n{}", the_box.log()),
    );
    agent.proc.assert_running();

    // Back: the same process reconnects by itself, and is backed up whole.
    net.set_link(0, true);
    let back = Instant::now();
    agent.connected =
        the_box.wait_connected("c0", net.client_addr(0), Some(&agent.connected), RECONNECT_GUARD);
    eprintln!("the agent reconnected {:.1} s after the link came back", back.elapsed().as_secs_f64());
    agent.proc.assert_running();
    assert_eq!(welcomes(&agent.proc), 2, "{}", agent.proc.output());
    let session = the_box.backup_ended(&source, BACKUP_GUARD).done();
    let row = the_box.session(session);
    assert_eq!(row["status"], "complete", "{row}");
    assert_eq!(row["objects"], tree.nodes.len() as u64, "{row}");
    let onto = agent.restore_to.join("after");
    the_box.restore_onto(session, "c0", &onto, tree.nodes.len());
    assert_same_tree(&tree, &snapshot(&onto), Ignore::default());
    eprintln!("the test took {:.1} s from the cut", cut.elapsed().as_secs_f64());
    the_box.stop();
}

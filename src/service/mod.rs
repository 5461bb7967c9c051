//! The appliance service (`coffer serve`): one tokio current_thread runtime for the control
//! plane — journal, status endpoint, systemd notifications, signals. READY=1 is sent only after
//! the journal was replayed; SIGTERM or SIGINT sends STOPPING=1 and ends it cleanly.
//!
//! Fault model. A part that fails — a journal that cannot be opened for writing (damaged, a
//! read-only file system, another process holding it), a library whose inventory fails —
//! makes the box *degraded*, not dead: it serves what works (read-only status without a
//! writable journal), says `DEGRADED: …` on the endpoint (`/healthz` answers 503), in STATUS=
//! and on the front panel, and tries the part again with a back-off ([`health`]) until it
//! recovers. It keeps pinging the watchdog meanwhile: a restart would not mend any of these.
//! Pings stop only when the data plane is stalled (a job made no progress for
//! `stall_seconds`), which a restart does mend.
//!
//! The control plane never waits on the store's lock, which a commit or a snapshot of the
//! catalog holds for as long as it takes: the ping reads atomics only ([`engine::Watch`]); the
//! refresh takes the store and the engine with `try_lock` and keeps its last values when they
//! are busy; whatever must wait for them (a queue scan, a retry) runs on the blocking pool.

pub mod agents;
pub mod control;
pub mod devices;
pub mod engine;
pub mod health;
pub mod http;
pub mod login;
pub mod meter;
pub mod notify;
pub mod status;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::board::{Board, Library};
use crate::device::TargetSpec;
use crate::journal::Mode;
use crate::store::{SharedStore, Store};
use engine::{Engine, Watch};
use health::{Health, Part};
use notify::Note;
use status::{SessionLine, Snapshot};

/// How often the snapshot the endpoint shows is refreshed from the catalog.
const REFRESH: Duration = Duration::from_secs(1);
/// How often the failing parts are checked for a retry that is due.
const RETRY_CHECK: Duration = Duration::from_secs(1);
const _: () = assert!(RETRY_CHECK.as_millis() <= health::FIRST_RETRY.as_millis());

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime or a socket could not be set up.
    #[error("{what}: {error}")]
    Io {
        /// What was being set up.
        what: String,
        /// The OS error (in the message, not repeated as a cause).
        error: std::io::Error,
    },
    /// The board is unusable.
    #[error(transparent)]
    Board(#[from] crate::board::BoardError),
    /// The board's default target is unusable.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// The journal refused what the job engine needs at start.
    #[error("the job engine cannot start: {0}")]
    Journal(String),
    /// The status endpoint's certificate cannot be had.
    #[error("status endpoint TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The agent CA in the state cannot be had.
    #[error("backup agents: {0}")]
    AgentCa(#[from] crate::net::ca::CaError),
}

/// Raises the soft limit on open files to the hard limit, as a server should: every
/// connection, cartridge and journal segment is a descriptor. Returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let now = lim.current;
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(target: "service", "cannot raise the open files limit to {:?}: {e}", lim.maximum);
            return now.unwrap_or(u64::MAX);
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

/// A command line the service runs for a client of its control socket, on the state it holds.
pub struct CommandCall {
    /// The arguments after `coffer`.
    pub argv: Vec<String>,
    /// The client's directory.
    pub cwd: std::path::PathBuf,
    /// The service's state.
    pub store: SharedStore,
    /// The command's output, streamed to the client.
    pub out: Box<dyn std::io::Write + Send>,
    /// Its messages, streamed to the client's stderr.
    pub err: Box<dyn std::io::Write + Send>,
    /// The backup agents connected now (`agent list` shows them, `agent revoke` closes one).
    pub agents: agents::Connected,
}

impl std::fmt::Debug for CommandCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandCall")
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

/// Runs a [`CommandCall`] and returns its exit code. The command line is the binary's, so the
/// binary hands the service this function.
pub type Executor = Arc<dyn Fn(CommandCall) -> u8 + Send + Sync>;

/// Runs the service on `board` with its state in `state` until SIGTERM or SIGINT; `executor`
/// runs the command lines clients send.
pub fn serve(board: Board, state: &Path, executor: Option<Executor>) -> Result<(), ServeError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| ServeError::Io { what, error: source }
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("tokio runtime"))?;
    rt.block_on(run(board, state, executor))
}

/// Work done on the blocking pool, as it comes back to the control loop.
enum Done {
    /// A scan of the job queue.
    Tick(Result<(), String>),
    /// A retry of a failing part.
    Retried(Retried),
}

/// Work on the blocking pool: the queue scan (one at a time) and the retries, each known by
/// its task, so that one that panics (a bug) is put right: the scan runs again at the next
/// tick, the part is retried later.
struct Background {
    set: tokio::task::JoinSet<Done>,
    scan: Option<tokio::task::Id>,
    retries: std::collections::HashMap<tokio::task::Id, Part>,
}

impl Background {
    fn new() -> Background {
        Background { set: tokio::task::JoinSet::new(), scan: None, retries: Default::default() }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn scanning(&self) -> bool {
        self.scan.is_some()
    }

    fn scan(&mut self, f: impl FnOnce() -> Done + Send + 'static) {
        self.scan = Some(self.set.spawn_blocking(f).id());
    }

    fn retry(&mut self, part: Part, f: impl FnOnce() -> Done + Send + 'static) {
        let id = self.set.spawn_blocking(f).id();
        self.retries.insert(id, part);
    }

    /// The next piece of work that ended: what it did, or the part whose retry panicked.
    async fn next(&mut self) -> Option<Result<Done, (Option<Part>, tokio::task::JoinError)>> {
        let (id, done) = match self.set.join_next_with_id().await? {
            Ok((id, done)) => (id, Ok(done)),
            Err(e) => (e.id(), Err(e)),
        };
        if self.scan == Some(id) {
            self.scan = None;
        }
        let part = self.retries.remove(&id);
        Some(done.map_err(|e| (part, e)))
    }
}

/// How a retry of a failing part went.
enum Retried {
    /// A library's inventory was read again: what it holds, or why not.
    Library(String, Result<String, String>),
    /// The journal was opened for writing again, with the job engine on it.
    Journal(Result<(SharedStore, Box<Engine>), String>),
}

/// The state the control loop holds.
struct Service {
    board: Board,
    state: PathBuf,
    default_target: TargetSpec,
    started: Instant,
    snap: Arc<Mutex<Snapshot>>,
    store: Option<SharedStore>,
    engine: Option<Arc<Mutex<Engine>>>,
    watch: Option<Watch>,
    socket: Option<PathBuf>,
    health: Health,
    shown: Shown,
    /// Runs the command lines clients send over the control socket.
    executor: Option<Executor>,
    /// The backup agents connected now.
    agents: agents::Connected,
}

async fn run(board: Board, state: &Path, executor: Option<Executor>) -> Result<(), ServeError> {
    let notifier = notify::Notifier::start();
    let mut svc = start(board, state, executor, &notifier).await?;
    let served = svc.serve(&notifier).await;
    notifier.send(Note::Stopping("stopping: closing the running job's session".into()));
    svc.stop().await;
    notifier.close();
    served
}

/// Everything up to READY=1: the journal, the libraries, the job engine, the endpoint. A part
/// that fails leaves the service degraded, with the part's retry scheduled.
async fn start(
    board: Board,
    state: &Path,
    executor: Option<Executor>,
    notifier: &notify::Notifier,
) -> Result<Service, ServeError> {
    let started = Instant::now();
    let open_files = raise_open_files_limit();
    tracing::debug!(target: "service", "open files limit {open_files}");
    let devices = device_lines(&board);
    tracing::info!(target: "service", "board {}: {}", board.name, devices.join("; "));
    notifier.send(Note::Status("replaying the journal".into()));
    let mut health = Health::default();
    let store = open_journal(state, &mut health, started).map(SharedStore::new);
    if let Some(s) = &store {
        crate::library::learn_catalog(s.lock().catalog());
    }
    notifier.send(Note::Status("reading the device inventory".into()));
    for (name, read) in inventory(&board).await {
        match read {
            Ok(what) => tracing::info!(target: "service", "library {name}: {what}"),
            Err(e) => {
                let why = format!("library {name}: inventory failed: {e}");
                let r = health.failed(Part::Library(name), why.clone(), started.elapsed(), true);
                tracing::error!(target: "service", "{why}; trying again in {} s", retry_in(r, started));
            }
        }
    }
    let snap = Arc::new(Mutex::new(Snapshot { board: board.name.clone(), devices, ..Snapshot::default() }));
    let default_target = board.default_target(state)?;
    let mut svc = Service {
        board,
        state: state.to_owned(),
        default_target,
        started,
        snap,
        store,
        engine: None,
        watch: None,
        socket: None,
        health,
        shown: Shown::default(),
        executor,
        agents: agents::Connected::default(),
    };
    svc.shown.agents = svc.agents.clone();
    // Jobs need a writable journal: a read-only service answers status only until the
    // journal can be written again.
    if let Some(s) = svc.store.clone().filter(|_| !svc.health.is_failing(&Part::Journal)) {
        let mut e = Engine::open(s.clone(), &svc.board, svc.default_target.clone(), crate::clock::unix_now())
            .map_err(|e| ServeError::Journal(e.to_string()))?;
        if svc.board.agents.is_some() {
            let spool = svc.board.agents.as_ref().and_then(|a| a.spool().ok().flatten());
            let spool = spool.map(|(dir, size)| crate::pipeline::spool::SpoolSpec { dir, size });
            e.set_agents(Arc::new(agents::Links { connected: svc.agents.clone(), store: s, spool }));
        }
        svc.start_jobs(e)?;
    }
    if let Some(st) = &svc.board.status {
        let addr = st.addr()?;
        let identity = if st.uses_tls() { Some(tls::identity(st, state)?) } else { None };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io { what: format!("status endpoint on {addr}"), error: source })?;
        let scheme = if identity.is_some() { "https" } else { "http" };
        match &identity {
            Some(id) => tracing::info!(
                target: "service",
                "status endpoint on https://{addr}/ (/healthz, /api/status, /metrics; {}), certificate SHA-256 {}",
                id.source,
                id.fingerprint
            ),
            None => {
                tracing::info!(target: "service", "status endpoint on http://{addr}/ (/healthz, /api/status, /metrics)")
            }
        }
        svc.snap.lock().expect("snapshot lock").endpoint = Some(status::EndpointLine {
            url: format!("{scheme}://{addr}/"),
            fingerprint: identity.as_ref().map(|i| i.fingerprint.clone()),
            ..status::EndpointLine::default()
        });
        let endpoint = http::Endpoint {
            snapshot: svc.snap.clone(),
            token: st.token.as_str().into(),
            tls: identity.map(|i| i.config),
            counters: svc.shown.http.clone(),
        };
        tokio::spawn(http::serve(listener, endpoint));
    }
    svc.listen_for_agents().await?;
    svc.refresh();
    Ok(svc)
}

/// Opens the journal for writing; when it cannot be, records the failure in `health` and
/// opens it read-only (or not at all) so that the status still shows the catalog.
fn open_journal(state: &Path, health: &mut Health, started: Instant) -> Option<Store> {
    match Store::open(state, Mode::Write) {
        Ok((s, report)) => {
            tracing::info!(
                target: "service",
                "journal in {} open for writing: {} records, {} sessions",
                state.display(),
                report.records,
                s.catalog().sessions().count()
            );
            Some(s)
        }
        Err(e) => {
            let why = format!("journal not writable, serving read-only: {e}");
            let r = health.failed(Part::Journal, why.clone(), started.elapsed(), true);
            tracing::error!(target: "service", "{why}; trying again in {} s", retry_in(r, started));
            Store::open(state, Mode::ReadOnly).ok().map(|(s, _)| s)
        }
    }
}

impl Service {
    /// Sends READY=1, then serves until SIGTERM or SIGINT: scans the queue, retries what
    /// failed, refreshes the status, pings the watchdog.
    async fn serve(&mut self, notifier: &notify::Notifier) -> Result<(), ServeError> {
        let mut last_status = self.snap.lock().expect("snapshot lock").activity.clone();
        notifier.send(Note::Ready(last_status.clone()));
        let watchdog = sd_notify::watchdog_enabled();
        let ping_every =
            watchdog.map_or(Duration::from_secs(3600), |w| (w / 2).max(Duration::from_millis(100)));
        let pinged = watchdog.map_or(String::new(), |w| {
            format!(" (watchdog {} ms, pinged every {} ms)", w.as_millis(), ping_every.as_millis())
        });
        tracing::info!(target: "service", "READY: {last_status}{pinged}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| ServeError::Io { what: "SIGTERM handler".into(), error: source })?;
        let mut refresh_tick = tokio::time::interval(REFRESH);
        let mut scan = tokio::time::interval(Duration::from_secs(self.board.jobs.scan_seconds));
        let mut retry = tokio::time::interval(RETRY_CHECK);
        let mut ping = tokio::time::interval(ping_every);
        let mut work = Background::new();
        let mut stall_seen = None;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = scan.tick() => {
                    // The scan journals through the store: on the blocking pool, so that a
                    // snapshot holding the store does not hold the control plane.
                    if let Some(e) = self.engine.clone().filter(|_| !work.scanning()) {
                        work.scan(move || {
                            Done::Tick(lock(&e).tick(crate::clock::unix_now()).map_err(|e| e.to_string()))
                        });
                    }
                }
                _ = retry.tick() => {
                    for part in self.health.due(self.started.elapsed()) {
                        self.retry(part, &mut work);
                    }
                }
                Some(done) = work.next(), if !work.is_empty() => match done {
                    Ok(Done::Tick(r)) => self.ticked(r),
                    Ok(Done::Retried(r)) => self.retried(r)?,
                    Err((part, e)) => {
                        tracing::error!(target: "service", "background work failed (a bug): {e}");
                        if let Some(part) = part {
                            let why = format!("{part}: its retry failed (a bug: see the log)");
                            self.health.failed(part, why, self.started.elapsed(), true);
                        }
                    }
                },
                _ = refresh_tick.tick() => {
                    self.refresh();
                    let now = self.snap.lock().expect("snapshot lock").activity.clone();
                    if now != last_status {
                        notifier.send(Note::Status(now.clone()));
                        last_status = now;
                    }
                }
                _ = ping.tick(), if watchdog.is_some() => self.ping(&mut stall_seen, notifier),
            }
        }
    }

    /// Pings the watchdog unless the data plane is stalled: a stalled job stops the pings
    /// and systemd restarts the service. Atomics only: nothing here waits on a lock.
    /// `stall_seen` is the job whose stall was logged, so that it is logged once.
    fn ping(&self, stall_seen: &mut Option<u64>, notifier: &notify::Notifier) {
        let stalled = self.watch.as_ref().and_then(|w| w.stalled(crate::clock::unix_now()));
        match (stalled, *stall_seen) {
            (None, seen) => {
                if let Some(job) = seen {
                    tracing::warn!(target: "service", "job {job} moves again: watchdog pings resume");
                }
                *stall_seen = None;
                notifier.send(Note::Watchdog);
            }
            (Some((job, secs)), seen) => {
                if seen != Some(job) {
                    tracing::error!(
                        target: "service",
                        "data plane stalled: job {job} made no progress for {secs} s; withholding the \
                         watchdog ping so that systemd restarts the service"
                    );
                }
                *stall_seen = Some(job);
            }
        }
    }

    /// Cancels the running job cleanly (its session parts are closed and committed) and
    /// removes the control socket.
    async fn stop(&self) {
        tracing::info!(target: "service", "stopping");
        if let Some(e) = self.engine.clone() {
            // The job's threads close its session parts and commit; the runtime keeps serving.
            let done = tokio::task::spawn_blocking(move || {
                let mut e = lock(&e);
                e.shutdown();
                e.finish(crate::clock::unix_now)
            })
            .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(target: "service", "could not journal the stopped job: {err}")
                }
                Err(err) => tracing::error!(target: "service", "stopping the job failed: {err}"),
            }
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Listens for backup agents where the board says, when it says and the journal is
    /// writable (enrolment journals).
    async fn listen_for_agents(&mut self) -> Result<(), ServeError> {
        let (Some(a), Some(store)) = (&self.board.agents, &self.store) else { return Ok(()) };
        if self.engine.is_none() {
            tracing::warn!(target: "service", "backup agents not served: the journal is not writable");
            return Ok(());
        }
        let addr = a.addr()?;
        let ca = crate::net::ca::BoxCa::load_or_create(&self.state, &self.board.name)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Io { what: format!("agent listener on {addr}"), error })?;
        tracing::info!(
            target: "service",
            "backup agents on {addr} (mutual TLS), box certificate SHA-256 {}",
            ca.fingerprint()
        );
        let serve = agents::serve(
            listener,
            std::sync::Arc::new(ca),
            store.clone(),
            self.agents.clone(),
            self.board.name.clone(),
        );
        tokio::spawn(serve);
        Ok(())
    }

    /// Starts taking jobs with `engine`: the engine, the watchdog's view of it, the control
    /// socket.
    fn start_jobs(&mut self, engine: Engine) -> Result<(), ServeError> {
        self.watch = Some(engine.watch());
        let engine = Arc::new(Mutex::new(engine));
        self.engine = Some(engine.clone());
        let (listener, path) =
            control::bind(&self.state, self.board.control.group.as_deref()).map_err(|source| {
                ServeError::Io { what: format!("control socket in {}", self.state.display()), error: source }
            })?;
        let shared = control::Shared {
            engine,
            snapshot: self.snap.clone(),
            default_library: self.board.libraries.first().map(|l| l.name().clone()),
            store: self.store.clone(),
            executor: self.executor.clone(),
            agents: self.agents.clone(),
        };
        tokio::spawn(control::serve(listener, shared));
        tracing::info!(target: "service", "job engine running; control socket {}", path.display());
        self.socket = Some(path);
        Ok(())
    }

    /// A scan of the queue ended.
    fn ticked(&mut self, r: Result<(), String>) {
        let Err(err) = r else { return };
        if self.health.is_failing(&Part::Journal) {
            return;
        }
        // The store refuses every commit after a failed one: only a restart replays the journal.
        let why = format!("the job queue cannot journal: {err} (restart the service to replay the journal)");
        tracing::error!(target: "service", "{why}");
        self.health.failed(Part::Journal, why, self.started.elapsed(), false);
    }

    /// Tries `part` again on the blocking pool.
    fn retry(&self, part: Part, work: &mut Background) {
        tracing::info!(target: "service", "trying {part} again");
        match part.clone() {
            Part::Library(name) => {
                let store = self.store.clone();
                work.retry(part, move || {
                    let read = read_inventory(&name);
                    if let (Ok(_), Some(s)) = (&read, &store) {
                        crate::library::learn_catalog(s.lock().catalog());
                    }
                    Done::Retried(Retried::Library(name, read))
                });
            }
            Part::Journal => {
                let (state, board, target) =
                    (self.state.clone(), self.board.clone(), self.default_target.clone());
                work.retry(part, move || {
                    let opened =
                        Store::open(&state, Mode::Write).map_err(|e| e.to_string()).and_then(|(s, _)| {
                            let s = SharedStore::new(s);
                            crate::library::learn_catalog(s.lock().catalog());
                            let e = Engine::open(s.clone(), &board, target, crate::clock::unix_now())
                                .map_err(|e| format!("the job engine cannot start: {e}"))?;
                            Ok((s, Box::new(e)))
                        });
                    Done::Retried(Retried::Journal(opened))
                });
            }
        }
    }

    /// A retry ended.
    fn retried(&mut self, done: Retried) -> Result<(), ServeError> {
        let now = self.started.elapsed();
        match done {
            Retried::Library(name, Ok(what)) => {
                let failures = self.health.recovered(&Part::Library(name.clone())).unwrap_or(0);
                tracing::info!(target: "service", "library {name} is back after {failures} failed inventories: {what}");
            }
            Retried::Library(name, Err(e)) => {
                let why = format!("library {name}: inventory failed: {e}");
                let r = self.health.failed(Part::Library(name), why.clone(), now, true);
                tracing::warn!(target: "service", "{why} ({} tries); trying again in {} s", r.failures, retry_in(r, self.started));
            }
            Retried::Journal(Ok((store, engine))) => {
                let failures = self.health.recovered(&Part::Journal).unwrap_or(0);
                tracing::info!(target: "service", "the journal is writable again after {failures} failed tries");
                self.store = Some(store);
                self.start_jobs(*engine)?;
            }
            Retried::Journal(Err(e)) => {
                let why = format!("journal not writable, serving read-only: {e}");
                let r = self.health.failed(Part::Journal, why.clone(), now, true);
                tracing::warn!(target: "service", "{why} ({} tries); trying again in {} s", r.failures, retry_in(r, self.started));
            }
        }
        Ok(())
    }

    fn refresh(&mut self) {
        let problem = self.health.problem();
        // After a failed commit the engine is there but nothing can be journaled.
        let writable = self.engine.is_some() && !self.health.is_failing(&Part::Journal);
        refresh(
            &self.snap,
            self.store.as_ref(),
            self.engine.as_deref(),
            self.watch.as_ref(),
            Condition { problem: problem.as_deref(), writable },
            self.started,
            &mut self.shown,
        );
    }
}

/// The agents as shown: each with its connection, rate since the last refresh and newest
/// session (found in one pass over the sessions, newest first).
fn agent_lines(c: &crate::catalog::Catalog, shown: &mut Shown, now_ms: u64) -> Vec<status::AgentLine> {
    let connected = shown.agents.list();
    let mut last: std::collections::HashMap<&str, status::AgentBackup> = std::collections::HashMap::new();
    let names: std::collections::HashSet<&str> = c.agents().map(|a| a.name()).collect();
    for x in c.sessions().rev() {
        if last.len() == names.len() {
            break;
        }
        for source in x.start().source.split(' ') {
            let Some(name) = source.strip_prefix("agent:").and_then(|r| r.split_once(':')).map(|(n, _)| n)
            else {
                continue;
            };
            if let Some(&n) = names.get(name) {
                last.entry(n).or_insert_with(|| status::AgentBackup {
                    session: x.id(),
                    status: x.finish().map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase()),
                    started: x.start().started,
                });
            }
        }
    }
    let mut rates = std::collections::HashMap::new();
    let lines = c
        .agents()
        .map(|a| {
            let conn = connected.get(a.name());
            let bytes = conn.map_or(0, |k| k.bytes.load(std::sync::atomic::Ordering::Relaxed));
            let rate = match shown.agent_bytes.get(a.name()) {
                Some(&(b, at)) if conn.is_some() && now_ms > at && bytes >= b => {
                    (bytes - b) * 1000 / (now_ms - at)
                }
                _ => 0,
            };
            if conn.is_some() {
                rates.insert(a.name().to_owned(), (bytes, now_ms));
            }
            status::AgentLine {
                name: a.name().to_owned(),
                state: format!("{:?}", a.state()).to_lowercase(),
                address: conn.map(|k| k.address.to_string()),
                since: conn.map(|k| k.since),
                bytes_per_s: rate,
                bytes,
                last_backup: last.get(a.name()).cloned(),
            }
        })
        .collect();
    shown.agent_bytes = rates;
    lines
}

/// Seconds from now until the retry `r`, rounded up (0 when it is not retried).
fn retry_in(r: health::Retry, started: Instant) -> u64 {
    r.at.map_or(0, |at| at.saturating_sub(started.elapsed()).as_millis().div_ceil(1000) as u64)
}

fn lock(e: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine if no one holds it.
fn try_lock(e: &Mutex<Engine>) -> Option<MutexGuard<'_, Engine>> {
    match e.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Opens every library of the board and reads its element status: what each holds, or why not.
async fn inventory(board: &Board) -> Vec<(String, Result<String, String>)> {
    let names: Vec<String> = board.libraries.iter().map(|l| l.name().clone()).collect();
    let read = tokio::task::spawn_blocking(move || {
        names
            .into_iter()
            .map(|n| {
                let r = read_inventory(&n);
                (n, r)
            })
            .collect::<Vec<_>>()
    });
    read.await.unwrap_or_else(|e| vec![("?".into(), Err(format!("inventory failed: {e}")))])
}

/// Opens library `name` (if it is not open yet) and reads its element status.
fn read_inventory(name: &str) -> Result<String, String> {
    // The library's errors name it already; the caller's message does too.
    let prefix = format!("library {name}: ");
    let why = |e: crate::device::DeviceError| {
        let e = e.to_string();
        e.strip_prefix(&prefix).map_or(e.clone(), str::to_owned)
    };
    let lib = crate::library::open(name).map_err(why)?;
    let inv = lib.refresh().map_err(why)?;
    Ok(found(&lib.drives(), inv.data_cartridges().len()))
}

/// What an inventory found, for the log: `2 drives (drive 0 empty, drive 1 holds CFR0001L8),
/// 4 cartridges`.
fn found(drives: &[crate::library::ops::DriveState], cartridges: usize) -> String {
    let each: Vec<String> = drives
        .iter()
        .map(|d| match (&d.offline, &d.barcode) {
            (Some(why), _) => format!("drive {} offline: {why}", d.drive),
            (None, Some(b)) => format!("drive {} holds {b}", d.drive),
            (None, None) => format!("drive {} empty", d.drive),
        })
        .collect();
    format!("{} drives ({}), {cartridges} cartridges", drives.len(), each.join(", "))
}

/// Libraries and targets of the board, a line each.
fn device_lines(board: &Board) -> Vec<String> {
    let libs = board.libraries.iter().map(|l| match l {
        Library::Virtual(v) => {
            format!("{}: virtual library, {} drives, {} cartridges", v.name, v.drives, v.cartridges)
        }
        Library::Scsi(s) => format!("{}: SCSI library, {} drives", s.name, s.drives.len()),
    });
    libs.chain(board.targets.iter().map(|t| format!("{}: {}", t.name, t.target))).collect()
}

/// What the display keeps from one refresh to the next.
#[derive(Debug, Default)]
struct Shown {
    meter: meter::Meter,
    /// The status endpoint's connection counters.
    http: Arc<http::Counters>,
    /// Refreshes so far: the front panel shows each drive for [`PANEL_TURN`] of them.
    refreshes: u64,
    /// The running job's counters as last read (kept while the engine is busy).
    progress: Option<engine::Progress>,
    /// The connected backup agents.
    agents: agents::Connected,
    /// Each connected agent's bytes at the last refresh, and when, for its rate.
    agent_bytes: std::collections::HashMap<String, (u64, u64)>,
}

/// What the control loop knows of the box's health, for a refresh.
#[derive(Debug, Clone, Copy)]
struct Condition<'a> {
    /// Why the box is degraded, if it is.
    problem: Option<&'a str>,
    /// The journal takes records.
    writable: bool,
}

/// Refreshes the front panel's drive line stays on one drive.
const PANEL_TURN: u64 = 3;

/// Updates the shown snapshot from the catalog, the libraries and the running job. The store
/// and the engine are taken only when free: when a commit or a snapshot holds them, what came
/// from them keeps its last values, and what the atomics say (stall, health) is still new.
fn refresh(
    snap: &Mutex<Snapshot>,
    store: Option<&SharedStore>,
    engine: Option<&Mutex<Engine>>,
    watch: Option<&Watch>,
    Condition { problem, writable }: Condition<'_>,
    started: Instant,
    shown: &mut Shown,
) {
    let now = crate::clock::unix_now();
    let stalled = watch.and_then(|w| w.stalled(now));
    match engine.map(try_lock) {
        Some(Some(e)) => shown.progress = e.progress(now),
        Some(None) => {}
        None => shown.progress = None,
    }
    let progress = shown.progress.clone();
    let sample = progress.as_ref().map(|p| meter::Sample {
        at_ms: started.elapsed().as_millis() as u64,
        job: p.job,
        bytes_in: p.bytes_in,
        bytes_stored: p.bytes_stored,
    });
    let throughput = shown.meter.sample(sample);
    let guard = store.and_then(SharedStore::try_lock);
    let catalog = guard.as_ref().map(|g| g.catalog());
    let journal_size = guard.as_ref().map(|g| g.journal_size());
    let mut s = snap.lock().expect("snapshot lock");
    s.uptime = started.elapsed().as_secs();
    s.throughput = throughput;
    if store.is_none() || catalog.is_some() {
        let (drives, carts) = devices::lines(catalog, (&s.drives, &s.cartridges));
        s.drives = drives;
        s.cartridges = carts;
    }
    s.healthy = problem.is_none() && stalled.is_none();
    s.journal.writable = writable;
    if let Some(e) = &mut s.endpoint {
        e.connections = shown.http.open.load(std::sync::atomic::Ordering::Relaxed) as u64;
        e.refused = shown.http.refused.load(std::sync::atomic::Ordering::Relaxed);
    }
    if let Some((records, bytes)) = journal_size {
        (s.journal.records, s.journal.bytes) = (records, bytes);
    }
    if let Some(c) = catalog {
        s.jobs = engine::job_lines(c)
            .into_iter()
            .map(|j| status::JobLine {
                id: j.id,
                name: j.name,
                state: format!("{:?}", j.state).to_lowercase(),
                next_run: j.next_run,
                last: j.last,
                progress: None,
            })
            .collect();
        s.sessions = c.sessions().count() as u64;
        s.media = c.media().count() as u64;
        s.latest = c.sessions().next_back().map(|x| SessionLine {
            id: x.id(),
            status: x.finish().map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase()),
            objects: x.object_count(),
            bytes: x.finish().map_or(0, |f| f.raw_bytes),
        });
        s.agents = agent_lines(c, shown, started.elapsed().as_millis() as u64);
    }
    drop(guard);
    for j in &mut s.jobs {
        j.progress = progress.as_ref().filter(|p| p.job == j.id).map(|p| status::JobProgress {
            bytes_in: p.bytes_in,
            bytes_stored: p.bytes_stored,
            objects: p.objects,
            session: p.session,
            streams: p.streams as u16,
        });
    }
    s.asks = crate::library::opened().iter().flat_map(|l| l.asks()).collect();
    let waiting = s.asks.iter().find(|a| a.starts_with(crate::library::WAITING_MEDIA)).cloned();
    s.activity = match (problem, stalled, &progress) {
        (None, None, Some(p)) if !p.verifying && waiting.is_some() => {
            format!("backup: job {} ({}) {}", p.job, p.name, waiting.unwrap_or_default())
        }
        (Some(p), _, _) => p.to_owned(),
        (None, Some((job, secs)), _) => {
            format!("STALLED: job {job} has made no progress for {secs} s (watchdog pings withheld)")
        }
        (None, None, Some(p)) if p.verifying => format!(
            "verify: job {} ({}) session {}, {} objects read back",
            p.job, p.name, p.session, p.objects
        ),
        (None, None, Some(p)) => format!(
            "backup: job {} ({}) session {}, {} sub-jobs, {} objects, {} bytes in",
            p.job, p.name, p.session, p.streams, p.objects, p.bytes_in
        ),
        (None, None, None) => "idle".into(),
    };
    shown.refreshes += 1;
    s.panel = crate::console::panel::lines(&s, shown.refreshes / PANEL_TURN).map(|l| l.as_str().to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_work_that_panics_frees_the_scan_and_names_its_part() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut work = Background::new();
            work.scan(|| panic!("a scan that panics"));
            assert!(work.scanning());
            let Some(Err((part, _))) = work.next().await else { panic!("the panic is reported") };
            assert_eq!(part, None);
            assert!(!work.scanning(), "the next tick scans again");
            let lib = Part::Library("vlib".into());
            work.retry(lib.clone(), || panic!("a retry that panics"));
            work.retry(Part::Journal, || Done::Tick(Ok(())));
            let mut seen = Vec::new();
            while let Some(done) = work.next().await {
                seen.push(match done {
                    Ok(_) => None,
                    Err((part, _)) => part,
                });
            }
            seen.sort();
            assert_eq!(seen, [None, Some(lib)]);
            assert!(work.is_empty() && work.retries.is_empty());
        });
    }

    #[test]
    fn an_inventory_is_logged_drive_by_drive() {
        use crate::library::ops::DriveState;
        let d = |drive, offline: Option<&str>, barcode: Option<&str>| DriveState {
            drive,
            offline: offline.map(Into::into),
            barcode: barcode.map(Into::into),
            busy: false,
        };
        let drives = [d(0, None, None), d(1, None, Some("CFR0001L8")), d(2, Some("cleaning required"), None)];
        assert_eq!(
            found(&drives, 4),
            "3 drives (drive 0 empty, drive 1 holds CFR0001L8, drive 2 offline: cleaning required), 4 cartridges"
        );
    }

    #[test]
    fn the_refresh_does_not_wait_for_a_held_store_and_keeps_its_last_values() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Mode::Write).unwrap();
        let store = SharedStore::new(store);
        let snap = Arc::new(Mutex::new(Snapshot { sessions: 7, ..Snapshot::default() }));
        let started = Instant::now();
        // A snapshot of the catalog holds the store for as long as it takes.
        let held = store.lock();
        let (s2, st2) = (snap.clone(), store.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ok = Condition { problem: None, writable: true };
            refresh(&s2, Some(&st2), None, None, ok, started, &mut Shown::default());
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("the refresh returns while the store is held");
        {
            let s = snap.lock().unwrap();
            assert_eq!(s.sessions, 7, "what comes from the catalog keeps its last value");
            assert!(s.healthy && s.activity == "idle", "{s:?}");
        }
        drop(held);
        let ok = Condition { problem: None, writable: true };
        refresh(&snap, Some(&store), None, None, ok, started, &mut Shown::default());
        assert_eq!(snap.lock().unwrap().sessions, 0, "a free store is read");
    }
}

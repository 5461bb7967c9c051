//! The appliance service (`coffer serve`): one tokio current_thread runtime for the control
//! plane — journal, status endpoint, systemd notifications, signals. READY=1 is sent only after
//! the journal was replayed; WATCHDOG=1 pings only while the service is healthy; SIGTERM or
//! SIGINT sends STOPPING=1 and ends it cleanly.
//!
//! A journal that is damaged before its last commit does not stop the service: it starts
//! read-only, says so in STATUS= and on the status endpoint (`degraded`), and stops pinging the
//! watchdog-free parts only; nothing is written to it.

pub mod control;
pub mod devices;
pub mod engine;
pub mod http;
pub mod meter;
pub mod notify;
pub mod status;
pub mod tls;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::board::{Board, Library};
use crate::journal::Mode;
use crate::store::{SharedStore, Store};
use engine::Engine;
use notify::Note;
use status::{SessionLine, Snapshot};

/// How often the snapshot the endpoint shows is refreshed from the catalog.
const REFRESH: Duration = Duration::from_secs(1);

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

/// Runs the service on `board` with its state in `state` until SIGTERM or SIGINT.
pub fn serve(board: Board, state: &Path) -> Result<(), ServeError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| ServeError::Io { what, error: source }
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("tokio runtime"))?;
    rt.block_on(run(board, state))
}

async fn run(board: Board, state: &Path) -> Result<(), ServeError> {
    let started = Instant::now();
    let open_files = raise_open_files_limit();
    tracing::debug!(target: "service", "open files limit {open_files}");
    let notifier = notify::Notifier::start();
    notifier.send(Note::Status("replaying the journal".into()));
    let (store, healthy, activity) = match Store::open(state, Mode::Write) {
        Ok((s, _)) => (Some(s), true, "idle".to_owned()),
        Err(e) => {
            let msg = format!("journal not writable, serving read-only: {e}");
            tracing::error!(target: "service", "{msg}");
            match Store::open(state, Mode::ReadOnly) {
                Ok((s, _)) => (Some(s), false, msg),
                Err(_) => (None, false, msg),
            }
        }
    };
    let store = store.map(SharedStore::new);
    if let Some(s) = &store {
        crate::library::learn_catalog(s.lock().catalog());
    }
    notifier.send(Note::Status("reading the device inventory".into()));
    let inventory_problems = inventory(&board).await;
    let devices = device_lines(&board);
    let snap = Arc::new(Mutex::new(Snapshot {
        board: board.name.clone(),
        healthy: healthy && inventory_problems.is_empty(),
        devices,
        ..Snapshot::default()
    }));
    // Jobs need a writable journal: a read-only service answers status only.
    let engine = match (&store, healthy) {
        (Some(s), true) => {
            let e = Engine::open(s.clone(), &board, board.default_target(state)?, crate::clock::unix_now())
                .map_err(|e| ServeError::Journal(e.to_string()))?;
            Some(Arc::new(Mutex::new(e)))
        }
        _ => None,
    };
    // Why the service is not healthy, apart from a stalled job: set at start, or when the
    // queue cannot journal.
    let mut problem = match (healthy, inventory_problems.is_empty()) {
        (false, _) => Some(activity),
        (true, false) => Some(inventory_problems.join("; ")),
        (true, true) => None,
    };
    let mut shown = Shown::default();
    if let Some(st) = &board.status {
        let addr = st.addr()?;
        let identity = if st.uses_tls() { Some(tls::identity(st, state)?) } else { None };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io { what: format!("status endpoint on {addr}"), error: source })?;
        let scheme = if identity.is_some() { "https" } else { "http" };
        if let Some(id) = &identity {
            tracing::info!(target: "service", "status endpoint on https://{addr}/ ({}), certificate SHA-256 {}", id.source, id.fingerprint);
        }
        snap.lock().expect("snapshot lock").endpoint = Some(status::EndpointLine {
            url: format!("{scheme}://{addr}/"),
            fingerprint: identity.as_ref().map(|i| i.fingerprint.clone()),
            ..status::EndpointLine::default()
        });
        let endpoint = http::Endpoint {
            snapshot: snap.clone(),
            token: st.token.as_str().into(),
            tls: identity.map(|i| i.config),
            counters: shown.http.clone(),
        };
        tokio::spawn(http::serve(listener, endpoint));
    }
    refresh(&snap, store.as_ref(), engine.as_deref(), problem.as_deref(), started, &mut shown);
    let mut socket = None;
    if let Some(engine) = &engine {
        let (listener, path) = control::bind(state).map_err(|source| ServeError::Io {
            what: format!("control socket in {}", state.display()),
            error: source,
        })?;
        let shared = control::Shared {
            engine: engine.clone(),
            snapshot: snap.clone(),
            default_library: board.libraries.first().map(|l| l.name().clone()),
        };
        tokio::spawn(control::serve(listener, shared));
        socket = Some(path);
    }
    let status = snap.lock().expect("snapshot lock").activity.clone();
    notifier.send(Note::Ready(status.clone()));
    let watchdog = sd_notify::watchdog_enabled();
    let ping_every = watchdog.map_or(Duration::from_secs(3600), |w| (w / 2).max(Duration::from_millis(100)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| ServeError::Io { what: "SIGTERM handler".into(), error: source })?;
    let mut refresh_tick = tokio::time::interval(REFRESH);
    let mut scan = tokio::time::interval(Duration::from_secs(board.jobs.scan_seconds));
    let mut ping = tokio::time::interval(ping_every);
    let mut last_status = status;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = scan.tick() => {
                if let Some(e) = &engine
                    && let Err(err) = lock(e).tick(crate::clock::unix_now())
                {
                    tracing::error!(target: "service", "the job queue cannot journal: {err}");
                    problem = Some(format!("the job queue cannot journal: {err}"));
                }
            }
            _ = refresh_tick.tick() => {
                refresh(&snap, store.as_ref(), engine.as_deref(), problem.as_deref(), started, &mut shown);
                let now = snap.lock().expect("snapshot lock").activity.clone();
                if now != last_status {
                    notifier.send(Note::Status(now.clone()));
                    last_status = now;
                }
            }
            _ = ping.tick(), if watchdog.is_some() => {
                // Only a healthy service with a data plane that moves pings: a stalled writer
                // stops the pings and systemd restarts the service.
                let stalled = engine.as_deref().and_then(|e| lock(e).stalled(crate::clock::unix_now()));
                if problem.is_none() && stalled.is_none() {
                    notifier.send(Note::Watchdog);
                } else {
                    tracing::error!(target: "service", "data plane stalled or unhealthy: withholding the watchdog ping");
                }
            }
        }
    }
    notifier.send(Note::Stopping("stopping: closing the running job's session".into()));
    if let Some(e) = &engine {
        lock(e).shutdown();
        let e = e.clone();
        // The job's threads close its session parts and commit; the runtime keeps serving.
        let done = tokio::task::spawn_blocking(move || lock(&e).finish(crate::clock::unix_now)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(target: "service", "could not journal the stopped job: {err}"),
            Err(err) => tracing::error!(target: "service", "stopping the job failed: {err}"),
        }
    }
    if let Some(p) = socket {
        let _ = std::fs::remove_file(p);
    }
    notifier.close();
    Ok(())
}

fn lock(e: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens every library of the board and reads its element status; what failed, for people.
async fn inventory(board: &Board) -> Vec<String> {
    let names: Vec<String> = board.libraries.iter().map(|l| l.name().clone()).collect();
    let read = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .filter_map(|n| {
                let r = crate::library::open(n).and_then(|l| l.refresh().map(|_| ()));
                r.err().map(|e| format!("library {n}: {e}"))
            })
            .collect::<Vec<_>>()
    });
    read.await.unwrap_or_else(|e| vec![format!("inventory failed: {e}")])
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
}

/// Refreshes the front panel's drive line stays on one drive.
const PANEL_TURN: u64 = 3;

/// Updates the shown snapshot from the catalog, the libraries and the running job.
fn refresh(
    snap: &Mutex<Snapshot>,
    store: Option<&SharedStore>,
    engine: Option<&Mutex<Engine>>,
    problem: Option<&str>,
    started: Instant,
    shown: &mut Shown,
) {
    let now = crate::clock::unix_now();
    let (progress, stalled, jobs) = engine.map_or((None, None, Vec::new()), |e| {
        let e = lock(e);
        (e.progress(now), e.stalled(now), e.list())
    });
    let sample = progress.as_ref().map(|p| meter::Sample {
        at_ms: started.elapsed().as_millis() as u64,
        job: p.job,
        bytes_in: p.bytes_in,
        bytes_stored: p.bytes_stored,
    });
    let throughput = shown.meter.sample(sample);
    let (drives, carts) = {
        let before = snap.lock().expect("snapshot lock");
        let guard = store.map(|s| s.lock());
        devices::lines(guard.as_ref().map(|g| g.catalog()), (&before.drives, &before.cartridges))
    };
    let mut s = snap.lock().expect("snapshot lock");
    s.uptime = started.elapsed().as_secs();
    s.throughput = throughput;
    s.drives = drives;
    s.cartridges = carts;
    s.healthy = problem.is_none() && stalled.is_none();
    s.journal.writable = engine.is_some();
    if let Some(e) = &mut s.endpoint {
        e.connections = shown.http.open.load(std::sync::atomic::Ordering::Relaxed) as u64;
        e.refused = shown.http.refused.load(std::sync::atomic::Ordering::Relaxed);
    }
    s.jobs = jobs
        .into_iter()
        .map(|j| status::JobLine {
            id: j.id,
            name: j.name,
            state: format!("{:?}", j.state).to_lowercase(),
            next_run: j.next_run,
            last: j.last,
            progress: progress.as_ref().filter(|p| p.job == j.id).map(|p| status::JobProgress {
                bytes_in: p.bytes_in,
                bytes_stored: p.bytes_stored,
                objects: p.objects,
                session: p.session,
                streams: p.streams as u16,
            }),
        })
        .collect();
    s.activity = match (problem, stalled, &progress) {
        (Some(p), _, _) => p.to_owned(),
        (None, Some((job, secs)), _) => {
            format!("STALLED: job {job} has made no progress for {secs} s (watchdog pings withheld)")
        }
        (None, None, Some(p)) => format!(
            "backup: job {} ({}) session {}, {} sub-jobs, {} objects, {} bytes in",
            p.job, p.name, p.session, p.streams, p.objects, p.bytes_in
        ),
        (None, None, None) => "idle".into(),
    };
    shown.refreshes += 1;
    s.panel = crate::console::panel::lines(&s, shown.refreshes / PANEL_TURN).map(|l| l.as_str().to_owned());
    let Some(store) = store else {
        return;
    };
    let store = store.lock();
    (s.journal.records, s.journal.bytes) = store.journal_size();
    let c = store.catalog();
    s.sessions = c.sessions().count() as u64;
    s.media = c.media().count() as u64;
    s.latest = c.sessions().next_back().map(|x| SessionLine {
        id: x.id(),
        status: x.finish().map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase()),
        objects: x.objects().len() as u64,
        bytes: x.finish().map_or(0, |f| f.raw_bytes),
    });
}

//! The appliance service (`coffer serve`): one tokio current_thread runtime for the control
//! plane — journal, status endpoint, systemd notifications, signals. READY=1 is sent only after
//! the journal was replayed; WATCHDOG=1 pings only while the service is healthy; SIGTERM or
//! SIGINT sends STOPPING=1 and ends it cleanly.
//!
//! A journal that is damaged before its last commit does not stop the service: it starts
//! read-only, says so in STATUS= and on the status endpoint (`degraded`), and stops pinging the
//! watchdog-free parts only; nothing is written to it.

pub mod http;
pub mod status;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::board::{Board, Library};
use crate::journal::Mode;
use crate::store::Store;
use status::{SessionLine, Snapshot};

/// How often the snapshot the endpoint shows is refreshed from the catalog.
const REFRESH: Duration = Duration::from_secs(1);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime or a socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The board is unusable.
    #[error(transparent)]
    Board(#[from] crate::board::BoardError),
}

/// Runs the service on `board` with its state in `state` until SIGTERM or SIGINT.
pub fn serve(board: Board, state: &Path) -> Result<(), ServeError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| ServeError::Io { what, source }
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("tokio runtime"))?;
    rt.block_on(run(board, state))
}

async fn run(board: Board, state: &Path) -> Result<(), ServeError> {
    let started = Instant::now();
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
    let devices = device_lines(&board);
    let snap = Arc::new(Mutex::new(Snapshot {
        board: board.name.clone(),
        healthy,
        activity,
        devices,
        ..Snapshot::default()
    }));
    refresh(&snap, store.as_ref(), started);
    if let Some(st) = &board.status {
        let addr = st.addr()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io { what: format!("status endpoint on {addr}"), source })?;
        tokio::spawn(http::serve(listener, snap.clone(), st.token.clone()));
    }
    let status = snap.lock().expect("snapshot lock").activity.clone();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    let watchdog = sd_notify::watchdog_enabled();
    let ping_every = watchdog.map_or(Duration::from_secs(3600), |w| (w / 2).max(Duration::from_millis(100)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| ServeError::Io { what: "SIGTERM handler".into(), source })?;
    let mut refresh_tick = tokio::time::interval(REFRESH);
    let mut ping = tokio::time::interval(ping_every);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = refresh_tick.tick() => refresh(&snap, store.as_ref(), started),
            _ = ping.tick(), if watchdog.is_some() && healthy => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
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

/// Updates the shown snapshot from the catalog.
fn refresh(snap: &Mutex<Snapshot>, store: Option<&Store>, started: Instant) {
    let mut s = snap.lock().expect("snapshot lock");
    s.uptime = started.elapsed().as_secs();
    let Some(store) = store else {
        return;
    };
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

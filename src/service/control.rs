//! The control socket's server: accepts connections on `<state>/control.sock` (mode 0660),
//! reads one request per line (bounded by [`MAX_LINE`]), answers each with one reply line.
//! Job requests go to the engine; media operations, which may move cartridges for minutes,
//! run on the blocking pool so the control plane keeps answering meanwhile.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::engine::Engine;
use super::status::Snapshot;
use crate::control::{MAX_LINE, Reply, Request, SOCKET_NAME, parse_request};

/// Most connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// What a connection needs.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The job engine.
    pub engine: Arc<Mutex<Engine>>,
    /// What the status shows.
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The board's first library, for media requests that name none.
    pub default_library: Option<String>,
}

/// Binds the socket in `state` (replacing a stale one: the state lock proves no other
/// service runs on it).
pub fn bind(state: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = state.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok((listener, path))
}

/// Serves connections until the runtime ends.
pub async fn serve(listener: UnixListener, shared: Shared) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(stream, shared).await;
            drop(permit);
        });
    }
}

async fn connection(stream: UnixStream, shared: Shared) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut read).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let reply = if line.len() > MAX_LINE {
            // The rest of an over-long line is not read: the connection ends after the reply.
            let r = Reply::err(format!("request over {MAX_LINE} bytes refused"));
            let _ = send(&mut write, &r).await;
            return;
        } else {
            match std::str::from_utf8(&line).map_err(|_| "malformed request: not UTF-8".to_owned()) {
                Ok(text) => match parse_request(text.trim_end()) {
                    Ok(req) => answer(req, &shared).await,
                    Err(e) => Reply::err(e),
                },
                Err(e) => Reply::err(e),
            }
        };
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut text =
        serde_json::to_string(reply).unwrap_or_else(|_| r#"{"ok":false,"error":"unprintable reply"}"#.into());
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

async fn answer(req: Request, shared: &Shared) -> Reply {
    let now = crate::clock::unix_now();
    match req {
        Request::Status {} => Reply::ok(&*shared.snapshot.lock().unwrap_or_else(|e| e.into_inner())),
        Request::Media { library, op } => {
            let Some(name) = library.or_else(|| shared.default_library.clone()) else {
                return Reply::err("the board has no tape library");
            };
            let job = tokio::task::spawn_blocking(move || {
                let lib = crate::library::open(&name).map_err(|e| e.to_string())?;
                crate::library::ops::apply(&lib, &op).map_err(|e| e.to_string())
            });
            match job.await {
                Ok(Ok(report)) => Reply::ok(report),
                Ok(Err(e)) => Reply::err(e),
                Err(e) => Reply::err(format!("the media operation failed: {e}")),
            }
        }
        // The engine journals through the store, whose lock a snapshot of the catalog may
        // hold for seconds: wait for it on the blocking pool, not on the control plane.
        req => {
            let engine = shared.engine.clone();
            let job = tokio::task::spawn_blocking(move || {
                engine.lock().unwrap_or_else(|e| e.into_inner()).handle(&req, now)
            });
            job.await.unwrap_or_else(|e| Reply::err(format!("the request failed: {e}")))
        }
    }
}

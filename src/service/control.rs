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
#[derive(Clone)]
pub struct Shared {
    /// The job engine.
    pub engine: Arc<Mutex<Engine>>,
    /// What the status shows.
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The board's first library, for media requests that name none.
    pub default_library: Option<String>,
    /// The state, for command lines run here.
    pub store: Option<crate::store::SharedStore>,
    /// Runs command lines ([`Request::Command`]).
    pub executor: Option<super::Executor>,
    /// The backup agents connected now.
    pub agents: super::agents::Connected,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("default_library", &self.default_library).finish_non_exhaustive()
    }
}

/// The group id of `name`, from the system's group database.
fn group_id(name: &str) -> std::io::Result<libc::gid_t> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::other("a group name with a NUL"))?;
    // SAFETY: getgrnam reads a NUL-terminated string and returns a pointer into static storage
    // (or null); it is read at once, on this thread, before any other getgr* call.
    let entry = unsafe { libc::getgrnam(c.as_ptr()) };
    if entry.is_null() {
        return Err(std::io::Error::other(format!(
            "the board's control group '{name}' does not exist on this box"
        )));
    }
    // SAFETY: non-null: a valid group entry until the next getgr* call.
    Ok(unsafe { (*entry).gr_gid })
}

/// Binds the socket in `state` (replacing a stale one: the state lock proves no other
/// service runs on it), mode 0660, in `group` when the board names one.
pub fn bind(state: &Path, group: Option<&str>) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = state.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(&path, None, Some(group_id(g)?))?;
    }
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
                    Ok(Request::Command { argv, cwd }) => {
                        if command(argv, cwd, &shared, &mut write).await.is_err() {
                            return;
                        }
                        continue;
                    }
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

/// Output of a command line run here, on its way to the client.
enum Chunk {
    Out(String),
    Err(String),
}

/// Chunks in flight per command: a client that reads slowly holds the command back.
const CHUNKS_IN_FLIGHT: usize = 16;
/// Most bytes of output in one chunk; JSON escaping (at most 6 bytes for one) keeps its reply
/// line under [`MAX_LINE`].
const CHUNK_BYTES: usize = 32 << 10;
const _: () = assert!(CHUNK_BYTES * 6 + 4096 < MAX_LINE);
/// Whole lines waiting longer than this go out: output streams while a command runs.
const STREAM_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Writes a command's output as chunks to the connection: whole lines where it can, never a
/// character cut in two, at most [`CHUNK_BYTES`] each.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    err: bool,
    buf: Vec<u8>,
    sent: std::time::Instant,
}

impl ChunkWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Chunk>, err: bool) -> ChunkWriter {
        ChunkWriter { tx, err, buf: Vec::new(), sent: std::time::Instant::now() }
    }

    /// Sends the first `upto` bytes, less a character the cut would split (kept for later).
    fn send(&mut self, upto: usize) -> std::io::Result<()> {
        let upto = match std::str::from_utf8(&self.buf[..upto]) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => upto,
        };
        if upto == 0 {
            return Ok(());
        }
        let rest = self.buf.split_off(upto);
        let text = String::from_utf8_lossy(&std::mem::replace(&mut self.buf, rest)).into_owned();
        let chunk = if self.err { Chunk::Err(text) } else { Chunk::Out(text) };
        self.sent = std::time::Instant::now();
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    /// Where the next chunk ends: after the last line end among its first [`CHUNK_BYTES`].
    fn full_chunk(&self) -> usize {
        let head = &self.buf[..CHUNK_BYTES];
        head.iter().rposition(|&b| b == b'\n').map_or(CHUNK_BYTES, |i| i + 1)
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= CHUNK_BYTES {
            let upto = self.full_chunk();
            self.send(upto)?;
        }
        if self.sent.elapsed() >= STREAM_EVERY
            && let Some(i) = self.buf.iter().rposition(|&b| b == b'\n')
        {
            self.send(i + 1)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send(self.buf.len())
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            // The end: a character cut off by the command itself goes as a replacement mark.
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            let _ = self.tx.blocking_send(if self.err { Chunk::Err(text) } else { Chunk::Out(text) });
        }
    }
}

/// Runs a command line for the client on the blocking pool, streaming its output as replies
/// and ending with its exit code. An error means the connection is gone.
async fn command(
    argv: Vec<String>,
    cwd: String,
    shared: &Shared,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let (Some(executor), Some(store)) = (shared.executor.clone(), shared.store.clone()) else {
        return send(write, &Reply::err("this service runs no command lines (its journal is not writable)"))
            .await;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let call = super::CommandCall {
        argv,
        cwd: PathBuf::from(cwd),
        store,
        out: Box::new(ChunkWriter::new(tx.clone(), false)),
        err: Box::new(ChunkWriter::new(tx, true)),
        agents: shared.agents.clone(),
    };
    let run = tokio::task::spawn_blocking(move || executor(call));
    while let Some(chunk) = rx.recv().await {
        let data = match chunk {
            Chunk::Out(text) => serde_json::json!({"out": text}),
            Chunk::Err(text) => serde_json::json!({"err": text}),
        };
        send(write, &Reply::ok(data)).await?;
    }
    let code = run.await.unwrap_or(2);
    send(write, &Reply::ok(serde_json::json!({"exit": code}))).await
}

#[cfg(test)]
mod chunk_tests {
    use std::io::Write;

    use super::*;

    fn chunks_of(writes: &[&[u8]]) -> Vec<String> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut w = ChunkWriter::new(tx, false);
        for bytes in writes {
            w.write_all(bytes).unwrap();
        }
        drop(w);
        let mut out = Vec::new();
        while let Ok(Chunk::Out(text)) = rx.try_recv() {
            out.push(text);
        }
        out
    }

    #[test]
    fn a_long_line_of_wide_characters_goes_whole_in_bounded_chunks() {
        let line = "é→𝄞 ".repeat(20_000) + "\n";
        // Written in pieces that cut characters apart, as a formatter may.
        let bytes = line.as_bytes();
        let pieces: Vec<&[u8]> = bytes.chunks(4093).collect();
        let chunks = chunks_of(&pieces);
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES && !c.contains('\u{fffd}')));
        assert_eq!(chunks.concat(), line);
    }

    #[test]
    fn lines_go_whole_when_they_fit() {
        let text: String = (0..5000).map(|i| format!("line {i} of the listing\n")).collect();
        let chunks = chunks_of(&[text.as_bytes()]);
        assert!(chunks.iter().all(|c| c.ends_with('\n')), "a chunk ends mid-line");
        assert_eq!(chunks.concat(), text);
    }
}

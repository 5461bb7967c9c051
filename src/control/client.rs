//! The client side of the control socket: connect, send one request, read one reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{MAX_LINE, Reply, Request, SOCKET_NAME};

/// How long a client waits for the service's reply (a media move may take minutes on a real
/// library).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No service listens on the socket.
    #[error(
        "no coffer service answers on {path}: {error} (start it with `systemctl start coffer` or \
         `coffer serve`, and check --state)"
    )]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// The OS error (in the message, not repeated as a cause).
        error: std::io::Error,
    },
    /// The caller may not use the socket.
    #[error(
        "you may not use the coffer service's control socket {path} (root and the group the \
         board's [control] group names may): ask for that group, or run this as root"
    )]
    Refused {
        /// The socket.
        path: PathBuf,
    },
    /// The conversation broke off.
    #[error("the control socket {path} failed: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The service answered something that is not a reply.
    #[error("the service's reply is malformed: {0}")]
    Malformed(String),
}

/// A connection to the running service.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the service whose state directory is `state`.
    pub fn connect(state: &Path) -> Result<Client, ClientError> {
        let path = state.join(SOCKET_NAME);
        let stream = UnixStream::connect(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::PermissionDenied => ClientError::Refused { path: path.clone() },
            _ => ClientError::NotRunning { path: path.clone(), error },
        })?;
        let io = |source| ClientError::Io { path: path.clone(), source };
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client { path, reader: BufReader::new(stream), writer })
    }

    /// Waits for replies as long as they take: a command run in the service (a restore of
    /// terabytes) may be quiet for longer than [`REPLY_TIMEOUT`].
    pub fn wait_for_ever(&mut self) -> Result<(), ClientError> {
        let path = self.path.clone();
        self.reader.get_ref().set_read_timeout(None).map_err(|source| ClientError::Io { path, source })
    }

    /// Sends `req` and waits for the reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        self.send(req)?;
        self.receive()
    }

    /// Sends `req` (a [`Request::Command`] is answered by several replies: [`Client::receive`]
    /// them).
    pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let mut line = serde_json::to_string(req).map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(io)
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> Result<Reply, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let mut answer = String::new();
        let n = (&mut self.reader).take(MAX_LINE as u64 + 1).read_line(&mut answer).map_err(io)?;
        if n == 0 {
            return Err(ClientError::Malformed("the service closed the connection".into()));
        }
        serde_json::from_str(answer.trim_end()).map_err(|e| ClientError::Malformed(e.to_string()))
    }
}

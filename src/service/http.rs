//! The HTTP/1.1 server of the status endpoint (hyper, over rustls beyond loopback): thin glue
//! around [`super::status::respond`], with every resource a client can hold bounded.
//!
//! - Request heads: at most [`MAX_HEADER_BYTES`], whole within [`HEADER_READ_TIMEOUT`] (hyper's
//!   timer, which also runs while a kept-alive connection waits for its next request).
//! - A connection that moves no byte either way for [`IDLE_TIMEOUT`] is closed: idle
//!   keep-alive, a stalled TLS handshake, a client that stops reading its answer.
//! - A TLS handshake must end within [`TLS_HANDSHAKE_TIMEOUT`].
//! - At most [`MAX_CONNECTIONS`] are open; one more is closed as soon as it is accepted, so
//!   a flood of idle connections cannot hold the descriptors `/healthz` and the jobs need.
//! - A failed accept (EMFILE, ENFILE, ENOBUFS…) waits, doubling from [`ACCEPT_BACKOFF_FIRST`]
//!   up to [`ACCEPT_BACKOFF_MAX`], rather than trying again at once: the queued connection
//!   stays queued, and an accept loop that spins starves the control plane.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::status::{Snapshot, respond};

/// Most bytes of request head (line and headers) read before refusing the request.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Time a client has to send a whole request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may move no byte either way before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections open at once. Well under the 1024 descriptors a service has when it
/// cannot raise its limit, leaving the rest to the journal, devices and jobs.
pub const MAX_CONNECTIONS: usize = 256;
/// The first wait after a failed accept.
pub const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// The longest wait after failed accepts in a row.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

const _: () = assert!(IDLE_TIMEOUT.as_millis() <= HEADER_READ_TIMEOUT.as_millis());
const _: () = assert!(ACCEPT_BACKOFF_FIRST.as_millis() < ACCEPT_BACKOFF_MAX.as_millis());
const _: () = assert!(MAX_CONNECTIONS >= 16 && MAX_CONNECTIONS <= 512);

/// Connections, as the status shows them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Open now.
    pub open: AtomicUsize,
    /// Closed at once because [`MAX_CONNECTIONS`] were open, since the service started.
    pub refused: AtomicU64,
    /// Accepts that failed, since the service started.
    pub accept_errors: AtomicU64,
}

/// What each connection answers from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The snapshot shown.
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The bearer token.
    pub token: Arc<str>,
    /// TLS, beyond loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connection counters.
    pub counters: Arc<Counters>,
}

/// The waits after failed accepts in a row: doubling, bounded, reset by a success.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = ACCEPT_BACKOFF_FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        wait.min(ACCEPT_BACKOFF_MAX)
    }

    /// A success: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// One of [`MAX_CONNECTIONS`]; given back when dropped.
#[derive(Debug)]
struct Slot(Arc<Counters>);

impl Slot {
    /// A slot, if fewer than `max` are taken.
    fn take(counters: &Arc<Counters>, max: usize) -> Option<Slot> {
        counters
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(counters.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves connections on `listener` until the runtime ends.
pub async fn serve(listener: tokio::net::TcpListener, endpoint: Endpoint) {
    let mut backoff = Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(e) => {
                endpoint.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.failed();
                // Once per run of failures, and again each time the wait reaches its longest:
                // a descriptor shortage must not flood the log.
                if backoff.failures() == 1 || wait == ACCEPT_BACKOFF_MAX {
                    tracing::warn!(target: "service", "status endpoint: accept failed: {e}; waiting {wait:?}");
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&endpoint.counters, MAX_CONNECTIONS) else {
            endpoint.counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            connection(stream, endpoint).await;
            drop(slot);
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, endpoint: Endpoint) {
    let activity = Arc::new(Mutex::new(Instant::now()));
    let io = Watched { inner: stream, activity: activity.clone() };
    match endpoint.tls.clone() {
        None => http(io, endpoint, activity).await,
        Some(config) => {
            let accept = tokio_rustls::TlsAcceptor::from(config).accept(io);
            if let Ok(Ok(tls)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                http(tls, endpoint, activity).await;
            }
        }
    }
}

/// Serves HTTP/1.1 on `io` until the client closes, a timeout ends it or hyper gives up.
async fn http<T>(io: T, endpoint: Endpoint, activity: Arc<Mutex<Instant>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Endpoint { snapshot, token, .. } = endpoint;
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let s = snapshot.lock().expect("snapshot lock").clone();
        let auth = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
        let a = respond(req.method().as_str(), req.uri().path(), auth.as_deref(), &token, &s);
        let mut resp = Response::builder()
            .status(a.status)
            .header(hyper::header::CONTENT_TYPE, a.content_type)
            .header(hyper::header::CACHE_CONTROL, "no-store");
        if let Some(challenge) = a.www_authenticate {
            resp = resp.header(hyper::header::WWW_AUTHENTICATE, challenge);
        }
        let resp = resp.body(Full::new(Bytes::from(a.body))).expect("a response from fixed parts builds");
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let last = *activity.lock().expect("activity lock");
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(last + IDLE_TIMEOUT) => {
                if activity.lock().expect("activity lock").elapsed() >= IDLE_TIMEOUT {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// A byte stream that notes when it last moved a byte, either way.
#[derive(Debug)]
struct Watched<T> {
    inner: T,
    activity: Arc<Mutex<Instant>>,
}

impl<T> Watched<T> {
    fn moved(&self) {
        *self.activity.lock().expect("activity lock") = Instant::now();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_wait_longer_each_time_up_to_a_bound() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| b.failed()).collect();
        assert_eq!(waits[0], ACCEPT_BACKOFF_FIRST);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        for _ in 0..100 {
            assert!(b.failed() <= ACCEPT_BACKOFF_MAX);
        }
        b.succeeded();
        assert_eq!(b.failed(), ACCEPT_BACKOFF_FIRST);
    }

    #[test]
    fn connection_slots_are_bounded_and_given_back() {
        let counters = Arc::new(Counters::default());
        let held: Vec<Slot> = (0..3).map(|_| Slot::take(&counters, 3).expect("a free slot")).collect();
        assert!(Slot::take(&counters, 3).is_none(), "a fourth connection is refused");
        assert_eq!(counters.open.load(Ordering::Acquire), 3);
        drop(held);
        assert_eq!(counters.open.load(Ordering::Acquire), 0);
        assert!(Slot::take(&counters, 3).is_some());
    }

    /// A connection that sends nothing is closed after the idle timeout; one that keeps
    /// sending a head too slowly is closed by the header timeout. Paused tokio time: the
    /// timeouts pass without waiting.
    #[tokio::test(start_paused = true)]
    async fn silent_and_slow_clients_are_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let endpoint = Endpoint {
            snapshot: Arc::new(Mutex::new(Snapshot::default())),
            token: "t".repeat(20).into(),
            tls: None,
            counters: Arc::new(Counters::default()),
        };
        for dribble in [false, true] {
            let (client, server) = tokio::io::duplex(1024);
            let activity = Arc::new(Mutex::new(Instant::now()));
            let io = Watched { inner: server, activity: activity.clone() };
            let served = tokio::spawn(http(io, endpoint.clone(), activity));
            let (mut rd, mut wr) = tokio::io::split(client);
            let start = Instant::now();
            if dribble {
                // One byte of a request head every second: never idle, never a whole head.
                for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle().take(100) {
                    if wr.write_all(&[*b]).await.is_err() || served.is_finished() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            served.await.unwrap();
            let mut rest = Vec::new();
            let _ = rd.read_to_end(&mut rest).await;
            let took = start.elapsed();
            let limit = if dribble { HEADER_READ_TIMEOUT } else { IDLE_TIMEOUT };
            assert!(took >= limit && took < limit + Duration::from_secs(2), "dribble {dribble}: {took:?}");
        }
    }
}

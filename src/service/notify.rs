//! systemd notifications (sd-notify) sent from a thread of their own. A notify socket whose
//! reader falls behind makes `send` block; the control plane must never wait on it, so it
//! hands messages over a bounded queue and drops them when the queue is full (a later STATUS
//! or WATCHDOG supersedes a dropped one).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages waiting to be sent at most.
const QUEUE: usize = 16;
/// How long a stop waits for the last messages (STOPPING=1) to go out.
const DRAIN: Duration = Duration::from_secs(2);

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// READY=1 with a STATUS=.
    Ready(String),
    /// STATUS=.
    Status(String),
    /// WATCHDOG=1.
    Watchdog,
    /// STOPPING=1 with a STATUS=.
    Stopping(String),
}

/// The sending side.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<SyncSender<Note>>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the sending thread.
    pub fn start() -> Notifier {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new().name("sd-notify".into()).spawn(move || send_all(rx)).ok();
        Notifier { tx: Some(tx), thread }
    }

    /// Queues `note`; drops it when the queue is full.
    pub fn send(&self, note: Note) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(n)) = tx.try_send(note)
        {
            tracing::debug!(target: "service", "notify socket is behind: dropped {n:?}");
        }
    }

    /// Sends what is queued, waiting at most [`DRAIN`], and ends the thread.
    pub fn close(mut self) {
        drop(self.tx.take());
        let t0 = Instant::now();
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && t0.elapsed() < DRAIN {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn send_all(rx: Receiver<Note>) {
    use sd_notify::NotifyState as S;
    for note in rx {
        let _ = match &note {
            Note::Ready(s) => sd_notify::notify(&[S::Ready, S::Status(s)]),
            Note::Status(s) => sd_notify::notify(&[S::Status(s)]),
            Note::Watchdog => sd_notify::notify(&[S::Watchdog]),
            Note::Stopping(s) => sd_notify::notify(&[S::Stopping, S::Status(s)]),
        };
    }
}

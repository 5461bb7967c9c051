//! Carries out one job on the data plane: the pre command, the backup over every device of
//! its destination (one sub-job per device: "MULTI STREAM [JOB m] SUBJOB s"), the verify
//! after, the post command. It journals through the shared store, so the service's control
//! plane keeps working while it runs, and publishes live counters the service shows and
//! watches (a data plane whose counters stop moving is stalled).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::file::{BackupKind, JobSpec};
use super::queue::Outcome;
use crate::catalog::{LogEntry, LogLevel, Record};
use crate::device::{TargetSpec, open_targets};
use crate::format::records::SessionStatus;
use crate::pipeline::backup::{BackupRequest, run as run_backup};
use crate::pipeline::baseline::{Baseline, Incremental, check_sources};
use crate::pipeline::restore::{Action, ReadBack, RestoreRequest};
use crate::pipeline::{Cancel, DEFAULT_UNIT};
use crate::source::mode::{DEFAULT_FILE_THRESHOLD, RequestedMode};
use crate::store::{SharedStore, State};

/// Longest a pre or post command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a running command is checked.
const COMMAND_POLL: Duration = Duration::from_millis(100);

/// Live counters of the running job, read by the status endpoint, the console and the
/// watchdog.
#[derive(Debug, Default)]
pub struct Live {
    /// Bytes read from the sources.
    pub bytes_in: AtomicU64,
    /// Bytes written to the devices.
    pub bytes_stored: AtomicU64,
    /// Objects stored.
    pub objects: AtomicU64,
    /// The session it writes (0 before it starts).
    pub session: AtomicU64,
    /// Streams (sub-jobs).
    pub streams: AtomicU64,
    /// When a counter last moved (or the job last did something), Unix seconds.
    pub beat: AtomicU64,
    /// The job these counters are of; 0 while no job runs.
    pub job: AtomicU64,
    /// The job reads its session back (verify) rather than writing it.
    pub verifying: AtomicBool,
}

impl Live {
    /// Records that the job is alive at `now`.
    pub fn beat(&self, now: u64) {
        self.beat.store(now, Ordering::Relaxed);
    }

    /// Starts the counters afresh for `job` at `now`.
    pub fn begin(&self, job: u64, now: u64) {
        assert!(job != 0, "job ids start at 1");
        for c in [&self.bytes_in, &self.bytes_stored, &self.objects, &self.session, &self.streams] {
            c.store(0, Ordering::Relaxed);
        }
        self.verifying.store(false, Ordering::Relaxed);
        self.beat(now);
        // Published last: a reader that sees the job sees its fresh beat.
        self.job.store(job, Ordering::Release);
    }

    /// No job runs any more.
    pub fn end(&self) {
        self.job.store(0, Ordering::Release);
    }

    /// The running job and how long it has been quiet, when that is over `limit` seconds:
    /// its data plane is stalled. Reads atomics only, so the watchdog never waits on a lock.
    pub fn stalled(&self, now: u64, limit: u64) -> Option<(u64, u64)> {
        let job = self.job.load(Ordering::Acquire);
        if job == 0 {
            return None;
        }
        let quiet = now.saturating_sub(self.beat.load(Ordering::Relaxed));
        (quiet > limit).then_some((job, quiet))
    }
}

/// One job to run.
#[derive(Debug)]
pub struct Run {
    /// Its id.
    pub job: u64,
    /// Its definition.
    pub spec: JobSpec,
    /// Where to write when the job names no target.
    pub default_target: TargetSpec,
    /// The state.
    pub store: SharedStore,
    /// Cancels it (every sub-job at once).
    pub cancel: Cancel,
    /// Its counters.
    pub live: Arc<Live>,
    /// The connected backup agents (the service's), for agent sources.
    pub agents: Option<Arc<dyn crate::pipeline::remote::Agents>>,
}

impl Run {
    /// Runs the job to its end and says how it ended.
    pub fn execute(mut self) -> Outcome {
        self.live.beat(crate::clock::unix_now());
        self.log(LogLevel::Note, format!("job {} ({}) started", self.job, self.spec.name));
        if let Some(why) = self.command("pre", &self.spec.pre.clone()) {
            self.command("post", &self.spec.post.clone());
            return self.failed(why);
        }
        let outcome = self.backup();
        // After each job the drives are checked: cleaned, taken offline, errors counted.
        let mut store = self.store.clone();
        if let Err(e) = crate::pipeline::health::journal_health(&mut store) {
            self.log(LogLevel::Warning, format!("drive health after the job could not be journaled: {e}"));
        }
        if let Some(why) = self.command("post", &self.spec.post.clone())
            && matches!(outcome, Outcome::Done(_))
        {
            return self.failed(why);
        }
        match &outcome {
            Outcome::Done(m) => self.log(LogLevel::Note, m.clone()),
            Outcome::Failed(m) => self.log(LogLevel::Error, m.clone()),
            _ => self.log(LogLevel::Warning, "cancelled: what was written before is restorable".into()),
        }
        outcome
    }

    fn failed(&mut self, why: String) -> Outcome {
        self.log(LogLevel::Error, why.clone());
        Outcome::Failed(why)
    }

    fn backup(&mut self) -> Outcome {
        let sources = match crate::pipeline::sources::resolve(
            &self.spec.sources,
            RequestedMode::Auto,
            DEFAULT_FILE_THRESHOLD,
        ) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e),
        };
        let specs =
            if self.spec.to.is_empty() { vec![self.default_target.clone()] } else { self.spec.to.clone() };
        let mut targets = Vec::new();
        for t in &specs {
            match open_targets(t) {
                Ok(ws) => targets.extend(ws),
                Err(e) => return Outcome::Failed(format!("cannot use target {t}: {e}")),
            }
        }
        let source_key = match crate::pipeline::sources::key(&self.spec.sources) {
            Ok(k) => k,
            Err(e) => return Outcome::Failed(e),
        };
        let mut incremental = None;
        if self.spec.backup == BackupKind::Incremental {
            if let Err(e) = check_sources(&sources) {
                return Outcome::Failed(e.to_string());
            }
            let indexes = self.store.indexes();
            match self.store.read(|c| Baseline::find(c, &indexes, source_key)) {
                Ok(b) => {
                    self.log(LogLevel::Note, format!("incremental on session {}", b.base()));
                    incremental = Some(Incremental::new(b));
                }
                Err(e) => self.log(LogLevel::Note, format!("running a full backup: {e}")),
            }
        }
        let description =
            self.spec.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
        let req = BackupRequest {
            sources,
            description,
            unit: DEFAULT_UNIT,
            job: self.job,
            one_file_system: self.spec.one_file_system,
            compress: self.spec.compression,
            compress_on_agent: self.spec.compress_on_agent,
            cancel: self.cancel.clone(),
            source_key,
            incremental,
            agents: self.agents.clone(),
        };
        self.live.streams.store(targets.len() as u64, Ordering::Relaxed);
        self.log(
            LogLevel::Note,
            format!("MULTI STREAM [JOB {}]: {} sub-jobs on {}", self.job, targets.len(), join(&specs)),
        );
        let live = self.live.clone();
        let mut last = (0, 0, 0);
        let mut store = self.store.clone();
        let (job, catalog) = (self.job, self.store.clone());
        let result = run_backup(&req, targets, &mut store, |p| {
            if live.session.load(Ordering::Relaxed) == 0 {
                // The session is journaled before the first progress report: show its id.
                let running = catalog.read(|c| {
                    c.sessions()
                        .next_back()
                        .filter(|s| s.start().job == job && !s.is_finished())
                        .map(|s| s.id())
                });
                live.session.store(running.unwrap_or(0), Ordering::Relaxed);
            }
            let now = (
                p.raw.load(Ordering::Relaxed),
                p.stored.load(Ordering::Relaxed),
                p.objects.load(Ordering::Relaxed),
            );
            live.bytes_in.store(now.0, Ordering::Relaxed);
            live.bytes_stored.store(now.1, Ordering::Relaxed);
            live.objects.store(now.2, Ordering::Relaxed);
            if now != last {
                live.beat(crate::clock::unix_now());
                last = now;
            }
        });
        let s = match result {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("backup failed: {e}")),
        };
        self.live.session.store(s.session, Ordering::Relaxed);
        for t in &s.streams {
            let how = t.error.as_deref().map_or("ok".to_owned(), |e| format!("FAILED: {e}"));
            self.log(
                if t.error.is_some() { LogLevel::Warning } else { LogLevel::Debug },
                format!(
                    "MULTI STREAM [JOB {}] SUBJOB {}: {} objects on {}: {how}",
                    self.job, t.stream, t.objects, t.target
                ),
            );
        }
        for p in s.problems.iter().take(100) {
            self.log(LogLevel::Warning, format!("session {}: {p}", s.session));
        }
        let what = format!(
            "session {}: {} objects, {} bytes in, {} bytes stored, {:.1} s",
            s.session, s.objects, s.bytes_in, s.bytes_stored, s.seconds
        );
        match s.status {
            SessionStatus::Cancelled => return Outcome::Cancelled { reschedule: false },
            SessionStatus::Complete => {}
            _ => {
                return Outcome::Failed(format!(
                    "{what}: {} (what was journaled is restorable)",
                    s.error.unwrap_or_else(|| "failed".into())
                ));
            }
        }
        if self.spec.verify {
            self.live.beat(crate::clock::unix_now());
            self.live.verifying.store(true, Ordering::Relaxed);
            self.live.objects.store(0, Ordering::Relaxed);
            // Verify reads a copy of the catalog: the control plane keeps the store meanwhile.
            let catalog = self.store.read(|c| c.clone());
            let indexes = self.store.indexes();
            let req = RestoreRequest { session: s.session, paths: Vec::new(), action: Action::Verify(None) };
            // Every record read back is progress: a long verify is not a stall.
            let live = self.live.clone();
            let mut last = ReadBack::default();
            let mut read_back = |r: ReadBack| {
                live.objects.store(r.objects, Ordering::Relaxed);
                if r != last {
                    live.beat(crate::clock::unix_now());
                    last = r;
                }
            };
            match crate::pipeline::restore::run_watched(&catalog, &indexes, &req, &mut read_back) {
                Ok(r) if r.failures.is_empty() => {
                    return Outcome::Done(format!(
                        "{what}; verified {} objects, {} bytes",
                        r.objects, r.bytes
                    ));
                }
                Ok(r) => {
                    for f in r.failures.iter().take(100) {
                        self.log(LogLevel::Error, format!("verify of session {}: {f}", s.session));
                    }
                    return Outcome::Failed(format!("{what}; verify found {} problems", r.failures.len()));
                }
                Err(e) => return Outcome::Failed(format!("{what}; verify could not run: {e}")),
            }
        }
        Outcome::Done(what)
    }

    /// Runs a pre or post command; the reason when it failed.
    fn command(&mut self, which: &str, argv: &[String]) -> Option<String> {
        let (prog, args) = argv.split_first()?;
        self.log(LogLevel::Debug, format!("{which} command: {}", argv.join(" ")));
        let mut child = match Command::new(prog).args(args).stdin(Stdio::null()).stdout(Stdio::null()).spawn()
        {
            Ok(c) => c,
            Err(e) => return Some(format!("{which} command {prog} could not start: {e}")),
        };
        let t0 = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return None,
                Ok(Some(st)) => return Some(format!("{which} command {prog} failed: {st}")),
                Ok(None) if t0.elapsed() > COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Some(format!(
                        "{which} command {prog} ran over {} s and was killed",
                        COMMAND_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => {
                    self.live.beat(crate::clock::unix_now());
                    std::thread::sleep(COMMAND_POLL);
                }
                Err(e) => return Some(format!("{which} command {prog}: {e}")),
            }
        }
    }

    /// Adds an entry to the activity log, if the job's log setting keeps it.
    fn log(&mut self, level: LogLevel, message: String) {
        if !self.spec.log.keeps(level) {
            return;
        }
        let message: String = message.chars().take(crate::catalog::MAX_MESSAGE_LEN / 4).collect();
        let entry = LogEntry { at: crate::clock::unix_now(), level, job: Some(self.job), message };
        if let Err(e) = self.store.commit(&[Record::from(entry)]) {
            tracing::error!(target: "jobs", "cannot journal a log entry of job {}: {e}", self.job);
        }
    }
}

fn join(specs: &[TargetSpec]) -> String {
    specs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + ")
}

//! The service's job engine: applies the queue's rules ([`crate::jobs::queue`]) to the jobs
//! in the journal, starts the job that is due on its own thread ([`crate::jobs::run`]),
//! reaps it when it ends, and answers the job requests of the control socket. One job runs
//! at a time: a job uses every device of its destination (one sub-job per drive).
//!
//! Fault model: a job that was ACTIVE when the service died is marked FAILED at the next
//! start (its session is closed as interrupted; what it journaled stays restorable), and queued
//! again if it recurs. A stop (SIGTERM) cancels the running job cleanly — its session parts
//! are closed and committed — and leaves it READY, so the next start runs it again.

use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;
use serde_json::json;

use crate::board::Board;
use crate::catalog::{Job, JobDeleted, JobSaved, JobState, JobStateChanged, LogEntry, Record};
use crate::control::{Reply, Request};
use crate::device::TargetSpec;
use crate::format::records::SessionStatus;
use crate::jobs::file::{self, JobSpec};
use crate::jobs::queue::{self, Ask, Change, Entry, Outcome};
use crate::jobs::run::{Live, Run};
use crate::jobs::{calendar, schedule::Schedule};
use crate::pipeline::Cancel;
use crate::store::{SharedStore, State, StoreError};

/// Why a running job is being cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A person cancelled it.
    Person { reschedule: bool },
    /// The service is stopping.
    Shutdown,
}

/// The job running now.
#[derive(Debug)]
struct Running {
    job: u64,
    name: String,
    started: u64,
    cancel: Cancel,
    stop: Option<Stop>,
    live: Arc<Live>,
    thread: JoinHandle<Outcome>,
}

/// A running job's counters, for the status.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Job id.
    pub job: u64,
    /// Its name.
    pub name: String,
    /// Session it writes (0 before it starts).
    pub session: u64,
    /// Sub-jobs (one per device).
    pub streams: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_stored: u64,
    /// Objects stored.
    pub objects: u64,
    /// Seconds since it started.
    pub seconds: u64,
    /// It reads its session back (verify); `objects` counts objects read back.
    pub verifying: bool,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    store: SharedStore,
    default_target: TargetSpec,
    keep_secs: u64,
    stall_secs: u64,
    /// The running job's counters: one set for the engine's life, started afresh for each
    /// job, so that the watchdog can hold them without the engine's lock.
    live: Arc<Live>,
    running: Option<Running>,
    stopping: bool,
    /// The board's console PIN, checked for console logins ([`super::login`]).
    console_pin: Option<String>,
    /// Which console lock was last warned about.
    login_warned: super::login::Warned,
    /// The connected backup agents, for jobs with agent sources.
    agents: Option<Arc<dyn crate::pipeline::remote::Agents>>,
    /// Seconds a finished session keeps its per-file index (the board's `catalog_keep`).
    catalog_keep: u64,
    /// When the catalog was last pruned; `None` before the first scan of the queue.
    pruned_at: Option<u64>,
}

/// Sessions a pruning's activity log entry names; past this it counts them.
const PRUNED_NAMED: usize = 32;

/// What the watchdog reads: whether the data plane is stalled, without any lock (the store's
/// lock may be held for seconds by a snapshot, and the engine's by whoever waits for it).
#[derive(Debug, Clone)]
pub struct Watch {
    live: Arc<Live>,
    stall_secs: u64,
}

impl Watch {
    /// The running job and for how long it has made no progress, when that is over the
    /// stall limit.
    pub fn stalled(&self, now: u64) -> Option<(u64, u64)> {
        // A job waiting for a person to bring a cartridge makes no progress and is not
        // stalled: it says so itself (WAITING MEDIA) and fails after the board's wait.
        if crate::library::Library::waiting_for_media() {
            self.live.beat(now);
            return None;
        }
        self.live.stalled(now, self.stall_secs)
    }

    /// The running job's counters.
    pub fn live(&self) -> &Live {
        &self.live
    }
}

impl Engine {
    /// Takes over the jobs in `store`: jobs left ACTIVE by a service that died are failed
    /// (and queued again when they recur), sessions left open were closed as interrupted when the store opened.
    pub fn open(
        store: SharedStore,
        board: &Board,
        default_target: TargetSpec,
        now: u64,
    ) -> Result<Engine, StoreError> {
        let mut e = Engine {
            store,
            default_target,
            keep_secs: board.jobs.keep_done_hours * 3600,
            stall_secs: board.jobs.stall_seconds,
            live: Arc::new(Live::default()),
            running: None,
            stopping: false,
            console_pin: board.console.as_ref().map(|c| c.pin.clone()),
            login_warned: super::login::Warned::default(),
            agents: None,
            // Checked when the board was read.
            catalog_keep: board.catalog_keep().unwrap_or(crate::lifecycle::index_prune::DEFAULT_CATALOG_KEEP),
            pruned_at: None,
        };
        e.recover(now)?;
        Ok(e)
    }

    /// Fails the jobs a stopped service left active. Their sessions were closed as
    /// interrupted when the store was opened ([`crate::store::interrupted_records`]).
    fn recover(&mut self, now: u64) -> Result<(), StoreError> {
        // Each with the session its last run started, if it started one, and how that ended.
        let active: Vec<(Job, Option<(u64, SessionStatus)>)> = self.store.read(|c| {
            c.jobs()
                .filter(|j| j.state() == JobState::Active)
                .map(|j| {
                    let ran = j.history().next_back().map_or(0, |h| h.at);
                    let newest =
                        c.sessions().rev().find(|s| s.start().job == j.id() && s.start().started >= ran);
                    (j.clone(), newest.and_then(|s| s.finish().map(|f| (s.id(), f.status))))
                })
                .collect()
        });
        let mut records = Vec::new();
        for (job, session) in &active {
            let why = match session {
                Some((s, SessionStatus::Interrupted)) => format!(
                    "the service stopped while it ran: session {s} closed as interrupted, its committed objects are restorable"
                ),
                // Stopped after its session ended (unloading, verifying, a post command).
                Some((s, status)) => format!(
                    "the service stopped while it ran, after its session {s} had ended {}",
                    format!("{status:?}").to_lowercase()
                ),
                None => "the service stopped while it ran".to_owned(),
            };
            let ran = job.history().next_back().map_or(now, |h| h.at);
            let changes = queue::after_run(&Outcome::Failed(why), &schedule_of(job, ran), ran, now);
            records.extend(changes.into_iter().map(|c| change(job.id(), now, c)));
        }
        if !active.is_empty() {
            tracing::warn!(
                target: "jobs",
                "a service that stopped left {} jobs active: failed (their sessions closed as interrupted, what they committed restorable), and queued again if they recur",
                active.len()
            );
        }
        self.store.commit(&records)
    }

    /// Scans the queue: reaps a finished job, deletes expired ones, prunes the catalog (after
    /// a job, at the first scan and once a day), starts the one due.
    pub fn tick(&mut self, now: u64) -> Result<(), StoreError> {
        let mut reaped = false;
        if self.running.as_ref().is_some_and(|r| r.thread.is_finished()) {
            self.reap(now)?;
            reaped = true;
        }
        if crate::lifecycle::index_prune::due(self.pruned_at, now, reaped) {
            self.prune(now)?;
        }
        let entries = self.entries();
        let expired = queue::expired(&entries, now, self.keep_secs);
        if !expired.is_empty() {
            let recs: Vec<Record> = expired.iter().map(|&job| Record::from(JobDeleted { job })).collect();
            self.store.commit(&recs)?;
        }
        if self.running.is_none()
            && !self.stopping
            && let Some(id) = queue::due(&entries, now)
        {
            self.start(id, now)?;
        }
        Ok(())
    }

    /// Prunes the per-file index of the sessions older than `catalog_keep` that nothing kept
    /// needs ([`crate::lifecycle::index_prune`]), with a line in the activity log.
    fn prune(&mut self, now: u64) -> Result<(), StoreError> {
        self.pruned_at = Some(now);
        let keep = self.catalog_keep;
        let mut records = self.store.read(|c| crate::lifecycle::index_prune::records(c, now, keep));
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = records
            .iter()
            .filter_map(|r| match r {
                Record::IndexPruned(p) => Some(p.session.to_string()),
                _ => None,
            })
            .collect();
        let more = ids.len().saturating_sub(PRUNED_NAMED);
        let named = ids[..ids.len().min(PRUNED_NAMED)].join(", ");
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let message = format!(
            "pruned the per-file index of sessions {named}{more} (older than catalog_keep, {} days): they restore whole; `coffer scan --session N` reads an index back from the media",
            keep / 86_400
        );
        tracing::info!(target: "jobs", "{message}");
        records.push(Record::from(LogEntry {
            at: now,
            level: crate::catalog::LogLevel::Note,
            job: None,
            message,
        }));
        self.store.commit(&records)
    }

    fn entries(&self) -> Vec<Entry> {
        self.store.read(|c| {
            c.jobs()
                .map(|j| {
                    let last = j.history().next_back();
                    Entry {
                        id: j.id(),
                        state: j.state(),
                        run_at: last.and_then(|h| h.run_at),
                        changed_at: last.map_or(0, |h| h.at),
                        recurring: spec_of(j, 0).is_ok_and(|s| s.schedule.recurring()),
                    }
                })
                .collect()
        })
    }

    fn start(&mut self, id: u64, now: u64) -> Result<(), StoreError> {
        let job = self.store.read(|c| c.job(id).cloned()).expect("a due job is in the catalog");
        let spec = match spec_of(&job, now) {
            Ok(s) => s,
            Err(e) => {
                let c = Change {
                    state: JobState::Failed,
                    run_at: None,
                    message: format!("its job file no longer parses: {e}"),
                };
                return self.store.commit(&[change(id, now, c)]);
            }
        };
        self.store.commit(&[change(
            id,
            now,
            Change { state: JobState::Active, run_at: None, message: "started".into() },
        )])?;
        tracing::info!(target: "jobs", "job {id} ({}) started", job.name());
        let live = self.live.clone();
        live.begin(id, now);
        let cancel = Cancel::default();
        let run = Run {
            job: id,
            spec,
            default_target: self.default_target.clone(),
            store: self.store.clone(),
            cancel: cancel.clone(),
            live: live.clone(),
            agents: self.agents.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || run.execute())
            .expect("a job thread starts");
        self.running = Some(Running {
            job: id,
            name: job.name().to_owned(),
            started: now,
            cancel,
            stop: None,
            live,
            thread,
        });
        Ok(())
    }

    fn reap(&mut self, now: u64) -> Result<(), StoreError> {
        let r = self.running.take().expect("reap is called with a job running");
        self.live.end();
        let outcome = match r.thread.join() {
            Ok(o) => o,
            Err(_) => Outcome::Failed("the job's thread panicked (a bug): see the service log".into()),
        };
        let outcome = match (outcome, r.stop) {
            (Outcome::Cancelled { .. }, Some(Stop::Shutdown)) => Outcome::Interrupted,
            (Outcome::Cancelled { .. }, Some(Stop::Person { reschedule })) => {
                Outcome::Cancelled { reschedule }
            }
            (o, _) => o,
        };
        let Some(job) = self.store.read(|c| c.job(r.job).cloned()) else {
            return Ok(());
        };
        match &outcome {
            Outcome::Done(m) => tracing::info!(target: "jobs", "job {} ({}) done: {m}", r.job, r.name),
            Outcome::Failed(m) => tracing::warn!(target: "jobs", "job {} ({}) failed: {m}", r.job, r.name),
            Outcome::Cancelled { .. } => {
                tracing::info!(target: "jobs", "job {} ({}) cancelled: what it wrote is restorable", r.job, r.name)
            }
            Outcome::Interrupted => tracing::info!(
                target: "jobs",
                "job {} ({}) interrupted by the service stop: it runs again at the next start",
                r.job,
                r.name
            ),
        }
        let changes = queue::after_run(&outcome, &schedule_of(&job, r.started), r.started, now);
        let recs: Vec<Record> = changes.into_iter().map(|c| change(r.job, now, c)).collect();
        self.store.commit(&recs)
    }

    /// Stops taking work and cancels the running job (its session closes cleanly).
    pub fn shutdown(&mut self) {
        self.stopping = true;
        if let Some(r) = &mut self.running {
            r.stop = Some(Stop::Shutdown);
            r.cancel.cancel();
        }
    }

    /// Waits for the running job to end (after [`Engine::shutdown`]) and journals its state.
    pub fn finish(&mut self, now: impl Fn() -> u64) -> Result<(), StoreError> {
        while let Some(r) = &self.running {
            if r.thread.is_finished() {
                self.reap(now())?;
            } else {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The running job and for how long it has made no progress, when that is over the stall
    /// limit: the data plane is stalled.
    pub fn stalled(&self, now: u64) -> Option<(u64, u64)> {
        self.watch().stalled(now)
    }

    /// Lets jobs read trees on the connected backup agents.
    pub fn set_agents(&mut self, agents: Arc<dyn crate::pipeline::remote::Agents>) {
        self.agents = Some(agents);
    }

    /// What the watchdog reads, lock-free.
    pub fn watch(&self) -> Watch {
        Watch { live: self.live.clone(), stall_secs: self.stall_secs }
    }

    /// The running job's counters.
    pub fn progress(&self, now: u64) -> Option<Progress> {
        use std::sync::atomic::Ordering::Relaxed;
        self.running.as_ref().map(|r| Progress {
            job: r.job,
            name: r.name.clone(),
            session: r.live.session.load(Relaxed),
            streams: r.live.streams.load(Relaxed),
            bytes_in: r.live.bytes_in.load(Relaxed),
            bytes_stored: r.live.bytes_stored.load(Relaxed),
            objects: r.live.objects.load(Relaxed),
            seconds: now.saturating_sub(r.started),
            verifying: r.live.verifying.load(Relaxed),
        })
    }

    /// Jobs, newest first, a line each.
    pub fn list(&self) -> Vec<JobLine> {
        self.store.read(job_lines)
    }

    /// Answers a job request of the control socket.
    pub fn handle(&mut self, req: &Request, now: u64) -> Reply {
        match self.try_handle(req, now) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::err(e),
        }
    }

    fn try_handle(&mut self, req: &Request, now: u64) -> Result<serde_json::Value, String> {
        let store_err = |e: StoreError| format!("the journal refused the change: {e}");
        match req {
            Request::Submit { definition, hold } => {
                let spec = file::parse(definition, now)?;
                let id = self.store.read(|c| c.next_job_id());
                let first = if *hold {
                    Change { state: JobState::Hold, run_at: None, message: "submitted held".into() }
                } else {
                    let t = spec.schedule.next_from(now).unwrap_or(now);
                    Change {
                        state: JobState::Ready,
                        run_at: Some(t),
                        message: format!("submitted; due {}", calendar::format(t)),
                    }
                };
                let saved = JobSaved { job: id, name: spec.name.clone(), definition: definition.clone() };
                self.store.commit(&[Record::from(saved), change(id, now, first)]).map_err(store_err)?;
                self.tick(now).map_err(store_err)?;
                Ok(json!({"job": id, "name": spec.name}))
            }
            Request::Modify { job, definition } => {
                let j = self.job(*job)?;
                if j.state() == JobState::Active {
                    return Err(format!("job {job} is running: cancel it or wait before changing it"));
                }
                let spec = file::parse(definition, now)?;
                let mut recs = vec![Record::from(JobSaved {
                    job: *job,
                    name: spec.name.clone(),
                    definition: definition.clone(),
                })];
                if j.state() == JobState::Ready {
                    let t = spec.schedule.next_from(now).unwrap_or(now);
                    recs.push(change(
                        *job,
                        now,
                        Change {
                            state: JobState::Ready,
                            run_at: Some(t),
                            message: format!("modified; due {}", calendar::format(t)),
                        },
                    ));
                }
                self.store.commit(&recs).map_err(store_err)?;
                Ok(json!({"job": job}))
            }
            Request::List {} => Ok(serde_json::to_value(self.list()).unwrap_or_default()),
            Request::Show { job } => Ok(self.show(*job)?),
            Request::Delete { job } => {
                if self.job(*job)?.state() == JobState::Active {
                    return Err(format!("job {job} is running: cancel it first"));
                }
                self.store.commit(&[Record::from(JobDeleted { job: *job })]).map_err(store_err)?;
                Ok(json!({"job": job, "deleted": true}))
            }
            Request::Cancel { job, reschedule } if self.running.as_ref().is_some_and(|r| r.job == *job) => {
                let r = self.running.as_mut().expect("checked above");
                r.stop = Some(Stop::Person { reschedule: *reschedule });
                r.cancel.cancel();
                Ok(
                    json!({"job": job, "cancelling": true, "note": "every sub-job stops; what was read is written and closed"}),
                )
            }
            Request::Hold { job } => self.ask(*job, &Ask::Hold, now),
            Request::Release { job } => self.ask(*job, &Ask::Release, now),
            Request::Run { job } => self.ask(*job, &Ask::Run, now),
            Request::Resubmit { job } => self.ask(*job, &Ask::Resubmit, now),
            Request::Reschedule { job, at } => self.ask(*job, &Ask::Reschedule(at), now),
            Request::Cancel { job, reschedule } => {
                self.ask(*job, &Ask::Cancel { reschedule: *reschedule }, now)
            }
            Request::Log { job, level, limit } => {
                let limit = (*limit).clamp(1, 1000) as usize;
                let v: Vec<LogEntry> = self.store.read(|c| {
                    let mut v: Vec<LogEntry> = c
                        .log()
                        .rev()
                        .filter(|e| job.is_none_or(|j| e.job == Some(j)) && e.level <= *level)
                        .take(limit)
                        .cloned()
                        .collect();
                    v.reverse();
                    v
                });
                Ok(serde_json::to_value(v).unwrap_or_default())
            }
            Request::Login { tty, pin } => {
                let pin_of_board = self.console_pin.as_deref();
                super::login::answer(&mut self.store, &mut self.login_warned, pin_of_board, tty, pin, now)
            }
            Request::Status {} | Request::Media { .. } | Request::Command { .. } => {
                Err("not a job request".into())
            }
        }
    }

    fn ask(&mut self, id: u64, ask: &Ask<'_>, now: u64) -> Result<serde_json::Value, String> {
        let job = self.job(id)?;
        if job.state() == JobState::Active {
            return Err(format!("job {id} is running: only cancel applies"));
        }
        let changes = queue::on_ask(job.state(), ask, &schedule_of(&job, now), now)?;
        let recs: Vec<Record> = changes.into_iter().map(|c| change(id, now, c)).collect();
        self.store.commit(&recs).map_err(|e| format!("the journal refused the change: {e}"))?;
        self.tick(now).map_err(|e| format!("the journal refused the change: {e}"))?;
        let j = self.job(id)?;
        Ok(serde_json::to_value(line(&j)).unwrap_or_default())
    }

    fn job(&self, id: u64) -> Result<Job, String> {
        self.store
            .read(|c| c.job(id).cloned())
            .ok_or_else(|| format!("no job {id}: `coffer job list` shows the jobs"))
    }

    fn show(&self, id: u64) -> Result<serde_json::Value, String> {
        let j = self.job(id)?;
        let log: Vec<LogEntry> =
            self.store.read(|c| c.log().filter(|e| e.job == Some(id)).cloned().collect());
        let log = &log[log.len().saturating_sub(100)..];
        let history: Vec<_> = j
            .history()
            .map(|h| json!({"state": h.state, "at": h.at, "message": h.message, "run_at": h.run_at}))
            .collect();
        let mut v = serde_json::to_value(line(&j)).unwrap_or_default();
        v["definition"] = j.definition().into();
        v["history"] = history.into();
        v["log"] = serde_json::to_value(log).unwrap_or_default();
        Ok(v)
    }
}

/// A job, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct JobLine {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// When it is next due.
    pub next_run: Option<u64>,
    /// The last state change's message.
    pub last: String,
    /// It recurs.
    pub recurring: bool,
}

/// The jobs of `c`, newest first, a line each.
pub fn job_lines(c: &crate::catalog::Catalog) -> Vec<JobLine> {
    let mut v: Vec<JobLine> = c.jobs().map(line).collect();
    v.reverse();
    v
}

fn line(j: &Job) -> JobLine {
    let last = j.history().next_back();
    JobLine {
        id: j.id(),
        name: j.name().to_owned(),
        state: j.state(),
        next_run: last.and_then(|h| h.run_at),
        last: last.map_or(String::new(), |h| h.message.clone()),
        recurring: spec_of(j, 0).is_ok_and(|s| s.schedule.recurring()),
    }
}

/// The job's definition, with `now` for its relative times.
fn spec_of(j: &Job, now: u64) -> Result<JobSpec, String> {
    file::parse(j.definition(), now)
}

/// The job's schedule, relative times counted from `anchor` (the run it follows).
fn schedule_of(j: &Job, anchor: u64) -> Schedule {
    spec_of(j, anchor).map_or(Schedule { start: anchor, every: None, except: Vec::new() }, |s| s.schedule)
}

fn change(job: u64, now: u64, c: Change) -> Record {
    let message: String = c.message.chars().take(crate::catalog::MAX_MESSAGE_LEN / 4).collect();
    Record::from(JobStateChanged { job, state: c.state, at: now, message, run_at: c.run_at })
}

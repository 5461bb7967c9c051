//! The in-memory catalog and how each record changes it.

use std::collections::{BTreeMap, VecDeque};
use std::iter;

use uuid::Uuid;

use super::CatalogError;
use super::health::{CleaningCartridge, Health, MediumErrors};
use super::record::{
    AgentAdded, AgentEnrolled, AgentRevoked, ConsoleLogin, FilesKept, IdsReserved, IndexPruned, JobDeleted,
    JobSaved, JobState, JobStateChanged, LaneRun, LogEntry, MediumAdded, MediumRemoved, MediumState,
    MediumUpdated, MediumVaulted, ObjectStored, ObjectsStored, PartMoved, PartRuns, PoolDefined, Record,
    SessionFinished, SessionIndexed, SessionKind, SessionPart, SessionPruned, SessionStarted, StoredObject,
    StreamCut, run_batches,
};

/// Activity log entries kept; older ones are dropped.
pub const LOG_KEEP: usize = 10_000;
/// State changes kept per job; older ones are dropped (the current state is always kept).
pub const JOB_HISTORY_KEEP: usize = 64;

const _: () = assert!(LOG_KEEP >= 1 && JOB_HISTORY_KEEP >= 1);

/// First session and job id.
const FIRST_ID: u64 = 1;

/// A medium in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medium {
    info: MediumAdded,
    used: u64,
    state: MediumState,
    /// Since when it is in the vault (exported), if it is.
    offsite: Option<u64>,
    /// MEDIUM ERROR sense seen reading and writing it: (read, write).
    errors: (u32, u32),
}

impl Medium {
    /// Its UUID.
    pub fn id(&self) -> [u8; 16] {
        self.info.medium
    }

    /// Its barcode.
    pub fn barcode(&self) -> &str {
        &self.info.barcode
    }

    /// What it was added with: pool, kind, block size, capacity, location.
    pub fn info(&self) -> &MediumAdded {
        &self.info
    }

    /// Bytes written to it.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether it takes more data.
    pub fn state(&self) -> MediumState {
        self.state
    }

    /// Since when it is offsite (exported to the vault), if it is.
    pub fn offsite(&self) -> Option<u64> {
        self.offsite
    }

    /// Medium errors seen so far: (read, write).
    pub fn errors(&self) -> (u32, u32) {
        self.errors
    }

    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let changed = self.used != 0 || self.state != MediumState::Writable;
        let update = changed.then(|| {
            Record::MediumUpdated(MediumUpdated { medium: self.id(), used: self.used, state: self.state })
        });
        let vaulted = self
            .offsite
            .map(|at| Record::MediumVaulted(MediumVaulted { medium: self.id(), offsite: true, at }));
        let (read, write) = self.errors;
        let errors =
            (self.errors != (0, 0)).then(|| Record::from(MediumErrors { medium: self.id(), read, write }));
        iter::once(Record::MediumAdded(self.info.clone())).chain(update).chain(vaulted).chain(errors)
    }
}

/// The totals of a session's per-file entries, counted as their records are applied (the
/// entries themselves go to the session's index file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Object pieces and kept files.
    entries: u64,
    /// Objects, each once however many segments it was split into.
    objects: u64,
    /// Object bytes before compression.
    raw_bytes: u64,
    /// Kept files.
    kept: u64,
    /// Whether the list of kept files is the whole walk's.
    kept_complete: bool,
    /// Parts holding at least one committed piece (until the session is indexed).
    parts_used: std::collections::BTreeSet<(u16, u32)>,
    /// Objects split into segments, counted once (until the session is indexed). Only large
    /// files are split, so this stays small.
    split: std::collections::BTreeSet<u64>,
}

impl Tally {
    fn count(&mut self, o: &StoredObject) {
        self.entries += 1;
        self.raw_bytes += o.length;
        self.parts_used.insert((o.stream, o.part));
        let whole = o.segment_offset == 0 && o.length == o.size;
        if whole {
            self.objects += 1;
            return;
        }
        // A segment: the object counts once, at whichever of its segments comes first.
        if self.split.insert(o.id) {
            self.objects += 1;
        }
    }
}

/// A session in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    start: SessionStarted,
    /// By (stream, part); each stream's parts are numbered from 0 without gaps.
    parts: BTreeMap<(u16, u32), SessionPart>,
    tally: Tally,
    finish: Option<SessionFinished>,
    /// Streams that ended without their trailer.
    cut: std::collections::BTreeSet<u16>,
    /// The index file's record, once it is durable (kept when the file is pruned: its totals
    /// and CRC say what a file read back from the media must hold).
    indexed: Option<SessionIndexed>,
    /// The index file was pruned, until it is read back from the media.
    pruned: Option<IndexPruned>,
    /// Multiplexed parts: each one's length and where its lanes lie.
    runs: BTreeMap<(u16, u32), (u64, Vec<LaneRun>)>,
}

impl Session {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.start.session
    }

    /// How it started: job, host, source, time, streams, mode.
    pub fn start(&self) -> &SessionStarted {
        &self.start
    }

    /// Its parts, by stream then part number.
    pub fn parts(&self) -> impl DoubleEndedIterator<Item = &SessionPart> + '_ {
        self.parts.values()
    }

    /// One part of one stream.
    pub fn part(&self, stream: u16, part: u32) -> Option<&SessionPart> {
        self.parts.get(&(stream, part))
    }

    /// Entries of its per-file index: object pieces and kept files.
    pub fn entries(&self) -> u64 {
        self.tally.entries
    }

    /// Object pieces recorded (an object split into segments has one per segment).
    pub fn pieces(&self) -> u64 {
        self.tally.entries - self.tally.kept
    }

    /// How many objects it holds, each once however many segments it was split into.
    pub fn object_count(&self) -> u64 {
        self.tally.objects
    }

    /// Object bytes before compression, over the pieces recorded.
    pub fn raw_bytes(&self) -> u64 {
        self.tally.raw_bytes
    }

    /// Whether some committed piece lies in `part` of `stream` (known while the session is not
    /// indexed; an indexed session answers true for every part it has).
    pub fn part_used(&self, stream: u16, part: u32) -> bool {
        self.indexed.is_some() || self.tally.parts_used.contains(&(stream, part))
    }

    /// Whether an incremental session's list of kept files is the whole walk's (the kept files
    /// are entries of its index); false for full sessions and for incrementals without a whole
    /// list (older coffer, a walk that did not finish).
    pub fn has_kept_list(&self) -> bool {
        self.tally.kept_complete
    }

    /// Its index file's record, once the file is durable. A pruned index keeps its record:
    /// see [`index_pruned`](Self::index_pruned) before opening the file.
    pub fn indexed(&self) -> Option<&SessionIndexed> {
        self.indexed.as_ref()
    }

    /// Whether its index file was pruned (and when), until it is read back from the media.
    pub fn index_pruned(&self) -> Option<&IndexPruned> {
        self.pruned.as_ref()
    }

    /// Whether its index file is in the state directory now.
    pub fn has_index_file(&self) -> bool {
        self.indexed.is_some() && self.pruned.is_none()
    }

    /// Why its index file may not be pruned, if it may not: it must be durable, and the session
    /// finished with every stream ended by its trailer, since the index written before the
    /// trailer is what brings the file back.
    pub fn index_unprunable(&self) -> Option<&'static str> {
        if !self.is_finished() {
            return Some("the session is still running");
        }
        if self.indexed.is_none() {
            return Some("its index file is not written yet");
        }
        if self.pruned.is_some() {
            return Some("it is pruned already");
        }
        if !self.cut.is_empty() {
            return Some("a stream of it ended without its trailer, so its media hold no index to read back");
        }
        None
    }

    /// Whether it holds entries that are only in the journal (its index file is not written
    /// yet): a snapshot cannot be taken then.
    pub fn needs_index(&self) -> bool {
        self.indexed.is_none() && (self.tally.entries > 0 || self.tally.kept_complete)
    }

    /// How it ended, once it has.
    pub fn finish(&self) -> Option<&SessionFinished> {
        self.finish.as_ref()
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Whether `stream` ended without its trailer (read it object by object).
    pub fn is_cut(&self, stream: u16) -> bool {
        self.cut.contains(&stream)
    }

    /// Where the lanes of a multiplexed part lie, and the part's length; `None` for a part that
    /// holds no multiplexed records.
    pub fn part_runs(&self, stream: u16, part: u32) -> Option<(u64, &[LaneRun])> {
        self.runs.get(&(stream, part)).map(|(len, r)| (*len, r.as_slice()))
    }

    /// Whether several agents' records are interleaved in it.
    pub fn is_multiplexed(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Whether any of its parts lies on `medium`.
    pub fn uses_medium(&self, medium: [u8; 16]) -> bool {
        self.parts.values().any(|p| p.medium == medium)
    }

    /// Refuses a stream number outside the session's streams.
    fn check_stream(&self, stream: u16) -> Result<(), CatalogError> {
        if stream >= self.start.streams {
            return Err(CatalogError::UnknownStream {
                session: self.id(),
                stream,
                streams: self.start.streams,
            });
        }
        Ok(())
    }

    /// The part number that must come next on `stream`.
    fn next_part(&self, stream: u16) -> u32 {
        let last = self.parts.range((stream, 0)..=(stream, u32::MAX)).next_back();
        last.map_or(0, |(&(_, p), _)| p.saturating_add(1))
    }

    /// Refuses a piece in a part the session has not recorded.
    fn check_piece(&self, o: &StoredObject) -> Result<(), CatalogError> {
        if !self.parts.contains_key(&(o.stream, o.part)) {
            return Err(CatalogError::UnknownPart {
                session: self.id(),
                object: o.id,
                stream: o.stream,
                part: o.part,
            });
        }
        Ok(())
    }

    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        assert!(!self.needs_index(), "snapshot of session {} whose entries are not indexed", self.id());
        let session = self.id();
        let parts = self.parts.values().cloned().map(Record::SessionPart);
        let finish = self.finish.clone().map(Record::SessionFinished);
        let indexed = self.indexed.clone().map(Record::SessionIndexed);
        let pruned = self.pruned.clone().map(Record::IndexPruned);
        let cut = self.cut.iter().map(move |&stream| Record::StreamCut(StreamCut { session, stream }));
        let runs = self.runs.iter().flat_map(move |(&(stream, part), (len, runs))| {
            run_batches(session, stream, part, *len, runs).into_iter().map(Record::PartRuns)
        });
        iter::once(Record::SessionStarted(self.start.clone()))
            .chain(parts)
            .chain(runs)
            .chain(cut)
            .chain(finish)
            .chain(indexed)
            .chain(pruned)
    }
}

/// A job in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    saved: JobSaved,
    /// The last [`JOB_HISTORY_KEEP`] state changes, oldest first.
    history: VecDeque<JobStateChanged>,
}

impl Job {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.saved.job
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.saved.name
    }

    /// The text of its job file.
    pub fn definition(&self) -> &str {
        &self.saved.definition
    }

    /// Its current state: `Ready` until it first changes.
    pub fn state(&self) -> JobState {
        self.history.back().map_or(JobState::Ready, |c| c.state)
    }

    /// Its last state changes, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &JobStateChanged> + '_ {
        self.history.iter()
    }

    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let changes = self.history.iter().cloned().map(Record::JobStateChanged);
        iter::once(Record::JobSaved(self.saved.clone())).chain(changes)
    }
}

/// Where an agent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// Added; its token not used yet.
    Pending,
    /// Its certificate was signed: it may connect.
    Enrolled,
    /// Refused from now on.
    Revoked,
}

/// A backup agent in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    added: AgentAdded,
    enrolled: Option<AgentEnrolled>,
    revoked: Option<AgentRevoked>,
}

impl Agent {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.added.name
    }

    /// How it was added: paths, restore paths, token digest and expiry.
    pub fn added(&self) -> &AgentAdded {
        &self.added
    }

    /// Its enrolment, once its token was used.
    pub fn enrolled(&self) -> Option<&AgentEnrolled> {
        self.enrolled.as_ref()
    }

    /// Its revocation.
    pub fn revoked(&self) -> Option<&AgentRevoked> {
        self.revoked.as_ref()
    }

    /// Where it is in its life.
    pub fn state(&self) -> AgentState {
        match (&self.enrolled, &self.revoked) {
            (_, Some(_)) => AgentState::Revoked,
            (Some(_), None) => AgentState::Enrolled,
            (None, None) => AgentState::Pending,
        }
    }

    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        iter::once(Record::AgentAdded(self.added.clone()))
            .chain(self.enrolled.clone().map(Record::AgentEnrolled))
            .chain(self.revoked.clone().map(Record::AgentRevoked))
    }
}

/// The state journal replay rebuilds: media, sessions, jobs, the activity log and the next ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    media: BTreeMap<[u8; 16], Medium>,
    /// Barcode of every medium in `media`, to its UUID.
    barcodes: BTreeMap<String, [u8; 16]>,
    sessions: BTreeMap<u64, Session>,
    jobs: BTreeMap<u64, Job>,
    /// The last [`LOG_KEEP`] entries, oldest first.
    log: VecDeque<LogEntry>,
    /// Above every session id ever used.
    next_session: u64,
    /// Above every job id ever used.
    next_job: u64,
    /// The console's latest login: the wrong PINs in a row it counts set the lockout.
    console_login: Option<ConsoleLogin>,
    /// Backup agents, by name.
    agents: BTreeMap<String, Agent>,
    /// Cleaning cartridges and drives' hard errors.
    health: Health,
    /// Pools made by command: name → definition (TOML keys).
    pools: BTreeMap<String, String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// An empty catalog: what replay starts from.
    pub fn new() -> Catalog {
        Catalog {
            media: BTreeMap::new(),
            barcodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            jobs: BTreeMap::new(),
            log: VecDeque::new(),
            next_session: FIRST_ID,
            next_job: FIRST_ID,
            console_login: None,
            agents: BTreeMap::new(),
            health: Health::default(),
            pools: BTreeMap::new(),
        }
    }

    /// Pools made or changed by command, by name: their definitions (TOML keys).
    pub fn pools(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pools.iter().map(|(n, d)| (n.as_str(), d.as_str()))
    }

    /// Applies one record. Checks it against its rules and the state first: on error nothing
    /// has changed.
    pub fn apply(&mut self, r: &Record) -> Result<(), CatalogError> {
        r.validate()?;
        match r {
            Record::MediumAdded(b) => self.medium_added(b),
            Record::MediumUpdated(b) => self.medium_updated(b),
            Record::MediumRemoved(b) => self.medium_removed(b),
            Record::MediumVaulted(b) => {
                let m = self.media.get_mut(&b.medium).ok_or_else(|| unknown_medium(b.medium))?;
                m.offsite = b.offsite.then_some(b.at);
                Ok(())
            }
            Record::MediumErrors(b) => {
                let m = self.media.get_mut(&b.medium).ok_or_else(|| unknown_medium(b.medium))?;
                m.errors = (b.read, b.write);
                Ok(())
            }
            Record::CleaningUsed(b) => self.health.cleaning_used(b).map_err(|why| CatalogError::Health {
                what: format!("cleaning cartridge {} of library {}", b.barcode, b.library),
                why,
            }),
            Record::CleaningRetired(b) => {
                self.health.cleaning_retired(b).map_err(|why| CatalogError::Health {
                    what: format!("cleaning cartridge {} of library {}", b.barcode, b.library),
                    why,
                })
            }
            Record::DriveErrors(b) => {
                self.health.drive_errors(b);
                Ok(())
            }
            Record::SessionStarted(b) => self.session_started(b),
            Record::SessionPart(b) => self.session_part(b),
            Record::ObjectStored(b) => self.object_stored(b),
            Record::ObjectsStored(b) => self.objects_stored(b),
            Record::SessionIndexed(b) => self.session_indexed(b),
            Record::IndexPruned(b) => self.index_pruned(b),
            Record::SessionFinished(b) => self.session_finished(b),
            Record::SessionPruned(b) => self.session_pruned(b),
            Record::PartMoved(b) => self.part_moved(b),
            Record::StreamCut(b) => self.stream_cut(b),
            Record::PartRuns(b) => self.part_runs(b),
            Record::FilesKept(b) => self.files_kept(b),
            Record::JobSaved(b) => self.job_saved(b),
            Record::JobStateChanged(b) => self.job_state_changed(b),
            Record::JobDeleted(b) => self.job_deleted(b),
            Record::LogEntry(b) => {
                self.log_entry(b);
                Ok(())
            }
            Record::IdsReserved(b) => self.ids_reserved(b),
            Record::ConsoleLogin(b) => {
                self.console_login = Some(b.clone());
                Ok(())
            }
            Record::AgentAdded(b) => self.agent_added(b),
            Record::AgentEnrolled(b) => self.agent_enrolled(b),
            Record::AgentRevoked(b) => self.agent_revoked(b),
            Record::PoolDefined(b) => {
                self.pools.insert(b.name.clone(), b.definition.clone());
                Ok(())
            }
        }
    }

    /// The fewest records that, applied in order to an empty catalog, build one equal to this:
    /// media, then sessions (start, parts, end, index file), then jobs, the log, the console's
    /// latest login, and the next ids when pruning or deletion left them above what the rest
    /// implies.
    ///
    /// # Panics
    /// Unless [`snapshot_ready`](Self::snapshot_ready): the entries of a session not yet
    /// indexed are only in the journal.
    pub fn snapshot_records(&self) -> impl Iterator<Item = Record> + '_ {
        assert!(self.snapshot_ready(), "snapshot taken while a session's entries are not indexed");
        let media = self.media.values().flat_map(Medium::records);
        let sessions = self.sessions.values().flat_map(Session::records);
        let jobs = self.jobs.values().flat_map(Job::records);
        let log = self.log.iter().cloned().map(Record::LogEntry);
        let login = self.console_login.iter().cloned().map(Record::ConsoleLogin);
        let agents = self.agents.values().flat_map(Agent::records);
        let health = self.health.records();
        let pools = self.pools.iter().map(|(name, definition)| {
            Record::from(PoolDefined { name: name.clone(), definition: definition.clone() })
        });
        media
            .chain(sessions)
            .chain(jobs)
            .chain(log)
            .chain(login)
            .chain(agents)
            .chain(health)
            .chain(pools)
            .chain(self.ids_record())
    }

    /// Whether a snapshot may be taken: no session holds entries that are only in the journal.
    pub fn snapshot_ready(&self) -> bool {
        self.sessions.values().all(|s| !s.needs_index())
    }

    /// Sessions whose entries are only in the journal: running ones, and finished ones whose
    /// index file is not durable yet.
    pub fn unindexed(&self) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.values().filter(|s| s.needs_index())
    }

    /// Backup agents, by name.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> + '_ {
        self.agents.values()
    }

    /// One agent.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.get(name)
    }

    /// The console's latest login, which counts the wrong PINs in a row.
    pub fn console_login(&self) -> Option<&ConsoleLogin> {
        self.console_login.as_ref()
    }

    /// Sessions, oldest (lowest id) first.
    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = &Session> + '_ {
        self.sessions.values()
    }

    /// One session.
    pub fn session(&self, id: u64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// The newest session (highest id), finished or not.
    pub fn latest_session(&self) -> Option<&Session> {
        self.sessions.values().next_back()
    }

    /// Sessions with a part on `medium`.
    pub fn sessions_on(&self, medium: [u8; 16]) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.values().filter(move |s| s.uses_medium(medium))
    }

    /// Cleaning cartridges the catalog knows of library `library`, by barcode.
    pub fn cleaning_cartridges<'a>(
        &'a self,
        library: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a CleaningCartridge)> + 'a {
        self.health.cleaning.iter().filter(move |((l, _), _)| l == library).map(|((_, b), c)| (b.as_str(), c))
    }

    /// Checks in a row that found hard errors on drive `drive` of `library`.
    pub fn drive_hard_errors(&self, library: &str, drive: u16) -> u32 {
        self.health.drive_errors.get(&(library.to_owned(), drive)).copied().unwrap_or(0)
    }

    /// One medium, by UUID.
    pub fn medium(&self, id: [u8; 16]) -> Option<&Medium> {
        self.media.get(&id)
    }

    /// One medium, by barcode.
    pub fn medium_by_barcode(&self, barcode: &str) -> Option<&Medium> {
        let id = self.barcodes.get(barcode)?;
        let m = self.media.get(id);
        assert!(m.is_some(), "barcode index names a medium not in the catalog");
        m
    }

    /// Media, by UUID.
    pub fn media(&self) -> impl Iterator<Item = &Medium> + '_ {
        self.media.values()
    }

    /// Jobs, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> + '_ {
        self.jobs.values()
    }

    /// One job.
    pub fn job(&self, id: u64) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// The activity log's last [`LOG_KEEP`] entries, oldest first.
    pub fn log(&self) -> impl DoubleEndedIterator<Item = &LogEntry> + ExactSizeIterator + '_ {
        self.log.iter()
    }

    /// The id the next session must take.
    pub fn next_session_id(&self) -> u64 {
        self.next_session
    }

    /// The id the next new job must take.
    pub fn next_job_id(&self) -> u64 {
        self.next_job
    }

    fn medium_added(&mut self, b: &MediumAdded) -> Result<(), CatalogError> {
        if self.media.contains_key(&b.medium) {
            return Err(CatalogError::MediumExists { medium: Uuid::from_bytes(b.medium) });
        }
        if let Some(&other) = self.barcodes.get(&b.barcode) {
            return Err(CatalogError::BarcodeInUse {
                barcode: b.barcode.clone(),
                medium: Uuid::from_bytes(other),
            });
        }
        self.barcodes.insert(b.barcode.clone(), b.medium);
        let medium =
            Medium { info: b.clone(), used: 0, state: MediumState::Writable, offsite: None, errors: (0, 0) };
        self.media.insert(b.medium, medium);
        Ok(())
    }

    fn medium_updated(&mut self, b: &MediumUpdated) -> Result<(), CatalogError> {
        let m = self.media.get_mut(&b.medium).ok_or_else(|| unknown_medium(b.medium))?;
        m.used = b.used;
        m.state = b.state;
        Ok(())
    }

    fn medium_removed(&mut self, b: &MediumRemoved) -> Result<(), CatalogError> {
        if !self.media.contains_key(&b.medium) {
            return Err(unknown_medium(b.medium));
        }
        if let Some(s) = self.sessions_on(b.medium).next() {
            return Err(CatalogError::MediumInUse { medium: Uuid::from_bytes(b.medium), session: s.id() });
        }
        let m = self.media.remove(&b.medium).expect("medium checked above");
        let indexed = self.barcodes.remove(&m.info.barcode);
        assert_eq!(indexed, Some(b.medium), "barcode index out of step");
        Ok(())
    }

    fn session_started(&mut self, b: &SessionStarted) -> Result<(), CatalogError> {
        if self.sessions.contains_key(&b.session) {
            return Err(CatalogError::SessionExists { session: b.session });
        }
        if b.session < self.next_session {
            return Err(CatalogError::StaleId { what: "session", id: b.session, next: self.next_session });
        }
        let session = Session {
            start: b.clone(),
            parts: BTreeMap::new(),
            tally: Tally::default(),
            finish: None,
            cut: Default::default(),
            indexed: None,
            pruned: None,
            runs: BTreeMap::new(),
        };
        self.sessions.insert(b.session, session);
        // Validation keeps ids below u64::MAX.
        self.next_session = b.session + 1;
        Ok(())
    }

    fn session_part(&mut self, b: &SessionPart) -> Result<(), CatalogError> {
        if !self.media.contains_key(&b.medium) {
            return Err(unknown_medium(b.medium));
        }
        let s = open_session(&mut self.sessions, b.session)?;
        s.check_stream(b.stream)?;
        let expected = s.next_part(b.stream);
        if b.part != expected || s.parts.contains_key(&(b.stream, b.part)) {
            return Err(CatalogError::PartOutOfOrder {
                session: b.session,
                stream: b.stream,
                part: b.part,
                expected,
            });
        }
        s.parts.insert((b.stream, b.part), b.clone());
        Ok(())
    }

    fn object_stored(&mut self, b: &ObjectStored) -> Result<(), CatalogError> {
        let s = open_session(&mut self.sessions, b.session)?;
        s.check_piece(&b.object)?;
        s.tally.count(&b.object);
        Ok(())
    }

    fn objects_stored(&mut self, b: &ObjectsStored) -> Result<(), CatalogError> {
        let s = open_session(&mut self.sessions, b.session)?;
        // All or nothing: check every piece before counting any.
        b.objects.iter().try_for_each(|o| s.check_piece(o))?;
        b.objects.iter().for_each(|o| s.tally.count(o));
        Ok(())
    }

    fn session_indexed(&mut self, b: &SessionIndexed) -> Result<(), CatalogError> {
        let s =
            self.sessions.get_mut(&b.session).ok_or(CatalogError::UnknownSession { session: b.session })?;
        let refuse = |why| Err(CatalogError::Index { session: b.session, crc: b.crc, why });
        if !s.is_finished() {
            return refuse("the session is still running");
        }
        if let (Some(was), Some(_)) = (&s.indexed, &s.pruned) {
            // Read back from the media after it was pruned: the same entries as the file that
            // was, though not byte for byte (packed objects' digests stay inside their packs).
            let same = (was.entries, was.objects, was.raw_bytes, was.kept, was.kept_complete)
                == (b.entries, b.objects, b.raw_bytes, b.kept, b.kept_complete);
            if !same {
                return refuse("the index read back holds other entries than the journal recorded");
            }
            s.indexed = Some(b.clone());
            s.pruned = None;
            return Ok(());
        }
        if s.indexed.is_some() {
            return refuse("the session is indexed already");
        }
        // Replayed after its entries' records, the totals must agree; from a snapshot (no
        // entries counted), the record brings them.
        let t = &s.tally;
        let counted = t.entries > 0 || t.kept_complete;
        let same = t.entries == b.entries
            && t.objects == b.objects
            && t.raw_bytes == b.raw_bytes
            && t.kept == b.kept
            && t.kept_complete == b.kept_complete;
        if counted && !same {
            return refuse("it holds other entries than the journal recorded");
        }
        s.tally = Tally {
            entries: b.entries,
            objects: b.objects,
            raw_bytes: b.raw_bytes,
            kept: b.kept,
            kept_complete: b.kept_complete,
            ..Tally::default()
        };
        s.indexed = Some(b.clone());
        Ok(())
    }

    fn index_pruned(&mut self, b: &IndexPruned) -> Result<(), CatalogError> {
        let s =
            self.sessions.get_mut(&b.session).ok_or(CatalogError::UnknownSession { session: b.session })?;
        if let Some(why) = s.index_unprunable() {
            return Err(CatalogError::IndexPrune { session: b.session, why });
        }
        s.pruned = Some(b.clone());
        Ok(())
    }

    fn session_finished(&mut self, b: &SessionFinished) -> Result<(), CatalogError> {
        let s = open_session(&mut self.sessions, b.session)?;
        s.finish = Some(b.clone());
        Ok(())
    }

    fn session_pruned(&mut self, b: &SessionPruned) -> Result<(), CatalogError> {
        let s = self.sessions.get(&b.session).ok_or(CatalogError::UnknownSession { session: b.session })?;
        if !s.is_finished() {
            return Err(CatalogError::SessionRunning { session: b.session });
        }
        self.sessions.remove(&b.session);
        Ok(())
    }

    fn files_kept(&mut self, b: &FilesKept) -> Result<(), CatalogError> {
        let s = open_session(&mut self.sessions, b.session)?;
        let refuse = |why| Err(CatalogError::KeptList { session: b.session, why });
        if !matches!(s.start.kind, SessionKind::Incremental { .. }) {
            return refuse("it is not incremental");
        }
        if s.tally.kept_complete {
            return refuse("its list is complete already");
        }
        s.tally.entries += b.paths.len() as u64;
        s.tally.kept += b.paths.len() as u64;
        s.tally.kept_complete = b.complete;
        Ok(())
    }

    fn part_runs(&mut self, b: &PartRuns) -> Result<(), CatalogError> {
        let s =
            self.sessions.get_mut(&b.session).ok_or(CatalogError::UnknownSession { session: b.session })?;
        if !s.parts.contains_key(&(b.stream, b.part)) {
            let why = "the session has not recorded the part";
            return Err(CatalogError::Runs { session: b.session, stream: b.stream, part: b.part, why });
        }
        let (len, runs) = s.runs.entry((b.stream, b.part)).or_default();
        if runs.last().zip(b.runs.first()).is_some_and(|(l, f)| f.start < l.start) {
            let why = "they start before the runs recorded before them";
            return Err(CatalogError::Runs { session: b.session, stream: b.stream, part: b.part, why });
        }
        *len = (*len).max(b.len);
        runs.extend_from_slice(&b.runs);
        Ok(())
    }

    fn stream_cut(&mut self, b: &StreamCut) -> Result<(), CatalogError> {
        let s = open_session(&mut self.sessions, b.session)?;
        s.check_stream(b.stream)?;
        s.cut.insert(b.stream);
        Ok(())
    }

    fn part_moved(&mut self, b: &PartMoved) -> Result<(), CatalogError> {
        if !self.media.contains_key(&b.medium) {
            return Err(unknown_medium(b.medium));
        }
        let s =
            self.sessions.get_mut(&b.session).ok_or(CatalogError::UnknownSession { session: b.session })?;
        if !s.is_finished() {
            return Err(CatalogError::SessionRunning { session: b.session });
        }
        let part = s.parts.get_mut(&(b.stream, b.part)).ok_or(CatalogError::NoSuchPart {
            session: b.session,
            stream: b.stream,
            part: b.part,
        })?;
        part.medium = b.medium;
        part.position = b.position;
        part.file_number = b.file_number;
        Ok(())
    }

    fn job_saved(&mut self, b: &JobSaved) -> Result<(), CatalogError> {
        if let Some(job) = self.jobs.get_mut(&b.job) {
            job.saved = b.clone();
            return Ok(());
        }
        if b.job < self.next_job {
            return Err(CatalogError::StaleId { what: "job", id: b.job, next: self.next_job });
        }
        let job = Job { saved: b.clone(), history: VecDeque::new() };
        self.jobs.insert(b.job, job);
        // Validation keeps ids below u64::MAX.
        self.next_job = b.job + 1;
        Ok(())
    }

    fn job_state_changed(&mut self, b: &JobStateChanged) -> Result<(), CatalogError> {
        let job = self.jobs.get_mut(&b.job).ok_or(CatalogError::UnknownJob { job: b.job })?;
        if job.history.len() == JOB_HISTORY_KEEP {
            job.history.pop_front();
        }
        job.history.push_back(b.clone());
        assert!(job.history.len() <= JOB_HISTORY_KEEP);
        Ok(())
    }

    fn job_deleted(&mut self, b: &JobDeleted) -> Result<(), CatalogError> {
        let job = self.jobs.get(&b.job).ok_or(CatalogError::UnknownJob { job: b.job })?;
        if job.state() == JobState::Active {
            return Err(CatalogError::JobActive { job: b.job });
        }
        self.jobs.remove(&b.job);
        Ok(())
    }

    fn log_entry(&mut self, b: &LogEntry) {
        if self.log.len() == LOG_KEEP {
            self.log.pop_front();
        }
        self.log.push_back(b.clone());
        assert!(self.log.len() <= LOG_KEEP);
    }

    fn agent_added(&mut self, b: &AgentAdded) -> Result<(), CatalogError> {
        if self.agents.get(&b.name).is_some_and(|a| a.state() == AgentState::Enrolled) {
            return Err(agent_error(&b.name, "it is enrolled: revoke it before adding it again"));
        }
        // A pending agent takes the new token; a revoked one starts again.
        let agent = Agent { added: b.clone(), enrolled: None, revoked: None };
        self.agents.insert(b.name.clone(), agent);
        Ok(())
    }

    fn agent_enrolled(&mut self, b: &AgentEnrolled) -> Result<(), CatalogError> {
        let a = self.agents.get_mut(&b.name).ok_or_else(|| agent_error(&b.name, "no such agent"))?;
        match a.state() {
            AgentState::Enrolled => return Err(agent_error(&b.name, "its token was used already")),
            AgentState::Revoked => return Err(agent_error(&b.name, "it is revoked")),
            AgentState::Pending => {}
        }
        if b.at > a.added.expires {
            return Err(agent_error(&b.name, "its token has expired: add it again for a new one"));
        }
        a.enrolled = Some(b.clone());
        Ok(())
    }

    fn agent_revoked(&mut self, b: &AgentRevoked) -> Result<(), CatalogError> {
        let a = self.agents.get_mut(&b.name).ok_or_else(|| agent_error(&b.name, "no such agent"))?;
        if a.revoked.is_some() {
            return Err(agent_error(&b.name, "it is revoked already"));
        }
        a.revoked = Some(b.clone());
        Ok(())
    }

    fn ids_reserved(&mut self, b: &IdsReserved) -> Result<(), CatalogError> {
        if b.next_session < self.next_session {
            return Err(CatalogError::StaleId {
                what: "session",
                id: b.next_session,
                next: self.next_session,
            });
        }
        if b.next_job < self.next_job {
            return Err(CatalogError::StaleId { what: "job", id: b.next_job, next: self.next_job });
        }
        self.next_session = b.next_session;
        self.next_job = b.next_job;
        Ok(())
    }

    /// The `IdsReserved` record a snapshot needs, if replaying the rest would leave the next
    /// ids lower than they are.
    fn ids_record(&self) -> Option<Record> {
        let implied = |last: Option<u64>| last.map_or(FIRST_ID, |id| id + 1);
        let session = implied(self.sessions.keys().next_back().copied());
        let job = implied(self.jobs.keys().next_back().copied());
        assert!(session <= self.next_session && job <= self.next_job);
        let needed = session != self.next_session || job != self.next_job;
        needed.then_some(Record::IdsReserved(IdsReserved {
            next_session: self.next_session,
            next_job: self.next_job,
        }))
    }
}

fn agent_error(name: &str, why: &'static str) -> CatalogError {
    CatalogError::Agent { name: name.to_owned(), why }
}

fn unknown_medium(medium: [u8; 16]) -> CatalogError {
    CatalogError::UnknownMedium { medium: Uuid::from_bytes(medium) }
}

/// A session that takes more parts, objects or its end.
fn open_session(sessions: &mut BTreeMap<u64, Session>, id: u64) -> Result<&mut Session, CatalogError> {
    let s = sessions.get_mut(&id).ok_or(CatalogError::UnknownSession { session: id })?;
    if s.is_finished() {
        return Err(CatalogError::SessionFinished { session: id });
    }
    Ok(s)
}

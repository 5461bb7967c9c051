//! Record structs as older versions of coffer wrote them, each with the upgrade into the
//! current struct. [`Record::decode`](super::Record::decode) keeps an arm per old version, so a
//! journal or snapshot written by any earlier coffer still replays.

use serde::{Deserialize, Serialize};

use super::record::{JobState, JobStateChanged, SessionKind, SessionMode, SessionStarted};

/// `SessionStarted` version 1: before sessions said whether they were full or incremental.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SessionStartedV1 {
    pub session: u64,
    pub job: u64,
    pub host: String,
    pub source: String,
    pub started: u64,
    pub streams: u16,
    pub mode: SessionMode,
}

impl SessionStartedV1 {
    /// Every session was full then; which sources it read was not recorded in a form later
    /// backups can match, so it has no key and never serves as an incremental's base.
    pub(super) fn upgrade(self) -> SessionStarted {
        SessionStarted {
            session: self.session,
            job: self.job,
            host: self.host,
            source: self.source,
            started: self.started,
            streams: self.streams,
            mode: self.mode,
            kind: SessionKind::Full,
            source_key: [0; 32],
        }
    }
}

/// `JobStateChanged` version 1: before a READY job carried its due time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JobStateChangedV1 {
    pub job: u64,
    pub state: JobState,
    pub at: u64,
    pub message: String,
}

impl JobStateChangedV1 {
    /// No due time: the queue treats such a READY job as due at once.
    pub(super) fn upgrade(self) -> JobStateChanged {
        JobStateChanged { job: self.job, state: self.state, at: self.at, message: self.message, run_at: None }
    }
}

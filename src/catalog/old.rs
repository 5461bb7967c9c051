//! Record structs as older versions of coffer wrote them, each with the upgrade into the
//! current struct. [`Record::decode`](super::Record::decode) keeps an arm per old version, so a
//! journal or snapshot written by any earlier coffer still replays.

use serde::{Deserialize, Serialize};

use super::record::{
    JobState, JobStateChanged, ObjectStored, SessionKind, SessionMode, SessionStarted, StoredObject,
};
use crate::format::records::ObjectKind;

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

/// `StoredObject` as `ObjectStored` version 1 held it: before mode, owner and group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredObjectV1 {
    pub id: u64,
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub kind: ObjectKind,
    pub size: u64,
    pub mtime: i64,
    pub segment_offset: u64,
    pub length: u64,
    pub stream: u16,
    pub part: u32,
    pub position: u64,
    pub digest: [u8; 32],
}

/// `ObjectStored` version 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ObjectStoredV1 {
    pub session: u64,
    pub object: StoredObjectV1,
}

impl ObjectStoredV1 {
    /// Mode, owner and group were not recorded: 0, which no real object's mode is, so that an
    /// incremental backup never takes such a file as unchanged (it stores it again once).
    pub(super) fn upgrade(self) -> ObjectStored {
        let o = self.object;
        ObjectStored {
            session: self.session,
            object: StoredObject {
                id: o.id,
                path: o.path,
                kind: o.kind,
                size: o.size,
                mtime: o.mtime,
                mode: 0,
                uid: 0,
                gid: 0,
                segment_offset: o.segment_offset,
                length: o.length,
                stream: o.stream,
                part: o.part,
                position: o.position,
                digest: o.digest,
            },
        }
    }
}

//! Payloads of format version 1 that version 2 changed, as they are on media written by an
//! older coffer. Each decodes as written and converts to its version-2 struct with the new
//! fields at their "unknown" values: a full session without a source key, objects with mode,
//! owner and group 0 (an incremental backup built on such a session stores those files again
//! once), a trailer with no kept-files records.

use serde::{Deserialize, Serialize};

use super::records::{self, IndexEntry as IndexEntryV2, ObjectKind, PartRef, SessionKind, SessionStatus};

/// Version 1 of [`records::SessionHeader`]: no kind, no source key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHeader {
    pub session_id: u64,
    pub job_id: u64,
    pub host: String,
    pub started: u64,
    pub source: String,
    pub part: u32,
    pub stream: u16,
    pub streams: u16,
    pub continues: Option<PartRef>,
}

impl From<SessionHeader> for records::SessionHeader {
    fn from(h: SessionHeader) -> Self {
        records::SessionHeader {
            session_id: h.session_id,
            job_id: h.job_id,
            host: h.host,
            started: h.started,
            source: h.source,
            part: h.part,
            stream: h.stream,
            streams: h.streams,
            continues: h.continues,
            kind: SessionKind::Full,
            source_key: [0; 32],
        }
    }
}

/// Version 1 of [`records::IndexEntry`]: no mode, owner or group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub object_id: u64,
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
}

impl From<IndexEntry> for IndexEntryV2 {
    fn from(e: IndexEntry) -> Self {
        IndexEntryV2 {
            object_id: e.object_id,
            path: e.path,
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
            mode: 0,
            uid: 0,
            gid: 0,
            segment_offset: e.segment_offset,
            length: e.length,
            stream: e.stream,
            part: e.part,
            position: e.position,
        }
    }
}

/// Version 1 of [`records::Index`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(deserialize_with = "records::bounded_vec")]
    pub entries: Vec<IndexEntry>,
}

impl From<Index> for records::Index {
    fn from(ix: Index) -> Self {
        records::Index { entries: ix.entries.into_iter().map(IndexEntryV2::from).collect() }
    }
}

/// Version 1 of [`records::Trailer`]: no count of kept-files records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub session_id: u64,
    pub part: u32,
    pub objects: u64,
    pub records: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub ended: u64,
    pub status: SessionStatus,
    pub index_records: u32,
}

impl From<Trailer> for records::Trailer {
    fn from(t: Trailer) -> Self {
        records::Trailer {
            session_id: t.session_id,
            part: t.part,
            objects: t.objects,
            records: t.records,
            raw_bytes: t.raw_bytes,
            stored_bytes: t.stored_bytes,
            ended: t.ended,
            status: t.status,
            index_records: t.index_records,
            kept_records: 0,
        }
    }
}

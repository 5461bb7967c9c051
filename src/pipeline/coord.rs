//! The coordinator of a multi-device backup: it holds the plan in execution ([`Balancer`]) and
//! hands each sub-job's walker its next piece, sync point or end.
//!
//! A piece a walker pulled is *in flight* on its stream until the stream's writer passes a
//! sync point dealt after it (everything before is then durable and journaled). A walker whose
//! queue runs dry asks for a sync point, then waits: for more work (a failed device's pieces
//! moved to it) or for every operative stream to be idle with nothing in flight, which ends
//! the job for all. So a device that fails at any time before the end, even while the others
//! are already idle, has its unfinished pieces written elsewhere.
//!
//! When a device fails, its in-flight pieces whose objects were journaled stay where they are;
//! the rest, with its queue, move to the operative devices ([`Balancer::failed`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Cancel;
use crate::catalog::StoredObject;
use crate::plan::{Balancer, Moved, Piece, PlanError};

/// What a walker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Read and send this piece.
    Piece(Piece),
    /// Deal a sync point, then pull again.
    Sync,
    /// No more work: finish the stream.
    End,
}

#[derive(Debug, Default)]
struct Lane {
    /// Pulled and not yet known durable, oldest first.
    in_flight: VecDeque<Piece>,
    /// Pieces ever pulled, and ever acknowledged.
    pulled: u64,
    acked: u64,
    /// `pulled` at each sync point dealt and not yet reached.
    syncs: VecDeque<u64>,
    idle: bool,
    failed: bool,
    /// (object, segment offset) of the objects this stream journaled.
    journaled: HashSet<(u64, u64)>,
}

#[derive(Debug)]
struct State {
    bal: Balancer,
    lanes: Vec<Lane>,
    moved: Vec<Moved>,
    stopped: Option<String>,
}

/// Shared by the walkers (pull) and the control thread (synced, journaled, failed).
#[derive(Debug)]
pub struct Coordinator {
    state: Mutex<State>,
    cv: Condvar,
    cancel: Cancel,
}

/// How often a waiting walker looks at the cancel switch.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Coordinator {
    /// Coordinates streams `0..streams`, which are the balancer's devices; cancelling
    /// `cancel` ends every walker at its next pull.
    pub fn new(bal: Balancer, streams: usize, cancel: Cancel) -> Coordinator {
        let lanes = (0..streams).map(|_| Lane::default()).collect();
        let state = Mutex::new(State { bal, lanes, moved: Vec::new(), stopped: None });
        Coordinator { state, cv: Condvar::new(), cancel }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug that aborts the process (panic = abort).
        self.state.lock().expect("coordinator lock")
    }

    /// The next thing stream `d`'s walker does; waits while it has nothing to do but others
    /// may still fail and hand it work.
    pub fn pull(&self, d: usize) -> Pull {
        let mut st = self.lock();
        loop {
            if self.cancel.is_cancelled() {
                st.stopped.get_or_insert_with(|| "cancelled".into());
            }
            if st.lanes[d].failed || st.stopped.is_some() {
                return Pull::End;
            }
            if let Some(p) = st.bal.next(d) {
                let lane = &mut st.lanes[d];
                lane.in_flight.push_back(p);
                lane.pulled += 1;
                lane.idle = false;
                return Pull::Piece(p);
            }
            let lane = &mut st.lanes[d];
            if !lane.idle {
                lane.idle = true;
                lane.syncs.push_back(lane.pulled);
                return Pull::Sync;
            }
            // Quiet: every operative stream idle, nothing in flight, nothing queued (a failed
            // stream's pieces may have been queued on an idle one that has not pulled yet).
            let quiet = (0..st.lanes.len()).all(|e| {
                let l = &st.lanes[e];
                l.failed
                    || (l.idle && l.in_flight.is_empty() && st.bal.pending(e).is_none_or(|p| p.is_empty()))
            });
            if quiet {
                self.cv.notify_all();
                return Pull::End;
            }
            st = self.cv.wait_timeout(st, CANCEL_POLL).expect("coordinator lock").0;
        }
    }

    /// Stream `d`'s writer reached its oldest sync point: what was pulled before it is durable.
    pub fn synced(&self, d: usize) {
        let mut st = self.lock();
        let State { bal, lanes, .. } = &mut *st;
        let lane = &mut lanes[d];
        let Some(upto) = lane.syncs.pop_front() else {
            return;
        };
        while lane.acked < upto {
            let p = lane.in_flight.pop_front().expect("pulled pieces are in flight until acked");
            lane.acked += 1;
            // Only a failed lane refuses, and a failed lane's writer is gone.
            let _ = bal.written(d, p);
        }
        self.cv.notify_all();
    }

    /// Stream `d` journaled these objects.
    pub fn journaled(&self, d: usize, objects: &[StoredObject]) {
        let mut st = self.lock();
        st.lanes[d].journaled.extend(objects.iter().map(|o| (o.id, o.segment_offset)));
    }

    /// Stream `d`'s device failed: what it had not made durable moves to the others. On an
    /// error (no device left, no room) the whole job stops: every walker ends.
    pub fn failed(&self, d: usize) -> Result<Moved, PlanError> {
        let mut st = self.lock();
        if st.lanes[d].failed {
            return Ok(Moved { from: d, kept: 0, bytes: 0, moves: Vec::new() });
        }
        let lane = &mut st.lanes[d];
        lane.failed = true;
        let durable: Vec<Piece> =
            lane.in_flight.iter().copied().filter(|p| lane.journaled.contains(&(p.item, p.offset))).collect();
        let r = st.bal.failed(d, &durable);
        match &r {
            Ok(m) if m.moves.is_empty() => {}
            Ok(m) => st.moved.push(m.clone()),
            Err(e) => st.stopped = Some(e.to_string()),
        }
        self.cv.notify_all();
        r
    }

    /// Stream `d`'s writer ended cleanly. Normally its walker ended with everyone else's and
    /// nothing is left; if its reader stopped early, what it had not made durable moves on.
    pub fn closed(&self, d: usize) -> Result<Moved, PlanError> {
        self.failed(d)
    }

    /// Stops the job: every walker ends at its next pull (the streams then close cleanly).
    pub fn stop(&self, why: &str) {
        let mut st = self.lock();
        st.stopped.get_or_insert_with(|| why.to_owned());
        self.cv.notify_all();
    }

    /// Whether the job was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// What moved off failed devices, in order.
    pub fn moved(&self) -> Vec<Moved> {
        self.lock().moved.clone()
    }

    /// Why the job was stopped, if it was.
    pub fn stopped(&self) -> Option<String> {
        self.lock().stopped.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plan::{Device, Item, Options, plan};

    fn coordinator(sizes: &[u64], devices: usize) -> Coordinator {
        let items: Vec<Item> =
            sizes.iter().enumerate().map(|(i, &size)| Item { id: i as u64 + 1, size }).collect();
        let devs: Vec<Device> = (0..devices).map(|id| Device { id, capacity: None, rate: None }).collect();
        let opts = Options { align: 1, min_segment: 1, ..Options::default() };
        let p = plan(&items, &devs, &opts).unwrap();
        Coordinator::new(Balancer::new(&p, &devs).unwrap(), devices, Cancel::default())
    }

    fn object(p: Piece) -> StoredObject {
        let meta = crate::format::records::ObjectMeta {
            path: b"f".to_vec(),
            kind: crate::format::records::ObjectKind::File,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: p.len,
            rdev: 0,
            symlink: None,
            hardlink: None,
        };
        let mut o = super::super::stored(p.item, &meta, p.len, [0; 32]);
        o.segment_offset = p.offset;
        o
    }

    #[test]
    fn streams_end_only_when_all_are_idle_and_durable() {
        let c = coordinator(&[10, 10], 2);
        let Pull::Piece(a) = c.pull(0) else { panic!() };
        let Pull::Piece(b) = c.pull(1) else { panic!() };
        assert_eq!(c.pull(0), Pull::Sync);
        assert_eq!(c.pull(1), Pull::Sync);
        c.synced(0);
        // Stream 1 still has a piece in flight: stream 0 may get it, so it waits.
        let c = Arc::new(c);
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.pull(0))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "stream 0 ended while stream 1 was not durable");
        c.synced(1);
        assert_eq!(waiter.join().unwrap(), Pull::End);
        assert_eq!(c.pull(1), Pull::End);
        assert_ne!(a, b);
    }

    #[test]
    fn a_failed_stream_hands_what_was_not_journaled_to_an_idle_one() {
        let c = Arc::new(coordinator(&[10, 10, 10, 10], 2));
        let mut on1 = Vec::new();
        while let Pull::Piece(p) = c.pull(1) {
            on1.push(p);
        }
        assert_eq!(on1.len(), 2);
        // Stream 0 empties its queue and becomes durable: idle, waiting.
        let mut on0 = Vec::new();
        while let Pull::Piece(p) = c.pull(0) {
            on0.push(p);
        }
        c.synced(0);
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match c.pull(0) {
                        Pull::Piece(p) => got.push(p),
                        Pull::Sync => c.synced(0),
                        Pull::End => return got,
                    }
                }
            })
        };
        // Stream 1 journaled its first piece, then its device failed.
        c.journaled(1, &[object(on1[0])]);
        let moved = c.failed(1).unwrap();
        assert_eq!(moved.bytes, on1[1].len);
        assert_eq!(moved.kept, on1[0].len);
        let got = waiter.join().unwrap();
        assert_eq!(got, vec![on1[1]], "exactly the unjournaled piece moved");
        assert_eq!(c.moved().len(), 1);
    }

    /// Drains lane `d` until it asks for a sync point, and acknowledges it.
    fn drain(c: &Coordinator, d: usize) -> Vec<Piece> {
        let mut got = Vec::new();
        while let Pull::Piece(p) = c.pull(d) {
            got.push(p);
        }
        c.synced(d);
        got
    }

    #[test]
    fn a_stream_does_not_end_while_moved_work_waits_on_another() {
        let c = Arc::new(coordinator(&[10, 10, 10], 3));
        drain(&c, 0);
        drain(&c, 2);
        let Pull::Piece(p) = c.pull(1) else { panic!() };
        let moved = c.failed(1).unwrap();
        let to = moved.moves[0].to;
        let other = 2 - to;
        // The lane that got nothing must wait: the lane that got the work may still fail.
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.pull(other))
        };
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(!waiter.is_finished(), "lane {other} ended while lane {to} had work queued");
        assert_eq!(c.pull(to), Pull::Piece(p));
        c.failed(to).unwrap();
        // Now the waiting lane gets it.
        assert_eq!(waiter.join().unwrap(), Pull::Piece(p));
    }

    #[test]
    fn cancelling_ends_every_walker_even_a_waiting_one() {
        let cancel = Cancel::default();
        let items = [Item { id: 1, size: 10 }, Item { id: 2, size: 10 }];
        let devs: Vec<Device> = (0..2).map(|id| Device { id, capacity: None, rate: None }).collect();
        let p = plan(&items, &devs, &Options { align: 1, min_segment: 1, ..Options::default() }).unwrap();
        let c = Arc::new(Coordinator::new(Balancer::new(&p, &devs).unwrap(), 2, cancel.clone()));
        let Pull::Piece(_) = c.pull(0) else { panic!() };
        assert_eq!(c.pull(0), Pull::Sync);
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.pull(0))
        };
        cancel.cancel();
        assert_eq!(waiter.join().unwrap(), Pull::End);
        assert_eq!(c.pull(1), Pull::End, "the other stream does not start its piece");
        assert_eq!(c.stopped().as_deref(), Some("cancelled"));
    }

    #[test]
    fn when_no_device_is_left_every_walker_ends() {
        let c = coordinator(&[10, 10], 2);
        let Pull::Piece(_) = c.pull(0) else { panic!() };
        let Pull::Piece(_) = c.pull(1) else { panic!() };
        c.failed(0).unwrap();
        assert!(c.failed(1).is_err());
        assert!(c.stopped().is_some());
        assert_eq!(c.pull(0), Pull::End);
        assert_eq!(c.pull(1), Pull::End);
    }
}

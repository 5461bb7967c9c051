//! Where each lane of a multiplexed stream lies within a part: the writer records runs of
//! records by lane as it writes ([`RunsBuilder`]), the catalog keeps them per part, and a
//! restore of some lanes reads only their runs ([`reads`]). Pure logic, no I/O.
//!
//! A run is a byte range `[start, end)` of a part, from the first byte of a record of its lane
//! to the end of a record of that lane; records of other lanes may lie inside it when they were
//! fewer than [`MERGE_GAP`] bytes (reading a little more beats seeking on tape). A reader that
//! starts at a run's start starts at a record boundary.
//!
//! `scan` builds the same runs from the media alone: it feeds each record it walks to a
//! [`RunsBuilder`] as the writer did, its lane read from its header ([`lane_of_record`]).

use super::mux::LANE_STRIDE;
use crate::catalog::LaneRun;
use crate::format::Header;

/// Records of other lanes a run may step over rather than end and start again.
pub const MERGE_GAP: u64 = 1 << 20;

/// The runs of one part, built record by record.
#[derive(Debug, Default)]
pub struct RunsBuilder {
    runs: Vec<LaneRun>,
    /// Per lane, the index of its last run.
    last: std::collections::HashMap<u64, usize>,
}

impl RunsBuilder {
    /// A record of lane `lane` at `[start, end)` of the part: it extends the lane's last run
    /// when at most [`MERGE_GAP`] bytes lie between, or begins a new one. A record of lane 0
    /// (not multiplexed) is in no run.
    pub fn record(&mut self, lane: u64, start: u64, end: u64) {
        debug_assert!(start <= end);
        if lane == 0 {
            return;
        }
        if let Some(&i) = self.last.get(&lane) {
            let r = &mut self.runs[i];
            if start.saturating_sub(r.end) <= MERGE_GAP {
                r.end = end;
                return;
            }
        }
        self.last.insert(lane, self.runs.len());
        self.runs.push(LaneRun { lane, start, end });
    }

    /// The part's runs, in order of their starts, or `None` when it holds no multiplexed
    /// record (such a part has no runs: it is read whole); the builder is empty again, for the
    /// next part.
    pub fn take_part(&mut self) -> Option<Vec<LaneRun>> {
        self.last.clear();
        let runs = std::mem::take(&mut self.runs);
        (!runs.is_empty()).then_some(runs)
    }
}

/// The lane of a record read from the media, from its header: an object record's by its object
/// id (an agent multiplexed numbers its objects within its lane's range, and the box checks
/// that it does), 0 for records of the medium or the session.
///
/// The writer knows each record's lane from the agent it came from; this gives the same lane
/// for every multiplexed record. It also gives one to objects numbered after a multiplexed
/// group in the same stream (their ids are past the group's ranges), which the writer left in
/// none: the same lane a restore asks for them by ([`lane_of`] of their ids).
pub fn lane_of_record(h: &Header) -> u64 {
    if h.kind.is_object_record() { lane_of(h.object_id, LANE_STRIDE) } else { 0 }
}

/// The lane an object id belongs to: the first id of its lane's range (ids of lane `k` are
/// `k..k + stride`), or 0 for ids below the first stride (never multiplexed).
pub fn lane_of(id: u64, stride: u64) -> u64 {
    id - id % stride
}

/// The byte ranges of a part to read for the lanes `wanted`: their runs, joined where they
/// touch, overlap, or lie at most [`MERGE_GAP`] apart, in order.
pub fn reads(runs: &[LaneRun], wanted: &std::collections::BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut mine: Vec<(u64, u64)> =
        runs.iter().filter(|r| wanted.contains(&r.lane)).map(|r| (r.start, r.end)).collect();
    mine.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in mine {
        match out.last_mut() {
            Some(last) if s.saturating_sub(last.1) <= MERGE_GAP => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const MB: u64 = 1 << 20;

    #[test]
    fn records_of_one_lane_join_across_small_gaps_and_part_across_large_ones() {
        let mut b = RunsBuilder::default();
        b.record(7, 0, 10);
        b.record(7, 10, 20);
        b.record(9, 20, 20 + 4 * MB);
        // Lane 7 again after 4 MiB of lane 9: a new run.
        b.record(7, 20 + 4 * MB, 30 + 4 * MB);
        // Lane 9 again after 10 bytes of lane 7: its run goes on over them.
        b.record(9, 30 + 4 * MB, 40 + 4 * MB);
        let runs = b.take_part().expect("runs");
        assert_eq!(
            runs,
            vec![
                LaneRun { lane: 7, start: 0, end: 20 },
                LaneRun { lane: 9, start: 20, end: 40 + 4 * MB },
                LaneRun { lane: 7, start: 20 + 4 * MB, end: 30 + 4 * MB },
            ]
        );
        assert_eq!(b.take_part(), None, "taken: the next part starts empty");
        // Records of no lane are in no run, and a part of only those has none.
        b.record(0, 0, 100 * MB);
        assert_eq!(b.take_part(), None);
        b.record(0, 0, 100 * MB);
        b.record(7, 100 * MB, 101 * MB);
        assert_eq!(b.take_part(), Some(vec![LaneRun { lane: 7, start: 100 * MB, end: 101 * MB }]));
    }

    #[test]
    fn reads_cover_every_record_of_the_wanted_lanes_and_skip_long_stretches_of_others() {
        // Three lanes taking 8 MiB turns over 96 MiB.
        let mut b = RunsBuilder::default();
        let lanes = [1u64 << 40, 2 << 40, 3 << 40];
        let mut at = 0;
        let mut records = Vec::new();
        for turn in 0..12 {
            let lane = lanes[turn % 3];
            for _ in 0..4 {
                b.record(lane, at, at + 2 * MB);
                records.push((lane, at, at + 2 * MB));
                at += 2 * MB;
            }
        }
        let runs = b.take_part().expect("runs");
        let wanted: BTreeSet<u64> = [lanes[1]].into();
        let r = reads(&runs, &wanted);
        for &(lane, s, e) in &records {
            let covered = r.iter().any(|&(a, b)| a <= s && e <= b);
            assert_eq!(covered, lane == lanes[1], "record of lane {lane} at {s}..{e}");
        }
        let read: u64 = r.iter().map(|(a, b)| b - a).sum();
        assert_eq!(read, at / 3);
        // Two lanes are read together, each byte once.
        let both: BTreeSet<u64> = [lanes[0], lanes[1]].into();
        let r2 = reads(&runs, &both);
        assert!(r2.windows(2).all(|w| w[0].1 < w[1].0), "{r2:?}");
        assert_eq!(r2.iter().map(|(a, b)| b - a).sum::<u64>(), 2 * at / 3);
    }

    #[test]
    fn lanes_are_the_stride_an_id_falls_in() {
        let stride = 1 << 40;
        assert_eq!(lane_of(5, stride), 0);
        assert_eq!(lane_of(stride, stride), stride);
        assert_eq!(lane_of(3 * stride + 17, stride), 3 * stride);
    }
}

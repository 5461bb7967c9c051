//! Multiplexing (seed 002): several agents' backups onto one stream, one drive, at once.
//!
//! Each agent is a lane: it numbers its objects from the first id of a range of its own
//! ([`LANE_STRIDE`] ids wide) and its records from 1. Its deliveries wait in a bounded buffer
//! of their own; the reader takes whichever lane has a unit ready, staying with one lane for up
//! to [`TURN_BYTES`] while it keeps up (so each lane's records lie in long runs a restore can
//! read alone), and gives each unit this stream's next sequence number. A slow lane never holds
//! the others back, and a lane that fails (its agent killed, cut off, or sending what it must
//! not) ends alone: the other lanes go on to their end, and then the reader reports the failure.

use std::time::Duration;

use crossbeam_channel::{Receiver, Select, bounded};

use super::reader::{ReadError, Reader};
use super::remote::{Agents, Delivery, RemoteAsk, UnitCheck, WireUnit};

/// Object ids each lane may use: lane `k` numbers from `k * LANE_STRIDE` (an agent's walk
/// never comes near 2^40 objects).
pub const LANE_STRIDE: u64 = 1 << 40;
/// Agents one drive takes at once unless the board says otherwise.
pub const DEFAULT_MULTIPLEX: usize = 4;
/// The most a board may set.
pub const MAX_MULTIPLEX: usize = 64;
/// Bytes one lane writes in a turn while other lanes have units waiting.
pub const TURN_BYTES: u64 = 32 << 20;
/// Deliveries (units, each at most one unit of data) waiting per lane, besides those the
/// connection holds: every lane's buffer is the box's memory, so a waiting lane keeps one.
const LANE_DEPTH: usize = 1;
/// How often a reader waiting on its lanes looks at the job's cancel switch.
const CANCEL_LOOK: Duration = Duration::from_millis(250);

/// A tree on an agent, to read as one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSource {
    /// The agent.
    pub agent: String,
    /// The tree's root there.
    pub root: String,
    /// The prefix its paths go under in the session.
    pub prefix: Option<Vec<u8>>,
}

/// Splits consecutive agent sources into groups read at once: at most `multiplex` each, and
/// never one agent twice in a group (an agent runs one backup at a time).
pub fn groups(sources: &[LaneSource], multiplex: usize) -> Vec<Vec<LaneSource>> {
    let mut out: Vec<Vec<LaneSource>> = Vec::new();
    for s in sources {
        match out.last_mut() {
            Some(g) if g.len() < multiplex.max(1) && !g.iter().any(|o| o.agent == s.agent) => {
                g.push(s.clone())
            }
            _ => out.push(vec![s.clone()]),
        }
    }
    out
}

/// One agent's lane while it runs.
struct Lane {
    agent: String,
    /// Its first object id; every record of it carries this as its lane.
    key: u64,
    check: UnitCheck,
    /// The record number its next unit must carry (its own numbering, from 1).
    expect_seq: u64,
    rx: Receiver<Delivery>,
}

/// What became of a lane.
enum Ended {
    Done(Vec<String>),
    Failed(String),
}

impl Reader {
    /// Reads `group`'s trees from their agents at once, interleaving their units on this
    /// stream. Every lane runs to its end; if some failed, the error names them after the
    /// others finished (their objects are whole and journaled as they became durable).
    pub fn add_agents(
        &mut self,
        agents: &dyn Agents,
        group: &[LaneSource],
        job: u64,
        one_file_system: bool,
    ) -> Result<(), ReadError> {
        if let [one] = group {
            return self.add_agent(
                agents,
                &one.agent,
                &one.root,
                one.prefix.as_deref(),
                job,
                one_file_system,
            );
        }
        self.flush_pack()?;
        let (_, next_object) = self.next_numbers();
        // Lanes start on a stride of their own, past every id given so far.
        let base = next_object.div_ceil(LANE_STRIDE).max(1) * LANE_STRIDE;
        let mut lanes = Vec::new();
        let mut failed = Vec::new();
        for (k, s) in group.iter().enumerate() {
            let key = base + k as u64 * LANE_STRIDE;
            let ask = RemoteAsk {
                job,
                root: s.root.clone(),
                prefix: s.prefix.clone(),
                first_seq: 1,
                first_object: key,
                unit: self.unit_size(),
                one_file_system,
                cancel: self.cancel.clone(),
                incremental: self.incremental.clone(),
                compress: self.agent_compresses,
            };
            match agents.backup(&s.agent, ask) {
                Ok(rx) => lanes.push(Lane {
                    agent: s.agent.clone(),
                    key,
                    check: UnitCheck::new(key, s.prefix.clone()),
                    expect_seq: 1,
                    rx: forward(&s.agent, rx),
                }),
                Err(why) => failed.push(format!("{}: {why}", s.agent)),
            }
        }
        let ended = self.interleave(&mut lanes)?;
        self.skip_objects_to(base + group.len() as u64 * LANE_STRIDE);
        for (agent, how) in ended {
            match how {
                Ended::Done(problems) => {
                    self.problems.extend(problems.into_iter().map(|p| format!("agent {agent}: {p}")))
                }
                Ended::Failed(why) => failed.push(format!("{agent}: {why}")),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        let done = group.len() - failed.len();
        Err(ReadError::Agent {
            agent: failed.join("; agent "),
            why: format!(
                "its backup ended early; what it sent before is restorable, and the {done} other agent(s) of the group completed"
            ),
        })
    }

    /// Takes units from the lanes until every lane ended; returns how each ended.
    fn interleave(&mut self, lanes: &mut Vec<Lane>) -> Result<Vec<(String, Ended)>, ReadError> {
        let mut ended = Vec::new();
        let mut cur = 0usize;
        let mut turn = 0u64;
        while !lanes.is_empty() {
            if self.cancel.is_cancelled() {
                // Dropping the lanes tells their agents to stop.
                return Err(ReadError::Cancelled);
            }
            let staying = turn < TURN_BYTES && cur < lanes.len();
            let (at, got) = match staying.then(|| lanes[cur].rx.try_recv().ok()).flatten() {
                Some(d) => (cur, Ok(d)),
                None => match wait_any(lanes, cur) {
                    Some(x) => x,
                    None => continue,
                },
            };
            if at != cur {
                (cur, turn) = (at, 0);
            }
            let lane = &mut lanes[at];
            let outcome = match got {
                Err(()) => Some(Ended::Failed("the connection ended before the backup did".into())),
                Ok(Delivery::Lost(why)) => Some(Ended::Failed(why)),
                Ok(Delivery::Done { next_seq, next_object, problems, error }) => Some(match error {
                    Some(e) => Ended::Failed(e),
                    None => match lane.check.ended_at(lane.expect_seq, next_seq, next_object) {
                        Ok(()) => Ended::Done(problems),
                        Err(e) => Ended::Failed(e),
                    },
                }),
                Ok(Delivery::Unit(bytes)) => {
                    match WireUnit::accept(&bytes, lane.expect_seq, &mut lane.check, self.raw_pool()) {
                        Ok((work, track)) => {
                            lane.expect_seq += 1;
                            turn += bytes.len() as u64;
                            let key = lane.key;
                            self.send_remote(key, work, track)?;
                            None
                        }
                        Err(e) => Some(Ended::Failed(e)),
                    }
                }
            };
            if let Some(how) = outcome {
                if let Ended::Failed(why) = &how {
                    tracing::warn!(target: "backup", "agent {}: lane ended: {why}", lanes[at].agent);
                }
                let lane = lanes.remove(at);
                ended.push((lane.agent, how));
                turn = 0;
            }
        }
        Ok(ended)
    }
}

/// Waits up to [`CANCEL_LOOK`] for a delivery on any lane, looking first at the lanes after
/// `cur` (each lane gets its turn). Returns the lane and what came (`Err` when its connection
/// hung up), or `None` on a timeout.
fn wait_any(lanes: &[Lane], cur: usize) -> Option<(usize, Result<Delivery, ()>)> {
    let n = lanes.len();
    let order: Vec<usize> = (1..=n).map(|i| (cur + i) % n).collect();
    let mut sel = Select::new_biased();
    for &i in &order {
        sel.recv(&lanes[i].rx);
    }
    let op = sel.select_timeout(CANCEL_LOOK).ok()?;
    let at = order[op.index()];
    Some((at, op.recv(&lanes[at].rx).map_err(|_| ())))
}

/// Moves an agent's deliveries from the service's channel into a bounded buffer the reader
/// can wait on together with the other lanes'. The thread ends when the agent's stream ends
/// or the lane is dropped (which drops the service's receiver: the agent is told to stop).
fn forward(agent: &str, mut rx: tokio::sync::mpsc::Receiver<Delivery>) -> Receiver<Delivery> {
    let (tx, out) = bounded::<Delivery>(LANE_DEPTH);
    let spawned = std::thread::Builder::new().name(format!("lane-{agent}")).spawn(move || {
        while let Some(d) = rx.blocking_recv() {
            // Blocks while the lane's buffer is full; fails once the lane is dropped.
            if tx.send(d).is_err() {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(target: "backup", "agent {agent}: cannot start its lane: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(agent: &str, root: &str) -> LaneSource {
        LaneSource { agent: agent.into(), root: root.into(), prefix: None }
    }

    #[test]
    fn groups_hold_at_most_multiplex_agents_and_never_one_twice() {
        let s =
            [src("a", "/x"), src("b", "/x"), src("a", "/y"), src("c", "/x"), src("d", "/x"), src("e", "/x")];
        let names = |g: &[Vec<LaneSource>]| -> Vec<Vec<String>> {
            g.iter().map(|g| g.iter().map(|l| format!("{}{}", l.agent, l.root)).collect()).collect()
        };
        // Agent a's second tree starts the next group, which then fills up to 3.
        assert_eq!(names(&groups(&s, 3)), [vec!["a/x", "b/x"], vec!["a/y", "c/x", "d/x"], vec!["e/x"]]);
        // One at a time: each on its own, in order.
        assert_eq!(groups(&s, 1).len(), s.len());
        assert!(groups(&[], 4).is_empty());
    }
}

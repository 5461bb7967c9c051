//! Data rates for the status display, from the running job's byte counters sampled once a
//! refresh. Pure: samples in, [`Throughput`] out.
//!
//! The rate is over the last [`WINDOW`] samples, so that one slow second (a cartridge
//! change) does not read as a stop; totals add up every job the service ran since it started.

use std::collections::VecDeque;

use super::status::Throughput;

/// Samples the rate is measured over.
pub const WINDOW: usize = 5;

/// One reading of a job's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since some fixed start.
    pub at_ms: u64,
    /// The job (a new job starts its counters at zero).
    pub job: u64,
    /// Bytes read from its sources.
    pub bytes_in: u64,
    /// Bytes written to its targets.
    pub bytes_stored: u64,
}

/// The meter.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    recent: VecDeque<Sample>,
    in_total: u64,
    stored_total: u64,
}

impl Meter {
    /// Takes a reading: `sample` while a job runs, `None` when none does.
    pub fn sample(&mut self, sample: Option<Sample>) -> Throughput {
        match sample {
            Some(s) => {
                let last = self.recent.back().copied().filter(|l| l.job == s.job);
                match last {
                    Some(l) => {
                        self.in_total += s.bytes_in.saturating_sub(l.bytes_in);
                        self.stored_total += s.bytes_stored.saturating_sub(l.bytes_stored);
                    }
                    None => {
                        // A new job: what it did before this first reading counts too.
                        self.recent.clear();
                        self.in_total += s.bytes_in;
                        self.stored_total += s.bytes_stored;
                    }
                }
                self.recent.push_back(s);
                if self.recent.len() > WINDOW {
                    self.recent.pop_front();
                }
            }
            None => self.recent.clear(),
        }
        let (in_rate, stored_rate) = match (self.recent.front(), self.recent.back()) {
            (Some(a), Some(b)) if b.at_ms > a.at_ms => {
                let ms = b.at_ms - a.at_ms;
                let per_s = |x: u64, y: u64| (y.saturating_sub(x) as u128 * 1000 / ms as u128) as u64;
                (per_s(a.bytes_in, b.bytes_in), per_s(a.bytes_stored, b.bytes_stored))
            }
            _ => (0, 0),
        };
        Throughput {
            in_bytes_per_s: in_rate,
            stored_bytes_per_s: stored_rate,
            in_bytes_total: self.in_total,
            stored_bytes_total: self.stored_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, job: u64, bytes_in: u64, bytes_stored: u64) -> Option<Sample> {
        Some(Sample { at_ms, job, bytes_in, bytes_stored })
    }

    #[test]
    fn rates_follow_the_counters_and_totals_add_up_across_jobs() {
        let mut m = Meter::default();
        let t = m.sample(s(0, 1, 1000, 500));
        assert_eq!((t.in_bytes_per_s, t.in_bytes_total, t.stored_bytes_total), (0, 1000, 500));
        let t = m.sample(s(1000, 1, 11_000, 5_500));
        assert_eq!((t.in_bytes_per_s, t.stored_bytes_per_s), (10_000, 5_000));
        let t = m.sample(s(2000, 1, 11_000, 5_500));
        // Averaged over the window: one idle second halves the rate, it does not zero it.
        assert_eq!(t.in_bytes_per_s, 5_000);
        let t = m.sample(None);
        assert_eq!((t.in_bytes_per_s, t.in_bytes_total), (0, 11_000));
        let t = m.sample(s(4000, 2, 2_000, 1_000));
        assert_eq!((t.in_bytes_total, t.stored_bytes_total), (13_000, 6_500));
    }

    #[test]
    fn the_window_forgets_old_samples() {
        let mut m = Meter::default();
        for i in 0..10 {
            m.sample(s(i * 1000, 1, if i < 5 { i * 1_000_000 } else { 4_000_000 }, 0));
        }
        let t = m.sample(s(10_000, 1, 4_000_000, 0));
        assert_eq!(t.in_bytes_per_s, 0, "the last {WINDOW} samples did not move");
    }
}

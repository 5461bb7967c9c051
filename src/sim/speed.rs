//! The speed model of one drive: a buffer of `buffer` bytes that the tape drains at `rate`
//! bytes per second. Pure arithmetic over times the caller reads from its clock: each call
//! says how long the host must be held back, and the caller waits that long after releasing
//! the library (so other drives keep working).
//!
//! The drive is stopped (after a load, a flush, or running dry) or streaming. Stopped, it
//! takes writes into its buffer at once until the buffer is full, then starts the tape. While
//! streaming, a write is taken once the buffer has room for it: a host faster than the drive
//! is held to the drive's rate. When the buffer runs dry while streaming the drive stops and
//! has to reposition (shoe-shine): the write that starts it again waits for the reposition.
//! A flush (synchronous filemark, rewind, unload) waits until the buffer is on tape.

use std::time::Duration;

/// What the host pays for one write or flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Hold {
    /// How long the command takes before it returns.
    pub wait: Duration,
    /// The buffer had run dry while streaming: the drive stopped and repositions.
    pub repositioned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Motion {
    /// The tape stands with `level` bytes buffered; starting it first costs `penalty` (a
    /// reposition after running dry).
    Stopped { level: u64, penalty: Duration },
    /// The tape moves; everything taken so far is on tape at `drained_at`.
    Streaming { drained_at: Duration },
}

/// One drive's speed model.
#[derive(Debug, Clone)]
pub(super) struct Speed {
    /// Bytes per second; `None`: as fast as the host goes (no model).
    rate: Option<u64>,
    buffer: u64,
    reposition: Duration,
    motion: Motion,
    /// Bytes per second a read delivers; `None`: reads go as fast as the store.
    read_rate: Option<u64>,
}

impl Default for Speed {
    fn default() -> Self {
        Speed::new(None, 1, Duration::ZERO)
    }
}

const STOPPED: Motion = Motion::Stopped { level: 0, penalty: Duration::ZERO };

impl Speed {
    /// A drive streaming at `rate` (none: no model) from a buffer of `buffer` bytes, that
    /// takes `reposition` to start again after running dry.
    ///
    /// # Panics
    /// If `rate` is zero or `buffer` is zero.
    pub fn new(rate: Option<u64>, buffer: u64, reposition: Duration) -> Speed {
        assert!(rate != Some(0) && buffer > 0, "rate {rate:?}, buffer {buffer}");
        Speed { rate, buffer, reposition, motion: STOPPED, read_rate: None }
    }

    /// The same drive, reading at `rate` bytes per second (none: as fast as the store).
    ///
    /// # Panics
    /// If `rate` is zero.
    pub fn reading_at(self, rate: Option<u64>) -> Speed {
        assert!(rate != Some(0), "read rate 0");
        Speed { read_rate: rate, ..self }
    }

    /// The host reads `n` bytes: the tape delivers them at the read rate. Read-ahead is not
    /// modelled: each read costs its bytes' time on tape.
    pub fn read(&mut self, n: u64) -> Hold {
        let wait = self.read_rate.map_or(Duration::ZERO, |rate| Self::time(n, rate));
        Hold { wait, repositioned: false }
    }

    /// Time to move `bytes` at `rate`.
    fn time(bytes: u64, rate: u64) -> Duration {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Brings the model to `now`: a drive that drained its buffer before `now` stopped.
    fn settle(&mut self, now: Duration) -> bool {
        match self.motion {
            Motion::Streaming { drained_at } if drained_at < now => {
                self.motion = Motion::Stopped { level: 0, penalty: self.reposition };
                true
            }
            _ => false,
        }
    }

    /// The host hands over `n` bytes at `now`.
    pub fn write(&mut self, n: u64, now: Duration) -> Hold {
        let Some(rate) = self.rate else { return Hold::default() };
        let repositioned = self.settle(now);
        let wait = match self.motion {
            Motion::Stopped { level, penalty } if level + n < self.buffer => {
                self.motion = Motion::Stopped { level: level + n, penalty };
                Duration::ZERO
            }
            Motion::Stopped { level, penalty } => {
                // The buffer is full: start the tape, after repositioning if it ran dry.
                let start = now + penalty;
                self.motion = Motion::Streaming { drained_at: start + Self::time(level + n, rate) };
                let over = (level + n).saturating_sub(self.buffer);
                start + Self::time(over, rate) - now
            }
            Motion::Streaming { drained_at } => {
                // Taken once what is buffered has drained to `buffer - n`.
                let room_at = drained_at.saturating_sub(Self::time(self.buffer.saturating_sub(n), rate));
                self.motion = Motion::Streaming { drained_at: drained_at + Self::time(n, rate) };
                room_at.saturating_sub(now)
            }
        };
        Hold { wait, repositioned }
    }

    /// The host waits at `now` until everything buffered is on tape; the drive then stops.
    pub fn flush(&mut self, now: Duration) -> Hold {
        let Some(rate) = self.rate else { return Hold::default() };
        let repositioned = self.settle(now);
        let wait = match self.motion {
            Motion::Stopped { level: 0, .. } => Duration::ZERO,
            Motion::Stopped { level, penalty } => penalty + Self::time(level, rate),
            Motion::Streaming { drained_at } => drained_at.saturating_sub(now),
        };
        self.motion = STOPPED;
        Hold { wait, repositioned }
    }

    /// A cartridge was loaded (or taken out): the buffer is empty and the drive stopped.
    pub fn stop(&mut self) {
        self.motion = STOPPED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 1 MiB/s, a 4 MiB buffer, 1.5 s to reposition.
    fn drive() -> Speed {
        Speed::new(Some(MB), 4 * MB, ms(1500))
    }

    #[test]
    fn a_fast_host_fills_the_buffer_then_is_held_to_the_drive_rate() {
        let mut s = drive();
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let h = s.write(MB, now);
            assert!(!h.repositioned);
            waits.push(h.wait);
            now += h.wait;
        }
        // Four megabytes fill the buffer at once; each further one waits for a second of tape.
        assert_eq!(waits, [0, 0, 0, 0, 1000, 1000, 1000].map(ms));
        // Seven megabytes are on tape seven seconds after the start.
        assert_eq!(now, ms(3000));
        assert_eq!(s.flush(now), Hold { wait: ms(4000), repositioned: false });
    }

    #[test]
    fn a_starved_drive_repositions_and_the_write_that_restarts_it_waits() {
        let mut s = drive();
        // Fill and start: 4 MiB on tape at 4 s.
        assert_eq!(s.write(4 * MB, Duration::ZERO), Hold::default());
        // At 4 s exactly the buffer is empty but the tape still moves: no reposition.
        assert_eq!(s.write(MB, ms(4000)), Hold::default());
        // Dry at 5 s; the host comes at 6 s: stopped, and a megabyte does not fill the buffer.
        assert_eq!(s.write(MB, ms(6000)), Hold { wait: ms(0), repositioned: true });
        assert_eq!(s.write(2 * MB, ms(6000)), Hold::default());
        // The fourth megabyte fills it: the tape starts after repositioning.
        assert_eq!(s.write(MB, ms(6000)), Hold { wait: ms(1500), repositioned: false });
        // Then it streams: 4 MiB from 7.5 s, on tape at 11.5 s.
        assert_eq!(s.flush(ms(7500)), Hold { wait: ms(4000), repositioned: false });
    }

    #[test]
    fn a_flush_of_a_stopped_partial_buffer_pays_the_reposition_and_the_data() {
        let mut s = drive();
        s.write(4 * MB, Duration::ZERO);
        // Dry at 4 s; half a megabyte comes at 10 s, then a filemark.
        assert_eq!(s.write(MB / 2, ms(10_000)), Hold { wait: ms(0), repositioned: true });
        assert_eq!(s.flush(ms(10_000)), Hold { wait: ms(2000), repositioned: false });
        // A flush leaves the drive stopped on purpose: the next write starts afresh.
        assert_eq!(s.write(4 * MB, ms(60_000)), Hold::default());
        // A flush of an empty stopped drive is free.
        let mut fresh = drive();
        assert_eq!(fresh.flush(ms(5)), Hold::default());
    }

    #[test]
    fn a_block_larger_than_the_buffer_waits_for_it_to_empty() {
        let mut s = Speed::new(Some(MB), MB, Duration::ZERO);
        assert_eq!(s.write(2 * MB, Duration::ZERO).wait, ms(1000));
        // 2 MiB on tape at 2 s; another 2 MiB is taken once the buffer is empty.
        assert_eq!(s.write(2 * MB, ms(1000)).wait, ms(1000));
    }

    #[test]
    fn reads_cost_their_bytes_at_the_read_rate_or_nothing_without_one() {
        let mut s = drive().reading_at(Some(MB / 2));
        assert_eq!(s.read(MB), Hold { wait: ms(2000), repositioned: false });
        assert_eq!(s.read(MB / 4).wait, ms(500));
        assert_eq!(drive().read(64 * MB), Hold::default());
    }

    #[test]
    fn no_rate_means_no_model_and_zero_reposition_is_allowed() {
        let mut none = Speed::new(None, MB, ms(1000));
        for k in 0..10 {
            assert_eq!(none.write(64 * MB, ms(k * 10_000)), Hold::default());
        }
        assert_eq!(none.flush(ms(1)), Hold::default());
        let mut quick = Speed::new(Some(MB), MB, Duration::ZERO);
        quick.write(MB, Duration::ZERO);
        let h = quick.write(MB, ms(5000));
        assert_eq!(h, Hold { wait: ms(0), repositioned: true });
    }
}

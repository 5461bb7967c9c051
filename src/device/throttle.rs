//! A write-rate limit for a target: `disk:DIR,rate=100M` writes at most that many bytes per
//! second, as a slower device would. Benchmarks use it to give every target the same fixed
//! speed; the planner also reads it as the target's speed.

use std::time::{Duration, Instant};

/// Paces writes to a rate.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Bytes per second.
    pub rate: u64,
    start: Option<Instant>,
    bytes: u64,
}

impl Throttle {
    /// A limit of `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Throttle {
        Throttle { rate: rate.max(1), start: None, bytes: 0 }
    }

    /// How long to wait after `n` more bytes so that the average stays at the rate, given
    /// that `elapsed` has passed since the first write.
    pub fn delay(&mut self, n: u64, elapsed: Duration) -> Duration {
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        due.saturating_sub(elapsed)
    }

    /// Counts `n` bytes written and sleeps as long as the rate asks.
    pub fn pace(&mut self, n: u64) {
        let start = *self.start.get_or_insert_with(Instant::now);
        let wait = self.delay(n, start.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_keeps_the_average_at_the_rate() {
        let mut t = Throttle::new(100 << 20);
        // 50 MiB written at once at 100 MiB/s is due at 0.5 s.
        assert_eq!(t.delay(50 << 20, Duration::ZERO), Duration::from_millis(500));
        // Late already: no wait.
        assert_eq!(t.delay(10 << 20, Duration::from_secs(2)), Duration::ZERO);
        assert_eq!(t.delay(140 << 20, Duration::from_secs(1)), Duration::from_secs(1));
    }
}

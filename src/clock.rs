//! Wall-clock time and the host's name, in one place so that policy code can take them as
//! parameters and tests can fix them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This machine's host name, as the kernel reports it (`"localhost"` if unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().chars().filter(|c| !c.is_control()).take(64).collect())
        .ok()
        .filter(|s: &String| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

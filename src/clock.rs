//! Wall-clock time and the host's name, in one place so that policy code can take them as
//! parameters and tests can fix them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
///
/// With `$COFFER_NOW` set (an RFC 3339 time such as `2027-03-01T02:00:00Z`; for tests, which
/// let months pass in seconds with it), the time starts there when the process first asks and
/// runs on from it: sessions, jobs and retention all see that time.
pub fn unix_now() -> u64 {
    if let Some((at, since)) = fixed() {
        return at + since.elapsed().as_secs();
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `$COFFER_NOW`, read once, with the moment it was read.
fn fixed() -> Option<(u64, std::time::Instant)> {
    static FIXED: std::sync::OnceLock<Option<(u64, std::time::Instant)>> = std::sync::OnceLock::new();
    *FIXED.get_or_init(|| {
        let v = std::env::var("COFFER_NOW").ok()?;
        crate::jobs::calendar::parse(&v).map(|t| (t, std::time::Instant::now()))
    })
}

/// Checks `$COFFER_NOW`, when set: a time [`unix_now`] can start from.
///
/// # Errors
/// What is wrong with it.
pub fn check_env() -> Result<(), String> {
    match std::env::var("COFFER_NOW") {
        Ok(v) if crate::jobs::calendar::parse(&v).is_none() => {
            Err(format!("COFFER_NOW={v:?}: an RFC 3339 time such as 2027-03-01T02:00:00Z, or unset it"))
        }
        _ => Ok(()),
    }
}

/// This machine's host name, as the kernel reports it (`"localhost"` if unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().chars().filter(|c| !c.is_control()).take(64).collect())
        .ok()
        .filter(|s: &String| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

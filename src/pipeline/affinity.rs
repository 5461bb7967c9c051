//! Pinning threads to cores (`sched_setaffinity`), so that each compressor keeps one core's
//! caches. The cores are those this process may run on (its cpuset), probed at start.

use std::io;

/// Cores this process may run on, in order.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set in bounds (i < CPU_SETSIZE).
    Ok((0..max).filter(|&i| unsafe { libc::CPU_ISSET(i, &set) }).collect())
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no core {core}")));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` is below CPU_SETSIZE, checked above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_be_pinned_to_each_allowed_core() {
        let cores = allowed_cores().unwrap();
        assert!(!cores.is_empty());
        for &c in &cores {
            std::thread::spawn(move || {
                pin_current_thread(c).unwrap();
                assert_eq!(allowed_cores().unwrap(), vec![c]);
            })
            .join()
            .unwrap();
        }
        assert!(pin_current_thread(1 << 20).is_err());
    }
}

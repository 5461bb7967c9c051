//! A small synchronous io_uring: one operation (or one linked chain) submitted and waited for
//! at a time. This is the only module that hands buffers to the kernel; it keeps every buffer
//! borrowed until its completion has been reaped, so the API is safe.
//!
//! Fault model: the kernel may refuse io_uring (old kernel, `kernel.io_uring_disabled`,
//! seccomp); [`Ring::new`] probes for the opcodes coffer needs and fails with the fix.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, Probe, opcode, squeue, types};

/// One small file for [`Ring::read_files`].
#[derive(Debug)]
pub struct FileRead<'a> {
    /// Its path.
    pub path: &'a std::ffi::CStr,
    /// Where its bytes go.
    pub buf: &'a mut [u8],
}

/// What [`Ring::read_files`] got for one file.
#[derive(Debug)]
pub struct FileReadResult {
    /// Bytes read, or why it could not be opened or read.
    pub len: io::Result<usize>,
    /// Its status after the read (`None` if that failed).
    pub stat: Option<libc::statx>,
}

/// Submission queue depth of a synchronous ring.
const RING_ENTRIES: u32 = 8;

/// Opcodes coffer cannot work without, probed at start.
const REQUIRED_OPS: [(u8, &str); 6] = [
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::OpenAt::CODE, "OPENAT"),
    (opcode::Statx::CODE, "STATX"),
    (opcode::Close::CODE, "CLOSE"),
];

/// The offset io_uring takes as "the file's current position" (-1), as `read(2)`/`write(2)` use.
const CURRENT_POS: u64 = u64::MAX;

/// A completion's result as bytes or the error it carries.
fn to_result(r: i32) -> io::Result<usize> {
    if r < 0 { Err(io::Error::from_raw_os_error(-r)) } else { Ok(r as usize) }
}

/// A ring for synchronous use from one thread.
pub struct Ring {
    ring: IoUring,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").finish_non_exhaustive()
    }
}

impl Ring {
    /// Sets up a ring and checks that the kernel supports what coffer needs.
    pub fn new() -> io::Result<Ring> {
        Ring::with_capacity(RING_ENTRIES)
    }

    /// A ring with room for `entries` operations in flight, for batches.
    pub fn with_capacity(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::new(entries.next_power_of_two()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the kernel refused io_uring ({e}): coffer needs Linux 5.6 or later with \
                     io_uring enabled (sysctl kernel.io_uring_disabled=0, no seccomp filter \
                     blocking io_uring_setup)"
                ),
            )
        })?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in REQUIRED_OPS {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks the {name} operation: upgrade to Linux 5.6+"),
                ));
            }
        }
        Ok(Ring { ring })
    }

    /// Opens, reads and closes many small files with all their operations in flight at once:
    /// one submission opens them all, one reads each whole (and takes its `statx` after the
    /// read, to see whether it changed), one closes them. Each buffer receives its file's
    /// first bytes; ask for one byte more than the expected size to see growth.
    pub fn read_files(&mut self, files: &mut [FileRead<'_>], open_flags: i32) -> Vec<FileReadResult> {
        let n = files.len();
        assert!(2 * n <= self.ring.params().sq_entries() as usize, "batch larger than the ring");
        let opens: Vec<squeue::Entry> = files
            .iter()
            .map(|f| {
                opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), f.path.as_ptr())
                    .flags(open_flags | libc::O_RDONLY | libc::O_CLOEXEC)
                    .build()
            })
            .collect();
        // SAFETY: the paths are borrowed for the call and `run_all` waits for every completion.
        let fds = unsafe { self.run_all(&opens) };
        let mut stats: Vec<libc::statx> = (0..n)
            .map(|_| {
                // SAFETY: statx is plain data; all-zero is a valid value to be overwritten.
                unsafe { std::mem::zeroed() }
            })
            .collect();
        let empty = c"";
        let mut ops = Vec::with_capacity(2 * n);
        let mut which = Vec::with_capacity(n);
        for (i, f) in files.iter_mut().enumerate() {
            if fds[i] < 0 {
                continue;
            }
            let fd = types::Fd(fds[i]);
            let len = f.buf.len().min(u32::MAX as usize) as u32;
            ops.push(
                opcode::Read::new(fd, f.buf.as_mut_ptr(), len)
                    .offset(0)
                    .build()
                    .flags(squeue::Flags::IO_HARDLINK),
            );
            let buf = (&mut stats[i] as *mut libc::statx).cast::<types::statx>();
            ops.push(
                opcode::Statx::new(fd, empty.as_ptr(), buf)
                    .flags(libc::AT_EMPTY_PATH)
                    .mask(libc::STATX_BASIC_STATS)
                    .build(),
            );
            which.push(i);
        }
        // SAFETY: buffers, stat structs and the empty path live until `run_all` returns, after
        // every completion; each read/statx pair is linked so the statx follows the read.
        let results = unsafe { self.run_all(&ops) };
        let closes: Vec<squeue::Entry> =
            which.iter().map(|&i| opcode::Close::new(types::Fd(fds[i])).build()).collect();
        // SAFETY: close references no memory.
        let _ = unsafe { self.run_all(&closes) };
        let mut out: Vec<FileReadResult> = fds
            .iter()
            .map(|&fd| FileReadResult { len: Err(io::Error::from_raw_os_error(-fd.min(-1))), stat: None })
            .collect();
        for (k, &i) in which.iter().enumerate() {
            let (r, st) = (results[2 * k], results[2 * k + 1]);
            out[i] = FileReadResult {
                len: if r < 0 { Err(io::Error::from_raw_os_error(-r)) } else { Ok(r as usize) },
                stat: (st == 0).then_some(stats[i]),
            };
        }
        out
    }

    /// Submits operations (linked as their flags say) and waits for all; returns each one's
    /// result.
    ///
    /// # Safety
    /// Every buffer an operation points to must stay valid and unaliased until this returns.
    unsafe fn run_all(&mut self, ops: &[squeue::Entry]) -> Vec<i32> {
        let mut results = vec![0i32; ops.len()];
        if ops.is_empty() {
            return results;
        }
        assert!(self.ring.completion().is_empty(), "completions left from an earlier call");
        {
            let mut sq = self.ring.submission();
            for (i, op) in ops.iter().enumerate() {
                let e = op.clone().user_data(i as u64);
                // SAFETY: the caller keeps the buffers valid until we return, and we return only
                // after reaping every completion below.
                unsafe { sq.push(&e) }.expect("queue sized for the batch");
            }
        }
        self.reap(&mut results);
        results
    }

    /// Waits for as many completions as there are slots in `results`, filling them by
    /// `user_data`.
    fn reap(&mut self, results: &mut [i32]) {
        let mut reaped = 0;
        while reaped < results.len() {
            match self.ring.submit_and_wait(results.len() - reaped) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                // Any other failure leaves entries in flight that reference the caller's buffers:
                // returning would let them be freed under the kernel. Abort instead.
                Err(e) => panic!("io_uring_enter failed with operations in flight: {e}"),
            }
            for cqe in self.ring.completion() {
                results[cqe.user_data() as usize] = cqe.result();
                reaped += 1;
            }
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many.
    pub fn read_at(&mut self, fd: &impl AsRawFd, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let op = opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), len).offset(offset).build();
        // SAFETY: `buf` is exclusively borrowed for this call and `run` returns only after the
        // kernel has completed the operation, so the kernel never touches it afterwards.
        unsafe { self.run(&[op]) }.map(|r| r[0] as usize)
    }

    /// Writes all of `buf` at `offset` (short writes are continued).
    pub fn write_at(&mut self, fd: &impl AsRawFd, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let len = buf.len().min(1 << 30) as u32;
            let op = opcode::Write::new(types::Fd(fd.as_raw_fd()), buf.as_ptr(), len).offset(offset).build();
            // SAFETY: `buf` is borrowed for this call and `run` waits for the completion.
            let n = unsafe { self.run(&[op]) }?[0] as usize;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Writes each buffer with one `write(2)` at the file's current position (a device such as a
    /// tape, where one write is one record), as one linked chain in one submission: the kernel
    /// runs them in order, and a write that fails or comes up short cancels the rest
    /// (`ECANCELED`). Returns each write's result, in order.
    pub fn write_chain(&mut self, fd: &impl AsRawFd, bufs: &[&[u8]]) -> Vec<io::Result<usize>> {
        assert!(bufs.len() <= self.ring.params().sq_entries() as usize, "chain larger than the ring");
        let ops: Vec<squeue::Entry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let len = u32::try_from(b.len()).expect("one record fits u32");
                let op = opcode::Write::new(types::Fd(fd.as_raw_fd()), b.as_ptr(), len)
                    .offset(CURRENT_POS)
                    .build();
                if i + 1 < bufs.len() { op.flags(squeue::Flags::IO_LINK) } else { op }
            })
            .collect();
        // SAFETY: the buffers are borrowed for this call and `run_all` waits for every completion.
        let results = unsafe { self.run_all(&ops) };
        results.into_iter().map(to_result).collect()
    }

    /// Reads once (one record from a tape) at the file's current position; returns how many
    /// bytes came.
    pub fn read_next(&mut self, fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let op =
            opcode::Read::new(types::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), len).offset(CURRENT_POS).build();
        // SAFETY: `buf` is exclusively borrowed for this call and `run_all` waits for the
        // completion.
        to_result(unsafe { self.run_all(&[op]) }[0])
    }

    /// `fdatasync`: makes the file's data (and the size needed to read it) durable.
    pub fn fdatasync(&mut self, fd: &impl AsRawFd) -> io::Result<()> {
        let op = opcode::Fsync::new(types::Fd(fd.as_raw_fd())).flags(types::FsyncFlags::DATASYNC).build();
        // SAFETY: fsync references no memory.
        unsafe { self.run(&[op]) }.map(|_| ())
    }

    /// Submits `ops` as one linked chain and waits for all of their completions; returns
    /// their results in order, or the first error.
    ///
    /// # Safety
    /// Every buffer an operation points to must stay valid and unaliased until this returns.
    unsafe fn run(&mut self, ops: &[squeue::Entry]) -> io::Result<Vec<i32>> {
        assert!(!ops.is_empty() && ops.len() <= RING_ENTRIES as usize);
        assert!(self.ring.completion().is_empty(), "completions left from an earlier call");
        {
            let mut sq = self.ring.submission();
            for (i, op) in ops.iter().enumerate() {
                let mut e = op.clone().user_data(i as u64);
                if i + 1 < ops.len() {
                    e = e.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: the caller keeps the buffers valid until we return, and we return only
                // after reaping every completion below.
                unsafe { sq.push(&e) }.expect("queue sized for the chain");
            }
        }
        let mut results = vec![0i32; ops.len()];
        self.reap(&mut results);
        match results.iter().find(|&&r| r < 0) {
            Some(&r) => Err(io::Error::from_raw_os_error(-r)),
            None => Ok(results),
        }
    }
}

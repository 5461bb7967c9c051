//! The Linux SG_IO transport: SCSI commands through `ioctl(fd, SG_IO, &sg_io_hdr)` on a SCSI
//! generic node (`/dev/sgN`) or a tape node (`/dev/nstN`, whose driver passes SG_IO through).
//! This is the only module of the SCSI layer with `unsafe` code: two ioctls, each handed
//! pointers to buffers that live across the (synchronous) call.
//!
//! Fault model: the node may be missing, not SCSI, or busy; the command may time out (the
//! kernel aborts it after the CDB's timeout) or fail in the adapter or transport (host status);
//! those become [`TransportError`]s. SCSI status and sense go back to [`crate::scsi::issue`]
//! untouched.

use std::ffi::{c_int, c_uchar, c_uint, c_ushort, c_void};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use super::cdb::{Cdb, MAX_CDB_LEN};
use super::sense::MAX_SENSE_LEN;
use super::transport::{Completion, DataBuf, Status, Transport, TransportError};

/// `SG_IO` from `<scsi/sg.h>`.
const SG_IO: libc::Ioctl = 0x2285;
/// `SG_GET_VERSION_NUM` from `<scsi/sg.h>`.
const SG_GET_VERSION_NUM: libc::Ioctl = 0x2282;
/// The sg interface version that introduced `sg_io_hdr` (3.0.0).
const MIN_SG_VERSION: c_int = 30000;
const SG_DXFER_NONE: c_int = -1;
const SG_DXFER_TO_DEV: c_int = -2;
const SG_DXFER_FROM_DEV: c_int = -3;
/// Host status `DID_TIME_OUT`.
const DID_TIME_OUT: u16 = 0x03;
/// Driver status `DRIVER_SENSE`: sense data is present (not an error).
const DRIVER_SENSE: u16 = 0x08;
/// Driver status `DRIVER_TIMEOUT`.
const DRIVER_TIMEOUT: u16 = 0x06;
/// The driver status proper (the high nibble holds obsolete suggestions).
const DRIVER_STATUS_MASK: u16 = 0x0F;

/// `struct sg_io_hdr` of `<scsi/sg.h>` (interface 'S', version 3).
#[repr(C)]
struct SgIoHdr {
    interface_id: c_int,
    dxfer_direction: c_int,
    cmd_len: c_uchar,
    mx_sb_len: c_uchar,
    iovec_count: c_ushort,
    dxfer_len: c_uint,
    dxferp: *mut c_void,
    cmdp: *mut c_uchar,
    sbp: *mut c_uchar,
    /// Milliseconds.
    timeout: c_uint,
    flags: c_uint,
    pack_id: c_int,
    usr_ptr: *mut c_void,
    status: c_uchar,
    masked_status: c_uchar,
    msg_status: c_uchar,
    sb_len_wr: c_uchar,
    host_status: c_ushort,
    driver_status: c_ushort,
    resid: c_int,
    duration: c_uint,
    info: c_uint,
}

// The layout the kernel expects, field by field (x86-64, arm64 and other LP64 targets).
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(SgIoHdr, cmd_len) == 8 && offset_of!(SgIoHdr, iovec_count) == 10);
    assert!(offset_of!(SgIoHdr, dxfer_len) == 12 && offset_of!(SgIoHdr, dxferp) == 16);
    assert!(offset_of!(SgIoHdr, cmdp) == 24 && offset_of!(SgIoHdr, sbp) == 32);
    assert!(offset_of!(SgIoHdr, timeout) == 40 && offset_of!(SgIoHdr, pack_id) == 48);
    assert!(offset_of!(SgIoHdr, usr_ptr) == 56 && offset_of!(SgIoHdr, status) == 64);
    assert!(offset_of!(SgIoHdr, sb_len_wr) == 67 && offset_of!(SgIoHdr, host_status) == 68);
    assert!(offset_of!(SgIoHdr, driver_status) == 70 && offset_of!(SgIoHdr, resid) == 72);
    assert!(offset_of!(SgIoHdr, duration) == 76 && offset_of!(SgIoHdr, info) == 80);
    assert!(size_of::<SgIoHdr>() == 88);
};
// mx_sb_len is one byte.
const _: () = assert!(MAX_SENSE_LEN <= u8::MAX as usize);

/// A SCSI device reached through SG_IO.
#[derive(Debug)]
pub struct SgDevice {
    file: File,
    path: String,
}

impl SgDevice {
    /// Opens `path` read-write (non-blocking, so a drive without a cartridge opens) and checks
    /// that it takes SG_IO.
    pub fn open(path: impl AsRef<Path>) -> Result<SgDevice, TransportError> {
        let shown = path.as_ref().display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path.as_ref())
            .map_err(|source| TransportError::Open {
                hint: open_hint(&source),
                path: shown.clone(),
                source,
            })?;
        let dev = SgDevice { file, path: shown };
        dev.check_version()?;
        Ok(dev)
    }

    /// The path it was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn check_version(&self) -> Result<(), TransportError> {
        let mut version: c_int = 0;
        // SAFETY: SG_GET_VERSION_NUM writes one int through its argument, which points to a
        // live local; the descriptor belongs to `self.file`, open for the whole call.
        let rc =
            unsafe { libc::ioctl(self.file.as_raw_fd(), SG_GET_VERSION_NUM, &mut version as *mut c_int) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::ENOTTY | libc::EINVAL) => {
                    TransportError::NotScsi { path: self.path.clone(), source }
                }
                _ => TransportError::Io { path: self.path.clone(), source },
            });
        }
        if version < MIN_SG_VERSION {
            let source = io::Error::other(format!("sg driver version {version} predates SG_IO (3.0)"));
            return Err(TransportError::NotScsi { path: self.path.clone(), source });
        }
        Ok(())
    }
}

/// What to tell a person whose open failed with `e`.
fn open_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            "; run coffer as root or add its user to the group owning the device (tape or disk)"
        }
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => {
            "; no such device: list SCSI devices with `ls /dev/sg* /dev/nst*` or `lsscsi -g`"
        }
        Some(libc::EBUSY) => "; another program holds the device open exclusively",
        _ => "",
    }
}

/// The meaning of a Linux host status (`DID_*`, include/scsi/scsi_status.h).
fn host_meaning(code: u16) -> &'static str {
    match code {
        0x01 => "no connection: the device is gone or unreachable",
        0x02 => "bus busy",
        0x04 => "bad target",
        0x05 => "command aborted",
        0x06 => "parity error",
        0x07 => "internal adapter error",
        0x08 => "bus or device reset",
        0x09 => "unexpected interrupt",
        0x0B => "soft error",
        0x0C => "retry requested",
        0x0D => "requeue requested",
        0x0E => "transport disrupted",
        0x0F => "transport failed fast",
        0x11 => "nexus failure",
        0x12 => "out of memory in the adapter",
        0x13 => "medium error",
        0x14 => "marginal transport",
        _ => "unknown host status",
    }
}

/// Turns the host and driver bytes of a completed SG_IO into a transport error, if any.
fn check_host(host: u16, driver: u16, timeout: Duration) -> Result<(), TransportError> {
    let driver_status = driver & DRIVER_STATUS_MASK;
    if host == DID_TIME_OUT || driver_status == DRIVER_TIMEOUT {
        return Err(TransportError::Timeout { timeout });
    }
    if host != 0 {
        return Err(TransportError::Host { code: host, meaning: host_meaning(host) });
    }
    if driver_status != 0 && driver_status != DRIVER_SENSE {
        return Err(TransportError::Driver { code: driver });
    }
    Ok(())
}

impl Transport for SgDevice {
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
        let mut command = [0u8; MAX_CDB_LEN];
        command[..cdb.bytes().len()].copy_from_slice(cdb.bytes());
        let mut sense = [0u8; MAX_SENSE_LEN];
        let (direction, dxferp, len): (c_int, *mut c_void, usize) = match data {
            DataBuf::None => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
            DataBuf::In(b) => (SG_DXFER_FROM_DEV, b.as_mut_ptr().cast(), b.len()),
            // The kernel only reads a data-out buffer; the header's pointer type is not const.
            DataBuf::Out(b) => (SG_DXFER_TO_DEV, b.as_ptr().cast_mut().cast(), b.len()),
        };
        let Ok(dxfer_len) = c_uint::try_from(len) else {
            let source =
                io::Error::new(io::ErrorKind::InvalidInput, format!("a {len}-byte transfer is too large"));
            return Err(TransportError::Io { path: self.path.clone(), source });
        };
        let mut hdr = SgIoHdr {
            interface_id: c_int::from(b'S'),
            dxfer_direction: direction,
            cmd_len: cdb.bytes().len() as c_uchar,
            mx_sb_len: MAX_SENSE_LEN as c_uchar,
            iovec_count: 0,
            dxfer_len,
            dxferp,
            cmdp: command.as_mut_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: c_uint::try_from(cdb.timeout().as_millis()).unwrap_or(c_uint::MAX - 1),
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: `hdr` is a valid sg_io_hdr (layout checked above). Its pointers reach
        // `command` (cmd_len ≤ 16 bytes), `sense` (mx_sb_len bytes) and the caller's data
        // buffer (dxfer_len bytes, writable for data-in): all live and unaliased until the
        // ioctl returns, and SG_IO completes the command before returning.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), SG_IO, &mut hdr as *mut SgIoHdr) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::ENOTTY) => TransportError::NotScsi { path: self.path.clone(), source },
                _ => TransportError::Io { path: self.path.clone(), source },
            });
        }
        check_host(hdr.host_status, hdr.driver_status, cdb.timeout())?;
        let sense_len = usize::from(hdr.sb_len_wr).min(MAX_SENSE_LEN);
        Ok(Completion {
            status: Status::from_byte(hdr.status),
            sense: sense[..sense_len].to_vec(),
            residual: usize::try_from(hdr.resid).unwrap_or(0).min(len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb;

    #[test]
    fn a_regular_file_is_not_a_scsi_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = SgDevice::open(f.path()).unwrap_err();
        assert!(matches!(e, TransportError::NotScsi { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("is not a SCSI generic device") && msg.contains("/dev/sgN"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn a_character_device_that_is_not_scsi_is_refused() {
        let e = SgDevice::open("/dev/null").unwrap_err();
        assert!(matches!(e, TransportError::NotScsi { .. }), "{e:?}");
    }

    #[test]
    fn a_missing_node_says_how_to_find_devices() {
        let e = SgDevice::open("/dev/coffer-no-such-sg").unwrap_err();
        assert!(matches!(e, TransportError::Open { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("cannot open /dev/coffer-no-such-sg") && msg.contains("lsscsi"), "{msg}");
    }

    #[test]
    fn sg_io_on_a_regular_file_is_refused_with_enotty() {
        // Bypasses the version probe to reach the SG_IO ioctl itself, for each data direction.
        let f = tempfile::tempfile().unwrap();
        let mut dev = SgDevice { file: f, path: "test-file".into() };
        let mut buf = [0u8; 36];
        let results = [
            dev.execute(&cdb::test_unit_ready(), DataBuf::None),
            dev.execute(&cdb::inquiry(36), DataBuf::In(&mut buf)),
            dev.execute(&cdb::write6_variable(4), DataBuf::Out(&[1, 2, 3, 4])),
        ];
        for r in results {
            let e = r.unwrap_err();
            assert!(matches!(e, TransportError::NotScsi { .. }), "{e:?}");
        }
    }

    #[test]
    fn host_and_driver_status() {
        let t = Duration::from_secs(30);
        assert!(check_host(0, 0, t).is_ok());
        assert!(check_host(0, DRIVER_SENSE, t).is_ok(), "sense present is not an error");
        assert!(
            matches!(check_host(DID_TIME_OUT, 0, t), Err(TransportError::Timeout { timeout }) if timeout == t)
        );
        assert!(matches!(check_host(0, DRIVER_TIMEOUT, t), Err(TransportError::Timeout { .. })));
        let reset = check_host(0x08, 0, t).unwrap_err();
        assert!(reset.is_retryable());
        assert_eq!(reset.to_string(), "host adapter error 0x08 (bus or device reset)");
        let gone = check_host(0x01, 0, t).unwrap_err();
        assert!(!gone.is_retryable());
        assert!(gone.to_string().contains("gone"));
        assert!(matches!(check_host(0, 0x04, t), Err(TransportError::Driver { code: 0x04 })));
        // Suggestion bits in the high nibble alone are not an error.
        assert!(check_host(0, 0x10 | DRIVER_SENSE, t).is_ok());
    }
}

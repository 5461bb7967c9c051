//! A drive transport (SSC): the tape commands over one drive of the shared library state.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::changer::{check, illegal, inquiry, reply};
use super::state::{DriveCounters, DriveState, LibraryState, no_medium};
use super::tape::Object;
use super::{Clock, MAX_BLOCK};
use crate::scsi::cdb::{Cdb, op};
use crate::scsi::pages::inquiry::DEVICE_TYPE_TAPE;
use crate::scsi::pages::{
    BlockDescriptor, BlockLimits, CompressionPage, ModeForm, ModeParams, Position, tape_alert,
};
use crate::scsi::sense::{Sense, SenseKey};
use crate::scsi::transport::{Completion, DataBuf, Transport, TransportError};

/// One tape drive of the virtual library.
pub struct Drive {
    state: Arc<Mutex<LibraryState>>,
    index: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive").field("index", &self.index).finish()
    }
}

fn u24(b: &[u8], i: usize) -> u32 {
    (u32::from(b[i]) << 16) | (u32::from(b[i + 1]) << 8) | u32::from(b[i + 2])
}

fn filemark_sense(info: i64) -> Sense {
    Sense::new(SenseKey::NoSense, 0x00, 0x01).with_filemark().with_information(info)
}

fn eod_sense(info: i64) -> Sense {
    Sense::new(SenseKey::BlankCheck, 0x00, 0x05).with_information(info)
}

fn bop_sense(info: i64) -> Sense {
    Sense::new(SenseKey::NoSense, 0x00, 0x04).with_eom().with_information(info)
}

impl Drive {
    pub(super) fn new(state: Arc<Mutex<LibraryState>>, index: usize, clock: Arc<dyn Clock>) -> Drive {
        Drive { state, index, clock }
    }

    fn lock(&self) -> MutexGuard<'_, LibraryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The library's state, for tests that check what is held while the host waits.
    #[cfg(test)]
    pub(super) fn shared(&self) -> Arc<Mutex<LibraryState>> {
        self.state.clone()
    }

    /// What this drive has done.
    pub fn counters(&self) -> DriveCounters {
        self.lock().drives[self.index].counters
    }

    fn write(s: &mut LibraryState, i: usize, b: &[u8], data: &[u8], now: Duration) -> Completion {
        let (early, capacity) = (s.early_warning(), s.capacity);
        let d = &mut s.drives[i];
        let fixed = b[1] & 1 != 0;
        let count = u24(b, 2);
        if d.place.cart.as_ref().is_some_and(|k| k.write_protected) {
            return check(Sense::new(SenseKey::DataProtect, 0x27, 0x00), data.len());
        }
        if fixed != (d.block_size != 0)
            || data.len() > MAX_BLOCK as usize * if fixed { count as usize } else { 1 }
        {
            return illegal(0x24, 0x00, data.len());
        }
        let records: Vec<&[u8]> =
            if fixed { data.chunks(d.block_size as usize).collect() } else { vec![data] };
        let used = d.tape.bytes_before(d.pos) + data.len() as u64;
        if used > capacity {
            let s = Sense::new(SenseKey::VolumeOverflow, 0x00, 0x02)
                .with_eom()
                .with_information(i64::from(count));
            return check(s, data.len());
        }
        let bad = (0..records.len()).find(|k| d.faults.medium_error.contains(&((d.pos + k) as u64)));
        let good = bad.unwrap_or(records.len());
        if d.tape.write_records(d.pos, &records[..good]).is_err() {
            d.pos = d.tape.len();
            return check(
                Sense::new(SenseKey::MediumError, 0x0C, 0x00).with_information(i64::from(count)),
                0,
            );
        }
        d.pos = d.tape.len();
        if let Some(k) = bad {
            let left = i64::from(count) - k as i64;
            return check(Sense::new(SenseKey::MediumError, 0x0C, 0x00).with_information(left), 0);
        }
        Self::account(d, data.len() as u64, now);
        if used > early {
            return check(Sense::new(SenseKey::NoSense, 0x00, 0x02).with_eom(), 0);
        }
        Completion::good(0)
    }

    /// Counts `n` bytes written and fires the byte-count faults.
    fn account(d: &mut DriveState, n: u64, now: Duration) {
        d.counters.bytes += n;
        let h = d.speed.write(n, now);
        d.pay(h);
        d.wear_by(n);
        let bytes = d.counters.bytes;
        if d.faults.offline_after.is_some_and(|a| bytes >= a) && d.offline.is_none() {
            d.offline = Some(false);
        }
        if d.faults.attention_after.take_if(|a| bytes >= *a).is_some() {
            d.attention = Some((0x29, 0x00));
        }
        if d.faults.clean_after.is_some_and(|a| bytes >= a) {
            d.alerts = d.alerts.with(tape_alert::CLEAN_NOW);
        }
    }

    fn read(d: &mut DriveState, b: &[u8], data: DataBuf<'_>) -> Completion {
        let DataBuf::In(buf) = data else { return Completion::good(0) };
        let fixed = b[1] & 1 != 0;
        let sili = b[1] & 2 != 0;
        let count = u24(b, 2) as usize;
        if fixed != (d.block_size != 0) {
            return illegal(0x24, 0x00, buf.len());
        }
        let (blocks, len) = if fixed { (count, d.block_size as usize) } else { (1, count) };
        for k in 0..blocks {
            let left = (blocks - k) as i64;
            let residual = buf.len() - k * len;
            if d.faults.medium_error.contains(&(d.pos as u64)) {
                return check(Sense::new(SenseKey::MediumError, 0x11, 0x00).with_information(left), residual);
            }
            match d.tape.object(d.pos) {
                None => return check(eod_sense(if fixed { left } else { count as i64 }), residual),
                Some(Object::Filemark) => {
                    d.pos += 1;
                    return check(filemark_sense(if fixed { left } else { count as i64 }), residual);
                }
                Some(Object::Record(r)) => {
                    let r = r as usize;
                    let n = r.min(len);
                    if d.tape.read_record(d.pos, &mut buf[k * len..k * len + n]).is_err() {
                        let s = Sense::new(SenseKey::MediumError, 0x11, 0x00).with_information(left);
                        return check(s, residual);
                    }
                    d.pos += 1;
                    let h = d.speed.read(n as u64);
                    d.pay(h);
                    if r != len && !(sili && !fixed && r < len) {
                        let info = if fixed { left - 1 } else { len as i64 - r as i64 };
                        let s = Sense::new(SenseKey::NoSense, 0, 0).with_ili().with_information(info);
                        return check(s, buf.len() - k * len - n);
                    }
                    if !fixed {
                        return Completion::good(len - n);
                    }
                }
            }
        }
        Completion::good(0)
    }

    /// SPACE over blocks (`code` 0), filemarks (1) or to end of data (3), by the filemark
    /// index rather than object by object. Spacing blocks stops at a filemark: forward after
    /// it, backward before it (SSC).
    fn space(d: &mut DriveState, code: u8, count: i64) -> Completion {
        if code == 2 || code > 3 {
            return illegal(0x24, 0x00, 0);
        }
        let (t, pos) = (&d.tape, d.pos);
        let c = count.unsigned_abs();
        let before = t.filemarks_before(pos);
        let (to, sense) = match (code, count > 0) {
            (3, _) => (t.len(), None),
            _ if count == 0 => (pos, None),
            (1, true) => match t.filemark(before + c - 1) {
                Some(m) => (m + 1, None),
                None => (t.len(), Some(eod_sense((c - (t.filemarks_before(t.len()) - before)) as i64))),
            },
            (1, false) if c <= before => (t.filemark(before - c).expect("counted"), None),
            (1, false) => (0, Some(bop_sense((c - before) as i64))),
            (_, true) => {
                let stop = t.filemark(before).unwrap_or(t.len());
                let gap = (stop - pos) as u64;
                match t.filemark(before) {
                    _ if c <= gap => (pos + c as usize, None),
                    Some(m) => (m + 1, Some(filemark_sense((c - gap) as i64))),
                    None => (t.len(), Some(eod_sense((c - gap) as i64))),
                }
            }
            (_, false) => {
                let stop = before.checked_sub(1).and_then(|i| t.filemark(i));
                let gap = (pos - stop.map_or(0, |m| m + 1)) as u64;
                match stop {
                    _ if c <= gap => (pos - c as usize, None),
                    Some(m) => (m, Some(filemark_sense((c - gap) as i64))),
                    None => (0, Some(bop_sense((c - gap) as i64))),
                }
            }
        };
        d.pos = to;
        match sense {
            Some(s) => check(s, 0),
            None => Completion::good(0),
        }
    }

    fn mode_sense(d: &DriveState, b: &[u8], form: ModeForm, data: DataBuf<'_>) -> Completion {
        let page = b[2] & 0x3F;
        let mut pages = Vec::new();
        if page == crate::scsi::pages::COMPRESSION_PAGE || page == 0x3F {
            let c = CompressionPage {
                dce: d.compression,
                dcc: true,
                dde: true,
                red: 0,
                compression_algorithm: 1,
                decompression_algorithm: 1,
            };
            pages.extend_from_slice(&c.encode());
        } else if page != 0 {
            return illegal(0x24, 0x00, data.len());
        }
        let wp = d.place.cart.as_ref().is_some_and(|k| k.write_protected);
        let params = ModeParams {
            medium_type: 0,
            device_specific: 0x10 | if wp { 0x80 } else { 0 },
            block_descriptor: (b[1] & 0x08 == 0).then_some(BlockDescriptor {
                density: 0x5A,
                blocks: 0,
                block_len: d.block_size,
            }),
            pages,
        };
        reply(data, &params.encode_sense(form))
    }

    fn mode_select(d: &mut DriveState, form: ModeForm, data: &[u8]) -> Completion {
        // A parameter list carries mode data length 0; decode it as the length it has.
        let mut data = data.to_vec();
        let n = data.len();
        match form {
            ModeForm::Six if !data.is_empty() => data[0] = (n - 1) as u8,
            ModeForm::Ten if data.len() >= 2 => data[..2].copy_from_slice(&((n - 2) as u16).to_be_bytes()),
            _ => {}
        }
        let Ok(p) = ModeParams::decode(&data, form) else { return illegal(0x1A, 0x00, 0) };
        if let Some(bd) = p.block_descriptor {
            if bd.block_len > MAX_BLOCK {
                return illegal(0x26, 0x00, 0);
            }
            d.block_size = bd.block_len;
        }
        if let Some(c) =
            p.page(crate::scsi::pages::COMPRESSION_PAGE).and_then(|pg| CompressionPage::decode(pg).ok())
        {
            d.compression = c.dce;
        }
        Completion::good(0)
    }

    fn locate(d: &mut DriveState, target: u64) -> Completion {
        let end = d.tape.len();
        d.pos = usize::try_from(target).map_or(end, |t| t.min(end));
        if target > end as u64 { check(eod_sense(0), 0) } else { Completion::good(0) }
    }

    /// Commands that need a loaded, threaded cartridge.
    fn medium_command(
        s: &mut LibraryState,
        i: usize,
        b: &[u8],
        data: DataBuf<'_>,
        now: Duration,
    ) -> Completion {
        let wp = s.drives[i].place.cart.as_ref().is_some_and(|k| k.write_protected);
        match b[0] {
            op::WRITE_6 => match data {
                DataBuf::Out(out) => Self::write(s, i, b, out, now),
                _ => Completion::good(0),
            },
            op::WRITE_FILEMARKS_6 | op::ERASE_6 if wp => {
                check(Sense::new(SenseKey::DataProtect, 0x27, 0x00), 0)
            }
            op::WRITE_FILEMARKS_6 => {
                let d = &mut s.drives[i];
                if b[1] & 1 == 0 {
                    let h = d.speed.flush(now);
                    d.pay(h);
                }
                let written = d.tape.write_filemarks(d.pos, u24(b, 2));
                d.pos = d.tape.len();
                match written.and_then(|()| s.save_drive(i)) {
                    Ok(()) => Completion::good(0),
                    Err(_) => check(Sense::new(SenseKey::MediumError, 0x0C, 0x00), 0),
                }
            }
            op::ERASE_6 => {
                let d = &mut s.drives[i];
                match d.tape.truncate(d.pos) {
                    Ok(()) => Completion::good(0),
                    Err(_) => check(Sense::new(SenseKey::MediumError, 0x0C, 0x00), 0),
                }
            }
            op::READ_6 => Self::read(&mut s.drives[i], b, data),
            op::SPACE_6 => {
                let count = i64::from(i32::from_be_bytes([b[2], b[3], b[4], 0]) >> 8);
                Self::space(&mut s.drives[i], b[1] & 0x0F, count)
            }
            op::SPACE_16 => {
                let count = i64::from_be_bytes(b[4..12].try_into().expect("8 bytes"));
                Self::space(&mut s.drives[i], b[1] & 0x0F, count)
            }
            op::REWIND => {
                let d = &mut s.drives[i];
                let h = d.speed.flush(now);
                d.pay(h);
                d.pos = 0;
                Completion::good(0)
            }
            op::READ_POSITION | op::LOCATE_16 | op::LOCATE_10 if !s.positioning => {
                illegal(0x20, 0x00, data.len())
            }
            op::READ_POSITION => {
                let d = &s.drives[i];
                let p = Position {
                    bop: d.pos == 0,
                    eop: false,
                    mark_position_unknown: false,
                    object_unknown: false,
                    partition: 0,
                    block: d.pos as u64,
                    file: d.tape.filemarks_before(d.pos),
                };
                reply(data, &p.encode())
            }
            op::LOCATE_16 => {
                Self::locate(&mut s.drives[i], u64::from_be_bytes(b[4..12].try_into().expect("8 bytes")))
            }
            op::LOCATE_10 => {
                Self::locate(&mut s.drives[i], u64::from(u32::from_be_bytes(b[3..7].try_into().expect("4"))))
            }
            _ => illegal(0x20, 0x00, data.len()),
        }
    }

    /// Runs `cdb` on drive `i` under the library's lock.
    fn run(
        s: &mut LibraryState,
        i: usize,
        cdb: &Cdb,
        data: DataBuf<'_>,
        now: Duration,
    ) -> Result<Completion, TransportError> {
        let b = cdb.bytes();
        let d = &mut s.drives[i];
        match d.offline {
            Some(true) => return Err(TransportError::Other(format!("{}: drive {i} is offline", s.name))),
            Some(false) => {
                d.offline = Some(true);
                return Ok(check(Sense::new(SenseKey::NotReady, 0x04, 0x03), data.len()));
            }
            None => {}
        }
        match b[0] {
            op::INQUIRY if b[1] & 1 == 0 => {
                return Ok(reply(data, &inquiry(DEVICE_TYPE_TAPE, "VIRTUAL LTO-8")));
            }
            op::REQUEST_SENSE => return Ok(reply(data, &Sense::new(SenseKey::NoSense, 0, 0).encode())),
            _ => {}
        }
        if d.cleaning.is_some() {
            d.cleaning_progress(now);
            if !(b[0] == op::LOG_SENSE && b[2] & 0x3F == crate::scsi::pages::TAPE_ALERT_PAGE) {
                return Ok(d.cleaning_command(b[0], now, data.len()));
            }
        }
        if let Some((asc, ascq)) = d.attention.take() {
            return Ok(check(Sense::new(SenseKey::UnitAttention, asc, ascq), data.len()));
        }
        Ok(match b[0] {
            op::READ_BLOCK_LIMITS => reply(
                data,
                &BlockLimits { granularity: 0, max_block_len: MAX_BLOCK, min_block_len: 1 }.encode(),
            ),
            op::MODE_SENSE_6 => Self::mode_sense(d, b, ModeForm::Six, data),
            op::MODE_SENSE_10 => Self::mode_sense(d, b, ModeForm::Ten, data),
            op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
                let form = if b[0] == op::MODE_SELECT_6 { ModeForm::Six } else { ModeForm::Ten };
                let DataBuf::Out(out) = data else { return Ok(Completion::good(0)) };
                Self::mode_select(d, form, out)
            }
            op::LOG_SENSE if b[2] & 0x3F == crate::scsi::pages::TAPE_ALERT_PAGE => {
                reply(data, &d.alerts.encode())
            }
            op::LOAD_UNLOAD if d.place.cart.is_none() => check(no_medium(), 0),
            op::LOAD_UNLOAD => {
                let h = d.speed.flush(now);
                d.pay(h);
                d.pos = 0;
                d.threaded = b[4] & 1 != 0;
                if d.threaded {
                    Completion::good(0)
                } else {
                    match s.save_drive(i) {
                        Ok(()) => Completion::good(0),
                        Err(e) => {
                            return Err(TransportError::Other(format!("{}: saving the tape: {e}", s.name)));
                        }
                    }
                }
            }
            _ if d.place.cart.is_none() || !d.threaded => check(no_medium(), data.len()),
            op::TEST_UNIT_READY => Completion::good(0),
            _ => Self::medium_command(s, i, b, data, now),
        })
    }
}

impl Transport for Drive {
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError> {
        let now = self.clock.now();
        let (r, hold) = {
            let mut s = self.lock();
            let r = Self::run(&mut s, self.index, cdb, data, now);
            let d = &mut s.drives[self.index];
            let hold = std::mem::take(&mut d.hold);
            d.counters.waited += hold;
            (r, hold)
        };
        // The host waits with the library released: other drives and the robot carry on.
        if !hold.is_zero() {
            self.clock.sleep(hold);
        }
        r
    }
}

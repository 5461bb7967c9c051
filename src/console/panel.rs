//! The front panel: two lines of 20 characters that sum up the box, for a small LCD on its
//! front (and the status page and console, which show the same lines). Pure: made from the
//! status snapshot.
//!
//! Line 1, the box: what it does, the job, drives busy of drives online, the write rate.
//! `BKP J12 2/2 410MB/s`, `IDLE 0/2 J3 22:00` (the next job and when, UTC), `STALL J12 0/2`,
//! `DEGR 0/2` (not healthy: see the status page), `WAIT J12 0/2 0B/s` (the job waits for a
//! cartridge: WAITING MEDIA).
//! Line 2, one drive at a time (the panel turns to the next on each `turn`): number, barcode
//! loaded, how full that cartridge is (right-aligned), and three flags — `E` enabled or `D` disabled
//! (offline), `W` busy or `-`, `F` cartridge full or `-`: `D0 HIL004L6 63% EW-`. A box
//! without tape drives shows its job counts instead: `JOBS 3 RDY 1 FAIL 0`. While the box asks
//! something of a person (`EXPORT: 3 cartridge(s)…`, `WAITING MEDIA…`), every other turn shows
//! the ask's start instead.

use heapless::String;

use crate::service::status::{DriveLine, Snapshot};

/// Characters per line.
pub const WIDTH: usize = 20;

/// One panel line.
pub type Line = String<WIDTH>;

/// The two lines for `s`; `turn` picks the drive shown on line 2.
pub fn lines(s: &Snapshot, turn: u64) -> [Line; 2] {
    [fit(&first(s)), fit(&second(s, turn))]
}

/// Cuts `text` to the panel's width, printable ASCII only.
fn fit(text: &str) -> Line {
    let mut l = Line::new();
    for c in text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }) {
        if l.push(c).is_err() {
            break;
        }
    }
    l
}

fn first(s: &Snapshot) -> std::string::String {
    let online = s.drives.iter().filter(|d| d.online).count();
    let busy = s.drives.iter().filter(|d| d.busy).count();
    let active = s.jobs.iter().find(|j| j.state == "active");
    let stalled = s.activity.starts_with("STALLED");
    let waiting = s.asks.iter().any(|a| a.starts_with(crate::library::WAITING_MEDIA));
    let mode = match (s.healthy, stalled, active.is_some()) {
        (_, true, _) => "STALL",
        (false, _, _) => "DEGR",
        (true, _, true) if waiting => "WAIT",
        (true, _, true) => "BKP",
        (true, _, false) => "IDLE",
    };
    match active {
        Some(j) => format!("{mode} J{} {busy}/{online} {}", j.id, rate(s.throughput.stored_bytes_per_s)),
        None => {
            let next = s.jobs.iter().filter_map(|j| Some((j.next_run?, j.id))).min();
            match next {
                Some((at, id)) => {
                    // `YYYY-MM-DD HH:MM:SS`: the hour and minute.
                    let hm = crate::jobs::calendar::format(at)[11..16].to_owned();
                    format!("{mode} {busy}/{online} J{id} {hm}")
                }
                None => format!("{mode} {busy}/{online}"),
            }
        }
    }
}

fn second(s: &Snapshot, turn: u64) -> std::string::String {
    // What the box asks of a person takes every other turn: it is what someone walking past
    // must see.
    if !s.asks.is_empty() && turn % 2 == 1 {
        return s.asks[(turn / 2 % s.asks.len() as u64) as usize].clone();
    }
    if s.drives.is_empty() {
        let count = |st: &str| s.jobs.iter().filter(|j| j.state == st).count();
        return format!("JOBS {} RDY {} FAIL {}", s.jobs.len(), count("ready"), count("failed"));
    }
    let d = &s.drives[(turn % s.drives.len() as u64) as usize];
    let cart = d.loaded.as_ref().and_then(|b| s.cartridges.iter().find(|c| &c.barcode == b));
    let pct = cart.and_then(|c| c.used_percent).map_or("-".into(), |p| p.to_string());
    let right = format!("{pct}% {}", flags(d, cart.is_some_and(|c| c.state == "full")));
    // The barcode gives way when the line is full (9-character barcodes at 100%).
    let room = WIDTH.saturating_sub(right.len() + 1);
    let left: std::string::String =
        format!("D{} {}", d.drive, d.loaded.as_deref().unwrap_or("--------")).chars().take(room).collect();
    format!("{left:<room$} {right}")
}

fn flags(d: &DriveLine, full: bool) -> std::string::String {
    [if d.online { 'E' } else { 'D' }, if d.busy { 'W' } else { '-' }, if full { 'F' } else { '-' }]
        .iter()
        .collect()
}

/// A rate in at most 7 characters: `0B/s`, `950KB/s`, `410MB/s`, `1.2GB/s`.
fn rate(bytes_per_s: u64) -> std::string::String {
    const K: u64 = 1000;
    match bytes_per_s {
        b if b < K => format!("{b}B/s"),
        b if b < K * K => format!("{}KB/s", b / K),
        b if b < K * K * K => format!("{}MB/s", b / (K * K)),
        b => format!("{:.1}GB/s", b as f64 / (K * K * K) as f64),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::service::status::{CartridgeLine, JobLine, Throughput};

    fn drive(n: u32, loaded: Option<&str>, online: bool, busy: bool) -> DriveLine {
        DriveLine {
            library: "vlib".into(),
            drive: n,
            online,
            loaded: loaded.map(Into::into),
            busy,
            repositions: 0,
        }
    }

    fn box_writing() -> Snapshot {
        Snapshot {
            healthy: true,
            activity: "backup: job 12".into(),
            jobs: vec![JobLine {
                id: 12,
                name: "nightly".into(),
                state: "active".into(),
                ..JobLine::default()
            }],
            drives: vec![drive(0, Some("HIL004L6"), true, true), drive(1, Some("HIL005L6"), true, true)],
            cartridges: vec![CartridgeLine {
                barcode: "HIL004L6".into(),
                state: "writable".into(),
                used_percent: Some(63),
                ..CartridgeLine::default()
            }],
            throughput: Throughput { stored_bytes_per_s: 410_000_000, ..Throughput::default() },
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_writing_box_reads_as_designed() {
        let s = box_writing();
        let [a, b] = lines(&s, 0);
        assert_eq!(a.as_str(), "BKP J12 2/2 410MB/s");
        assert_eq!(b.as_str(), "D0 HIL004L6  63% EW-");
        // The next turn shows the next drive, whose cartridge the catalog does not know.
        assert_eq!(lines(&s, 1)[1].as_str(), "D1 HIL005L6   -% EW-");
        // A 9-character barcode fits; at 100% its last character gives way.
        let mut s = s;
        s.drives[0].loaded = Some("CFR0001L8".into());
        s.cartridges[0].barcode = "CFR0001L8".into();
        assert_eq!(lines(&s, 0)[1].as_str(), "D0 CFR0001L8 63% EW-");
        s.cartridges[0].used_percent = Some(100);
        s.cartridges[0].state = "full".into();
        assert_eq!(lines(&s, 0)[1].as_str(), "D0 CFR0001L 100% EWF");
    }

    #[test]
    fn idle_stalled_degraded_and_driveless_boxes() {
        let mut s = box_writing();
        s.jobs[0].state = "ready".into();
        s.jobs[0].next_run = Some(1_795_039_200); // 2026-11-18 22:00 UTC
        s.drives[1] = drive(1, None, false, false);
        s.drives[0].busy = false;
        assert_eq!(lines(&s, 0)[0].as_str(), "IDLE 0/1 J12 22:00");
        assert_eq!(lines(&s, 1)[1].as_str(), "D1 --------   -% D--");
        s.activity = "STALLED: job 12".into();
        s.jobs[0].state = "active".into();
        s.throughput.stored_bytes_per_s = 0;
        assert_eq!(lines(&s, 0)[0].as_str(), "STALL J12 0/1 0B/s");
        s.activity = "journal not writable".into();
        s.healthy = false;
        s.jobs.clear();
        assert_eq!(lines(&s, 0)[0].as_str(), "DEGR 0/1");
        s.drives.clear();
        assert_eq!(lines(&s, 0)[1].as_str(), "JOBS 0 RDY 0 FAIL 0");
    }

    #[test]
    fn what_the_box_asks_takes_every_other_turn() {
        let mut s = box_writing();
        s.asks = vec!["EXPORT: 2 cartridge(s) wait".into(), "WAITING MEDIA job 4".into()];
        assert_eq!(lines(&s, 0)[1].as_str(), "D0 HIL004L6  63% EW-");
        assert_eq!(lines(&s, 1)[1].as_str(), "EXPORT: 2 cartridge(");
        assert_eq!(lines(&s, 2)[1].as_str(), "D0 HIL004L6  63% EW-");
        assert_eq!(lines(&s, 3)[1].as_str(), "WAITING MEDIA job 4");
        assert!(lines(&s, 0)[0].as_str().starts_with("WAIT J12 "), "{:?}", lines(&s, 0));
    }

    #[test]
    fn rates_fit() {
        assert_eq!(rate(0), "0B/s");
        assert_eq!(rate(950_000), "950KB/s");
        assert_eq!(rate(1_234_000_000), "1.2GB/s");
    }

    proptest! {
        #[test]
        fn lines_never_overflow_or_carry_control_characters(
            id in any::<u64>(), rate in any::<u64>(), barcode in "\\PC{0,40}", pct in any::<u8>(),
            turn in any::<u64>(), next in proptest::option::of(0u64..100_000_000_000),
        ) {
            let mut s = box_writing();
            s.jobs[0].id = id;
            s.jobs[0].next_run = next;
            s.throughput.stored_bytes_per_s = rate;
            s.drives[0].loaded = Some(barcode.clone());
            s.cartridges[0].barcode = barcode;
            s.cartridges[0].used_percent = Some(pct);
            for st in ["active", "ready"] {
                s.jobs[0].state = st.into();
                for l in lines(&s, turn) {
                    prop_assert!(l.len() <= WIDTH);
                    prop_assert!(l.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                }
            }
        }
    }
}

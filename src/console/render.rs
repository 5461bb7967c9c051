//! The service's replies as text for an 80-column dumb terminal. Pure: JSON in, lines out.
//!
//! Every string that came from the service (job names, messages, barcodes) goes through
//! [`clean`], so nothing the service stores can send escape codes to the terminal; long text
//! is wrapped, not cut, so that an error is read whole.

use serde_json::Value;

use crate::human;
use crate::jobs::calendar;

/// Columns of the terminal.
pub const COLUMNS: usize = 80;

/// Printable ASCII only: anything else becomes `?`.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// `text` wrapped at word boundaries to lines of at most [`COLUMNS`] - 1 characters, each
/// after the first indented by `indent` spaces.
pub fn wrap(text: &str, indent: usize) -> Vec<String> {
    wrap_at(text, 0, indent)
}

/// [`wrap`], with the first line indented by `first` and the others by `rest` spaces.
pub fn wrap_at(text: &str, first: usize, rest: usize) -> Vec<String> {
    let width = COLUMNS - 1;
    let (first, rest) = (first.min(width / 2), rest.min(width / 2));
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    let clean = clean(text);
    for mut word in clean.split(' ').filter(|w| !w.is_empty()) {
        loop {
            if cur.is_empty() {
                let lead = if lines.is_empty() { first } else { rest };
                let room = width - lead;
                if word.len() <= room {
                    cur = format!("{}{word}", " ".repeat(lead));
                    break;
                }
                // A word longer than a line is split.
                lines.push(format!("{}{}", " ".repeat(lead), &word[..room]));
                word = &word[room..];
            } else if cur.len() + 1 + word.len() <= width {
                cur.push(' ');
                cur.push_str(word);
                break;
            } else {
                lines.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// `text` made printable and cut to one line (for table rows, where wrapping would break
/// the columns).
pub fn cut(text: &str) -> String {
    let line: String = clean(text).chars().take(COLUMNS - 1).collect();
    line.trim_end().to_owned()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn when(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |t| calendar::format(t)[..16].to_owned())
}

/// `coffer healthy, up 2h03m`, activity, panel, drives, jobs, latest session, journal.
pub fn status(v: &Value) -> Vec<String> {
    let up = n(v, "uptime");
    let health = if v["healthy"].as_bool() == Some(true) { "healthy" } else { "NOT HEALTHY" };
    let mut out = wrap(&format!("{} {health}, up {}h{:02}m", s(v, "board"), up / 3600, up / 60 % 60), 2);
    out.extend(wrap(&format!("activity: {}", s(v, "activity")), 2));
    for ask in v["asks"].as_array().into_iter().flatten() {
        out.extend(wrap(&format!("ASKS: {}", ask.as_str().unwrap_or("")), 2));
    }
    if let Some([a, b]) = v["panel"].as_array().map(Vec::as_slice) {
        out.push(cut(&format!("panel: |{:<20}|", a.as_str().unwrap_or(""))));
        out.push(cut(&format!("       |{:<20}|", b.as_str().unwrap_or(""))));
    }
    for d in v["drives"].as_array().into_iter().flatten() {
        out.push(cut(&format!(
            "drive {}/{}: {:<8} {:<10} {}",
            s(d, "library"),
            n(d, "drive"),
            if d["online"].as_bool() == Some(true) { "online" } else { "OFFLINE" },
            d["loaded"].as_str().unwrap_or("empty"),
            if d["busy"].as_bool() == Some(true) { "busy" } else { "" },
        )));
    }
    let jobs = v["jobs"].as_array().map_or(&[][..], Vec::as_slice);
    let count = |st: &str| jobs.iter().filter(|j| s(j, "state") == st).count();
    out.push(format!(
        "jobs: {} ({} active, {} ready, {} held, {} failed)",
        jobs.len(),
        count("active"),
        count("ready"),
        count("hold"),
        count("failed")
    ));
    for j in jobs.iter().filter(|j| j["progress"].is_object()) {
        let p = &j["progress"];
        out.extend(wrap_at(
            &format!(
                "job {} ({}): session {}, {} streams, {} objects, {} in, {} stored",
                n(j, "id"),
                s(j, "name"),
                n(p, "session"),
                n(p, "streams"),
                n(p, "objects"),
                human::bytes(n(p, "bytes_in")),
                human::bytes(n(p, "bytes_stored"))
            ),
            2,
            4,
        ));
    }
    for a in v["agents"].as_array().into_iter().flatten() {
        let last = &a["last_backup"];
        let last = if last.is_object() {
            format!("last {} {}", n(last, "session"), s(last, "status"))
        } else {
            "no backup yet".to_owned()
        };
        let conn = match a["address"].as_str() {
            Some(addr) => format!("{addr} {}/s", human::bytes(n(a, "bytes_per_s"))),
            None => s(a, "state").to_owned(),
        };
        out.push(cut(&format!("agent {}: {conn}, {last}", s(a, "name"))));
    }
    let t = &v["throughput"];
    out.push(format!(
        "throughput: {}/s in, {}/s stored",
        human::bytes(n(t, "in_bytes_per_s")),
        human::bytes(n(t, "stored_bytes_per_s"))
    ));
    if v["latest"].is_object() {
        let l = &v["latest"];
        out.push(cut(&format!(
            "latest session {}: {}, {} objects, {}",
            n(l, "id"),
            s(l, "status"),
            n(l, "objects"),
            human::bytes(n(l, "bytes"))
        )));
    }
    let j = &v["journal"];
    let writable = if j["writable"].as_bool() == Some(true) { "writable" } else { "READ-ONLY" };
    out.push(format!("journal: {writable}, {} sessions, {} media", n(v, "sessions"), n(v, "media")));
    out.extend(endpoint(&v["endpoint"]));
    out
}

/// The status endpoint's URL and its certificate's SHA-256 fingerprint, 16 bytes a line, so
/// that a person can compare it with what a browser or `curl` shows.
fn endpoint(e: &Value) -> Vec<String> {
    if !e.is_object() {
        return Vec::new();
    }
    let mut out = vec![cut(&format!("endpoint: {}", s(e, "url")))];
    if let Some(f) = e["fingerprint"].as_str() {
        out.push("  certificate SHA-256:".into());
        let bytes: Vec<&str> = f.split(':').collect();
        for half in bytes.chunks(16) {
            out.push(cut(&format!("    {}", half.join(":"))));
        }
    }
    out
}

/// The panel's two lines, framed.
pub fn panel(v: &Value) -> Vec<String> {
    let line = |i: usize| clean(v["panel"][i].as_str().unwrap_or(""));
    vec![
        "+--------------------+".into(),
        cut(&format!("|{:<20}|", line(0))),
        cut(&format!("|{:<20}|", line(1))),
        "+--------------------+".into(),
    ]
}

/// The job list: one line per job, its last words under it.
pub fn jobs(v: &Value) -> Vec<String> {
    let list = v.as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return vec!["no jobs (submit one with `coffer job submit FILE`)".into()];
    }
    let mut out = vec![format!("{:>4}  {:<9}  {:<16}  NAME", "ID", "STATE", "NEXT RUN (UTC)")];
    for j in list {
        out.push(cut(&format!(
            "{:>4}  {:<9}  {:<16}  {}",
            n(j, "id"),
            s(j, "state").to_ascii_uppercase(),
            when(&j["next_run"]),
            s(j, "name")
        )));
        if !s(j, "last").is_empty() {
            out.extend(wrap_at(s(j, "last"), 6, 6));
        }
    }
    out
}

/// One job after a change (run, hold, release, cancel) or shown whole (`job N`).
pub fn job(v: &Value) -> Vec<String> {
    let mut out = wrap(
        &format!(
            "job {} ({}): {}, next run {}{}",
            n(v, "id"),
            s(v, "name"),
            s(v, "state").to_ascii_uppercase(),
            when(&v["next_run"]),
            if v["recurring"].as_bool() == Some(true) { ", recurring" } else { "" }
        ),
        2,
    );
    if !s(v, "last").is_empty() {
        out.extend(wrap_at(s(v, "last"), 2, 2));
    }
    let history = v["history"].as_array().map_or(&[][..], Vec::as_slice);
    for h in &history[history.len().saturating_sub(5)..] {
        out.extend(wrap_at(
            &format!("{}  {:<9} {}", when(&h["at"]), s(h, "state").to_ascii_uppercase(), s(h, "message")),
            2,
            4,
        ));
    }
    let log = v["log"].as_array().map_or(&[][..], Vec::as_slice);
    out.extend(log[log.len().saturating_sub(5)..].iter().flat_map(log_line));
    out
}

fn log_line(e: &Value) -> Vec<String> {
    let job = e["job"].as_u64().map_or(String::new(), |j| format!("job {j}: "));
    wrap(&format!("{} {:<7} {job}{}", when(&e["at"]), s(e, "level").to_ascii_uppercase(), s(e, "message")), 4)
}

/// The activity log, oldest first.
pub fn log(v: &Value) -> Vec<String> {
    let list = v.as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return vec!["the log has nothing at that level".into()];
    }
    list.iter().flat_map(log_line).collect()
}

/// A library after an operation: what was done, its drives, where every cartridge is.
pub fn media(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if !s(v, "done").is_empty() {
        out.extend(wrap(s(v, "done"), 2));
    }
    out.push(cut(&format!("library {}", s(v, "library"))));
    for d in v["drives"].as_array().into_iter().flatten() {
        let state = d["offline"].as_str().map_or("online".to_owned(), |why| format!("OFFLINE ({why})"));
        out.extend(wrap_at(
            &format!("drive {}: {:<10} {state}", n(d, "drive"), d["barcode"].as_str().unwrap_or("empty")),
            2,
            4,
        ));
    }
    let places = v["places"].as_array().map_or(&[][..], Vec::as_slice);
    let mut row = String::new();
    for p in places.iter().filter(|p| !s(p, "element").starts_with("drive")) {
        let cell = format!("{:<12}{:<10}", s(p, "element"), p["barcode"].as_str().unwrap_or("-"));
        if row.len() + cell.len() > COLUMNS - 1 {
            out.push(clean(row.trim_end()));
            row.clear();
        }
        row.push_str(&cell);
    }
    if !row.is_empty() {
        out.push(clean(row.trim_end()));
    }
    for u in v["unusable"].as_array().into_iter().flatten() {
        let (barcode, why) = (u[0].as_str().unwrap_or(""), u[1].as_str().unwrap_or(""));
        out.extend(wrap_at(&format!("not written: {barcode} ({why})"), 2, 4));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn fits(lines: &[String]) -> bool {
        lines.iter().all(|l| l.len() < COLUMNS && l.bytes().all(|b| (0x20..=0x7e).contains(&b)))
    }

    #[test]
    fn wrap_keeps_every_word_within_the_width() {
        let text = "the drive vlib/1 was taken offline after a medium error on CFR003L6; \
                    clean it and put it back with `drive 1 online` "
            .repeat(3);
        let lines = wrap(&text, 4);
        assert!(lines.len() > 2 && fits(&lines));
        assert!(lines[1..].iter().all(|l| l.starts_with("    ")));
        let rejoined: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(rejoined, text.split_whitespace().collect::<Vec<_>>());
        assert!(fits(&wrap(&"x".repeat(300), 2)));
        assert_eq!(wrap("", 2), [""]);
    }

    const FINGERPRINT: &str = "3B:6F:0A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:\
                               EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:01";

    #[test]
    fn status_and_jobs_read_well() {
        let v = json!({
            "board": "coffer", "healthy": false, "activity": "STALLED: job 3 \u{1b}[2J",
            "uptime": 7380, "panel": ["STALL J3 0/2 0B/s", "D0 CFR001L6  12% EW-"],
            "drives": [{"library": "vlib", "drive": 0, "online": true, "loaded": "CFR001L6", "busy": true},
                       {"library": "vlib", "drive": 1, "online": false, "loaded": null, "busy": false}],
            "jobs": [{"id": 3, "name": "nightly", "state": "active", "next_run": null, "last": "",
                      "progress": {"session": 7, "streams": 2, "objects": 10, "bytes_in": 5000000, "bytes_stored": 2500000}}],
            "throughput": {"in_bytes_per_s": 0, "stored_bytes_per_s": 0},
            "latest": {"id": 7, "status": "running", "objects": 10, "bytes": 0},
            "journal": {"writable": true}, "sessions": 7, "media": 2,
            "endpoint": {"url": "https://0.0.0.0:8470/", "fingerprint": FINGERPRINT},
        });
        let out = status(&v);
        let at = out.iter().position(|l| l == "endpoint: https://0.0.0.0:8470/").expect("the endpoint");
        assert_eq!(out[at + 2..at + 4].join(":").replace(' ', ""), FINGERPRINT, "{out:#?}");
        assert!(fits(&out), "{out:#?}");
        assert_eq!(out[0], "coffer NOT HEALTHY, up 2h03m");
        assert!(out[1].starts_with("activity: STALLED: job 3 ?[2J"));
        assert!(out.contains(&"panel: |STALL J3 0/2 0B/s   |".to_owned()));
        assert!(out.iter().any(|l| l.contains("drive vlib/1: OFFLINE")));
        assert!(out.iter().any(|l| l.contains("job 3 (nightly): session 7, 2 streams")));
        let list = json!([{"id": 3, "name": "nightly", "state": "ready", "next_run": 1_795_039_200u64,
                           "last": "done: session 7"}]);
        let out = jobs(&list);
        assert_eq!(out[1], "   3  READY      2026-11-18 22:00  nightly");
        assert_eq!(out[2].trim(), "done: session 7");
    }

    #[test]
    fn media_lists_drives_and_places() {
        let v = json!({"library": "vlib", "done": "loaded CFR002L6 into drive 1",
            "places": [{"element": "drive 0", "barcode": null}, {"element": "slot 1", "barcode": "CFR001L6"},
                       {"element": "slot 2", "barcode": null}, {"element": "mail slot 1", "barcode": null}],
            "drives": [{"drive": 0, "offline": null, "barcode": null},
                       {"drive": 1, "offline": "cleaning required", "barcode": "CFR002L6"}],
            "unusable": [["CFR009L6", "write protected"]]});
        let out = media(&v);
        assert!(fits(&out), "{out:#?}");
        assert_eq!(out[0], "loaded CFR002L6 into drive 1");
        assert!(out.iter().any(|l| l.contains("drive 1: CFR002L6 OFFLINE (cleaning required)")));
        assert!(out.iter().any(|l| l.starts_with("slot 1      CFR001L6  slot 2      -")));
        assert!(out.iter().any(|l| l.contains("not written: CFR009L6 (write protected)")));
    }

    /// Every view of a job named `name` whose messages are `msg` fits the terminal.
    fn renders_within_the_terminal(name: &str, msg: &str, id: u64) -> Result<(), String> {
        let j = json!({"id": id, "name": name, "state": "failed", "next_run": id, "last": msg,
                       "history": [{"at": 0, "state": "failed", "message": msg}],
                       "log": [{"at": id, "level": "error", "job": id, "message": msg}]});
        let snapshot = json!({"board": name, "activity": msg, "jobs": [j.clone()]});
        let views = [job(&j), jobs(&json!([j.clone()])), log(&j["log"]), status(&snapshot)];
        match views.iter().find(|v| !fits(v)) {
            Some(v) => Err(format!("{v:#?}")),
            None => Ok(()),
        }
    }

    /// A case proptest once found (wide characters in a long name, an id of 17 digits), kept
    /// as a test of its own rather than as a regressions file beside the sources.
    #[test]
    fn a_wide_unicode_name_and_a_long_id_fit() {
        let name = " !A\u{fffc}\u{1f7f0}\u{1e023}\u{11b00}!!aAa0\u{3190}a\u{fffc}\u{dc0}\u{1093f}a\u{ce0}\u{1e023}\u{1780}\u{1880}\u{1d000}\u{a830}\u{1fa8f}aA\u{13460}0\u{3a3}a\u{1f6f0}aa!\u{2d27}\u{1ed01}0\u{109bc}\u{1f300}\u{10597}\u{110be}\u{1b4e}A\u{1e000}0\u{3190}!a0A\u{1e7e8}\u{ae}A\u{11052} \u{1000}a";
        renders_within_the_terminal(name, "", 10000000000000000).unwrap();
    }

    proptest! {
        #[test]
        fn any_text_renders_within_the_terminal(name in "\\PC{0,200}", msg in "\\PC{0,400}", id in any::<u64>()) {
            let r = renders_within_the_terminal(&name, &msg, id);
            prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}

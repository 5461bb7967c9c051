//! The status page: one self-contained HTML document (inline CSS, no scripts, no external
//! resources) that reloads itself every [`REFRESH_SECONDS`]. Every value from the snapshot goes
//! through [`esc`]; the key values carry element ids (`health`, `activity`, `panel`, `jobs`,
//! `drives`, `cartridges`, `throughput`, `journal`, `latest`, `sessions`, `devices`) so tests and
//! scrapers can find them.

use std::fmt::Write as _;

use super::{AgentLine, CartridgeLine, DriveLine, JobLine, Snapshot};

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 5;

/// Characters per line of the front panel.
const PANEL_WIDTH: usize = 20;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176a1e;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
pre#panel{display:inline-block;background:#102010;color:#9f9;padding:.4em .8em;margin:0;\
font:1.1em/1.3 monospace;border-radius:4px}.muted{color:#777}";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use crate::human::bytes;

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
fn utc(secs: u64) -> String {
    format!("{} UTC", &crate::jobs::calendar::format(secs)[..16])
}

/// A table with an id, a header row, and a row per item (or one row saying there is none).
fn table<T>(id: &str, head: &[&str], items: &[T], none: &str, row: impl Fn(&T) -> String) -> String {
    let mut out = format!("<table id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr>");
    if items.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"{}\" class=\"muted\">{none}</td></tr>", head.len());
    }
    for item in items {
        let _ = write!(out, "<tr>{}</tr>", row(item));
    }
    out.push_str("</table>");
    out
}

fn job_row(j: &JobLine) -> String {
    let next = j.next_run.map_or("—".to_owned(), utc);
    let progress = j.progress.as_ref().map_or("—".to_owned(), |p| {
        format!(
            "session {}: {} read, {} stored, {} objects, {} streams",
            p.session,
            bytes(p.bytes_in),
            bytes(p.bytes_stored),
            p.objects,
            p.streams
        )
    });
    format!(
        "<td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        j.id,
        esc(&j.name),
        esc(&j.state),
        next,
        esc(&progress),
        esc(&j.last)
    )
}

fn drive_row(d: &DriveLine) -> String {
    format!(
        "<td>{}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>",
        esc(&d.library),
        d.drive,
        if d.online { "ok" } else { "bad" },
        if d.online { "online" } else { "OFFLINE" },
        d.loaded.as_deref().map_or("empty".to_owned(), esc),
        if d.busy { "busy" } else { "idle" },
        d.repositions
    )
}

fn cartridge_row(c: &CartridgeLine) -> String {
    let used = c.used_percent.map_or("—".to_owned(), |p| {
        let p = p.min(100);
        format!("<meter min=\"0\" max=\"100\" value=\"{p}\"></meter> {p}%")
    });
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        esc(&c.library),
        esc(&c.barcode),
        esc(&c.place),
        c.pool.as_deref().map_or("—".to_owned(), esc),
        esc(&c.state),
        used
    )
}

fn agent_row(a: &AgentLine) -> String {
    let last = a
        .last_backup
        .as_ref()
        .map_or("—".to_owned(), |l| format!("session {}: {}", l.session, esc(&l.status)));
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}/s</td><td>{}</td>",
        esc(&a.name),
        esc(&a.state),
        a.address.as_deref().map_or("—".to_owned(), esc),
        bytes(a.bytes_per_s),
        last
    )
}

/// The status page.
pub fn page(s: &Snapshot) -> String {
    let board = esc(&s.board);
    let (health_class, health) = if s.healthy { ("ok", "healthy") } else { ("bad", "DEGRADED") };
    let latest = s.latest.as_ref().map_or("none yet".to_owned(), |l| {
        format!("session {}: {}, {} objects, {}", l.id, esc(&l.status), l.objects, bytes(l.bytes))
    });
    let devices: String = s.devices.iter().map(|d| format!("<li>{}</li>", esc(d))).collect();
    // Padded to the panel's width, so the box keeps its shape when the lines are short or empty.
    let line = |l: &str| esc(&format!("{l:<PANEL_WIDTH$}"));
    let panel = format!("{}\n{}", line(&s.panel[0]), line(&s.panel[1]));
    let jobs = table(
        "jobs",
        &["id", "name", "state", "next run", "progress", "last message"],
        &s.jobs,
        "no jobs",
        job_row,
    );
    let drives = table(
        "drives",
        &["library", "drive", "state", "loaded", "activity", "repositions"],
        &s.drives,
        "no drives",
        drive_row,
    );
    let cartridges = table(
        "cartridges",
        &["library", "barcode", "place", "pool", "state", "used"],
        &s.cartridges,
        "no cartridges",
        cartridge_row,
    );
    let agents = table(
        "agents",
        &["agent", "state", "connected from", "rate", "last backup"],
        &s.agents,
        "no agents",
        agent_row,
    );
    let t = &s.throughput;
    let j = &s.journal;
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>coffer {board}</title><style>{STYLE}</style></head><body>\n\
         <h1>coffer <span id=\"board\">{board}</span></h1>\n\
         <p>state: <span id=\"health\" class=\"{health_class}\">{health}</span> · \
         <span id=\"activity\">{activity}</span> · up {uptime} s</p>\n\
         <pre id=\"panel\">{panel}</pre>\n<ul id=\"asks\">{asks}</ul>\n\
         <h2>Jobs</h2>{jobs}\n<h2>Drives</h2>{drives}\n<h2>Cartridges</h2>{cartridges}\n\
         <h2>Agents</h2>{agents}\n\
         <h2>Throughput</h2><p id=\"throughput\">now {in_rate}/s read, {stored_rate}/s stored; \
         in all {in_total} read, {stored_total} stored</p>\n\
         <h2>Journal</h2><p id=\"journal\">{records} records, {journal_bytes}, {writable}</p>\n\
         <h2>Catalog</h2><p>sessions: <span id=\"sessions\">{sessions}</span>; media: \
         <span id=\"media\">{media}</span></p><p id=\"latest\">latest: {latest}</p>\n\
         <h2>Devices</h2><ul id=\"devices\">{devices}</ul>\n\
         <h2>Endpoint</h2><p id=\"endpoint\">{endpoint}</p>\n</body></html>\n",
        activity = esc(&s.activity),
        asks = s.asks.iter().map(|a| format!("<li class=\"bad\">{}</li>", esc(a))).collect::<String>(),
        uptime = s.uptime,
        in_rate = bytes(t.in_bytes_per_s),
        stored_rate = bytes(t.stored_bytes_per_s),
        in_total = bytes(t.in_bytes_total),
        stored_total = bytes(t.stored_bytes_total),
        records = j.records,
        journal_bytes = bytes(j.bytes),
        writable = if j.writable { "writable" } else { "<span class=\"bad\">read-only</span>" },
        sessions = s.sessions,
        media = s.media,
        endpoint = endpoint(s),
    )
}

/// The endpoint's certificate fingerprint (what a browser shows to compare) and connections.
fn endpoint(s: &Snapshot) -> String {
    let Some(e) = &s.endpoint else {
        return "none".into();
    };
    let cert = e.fingerprint.as_ref().map_or("plain HTTP (loopback)".to_owned(), |f| {
        format!("certificate SHA-256 <code id=\"fingerprint\">{}</code>", esc(f))
    });
    format!("{cert}; {} connections open, {} refused (too many open)", e.connections, e.refused)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::tests::full_snapshot;
    use super::*;

    /// The text of the element with `id`, tags and all (up to its closing tag).
    fn element<'a>(page: &'a str, id: &str) -> &'a str {
        let at = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {page}"));
        let start = page[..at].rfind('<').unwrap();
        let tag: String = page[start + 1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let end = page[at..].find(&format!("</{tag}>")).unwrap() + at;
        &page[start..end]
    }

    #[test]
    fn the_page_shows_every_part_under_its_id() {
        let p = page(&full_snapshot());
        assert!(p.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(element(&p, "health").ends_with(">healthy"));
        assert!(element(&p, "panel").contains("BACKUP 42%"));
        assert!(element(&p, "panel").contains("\nvlib d0 VX0001"));
        let jobs = element(&p, "jobs");
        assert!(jobs.contains("nightly &lt;home&gt;") && jobs.contains("active"), "{jobs}");
        assert!(jobs.contains("2023-11-14 22:13 UTC"), "{jobs}");
        assert!(jobs.contains("5.0 kB read"), "{jobs}");
        let drives = element(&p, "drives");
        assert!(drives.contains("VX0001") && drives.contains("OFFLINE"), "{drives}");
        let carts = element(&p, "cartridges");
        assert!(
            carts.contains("VX0003") && carts.contains("slot 3") && carts.contains("value=\"97\""),
            "{carts}"
        );
        assert!(element(&p, "throughput").contains("100.0 kB/s read"));
        assert!(element(&p, "journal").contains("42 records"));
        assert!(element(&p, "latest").contains("session 3"));
        assert!(element(&p, "fingerprint").contains(">AB:CD"));
        assert!(element(&p, "endpoint").contains("2 connections open, 1 refused"));
        assert!(!p.contains("<script"), "no scripts");
        assert!(!p.contains("http://") && !p.contains("https://"), "no external resources");
    }

    #[test]
    fn an_empty_snapshot_says_so() {
        let p = page(&Snapshot::default());
        assert!(element(&p, "health").ends_with(">DEGRADED"));
        assert!(element(&p, "jobs").contains("no jobs"));
        assert!(element(&p, "drives").contains("no drives"));
        assert!(element(&p, "cartridges").contains("no cartridges"));
        assert_eq!(element(&p, "panel"), format!("<pre id=\"panel\">{0}\n{0}", " ".repeat(PANEL_WIDTH)));
        assert!(element(&p, "latest").contains("none yet"));
    }

    #[test]
    fn dates_and_sizes_read_right() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59 UTC");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1000), "1.0 kB");
        assert_eq!(bytes(1_300_000_000), "1.3 GB");
    }

    proptest! {
        /// Whatever the snapshot holds, no text from it opens or closes a tag or an attribute.
        #[test]
        fn every_value_is_escaped(text in "\\PC{0,20}") {
            let mut s = full_snapshot();
            let evil = format!("<b x=\"'{text}'\">&");
            s.board.clone_from(&evil);
            s.activity.clone_from(&evil);
            s.panel = [evil.clone(), evil.clone()];
            s.jobs[0].name.clone_from(&evil);
            s.jobs[0].last.clone_from(&evil);
            s.drives[0].loaded = Some(evil.clone());
            s.cartridges[0].barcode.clone_from(&evil);
            s.cartridges[0].pool = Some(evil.clone());
            s.devices = vec![evil.clone()];
            let p = page(&s);
            prop_assert!(!p.contains("<b "));
            prop_assert!(p.matches(&esc(&evil)).count() >= 10);
        }
    }
}

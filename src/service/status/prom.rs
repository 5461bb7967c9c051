//! The snapshot as Prometheus text exposition, format 0.0.4: each metric family once, its
//! `# HELP` and `# TYPE` first and its samples together after them; label values escaped
//! (backslash, double quote, newline). Families whose samples depend on the snapshot (active
//! jobs, drives, cartridges) keep their HELP and TYPE when they have no sample, so the set of
//! families a scraper sees does not change with what the appliance happens to hold.

use std::collections::BTreeMap;

use super::{JOB_STATES, Snapshot};

/// The kind of a metric family.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// Builds the exposition text; families are opened one at a time and never twice.
#[derive(Debug, Default)]
struct Exposition {
    out: String,
    families: Vec<&'static str>,
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines. Samples that follow belong to it.
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        // Names and help are constants of this module: a bad one is a bug caught by any test.
        assert!(valid_name(name), "bad metric name {name}");
        assert!(!help.contains(['\\', '\n']), "help of {name} needs escaping");
        assert!(!self.families.contains(&name), "metric family {name} twice");
        // Prometheus' naming rules (promtool lints them): a counter's name ends in `_total`.
        assert!(!matches!(kind, Kind::Counter) || name.ends_with("_total"), "counter {name} without _total");
        self.families.push(name);
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        self.out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// A sample of the current family.
    fn sample(&mut self, labels: &[(&'static str, &str)], value: u64) {
        let name = *self.families.last().expect("a sample follows its family");
        self.out.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            self.out.push_str(&format!("{{{}}}", pairs.join(",")));
        }
        self.out.push_str(&format!(" {value}\n"));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &'static str, kind: Kind, help: &'static str, value: u64) {
        self.family(name, kind, help);
        self.sample(&[], value);
    }
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    name.bytes().next().is_some_and(|b| ok(b) && !b.is_ascii_digit()) && name.bytes().all(ok)
}

/// A label value as the text format writes it between double quotes.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Prometheus text exposition of the snapshot.
pub fn metrics(s: &Snapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut e = Exposition::default();
    let latest = s.latest.as_ref();
    e.single("coffer_up", Gauge, "1 when the service is healthy", u64::from(s.healthy));
    // A gauge: it restarts from 0 with the service, and promtool wants counters named `_total`.
    e.single("coffer_uptime_seconds", Gauge, "seconds since the service started", s.uptime);
    e.single("coffer_sessions", Gauge, "sessions in the catalog", s.sessions);
    e.single("coffer_media", Gauge, "media in the catalog", s.media);
    let objects = latest.map_or(0, |l| l.objects);
    e.single("coffer_latest_session_objects", Gauge, "objects of the newest session", objects);
    e.single(
        "coffer_latest_session_bytes",
        Gauge,
        "bytes of the newest session",
        latest.map_or(0, |l| l.bytes),
    );
    jobs(&mut e, s);
    drives(&mut e, s);
    cartridges(&mut e, s);
    let t = &s.throughput;
    let help = "bytes per second read from the sources, recently";
    e.single("coffer_throughput_in_bytes_per_second", Gauge, help, t.in_bytes_per_s);
    let help = "bytes per second written to the targets, recently";
    e.single("coffer_throughput_stored_bytes_per_second", Gauge, help, t.stored_bytes_per_s);
    e.single("coffer_bytes_in_total", Counter, "bytes read from the sources", t.in_bytes_total);
    e.single("coffer_bytes_stored_total", Counter, "bytes written to the targets", t.stored_bytes_total);
    e.single("coffer_journal_records", Gauge, "records in the journal", s.journal.records);
    e.single("coffer_journal_bytes", Gauge, "bytes of the journal", s.journal.bytes);
    let endpoint = s.endpoint.as_ref();
    let help = "connections open to the status endpoint";
    e.single("coffer_http_connections", Gauge, help, endpoint.map_or(0, |x| x.connections));
    let help = "connections closed at once because too many were open";
    e.single("coffer_http_connections_refused_total", Counter, help, endpoint.map_or(0, |x| x.refused));
    e.out
}

/// Jobs by state (every known state, even at 0), and the bytes of each active job.
fn jobs(e: &mut Exposition, s: &Snapshot) {
    let mut by_state: BTreeMap<&str, u64> = JOB_STATES.iter().map(|&k| (k, 0)).collect();
    for j in &s.jobs {
        *by_state.entry(j.state.as_str()).or_default() += 1;
    }
    e.family("coffer_jobs", Kind::Gauge, "jobs by state");
    // The known states first, in their order; a state this module does not know still counts.
    for state in JOB_STATES {
        e.sample(&[("state", state)], by_state[state]);
    }
    for (state, n) in by_state.iter().filter(|(k, _)| !JOB_STATES.contains(k)) {
        e.sample(&[("state", state)], *n);
    }
    e.family("coffer_job_bytes_in", Kind::Gauge, "bytes read so far by each active job in its current run");
    for j in s.jobs.iter().filter(|j| j.state == "active") {
        if let Some(p) = &j.progress {
            e.sample(&[("job", &j.id.to_string())], p.bytes_in);
        }
    }
}

/// Per drive: online, loaded, repositions.
fn drives(e: &mut Exposition, s: &Snapshot) {
    let ids: Vec<(String, &str)> =
        s.drives.iter().map(|d| (d.drive.to_string(), d.library.as_str())).collect();
    let labels = |i: usize| [("library", ids[i].1), ("drive", ids[i].0.as_str())];
    e.family("coffer_drive_online", Kind::Gauge, "1 when the drive answers");
    for (i, d) in s.drives.iter().enumerate() {
        e.sample(&labels(i), u64::from(d.online));
    }
    e.family("coffer_drive_loaded", Kind::Gauge, "1 when a cartridge is in the drive");
    for (i, d) in s.drives.iter().enumerate() {
        e.sample(&labels(i), u64::from(d.loaded.is_some()));
    }
    e.family("coffer_drive_repositions_total", Kind::Counter, "tape repositions (back-hitches) of the drive");
    for (i, d) in s.drives.iter().enumerate() {
        e.sample(&labels(i), d.repositions);
    }
}

/// Cartridges counted by library and state.
fn cartridges(e: &mut Exposition, s: &Snapshot) {
    let mut n: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for c in &s.cartridges {
        *n.entry((c.library.as_str(), c.state.as_str())).or_default() += 1;
    }
    e.family("coffer_cartridges", Kind::Gauge, "cartridges by library and state");
    for ((library, state), count) in n {
        e.sample(&[("library", library), ("state", state)], count);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::tests::full_snapshot;
    use super::super::{CartridgeLine, DriveLine};
    use super::*;

    /// One sample line, parsed strictly: name, unescaped labels, value.
    fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, u64) {
        let name_end = line.find(['{', ' ']).expect("a name");
        let name = line[..name_end].to_owned();
        assert!(valid_name(&name), "{line}");
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let (k, r) = rest.split_once("=\"").expect("label=\"");
                assert!(valid_name(k) && !k.contains(':'), "{line}");
                let mut v = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    let (i, c) = chars.next().expect("a closing quote");
                    match c {
                        '"' => break i,
                        '\\' => match chars.next().expect("an escape").1 {
                            '\\' => v.push('\\'),
                            '"' => v.push('"'),
                            'n' => v.push('\n'),
                            x => panic!("bad escape \\{x} in {line}"),
                        },
                        '\n' => panic!("raw newline in {line}"),
                        c => v.push(c),
                    }
                };
                assert!(labels.insert(k.to_owned(), v).is_none(), "label {k} twice in {line}");
                rest = &r[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    rest = rest.strip_prefix('}').expect("} after the labels");
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("a space before the value").parse().expect("a value");
        (name, labels, value)
    }

    /// Every sample, after checking the layout: HELP then TYPE once per family, before its
    /// samples, which are contiguous.
    fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, u64)> {
        let mut families: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(h) = line.strip_prefix("# HELP ") {
                let name = h.split(' ').next().unwrap().to_owned();
                assert!(!families.contains(&name), "{name} twice");
                let t = lines.next().expect("TYPE after HELP");
                assert!(t == format!("# TYPE {name} gauge") || t == format!("# TYPE {name} counter"), "{t}");
                families.push(name);
            } else {
                let s = parse_sample(line);
                assert_eq!(Some(&s.0), families.last(), "sample outside its family: {line}");
                samples.push(s);
            }
        }
        assert!(text.ends_with('\n'));
        samples
    }

    fn value(
        samples: &[(String, BTreeMap<String, String>, u64)],
        name: &str,
        labels: &[(&str, &str)],
    ) -> u64 {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let hits: Vec<u64> = samples.iter().filter(|s| s.0 == name && s.1 == want).map(|s| s.2).collect();
        assert_eq!(hits.len(), 1, "{name}{labels:?}: {hits:?}");
        hits[0]
    }

    #[test]
    fn every_family_carries_the_snapshot() {
        let s = full_snapshot();
        let m = parse(&metrics(&s));
        assert_eq!(value(&m, "coffer_up", &[]), 1);
        assert_eq!(value(&m, "coffer_sessions", &[]), 3);
        assert_eq!(value(&m, "coffer_jobs", &[("state", "active")]), 1);
        assert_eq!(value(&m, "coffer_jobs", &[("state", "ready")]), 1);
        assert_eq!(value(&m, "coffer_jobs", &[("state", "failed")]), 0);
        assert_eq!(value(&m, "coffer_job_bytes_in", &[("job", "7")]), 5000);
        assert!(!m.iter().any(|s| s.0 == "coffer_job_bytes_in" && s.1["job"] == "8"), "only active jobs");
        assert_eq!(value(&m, "coffer_drive_online", &[("library", "vlib"), ("drive", "0")]), 1);
        assert_eq!(value(&m, "coffer_drive_loaded", &[("library", "vlib"), ("drive", "0")]), 1);
        assert_eq!(value(&m, "coffer_drive_loaded", &[("library", "vlib"), ("drive", "1")]), 0);
        assert_eq!(value(&m, "coffer_drive_repositions_total", &[("library", "vlib"), ("drive", "0")]), 12);
        assert_eq!(value(&m, "coffer_cartridges", &[("library", "vlib"), ("state", "writable")]), 2);
        assert_eq!(value(&m, "coffer_cartridges", &[("library", "vlib"), ("state", "full")]), 1);
        assert_eq!(value(&m, "coffer_throughput_in_bytes_per_second", &[]), 100_000);
        assert_eq!(value(&m, "coffer_throughput_stored_bytes_per_second", &[]), 60_000);
        assert_eq!(value(&m, "coffer_bytes_in_total", &[]), 9_000_000);
        assert_eq!(value(&m, "coffer_bytes_stored_total", &[]), 5_000_000);
        assert_eq!(value(&m, "coffer_journal_records", &[]), 42);
        assert_eq!(value(&m, "coffer_journal_bytes", &[]), 8192);
    }

    #[test]
    fn an_empty_snapshot_still_lists_every_family_and_job_state() {
        let text = metrics(&Snapshot::default());
        let m = parse(&text);
        for state in JOB_STATES {
            assert_eq!(value(&m, "coffer_jobs", &[("state", state)]), 0);
        }
        for f in ["coffer_job_bytes_in", "coffer_drive_online", "coffer_cartridges", "coffer_journal_bytes"] {
            assert!(text.contains(&format!("# TYPE {f} ")), "{f}");
        }
        assert_eq!(value(&m, "coffer_up", &[]), 0);
    }

    #[test]
    fn an_unknown_job_state_is_counted_not_dropped() {
        let mut s = full_snapshot();
        s.jobs[0].state = "paused".into();
        let m = parse(&metrics(&s));
        assert_eq!(value(&m, "coffer_jobs", &[("state", "paused")]), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain"), "plain");
    }

    proptest! {
        #[test]
        fn any_names_survive_the_text_format(library in "\\PC{0,12}|[\\\\\"\n,=}{ ]{0,6}", state in "\\PC{0,8}", drive in any::<u32>()) {
            let s = Snapshot {
                drives: vec![DriveLine { library: library.clone(), drive, online: true, ..DriveLine::default() }],
                cartridges: vec![CartridgeLine { library: library.clone(), state: state.clone(), ..CartridgeLine::default() }],
                ..Snapshot::default()
            };
            let m = parse(&metrics(&s));
            let d = drive.to_string();
            prop_assert_eq!(value(&m, "coffer_drive_online", &[("library", &library), ("drive", &d)]), 1);
            prop_assert_eq!(value(&m, "coffer_cartridges", &[("library", &library), ("state", &state)]), 1);
        }
    }
}

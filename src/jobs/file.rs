//! The job file: what a saved job backs up, where to, how, and when. TOML, every key checked:
//!
//! ```toml
//! name = "docs"                       # required: 1–64 of [A-Za-z0-9._-]
//! sources = ["/usr/share/doc"]        # required: absolute paths (trees or block devices), or
//!                                     # agent:NAME:/path (a tree on a backup agent)
//! to = ["library:vlib"]               # default: the board's default target
//! backup = "full"                     # or "incremental"
//! verify = true                       # read the session back after it (default false)
//! compression = true                  # default true; "agent": agents' trees are compressed
//!                                     # on the agents (the network is the bottleneck)
//! one_file_system = false
//! log = "notes"                       # none | errors | warnings | notes | debug
//! pre = ["/usr/local/bin/quiesce"]    # run once before the job (argv, no shell)
//! post = ["/usr/local/bin/thaw"]      # run once after it, however it ended
//! [schedule]                          # default: run once, now
//! start = "2026-11-22 22:00"          # UTC; or "now"
//! every = "1d"                        # 30m, 6h, 1d, 1mo; absent: once
//! except = ["sat", "sun"]
//! ```
//!
//! Parsing is pure; the time `now` is a parameter.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schedule::{Every, Schedule, parse_weekday, parse_when};
use crate::catalog::LogLevel;
use crate::device::TargetSpec;

/// Longest job name.
pub const MAX_NAME: usize = 64;
/// Most sources, targets, or pre/post arguments in one job.
pub const MAX_LIST: usize = 64;

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Everything.
    #[default]
    Full,
    /// Only files new or changed since the last backup of the same sources.
    Incremental,
}

/// How much of the job's activity goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogSetting {
    /// Nothing.
    None,
    /// Errors.
    Errors,
    /// Warnings and errors.
    Warnings,
    /// Notes, warnings and errors.
    #[default]
    Notes,
    /// Everything, with detail for diagnosis.
    Debug,
}

impl LogSetting {
    /// Whether an entry of `level` is kept.
    pub fn keeps(self, level: LogLevel) -> bool {
        let most = match self {
            LogSetting::None => return false,
            LogSetting::Errors => LogLevel::Error,
            LogSetting::Warnings => LogLevel::Warning,
            LogSetting::Notes => LogLevel::Note,
            LogSetting::Debug => LogLevel::Debug,
        };
        level <= most
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    sources: Vec<PathBuf>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    backup: BackupKind,
    #[serde(default)]
    verify: bool,
    #[serde(default)]
    compression: Compression,
    #[serde(default)]
    one_file_system: bool,
    #[serde(default)]
    log: LogSetting,
    #[serde(default)]
    pre: Vec<String>,
    #[serde(default)]
    post: Vec<String>,
    schedule: Option<RawSchedule>,
}

/// `compression`: on or off, or "agent".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Compression {
    On(bool),
    Where(String),
    /// Anything else, refused by name rather than by serde's "did not match any variant".
    Other(toml::Value),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::On(true)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default = "now")]
    start: String,
    every: Option<String>,
    #[serde(default)]
    except: Vec<String>,
}

fn now() -> String {
    "now".into()
}

/// A checked job definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Its name.
    pub name: String,
    /// What to back up.
    pub sources: Vec<PathBuf>,
    /// Where to (empty: the board's default target).
    pub to: Vec<TargetSpec>,
    /// Full or incremental.
    pub backup: BackupKind,
    /// Verify the session after writing it.
    pub verify: bool,
    /// Compress (LZ4).
    pub compression: bool,
    /// Compress agents' trees on the agents rather than on the box.
    pub compress_on_agent: bool,
    /// Stay on each source's file system.
    pub one_file_system: bool,
    /// What the log keeps.
    pub log: LogSetting,
    /// Command run before (argv).
    pub pre: Vec<String>,
    /// Command run after (argv).
    pub post: Vec<String>,
    /// When.
    pub schedule: Schedule,
}

/// Parses and checks a job file's text, with `now` for `start = "now"` and relative times.
pub fn parse(text: &str, now: u64) -> Result<JobSpec, String> {
    if text.len() > crate::catalog::MAX_DEFINITION_LEN {
        return Err(format!("the job file is over {} KiB", crate::catalog::MAX_DEFINITION_LEN >> 10));
    }
    let raw: RawJob = toml::from_str(text).map_err(|e| format!("job file: {}", e.to_string().trim_end()))?;
    let name_ok = |n: &str| {
        (1..=MAX_NAME).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !name_ok(&raw.name) {
        return Err(format!(
            "job name '{}' must be 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -",
            raw.name.escape_debug()
        ));
    }
    if raw.sources.is_empty() {
        return Err("job file: `sources` lists nothing to back up".into());
    }
    for (key, n) in [
        ("sources", raw.sources.len()),
        ("to", raw.to.len()),
        ("pre", raw.pre.len()),
        ("post", raw.post.len()),
    ] {
        if n > MAX_LIST {
            return Err(format!("job file: `{key}` has {n} entries, at most {MAX_LIST}"));
        }
    }
    for s in &raw.sources {
        if crate::pipeline::sources::agent_source(s).map_err(|e| format!("job file: source {e}"))?.is_some() {
            continue;
        }
        if !s.is_absolute() {
            return Err(format!("job file: source '{}' must be an absolute path", s.display()));
        }
    }
    let to = raw
        .to
        .iter()
        .map(|t| t.parse::<TargetSpec>().map_err(|e| format!("job file: target '{t}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    for (key, argv) in [("pre", &raw.pre), ("post", &raw.post)] {
        if argv.first().is_some_and(|p| !p.starts_with('/')) {
            return Err(format!("job file: `{key}` must start with an absolute program path"));
        }
    }
    let schedule = match raw.schedule {
        None => Schedule { start: now, every: None, except: Vec::new() },
        Some(s) => {
            let start = parse_when(&s.start, now).map_err(|e| format!("job file: schedule.start: {e}"))?;
            let every = s
                .every
                .as_deref()
                .map(Every::parse)
                .transpose()
                .map_err(|e| format!("job file: schedule.every: {e}"))?;
            let except = s
                .except
                .iter()
                .map(|d| parse_weekday(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("job file: schedule.except: {e}"))?;
            let sched = Schedule { start, every, except };
            if sched.next_from(start).is_none() {
                return Err("job file: the schedule never runs (every weekday excluded?)".into());
            }
            sched
        }
    };
    let (compression, compress_on_agent) = match raw.compression {
        Compression::On(on) => (on, false),
        Compression::Where(w) if w == "agent" => (true, true),
        Compression::Where(w) => {
            return Err(format!("job file: compression: {w:?}: true, false or \"agent\""));
        }
        Compression::Other(v) => {
            return Err(format!("job file: compression: {v}: true, false or \"agent\""));
        }
    };
    Ok(JobSpec {
        name: raw.name,
        sources: raw.sources,
        to,
        backup: raw.backup,
        verify: raw.verify,
        compression,
        compress_on_agent,
        one_file_system: raw.one_file_system,
        log: raw.log,
        pre: raw.pre,
        post: raw.post,
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::jobs::calendar;

    const NOW: u64 = 1_795_339_800;

    #[test]
    fn compression_is_on_off_or_on_the_agents() {
        let job = |c: &str| parse(&format!("name = \"a\"\nsources = [\"/srv\"]\n{c}"), NOW);
        let j = job("compression = \"agent\"").unwrap();
        assert!(j.compression && j.compress_on_agent);
        let j = job("compression = false").unwrap();
        assert!(!j.compression && !j.compress_on_agent);
        let j = job("").unwrap();
        assert!(j.compression && !j.compress_on_agent);
        let e = job("compression = \"box\"").unwrap_err();
        assert!(e.contains("true, false or \"agent\""), "{e}");
        let e = job("compression = 5").unwrap_err();
        assert!(e.contains("compression: 5: true, false or \"agent\""), "{e}");
    }

    #[test]
    fn a_full_job_file_parses() {
        let j = parse(
            r#"
name = "docs"
sources = ["/usr/share/doc"]
to = ["library:vlib"]
backup = "incremental"
verify = true
log = "warnings"
pre = ["/bin/true"]
[schedule]
start = "2026-11-22 22:00"
every = "1d"
except = ["sat", "sun"]
"#,
            NOW,
        )
        .unwrap();
        assert_eq!(j.name, "docs");
        assert_eq!(j.backup, BackupKind::Incremental);
        assert!(j.verify && j.compression);
        assert_eq!(j.schedule.every, Some(Every::Days(1)));
        assert_eq!(j.schedule.except, vec![5, 6]);
        assert_eq!(j.schedule.start, calendar::parse("2026-11-22 22:00").unwrap());
        assert!(j.log.keeps(LogLevel::Warning) && !j.log.keeps(LogLevel::Note));
    }

    #[test]
    fn a_minimal_job_runs_once_now() {
        let j = parse("name = \"a\"\nsources = [\"/srv\"]\n", NOW).unwrap();
        assert_eq!(j.schedule, Schedule { start: NOW, every: None, except: vec![] });
        assert!(j.to.is_empty() && j.compression && !j.verify);
    }

    #[test]
    fn bad_job_files_name_the_key() {
        let cases = [
            ("name = \"a\"\nsources = []\n", "nothing to back up"),
            ("name = \"a b\"\nsources = [\"/x\"]\n", "job name"),
            ("name = \"a\"\nsources = [\"rel\"]\n", "absolute path"),
            ("name = \"a\"\nsources = [\"/x\"]\nto = [\"ftp:x\"]\n", "target 'ftp:x'"),
            ("name = \"a\"\nsources = [\"/x\"]\nbackup = \"partial\"\n", "backup"),
            ("name = \"a\"\nsources = [\"/x\"]\ncolour = 1\n", "colour"),
            ("name = \"a\"\nsources = [\"/x\"]\n[schedule]\nevery = \"0d\"\n", "schedule.every"),
            ("name = \"a\"\nsources = [\"/x\"]\n[schedule]\nstart = \"soon\"\n", "schedule.start"),
            (
                "name = \"a\"\nsources = [\"/x\"]\n[schedule]\nevery = \"1d\"\nexcept = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]\n",
                "never runs",
            ),
            ("name = \"a\"\nsources = [\"/x\"]\npre = [\"quiesce\"]\n", "absolute program path"),
            ("sources = [\"/x\"]\n", "name"),
        ];
        for (text, want) in cases {
            let e = parse(text, NOW).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn no_text_panics_the_parser(text in "\\PC{0,400}") {
            let _ = parse(&text, NOW);
        }

        #[test]
        fn near_valid_files_parse_or_say_why(
            name in "[a-z ]{0,8}", src in "/?[a-z]{0,6}", every in "[0-9]{0,4}[a-z]{0,3}", day in "[a-z]{0,4}"
        ) {
            let text = format!("name = \"{name}\"\nsources = [\"{src}\"]\n[schedule]\nevery = \"{every}\"\nexcept = [\"{day}\"]\n");
            match parse(&text, NOW) {
                Ok(j) => prop_assert!(j.schedule.next_from(NOW).is_some()),
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}

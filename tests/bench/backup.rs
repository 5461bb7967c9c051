//! Backup benchmark: coffer against the peer (`tar | lz4 -1`) on the three corpora, in the same
//! run, rounds interleaved (peer backup, coffer backup, peer restore, coffer restore), caches
//! dropped before every timed run, best of N. Checks that the tree coffer restores is identical
//! to the corpus (content, mode, owner, mtime to the nanosecond, symlink targets, hard links).
//!
//! Run: `cargo bench --bench backup`. Prints a table and writes the same results as JSON to
//! `$COFFER_BENCH_DIR/../coffer-bench.json`. Asserts nothing about time: it exits non-zero only
//! when a run fails or a restored tree differs.
//!
//! Environment:
//! - `COFFER_CORPUS` (default /var/tmp/corpus): where the corpora are (c1/, c2/, c3/ with the
//!   markers c1.done …); missing ones are built with `tests/bench/make-corpora.sh` unless
//!   `COFFER_BENCH_NO_BUILD=1`, in which case they are skipped.
//! - `COFFER_BENCH_CORPORA` (default `c1,c2,c3`), `COFFER_BENCH_RUNS` (default 3).
//! - `COFFER_BENCH_DIR` (default /var/tmp/coffer-bench): work directories, removed at the start
//!   of each round and at the end.
//! - `COFFER_BENCH_UNIT`: passed to `coffer backup --unit`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{Value, json};

const CORPORA: [(&str, &str); 3] = [("c1", "source tree"), ("c2", "large files"), ("c3", "many small files")];

/// Differences listed per tree before the rest are only counted.
const SHOWN_DIFFERENCES: usize = 10;

#[path = "support.rs"]
mod support;

use support::*;

#[derive(Debug)]
struct Config {
    corpus_root: PathBuf,
    corpora: Vec<String>,
    runs: usize,
    dir: PathBuf,
    no_build: bool,
    unit: Option<String>,
    drop_caches: bool,
    coffer: PathBuf,
}

impl Run {
    fn ok(&self) -> bool {
        self.status.success()
    }

    fn why(&self) -> String {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown status".into(),
        };
        let tail: Vec<&str> = self.stderr.lines().chain(self.stdout.lines()).rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{status}: {}", tail.join(" | ").chars().take(400).collect::<String>())
    }
}

/// The measurements of one tool on one corpus, one entry per round.
#[derive(Debug, Default)]
struct Side {
    backup: Vec<f64>,
    backup_sync: Vec<f64>,
    restore: Vec<f64>,
    restore_sync: Vec<f64>,
    size: Vec<u64>,
    rss_backup_kib: u64,
    rss_restore_kib: u64,
}

impl Side {
    fn json(&self) -> Value {
        json!({
            "backup_s": self.backup, "backup_plus_sync_s": self.backup_sync,
            "restore_s": self.restore, "restore_plus_sync_s": self.restore_sync,
            "best_backup_s": best(&self.backup), "best_restore_s": best(&self.restore),
            "best_backup_plus_sync_s": best(&self.backup_sync),
            "best_restore_plus_sync_s": best(&self.restore_sync),
            "output_bytes": self.size.last(), "output_bytes_per_round": self.size,
            "peak_rss_backup_kib": self.rss_backup_kib, "peak_rss_restore_kib": self.rss_restore_kib,
        })
    }
}

#[derive(Debug)]
struct TreeCheck {
    identical: bool,
    details: Vec<String>,
}

#[derive(Debug)]
struct CorpusResult {
    name: String,
    what: String,
    marker: String,
    commands: Vec<String>,
    peer: Side,
    coffer: Side,
    failures: Vec<String>,
    tree: Option<TreeCheck>,
    coffer_backup_json: Value,
    coffer_restore_json: Value,
}

fn best(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::min)
}

fn cvol_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += cvol_bytes(&e.path());
        } else if e.path().extension().is_some_and(|x| x == "cvol") {
            total += m.len();
        }
    }
    total
}

/// One record of a sorted tree listing (`%P//%i//%m %U %G %T@ %y %n %l`, NUL-terminated).
#[derive(Debug)]
struct Entry {
    path: Vec<u8>,
    inode: String,
    /// `%m %U %G %T@ %y %n %l`: mode, uid, gid, mtime, type, links, symlink target.
    meta: String,
}

impl Entry {
    fn parse(raw: &[u8]) -> Entry {
        let split = |s: &[u8]| match s.windows(2).position(|w| w == b"//") {
            Some(i) => (s[..i].to_vec(), s[i + 2..].to_vec()),
            None => (s.to_vec(), Vec::new()),
        };
        let (path, rest) = split(raw);
        let (inode, meta) = split(&rest);
        Entry {
            path,
            inode: String::from_utf8_lossy(&inode).into_owned(),
            meta: String::from_utf8_lossy(&meta).into_owned(),
        }
    }

    fn name(&self) -> String {
        if self.path.is_empty() { ".".into() } else { String::from_utf8_lossy(&self.path).into_owned() }
    }

    /// Whether it is a non-directory with several links.
    fn linked(&self) -> bool {
        let f: Vec<&str> = self.meta.splitn(7, ' ').collect();
        f.len() > 5 && f[4] != "d" && f[5].parse::<u64>().is_ok_and(|n| n > 1)
    }
}

/// The order `LC_ALL=C sort -z` gives the records: paths never contain `//`, so comparing
/// `path//` decides before the rest of the record matters.
fn path_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.path.iter().chain(b"//").cmp(b.path.iter().chain(b"//"))
}

/// Writes the sorted listing of `dir` to `out`.
fn listing(dir: &Path, out: &Path) -> Res<()> {
    let cmd =
        format!("find {} -printf '%P//%i//%m %U %G %T@ %y %n %l\\0' | LC_ALL=C sort -z > {}", q(dir), q(out));
    let st = shell(&cmd).status().map_err(|e| format!("{cmd}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{cmd}: {st}")) }
}

fn entries(path: &Path) -> Res<impl Iterator<Item = Entry>> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufReader::new(f).split(0).map_while(Result::ok).map(|r| Entry::parse(&r)))
}

/// Compares the restored tree with the corpus: content with `diff -r --no-dereference`, metadata
/// with sorted `find -printf` listings, merged as they stream (the bench process stays small:
/// Linux charges its peak RSS to every child it spawns).
fn check_tree(src: &Path, restored: &Path, logs: &Path) -> Res<TreeCheck> {
    let mut details = Vec::new();
    let diff_out = logs.join("check-diff.out");
    let status = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(src)
        .arg(restored)
        .stdout(File::create(&diff_out).map_err(|e| format!("{}: {e}", diff_out.display()))?)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("diff: {e}"))?;
    if !status.status.success() {
        let (mut n, mut first) = (0usize, Vec::new());
        let f = File::open(&diff_out).map_err(|e| format!("{}: {e}", diff_out.display()))?;
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            n += 1;
            if first.len() < SHOWN_DIFFERENCES {
                first.push(format!("  {}", String::from_utf8_lossy(&line)));
            }
        }
        let stderr = String::from_utf8_lossy(&status.stderr);
        first.extend(stderr.lines().take(SHOWN_DIFFERENCES).map(|l| format!("  {l}")));
        let failed = if status.status.code() == Some(1) { "" } else { " (diff failed)" };
        details.push(format!("content: diff -r reports {n} lines of differences{failed}"));
        details.extend(first);
    }

    let (la, lb) = (logs.join("check-corpus.list"), logs.join("check-restored.list"));
    listing(src, &la)?;
    listing(restored, &lb)?;
    let (mut ia, mut ib) = (entries(&la)?, entries(&lb)?);
    let (mut a, mut b) = (ia.next(), ib.next());
    let (mut meta, mut count, mut total) = (Vec::new(), 0usize, 0usize);
    let mut note = |s: String, count: &mut usize| {
        *count += 1;
        if meta.len() < SHOWN_DIFFERENCES {
            meta.push(format!("  {s}"));
        }
    };
    // Hard links: for each linked path, the first path of its group (by inode), per side.
    let (mut first_a, mut first_b) = (BTreeMap::new(), BTreeMap::new());
    let (mut group_a, mut group_b) = (BTreeMap::new(), BTreeMap::new());
    loop {
        let order = match (&a, &b) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => path_order(x, y),
        };
        if order.is_le()
            && let Some(x) = &a
        {
            total += 1;
            if x.linked() {
                let f = first_a.entry(x.inode.clone()).or_insert_with(|| x.name()).clone();
                group_a.insert(x.name(), f);
            }
        }
        if order.is_ge()
            && let Some(y) = &b
            && y.linked()
        {
            let f = first_b.entry(y.inode.clone()).or_insert_with(|| y.name()).clone();
            group_b.insert(y.name(), f);
        }
        match (order, &a, &b) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                note(format!("missing from the restore: {} [{}]", x.name(), x.meta), &mut count);
                a = ia.next();
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                note(format!("only in the restore: {} [{}]", y.name(), y.meta), &mut count);
                b = ib.next();
            }
            (_, Some(x), Some(y)) => {
                if x.meta != y.meta {
                    note(format!("{}: corpus [{}] restored [{}]", x.name(), x.meta, y.meta), &mut count);
                }
                a = ia.next();
                b = ib.next();
            }
            _ => unreachable!("ordering follows presence"),
        }
    }
    for (path, f) in &group_a {
        if group_b.get(path) != Some(f) {
            note(
                format!(
                    "hard link {path}: linked with {f} in the corpus, with {:?} in the restore",
                    group_b.get(path)
                ),
                &mut count,
            );
        }
    }
    for (path, f) in &group_b {
        if !group_a.contains_key(path) {
            note(format!("hard link {path}: linked with {f} in the restore only"), &mut count);
        }
    }
    if count > 0 {
        details.push(format!(
            "metadata: {count} differences (of {total} entries in the corpus) in [mode uid gid mtime type links symlink-target]"
        ));
        details.extend(meta);
    }
    Ok(TreeCheck { identical: details.is_empty(), details })
}

/// Size of the file system each restore gets (a sparse image file).
const RESTORE_FS_SIZE: &str = "8G";

/// Mounts a file system made just now at `dir`, in the image file `img`; `false` (and a plain
/// directory) where that cannot be done. Each restore gets its own because deleting an earlier
/// restore's 200,000 files leaves ext4's inode allocator scanning "recently deleted" inodes,
/// which slowed whichever restore ran next by up to three times, peer or coffer alike.
fn fresh_fs(dir: &Path, img: &Path) -> Res<bool> {
    unmount(dir);
    let _ = std::fs::remove_file(img);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let made = Command::new("truncate")
        .args(["-s", RESTORE_FS_SIZE])
        .arg(img)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img).status().is_ok_and(|s| s.success())
        && Command::new("mount").args(["-o", "loop"]).arg(img).arg(dir).status().is_ok_and(|s| s.success());
    if !made {
        println!("  (no fresh file system for {}: restoring into a plain directory)", dir.display());
    }
    Ok(made)
}

/// Unmounts `dir` if something is mounted there.
fn unmount(dir: &Path) {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(&*dir.to_string_lossy())));
    if mounted {
        let _ = Command::new("umount").arg(dir).status();
    }
}

/// Removes and recreates the work directory.
fn fresh(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn parse_json(s: &str) -> Value {
    s.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null)
}

fn bench_corpus(cfg: &Config, name: &str, what: &str) -> Res<CorpusResult> {
    let src = cfg.corpus_root.join(name);
    let w = cfg.dir.join("work");
    let (out, state, target) = (w.join("peer.tar.lz4"), w.join("state"), w.join("target"));
    // Restores go into a tree below a mount point, clear of the new file system's lost+found.
    let (peer_mnt, coffer_mnt, logs) = (w.join("peer-restore"), w.join("coffer-restore"), w.join("logs"));
    let (peer_dir, coffer_dir) = (peer_mnt.join("tree"), coffer_mnt.join("tree"));
    let peer_backup = format!("tar -cf - -C {} {name} | lz4 -1 -q > {}", q(&cfg.corpus_root), q(&out));
    let peer_restore = format!("lz4 -dc {} | tar -x -C {}", q(&out), q(&peer_dir));
    let mut backup_args: Vec<String> =
        vec!["--state".into(), state.display().to_string(), "--json".into(), "backup".into()];
    backup_args.push(src.display().to_string());
    backup_args.push("--to".into());
    backup_args.push(format!("disk:{}", target.display()));
    if let Some(u) = &cfg.unit {
        backup_args.push("--unit".into());
        backup_args.push(u.clone());
    }
    let restore_args: Vec<String> = vec![
        "--state".into(),
        state.display().to_string(),
        "--json".into(),
        "restore".into(),
        "latest".into(),
        "--to".into(),
        coffer_dir.display().to_string(),
    ];
    let show = |args: &[String]| {
        let mut s = q(&cfg.coffer);
        for a in args {
            s.push(' ');
            s.push_str(&q(Path::new(a)));
        }
        s
    };
    let commands = vec![
        format!("peer backup:    {peer_backup}"),
        format!("coffer backup:  {}", show(&backup_args)),
        format!(
            "restore targets: a new ext4 file system (loop-mounted {RESTORE_FS_SIZE} image) for every restore, peer and coffer"
        ),
        format!("peer restore:   mkdir {} && {peer_restore}", q(&peer_dir)),
        format!("coffer restore: {}", show(&restore_args)),
        format!(
            "check:          diff -r --no-dereference {0} {1}; for each: find DIR -printf '%P//%i//%m %U %G %T@ %y %n %l\\0' | LC_ALL=C sort -z, merged by path (inodes only group hard links)",
            q(&src),
            q(&coffer_dir)
        ),
    ];
    let mut r = CorpusResult {
        name: name.into(),
        what: what.into(),
        marker: std::fs::read_to_string(cfg.corpus_root.join(format!("{name}.done")))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        commands,
        peer: Side::default(),
        coffer: Side::default(),
        failures: Vec::new(),
        tree: None,
        coffer_backup_json: Value::Null,
        coffer_restore_json: Value::Null,
    };
    println!("{name} ({what}: {})", r.marker);
    let mut coffer_restored = false;
    let (peer_img, coffer_img) = (cfg.dir.join("peer-restore.img"), cfg.dir.join("coffer-restore.img"));
    for round in 1..=cfg.runs {
        unmount(&peer_mnt);
        unmount(&coffer_mnt);
        fresh(&w)?;
        let tag = format!("{name} round {round}/{}", cfg.runs);

        let run = timed(cfg.drop_caches, &mut shell(&peer_backup), &logs, "peer-backup")?;
        let peer_ok = run.ok();
        if peer_ok {
            r.peer.backup.push(run.secs);
            r.peer.backup_sync.push(run.secs + run.sync_secs);
            r.peer.rss_backup_kib = r.peer.rss_backup_kib.max(run.rss_kib);
            r.peer.size.push(std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0));
            println!("  {tag}: peer backup    {:8.2} s (+sync {:.2} s)", run.secs, run.sync_secs);
        } else {
            r.failures.push(format!("{tag}: peer backup FAILED: {}", run.why()));
            println!("  {tag}: peer backup FAILED: {}", run.why());
        }

        let run =
            timed(cfg.drop_caches, Command::new(&cfg.coffer).args(&backup_args), &logs, "coffer-backup")?;
        let coffer_ok = run.ok();
        r.coffer_backup_json = parse_json(&run.stdout);
        if coffer_ok {
            r.coffer.backup.push(run.secs);
            r.coffer.backup_sync.push(run.secs + run.sync_secs);
            r.coffer.rss_backup_kib = r.coffer.rss_backup_kib.max(run.rss_kib);
            r.coffer.size.push(cvol_bytes(&target));
            let problems = r.coffer_backup_json["problems"].as_array().map_or(0, Vec::len);
            println!(
                "  {tag}: coffer backup  {:8.2} s (+sync {:.2} s), peak RSS {:.0} MiB{}",
                run.secs,
                run.sync_secs,
                run.rss_kib as f64 / 1024.0,
                if problems > 0 { format!(", {problems} PROBLEMS reported") } else { String::new() }
            );
        } else {
            r.failures.push(format!("{tag}: coffer backup FAILED: {}", run.why()));
            println!("  {tag}: coffer backup FAILED: {}", run.why());
        }

        if peer_ok {
            fresh_fs(&peer_mnt, &peer_img)?;
            std::fs::create_dir_all(&peer_dir).map_err(|e| format!("{}: {e}", peer_dir.display()))?;
            let run = timed(cfg.drop_caches, &mut shell(&peer_restore), &logs, "peer-restore")?;
            if run.ok() {
                r.peer.restore.push(run.secs);
                r.peer.restore_sync.push(run.secs + run.sync_secs);
                r.peer.rss_restore_kib = r.peer.rss_restore_kib.max(run.rss_kib);
                println!("  {tag}: peer restore   {:8.2} s (+sync {:.2} s)", run.secs, run.sync_secs);
            } else {
                r.failures.push(format!("{tag}: peer restore FAILED: {}", run.why()));
                println!("  {tag}: peer restore FAILED: {}", run.why());
            }
        }

        coffer_restored = false;
        if coffer_ok {
            fresh_fs(&coffer_mnt, &coffer_img)?;
            let run = timed(
                cfg.drop_caches,
                Command::new(&cfg.coffer).args(&restore_args),
                &logs,
                "coffer-restore",
            )?;
            r.coffer_restore_json = parse_json(&run.stdout);
            if run.ok() {
                coffer_restored = true;
                r.coffer.restore.push(run.secs);
                r.coffer.restore_sync.push(run.secs + run.sync_secs);
                r.coffer.rss_restore_kib = r.coffer.rss_restore_kib.max(run.rss_kib);
                println!(
                    "  {tag}: coffer restore {:8.2} s (+sync {:.2} s), peak RSS {:.0} MiB",
                    run.secs,
                    run.sync_secs,
                    run.rss_kib as f64 / 1024.0
                );
            } else {
                r.failures.push(format!("{tag}: coffer restore FAILED: {}", run.why()));
                println!("  {tag}: coffer restore FAILED: {}", run.why());
            }
        }
    }
    if coffer_restored {
        println!("  {name}: checking the restored tree against the corpus");
        let check = check_tree(&src, &coffer_dir, &logs)?;
        if check.identical {
            println!("  {name}: restored tree identical");
        } else {
            println!("  {name}: restored tree DIFFERS:");
            for d in &check.details {
                println!("    {d}");
            }
        }
        r.tree = Some(check);
    }
    unmount(&peer_mnt);
    unmount(&coffer_mnt);
    let _ = std::fs::remove_file(&peer_img);
    let _ = std::fs::remove_file(&coffer_img);
    if let Err(e) = std::fs::remove_dir_all(&w) {
        println!("  cannot remove {}: {e}", w.display());
    }
    Ok(r)
}

/// Prints rows aligned: the first column (and the last if `text_last`) to the left, the others
/// to the right.
fn table(header: &[&str], rows: &[Vec<String>], text_last: bool) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: Vec<&str>| {
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if i == 0 || (text_last && i == n - 1) {
                s.push_str(c);
                if i < n - 1 {
                    s.push_str(&" ".repeat(pad));
                }
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.push('\n');
    };
    line(&mut s, header.to_vec());
    line(
        &mut s,
        width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(),
    );
    for row in rows {
        line(&mut s, row.iter().map(String::as_str).collect());
    }
    s
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn mib(kib: u64) -> String {
    if kib == 0 { "-".into() } else { format!("{:.0}", kib as f64 / 1024.0) }
}

fn report(results: &[CorpusResult]) -> String {
    let mut rows = Vec::new();
    for r in results {
        let (p, c) = (&r.peer, &r.coffer);
        let (ps, cs) = (p.size.last().copied(), c.size.last().copied());
        let tree = match &r.tree {
            Some(t) if t.identical => "identical".to_string(),
            Some(_) => "DIFFERS".to_string(),
            None => "not checked (run failed)".to_string(),
        };
        rows.push(vec![
            r.name.clone(),
            secs(best(&p.backup)),
            secs(best(&c.backup)),
            ratio(best(&p.backup), best(&c.backup)),
            secs(best(&p.restore)),
            secs(best(&c.restore)),
            ratio(best(&p.restore), best(&c.restore)),
            ps.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1e6)),
            cs.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1e6)),
            match (ps, cs) {
                (Some(p), Some(c)) if p > 0 => format!("{:.1}%", c as f64 * 100.0 / p as f64),
                _ => "-".into(),
            },
            mib(c.rss_backup_kib),
            mib(c.rss_restore_kib),
            if r.failures.is_empty() { tree } else { format!("{tree}; {} FAILED runs", r.failures.len()) },
        ]);
    }
    let mut s = table(
        &[
            "corpus",
            "backup peer s",
            "coffer s",
            "peer/coffer",
            "restore peer s",
            "coffer s",
            "peer/coffer",
            "peer MB",
            "coffer MB",
            "coffer/peer",
            "RSS backup MiB",
            "RSS restore MiB",
            "restored tree",
        ],
        &rows,
        true,
    );
    s.push('\n');
    s.push_str("Including the sync after each run (writes made durable), best times; peak RSS of the peer pipeline:\n");
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let (p, c) = (&r.peer, &r.coffer);
            vec![
                r.name.clone(),
                secs(best(&p.backup_sync)),
                secs(best(&c.backup_sync)),
                ratio(best(&p.backup_sync), best(&c.backup_sync)),
                secs(best(&p.restore_sync)),
                secs(best(&c.restore_sync)),
                ratio(best(&p.restore_sync), best(&c.restore_sync)),
                mib(p.rss_backup_kib),
                mib(p.rss_restore_kib),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "corpus",
            "backup+sync peer s",
            "coffer s",
            "peer/coffer",
            "restore+sync peer s",
            "coffer s",
            "peer/coffer",
            "peer RSS backup MiB",
            "peer RSS restore MiB",
        ],
        &rows,
        false,
    ));
    s
}

/// The unit size `coffer backup` uses by default, from its help.
fn default_unit(coffer: &Path) -> String {
    let help = capture(&coffer.display().to_string(), &["backup", "--help"]);
    help.split_once("--unit")
        .and_then(|(_, rest)| rest.split_once("[default: "))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("coffer's default".into(), |(u, _)| format!("{u} (coffer's default)"))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backup bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Res<ExitCode> {
    let dir = PathBuf::from(env_or("COFFER_BENCH_DIR", "/var/tmp/coffer-bench"));
    let corpora: Vec<String> = env_or("COFFER_BENCH_CORPORA", "c1,c2,c3")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for c in &corpora {
        if !CORPORA.iter().any(|(n, _)| n == c) {
            return Err(format!("COFFER_BENCH_CORPORA: unknown corpus {c} (c1, c2, c3)"));
        }
    }
    let runs: usize = env_or("COFFER_BENCH_RUNS", "3")
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or("COFFER_BENCH_RUNS must be a positive number")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    // A private copy of the binary, so that a rebuild of target/release/coffer by someone else
    // during the run does not change what is measured half-way.
    let built = locate_coffer()?;
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let coffer = bin_dir.join("coffer");
    std::fs::copy(&built, &coffer).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;

    let drop_ok =
        Command::new("sync").status().is_ok() && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let cfg = Config {
        corpus_root: PathBuf::from(env_or("COFFER_CORPUS", "/var/tmp/corpus")),
        corpora,
        runs,
        dir: dir.clone(),
        no_build: std::env::var("COFFER_BENCH_NO_BUILD").is_ok_and(|v| v == "1"),
        unit: std::env::var("COFFER_BENCH_UNIT").ok().filter(|u| !u.is_empty()),
        drop_caches: drop_ok,
        coffer,
    };

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(String::new(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let unit =
        cfg.unit.clone().map_or_else(|| default_unit(&cfg.coffer), |u| format!("{u} (COFFER_BENCH_UNIT)"));
    let fs = words(&capture("findmnt", &["-no", "FSTYPE,SOURCE", "-T", &dir.display().to_string()]));
    let corpus_fs =
        words(&capture("findmnt", &["-no", "FSTYPE,SOURCE", "-T", &cfg.corpus_root.display().to_string()]));
    let manifest = env!("CARGO_MANIFEST_DIR");
    let head = capture("git", &["-C", manifest, "rev-parse", "--short", "HEAD"]);
    let dirty = capture("git", &["-C", manifest, "status", "--porcelain", "--", "src"]).lines().count();
    let built_at = mtime(&built)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| capture("date", &["-u", "-d", &format!("@{}", d.as_secs()), "+%Y-%m-%d %H:%M:%S UTC"]))
        .unwrap_or_default();
    let lz4 = words(capture("lz4", &["--version"]).trim_matches(['*', ' ']));
    let tar = capture("tar", &["--version"]).lines().next().unwrap_or_default().to_string();
    let loadavg = || {
        let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    let load_start = loadavg();

    let mut env = String::new();
    let _ = writeln!(
        env,
        "backup benchmark: coffer vs the peer (tar | lz4 -1), best of {runs}, rounds interleaved"
    );
    let _ = writeln!(env, "  nproc:      {nproc} ({cpu}), memory {mem}");
    let _ = writeln!(env, "  kernel:     {kernel}");
    let _ = writeln!(env, "  unit size:  {unit}");
    let _ = writeln!(
        env,
        "  coffer:     {} (copy of {}, built {built_at}; HEAD {head}, {dirty} changed files under src/)",
        cfg.coffer.display(),
        built.display()
    );
    let _ = writeln!(env, "  peer:       {tar}; {lz4}");
    let _ = writeln!(env, "  corpora:    {} ({corpus_fs})", cfg.corpus_root.display());
    let _ = writeln!(env, "  work dir:   {} ({fs})", dir.display());
    let _ = writeln!(
        env,
        "  caches:     {}",
        if cfg.drop_caches {
            "`sync; echo 3 > /proc/sys/vm/drop_caches` before every timed run".to_string()
        } else {
            "WARM: cannot write /proc/sys/vm/drop_caches (not root?), runs continue with warm caches"
                .to_string()
        }
    );
    let _ =
        writeln!(env, "  load avg:   {load_start} (1/5/15 min, at start; other builds share the machine)");
    print!("{env}");
    println!();

    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for name in &cfg.corpora {
        let what = CORPORA.iter().find(|(n, _)| n == name).map_or("", |(_, w)| *w);
        if let Err(e) = ensure_corpus(&cfg.corpus_root, cfg.no_build, name) {
            println!("{e}");
            skipped.push(e);
            continue;
        }
        results.push(bench_corpus(&cfg, name, what)?);
        println!();
    }
    let load_end = loadavg();
    let _ = std::fs::remove_dir_all(&bin_dir);
    let _ = std::fs::remove_dir_all(dir.join("work"));
    let _ = std::fs::remove_dir(&dir);

    println!("{}", "=".repeat(100));
    print!("{env}");
    println!("  load avg:   {load_end} (at end)");
    let floor = RSS_FLOOR_KIB.load(Ordering::Relaxed);
    println!(
        "  RSS floor:  {:.1} MiB: the bench's own peak RSS, which Linux charges to each child it spawns (no RSS below reads lower)",
        floor as f64 / 1024.0
    );
    println!();
    println!("Commands (per corpus; every one timed as wall clock from spawn to exit, peak RSS from wait4):");
    for r in &results {
        for c in &r.commands {
            println!("  {c}");
        }
    }
    println!("  (peer pipelines run as `bash -c 'set -o pipefail; …'`)");
    println!();
    println!(
        "Best of {runs}: times in seconds, peer/coffer > 1 means coffer is faster; sizes in MB (10^6 bytes): peer = the .tar.lz4, coffer = its *.cvol files; peak RSS of coffer in MiB:"
    );
    print!("{}", report(&results));
    let mut failed = false;
    for r in &results {
        if let Some(t) = &r.tree
            && !t.identical
        {
            failed = true;
            println!();
            println!("{}: the tree coffer restored DIFFERS from the corpus:", r.name);
            for d in &t.details {
                println!("  {d}");
            }
        }
        if !r.failures.is_empty() {
            failed = true;
            println!();
            println!("{}: failed runs:", r.name);
            for f in &r.failures {
                println!("  {f}");
            }
        }
    }
    for s in &skipped {
        println!("{s}");
    }

    let doc = json!({
        "environment": {
            "nproc": nproc, "cpu": cpu, "memory": mem, "kernel": kernel, "unit": unit,
            "coffer": cfg.coffer.display().to_string(), "coffer_built_from": built.display().to_string(),
            "coffer_built_at": built_at, "git_head": head, "src_files_changed": dirty,
            "peer": format!("{tar}; {lz4}"), "corpus_root": cfg.corpus_root.display().to_string(),
            "bench_dir": dir.display().to_string(), "caches_dropped": cfg.drop_caches,
            "runs": runs, "loadavg_start": load_start, "loadavg_end": load_end,
            "rss_floor_kib": RSS_FLOOR_KIB.load(Ordering::Relaxed),
        },
        "corpora": results.iter().map(|r| json!({
            "name": r.name, "what": r.what, "marker": r.marker, "commands": r.commands,
            "peer": r.peer.json(), "coffer": r.coffer.json(),
            "backup_ratio_peer_over_coffer": best(&r.peer.backup).zip(best(&r.coffer.backup)).map(|(a, b)| a / b),
            "restore_ratio_peer_over_coffer": best(&r.peer.restore).zip(best(&r.coffer.restore)).map(|(a, b)| a / b),
            "coffer_size_percent_of_peer": r.peer.size.last().zip(r.coffer.size.last()).map(|(p, c)| *c as f64 * 100.0 / *p as f64),
            "restored_tree_identical": r.tree.as_ref().map(|t| t.identical),
            "restored_tree_differences": r.tree.as_ref().map(|t| t.details.clone()),
            "failures": r.failures,
            "coffer_backup_output": r.coffer_backup_json, "coffer_restore_output": r.coffer_restore_json,
        })).collect::<Vec<_>>(),
        "skipped": skipped,
        "failed": failed,
    });
    let json_path = dir.parent().unwrap_or(&dir).join("coffer-bench.json");
    match std::fs::write(&json_path, format!("{doc:#}\n")) {
        Ok(()) => println!("\nJSON: {}", json_path.display()),
        Err(e) => println!("\ncannot write {}: {e}; JSON:\n{doc}", json_path.display()),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

//! Media pools as the board names them: which cartridges belong to a pool (barcode ranges, or
//! the pool written on their label) and how long the pool keeps its sessions.
//!
//! ```toml
//! [[pool]]
//! name = "daily"
//! library = "vlib"                      # the library it lives in (optional)
//! barcodes = ["CFR0001L8-CFR0008L8"]    # ranges or single barcodes (optional)
//! keep = "14d"                          # seconds s, minutes m, hours h, days d, weeks w
//! keep_sets = 2                         # the newest 2 sets of each source, whatever their age
//! allocation = "new"                    # a cartridge of its own per session (default "append");
//!                                       # "daily", "weekly sun", "monthly": a new cartridge for
//!                                       # the first session after each such time (00:00 UTC)
//! ```
//! A pool the board does not name (`default`, the pool of `--to library:vlib` without one)
//! keeps everything, as before pools had retention. `scratch` is where blank cartridges are
//! drawn from; it has no retention of its own.

use serde::Deserialize;

use super::retention::Policy;

/// The pool blank cartridges are drawn from.
pub const SCRATCH: &str = "scratch";

/// One `[[pool]]` of the board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Its name, as labels and `--to library:NAME,pool=P` say it.
    pub name: String,
    /// The library it lives in.
    pub library: Option<String>,
    /// Its cartridges: ranges `FIRST-LAST` of barcodes alike but for their number, or single
    /// barcodes. None: the cartridges labelled for it.
    #[serde(default)]
    pub barcodes: Vec<String>,
    /// How long a session is kept after it started, e.g. "35d".
    pub keep: Option<String>,
    /// How many of each source's newest sets are kept.
    pub keep_sets: Option<u32>,
    /// `append` (default): a session goes on the pool's last cartridge with room; `new`: each
    /// session starts on a cartridge of its own (blank or recycled).
    pub allocation: Option<String>,
}

/// How a pool puts its sessions on cartridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// On the pool's last cartridge with room.
    Append,
    /// Each session on a cartridge of its own.
    New,
    /// A new media set at each midnight (UTC): the day's sessions share a cartridge.
    Daily,
    /// A new media set each week at 00:00 (UTC) of the weekday (0 Monday … 6 Sunday).
    Weekly(u32),
    /// A new media set on the first of each month at 00:00 (UTC).
    Monthly,
}

impl Allocation {
    /// Parses `append`, `new`, `daily`, `weekly DAY` (`weekly sun`), `monthly`.
    pub fn parse(text: &str) -> Result<Allocation, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let usage = "\"append\", \"new\", \"daily\", \"weekly DAY\" (e.g. \"weekly sun\") or \"monthly\"";
        Ok(match words.as_slice() {
            ["append"] => Allocation::Append,
            ["new"] => Allocation::New,
            ["daily"] => Allocation::Daily,
            ["weekly", day] => Allocation::Weekly(
                crate::jobs::schedule::parse_weekday(day).map_err(|e| format!("'{text}': {e}"))?,
            ),
            ["monthly"] => Allocation::Monthly,
            _ => return Err(format!("'{text}': {usage}")),
        })
    }

    /// When the media set that `now` falls in began: a cartridge started (labelled) before it
    /// is not appended to. `None` for `append` and `new`, which have no sets in time.
    pub fn set_start(self, now: u64) -> Option<u64> {
        use crate::jobs::calendar::{DAY, civil_from_days, days_from_civil, weekday};
        let midnight = now - now % DAY;
        match self {
            Allocation::Append | Allocation::New => None,
            Allocation::Daily => Some(midnight),
            Allocation::Weekly(day) => {
                let back = (weekday(now) + 7 - day) % 7;
                Some(midnight - u64::from(back) * DAY)
            }
            Allocation::Monthly => {
                let (y, m, _) = civil_from_days((now / DAY) as i64);
                Some(days_from_civil(y, m, 1) as u64 * DAY)
            }
        }
    }
}

/// A barcode split around its number: `CFR0001L8` is (`CFR`, 1, width 4, `L8`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Numbered<'a> {
    prefix: &'a str,
    number: u64,
    width: usize,
    suffix: &'a str,
}

/// Splits `barcode` at its first run of digits.
fn numbered(barcode: &str) -> Option<Numbered<'_>> {
    let start = barcode.find(|c: char| c.is_ascii_digit())?;
    let len = barcode[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(barcode.len() - start);
    let digits = &barcode[start..start + len];
    Some(Numbered {
        prefix: &barcode[..start],
        number: digits.parse().ok()?,
        width: len,
        suffix: &barcode[start + len..],
    })
}

/// A range of barcodes, both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarcodeRange {
    prefix: String,
    suffix: String,
    width: usize,
    first: u64,
    last: u64,
    /// As the board wrote it.
    text: String,
}

impl BarcodeRange {
    /// Parses `FIRST-LAST` or a single barcode.
    pub fn parse(text: &str) -> Result<BarcodeRange, String> {
        let text = text.trim();
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let how = "a barcode or a range FIRST-LAST of barcodes alike but for their number, e.g. CFR0001L8-CFR0008L8";
        let (Some(x), Some(y)) = (numbered(a.trim()), numbered(b.trim())) else {
            return Err(format!("'{text}': {how}"));
        };
        if (x.prefix, x.width, x.suffix) != (y.prefix, y.width, y.suffix) || x.number > y.number {
            return Err(format!("'{text}': {how}"));
        }
        Ok(BarcodeRange {
            prefix: x.prefix.to_owned(),
            suffix: x.suffix.to_owned(),
            width: x.width,
            first: x.number,
            last: y.number,
            text: text.to_owned(),
        })
    }

    /// Whether `barcode` lies in the range.
    pub fn contains(&self, barcode: &str) -> bool {
        numbered(barcode).is_some_and(|n| {
            (n.prefix, n.width, n.suffix) == (self.prefix.as_str(), self.width, self.suffix.as_str())
                && (self.first..=self.last).contains(&n.number)
        })
    }

    /// Whether the two ranges share a barcode.
    pub fn overlaps(&self, other: &BarcodeRange) -> bool {
        (&self.prefix, self.width, &self.suffix) == (&other.prefix, other.width, &other.suffix)
            && self.first <= other.last
            && other.first <= self.last
    }
}

impl std::fmt::Display for BarcodeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a time like `35d`, `8w`, `12h`, `30m`, `90s` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let unit = t.chars().last().filter(char::is_ascii_alphabetic);
    let scale = match unit {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some('w') => 7 * 86_400,
        _ => return Err(format!("'{text}': a number and a unit (s, m, h, d or w), e.g. 35d")),
    };
    t[..t.len() - 1]
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("'{text}': a number above 0 and a unit (s, m, h, d or w), e.g. 35d"))
}

impl PoolSpec {
    /// Its barcode ranges (checked when the board was read).
    pub fn ranges(&self) -> Vec<BarcodeRange> {
        self.barcodes.iter().filter_map(|b| BarcodeRange::parse(b).ok()).collect()
    }

    /// How its sessions are put on cartridges (checked when the board was read).
    pub fn allocation(&self) -> Allocation {
        self.allocation
            .as_deref()
            .map_or(Allocation::Append, |a| Allocation::parse(a).unwrap_or(Allocation::Append))
    }

    /// Its retention (checked when the board was read).
    pub fn policy(&self) -> Policy {
        Policy { keep: self.keep.as_deref().and_then(|k| parse_duration(k).ok()), keep_sets: self.keep_sets }
    }

    /// Checks one pool: each problem as (key, what is wrong).
    pub fn check(&self, libraries: &[&str]) -> Result<(), (String, String)> {
        let key = |k: &str| format!("pool '{}'.{k}", self.name);
        if !crate::board::name_ok(&self.name) {
            return Err((
                "pool.name".into(),
                format!("'{}': 1 to 32 letters, digits, '-' or '_'", self.name),
            ));
        }
        if let Some(l) = &self.library
            && !libraries.contains(&l.as_str())
        {
            return Err((
                key("library"),
                format!("'{l}' is no library of this board ({})", libraries.join(", ")),
            ));
        }
        for b in &self.barcodes {
            BarcodeRange::parse(b).map_err(|e| (key("barcodes"), e))?;
        }
        if let Some(k) = &self.keep {
            parse_duration(k).map_err(|e| (key("keep"), e))?;
        }
        if let Some(a) = &self.allocation {
            Allocation::parse(a).map_err(|e| (key("allocation"), e))?;
        }
        if self.keep_sets == Some(0) {
            return Err((key("keep_sets"), "at least 1 (leave it out to keep by age only)".into()));
        }
        if self.name == SCRATCH && (self.keep.is_some() || self.keep_sets.is_some()) {
            return Err((key("keep"), "the scratch pool holds no sessions to keep".into()));
        }
        Ok(())
    }
}

/// The pools in force: the board's, then those made by command (`coffer pool create`, kept in
/// the catalog), each under its own name. A definition that no longer reads (it was checked
/// when made) is left out with a warning.
pub fn effective(board: &[PoolSpec], catalog: &crate::catalog::Catalog) -> Vec<PoolSpec> {
    let mut all = board.to_vec();
    for (name, definition) in catalog.pools() {
        if all.iter().any(|p| p.name == name) {
            continue;
        }
        match from_definition(name, definition) {
            Ok(p) => all.push(p),
            Err(e) => tracing::warn!(target: "pools", "pool '{name}' made by command does not read: {e}"),
        }
    }
    all
}

/// A pool from its name and its keys in TOML.
pub fn from_definition(name: &str, definition: &str) -> Result<PoolSpec, String> {
    let mut table: toml::Table = toml::from_str(definition).map_err(|e| e.message().to_owned())?;
    table.insert("name".into(), toml::Value::String(name.to_owned()));
    table.try_into::<PoolSpec>().map_err(|e| e.message().to_owned())
}

/// A pool's keys in TOML, without its name: what `PoolDefined` keeps.
pub fn definition(p: &PoolSpec) -> String {
    let mut t = toml::Table::new();
    if let Some(l) = &p.library {
        t.insert("library".into(), l.clone().into());
    }
    if !p.barcodes.is_empty() {
        t.insert("barcodes".into(), toml::Value::Array(p.barcodes.iter().cloned().map(Into::into).collect()));
    }
    if let Some(k) = &p.keep {
        t.insert("keep".into(), k.clone().into());
    }
    if let Some(n) = p.keep_sets {
        t.insert("keep_sets".into(), i64::from(n).into());
    }
    if let Some(a) = &p.allocation {
        t.insert("allocation".into(), a.clone().into());
    }
    toml::to_string(&t).expect("a table of strings and numbers is TOML")
}

/// Checks the board's pools together: each alone, names once, no barcode in two pools.
pub fn check_all(pools: &[PoolSpec], libraries: &[&str]) -> Result<(), (String, String)> {
    let mut seen = std::collections::HashSet::new();
    for p in pools {
        p.check(libraries)?;
        if !seen.insert(p.name.as_str()) {
            return Err(("pool.name".into(), format!("'{}' names two pools", p.name)));
        }
    }
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            for ra in a.ranges() {
                if let Some(rb) = b.ranges().into_iter().find(|rb| ra.overlaps(rb)) {
                    return Err((
                        format!("pool '{}'.barcodes", b.name),
                        format!(
                            "'{rb}' overlaps '{ra}' of pool '{}': a cartridge belongs to one pool",
                            a.name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The pool `barcode` belongs to by the board's ranges, if any.
pub fn pool_of<'a>(pools: &'a [PoolSpec], barcode: &str) -> Option<&'a PoolSpec> {
    pools.iter().find(|p| p.ranges().iter().any(|r| r.contains(barcode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, barcodes: &[&str]) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            library: Some("vlib".into()),
            barcodes: barcodes.iter().map(|s| s.to_string()).collect(),
            keep: Some("14d".into()),
            keep_sets: None,
            allocation: None,
        }
    }

    #[test]
    fn ranges_hold_barcodes_alike_but_for_their_number() {
        let r = BarcodeRange::parse("CFR0001L8-CFR0008L8").unwrap();
        assert!(r.contains("CFR0001L8") && r.contains("CFR0008L8") && r.contains("CFR0005L8"));
        assert!(!r.contains("CFR0009L8") && !r.contains("CFR0005L7") && !r.contains("CFR005L8"));
        assert!(!r.contains("CLN0001L8") && !r.contains("CFR"));
        assert!(BarcodeRange::parse("A00007").unwrap().contains("A00007"));
        for bad in ["CFR0008L8-CFR0001L8", "CFR0001L8-CFR01L8", "CFR0001L8-XYZ0003L8", "LABEL", ""] {
            assert!(BarcodeRange::parse(bad).is_err(), "{bad}");
        }
        let b = BarcodeRange::parse("CFR0008L8-CFR0012L8").unwrap();
        assert!(r.overlaps(&b) && b.overlaps(&r));
        assert!(!r.overlaps(&BarcodeRange::parse("CFR0009L8-CFR0012L8").unwrap()));
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("35d"), Ok(35 * 86_400));
        assert_eq!(parse_duration("8w"), Ok(8 * 7 * 86_400));
        assert_eq!(parse_duration(" 12h "), Ok(12 * 3600));
        for bad in ["35", "d", "0d", "-1d", "3y", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_pools_name_the_key_and_the_thing() {
        let libs = ["vlib"];
        let err = |pools: &[PoolSpec]| check_all(pools, &libs).unwrap_err();
        let (k, w) =
            err(&[pool("daily", &["CFR0001L8-CFR0008L8"]), pool("weekly", &["CFR0008L8-CFR0010L8"])]);
        assert_eq!(k, "pool 'weekly'.barcodes");
        assert!(w.contains("overlaps 'CFR0001L8-CFR0008L8' of pool 'daily'"), "{w}");
        let mut p = pool("daily", &[]);
        p.library = Some("other".into());
        let (k, w) = err(&[p]);
        assert_eq!(k, "pool 'daily'.library");
        assert!(w.contains("'other' is no library"), "{w}");
        let (k, _) = err(&[pool("daily", &[]), pool("daily", &[])]);
        assert_eq!(k, "pool.name");
        let mut p = pool("daily", &[]);
        p.keep = Some("forever".into());
        assert_eq!(err(&[p]).0, "pool 'daily'.keep");
        let mut p = pool("daily", &[]);
        p.keep_sets = Some(0);
        assert_eq!(err(&[p]).0, "pool 'daily'.keep_sets");
        assert_eq!(err(&[pool("scratch", &[])]).0, "pool 'scratch'.keep");
        let mut p = pool("daily", &[]);
        p.allocation = Some("weekly sunnday".into());
        assert_eq!(err(&[p.clone()]).0, "pool 'daily'.allocation");
        p.allocation = Some("fortnightly".into());
        assert_eq!(err(&[p]).0, "pool 'daily'.allocation");
        let ok = [pool("daily", &["CFR0001L8-CFR0008L8"]), pool("weekly", &["CFR0009L8-CFR0016L8"])];
        check_all(&ok, &libs).unwrap();
        assert_eq!(pool_of(&ok, "CFR0010L8").map(|p| p.name.as_str()), Some("weekly"));
        assert_eq!(pool_of(&ok, "CFR0017L8"), None);
        assert_eq!(ok[0].policy(), Policy { keep: Some(14 * 86_400), keep_sets: None });
    }

    #[test]
    fn a_calendar_allocation_starts_a_set_at_its_midnight() {
        let at = |t: &str| crate::jobs::calendar::parse(t).unwrap();
        // 2027-01-06 is a Wednesday.
        let now = at("2027-01-06 14:30:00");
        assert_eq!(Allocation::parse("append").unwrap().set_start(now), None);
        assert_eq!(Allocation::parse("new").unwrap().set_start(now), None);
        assert_eq!(Allocation::parse("daily").unwrap().set_start(now), Some(at("2027-01-06 00:00:00")));
        let sunday = Allocation::parse("weekly sun").unwrap();
        assert_eq!(sunday, Allocation::Weekly(6));
        assert_eq!(sunday.set_start(now), Some(at("2027-01-03 00:00:00")));
        assert_eq!(sunday.set_start(at("2027-01-03 00:00:00")), Some(at("2027-01-03 00:00:00")));
        assert_eq!(
            Allocation::parse("weekly Wednesday").unwrap().set_start(now),
            Some(at("2027-01-06 00:00:00"))
        );
        assert_eq!(Allocation::parse("monthly").unwrap().set_start(now), Some(at("2027-01-01 00:00:00")));
        assert!(Allocation::parse("weekly").unwrap_err().contains("weekly DAY"));
    }
}

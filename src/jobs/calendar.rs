//! UTC calendar arithmetic for schedules and for people: days ↔ civil dates, weekdays, adding
//! months, and the `YYYY-MM-DD HH:MM[:SS]` form. The appliance keeps its clock in UTC; job
//! files and the console speak UTC.

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// The civil date (year, month 1–12, day 1–31) of day `z` since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: shift to eras of 400 years starting in March.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in a month.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week of a Unix time: 0 Monday … 6 Sunday.
pub fn weekday(t: u64) -> u32 {
    // 1970-01-01 was a Thursday (3).
    ((t / DAY + 3) % 7) as u32
}

/// `t` plus `months` calendar months, the day clamped to the target month's length (Jan 31
/// plus one month is Feb 28 or 29); `None` past the year 9999.
pub fn add_months(t: u64, months: u64) -> Option<u64> {
    let (y, m, d) = civil_from_days((t / DAY) as i64);
    let total = i64::from(m - 1).checked_add(i64::try_from(months).ok()?)?;
    let (y, m) = (y.checked_add(total.div_euclid(12))?, (total.rem_euclid(12) + 1) as u32);
    if y > 9999 {
        return None;
    }
    let d = d.min(days_in_month(y, m));
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(days * DAY + t % DAY)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format(t: u64) -> String {
    let (y, m, d) = civil_from_days((t / DAY) as i64);
    let s = t % DAY;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` or `YYYY-MM-DD HH:MM:SS` (a `T` may replace the
/// space, a trailing `Z` is allowed) as UTC.
pub fn parse(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = num(dp.next()?, 4)?;
    let m: u32 = num(dp.next()?, 2)?;
    let d: u32 = num(dp.next()?, 2)?;
    if dp.next().is_some() || !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    if d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut tp = t.split(':');
            let h: u64 = num(tp.next()?, 2)?;
            let mi: u64 = num(tp.next()?, 2)?;
            let se: u64 = tp.next().map_or(Some(0), |x| num(x, 2))?;
            if tp.next().is_some() || h > 23 || mi > 59 || se > 59 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    Some(u64::try_from(days_from_civil(y, m, d)).ok()? * DAY + secs)
}

/// A number of exactly `digits` ASCII digits.
fn num<T: std::str::FromStr>(s: &str, digits: usize) -> Option<T> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("2026-11-22 09:30"), Some(1_795_339_800));
        assert_eq!(format(1_795_339_800), "2026-11-22 09:30:00");
        assert_eq!(parse("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(weekday(0), 3, "a Thursday");
        assert_eq!(weekday(parse("2026-11-22").unwrap()), 6, "a Sunday");
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "26-01-01", "2026-01-01 24:00", "x", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        let jan31 = parse("2024-01-31 08:00").unwrap();
        assert_eq!(add_months(jan31, 1).map(format).as_deref(), Some("2024-02-29 08:00:00"));
        assert_eq!(add_months(jan31, 13).map(format).as_deref(), Some("2025-02-28 08:00:00"));
        assert_eq!(add_months(jan31, 12 * 9000), None);
    }

    proptest! {
        #[test]
        fn days_and_dates_round_trip(z in 0i64..2_932_896) {
            let (y, m, d) = civil_from_days(z);
            prop_assert_eq!(days_from_civil(y, m, d), z);
            prop_assert!(d >= 1 && d <= days_in_month(y, m));
        }

        #[test]
        fn format_and_parse_round_trip(t in 0u64..253_402_300_799) {
            prop_assert_eq!(parse(&format(t)), Some(t));
        }

        #[test]
        fn any_text_parses_or_not_without_panic(s in "\\PC{0,30}") {
            let _ = parse(&s);
        }
    }
}

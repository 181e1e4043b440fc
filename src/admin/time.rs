//! RFC 3339 timestamps (`2026-12-05T10:00:00Z`, `2026-12-05T11:30:00.250+01:30`)
//! to and from milliseconds since the Unix epoch, for `reset-offsets
//! --to-datetime`. The zone is required: a time without one would depend on
//! the machine the command runs on.

const HINT: &str = "expected an RFC 3339 time such as 2026-12-05T10:00:00Z or 2026-12-05T11:00:00.5+01:00";

/// Milliseconds since the epoch of an RFC 3339 date-time; digits beyond
/// the millisecond are dropped.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("`{s}`: {why}; {HINT}");
    let b = s.as_bytes();
    // ASCII only, so that the byte positions below are character boundaries.
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("not a date-time"));
    }
    let num = |from: usize, to: usize| -> Result<i64, String> {
        let part = &s[from..to];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| bad("not a number"))
        } else {
            Err(bad(&format!("`{part}` is not a number")))
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    // Second 60 is a leap second, which RFC 3339 allows.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time of day"));
    }
    let (millis, zone) = fraction_ms(&s[19..]).ok_or_else(|| bad("bad fraction of a second"))?;
    let offset_minutes = zone_offset_minutes(zone).ok_or_else(|| bad("missing or bad zone (Z or +HH:MM)"))?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// `.digits` at the start of `rest` as milliseconds, and what follows it.
fn fraction_ms(rest: &str) -> Option<(i64, &str)> {
    let Some(digits_and_zone) = rest.strip_prefix('.') else { return Some((0, rest)) };
    let n = digits_and_zone.bytes().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let digits = &digits_and_zone[..n];
    let mut millis = 0i64;
    for (i, c) in digits.bytes().take(3).enumerate() {
        millis += i64::from(c - b'0') * [100, 10, 1][i];
    }
    Some((millis, &digits_and_zone[n..]))
}

/// `Z` → 0; `+HH:MM` / `-HH:MM` → minutes east of UTC.
fn zone_offset_minutes(zone: &str) -> Option<i64> {
    if zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' || !zone[1..3].bytes().chain(zone[4..6].bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m): (i64, i64) = (zone[1..3].parse().ok()?, zone[4..6].parse().ok()?);
    (h <= 23 && m <= 59).then_some(sign * (h * 60 + m))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

/// Milliseconds since the epoch as RFC 3339 in UTC, e.g. `2026-12-05T10:00:00.250Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_to_epoch_milliseconds() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("2026-12-05T10:00:00Z"), Ok(1_796_464_800_000));
        assert_eq!(parse_rfc3339_ms("2000-02-29T23:59:59.999z"), Ok(951_868_799_999));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Ok(-1_000));
    }

    #[test]
    fn zone_offsets_and_fractions_are_applied() {
        let utc = parse_rfc3339_ms("2026-12-05T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339_ms("2026-12-05T11:30:00+01:30"), Ok(utc));
        assert_eq!(parse_rfc3339_ms("2026-12-05T05:00:00-05:00"), Ok(utc));
        assert_eq!(parse_rfc3339_ms("2026-12-05 10:00:00.5Z"), Ok(utc + 500));
        assert_eq!(parse_rfc3339_ms("2026-12-05T10:00:00.123456789Z"), Ok(utc + 123));
    }

    #[test]
    fn malformed_times_are_refused_with_the_expected_form() {
        for bad in [
            "2026-12-05T10:00:00",
            "2026-12-05",
            "2026-02-30T10:00:00Z",
            "2026-12-05T24:00:00Z",
            "2026-12-05T10:00:00.Z",
            "2026-12-05T10:00:00+1:00",
            "2026-12-05T10:00:00+01:00x",
            "20x6-12-05T10:00:00Z",
            "yesterday",
            "2026-12-0éT10:00:00Z",
        ] {
            let e = parse_rfc3339_ms(bad).expect_err(bad);
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn formatting_inverts_parsing() {
        for ms in [0, 1_796_464_800_000, 951_868_799_999, -1_000, 4_102_444_800_123] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Ok(ms), "{}", format_rfc3339_ms(ms));
        }
        assert_eq!(format_rfc3339_ms(1_796_464_800_250), "2026-12-05T10:00:00.250Z");
    }
}

//! Login times: the accepted range of epoch seconds and their RFC 3339 rendering; the clock.
//!
//! Formatting is done here by hand (a few integer operations) rather than with a date crate:
//! it runs once per event on the hot path and needs nothing but UTC.

/// Earliest accepted login time: 2000-01-01T00:00:00Z. Anything earlier is a unit or clock error.
pub const MIN_EPOCH_SECONDS: i64 = 946_684_800;
/// First rejected login time: 2100-01-01T00:00:00Z. Millisecond timestamps land far beyond it,
/// so they are rejected rather than read as dates thousands of years away.
pub const MAX_EPOCH_SECONDS: i64 = 4_102_444_800;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether `secs` lies in the accepted range `[MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS)`.
pub fn in_range(secs: i64) -> bool {
    (MIN_EPOCH_SECONDS..MAX_EPOCH_SECONDS).contains(&secs)
}

/// Writes `secs` (seconds since the Unix epoch, UTC) as RFC 3339, e.g. `2024-10-30T22:21:32Z`.
/// The result is always 20 ASCII bytes.
pub fn rfc3339(secs: i64) -> [u8; 20] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut out = *b"0000-00-00T00:00:00Z";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    put_digits(&mut out[11..13], h);
    put_digits(&mut out[14..16], m);
    put_digits(&mut out[17..19], s);
    out
}

fn put_digits(dst: &mut [u8], mut value: i64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (value.rem_euclid(10)) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64) -> String {
        String::from_utf8(rfc3339(secs).to_vec()).expect("ascii")
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt(1_730_326_892), "2024-10-30T22:21:32Z");
        assert_eq!(fmt(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(fmt(MIN_EPOCH_SECONDS), "2000-01-01T00:00:00Z");
        assert_eq!(fmt(MAX_EPOCH_SECONDS - 1), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn range_is_half_open() {
        assert!(in_range(MIN_EPOCH_SECONDS));
        assert!(!in_range(MIN_EPOCH_SECONDS - 1));
        assert!(!in_range(MAX_EPOCH_SECONDS));
        assert!(!in_range(1_730_326_892_000), "milliseconds are rejected");
    }
}

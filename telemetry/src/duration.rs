//! Duration flags, such as `--check-interval 30s` or `--duration 5m`, for clap's
//! `value_parser`.
//!
//! The rule: humantime's syntax (`500ms`, `30s`, `5m`, `1h 30m`), surrounding spaces ignored
//! (they come in through environment variables), and a rejection always says what was
//! expected, with an example, and what was given.

use std::ops::RangeInclusive;
use std::time::Duration;

/// A duration such as `500ms`, `30s`, `5m` or `1h 30m`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration like 30s, 500ms, 5m or 1h; got {text:?} ({e})"))
}

/// A duration within `range`. Out of range, the message is `expected {expected}; got "TEXT"`,
/// so `expected` says what to fix, e.g. `"a window between 1s and 1h, e.g. 5m"`.
pub fn parse_within(
    text: &str,
    range: RangeInclusive<Duration>,
    expected: &str,
) -> Result<Duration, String> {
    let duration = parse(text)?;
    if range.contains(&duration) {
        Ok(duration)
    } else {
        Err(format!("expected {expected}; got {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_units_are_accepted() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn surrounding_spaces_are_ignored() {
        assert_eq!(parse(" 30s\n"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn a_bad_duration_says_what_to_fix() {
        for bad in ["", "soon", "5 parsecs", "30"] {
            let message = parse(bad).expect_err(bad);
            assert!(message.contains("like 30s, 500ms"), "{message}");
            assert!(message.contains(&format!("got {bad:?}")), "{message}");
        }
    }

    #[test]
    fn a_range_is_inclusive_and_its_message_says_what_to_fix() {
        let range = Duration::from_secs(1)..=Duration::from_secs(3600);
        let what = "an interval between 1s and 1h, e.g. 30s";
        assert_eq!(
            parse_within("1s", range.clone(), what),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            parse_within("1h", range.clone(), what),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_within("10ms", range.clone(), what),
            Err(format!("expected {what}; got \"10ms\""))
        );
        let unparsable = parse_within("soon", range, what).expect_err("not a duration");
        assert!(unparsable.contains("like 30s"), "{unparsable}");
    }
}

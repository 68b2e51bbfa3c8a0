//! The human-readable insights report printed when a run ends, and the same report for a
//! whole pipeline (`fetch-consumer insights`).

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write as _};
use std::time::Duration;

use super::fleet::Fleet;
use super::snapshot::Span;
use super::{Breakdown, Counter, DISTINCT_STANDARD_ERROR, Insights, SpaceSaving};
use crate::time::rfc3339;

/// How many rows the top lists and breakdown tables show.
const SHOWN: usize = 10;

/// Records handled over a wall-clock span.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub records: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Insights plus the run's throughput, ready to print.
pub struct Report<'a> {
    pub insights: &'a Insights,
    pub throughput: Option<Throughput>,
}

impl Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.insights;
        let rejected = i.rejected_total();
        let total = i.cleaned + rejected;
        writeln!(f, "==================== insights ====================")?;
        writeln!(
            f,
            "events      {} read, {} cleaned, {} dead-lettered ({:.2}%)",
            group(total),
            group(i.cleaned),
            group(rejected),
            percent(rejected, total)
        )?;
        if let Some(t) = self.throughput {
            writeln!(
                f,
                "throughput  {} events/s ({} events in {:.1} s)",
                group(t.per_second().round() as u64),
                group(t.records),
                t.elapsed.as_secs_f64()
            )?;
        }
        if let (Some(first), Some(last)) = (i.first_login, i.last_login) {
            writeln!(f, "logins      from {} to {}", time(first), time(last))?;
        }
        let err = DISTINCT_STANDARD_ERROR * 100.0;
        writeln!(
            f,
            "users       ~{} distinct (HyperLogLog, ±{err:.2}% std. error)",
            group(i.users.estimate())
        )?;
        writeln!(
            f,
            "devices     ~{} distinct (HyperLogLog, ±{err:.2}% std. error)",
            group(i.devices.estimate())
        )?;
        top(f, "most active users", &i.top_users)?;
        top(f, "most active IPs", &i.top_ips)?;
        table(
            f,
            "logins by app version x device type",
            "app_version",
            &i.by_app_version,
        )?;
        table(f, "logins by locale x device type", "locale", &i.by_locale)?;
        if !i.flagged.is_empty() {
            writeln!(f, "\nfields dropped as invalid (event kept)")?;
            counts(f, &i.flagged)?;
        }
        writeln!(f, "\ndead letters by reason")?;
        if i.rejected.is_empty() {
            writeln!(f, "  none")?;
        }
        counts(f, &i.rejected)?;
        write!(f, "==================================================")
    }
}

/// A pipeline's merged insights, ready to print: who contributed and how fresh, then the
/// report over the totals and, if asked, over the recent window.
pub struct FleetReport<'a> {
    pub fleet: &'a Fleet,
    pub window: Option<Duration>,
}

impl Display for FleetReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fleet = self.fleet;
        writeln!(
            f,
            "pipeline    {}: {} replica process(es) contributed, {} publishing now",
            fleet.pipeline, fleet.contributors, fleet.publishing
        )?;
        writeln!(
            f,
            "snapshots   newest {} old, oldest {} old",
            age(fleet.newest_age_ms),
            age(fleet.oldest_age_ms)
        )?;
        if let Some(span) = fleet.span {
            writeln!(f, "covers      {} (processing time)", span_text(span))?;
        }
        match fleet.rate {
            Some(rate) => writeln!(
                f,
                "rate        {} events/s over the latest interval",
                group(rate.round() as u64)
            )?,
            None => writeln!(f, "rate        no replica is publishing")?,
        }
        writeln!(
            f,
            "note        at-least-once: events a replica reprocessed after a crash count twice in the totals; distinct counts are unaffected"
        )?;
        if fleet.cut {
            writeln!(
                f,
                "note        some replicas cut their top-k lists to fit the record limit: wider error bounds"
            )?;
        }
        writeln!(
            f,
            "{}",
            Report {
                insights: &fleet.totals,
                throughput: None
            }
        )?;
        if let (Some(length), Some((insights, span))) = (self.window, &fleet.window) {
            writeln!(
                f,
                "\nwindow      the intervals that ended in the last {}",
                age(length.as_millis() as i64)
            )?;
            match span {
                Some(span) => writeln!(f, "covers      {}", span_text(*span))?,
                None => writeln!(f, "covers      nothing: no interval ended in it")?,
            }
            writeln!(
                f,
                "{}",
                Report {
                    insights,
                    throughput: None
                }
            )?;
        }
        Ok(())
    }
}

fn span_text(span: Span) -> String {
    let t = |ms: i64| time(ms.div_euclid(1000));
    format!("{} to {}", t(span.start_ms), t(span.end_ms))
}

/// `95_000` ms as `1m35s`.
fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn top(f: &mut fmt::Formatter<'_>, title: &str, sketch: &SpaceSaving) -> fmt::Result {
    writeln!(
        f,
        "\n{title} (Space-Saving over {} keys: counts overestimate by at most {}, shown as ±)",
        group(sketch.capacity() as u64),
        group(sketch.max_error())
    )?;
    let rows: Vec<Counter> = sketch.top(SHOWN);
    if rows.is_empty() {
        return writeln!(f, "  none");
    }
    let width = rows.iter().map(|c| c.key.len()).max().unwrap_or(0);
    for (n, c) in rows.iter().enumerate() {
        let bound = if c.error > 0 {
            format!(" ±{}", group(c.error))
        } else {
            String::new()
        };
        writeln!(
            f,
            "  {:>2}. {:<width$}  {:>7}{bound} logins, last {}",
            n + 1,
            c.key,
            group(c.count),
            time(c.last_seen)
        )?;
    }
    Ok(())
}

fn table(f: &mut fmt::Formatter<'_>, title: &str, row_name: &str, t: &Breakdown) -> fmt::Result {
    writeln!(f, "\n{title}")?;
    if t.is_empty() {
        return writeln!(f, "  none");
    }
    let mut column_totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, c, n) in t.cells_iter() {
        *column_totals.entry(c).or_default() += n;
    }
    let mut columns: Vec<(&str, u64)> = column_totals.into_iter().collect();
    columns.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    columns.truncate(6);
    let mut rows: Vec<(&str, u64)> = t.row_totals().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let width = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max(row_name.len());
    let mut line = format!("  {row_name:<width$}");
    for (c, _) in &columns {
        let _ = write!(line, " {c:>9}");
    }
    writeln!(f, "{line} {:>9}", "total")?;
    for (row, total) in rows.iter().take(SHOWN) {
        let mut line = format!("  {row:<width$}");
        for (c, _) in &columns {
            let n = t.get(row, c);
            let _ = write!(line, " {:>9}", group(n));
        }
        writeln!(f, "{line} {:>9}", group(*total))?;
    }
    if rows.len() > SHOWN {
        writeln!(f, "  ... and {} more", rows.len() - SHOWN)?;
    }
    Ok(())
}

fn counts(f: &mut fmt::Formatter<'_>, counts: &BTreeMap<String, u64>) -> fmt::Result {
    for (k, n) in counts {
        writeln!(f, "  {k:<20} {:>9}", group(*n))?;
    }
    Ok(())
}

fn time(secs: i64) -> String {
    String::from_utf8_lossy(&rfc3339(secs)).into_owned()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn report_shows_every_section() {
        let cleaner = Cleaner::default();
        let mut i = Insights::new(10);
        for line in [
            r#"{"user_id":"alice","device_type":"iOS","ip":"1.1.1.1","locale":"NY","app_version":"2.3.0","timestamp":1730000000}"#,
            "not json",
        ] {
            match cleaner.clean(line.as_bytes()) {
                Ok(ev) => i.record(&ev),
                Err(r) => i.record_rejection(r.reason),
            }
        }
        let text = Report {
            insights: &i,
            throughput: Some(Throughput {
                records: 2,
                elapsed: Duration::from_secs(1),
            }),
        }
        .to_string();
        for needle in [
            "2 read, 1 cleaned, 1 dead-lettered (50.00%)",
            "throughput  2 events/s",
            "users       ~1 distinct",
            "most active users",
            "alice",
            "most active IPs",
            "logins by app version x device type",
            "logins by locale x device type",
            "malformed_json",
            "2024-10-27T03:33:20Z",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}

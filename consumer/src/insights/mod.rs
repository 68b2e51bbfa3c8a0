//! Insights over the cleaned stream: who logs in, from where, on what, and what was rejected.
//!
//! Memory stays bounded however many distinct users, devices and IPs the stream holds:
//! distinct counts use [`HyperLogLog`] sketches and top-k lists use [`SpaceSaving`], both with
//! stated error bounds; breakdown tables cap their number of cells. Every part is mergeable
//! ([`Insights::merge`]) and serializable, so the partial insights of many replicas can be
//! combined into one report.
//!
//! [`InsightsWorker`] keeps them on their own thread for the Kafka loop and the file mode.
//! Replicas publish them as [`snapshot::Snapshot`]s; [`fleet`] merges those into one pipeline's
//! view.
//!
//! Insights are values computed on the cleaned output (after PII protection), so the report
//! never shows more than the output topic does.

mod breakdown;
pub mod fleet;
mod hyperloglog;
pub mod report;
pub mod retire;
pub mod snapshot;
mod space_saving;
pub mod worker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use breakdown::{Breakdown, MAX_BREAKDOWN_CELLS, OTHER};
pub use hyperloglog::{HyperLogLog, STANDARD_ERROR as DISTINCT_STANDARD_ERROR};
pub use report::{Report, Throughput};
pub use space_saving::{Counter, SpaceSaving};
pub use worker::InsightsWorker;

use crate::clean::{CleanEvent, Flags};
use crate::reason::RejectReason;

/// Counters tracked per top-k list: the top 10 are reported, the rest bound the error.
pub const DEFAULT_TOP_CAPACITY: usize = 10_000;
/// What the insights need of one cleaned event.
#[derive(Debug, Clone, Copy)]
pub struct LoginFacts<'a> {
    pub user_id: &'a str,
    pub app_version: &'a str,
    pub device_type: &'a str,
    pub locale: &'a str,
    pub ip: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub timestamp: i64,
    pub flags: Flags,
}

impl<'a> LoginFacts<'a> {
    pub fn of(ev: &'a CleanEvent<'_>) -> Self {
        LoginFacts {
            user_id: &ev.user_id,
            app_version: &ev.app_version,
            device_type: &ev.device_type,
            locale: &ev.locale,
            ip: ev.ip.as_deref(),
            device_id: ev.device_id.as_deref(),
            timestamp: ev.timestamp,
            flags: ev.flags,
        }
    }
}

/// Everything the report is built from. Serializable and mergeable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Insights {
    /// Events cleaned and passed on.
    pub cleaned: u64,
    /// Events sent to the dead-letter output, by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Cleaned events with a field dropped as invalid, by flag code (e.g. `invalid_ip`).
    pub flagged: BTreeMap<String, u64>,
    pub users: HyperLogLog,
    pub devices: HyperLogLog,
    pub top_users: SpaceSaving,
    pub top_ips: SpaceSaving,
    /// Logins by app version and device type.
    pub by_app_version: Breakdown,
    /// Logins by locale and device type.
    pub by_locale: Breakdown,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
}

impl Default for Insights {
    fn default() -> Self {
        Insights::new(DEFAULT_TOP_CAPACITY)
    }
}

impl Insights {
    /// Empty insights whose top-k lists track `top_capacity` keys each.
    pub fn new(top_capacity: usize) -> Self {
        Insights {
            cleaned: 0,
            rejected: BTreeMap::new(),
            flagged: BTreeMap::new(),
            users: HyperLogLog::default(),
            devices: HyperLogLog::default(),
            top_users: SpaceSaving::new(top_capacity),
            top_ips: SpaceSaving::new(top_capacity),
            by_app_version: Breakdown::default(),
            by_locale: Breakdown::default(),
            first_login: None,
            last_login: None,
        }
    }

    /// Accounts for one cleaned event.
    pub fn record(&mut self, ev: &CleanEvent<'_>) {
        self.record_facts(&LoginFacts::of(ev));
    }

    /// Accounts for one cleaned event, given by its fields.
    pub fn record_facts(&mut self, ev: &LoginFacts<'_>) {
        self.cleaned += 1;
        self.users.insert(ev.user_id.as_bytes());
        self.top_users.insert(ev.user_id, ev.timestamp);
        if let Some(device) = ev.device_id {
            self.devices.insert(device.as_bytes());
        }
        if let Some(ip) = ev.ip {
            self.top_ips.insert(ip, ev.timestamp);
        }
        self.by_app_version.add(ev.app_version, ev.device_type, 1);
        self.by_locale.add(ev.locale, ev.device_type, 1);
        for flag in ev.flags.iter() {
            *self.flagged.entry(flag.code().to_owned()).or_default() += 1;
        }
        self.first_login = Some(
            self.first_login
                .map_or(ev.timestamp, |t| t.min(ev.timestamp)),
        );
        self.last_login = Some(
            self.last_login
                .map_or(ev.timestamp, |t| t.max(ev.timestamp)),
        );
    }

    /// Accounts for one rejected event.
    pub fn record_rejection(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason.code().to_owned()).or_default() += 1;
    }

    /// Events rejected, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Folds in the insights of another replica or another run.
    pub fn merge(&mut self, other: &Insights) {
        self.merge_counts(other);
        self.top_users.merge(&other.top_users);
        self.top_ips.merge(&other.top_ips);
    }

    /// The merge of many (every replica of a pipeline): like folding each in with
    /// [`Insights::merge`], with the top-k lists merged in one pass
    /// ([`SpaceSaving::merge_all`]): faster, and tighter bounds.
    pub fn merge_all<'a>(
        top_capacity: usize,
        parts: impl IntoIterator<Item = &'a Insights>,
    ) -> Insights {
        let parts: Vec<&Insights> = parts.into_iter().collect();
        let mut out = Insights::new(top_capacity);
        for part in &parts {
            out.merge_counts(part);
        }
        out.top_users = SpaceSaving::merge_all(top_capacity, parts.iter().map(|p| &p.top_users));
        out.top_ips = SpaceSaving::merge_all(top_capacity, parts.iter().map(|p| &p.top_ips));
        out
    }

    /// Folds in everything of `other` but its top-k lists.
    fn merge_counts(&mut self, other: &Insights) {
        self.cleaned += other.cleaned;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.flagged {
            *self.flagged.entry(k.clone()).or_default() += v;
        }
        self.users.merge(&other.users);
        self.devices.merge(&other.devices);
        self.by_app_version.merge(&other.by_app_version);
        self.by_locale.merge(&other.by_locale);
        self.first_login = min_opt(self.first_login, other.first_login, i64::min);
        self.last_login = min_opt(self.last_login, other.last_login, i64::max);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>, pick: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;

    fn insights_of(lines: &[&str]) -> Insights {
        let cleaner = Cleaner::default();
        let mut insights = Insights::new(100);
        for line in lines {
            match cleaner.clean(line.as_bytes()) {
                Ok(ev) => insights.record(&ev),
                Err(rej) => insights.record_rejection(rej.reason),
            }
        }
        insights
    }

    const A: &str = r#"{"user_id":"alice","device_type":"iOS","ip":"1.1.1.1","locale":"NY","device_id":"d1","app_version":"2.3.0","timestamp":1730000000}"#;
    const B: &str = r#"{"user_id":"bob","device_type":"android","ip":"2.2.2.2","locale":"CA","device_id":"d2","app_version":"2.3.1","timestamp":1730000100}"#;

    #[test]
    fn counts_users_devices_breakdowns_and_rejections() {
        let i = insights_of(&[
            A,
            A,
            B,
            "{",
            "[]",
            r#"{"user_id":"x","ip":"bad","timestamp":1730000000}"#,
        ]);
        assert_eq!(i.cleaned, 4);
        assert_eq!(i.users.estimate(), 3);
        assert_eq!(i.devices.estimate(), 2);
        assert_eq!(i.top_users.top(1)[0].key, "alice");
        assert_eq!(i.top_users.top(1)[0].count, 2);
        assert_eq!(i.top_users.top(1)[0].last_seen, 1_730_000_000);
        assert_eq!(i.by_app_version.get("2.3.0", "ios"), 2);
        assert_eq!(i.by_locale.get("CA", "android"), 1);
        assert_eq!(i.by_locale.get("unknown", "unknown"), 1);
        assert_eq!(i.rejected["malformed_json"], 1);
        assert_eq!(i.rejected["not_an_object"], 1);
        assert_eq!(i.flagged["invalid_ip"], 1);
        assert_eq!(i.rejected_total(), 2);
        assert_eq!(
            (i.first_login, i.last_login),
            (Some(1_730_000_000), Some(1_730_000_100))
        );
    }

    #[test]
    fn merging_two_halves_equals_one_pass() {
        let all = insights_of(&[A, B, A, "{", B, A]);
        let mut left = insights_of(&[A, B, A]);
        let right = insights_of(&["{", B, A]);
        left.merge(&right);
        assert_eq!(left.cleaned, all.cleaned);
        assert_eq!(left.rejected, all.rejected);
        assert_eq!(left.by_app_version, all.by_app_version);
        assert_eq!(left.users.estimate(), all.users.estimate());
        assert_eq!(left.top_users.top(2), all.top_users.top(2));
        assert_eq!(left.last_login, all.last_login);
    }

    #[test]
    fn json_round_trip() {
        let i = insights_of(&[A, B, "{"]);
        let json = serde_json::to_string(&i).expect("serialize");
        let back: Insights = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.cleaned, 2);
        assert_eq!(back.users.estimate(), 2);
        assert_eq!(back.top_ips.top(2), i.top_ips.top(2));
    }
}

//! Synthetic `user-login` events: the local stand-in for the take-home's data-generator image.
//!
//! By default the events have that image's shape: fresh uuid4 `user_id` and `device_id`,
//! `app_version` "2.3.0", a random IPv4, a US state code as `locale`, integer epoch seconds,
//! `device_type` "android" or "iOS" and missing from about 5% of events; keyed by a random uuid4.
//! Options add variety (more app versions, string timestamps as in the take-home's own sample,
//! other missing or oddly spelled fields), a pool of recurring users, and malformed records.
//! Seeded, so a run can be reproduced exactly.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// The 50 US state codes, plus DC and PR.
const LOCALES: [&str; 52] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR",
];
const APP_VERSIONS: [&str; 5] = ["2.3.0", "2.3.1", "2.4.0", "2.4.1", "3.0.0"];
const ODD_DEVICE_TYPES: [&str; 4] = ["IOS", "Android", "ios", " android "];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Share of events without `device_type` (the data-generator image leaves out about 5%).
    pub missing_device_type: f64,
    /// More app versions, string timestamps, other missing or oddly spelled fields, invalid IPs.
    pub variety: bool,
    /// Share of records that are malformed (not JSON, not an object, missing or invalid fields).
    pub malformed: f64,
    /// Draw `user_id`s from a pool of this many users instead of a fresh uuid per event.
    pub users: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            missing_device_type: 0.05,
            variety: false,
            malformed: 0.0,
            users: None,
        }
    }
}

/// Produces one event after another into a caller-owned buffer.
pub struct Generator {
    config: GeneratorConfig,
    rng: SmallRng,
    user_pool_seed: u64,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let rng = SmallRng::seed_from_u64(config.seed);
        Generator {
            user_pool_seed: config.seed ^ 0x9e37_79b9_7f4a_7c15,
            config,
            rng,
        }
    }

    /// Writes the next record into `value` (cleared first) and its key into `key`.
    /// `now` is the current time in epoch seconds; timestamps fall within the last hour.
    pub fn next_record(&mut self, now: i64, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        key.clear();
        value.clear();
        let k = self.uuid();
        let _ = write!(key, "{k}");
        if self.config.malformed > 0.0 && self.rng.random_bool(self.config.malformed.min(1.0)) {
            self.malformed(now, value);
        } else {
            self.valid(now, value);
        }
    }

    fn valid(&mut self, now: i64, out: &mut Vec<u8>) {
        let user_id = match self.config.users {
            Some(n) if n > 0 => {
                let i = self.rng.random_range(0..n);
                pool_uuid(self.user_pool_seed, i)
            }
            _ => self.uuid(),
        };
        let device_id = self.uuid();
        let variety = self.config.variety;
        let app_version = if variety {
            APP_VERSIONS[self.rng.random_range(0..APP_VERSIONS.len())]
        } else {
            "2.3.0"
        };
        let timestamp = now - self.rng.random_range(0..3600);
        let locale = LOCALES[self.rng.random_range(0..LOCALES.len())];
        let ip = [
            self.rng.random_range(1..=223u8),
            self.rng.random::<u8>(),
            self.rng.random::<u8>(),
            self.rng.random_range(1..=254u8),
        ];
        let _ = write!(
            out,
            r#"{{"user_id": "{user_id}", "app_version": "{app_version}""#
        );
        if !self
            .rng
            .random_bool(self.config.missing_device_type.clamp(0.0, 1.0))
        {
            let device_type = if variety && self.rng.random_bool(0.1) {
                ODD_DEVICE_TYPES[self.rng.random_range(0..ODD_DEVICE_TYPES.len())]
            } else if self.rng.random_bool(0.5) {
                "android"
            } else {
                "iOS"
            };
            let _ = write!(out, r#", "device_type": "{device_type}""#);
        }
        if !(variety && self.rng.random_bool(0.02)) {
            if variety && self.rng.random_bool(0.01) {
                let _ = write!(out, r#", "ip": "{}.{}.{}.999""#, ip[0], ip[1], ip[2]);
            } else {
                let _ = write!(out, r#", "ip": "{}.{}.{}.{}""#, ip[0], ip[1], ip[2], ip[3]);
            }
        }
        if !(variety && self.rng.random_bool(0.02)) {
            let _ = write!(out, r#", "locale": "{locale}""#);
        }
        let _ = write!(out, r#", "device_id": "{device_id}""#);
        if variety && self.rng.random_bool(0.3) {
            let _ = write!(out, r#", "timestamp": "{timestamp}"}}"#);
        } else {
            let _ = write!(out, r#", "timestamp": {timestamp}}}"#);
        }
    }

    fn malformed(&mut self, now: i64, out: &mut Vec<u8>) {
        match self.rng.random_range(0..7u8) {
            0 => {
                // Truncated JSON.
                self.valid(now, out);
                let cut = self.rng.random_range(1..out.len().max(2));
                out.truncate(cut);
            }
            1 => out.extend_from_slice(b"[\"not\", \"an\", \"object\"]"),
            2 => {
                let _ = write!(out, r#"{{"app_version": "2.3.0", "timestamp": {now}}}"#);
            }
            3 => {
                let _ = write!(
                    out,
                    r#"{{"user_id": "{}", "timestamp": "yesterday"}}"#,
                    self.uuid()
                );
            }
            4 => out.extend_from_slice(b"{\"user_id\": \"\xff\xfe\", \"timestamp\": 1}"),
            5 => {}
            _ => {
                let _ = write!(
                    out,
                    r#"{{"user_id": "{}", "timestamp": {}}}"#,
                    self.uuid(),
                    now * 1000
                );
            }
        }
    }

    fn uuid(&mut self) -> uuid::fmt::Hyphenated {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .hyphenated()
    }
}

/// The `i`th user of a pool: stable for a seed, so repeated logins share an id.
fn pool_uuid(seed: u64, i: u64) -> uuid::fmt::Hyphenated {
    let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(i.wrapping_mul(0x2545_f491_4f6c_dd1d)));
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .hyphenated()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;

    const NOW: i64 = 1_730_326_892;

    fn sample(config: GeneratorConfig, n: usize) -> Vec<Vec<u8>> {
        let mut g = Generator::new(config);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        (0..n)
            .map(|_| {
                g.next_record(NOW, &mut k, &mut v);
                assert_eq!(k.len(), 36);
                v.clone()
            })
            .collect()
    }

    #[test]
    fn default_shape_matches_the_data_generator() {
        let records = sample(GeneratorConfig::default(), 2_000);
        let cleaner = Cleaner::default();
        let mut missing = 0;
        for r in &records {
            let v: serde_json::Value = serde_json::from_slice(r).expect("valid json");
            assert_eq!(v["app_version"], "2.3.0");
            assert!(v["timestamp"].is_i64());
            match v.get("device_type") {
                None => missing += 1,
                Some(d) => assert!(d == "android" || d == "iOS"),
            }
            assert!(cleaner.clean(r).is_ok());
        }
        assert!(
            (40..=160).contains(&missing),
            "about 5% without device_type: {missing}"
        );
    }

    #[test]
    fn same_seed_same_stream() {
        let cfg = GeneratorConfig {
            seed: 7,
            variety: true,
            malformed: 0.1,
            ..Default::default()
        };
        assert_eq!(sample(cfg.clone(), 100), sample(cfg, 100));
    }

    #[test]
    fn malformed_share_is_rejected() {
        let cfg = GeneratorConfig {
            seed: 1,
            malformed: 0.2,
            variety: true,
            ..Default::default()
        };
        let cleaner = Cleaner::default();
        let rejected = sample(cfg, 5_000)
            .iter()
            .filter(|r| cleaner.clean(r).is_err())
            .count();
        assert!(
            (800..=1_200).contains(&rejected),
            "about 20% malformed: {rejected}"
        );
    }

    #[test]
    fn user_pool_repeats_users() {
        let cfg = GeneratorConfig {
            users: Some(10),
            ..Default::default()
        };
        let mut ids: Vec<String> = sample(cfg, 500)
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(r).expect("json")["user_id"].to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
    }
}

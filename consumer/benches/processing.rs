//! Processing-core throughput: events/s on one core over a realistic stream, against a
//! parse-only baseline measured in the same run (the same bytes parsed by serde_json into a
//! borrowed struct, nothing else). Prints a machine-readable summary line at the end:
//!
//!   process_vs_parse=<ratio> process_eps=<n> parse_eps=<n>
//!
//! Run: `cargo bench -p fetch-consumer --bench processing`.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use fetch_consumer::clean::Cleaner;
use fetch_consumer::event::RawEvent;
use fetch_consumer::generator::{Generator, GeneratorConfig};
use fetch_consumer::insights::{DEFAULT_TOP_CAPACITY, Insights, SpaceSaving};
use fetch_consumer::processor::{Processor, Routed};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The generator's mix: several app versions, string timestamps, odd spellings, missing
/// fields, a pool of recurring users, and 1% malformed records.
fn stream(n: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GeneratorConfig {
        seed: 42,
        variety: true,
        malformed: 0.01,
        users: Some(100_000),
        ..GeneratorConfig::default()
    });
    let (mut key, mut value) = (Vec::new(), Vec::new());
    (0..n)
        .map(|_| {
            generator.next_record(1_730_326_892, &mut key, &mut value);
            value.clone()
        })
        .collect()
}

/// The baseline: the event's fields borrowed from the input, no validation beyond JSON.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Borrowed<'a> {
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    app_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    locale: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
}

fn parse_only(records: &[Vec<u8>]) -> usize {
    records
        .iter()
        .filter(|r| serde_json::from_slice::<Borrowed<'_>>(r).is_ok())
        .count()
}

/// The core's own parse into every known field, by the fast path where it applies
/// (`RawEvent::parse`) or by serde_json alone (`RawEvent::parse_reference`).
fn parse_event(records: &[Vec<u8>], parses: fn(&str) -> bool) -> usize {
    records
        .iter()
        .filter(|r| std::str::from_utf8(r).is_ok_and(parses))
        .count()
}

fn process(processor: &mut Processor, records: &[Vec<u8>]) -> usize {
    let mut bytes = 0;
    for r in records {
        if let Routed::Output { value, .. } = processor.process(r) {
            bytes += value.len();
        }
    }
    bytes
}

/// The two Space-Saving sketches alone, fed the stream's user ids and IPs: the insights'
/// largest part, where nearly every update evicts (the IPs rarely repeat).
fn sketches(users: &mut SpaceSaving, ips: &mut SpaceSaving, keys: &[(String, Option<String>)]) {
    for (user_id, ip) in keys {
        users.insert(user_id, 1);
        if let Some(ip) = ip {
            ips.insert(ip, 1);
        }
    }
}

/// Events per second of `f` over `records`, best of a few timed passes.
fn rate(records: &[Vec<u8>], mut f: impl FnMut(&[Vec<u8>]) -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        black_box(f(black_box(records)));
        best = best.min(started.elapsed());
    }
    records.len() as f64 / best.as_secs_f64()
}

fn main() {
    let records = stream(200_000);
    let mut processor = Processor::new(Cleaner::default(), Insights::default());

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut group = c.benchmark_group("processing");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("parse_only", |b| b.iter(|| parse_only(black_box(&records))));
    group.bench_function("event_parse", |b| {
        b.iter(|| parse_event(black_box(&records), |t| RawEvent::parse(t).is_ok()))
    });
    group.bench_function("event_parse_reference", |b| {
        b.iter(|| {
            parse_event(black_box(&records), |t| {
                RawEvent::parse_reference(t).is_ok()
            })
        })
    });
    group.bench_function("process", |b| {
        b.iter(|| process(&mut processor, black_box(&records)))
    });
    let cleaner = Cleaner::default();
    let keys: Vec<(String, Option<String>)> = records
        .iter()
        .filter_map(|r| cleaner.clean(r).ok())
        .map(|e| (e.user_id.into_owned(), e.ip.map(|ip| ip.into_owned())))
        .collect();
    let (mut users, mut ips) = (
        SpaceSaving::new(DEFAULT_TOP_CAPACITY),
        SpaceSaving::new(DEFAULT_TOP_CAPACITY),
    );
    group.bench_function("space_saving", |b| {
        b.iter(|| sketches(&mut users, &mut ips, black_box(&keys)))
    });
    group.finish();
    c.final_summary();

    // The ratio, measured back to back in this same process so machine noise hits both alike.
    let parse_eps = rate(&records, parse_only);
    let process_eps = rate(&records, |r| process(&mut processor, r));
    println!(
        "process_vs_parse={:.3} process_eps={:.0} parse_eps={:.0}",
        process_eps / parse_eps,
        process_eps,
        parse_eps
    );
}

//! Fleet insights: the cost of publishing and merging snapshots at the default top-k capacity,
//! each snapshot as full as a long-running replica's (every counter taken by a UUID user id or
//! an IPv4 address). Prints one machine-readable line at the end:
//!
//!   merge_100_ms=<n> encode_ms=<n> decode_ms=<n> snapshot_bytes=<n> limit_bytes=<n>
//!
//! The goal is a merge of 100 snapshots well under a second, so the operator and
//! `fetch-consumer insights` stay quick for large pipelines; the size is printed beside the
//! record limit it must fit.
//!
//! Run: `cargo bench -p fetch-consumer --bench insights_merge`.

use std::time::{Duration, Instant};

use fetch_consumer::generator::{Generator, GeneratorConfig};
use fetch_consumer::insights::fleet::Fleet;
use fetch_consumer::insights::snapshot::{MAX_ENCODED_BYTES, Snapshot, SnapshotKind, Span};
use fetch_consumer::insights::{DEFAULT_TOP_CAPACITY, Insights};
use fetch_consumer::processor::Processor;

/// One replica's insights over `events` generated events of fresh users (so the top-k lists
/// fill up), seeded per replica.
fn replica_insights(seed: u64, events: usize) -> Insights {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        variety: true,
        ..GeneratorConfig::default()
    });
    let mut processor = Processor::new(
        fetch_consumer::clean::Cleaner::default(),
        Insights::new(DEFAULT_TOP_CAPACITY),
    );
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for _ in 0..events {
        generator.next_record(1_730_326_892, &mut key, &mut value);
        processor.process(&value);
    }
    processor.into_insights()
}

fn best(mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // A few distinct full snapshots, reused to make 100 (merging cost does not depend on
    // whether two replicas saw the same users).
    let distinct: Vec<Snapshot> = (0..4)
        .map(|i| Snapshot {
            pipeline: "bench".into(),
            replica: format!("replica-{i}"),
            kind: SnapshotKind::Total,
            final_snapshot: false,
            span: Span {
                start_ms: 0,
                end_ms: 30_000,
            },
            published_at_ms: 30_000,
            top_cut_to: None,
            folded: None,
            insights: replica_insights(i, 50_000),
        })
        .collect();
    let snapshots: Vec<Snapshot> = (0..100).map(|i| distinct[i % 4].clone()).collect();

    let mut encoded = Vec::new();
    let encode = best(|| encoded = distinct[0].encode().expect("encodes"));
    let decode = best(|| {
        Snapshot::decode(&encoded).expect("decodes");
    });
    let merge = best(|| {
        let fleet = Fleet::merge(&snapshots, "bench", 30_000, None, DEFAULT_TOP_CAPACITY);
        assert_eq!(fleet.contributors, 100);
    });
    println!(
        "one full snapshot: {} bytes gzip-compressed (limit {}), encoded in {:.1} ms, decoded in {:.1} ms",
        encoded.len(),
        MAX_ENCODED_BYTES,
        encode.as_secs_f64() * 1e3,
        decode.as_secs_f64() * 1e3
    );
    println!(
        "merging 100 full snapshots: {:.0} ms (goal: well under 1,000 ms)",
        merge.as_secs_f64() * 1e3
    );
    println!(
        "merge_100_ms={:.0} encode_ms={:.1} decode_ms={:.1} snapshot_bytes={} limit_bytes={}",
        merge.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e3,
        decode.as_secs_f64() * 1e3,
        encoded.len(),
        MAX_ENCODED_BYTES
    );
}

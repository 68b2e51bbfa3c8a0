//! A pipeline's insights merged across replicas, on the real broker: several `fetch-consumer
//! run` processes publish, `fetch-consumer insights` reads and merges, and the result is what
//! one process gives over the same input.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use fetch_consumer::clean::Cleaner;
use fetch_consumer::generator::{Generator, GeneratorConfig};
use fetch_consumer::insights::fleet::{Fleet, Summary};
use fetch_consumer::insights::snapshot::{Snapshot, SnapshotKind, Span};
use fetch_consumer::insights::{DEFAULT_TOP_CAPACITY, Insights};
use fetch_consumer::processor::Processor;
use support::*;

type Record = (Vec<u8>, Option<Vec<u8>>);

/// Login events of a few hundred users, malformed ones included.
fn fixture(n: usize, seed: u64) -> Vec<Record> {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        variety: true,
        malformed: 0.05,
        users: Some(300),
        ..Default::default()
    });
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut out: Vec<Record> = (0..n)
        .map(|_| {
            generator.next_record(1_730_326_892, &mut key, &mut value);
            (key.clone(), Some(value.clone()))
        })
        .collect();
    out.push((b"no-payload".to_vec(), None));
    out
}

/// What one process reports over `records`: the summary `insights --format json` prints.
fn truth(records: &[Record]) -> Summary {
    let mut processor = Processor::new(Cleaner::default(), Insights::new(DEFAULT_TOP_CAPACITY));
    for (_, value) in records {
        processor.process(value.as_deref().unwrap_or_default());
    }
    let one = Snapshot {
        pipeline: "truth".into(),
        replica: "one".into(),
        kind: SnapshotKind::Total,
        final_snapshot: true,
        span: Span {
            start_ms: 0,
            end_ms: 0,
        },
        published_at_ms: 0,
        top_cut_to: None,
        folded: None,
        insights: processor.into_insights(),
    };
    Fleet::merge(&[one], "truth", 0, None, DEFAULT_TOP_CAPACITY).summary(10)
}

fn insights_command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fetch-consumer"))
        .arg("insights")
        .args(args)
        .output()
        .expect("run fetch-consumer insights")
}

/// `fetch-consumer insights --format json` for `group` on `topic`.
fn merged(topic: &str, group: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let bootstrap = bootstrap();
    let mut args = vec![
        "--bootstrap-servers",
        &bootstrap,
        "--insights-topic",
        topic,
        "--pipeline",
        group,
        "--format",
        "json",
        "--timeout",
        "20s",
    ];
    args.extend_from_slice(extra);
    let json = insights_command(&args);
    let stderr = String::from_utf8_lossy(&json.stderr).into_owned();
    assert!(json.status.success(), "insights failed: {stderr}");
    let value = serde_json::from_slice(&json.stdout).expect("JSON summary");
    (value, stderr)
}

fn input_and_outputs() -> (String, String, String) {
    let (input, output, dlq) = (unique("in"), unique("out"), unique("dlq"));
    create_topic(&input, 6);
    create_topic(&output, 6);
    create_topic(&dlq, 1);
    (input, output, dlq)
}

fn start(group: &str, topics: &(String, String, String), insights: &str) -> ConsumerProcess {
    ConsumerProcess::start(
        group,
        &topics.0,
        &topics.1,
        &topics.2,
        &["--insights-topic", insights, "--batch-size", "200"],
    )
}

#[test]
fn three_replicas_report_exactly_what_one_process_reports_over_the_same_input() {
    let topics = input_and_outputs();
    let (group, insights) = (unique("group"), unique("insights"));
    let records = fixture(6_000, 21);
    let truth = serde_json::to_value(truth(&records)).expect("json");

    let replicas: Vec<ConsumerProcess> =
        (0..3).map(|_| start(&group, &topics, &insights)).collect();
    for r in &replicas {
        wait_until("every replica in the group", || r.get("/readyz").0 == 200);
    }
    produce(&topics.0, &records);
    wait_until("the replicas to commit everything", || {
        committed(&group, &topics.0) == end_offsets(&topics.0)
    });
    for r in replicas {
        assert_eq!(r.terminate().0, Some(0));
    }
    // Records that are not snapshots are skipped with a warning, never fatal.
    produce(
        &insights,
        &[(
            format!("{group}/junk").into_bytes(),
            Some(b"hello".to_vec()),
        )],
    );

    let (merged, stderr) = merged(&insights, &group, &["--window", "1h"]);
    assert!(stderr.contains("skipped 1 record"), "{stderr}");
    assert_eq!(merged["contributors"], 3, "{merged:#}");
    // Counters, reasons, breakdown rows and top lists are exact (300 users and a few thousand
    // IPs are within the top-k capacity); HyperLogLog unions are exact as well.
    for field in [
        "cleaned",
        "deadLettered",
        "deadLettersByReason",
        "distinctUsers",
        "distinctDevices",
        "topUsers",
        "topIps",
        "topAppVersions",
        "topLocales",
        "firstLogin",
        "lastLogin",
    ] {
        assert_eq!(
            merged["totals"][field], truth["totals"][field],
            "totals.{field}"
        );
        assert_eq!(
            merged["window"][field], truth["totals"][field],
            "window.{field}"
        );
    }

    let text = insights_command(&[
        "--bootstrap-servers",
        &bootstrap(),
        "--insights-topic",
        &insights,
        "--pipeline",
        &group,
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    for needle in [
        "3 replica process(es) contributed, 0 publishing now",
        "most active users",
        "dead letters by reason",
        "count twice",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn a_replica_killed_and_replaced_mid_stream_leaves_nothing_out_of_the_insights() {
    let topics = input_and_outputs();
    let (group, insights) = (unique("group"), unique("insights"));
    let records = fixture(30_000, 22);
    let truth = serde_json::to_value(truth(&records)).expect("json");

    let mut replicas: Vec<ConsumerProcess> =
        (0..3).map(|_| start(&group, &topics, &insights)).collect();
    for r in &replicas {
        wait_until("every replica in the group", || r.get("/readyz").0 == 200);
    }
    let (first, second) = records.split_at(records.len() / 2);
    produce(&topics.0, first);
    let doomed = &replicas[0];
    wait_until("the replica to consume", || {
        doomed.metric("fetch_consumer_events_consumed_total") > 0.0
    });
    let published = doomed.metric("fetch_consumer_insights_checkpoints_published_total");
    wait_until("a snapshot counting some of it", || {
        doomed.metric("fetch_consumer_insights_checkpoints_published_total") > published
    });
    replicas.remove(0).kill();
    replicas.push(start(&group, &topics, &insights));
    produce(&topics.0, second);
    wait_until("the replicas to commit everything", || {
        committed(&group, &topics.0) == end_offsets(&topics.0)
    });
    for r in replicas {
        assert_eq!(r.terminate().0, Some(0));
    }

    let (merged, _) = merged(&insights, &group, &[]);
    let totals = &merged["totals"];
    assert_eq!(
        merged["contributors"], 4,
        "the killed replica's snapshot counts"
    );
    // Replayed events may count twice, never zero times.
    let at_least = |field: &str| {
        let (got, want) = (&totals[field], &truth["totals"][field]);
        assert!(got.as_u64() >= want.as_u64(), "{field}: {got} < {want}");
    };
    at_least("cleaned");
    at_least("deadLettered");
    for (reason, n) in truth["totals"]["deadLettersByReason"]
        .as_object()
        .expect("reasons")
    {
        let got = &totals["deadLettersByReason"][reason];
        assert!(got.as_u64() >= n.as_u64(), "{reason}: {got} < {n}");
    }
    // Distinct counts are unaffected by replays: a HyperLogLog counts an id once.
    assert_eq!(totals["distinctUsers"], truth["totals"]["distinctUsers"]);
    assert_eq!(
        totals["distinctDevices"],
        truth["totals"]["distinctDevices"]
    );
}

#[test]
fn an_unreachable_broker_is_a_clear_error_not_a_hang() {
    let started = std::time::Instant::now();
    let out = insights_command(&["--bootstrap-servers", "127.0.0.1:9", "--timeout", "3s"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn asking_for_a_pipeline_that_never_published_names_those_that_did() {
    let topics = input_and_outputs();
    let (group, insights) = (unique("group"), unique("insights"));
    let replica = start(&group, &topics, &insights);
    wait_until("the replica to publish", || {
        total(&end_offsets(&insights)) >= 1
    });
    assert_eq!(replica.terminate().0, Some(0));
    let out = insights_command(&[
        "--bootstrap-servers",
        &bootstrap(),
        "--insights-topic",
        &insights,
        "--pipeline",
        "nobody",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"nobody\"") && stderr.contains(&group),
        "{stderr}"
    );
}

#[test]
fn the_topic_stays_bounded_over_many_restarts_and_the_totals_lose_nothing() {
    let topics = input_and_outputs();
    let (group, insights) = (unique("group"), unique("insights"));
    // Compaction that acts within seconds instead of hours.
    create_topic_with(
        &bootstrap(),
        &insights,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
            ("min.compaction.lag.ms", "0"),
        ],
    );
    let records = fixture(4_000, 23);
    let truth = serde_json::to_value(truth(&records)).expect("json");
    let restarts = 6;
    for (round, chunk) in records.chunks(records.len().div_ceil(restarts)).enumerate() {
        let replica = start(&group, &topics, &insights);
        if round > 0 {
            wait_until("the replica to retire the one before", || {
                replica
                    .log()
                    .contains("folded the insights of replicas that are gone")
            });
        }
        produce(&topics.0, chunk);
        wait_until("the replica to commit its share", || {
            committed(&group, &topics.0) == end_offsets(&topics.0)
        });
        assert_eq!(replica.terminate().0, Some(0));
    }
    let read = || {
        let config = fetch_consumer::kafka::KafkaSettings {
            bootstrap_servers: bootstrap(),
            properties: vec![],
        }
        .client();
        fetch_consumer::kafka::insights_topic::read(config, &insights, Duration::from_secs(20))
            .expect("read the insights topic")
    };
    // Every start folded the totals of the replicas before it into the retired total.
    let (snapshots, _) = read().snapshots();
    let totals: Vec<&str> = snapshots
        .iter()
        .filter(|s| s.kind == SnapshotKind::Total)
        .map(|s| s.replica.as_str())
        .collect();
    assert_eq!(
        totals.len(),
        2,
        "the retired total and the last replica's: {totals:?}"
    );
    let (merged, _) = merged(&insights, &group, &[]);
    assert_eq!(merged["contributors"], restarts);
    for field in [
        "cleaned",
        "deadLettersByReason",
        "distinctUsers",
        "topUsers",
        "topAppVersions",
    ] {
        assert_eq!(
            merged["totals"][field], truth["totals"][field],
            "totals.{field}"
        );
    }
    // Compaction removes what was replaced or deleted: the log holds little more than the
    // latest record per key.
    wait_until("compaction", || {
        let state = read();
        state.records <= state.len() as u64 + 10
    });
}

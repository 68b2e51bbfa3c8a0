//! The pipeline against the real Apache Kafka broker: routing, dead letters with their source,
//! committed offsets, graceful and ungraceful stops.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fetch_consumer::clean::Cleaner;
use fetch_consumer::dead_letter;
use rdkafka::Message;
use rdkafka::message::Headers;
use support::*;

/// Generated events (with malformed ones) plus hand-made edge cases.
fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut out = support::records(n, seed);
    out.push((b"no-payload".to_vec(), None));
    out.push((
        b"bad-utf8".to_vec(),
        Some(b"{\"user_id\":\"\xc3\x28\"}".to_vec()),
    ));
    out.push((b"big".to_vec(), Some(vec![b' '; 70_000])));
    out
}

/// A record's key and value as read back, either possibly absent.
type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> String {
    let headers = m.headers().expect("dead letters carry headers");
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("no header {name}"))
}

/// Fresh input and output topics with `partitions` partitions, and a one-partition dead-letter
/// topic: (input, output, dead letter).
fn topics(partitions: i32) -> (String, String, String) {
    let (input, output, dlq) = (unique("in"), unique("out"), unique("dlq"));
    create_topic(&input, partitions);
    create_topic(&output, partitions);
    create_topic(&dlq, 1);
    (input, output, dlq)
}

#[test]
fn every_event_is_routed_dead_letters_keep_key_and_source_and_sigterm_commits() {
    let (input, output, dlq) = topics(3);
    let records = records(3_000, 11);
    let cleaner = Cleaner::default();
    let valid: Vec<&Record> = records
        .iter()
        .filter(|(_, v)| cleaner.clean(v.as_deref().unwrap_or_default()).is_ok())
        .collect();
    let rejected = records.len() - valid.len();
    assert!(
        rejected > 100,
        "the fixture has malformed records: {rejected}"
    );
    produce(&input, &records);

    let group = unique("group");
    let consumer = ConsumerProcess::start(&group, &input, &output, &dlq, &[]);
    let expected = records.len() as i64;
    wait_until("every record routed", || {
        total(&end_offsets(&output)) + total(&end_offsets(&dlq)) >= expected
    });
    assert_eq!(consumer.get("/readyz").0, 200, "ready once assigned");
    assert_eq!(consumer.get("/healthz").0, 200);
    let (status, metrics) = consumer.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("fetch_consumer_events_consumed_total {expected}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("fetch_consumer_events_dead_lettered_total{reason=\"malformed_json\"}")
    );
    assert!(metrics.contains("fetch_consumer_batch_duration_seconds_bucket"));
    wait_until("offsets committed", || {
        committed(&group, &input) == end_offsets(&input)
    });
    // What the clients asked of the brokers, from librdkafka's statistics (every 5 s): the
    // output's and the dead letters' batches by topic, and the requests behind them.
    let batches_of =
        |topic: &str| format!("fetch_consumer_produce_batches_total{{topic=\"{topic}\"}}");
    wait_until_else(
        "request and batch metrics",
        || {
            let metrics = consumer.get("/metrics").1;
            [
                r#"fetch_consumer_client_requests_total{client="producer",request="Produce"}"#,
                r#"fetch_consumer_client_requests_total{client="consumer",request="Fetch"}"#,
                &batches_of(&output),
                &batches_of(&dlq),
            ]
            .iter()
            .all(|line| metrics.contains(line))
                && metrics
                    .lines()
                    .filter_map(|l| l.strip_prefix("fetch_consumer_producer_queue_wait_seconds "))
                    .any(|v| v.parse::<f64>().is_ok_and(|wait| wait > 0.0))
        },
        || {
            let metrics = consumer.get("/metrics").1;
            let series = ["client_requests_total", "produce_batch", "queue_wait"];
            let lines = metrics.lines().filter(|l| !l.starts_with('#'));
            let found: Vec<_> = lines
                .filter(|l| series.iter().any(|s| l.contains(s)))
                .collect();
            format!("the series found:\n{}", found.join("\n"))
        },
    );

    let log = consumer.log();
    let (code, report) = consumer.terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0; log:\n{log}");
    assert!(
        report.contains(&format!("{} read", support_group(expected as u64))),
        "{report}"
    );
    assert!(report.contains("most active users"), "{report}");

    // Output: exactly the valid events, keyed by user_id.
    let out = read_all(&output, valid.len());
    assert_eq!(
        total(&end_offsets(&output)),
        valid.len() as i64,
        "no duplicates in a clean run"
    );
    for m in &out {
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("payload")).expect("json");
        assert_eq!(
            m.key(),
            v["user_id"].as_str().map(str::as_bytes),
            "keyed by user_id"
        );
        assert!(v["login_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    // Dead letters: original key and bytes untouched, reason and source position in headers.
    let originals: HashMap<(i32, i64), KeyAndValue> = read_all(&input, records.len())
        .into_iter()
        .map(|m| {
            let key = m.key().map(<[u8]>::to_vec);
            let value = m.payload().map(<[u8]>::to_vec);
            ((m.partition(), m.offset()), (key, value))
        })
        .collect();
    let dead = read_all(&dlq, rejected);
    assert_eq!(total(&end_offsets(&dlq)), rejected as i64);
    let mut reasons = HashSet::new();
    for m in &dead {
        assert_eq!(header(m, dead_letter::HEADER_SOURCE_TOPIC), input);
        let partition: i32 = header(m, dead_letter::HEADER_SOURCE_PARTITION)
            .parse()
            .expect("int");
        let offset: i64 = header(m, dead_letter::HEADER_SOURCE_OFFSET)
            .parse()
            .expect("int");
        let (key, value) = &originals[&(partition, offset)];
        assert_eq!(m.key(), key.as_deref(), "original key kept");
        assert_eq!(m.payload(), value.as_deref(), "original bytes kept");
        let original = value.as_deref().unwrap_or_default();
        let reason = header(m, dead_letter::HEADER_REASON);
        let expected = cleaner.clean(original).expect_err("was rejected").reason;
        assert_eq!(reason, expected.code());
        reasons.insert(reason);
    }
    for r in [
        "empty",
        "invalid_utf8",
        "too_large",
        "malformed_json",
        "not_an_object",
    ] {
        assert!(reasons.contains(r), "reason {r} seen: {reasons:?}");
    }
}

fn support_group(n: u64) -> String {
    fetch_consumer::insights::report::group(n)
}

#[test]
fn a_consumer_killed_mid_stream_and_restarted_loses_nothing() {
    let (input, output, dlq) = topics(4);
    let records = records(150_000, 12);
    produce(&input, &records);
    let expected_users: HashSet<String> = records
        .iter()
        .filter_map(|(_, v)| {
            Cleaner::default()
                .clean(v.as_deref()?)
                .ok()
                .map(|e| e.user_id.into_owned())
        })
        .collect();
    let group = unique("group");

    // The group notices the killed member at its session timeout, and the restarted one waits
    // for that before it gets partitions: 6 s rather than the default 45 s, which on a loaded
    // machine once left too little of the wait below for the work itself.
    let args = ["--batch-size", "256", "-X", "session.timeout.ms=6000"];
    let first = ConsumerProcess::start(&group, &input, &output, &dlq, &args);
    wait_until("some output", || total(&end_offsets(&output)) > 5_000);
    first.kill();
    let routed = total(&end_offsets(&output)) + total(&end_offsets(&dlq));
    assert!(
        routed < records.len() as i64,
        "the kill came after everything was done ({routed}); raise the record count"
    );

    let second = ConsumerProcess::start(&group, &input, &output, &dlq, &[]);
    wait_until_else(
        "the restarted consumer to commit everything",
        || committed(&group, &input) == end_offsets(&input),
        || {
            format!(
                "committed {:?} of {:?}\nthe restarted consumer:\n{}",
                committed(&group, &input),
                end_offsets(&input),
                group_events(&second)
            )
        },
    );
    let (code, _) = second.terminate();
    assert_eq!(code, Some(0));

    // At least once: every valid event reached the output (duplicates allowed after a kill).
    let produced = total(&end_offsets(&output)) as usize;
    assert!(produced >= expected_users.len());
    let seen: HashSet<String> = read_all(&output, produced)
        .iter()
        .filter_map(|m| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .collect();
    let missing = expected_users.difference(&seen).count();
    assert_eq!(missing, 0, "{missing} valid events lost");
}

/// Eager assignment (librdkafka's default, an opt-in here): the first consumer gives up every
/// partition and gets some back.
#[test]
fn with_eager_rebalancing_a_second_consumer_takes_over_partitions_without_loss_or_duplicates() {
    second_consumer_joins(&["-X", "partition.assignment.strategy=range,roundrobin"]);
}

/// Incremental rebalancing (the consumer's default): the first consumer keeps some
/// partitions, so the records of those it polled before the revocation must be kept, not
/// dropped.
#[test]
fn with_cooperative_rebalancing_kept_partitions_lose_nothing_either() {
    second_consumer_joins(&[]);
}

/// A revocation that cannot wait for the processing stage (here it may wait 1 ms, while the
/// first consumer drains a backlog): the batches handed to the stage before the revocation
/// still hold the revoked partitions' records. The stage leaves them to the partitions' next
/// owner, and the first consumer tracks, so commits, none of them: such a commit would move
/// the new owner's committed offset back (`OffsetTracker::forget`). Nothing is lost;
/// duplicates are allowed (the revocation is counted as unsettled).
/// Batches big enough that the stage always has more than 1 ms of work queued when the
/// revocation comes (three of 256 records were about 1.5 ms on a fast machine: sometimes
/// done in time), and eager rebalancing, so that the revocation takes every partition and
/// whatever the stage still holds is a revoked partition's (with cooperative rebalancing the
/// first consumer keeps half, and the batches queued, each from one long fetched run of a
/// partition, could all be of kept ones: nothing was left, and the test failed in CI).
#[test]
fn a_revocation_that_cannot_wait_for_the_stage_leaves_its_batches_records_to_the_next_owner() {
    let args = [
        "--batch-size",
        "4096",
        "--shutdown-timeout",
        "1ms",
        "-X",
        "partition.assignment.strategy=range,roundrobin",
    ];
    let t = topics_on(&bootstrap(), 4, 4, &[]);
    let sent = records(300_000, 19);
    produce(&t.input, &sent);
    let group = unique("group");
    let first = ConsumerProcess::start(&group, &t.input, &t.output, &t.dead_letter, &args);
    wait_until("some output", || total(&end_offsets(&t.output)) > 20_000);
    let second = ConsumerProcess::start(&group, &t.input, &t.output, &t.dead_letter, &args);
    wait_for_everything_committed(&group, &t.input, [&first, &second]);
    let (log1, events1) = (first.log(), group_events(&first));
    let (code1, _) = first.terminate();
    let (code2, _) = second.terminate();
    assert_eq!((code1, code2), (Some(0), Some(0)));
    assert!(
        log1.contains("the processing stage did not finish its batches in time"),
        "the revocation waited for the stage after all:\n{events1}"
    );
    assert!(
        log1.contains("left to their partitions' next owner"),
        "the stage went on with the revoked partitions' records:\n{events1}"
    );
    let tally = Tally::of(&bootstrap(), &t);
    assert!(
        tally.input >= sent.len(),
        "every record sent is in the input"
    );
    tally.assert_nothing_lost();
}

/// Incremental rebalancing when the input has stopped: the partitions the first consumer keeps
/// must still be committed, though no later record brings a later commit. (With the loop's
/// commits async, whose outcome rust-rdkafka never reports, they stayed uncommitted in about
/// one run of six with the default 1 s commit interval; at this test's 200 ms it did not
/// happen in 12 runs, so this states the rule more than it catches that race.)
#[test]
fn with_cooperative_rebalancing_kept_partitions_are_committed_after_the_input_stops() {
    let args = [];
    let (input, output, dlq) = topics(4);
    produce(&input, &records(4_000, 17));
    let group = unique("group");
    let _first = ConsumerProcess::start(&group, &input, &output, &dlq, &args);
    let _second = ConsumerProcess::start(&group, &input, &output, &dlq, &args);
    wait_until("every partition committed to its end", || {
        committed(&group, &input) == end_offsets(&input)
    });
}

/// Revocations that handed partitions on unsettled, every reason.
const UNSETTLED: &str = "fetch_consumer_revocations_unsettled_total";

fn second_consumer_joins(extra: &[&str]) {
    let args: Vec<&str> = ["--batch-size", "256"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let t = topics_on(&bootstrap(), 4, 4, &[]);
    let records = records(200_000, 13);
    let group = unique("group");

    let first = ConsumerProcess::start(&group, &t.input, &t.output, &t.dead_letter, &args);
    wait_until("the first consumer's partitions", || {
        first.log().contains("partitions assigned")
    });
    let joined = AtomicBool::new(false);
    let (sent, log2, unsettled2) = std::thread::scope(|scope| {
        // A steady stream, so the first consumer is busy when the second one joins.
        let producing = scope.spawn(|| {
            let pace = (5_000, Duration::from_millis(100));
            steady_stream(&records, pace, &joined, 10, |c| produce(&t.input, c))
        });
        wait_until("some output", || total(&end_offsets(&t.output)) > 20_000);
        let second = ConsumerProcess::start(&group, &t.input, &t.output, &t.dead_letter, &args);
        wait_until("the second consumer's partitions", || {
            second.log().contains("partitions assigned")
        });
        joined.store(true, Ordering::Release);
        let sent = producing.join().expect("the producing thread");
        wait_for_everything_committed(&group, &t.input, [&first, &second]);
        let (log2, unsettled2) = (second.log(), second.metric(UNSETTLED));
        let (code2, _) = second.terminate();
        assert_eq!(code2, Some(0));
        (sent, log2, unsettled2)
    });
    let (log1, unsettled1) = (first.log(), first.metric(UNSETTLED));
    let (code1, _) = first.terminate();
    assert_eq!(code1, Some(0));
    assert!(
        log1.contains("partitions revoked"),
        "the first consumer gave partitions up:\n{log1}"
    );

    // Record by record, against what the input topic holds (which a retry of the test's own
    // producer may have doubled).
    let tally = Tally::of(&bootstrap(), &t);
    let warnings: Vec<&str> = log1
        .lines()
        .chain(log2.lines())
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .collect();
    let warnings = warnings.join("\n");
    assert!(tally.input >= sent, "every record sent is in the input");
    tally.assert_nothing_lost();
    // The revocation waited for the processing stage and committed exactly what was produced;
    // records polled but not yet processed were left to the next owner, so none is doubled.
    // At least once allows a duplicate only where a revocation could not settle (a commit or
    // flush that failed on a loaded machine), and each such one is counted: without one, a
    // duplicate is a bug.
    let duplicates = (tally.duplicate_outputs, tally.duplicate_dead_letters);
    if unsettled1 + unsettled2 == 0.0 {
        assert_eq!(
            duplicates,
            (0, 0),
            "duplicates with every revocation settled; the consumers' warnings:\n{warnings}"
        );
    } else {
        eprintln!(
            "{} revocations did not settle, {duplicates:?} duplicates, as at least once allows:\n{warnings}",
            unsettled1 + unsettled2
        );
    }
}

/// Waits until `group` has committed every partition of `input` to its end; on a timeout,
/// says what was committed and what each consumer's log says about its group.
fn wait_for_everything_committed(group: &str, input: &str, consumers: [&ConsumerProcess; 2]) {
    wait_until_else(
        "the two consumers to commit everything",
        || committed(group, input) == end_offsets(input),
        || {
            format!(
                "committed {:?} of {:?}\nthe first consumer:\n{}\nthe second:\n{}",
                committed(group, input),
                end_offsets(input),
                group_events(consumers[0]),
                group_events(consumers[1]),
            )
        },
    );
}

/// A consumer's log lines about its group (assignments, revocations, commits), warnings and
/// errors, and its commit and revocation metrics.
fn group_events(consumer: &ConsumerProcess) -> String {
    let log = consumer.log();
    let lines = log.lines().filter(|l| {
        ["WARN", "ERROR", "partitions", "commit"]
            .iter()
            .any(|w| l.contains(w))
    });
    let metrics = consumer.get("/metrics").1;
    let metrics = metrics.lines().filter(|l| {
        !l.starts_with('#') && (l.contains("offset_commits") || l.contains("revocations"))
    });
    lines.chain(metrics).collect::<Vec<_>>().join("\n")
}

#[test]
fn misconfiguration_is_rejected_with_the_fix() {
    let bin = env!("CARGO_BIN_EXE_fetch-consumer");
    let out = std::process::Command::new(bin)
        .args([
            "run",
            "--bootstrap-servers",
            &bootstrap(),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .args(["--input-topic", &unique("missing")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("create it"),
        "{stderr}"
    );

    let out = std::process::Command::new(bin)
        .args([
            "run",
            "--bootstrap-servers",
            &bootstrap(),
            "-X",
            "no.such.property=1",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no.such.property"), "{stderr}");
}

#[test]
fn a_replica_left_without_partitions_is_a_ready_standby() {
    let (input, output, dlq) = topics(1);
    let group = unique("group");
    let first = ConsumerProcess::start(&group, &input, &output, &dlq, &[]);
    wait_until("the first replica ready", || first.get("/readyz").0 == 200);
    // A second member gets nothing to consume: it must still be ready, or a Deployment
    // rolling a pipeline whose replicas equal its partitions would wait on it forever.
    let second = ConsumerProcess::start(&group, &input, &output, &dlq, &[]);
    wait_until("both replicas ready after the rebalance", || {
        first.get("/readyz").0 == 200 && second.get("/readyz").0 == 200
    });
    let assigned = |c: &ConsumerProcess| {
        let (_, metrics) = c.get("/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("fetch_consumer_assigned_partitions "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1)
    };
    wait_until("one partition, one owner", || {
        assigned(&first) + assigned(&second) == 1
    });
}

/// Runs the benchmarks' baseline, `--passthrough` with `flags`, over 1,000 records made from
/// `seed` until it stops by itself: the records sent, their copies, and the dead-letter topic.
fn passthrough_run(
    seed: u64,
    flags: &[&str],
) -> (Vec<Record>, Vec<rdkafka::message::OwnedMessage>, String) {
    let (input, output, dlq) = topics(2);
    let records = records(1_000, seed);
    produce(&input, &records);
    let n = records.len().to_string();
    let args: Vec<&str> = ["--passthrough", "--max-records", &n]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    let mut consumer = ConsumerProcess::start(&unique("group"), &input, &output, &dlq, &args);
    let status = consumer.child.wait().expect("wait");
    assert!(status.success(), "exits 0:\n{}", consumer.log());
    let copies = read_all(&output, records.len());
    (records, copies, dlq)
}

/// The benchmarks' baseline: every record copied to the output unchanged (key and bytes, the
/// malformed ones too), through the same clients and threads, then the run stops by itself.
#[test]
fn the_passthrough_baseline_copies_every_record_unchanged() {
    let (records, copies, dlq) = passthrough_run(19, &[]);
    let copied: HashSet<(Vec<u8>, Option<Vec<u8>>)> = copies
        .iter()
        .map(|m| {
            (
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            )
        })
        .collect();
    let sent: HashSet<(Vec<u8>, Option<Vec<u8>>)> = records.into_iter().collect();
    assert_eq!(copied, sent);
    assert_eq!(total(&end_offsets(&dlq)), 0, "nothing is dead-lettered");
}

/// The re-keyed baseline (`--passthrough-key user-id`): every record copied unchanged, keyed
/// as the pipeline keys its output, by the event's `user_id` (a record without one keeps its
/// own key).
#[test]
fn the_rekeyed_passthrough_keys_each_copy_by_its_user_id() {
    let (records, copies, dlq) = passthrough_run(23, &["--passthrough-key", "user-id"]);
    // A plain (unescaped), non-empty user_id string, trimmed: what the copy is keyed by.
    let user_id = |value: &[u8]| -> Option<Vec<u8>> {
        let event: serde_json::Value = serde_json::from_slice(value).ok()?;
        let id = event.get("user_id")?.as_str()?.trim();
        (!id.is_empty() && !value.contains(&b'\\')).then(|| id.as_bytes().to_vec())
    };
    // A value's input keys (a malformed value can repeat under different keys).
    let mut input_keys: HashMap<Option<Vec<u8>>, HashSet<Vec<u8>>> = HashMap::new();
    for (key, value) in &records {
        input_keys
            .entry(value.clone())
            .or_default()
            .insert(key.clone());
    }
    assert_eq!(copies.len(), records.len(), "every record is copied once");
    let (mut rekeyed, mut kept) = (0, 0);
    for copy in &copies {
        let (key, value) = (copy.key().map(<[u8]>::to_vec), copy.payload());
        let mentions_user_id = value.is_some_and(|v| v.windows(9).any(|w| w == b"\"user_id\""));
        if let Some(id) = value.and_then(user_id) {
            assert_eq!(key, Some(id), "keyed by its user_id");
            rekeyed += 1;
        } else if !mentions_user_id {
            let own = input_keys.get(&value.map(<[u8]>::to_vec));
            assert!(
                key.is_some_and(|k| own.is_some_and(|own| own.contains(&k))),
                "without a user_id, a copy keeps its own key"
            );
            kept += 1;
        }
    }
    assert!(rekeyed >= records.len() * 9 / 10, "{rekeyed} re-keyed");
    assert!(
        kept >= 2,
        "the records without a user_id (no payload, big) keep their keys"
    );
    let values = |all: Vec<Option<Vec<u8>>>| {
        let mut all = all;
        all.sort();
        all
    };
    assert_eq!(
        values(
            copies
                .iter()
                .map(|m| m.payload().map(<[u8]>::to_vec))
                .collect()
        ),
        values(records.into_iter().map(|(_, value)| value).collect()),
        "the values are copied unchanged"
    );
    assert_eq!(total(&end_offsets(&dlq)), 0, "nothing is dead-lettered");
}

/// A backlog's records are held and produced a partition at a time (`--backlog-hold-bytes`),
/// its dead letters kept through the releases for fullness: every event still arrives once,
/// and each user's events keep their order in the output and in the dead-letter topic, as
/// they had it in the input.
#[test]
fn a_held_backlog_keeps_each_users_events_in_order_and_loses_nothing() {
    let (input, output, dlq) = topics(3);
    let (users, per_user) = (50u64, 40u64);
    // Round-robin over the users, each user's timestamps rising: the input's order per user.
    let records: Vec<Record> = (0..per_user)
        .flat_map(|seq| (0..users).map(move |user| (user, seq)))
        .map(|(user, seq)| {
            let user_id = format!("{user:08x}-0000-4000-8000-{user:012x}");
            let mut event = format!(
                r#"{{"user_id": "{user_id}", "app_version": "2.3.0", "device_type": "android", "ip": "8.8.{user}.{seq}", "locale": "NY", "device_id": "{user_id}", "timestamp": {}}}"#,
                1_700_000_000 + seq
            );
            // One in five cut short: a dead letter.
            if seq % 5 == 4 {
                event.pop();
            }
            (user_id.into_bytes(), Some(event.into_bytes()))
        })
        .collect();
    let dead = records.len() / 5;
    produce(&input, &records);
    // Small batches and a small hold: the backlog releases many times, full and at its end.
    let consumer = ConsumerProcess::start(
        &unique("group"),
        &input,
        &output,
        &dlq,
        &["--batch-size", "64", "--backlog-hold-bytes", "16384"],
    );
    let mut out = read_all(&output, records.len() - dead);
    let dead_letters = read_all(&dlq, dead);
    assert_eq!(
        consumer.metric("fetch_consumer_backlog_held_records_total"),
        records.len() as f64,
        "every record went through the hold"
    );
    // A release carries at most 16 KiB and a record, and the 1,600 output records (about 350
    // bytes each as the hold counts them) take about 35 of those: half is a bound with room.
    let releases = consumer.metric("fetch_consumer_backlog_hold_releases_total");
    assert!(releases >= 17.0, "{releases} releases");
    let log = consumer.log();
    let (code, _) = consumer.terminate();
    assert_eq!(code, Some(0), "exits 0:\n{log}");

    out.sort_by_key(|m| (m.partition(), m.offset()));
    let mut last_seen: HashMap<String, (i32, i64)> = HashMap::new();
    let mut events = HashSet::new();
    for m in &out {
        let event: serde_json::Value =
            serde_json::from_slice(m.payload().expect("a value")).expect("JSON");
        let user = event["user_id"].as_str().expect("user_id").to_owned();
        let timestamp = event["timestamp"].as_i64().expect("timestamp");
        assert!(
            events.insert((user.clone(), timestamp)),
            "{user} {timestamp} twice"
        );
        if let Some((partition, before)) =
            last_seen.insert(user.clone(), (m.partition(), timestamp))
        {
            assert_eq!(partition, m.partition(), "{user}'s events in one partition");
            assert!(before < timestamp, "{user}: {timestamp} after {before}");
        }
    }
    assert_eq!(events.len(), records.len() - dead, "every event once");

    // The dead letters are the input's records, byte for byte: each user's in input order.
    let seq_of: HashMap<&[u8], u64> = records
        .iter()
        .zip((0..per_user).flat_map(|seq| (0..users).map(move |_| seq)))
        .filter_map(|((_, value), seq)| value.as_deref().map(|v| (v, seq)))
        .collect();
    let mut last_dead: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for m in &dead_letters {
        let value = m.payload().expect("the input's value");
        let seq = *seq_of.get(value).expect("a dead letter is an input record");
        assert_eq!(seq % 5, 4, "only the cut-short events are dead letters");
        assert!(seen.insert(value.to_vec()), "a dead letter twice");
        let user = m.key().expect("the input's key").to_vec();
        if let Some(before) = last_dead.insert(user, seq) {
            assert!(
                before < seq,
                "dead letters out of order: {seq} after {before}"
            );
        }
    }
    assert_eq!(seen.len(), dead, "every dead letter once");
}

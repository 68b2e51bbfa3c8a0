//! `--guarantee exactly-once` under faults, on the real broker, checked record by record as a
//! read_committed reader sees the output and dead-letter topics: each input record's result
//! exactly once, none missing, none twice.
//!
//! - A consumer SIGKILLed mid-stream (its transaction left open) and replaced: by a process
//!   with another transactional id (a new pod), whose results read_committed readers see only
//!   once the broker has aborted the killed one's transaction; or with the same id (a
//!   container restarted in its pod), whose start aborts it at once. Each prints the pauses
//!   from the kill to the first commit after it and to the first new result visible.
//! - A consumer SIGKILLed while draining a backlog whose records are held
//!   (`--backlog-hold-bytes`), restarted with its id: no commit counted a held record.
//! - A second consumer joining and leaving mid-stream (two cooperative rebalances).
//! - A record the output topic refuses for good, alone or mid-stream: the transaction aborts
//!   and the consumer exits 1 naming the record, as at least once does; nothing of the aborted
//!   transaction is visible. Once the topic takes it, a restart delivers everything exactly
//!   once. The same for a record the producer refuses itself, as it is handed over.
//!
//! The broker restarted mid-stream, in both modes, is in `faults.rs`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use support::*;

const EXACTLY_ONCE: [&str; 2] = ["--guarantee", "exactly-once"];

/// `fetch-consumer run --guarantee exactly-once` with `extra`, on the shared broker.
fn start(group: &str, t: &Topics, extra: &[&str]) -> ConsumerProcess {
    let args: Vec<&str> = EXACTLY_ONCE.iter().chain(extra).copied().collect();
    start_consumer(&bootstrap(), group, t, &args)
}

/// Produces `records` as a steady stream (1,000 every 100 ms) on a thread of its own.
fn stream<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    topic: &'s str,
    records: &'s [Record],
) -> std::thread::ScopedJoinHandle<'s, ()> {
    scope.spawn(move || {
        // No moment to outlast: the records once, then stop.
        let passed = AtomicBool::new(true);
        let pace = (1_000, Duration::from_millis(100));
        steady_stream(records, pace, &passed, 0, |c| produce(topic, c));
    })
}

fn committed_total(group: &str, topic: &str) -> i64 {
    total(&committed(group, topic))
}

/// Results a read_committed reader sees now (outputs and dead letters).
fn visible(t: &Topics) -> usize {
    read_to_end(&bootstrap(), &t.output).len() + read_to_end(&bootstrap(), &t.dead_letter).len()
}

/// Asserts the topics hold each input record's result exactly once, as a read_committed
/// reader sees them once every transaction has ended; returns the tally. (A transaction left
/// open by a killed consumer holds back what such a reader sees after it, until the broker
/// aborts it.)
fn assert_exactly_once(t: &Topics, what: &str) -> Tally {
    let mut tally = Tally::of(&bootstrap(), t);
    wait_until("a read_committed reader to see every result", || {
        tally = Tally::of(&bootstrap(), t);
        tally.lost_outputs == 0 && tally.lost_dead_letters == 0
    });
    eprintln!(
        "{what}: {} input records; lost {} outputs, {} dead letters; duplicates {} outputs, {} dead letters",
        tally.input,
        tally.lost_outputs,
        tally.lost_dead_letters,
        tally.duplicate_outputs,
        tally.duplicate_dead_letters
    );
    tally.assert_nothing_lost();
    assert_eq!(
        (tally.duplicate_outputs, tally.duplicate_dead_letters),
        (0, 0),
        "{what}: exactly once means no duplicates: {tally:?}"
    );
    tally
}

/// Kills a consumer mid-stream and starts another in its place, with the same transactional
/// id or not. Returns two pauses from the kill: to the replacement's first commit of input
/// offsets, and to the first new result a read_committed reader sees (held back by the killed
/// consumer's open transaction until it is aborted).
fn killed_and_replaced(same_id: bool) -> (Duration, Duration) {
    let t = topics_on(&bootstrap(), 4, 4, &[]);
    let group = unique("group");
    let input = records(30_000, 41);
    // A session shorter than the default 45 s, so the group drops the killed member soon.
    let mut extra = vec!["-X", "session.timeout.ms=6000"];
    let id = format!("transactional.id={group}.fixed");
    if same_id {
        extra.extend(["-X", &id]);
    }
    std::thread::scope(|scope| {
        let producing = stream(scope, &t.input, &input);
        let first = start(&group, &t, &extra);
        wait_until("a third of the stream committed", || {
            committed_total(&group, &t.input) > 10_000
        });
        first.kill();
        let killed = Instant::now();
        let committed_at_kill = committed_total(&group, &t.input);
        let visible_at_kill = visible(&t);
        let second = start(&group, &t, &extra);
        let (mut committed_after, mut visible_after) = (None, None);
        wait_until("the replacement's results visible", || {
            if committed_after.is_none() && committed_total(&group, &t.input) > committed_at_kill {
                committed_after = Some(killed.elapsed());
            }
            if visible_after.is_none() && visible(&t) > visible_at_kill {
                visible_after = Some(killed.elapsed());
            }
            committed_after.is_some() && visible_after.is_some()
        });
        producing.join().expect("the producing thread");
        wait_until("every input offset committed", || {
            committed_everything(&bootstrap(), &group, &t.input)
        });
        assert_exactly_once(
            &t,
            &format!(
                "SIGKILL mid-stream, replaced {} transactional id",
                if same_id {
                    "with the same"
                } else {
                    "with another"
                }
            ),
        );
        let (code, _) = second.terminate();
        assert_eq!(code, Some(0), "SIGTERM exits 0");
        (
            committed_after.unwrap_or_default(),
            visible_after.unwrap_or_default(),
        )
    })
}

/// A new pod: the broker aborts the killed one's open transaction at its timeout (30 s). Until
/// then the partitions' committed offsets cannot be read if it had sent them, and a
/// read_committed reader sees nothing after its first record either way.
#[test]
fn a_consumer_killed_mid_stream_and_replaced_by_a_new_one_leaves_each_result_once() {
    let (committed, visible) = killed_and_replaced(false);
    eprintln!(
        "exactly once, SIGKILL then a replacement with another transactional id: first commit {:.1}s, first new result visible {:.1}s after the kill",
        committed.as_secs_f64(),
        visible.as_secs_f64()
    );
}

/// A container restarted in its pod keeps its transactional id: its start fences the killed
/// producer and aborts its transaction at once; the group's session timeout is what is left.
#[test]
fn a_consumer_killed_mid_stream_and_restarted_with_its_id_leaves_each_result_once() {
    let (committed, visible) = killed_and_replaced(true);
    eprintln!(
        "exactly once, SIGKILL then a restart with the same transactional id: first commit {:.1}s, first new result visible {:.1}s after the kill",
        committed.as_secs_f64(),
        visible.as_secs_f64()
    );
}

/// A backlog drained with its records held (`--backlog-hold-bytes`): a transaction commits the
/// offsets of every record handled before it, so what is held goes to the producer before the
/// commit. Killed mid-drain, after commits that found records held, and restarted with its
/// id, the consumer leaves each result once: no commit counted a record it had not produced.
#[test]
fn a_consumer_killed_while_draining_a_held_backlog_leaves_each_result_once() {
    let t = topics_on(&bootstrap(), 4, 4, &[]);
    let group = unique("group");
    produce(&t.input, &records(200_000, 50));
    let id = format!("transactional.id={group}.fixed");
    // Transactions due every 5,000 records, a hold of about 3,000: most commits find records
    // held. Small batches, so another waits behind most. A session shorter than the default
    // 45 s, so the group drops the killed member soon.
    let extra = [
        "--batch-size",
        "256",
        "--backlog-hold-bytes",
        "1048576",
        "--transaction-max-records",
        "5000",
        "-X",
        &id,
        "-X",
        "session.timeout.ms=6000",
    ];
    let first = start(&group, &t, &extra);
    wait_until("a quarter of the backlog committed", || {
        committed_total(&group, &t.input) > 50_000
    });
    let released_for_commits =
        first.metric("fetch_consumer_backlog_hold_releases_total{reason=\"commit\"}");
    first.kill();
    assert!(
        released_for_commits > 0.0,
        "commits found records held and released them first"
    );
    let second = start(&group, &t, &extra);
    wait_until("every input offset committed", || {
        committed_everything(&bootstrap(), &group, &t.input)
    });
    let (code, _) = second.terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0");
    assert_exactly_once(&t, "SIGKILL while draining a held backlog");
}

#[test]
fn a_second_consumer_joining_and_leaving_mid_stream_leaves_each_result_once() {
    let t = topics_on(&bootstrap(), 6, 4, &[]);
    let group = unique("group");
    let input = records(40_000, 43);
    std::thread::scope(|scope| {
        let producing = stream(scope, &t.input, &input);
        let first = start(&group, &t, &[]);
        wait_until("a quarter of the stream committed", || {
            committed_total(&group, &t.input) > 10_000
        });
        let second = start(&group, &t, &[]);
        wait_until("the second consumer assigned partitions", || {
            second.log().contains("partitions assigned")
        });
        wait_until("more than half the stream committed", || {
            committed_total(&group, &t.input) > 22_000
        });
        let (code, _) = second.terminate();
        assert_eq!(code, Some(0), "the second consumer leaves cleanly");
        producing.join().expect("the producing thread");
        wait_until("every input offset committed", || {
            committed_everything(&bootstrap(), &group, &t.input)
        });
        let log = first.log();
        assert!(
            log.matches("partitions revoked").count() >= 1,
            "the first consumer gave partitions up when the second joined:\n{log}"
        );
        let (code, _) = first.terminate();
        assert_eq!(code, Some(0));
    });
    assert_exactly_once(&t, "a second consumer joining and leaving");
}

/// An output record larger than the output topic's `max.message.bytes`, with a few records
/// after it: the refusal comes back once the consumer has handed everything over.
#[test]
fn a_record_the_output_topic_refuses_aborts_and_stops_and_after_the_fix_each_result_is_there_once()
{
    refused_then_fixed(Refuser::OutputTopic, 100, 46);
}

/// The same record mid-stream: the refusal comes back while the consumer is still producing
/// what follows, so librdkafka refuses those records at once (its transaction can only abort
/// now) before the refused record's report is served. The report is still what names the
/// cause, and the abort serves it.
#[test]
fn a_record_the_output_topic_refuses_mid_stream_is_named_as_the_cause_and_nothing_after_it_shows() {
    refused_then_fixed(Refuser::OutputTopic, 40_000, 47);
}

/// A record the producer refuses itself, when it is handed to the producer (larger than the
/// client's `message.max.bytes`; held first, it is refused at the hold's release), mid-stream:
/// no delivery report ever names it, so the stage's error is what stops the consumer, and the
/// open transaction, which counts the refused record's offset and those after it, must abort
/// rather than commit.
#[test]
fn a_record_the_producer_refuses_when_handed_over_aborts_and_commits_nothing_from_it_on() {
    refused_then_fixed(Refuser::Producer, 2_000, 49);
}

/// Who refuses the large record, and so what fixes it.
#[derive(Clone, Copy, PartialEq)]
enum Refuser {
    /// The broker, for the output topic's `max.message.bytes`: a delivery report says so.
    OutputTopic,
    /// The consumer's own producer, for its `message.max.bytes`, when the record is handed
    /// over.
    Producer,
}

/// Sends 150 records, then a record `refuser` refuses followed by `after` others; checks the
/// consumer aborts and exits 1 naming the refusal, with nothing from the refused record on
/// visible or committed; then raises the limit and checks a restart delivers each result once.
fn refused_then_fixed(refuser: Refuser, after: usize, seed: u64) {
    let bs = bootstrap();
    let (topic_limit, client_limit): (&[(&str, &str)], &[&str]) = match refuser {
        Refuser::OutputTopic => (&[("max.message.bytes", "49152")], &[]),
        Refuser::Producer => (&[], &["-X", "message.max.bytes=49152"]),
    };
    let t = topics_on(&bs, 1, 3, topic_limit);
    let group = unique("group");
    let before = records(150, 45);
    produce(&t.input, &before);
    let mut first = start(&group, &t, client_limit);
    wait_until("the records before it committed", || {
        committed_everything(&bs, &group, &t.input)
    });
    let refused_offset = before.len() as i64;
    let mut batch = vec![large_event_of(60_000)];
    batch.extend(records(after, seed));
    produce(&t.input, &batch);
    let code = wait_for_exit(&mut first);
    let log = first.log();
    assert_eq!(code, Some(1), "a record refused for good exits 1:\n{log}");
    assert!(
        log.contains("MessageSizeTooLarge")
            && (refuser == Refuser::Producer || log.contains("delivery failed for good")),
        "the last words say why:\n{log}"
    );
    assert!(
        log.contains("transaction aborted"),
        "its transaction is aborted:\n{log}"
    );
    assert_eq!(
        committed(&group, &t.input),
        HashMap::from([(0, refused_offset)]),
        "nothing from the refused record on is committed"
    );
    assert_eq!(
        visible(&t) as i64,
        refused_offset,
        "a read_committed reader sees only the results committed before it"
    );

    if refuser == Refuser::OutputTopic {
        set_topic_config(&bs, &t.output, &[("max.message.bytes", "1048588")]);
    }
    let second = start(&group, &t, &[]);
    wait_until("the restarted consumer to commit everything", || {
        committed_everything(&bs, &group, &t.input)
    });
    let (code, _) = second.terminate();
    assert_eq!(code, Some(0));
    assert_exactly_once(&t, "a refused record, then the fix");
}

/// A valid event of about 60 KB of random letters: under the default `--max-event-bytes`
/// (64 KiB), over the output topic's 48 KiB.
fn large_event_of(bytes: usize) -> Record {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let device_id: String = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let value = serde_json::json!({
        "user_id": "large-eos", "app_version": "2.3.0", "device_type": "android",
        "ip": "10.1.2.3", "locale": "RU", "device_id": device_id, "timestamp": 1_694_479_551,
    });
    (b"large-eos".to_vec(), Some(value.to_string().into_bytes()))
}

//! Records held back while more input waits, then produced a partition at a time.
//!
//! The rule: while more input waits behind the batch the stage is working on (a backlog), the
//! records it makes (for the output topic and the dead-letter topic) are held, up to
//! `--backlog-hold-bytes`, each counted with its key, value, headers and bookkeeping. Once
//! nothing more waits, or the hold is full (checked at every record), they go to the producer
//! grouped by topic and by the partition librdkafka will give each (`kafka::partitioner`).
//! Each record's delivery report still acknowledges its input offset, held or not, so an
//! offset is committed only after its record was delivered. A revocation or a shutdown waits
//! for the stage to finish what it was handed, and its last batch has nothing behind it, so
//! the hold is empty by the flush that follows (unless that wait times out, or the stage
//! stopped on an error: then what is held is neither delivered nor committed, exactly once
//! aborts, and the partitions' next owner reads it again, as the rest of the batches the stage
//! had not finished).
//!
//! Exactly once, a transaction commits the input offsets of every record handled before it,
//! so the records held go to the producer before it commits: once its commit is due (its
//! interval or its records), the stage releases them after the batch it was working on, and a
//! commit waits while anything is held. A stage that stopped on an error aborts instead.
//!
//! Why: librdkafka puts one partition in each produce request and sends a partition's batch
//! `linger.ms` after its first record. Produced as they are made, a backlog's records leave
//! in batches of what one partition gathers in a linger (a few hundred records), and a produce
//! request costs the broker about the same whatever it carries (docs/benchmarks.md §8).
//! Produced together and a partition at a time, each partition's share reaches librdkafka
//! well within its linger and leaves in one batch. A stage with nothing waiting holds
//! nothing, so at a steady rate records leave as soon as they are made, as before.
//!
//! Order: the grouping is stable and a key always forecasts the same partition, so one key's
//! records (one user's) keep their order in each topic, as do each partition's. A record
//! without a key is grouped with partition 0's (where librdkafka puts it depends on the
//! partitioner: at random for the `*_random` ones).

use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, OwnedHeaders};

use crate::kafka::partitioner::Partitioner;
use crate::kafka::stage::copy_into;

/// The topic a held record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Destination {
    Output,
    DeadLetter,
}

/// Records made but not yet handed to the producer.
#[derive(Debug)]
pub(super) struct Held {
    bytes: Vec<u8>,
    records: Vec<HeldRecord>,
    output: Partitioner,
    dead_letter: Partitioner,
    capacity_bytes: usize,
    /// What the held records take: keys, values, headers and a [`HeldRecord`] each.
    used_bytes: usize,
    /// When the oldest held record was pushed.
    since: Option<Instant>,
    waits: HoldWaits,
}

/// How long records waited in the hold, over a run: what the hold adds to their latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct HoldWaits {
    pub(super) releases: u64,
    pub(super) records: u64,
    /// Summed over releases: the oldest record's wait in each.
    pub(super) total: Duration,
    pub(super) longest: Duration,
    /// The last release's oldest record's wait.
    pub(super) last: Duration,
}

#[derive(Debug)]
struct HeldRecord {
    destination: Destination,
    partition: u32,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Option<OwnedHeaders>,
    token: usize,
}

/// What lies ahead of the stage when it asks whether the held records go.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ahead {
    /// Another input batch waits behind the one just worked on.
    pub(super) more_input: bool,
    /// Exactly once: the open transaction is due to commit.
    pub(super) commit: bool,
}

/// Why held records go to the producer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// The hold is full, whatever waits.
    Full,
    /// A transaction is due to commit, and commits only what was produced.
    Commit,
    /// Nothing more waits.
    CaughtUp,
}

impl Release {
    /// The `reason` label of `backlog_hold_releases_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Release::Full => "full",
            Release::Commit => "commit",
            Release::CaughtUp => "caught_up",
        }
    }
}

/// One held record as it is handed back: where to, key, value, headers and its token.
pub(super) type Released<'a> = (
    Destination,
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<OwnedHeaders>,
    usize,
);

impl Held {
    /// A hold of up to `capacity_bytes` of keys and values (0: nothing is held), grouped by
    /// the forecasts for the output topic and for the dead-letter topic.
    pub(super) fn new(
        output: Partitioner,
        dead_letter: Partitioner,
        capacity_bytes: usize,
    ) -> Self {
        Held {
            bytes: Vec::new(),
            records: Vec::new(),
            output,
            dead_letter,
            capacity_bytes,
            used_bytes: 0,
            since: None,
            waits: HoldWaits::default(),
        }
    }

    /// How long records have waited in the hold so far.
    pub(super) fn waits(&self) -> HoldWaits {
        self.waits
    }

    /// Whether records are held at all.
    pub(super) fn enabled(&self) -> bool {
        self.capacity_bytes > 0
    }

    /// Holds one record for `destination` until the next [`Held::release`].
    pub(super) fn push(
        &mut self,
        destination: Destination,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        token: usize,
    ) {
        let partitioner = match destination {
            Destination::Output => self.output,
            Destination::DeadLetter => self.dead_letter,
        };
        let partition = key.map_or(0, |k| partitioner.partition(k));
        // The clock is read once per release, for its first record only.
        self.since.get_or_insert_with(Instant::now);
        // A record with no key and no value still takes room: the bound holds for any input.
        self.used_bytes += std::mem::size_of::<HeldRecord>()
            + key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers.as_ref().map_or(0, headers_len);
        let key = copy_into(&mut self.bytes, key);
        let value = copy_into(&mut self.bytes, value);
        self.records.push(HeldRecord {
            destination,
            partition,
            key,
            value,
            headers,
            token,
        });
    }

    /// How many records are held.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the hold is full: its records must go, whatever waits.
    pub(super) fn full(&self) -> bool {
        !self.records.is_empty() && self.used_bytes >= self.capacity_bytes
    }

    /// Whether the held records must go now, and why: the hold is full, a transaction is due
    /// to commit, or nothing more waits.
    pub(super) fn due(&self, ahead: Ahead) -> Option<Release> {
        if self.records.is_empty() {
            None
        } else if self.full() {
            Some(Release::Full)
        } else if ahead.commit {
            Some(Release::Commit)
        } else if !ahead.more_input {
            Some(Release::CaughtUp)
        } else {
            None
        }
    }

    /// Hands every held record to `send`, a topic and a forecast partition at a time, each
    /// partition's in the order they were held. Stops at the first error; the hold is empty
    /// either way (records never sent are never acknowledged, so their offsets are not
    /// committed).
    pub(super) fn release<E>(
        &mut self,
        mut send: impl FnMut(Released<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.records.is_empty() {
            return Ok(());
        }
        let waited = self.since.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.waits.releases += 1;
        self.waits.records += self.records.len() as u64;
        self.waits.total += waited;
        self.waits.longest = self.waits.longest.max(waited);
        self.waits.last = waited;
        // Stable: records of one partition stay in the order they were held.
        self.records.sort_by_key(|r| (r.destination, r.partition));
        let bytes = &self.bytes;
        let slice = |range: Option<Range<usize>>| range.map(|r| &bytes[r]);
        let outcome = self.records.drain(..).try_for_each(|r| {
            send((
                r.destination,
                slice(r.key),
                slice(r.value),
                r.headers,
                r.token,
            ))
        });
        self.bytes.clear();
        self.used_bytes = 0;
        outcome
    }
}

fn headers_len(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, Headers};

    use super::*;
    use Destination::{DeadLetter, Output};

    type Sent = Vec<(Destination, Option<Vec<u8>>, Option<Vec<u8>>, usize)>;
    type HeadersSent = Vec<(String, Option<Vec<u8>>)>;

    fn released(held: &mut Held) -> Sent {
        released_with_headers(held).0
    }

    /// What a release hands over, and every header of it, in order.
    fn released_with_headers(held: &mut Held) -> (Sent, HeadersSent) {
        let (mut sent, mut headers_sent) = (Vec::new(), Vec::new());
        held.release(|(to, key, value, headers, token)| {
            if let Some(h) = headers {
                headers_sent.extend(
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))),
                );
            }
            sent.push((
                to,
                key.map(<[u8]>::to_vec),
                value.map(<[u8]>::to_vec),
                token,
            ));
            Ok::<(), ()>(())
        })
        .expect("no send fails");
        (sent, headers_sent)
    }

    fn crc32(partitions: usize) -> Partitioner {
        Partitioner::of(None, partitions)
    }

    fn hold(capacity_bytes: usize) -> Held {
        Held::new(crc32(4), crc32(2), capacity_bytes)
    }

    #[test]
    fn each_topics_partitions_go_together_and_one_keys_records_keep_their_order() {
        let mut held = hold(1 << 20);
        let keys: Vec<String> = (0..40).map(|i| format!("user-{}", i % 10)).collect();
        for (token, key) in keys.iter().enumerate() {
            let to = if token % 3 == 0 { DeadLetter } else { Output };
            held.push(to, Some(key.as_bytes()), Some(b"v"), None, token);
        }
        let sent = released(&mut held);
        assert_eq!(sent.len(), 40);
        let groups: Vec<(Destination, u32)> = sent
            .iter()
            .map(|(to, key, ..)| {
                let partitioner = if *to == Output { crc32(4) } else { crc32(2) };
                (*to, partitioner.partition(key.as_deref().expect("keyed")))
            })
            .collect();
        assert!(
            groups.windows(2).all(|w| w[0] <= w[1]),
            "a topic's partitions in runs: {groups:?}"
        );
        for key in &keys[..10] {
            for to in [Output, DeadLetter] {
                let tokens: Vec<usize> = sent
                    .iter()
                    .filter(|(t, k, ..)| *t == to && k.as_deref() == Some(key.as_bytes()))
                    .map(|(.., token)| *token)
                    .collect();
                assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{key}: {tokens:?}");
            }
        }
    }

    #[test]
    fn a_release_hands_over_every_record_once_as_it_was_held_and_empties_the_hold() {
        let mut held = Held::new(Partitioner::Unknown, Partitioner::Unknown, 1 << 20);
        held.push(Output, Some(b"k"), Some(b"{\"a\":1}"), None, 7);
        held.push(Output, None, Some(b"no key"), None, 8);
        held.push(Output, Some(b"tombstone"), None, None, 9);
        let headers = OwnedHeaders::new().insert(Header {
            key: "reason",
            value: Some("invalid_json"),
        });
        held.push(DeadLetter, Some(b"bad"), Some(b"{"), Some(headers), 10);
        let (sent, reasons) = released_with_headers(&mut held);
        assert_eq!(
            sent,
            vec![
                (Output, Some(b"k".to_vec()), Some(b"{\"a\":1}".to_vec()), 7),
                (Output, None, Some(b"no key".to_vec()), 8),
                (Output, Some(b"tombstone".to_vec()), None, 9),
                (DeadLetter, Some(b"bad".to_vec()), Some(b"{".to_vec()), 10),
            ]
        );
        assert_eq!(
            reasons,
            [("reason".to_owned(), Some(b"invalid_json".to_vec()))]
        );
        assert_eq!(held.due(CAUGHT_UP), None, "nothing left to release");
        assert!(released(&mut held).is_empty());
    }

    const CAUGHT_UP: Ahead = Ahead {
        more_input: false,
        commit: false,
    };
    const BACKLOG: Ahead = Ahead {
        more_input: true,
        commit: false,
    };
    const BACKLOG_AND_COMMIT: Ahead = Ahead {
        more_input: true,
        commit: true,
    };

    #[test]
    fn records_are_due_once_nothing_more_waits_a_commit_is_due_or_the_hold_is_full() {
        let record = std::mem::size_of::<HeldRecord>();
        let mut held = hold(2 * record + 10);
        for ahead in [CAUGHT_UP, BACKLOG, BACKLOG_AND_COMMIT] {
            assert_eq!(held.due(ahead), None, "an empty hold is never due");
        }
        held.push(Output, Some(b"k1"), Some(b"12345"), None, 0);
        assert_eq!(
            held.due(BACKLOG),
            None,
            "one record and 7 bytes, more waiting: held"
        );
        assert_eq!(held.due(CAUGHT_UP), Some(Release::CaughtUp));
        assert_eq!(
            held.due(BACKLOG_AND_COMMIT),
            Some(Release::Commit),
            "a transaction due to commit takes them, backlog or not"
        );
        held.push(DeadLetter, Some(b"k2"), Some(b"1"), None, 1);
        assert!(held.full());
        for ahead in [CAUGHT_UP, BACKLOG, BACKLOG_AND_COMMIT] {
            assert_eq!(
                held.due(ahead),
                Some(Release::Full),
                "full: due whatever waits"
            );
        }
    }

    #[test]
    fn every_record_counts_against_the_bound_even_with_no_key_or_value() {
        let record = std::mem::size_of::<HeldRecord>();
        let mut held = hold(3 * record);
        for token in 0..2 {
            held.push(DeadLetter, None, None, None, token);
            assert!(!held.full());
        }
        held.push(DeadLetter, None, None, None, 2);
        assert!(held.full(), "three empty records fill three records' room");
        let headers = OwnedHeaders::new().insert(Header {
            key: "reason",
            value: Some("x".repeat(100).as_str()),
        });
        let mut held = hold(record + 100);
        held.push(DeadLetter, None, None, Some(headers), 0);
        assert!(held.full(), "headers count too");
    }

    #[test]
    fn a_failed_send_stops_the_release_and_leaves_the_hold_empty() {
        let mut held = hold(1 << 20);
        for token in 0..5 {
            held.push(Output, Some(b"k"), Some(b"v"), None, token);
        }
        let mut tried = Vec::new();
        let outcome = held.release(|(.., token)| {
            tried.push(token);
            if token == 2 { Err("refused") } else { Ok(()) }
        });
        assert_eq!(outcome, Err("refused"));
        assert_eq!(tried, [0, 1, 2]);
        assert!(held.is_empty());
    }

    #[test]
    fn each_release_counts_its_records_and_how_long_its_oldest_waited() {
        let mut held = hold(1 << 20);
        held.push(Output, Some(b"k"), Some(b"v"), None, 0);
        std::thread::sleep(Duration::from_millis(5));
        held.push(Output, Some(b"k"), Some(b"v"), None, 1);
        released(&mut held);
        let waits = held.waits();
        assert_eq!((waits.releases, waits.records), (1, 2));
        assert!(waits.last >= Duration::from_millis(5), "{waits:?}");
        assert_eq!((waits.total, waits.longest), (waits.last, waits.last));
        released(&mut held);
        assert_eq!(held.waits(), waits, "an empty hold's release is no release");
        held.push(Output, Some(b"k"), Some(b"v"), None, 2);
        released(&mut held);
        let after = held.waits();
        assert_eq!((after.releases, after.records), (2, 3));
        assert!(after.last < waits.last, "the clock starts again: {after:?}");
    }

    #[test]
    fn a_hold_of_no_bytes_holds_nothing() {
        assert!(!hold(0).enabled());
        assert!(hold(1).enabled());
    }
}

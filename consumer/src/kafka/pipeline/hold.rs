//! Records held back while more input waits, then produced a partition at a time.
//!
//! The rule: while more input waits behind the batch the stage is working on (a backlog), the
//! records it makes (for the output topic and the dead-letter topic) are held, up to
//! `--backlog-hold-bytes`, each counted with its key, value, headers and bookkeeping, in a
//! lane per topic and per the partition librdkafka will give each (`kafka::partitioner`).
//! Once nothing more waits, or a transaction is due, they all go to the producer, a lane at a
//! time. Whenever the hold is full (checked at every record), the lanes holding the most go
//! until a quarter of the hold is free, with every lane whose oldest record has waited
//! [`KEPT_AT_MOST`] or more. Each record's delivery report still acknowledges its input offset, held or
//! not, so an offset is committed only after its record was delivered. A revocation or a
//! shutdown waits for the stage to finish what it was handed, and its last batch has nothing
//! behind it, so the hold is empty by the flush that follows (unless that wait times out, or
//! the stage stopped on an error: then what is held is neither delivered nor committed,
//! exactly once aborts, and the partitions' next owner reads it again, as the rest of the
//! batches the stage had not finished).
//!
//! Why the age bound: dead letters are few (about 1% of a typical stream), so a dead-letter
//! lane is seldom the fullest, and goes once its oldest record has waited; when every lane
//! went at each release, each dead-letter partition's tens of records made a request of
//! their own, a quarter of a drain's produce requests. The same bound keeps a quiet output
//! partition (a skewed key space) from waiting until the backlog ends. The cost, while a
//! backlog drains: a record can wait in the hold about [`KEPT_AT_MOST`] and one release more,
//! and its input offset, with its partition's later ones, commits that much later.
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
//! Handed over a lane at a time, a partition's held records reach librdkafka well within its
//! linger and leave in one batch. Why the fullest lanes only: with N partitions filling alike,
//! all of them released together would each carry 1/N of the hold; released the fullest
//! first, they stagger, and with a few partitions the fullest alone frees a quarter and leaves
//! with about 2/(N+1) of the hold, nearly twice the batch for the same memory. With thousands
//! of partitions, freeing a quarter keeps releases (and their work over the held lanes) few. The lanes keep their buffers between fills, up to a few holds' worth
//! together, so their memory stays bounded when the busy partitions change. A stage with
//! nothing waiting holds nothing past the end of its batch, so at a steady rate records leave
//! as soon as their batch is done, as before.
//!
//! Order: a lane keeps its records in the order they were held, a key always forecasts the
//! same partition, and a lane's records all go when it goes, so one key's records (one
//! user's) keep their order in each topic, as do each partition's. A record without a key
//! goes in partition 0's lane (where librdkafka puts it depends on the partitioner: at random
//! for the `*_random` ones).

use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, OwnedHeaders};

use crate::kafka::partitioner::Partitioner;
use crate::kafka::stage::copy_into;

/// How many holds' worth of buffers the lanes keep between fills (`Held::give_room_back`).
const ROOM_KEPT: usize = 4;

/// How long a lane may stay held through releases for fullness (module header).
pub(super) const KEPT_AT_MOST: Duration = Duration::from_millis(250);

/// The topic a held record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Destination {
    Output,
    DeadLetter,
}

/// Records made but not yet handed to the producer.
#[derive(Debug)]
pub(super) struct Held {
    output: Topic,
    dead_letter: Topic,
    /// The lanes that hold records, in no order: what a release looks at, however many
    /// partitions the topics have.
    active: Vec<(Destination, usize)>,
    capacity_bytes: usize,
    /// What the held records take, over every lane.
    used_bytes: usize,
    /// How many records are held, over every lane.
    len: usize,
    /// What every lane's buffers take, held or not.
    room: usize,
    /// How long a lane may stay through releases for fullness.
    kept_at_most: Duration,
    waits: HoldWaits,
}

/// One topic's held records, a lane per forecast partition.
#[derive(Debug)]
struct Topic {
    partitioner: Partitioner,
    lanes: Vec<Lane>,
}

/// One forecast partition's held records, in the order they were held.
#[derive(Debug, Default)]
struct Lane {
    bytes: Vec<u8>,
    records: Vec<HeldRecord>,
    /// What the held records take: keys, values, headers and a [`HeldRecord`] each.
    used_bytes: usize,
    /// When the oldest held record was pushed.
    since: Option<Instant>,
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
    /// The hold is full, mid-batch: the lanes holding the most go until a quarter of it is
    /// free, with every lane that has waited [`KEPT_AT_MOST`] (module header).
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
    /// A hold of up to `capacity_bytes` of keys and values (0: nothing is held), in lanes by
    /// the forecasts for the output topic and for the dead-letter topic; a lane stays through
    /// releases for fullness for up to `kept_at_most` ([`KEPT_AT_MOST`] in production).
    pub(super) fn new(
        output: Partitioner,
        dead_letter: Partitioner,
        capacity_bytes: usize,
        kept_at_most: Duration,
    ) -> Self {
        Held {
            output: Topic::new(output),
            dead_letter: Topic::new(dead_letter),
            active: Vec::new(),
            capacity_bytes,
            used_bytes: 0,
            len: 0,
            room: 0,
            kept_at_most,
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

    /// Holds one record for `destination` until a [`Held::release`] takes it.
    pub(super) fn push(
        &mut self,
        destination: Destination,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        token: usize,
    ) {
        let topic = pick(destination, &mut self.output, &mut self.dead_letter);
        let partition = key.map_or(0, |k| topic.partitioner.partition(k)) as usize;
        if topic.lanes.len() <= partition {
            topic.lanes.resize_with(partition + 1, Lane::default);
        }
        let lane = &mut topic.lanes[partition];
        let (was_empty, room) = (lane.records.is_empty(), lane.room());
        self.used_bytes += lane.push(key, value, headers, token);
        self.room = self.room + lane.room() - room;
        self.len += 1;
        if was_empty {
            self.active.push((destination, partition));
        }
    }

    /// How many records are held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the hold is full: records must go, whatever waits.
    pub(super) fn full(&self) -> bool {
        self.len > 0 && self.used_bytes >= self.capacity_bytes
    }

    /// Whether held records must go now, and why: a transaction is due to commit or nothing
    /// more waits (everything goes), or the hold is full. Everything first: a batch that ends
    /// with nothing behind it leaves nothing held, whatever the hold's size.
    pub(super) fn due(&self, ahead: Ahead) -> Option<Release> {
        if self.is_empty() {
            None
        } else if ahead.commit {
            Some(Release::Commit)
        } else if !ahead.more_input {
            Some(Release::CaughtUp)
        } else if self.full() {
            Some(Release::Full)
        } else {
            None
        }
    }

    /// Hands the held records that go for `why` to `send`, a topic and a forecast partition
    /// at a time, each partition's in the order they were held: all of them, but for a
    /// release for fullness only the lanes holding the most, until a quarter of the hold is
    /// free, and every lane that has waited `kept_at_most`. Stops at the first error; what was
    /// to go is gone either way (records never sent are never acknowledged, so their offsets
    /// are not committed).
    pub(super) fn release<E>(
        &mut self,
        why: Release,
        mut send: impl FnMut(Released<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let now = Instant::now();
        let mut going = if why == Release::Full {
            self.going_for_fullness(now)
        } else {
            std::mem::take(&mut self.active)
        };
        going.sort_unstable();
        let Some(oldest) = going.iter().filter_map(|&at| self.lane(at).since).min() else {
            return Ok(());
        };
        let waited = now.saturating_duration_since(oldest);
        let mut outcome = Ok(());
        let (mut records, mut bytes) = (0, 0);
        for &(destination, i) in &going {
            let lane = &mut pick(destination, &mut self.output, &mut self.dead_letter).lanes[i];
            records += lane.records.len();
            bytes += lane.used_bytes;
            if outcome.is_ok() {
                outcome = lane.release(destination, &mut send);
            } else {
                lane.clear();
            }
        }
        let (output, dead_letter) = (&self.output, &self.dead_letter);
        self.active.retain(|&(destination, i)| {
            !pick(destination, output, dead_letter).lanes[i]
                .records
                .is_empty()
        });
        self.len -= records;
        self.used_bytes -= bytes;
        self.waits.releases += 1;
        self.waits.records += records as u64;
        self.waits.total += waited;
        self.waits.longest = self.waits.longest.max(waited);
        self.waits.last = waited;
        self.give_room_back();
        outcome
    }

    /// For a release for fullness: the lanes holding the most until a quarter of the hold is
    /// free (with a few partitions, the fullest alone; with thousands, enough of them that
    /// releases stay few), and every lane that has waited `kept_at_most`.
    fn going_for_fullness(&self, now: Instant) -> Vec<(Destination, usize)> {
        let mut by_size = self.active.clone();
        by_size.sort_unstable_by_key(|&at| std::cmp::Reverse(self.lane(at).used_bytes));
        let mut freed = 0;
        by_size.retain(|&at| {
            let lane = self.lane(at);
            let goes = freed < self.capacity_bytes / 4
                || lane
                    .since
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.kept_at_most);
            if goes {
                freed += lane.used_bytes;
            }
            goes
        });
        by_size
    }

    fn lane(&self, (destination, i): (Destination, usize)) -> &Lane {
        &pick(destination, &self.output, &self.dead_letter).lanes[i]
    }

    /// Lanes keep their buffers for the next fill, unless together they keep more than
    /// [`ROOM_KEPT`] holds' worth (the busy partitions changed): then the empty lanes give
    /// theirs back. Shrinking every lane to what it last held instead cost the consumer
    /// buffers regrown after each small release.
    fn give_room_back(&mut self) {
        if self.room <= ROOM_KEPT * self.capacity_bytes {
            return;
        }
        for lane in self
            .output
            .lanes
            .iter_mut()
            .chain(&mut self.dead_letter.lanes)
        {
            if lane.records.is_empty() {
                self.room -= lane.room();
                *lane = Lane::default();
            }
        }
    }
}

impl Topic {
    fn new(partitioner: Partitioner) -> Self {
        Topic {
            partitioner,
            lanes: Vec::new(),
        }
    }
}

impl Lane {
    /// Holds one record; returns the bytes it takes.
    fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        token: usize,
    ) -> usize {
        // The clock is read once per lane and release, for the lane's first record only.
        self.since.get_or_insert_with(Instant::now);
        // A record with no key and no value still takes room: the bound holds for any input.
        let used = std::mem::size_of::<HeldRecord>()
            + key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers.as_ref().map_or(0, headers_len);
        self.used_bytes += used;
        let key = copy_into(&mut self.bytes, key);
        let value = copy_into(&mut self.bytes, value);
        self.records.push(HeldRecord {
            key,
            value,
            headers,
            token,
        });
        used
    }

    /// Every record to `send`, in the order they were held; empty after, whatever `send`
    /// returned.
    fn release<E>(
        &mut self,
        destination: Destination,
        send: &mut impl FnMut(Released<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let bytes = &self.bytes;
        let slice = |range: Option<Range<usize>>| range.map(|r| &bytes[r]);
        let outcome = self.records.drain(..).try_for_each(|r| {
            send((
                destination,
                slice(r.key),
                slice(r.value),
                r.headers,
                r.token,
            ))
        });
        self.clear();
        outcome
    }

    fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
        self.used_bytes = 0;
        self.since = None;
    }

    /// What the lane's buffers take, held or not.
    fn room(&self) -> usize {
        self.bytes.capacity() + self.records.capacity() * std::mem::size_of::<HeldRecord>()
    }
}

/// What of `output` and `dead_letter` belongs to `destination`.
fn pick<T>(destination: Destination, output: T, dead_letter: T) -> T {
    match destination {
        Destination::Output => output,
        Destination::DeadLetter => dead_letter,
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
        held.release(Release::CaughtUp, |(to, key, value, headers, token)| {
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

    /// A hold a quarter of which is one record's bookkeeping: the fullest lane of any
    /// release for fullness frees that much.
    const SMALL: usize = 4 * std::mem::size_of::<HeldRecord>();

    /// Lanes kept through releases for fullness for longer than any test runs.
    const KEPT: Duration = Duration::from_secs(3600);

    fn hold(capacity_bytes: usize) -> Held {
        Held::new(crc32(4), crc32(2), capacity_bytes, KEPT)
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
        let mut held = Held::new(Partitioner::Unknown, Partitioner::Unknown, 1 << 20, KEPT);
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
    fn records_are_due_once_nothing_more_waits_a_commit_is_due_or_the_hold_is_full_mid_backlog() {
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
        assert_eq!(held.due(BACKLOG), Some(Release::Full));
        assert_eq!(
            held.due(CAUGHT_UP),
            Some(Release::CaughtUp),
            "full but nothing more waits: everything goes, not one lane"
        );
        assert_eq!(held.due(BACKLOG_AND_COMMIT), Some(Release::Commit));
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
        let outcome = held.release(Release::CaughtUp, |(.., token)| {
            tried.push(token);
            if token == 2 { Err("refused") } else { Ok(()) }
        });
        assert_eq!(outcome, Err("refused"));
        assert_eq!(tried, [0, 1, 2]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_failed_send_in_a_release_for_fullness_leaves_the_lanes_it_did_not_take() {
        let keys = key_per_partition(4);
        let mut held = Held::new(crc32(4), crc32(2), SMALL, KEPT);
        for token in 0..3 {
            held.push(Output, Some(keys[0].as_bytes()), Some(b"v"), None, token);
        }
        held.push(Output, Some(keys[1].as_bytes()), Some(b"v"), None, 3);
        let outcome = held.release(Release::Full, |(.., token)| {
            if token == 1 { Err("refused") } else { Ok(()) }
        });
        assert_eq!(outcome, Err("refused"));
        assert_eq!(held.len(), 1, "the fullest lane is gone, sent or not");
        let left = std::mem::size_of::<HeldRecord>() + keys[1].len() + 1;
        assert_eq!(held.used_bytes, left, "what the other lane holds");
        assert_eq!(released_for(&mut held, Release::CaughtUp), [(Output, 3)]);
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

    /// What a release for `why` hands over: (destination, token) in order.
    fn released_for(held: &mut Held, why: Release) -> Vec<(Destination, usize)> {
        let mut sent = Vec::new();
        held.release(why, |(to, .., token)| {
            sent.push((to, token));
            Ok::<(), ()>(())
        })
        .expect("no send fails");
        sent
    }

    #[test]
    fn a_release_for_fullness_keeps_young_lanes_but_the_fullest_and_caught_up_takes_all() {
        let mut held = hold(SMALL);
        held.push(Output, Some(b"a"), Some(b"v"), None, 0);
        held.push(DeadLetter, Some(b"a"), Some(b"{"), None, 1);
        held.push(Output, Some(b"a"), Some(b"v"), None, 2);
        assert_eq!(
            released_for(&mut held, Release::Full),
            [(Output, 0), (Output, 2)]
        );
        assert_eq!(held.len(), 1, "the dead letter stays");
        held.push(DeadLetter, Some(b"a"), Some(b"}"), None, 3);
        held.push(Output, Some(b"a"), Some(b"v"), None, 4);
        assert_eq!(
            released_for(&mut held, Release::CaughtUp),
            [(Output, 4), (DeadLetter, 1), (DeadLetter, 3)],
            "caught up, everything goes; the kept dead letter before the later one"
        );
        assert!(held.is_empty());
    }

    #[test]
    fn a_commit_takes_every_lane() {
        let mut held = hold(1 << 20);
        held.push(DeadLetter, Some(b"a"), Some(b"{"), None, 0);
        held.push(Output, Some(b"a"), Some(b"v"), None, 1);
        assert_eq!(
            released_for(&mut held, Release::Commit),
            [(Output, 1), (DeadLetter, 0)]
        );
        assert!(
            held.is_empty(),
            "a transaction commits only what was produced"
        );
    }

    #[test]
    fn a_release_for_fullness_also_takes_every_lane_that_has_waited_long_enough() {
        let keys = key_per_partition(4);
        let mut held = Held::new(crc32(4), crc32(2), SMALL, Duration::from_millis(20));
        held.push(DeadLetter, Some(b"a"), Some(b"{"), None, 0);
        held.push(Output, Some(keys[3].as_bytes()), Some(b"quiet"), None, 1);
        std::thread::sleep(Duration::from_millis(25));
        for token in 2..5 {
            held.push(Output, Some(keys[0].as_bytes()), Some(b"v"), None, token);
        }
        held.push(Output, Some(keys[1].as_bytes()), Some(b"young"), None, 5);
        assert_eq!(
            released_for(&mut held, Release::Full),
            [
                (Output, 2),
                (Output, 3),
                (Output, 4),
                (Output, 1),
                (DeadLetter, 0)
            ],
            "the fullest lane, then the lanes that waited, in lane order; not the young one"
        );
        assert_eq!(released_for(&mut held, Release::CaughtUp), [(Output, 5)]);
    }

    #[test]
    fn a_lane_keeps_its_clock_until_it_goes() {
        let mut held = hold(SMALL);
        held.push(DeadLetter, Some(b"a"), Some(b"{"), None, 0);
        std::thread::sleep(Duration::from_millis(5));
        held.push(Output, Some(b"a"), Some(b"v"), None, 1);
        held.push(Output, Some(b"a"), Some(b"v"), None, 2);
        released_for(&mut held, Release::Full);
        assert!(
            held.waits().last < Duration::from_millis(5),
            "the output's wait: {:?}",
            held.waits()
        );
        held.push(Output, Some(b"a"), Some(b"v"), None, 3);
        released_for(&mut held, Release::CaughtUp);
        let waits = held.waits();
        assert!(
            waits.last >= Duration::from_millis(5),
            "the dead letter's: {waits:?}"
        );
        assert_eq!((waits.releases, waits.records), (2, 4));
    }

    /// A key for each of `partitions` partitions, as `crc32(partitions)` forecasts them.
    fn key_per_partition(partitions: usize) -> Vec<String> {
        let mut keys = vec![String::new(); partitions];
        let mut found = 0;
        for i in 0.. {
            let key = format!("user-{i}");
            let p = crc32(partitions).partition(key.as_bytes()) as usize;
            if keys[p].is_empty() {
                keys[p] = key;
                found += 1;
            }
            if found == partitions {
                break;
            }
        }
        keys
    }

    #[test]
    fn a_release_for_fullness_takes_the_lane_holding_the_most() {
        let keys = key_per_partition(4);
        let mut held = hold(SMALL);
        held.push(Output, Some(keys[1].as_bytes()), Some(b"v"), None, 0);
        for token in 1..4 {
            held.push(Output, Some(keys[2].as_bytes()), Some(b"v"), None, token);
        }
        held.push(Output, Some(keys[1].as_bytes()), Some(b"v"), None, 4);
        assert_eq!(
            released_for(&mut held, Release::Full),
            [(Output, 1), (Output, 2), (Output, 3)]
        );
        assert_eq!(
            released_for(&mut held, Release::CaughtUp),
            [(Output, 0), (Output, 4)]
        );
    }

    #[test]
    fn with_partitions_filling_alike_a_release_for_fullness_carries_about_two_shares() {
        // Six partitions filling alike: a release of the fullest carries about 2/7 of the hold
        // once they are staggered, against the 1/6 each would carry if all went together.
        let record = std::mem::size_of::<HeldRecord>() + 10;
        let keys = key_per_partition(6);
        let mut held = Held::new(crc32(6), crc32(2), 700 * record, KEPT);
        let mut carried = Vec::new();
        for token in 0..100_000 {
            let key = keys[token % 6].as_bytes();
            held.push(Output, Some(key), Some(&key[..4]), None, token);
            if held.full() {
                carried.push(released_for(&mut held, Release::Full).len());
            }
        }
        let steady = &carried[carried.len() / 2..];
        let mean = steady.iter().sum::<usize>() as f64 / steady.len() as f64;
        assert!(
            (190.0..=210.0).contains(&mean),
            "{mean} records per release"
        );
    }

    /// One record into the hold as the stage hands it over: held, then released for fullness
    /// until the hold is not full (`Outputs::send`). Returns what went.
    fn send_one(held: &mut Held, to: Destination, key: &[u8], value: &[u8], token: usize) -> usize {
        held.push(to, Some(key), Some(value), None, token);
        let mut sent = 0;
        while held.full() {
            sent += released_for(held, Release::Full).len();
        }
        sent
    }

    #[test]
    fn with_many_partitions_a_release_for_fullness_frees_a_quarter_of_the_hold() {
        let record = std::mem::size_of::<HeldRecord>() + 20;
        let capacity = 1_000 * record;
        let mut held = Held::new(crc32(1_000), crc32(2), capacity, KEPT);
        let (mut pushed, mut releases) = (0, 0);
        for token in 0..50_000usize {
            let key = format!("user-{:06}", token % 7_919);
            held.push(Output, Some(key.as_bytes()), Some(&[b'x'; 9]), None, token);
            pushed += 1;
            while held.full() {
                let before = held.used_bytes;
                released_for(&mut held, Release::Full);
                assert!(
                    before - held.used_bytes >= capacity / 4,
                    "freed {}",
                    before - held.used_bytes
                );
                releases += 1;
                let holding = held.output.lanes.iter().filter(|l| !l.records.is_empty());
                assert_eq!(held.active.len(), holding.count(), "the held lanes, listed");
            }
        }
        assert!(
            releases <= pushed / 250 + 1,
            "{releases} releases of {pushed} records"
        );
    }

    #[test]
    fn once_a_record_is_handed_over_the_hold_is_below_its_bound() {
        // Many partitions, and dead letters far bigger than the output records. The fullest
        // lane holds at least the record that filled the hold, so one release frees room.
        let partitions = 64;
        let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
        let big = [b'x'; 2_000];
        let capacity = 16 * 1024;
        let mut held = Held::new(crc32(partitions), crc32(partitions), capacity, KEPT);
        let (mut pushed, mut sent) = (0, 0);
        for token in 0..20_000usize {
            let key = keys[token * 7 % keys.len()].as_bytes();
            // Every mix of dead letters, from none to nearly all of them.
            let (to, value) = if token % 7 < (token / 1_000) % 8 {
                (DeadLetter, &big[..])
            } else {
                (Output, &big[..token % 10])
            };
            sent += send_one(&mut held, to, key, value, token);
            pushed += 1;
            assert!(!held.full(), "{} held of {capacity}", held.used_bytes);
        }
        sent += released_for(&mut held, Release::CaughtUp).len();
        assert_eq!(sent, pushed, "each record once");
        assert_eq!((held.len(), held.used_bytes), (0, 0));
    }

    #[test]
    fn the_lanes_keep_at_most_a_few_holds_of_room_between_fills() {
        let capacity = 64 * 1024;
        let mut held = Held::new(crc32(64), crc32(2), capacity, KEPT);
        let room = |held: &Held| {
            held.output
                .lanes
                .iter()
                .chain(&held.dead_letter.lanes)
                .map(Lane::room)
                .sum::<usize>()
        };
        // The busy partition changes: each key in turn fills most of the hold on its own.
        for (round, key) in key_per_partition(64).iter().enumerate() {
            for token in 0..400 {
                send_one(
                    &mut held,
                    Output,
                    key.as_bytes(),
                    &[b'x'; 100],
                    round * 400 + token,
                );
            }
            released_for(&mut held, Release::CaughtUp);
            assert_eq!(
                held.room,
                room(&held),
                "the running total is the lanes' room"
            );
            assert!(
                room(&held) <= (ROOM_KEPT + 1) * capacity,
                "{} bytes of room after {round} busy partitions",
                room(&held)
            );
        }
    }

    #[test]
    fn a_hold_of_no_bytes_holds_nothing() {
        assert!(!hold(0).enabled());
        assert!(hold(1).enabled());
    }
}

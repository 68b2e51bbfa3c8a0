//! The pipeline's topics checked record by record: what each input record should have made
//! (an output by its cleaned `user_id`, or a dead letter naming its source partition and
//! offset) against what the output and dead-letter topics hold, read as a read_committed
//! consumer sees them (so exactly-once transactions' aborted records do not count).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fetch_consumer::clean::Cleaner;
use fetch_consumer::dead_letter;
use fetch_consumer::generator::{Generator, GeneratorConfig};
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};

use super::{
    ConsumerProcess, TIMEOUT, committed_on, create_topic_on, create_topic_with, end_offsets_on,
    read_to_end, unique,
};

pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// Generated events, about 5% of them malformed, as the other pipeline tests use.
pub fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        variety: true,
        malformed: 0.05,
        ..Default::default()
    });
    let (mut key, mut value) = (Vec::new(), Vec::new());
    (0..n)
        .map(|_| {
            generator.next_record(1_730_326_892, &mut key, &mut value);
            (key.clone(), Some(value.clone()))
        })
        .collect()
}

pub struct Topics {
    pub input: String,
    pub output: String,
    pub dead_letter: String,
}

/// Fresh topics on the broker at `bootstrap`: input and output with the given partitions (the
/// output with `output_config`), a one-partition dead-letter topic.
pub fn topics_on(
    bootstrap: &str,
    input: i32,
    output: i32,
    output_config: &[(&str, &str)],
) -> Topics {
    let t = Topics {
        input: unique("in"),
        output: unique("out"),
        dead_letter: unique("dlq"),
    };
    create_topic_on(bootstrap, &t.input, input);
    create_topic_with(bootstrap, &t.output, output, output_config);
    create_topic_on(bootstrap, &t.dead_letter, 1);
    t
}

/// `fetch-consumer run` on the broker at `bootstrap`, over topics `t`.
pub fn start_consumer(bootstrap: &str, group: &str, t: &Topics, extra: &[&str]) -> ConsumerProcess {
    ConsumerProcess::start_on(bootstrap, group, &t.input, &t.output, &t.dead_letter, extra)
}

/// Waits for a consumer to exit by itself; panics with its log if it does not.
pub fn wait_for_exit(consumer: &mut ConsumerProcess) -> Option<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = consumer.child.try_wait().expect("try_wait") {
            // Its last words may still be on their way through the pipe.
            consumer.stderr.finish();
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the consumer did not exit:\n{}",
            consumer.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn committed_everything(bootstrap: &str, group: &str, topic: &str) -> bool {
    committed_on(bootstrap, group, topic) == end_offsets_on(bootstrap, topic)
}

/// The output and dead-letter topics against what the input asks for, record by record.
#[derive(Debug, Default)]
pub struct Tally {
    pub input: usize,
    pub lost_outputs: usize,
    pub lost_dead_letters: usize,
    pub duplicate_outputs: usize,
    pub duplicate_dead_letters: usize,
    /// Records out that no input record accounts for.
    pub unexpected: Vec<String>,
}

impl Tally {
    /// Every input record against the output and dead-letter topics.
    pub fn of(bootstrap: &str, t: &Topics) -> Tally {
        Tally::from(bootstrap, t, &HashMap::new())
    }

    /// The input records at or after `from` (by partition; from the start where absent)
    /// against the dead letters of those records and the whole output topic, which must hold
    /// nothing made before `from` (one re-created then).
    pub fn from(bootstrap: &str, t: &Topics, from: &HashMap<i32, i64>) -> Tally {
        let cleaner = Cleaner::default();
        let wanted =
            |(partition, offset): (i32, i64)| offset >= from.get(&partition).copied().unwrap_or(0);
        let mut want_out: HashMap<String, usize> = HashMap::new();
        let mut want_dead: HashSet<(i32, i64)> = HashSet::new();
        let input = read_to_end(bootstrap, &t.input);
        let input: Vec<&OwnedMessage> = input
            .iter()
            .filter(|m| wanted((m.partition(), m.offset())))
            .collect();
        for m in &input {
            match cleaner.clean(m.payload().unwrap_or_default()) {
                Ok(e) => *want_out.entry(e.user_id.into_owned()).or_default() += 1,
                Err(_) => {
                    want_dead.insert((m.partition(), m.offset()));
                }
            }
        }
        let mut out: HashMap<String, usize> = HashMap::new();
        for m in read_to_end(bootstrap, &t.output) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            *out.entry(key).or_default() += 1;
        }
        let mut dead: HashMap<(i32, i64), usize> = HashMap::new();
        for m in read_to_end(bootstrap, &t.dead_letter) {
            let source = source_of(&m);
            if wanted(source) {
                *dead.entry(source).or_default() += 1;
            }
        }
        let mut tally = Tally {
            input: input.len(),
            ..Tally::default()
        };
        for (id, &want) in &want_out {
            let got = out.get(id).copied().unwrap_or(0);
            tally.lost_outputs += want.saturating_sub(got);
            tally.duplicate_outputs += got.saturating_sub(want);
        }
        for position in &want_dead {
            match dead.get(position) {
                None => tally.lost_dead_letters += 1,
                Some(n) => tally.duplicate_dead_letters += n - 1,
            }
        }
        let stray_outputs = out.keys().filter(|id| !want_out.contains_key(*id));
        let stray_dead = dead.keys().filter(|p| !want_dead.contains(p));
        tally.unexpected = (stray_outputs.map(|id| format!("output {id}")))
            .chain(stray_dead.map(|p| format!("dead letter of {p:?}")))
            .collect();
        tally
    }

    pub fn assert_nothing_lost(&self) {
        assert!(
            self.lost_outputs == 0 && self.lost_dead_letters == 0 && self.unexpected.is_empty(),
            "records lost or unaccounted for: {self:?}"
        );
    }
}

/// The input partition and offset a dead letter names in its headers.
pub fn source_of(m: &OwnedMessage) -> (i32, i64) {
    let header = |name: &str| -> i64 {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or_else(|| panic!("a dead letter without a numeric {name} header"))
    };
    let partition = header(dead_letter::HEADER_SOURCE_PARTITION);
    let partition = i32::try_from(partition).expect("a partition number");
    (partition, header(dead_letter::HEADER_SOURCE_OFFSET))
}

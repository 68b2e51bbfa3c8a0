//! `fetch-consumer generate` into Kafka: paced production of synthetic events.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

use super::client_log;
use super::config::KafkaSettings;
use super::rebootstrap::BrokerLoss;
use super::send::send;
use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::telemetry::Shutdown;

/// How much to send and how fast.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Events per second; `None` sends as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Stop after this many events; `None` runs until stopped.
    pub count: Option<u64>,
}

/// The longest wait for the next event's time: a signal is answered within it at any rate.
const MAX_NAP: Duration = Duration::from_millis(100);

impl Pace {
    /// Whether `sent` events are all that was asked for.
    pub fn done(&self, sent: u64) -> bool {
        self.count.is_some_and(|c| sent >= c)
    }

    /// How long to wait at `now` before the event after `sent` is due, in a run that started
    /// at `started`: `None` when it is due (or there is no rate), else at most [`MAX_NAP`].
    pub fn nap(&self, started: Instant, sent: u64, now: Instant) -> Option<Duration> {
        let due = started + Duration::from_secs_f64(sent as f64 / self.rate?);
        due.checked_duration_since(now)
            .filter(|wait| !wait.is_zero())
            .map(|wait| wait.min(MAX_NAP))
    }
}

struct Reports {
    acknowledged: AtomicU64,
    failure: Mutex<Option<String>>,
    brokers: BrokerLoss,
}

impl Reports {
    fn new() -> Self {
        Reports {
            acknowledged: AtomicU64::new(0),
            failure: Mutex::new(None),
            brokers: BrokerLoss::new("generator"),
        }
    }

    /// Fails with the first delivery failure reported so far, if any.
    fn check(&self, topic: &str) -> Result<()> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match failure.take() {
            Some(f) => Err(Error::Delivery(format!("generating into {topic}: {f}"))),
            None => Ok(()),
        }
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.brokers.observe(&statistics);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Sends generated events to `topic` until the count is reached or `shutdown` is triggered;
/// returns the number of events the broker acknowledged. `sent` is updated as events are handed
/// over.
pub fn produce(
    settings: &KafkaSettings,
    topic: &str,
    generator: &mut Generator,
    pace: Pace,
    shutdown: &Shutdown,
    sent: &AtomicU64,
) -> Result<u64> {
    let producer: BaseProducer<Reports> =
        settings
            .producer()
            .create_with_context(Reports::new())
            .map_err(|e| Error::Config(format!("producer settings: {e}")))?;
    let started = Instant::now();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    while !pace.done(n) && !shutdown.is_triggered() {
        if let Some(nap) = pace.nap(started, n, Instant::now()) {
            std::thread::sleep(nap);
            serve(&producer, settings);
            continue;
        }
        generator.next_record(epoch_seconds(), &mut key, &mut value);
        let record = BaseRecord::to(topic).key(&key[..]).payload(&value[..]);
        send(&producer, record).map_err(Error::kafka(format!("producing to {topic}")))?;
        n += 1;
        sent.store(n, Ordering::Relaxed);
        if n.is_multiple_of(1024) {
            serve(&producer, settings);
        }
        producer.context().check(topic)?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(Error::kafka(format!(
            "flushing generated events to {topic}"
        )))?;
    producer.context().check(topic)?;
    Ok(producer.context().acknowledged.load(Ordering::Relaxed))
}

/// Serves the producer's events (delivery reports, statistics) and mends a broker loss they
/// showed. (While `send` waits for room in a full queue it serves them too, but cannot mend:
/// unpaced, a generator whose producer has forgotten every broker waits there.)
fn serve(producer: &BaseProducer<Reports>, settings: &KafkaSettings) {
    producer.poll(Duration::ZERO);
    producer
        .context()
        .brokers
        .mend(producer.client(), &settings.bootstrap_servers);
}

/// Seconds since the Unix epoch, now.
pub fn epoch_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_rate_every_event_is_due_at_once() {
        let pace = Pace {
            rate: None,
            count: None,
        };
        let now = Instant::now();
        assert_eq!(pace.nap(now, 1_000_000, now), None);
    }

    #[test]
    fn an_early_event_waits_in_naps_of_at_most_100ms() {
        let pace = Pace {
            rate: Some(10.0),
            count: None,
        };
        let started = Instant::now();
        // The 6th event is due at 0.5 s.
        assert_eq!(pace.nap(started, 5, started), Some(MAX_NAP));
        let nearly = started + Duration::from_millis(460);
        assert_eq!(
            pace.nap(started, 5, nearly),
            Some(Duration::from_millis(40))
        );
        assert_eq!(
            pace.nap(started, 5, started + Duration::from_millis(500)),
            None
        );
    }

    #[test]
    fn only_a_count_ends_the_run() {
        let endless = Pace {
            rate: None,
            count: None,
        };
        assert!(!endless.done(u64::MAX));
        let three = Pace {
            rate: None,
            count: Some(3),
        };
        assert!(!three.done(2));
        assert!(three.done(3));
    }
}

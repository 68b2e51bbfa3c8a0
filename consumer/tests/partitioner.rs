//! The partition forecast (`kafka::partitioner`) against librdkafka's own partitioners, on the
//! real Apache Kafka broker: for every key, the partition the broker acknowledged is the one
//! forecast.

use std::sync::Mutex;
use std::time::Duration;

use fetch_consumer::kafka::partitioner::Partitioner;
use fetch_consumer::kafka::send::send;
use fetch_testing::{bootstrap, create_topic, unique};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// Keeps each delivered record's key and partition.
#[derive(Default)]
struct Placed(Mutex<Vec<(Vec<u8>, i32)>>);

impl ClientContext for Placed {}

impl ProducerContext for Placed {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let message = result.as_ref().expect("delivered");
        let key = message.key().expect("keyed").to_vec();
        self.0
            .lock()
            .expect("lock")
            .push((key, message.partition()));
    }
}

/// Where librdkafka, with `partitioner` (its default when `None`), put 500 keys on a topic of
/// `partitions` partitions.
fn placed_by_librdkafka(partitioner: Option<&str>, partitions: i32) -> Vec<(Vec<u8>, i32)> {
    let topic = unique("partitioner");
    create_topic(&topic, partitions);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    if let Some(p) = partitioner {
        config.set("partitioner", p);
    }
    let producer: BaseProducer<Placed> = config
        .create_with_context(Placed::default())
        .expect("producer");
    for n in 0..500 {
        // User ids as the generator makes them, and short keys of every length up to 4.
        let key = if n % 5 == 0 {
            "x".repeat(n % 4 + 1)
        } else {
            format!("{n:08x}-44c6-4895-be74-9e67730f37f1")
        };
        send(
            &producer,
            BaseRecord::<_, [u8]>::to(&topic).key(&key).payload(b"{}"),
        )
        .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    std::mem::take(&mut *producer.context().0.lock().expect("lock"))
}

#[test]
fn the_forecast_is_librdkafkas_partition_for_the_default_and_the_java_partitioners() {
    for partitioner in [None, Some("consistent_random"), Some("murmur2_random")] {
        let placed = placed_by_librdkafka(partitioner, 6);
        assert_eq!(placed.len(), 500);
        let forecast = Partitioner::of(partitioner, 6);
        for (key, partition) in placed {
            assert_eq!(
                forecast.partition(&key) as i32,
                partition,
                "{partitioner:?}: key {:?}",
                String::from_utf8_lossy(&key)
            );
        }
    }
}

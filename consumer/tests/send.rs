//! The one produce helper (`kafka::send`) against the real Apache Kafka broker: a full queue
//! slows the sender down and loses nothing; any other refusal comes back to the caller.

use std::time::Duration;

use fetch_consumer::kafka::send::send;
use fetch_testing::{bootstrap, create_topic, end_offsets, total, unique};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn producer(settings: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

#[test]
fn a_full_queue_makes_the_sender_wait_and_every_record_arrives() {
    let topic = unique("send-full");
    create_topic(&topic, 3);
    // Room for 10 records: the sender meets a full queue at nearly every record.
    let producer = producer(&[("queue.buffering.max.messages", "10"), ("linger.ms", "5")]);
    let records = 2_000;
    for n in 0..records {
        let key = n.to_string();
        send(
            &producer,
            BaseRecord::<_, [u8]>::to(&topic).key(&key).payload(b"{}"),
        )
        .expect("a full queue is waited out, never an error");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(total(&end_offsets(&topic)), records);
}

#[test]
fn a_record_refused_for_another_reason_is_returned_at_once() {
    let topic = unique("send-refused");
    create_topic(&topic, 1);
    let producer = producer(&[("message.max.bytes", "1000")]);
    let error = send(
        &producer,
        BaseRecord::<[u8], [u8]>::to(&topic).payload(&[b' '; 5_000]),
    )
    .expect_err("larger than message.max.bytes");
    assert!(
        matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
        ),
        "{error}"
    );
}

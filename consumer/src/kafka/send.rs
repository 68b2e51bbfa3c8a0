//! Handing one record to a producer: the one way every producer in the project does it.
//!
//! The rule: a record is never dropped and never fails for a full queue. librdkafka refuses a
//! record while its send queue is full (`queue.buffering.max.*`); the sender then serves the
//! producer's events for a moment (delivery reports free room) and offers the same record
//! again, so a slow broker slows the sender down instead of losing records or growing memory.
//! Any other refusal (an unknown topic, a record too large) is returned to the caller.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};

/// How long to serve the producer's events before offering a refused record again.
const WAIT_FOR_ROOM: Duration = Duration::from_millis(5);

/// Hands `record` to `producer`, waiting while its queue is full (see the module's rule).
pub fn send<C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(WAIT_FOR_ROOM);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

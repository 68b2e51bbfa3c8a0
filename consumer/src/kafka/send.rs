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
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext, ThreadedProducer};

/// How long to serve the producer's events before offering a refused record again.
const WAIT_FOR_ROOM: Duration = Duration::from_millis(5);

/// A record refused, with the reason: rust-rdkafka hands it back to be offered again.
pub type Refused<'a, K, P, O> = (KafkaError, BaseRecord<'a, K, P, O>);

/// A librdkafka producer, polled by its owner ([`BaseProducer`]) or by a thread of its own
/// ([`ThreadedProducer`]).
pub trait Queue<C: ProducerContext> {
    /// Offers `record` once; a refusal hands it back.
    #[allow(clippy::result_large_err)] // rust-rdkafka's own signature, record included
    fn offer<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), Refused<'a, K, P, C::DeliveryOpaque>>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized;

    /// Serves the producer's events (delivery reports) for up to `timeout`.
    fn serve(&self, timeout: Duration);
}

impl<C: ProducerContext> Queue<C> for BaseProducer<C> {
    fn offer<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), Refused<'a, K, P, C::DeliveryOpaque>>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        BaseProducer::send(self, record)
    }

    fn serve(&self, timeout: Duration) {
        self.poll(timeout);
    }
}

impl<C: ProducerContext + 'static> Queue<C> for ThreadedProducer<C> {
    fn offer<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), Refused<'a, K, P, C::DeliveryOpaque>>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        ThreadedProducer::send(self, record)
    }

    fn serve(&self, timeout: Duration) {
        // Its own thread serves the reports; this one only waits.
        std::thread::sleep(timeout);
    }
}

/// Hands `record` to `producer`, waiting while its queue is full (see the module's rule).
pub fn send<C, Q, K, P>(
    producer: &Q,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    Q: Queue<C>,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.offer(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.serve(WAIT_FOR_ROOM);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

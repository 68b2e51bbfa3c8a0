//! Giving a client its bootstrap servers back when it has forgotten every broker.
//!
//! Since 2.10, librdkafka forgets the brokers a metadata response leaves out. A broker in
//! controlled shutdown leaves itself out, so with a single broker (a laptop's compose file,
//! CI) a client whose metadata request lands in the seconds a restart takes to shut down is
//! left knowing no broker at all. Nothing in librdkafka brings one back: its all-brokers-down
//! rebootstrap counts only the brokers it knows, and its timed one starts with a metadata
//! request, which needs a broker (confluentinc/librdkafka#5301, open in 2.15). Left so, the
//! consumer never finds its group coordinator again (its session times out; after
//! `health::GROUP_STALL_LIMIT` its liveness fails) and a producer never delivers.
//!
//! The rule: a client whose statistics list no broker it was configured with or learned gets
//! the bootstrap servers added back, as librdkafka's own rebootstrap would add them. Whoever
//! holds the client does it ([`BrokerLoss::mend`]): the statistics callback that notices
//! ([`BrokerLoss::observe`]) is not handed the client.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::{Client, ClientContext};
use rdkafka::statistics::Statistics;

/// Whether a client's statistics say it knows no broker to connect to. librdkafka also lists
/// brokers of its own (`internal`, and `logical` ones such as the group coordinator's
/// connection), which stand for no address it can reach on their own.
pub fn knows_no_broker(statistics: &Statistics) -> bool {
    !statistics
        .brokers
        .values()
        .any(|b| b.source == "configured" || b.source == "learned")
}

/// One client's broker loss, noticed in its statistics and mended by whoever holds it.
#[derive(Debug)]
pub struct BrokerLoss {
    /// Which client, for the log.
    client: &'static str,
    lost: AtomicBool,
}

impl BrokerLoss {
    pub fn new(client: &'static str) -> Self {
        BrokerLoss {
            client,
            lost: AtomicBool::new(false),
        }
    }

    /// From the client's statistics callback.
    pub fn observe(&self, statistics: &Statistics) {
        if knows_no_broker(statistics) {
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Adds `bootstrap_servers` to `client` when its statistics last said it knows no broker;
    /// returns whether it did. Cheap otherwise: call it as often as the client is polled.
    pub fn mend<C: ClientContext>(&self, client: &Client<C>, bootstrap_servers: &str) -> bool {
        if !self.lost.swap(false, Ordering::AcqRel) {
            return false;
        }
        match add_brokers(client, bootstrap_servers) {
            Ok(added) => {
                tracing::warn!(
                    client = self.client,
                    added,
                    bootstrap_servers,
                    "the client had forgotten every broker (a metadata response listed none, as a single broker shutting down answers: confluentinc/librdkafka#5301); added the bootstrap servers back"
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    client = self.client,
                    error = %e,
                    "the client has forgotten every broker and the bootstrap servers could not be added back"
                );
                false
            }
        }
    }
}

/// librdkafka's `rd_kafka_brokers_add`, which rust-rdkafka does not wrap: how many of
/// `servers` the client now has as bootstrap servers (one it has already is not added twice).
fn add_brokers<C: ClientContext>(client: &Client<C>, servers: &str) -> Result<i32, String> {
    let servers = CString::new(servers)
        .map_err(|_| format!("the bootstrap servers {servers:?} contain a NUL byte"))?;
    // SAFETY: `native_ptr` is the live handle `client` owns for as long as it is borrowed
    // here, and `rd_kafka_brokers_add` may be called from any thread. It reads the
    // NUL-terminated string only during the call and keeps its own copy.
    let added =
        unsafe { rdkafka::bindings::rd_kafka_brokers_add(client.native_ptr(), servers.as_ptr()) };
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_statistics;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    /// An emission with brokers of these sources.
    fn with_brokers(sources: &[&str]) -> Statistics {
        let brokers: Vec<String> = (sources.iter().enumerate())
            .map(|(i, source)| test_statistics::broker(&format!("b{i}"), source, ""))
            .collect();
        test_statistics::emission(&brokers, "")
    }

    #[test]
    fn a_client_left_with_only_internal_and_logical_brokers_knows_none() {
        assert!(knows_no_broker(&with_brokers(&[])));
        assert!(knows_no_broker(&with_brokers(&["internal", "logical"])));
    }

    #[test]
    fn a_configured_or_learned_broker_is_one_to_connect_to() {
        assert!(!knows_no_broker(&with_brokers(&["configured"])));
        assert!(!knows_no_broker(&with_brokers(&[
            "internal", "learned", "logical"
        ])));
    }

    /// Against librdkafka itself (no broker needed: adding one only records its address).
    #[test]
    fn a_loss_is_mended_once_with_the_bootstrap_servers() {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .expect("producer");
        let client = producer.client();
        assert_eq!(add_brokers(client, "127.0.0.1:1"), Ok(1), "had it already");
        assert_eq!(add_brokers(client, "127.0.0.1:2,127.0.0.1:3"), Ok(2));
        assert!(add_brokers(client, "a\0b").is_err_and(|e| e.contains("NUL")));

        let loss = BrokerLoss::new("test");
        loss.observe(&with_brokers(&["learned"]));
        assert!(!loss.lost.load(Ordering::Acquire));
        loss.observe(&with_brokers(&["logical"]));
        assert!(loss.mend(client, "127.0.0.1:4"));
        assert!(!loss.mend(client, "127.0.0.1:4"), "mended once");
    }
}

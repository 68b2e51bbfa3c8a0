//! librdkafka statistics emissions for unit tests, cut to what the `Statistics` type needs
//! plus what a test reads.

use rdkafka::statistics::Statistics;

/// One entry of an emission's `brokers`: its `source` (configured, learned, internal,
/// logical) and its `req` counts (`"Produce": 3, "Fetch": 0`).
pub fn broker(name: &str, source: &str, requests: &str) -> String {
    format!(
        r#""{name}": {{"name": "{name}", "nodeid": -1, "nodename": "{name}", "source": "{source}", "state": "UP",
        "stateage": 0, "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 0, "waitresp_msg_cnt": 0,
        "tx": 0, "txbytes": 0, "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0, "rx": 0,
        "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0,
        "buf_grow": 0, "wakeups": 0, "connects": 1, "disconnects": 0,
        "req": {{{requests}}}, "toppars": {{}}}}"#
    )
}

/// An emission with these `brokers` (from [`broker`]) and `topics` (the map's inside).
pub fn emission(brokers: &[String], topics: &str) -> Statistics {
    serde_json::from_str(&format!(
        r#"{{"name": "c", "client_id": "c", "type": "producer", "ts": 0, "time": 0, "age": 0,
        "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0, "simple_cnt": 0,
        "metadata_cache_cnt": 0, "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0,
        "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0,
        "brokers": {{{}}}, "topics": {{{topics}}}}}"#,
        brokers.join(", ")
    ))
    .expect("statistics")
}

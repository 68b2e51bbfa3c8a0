//! Helpers for the operator's integration tests: the workspace's shared Kafka and control-plane
//! helpers (`fetch-testing` with its `kube` feature).

#![allow(dead_code, unused_imports)]

pub use fetch_testing::cluster::*;
pub use fetch_testing::*;

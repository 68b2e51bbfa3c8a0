//! Helpers for the operator's integration tests: the workspace's shared Kafka and control-plane
//! helpers (`fetch-testing` with its `kube` feature).

#![allow(dead_code, unused_imports)]

pub use fetch_testing::cluster::*;
pub use fetch_testing::*;

/// A FetchPipeline named `name` with `spec`, as a user would write it.
pub fn pipeline(name: &str, spec: serde_json::Value) -> fetch_operator::crd::FetchPipeline {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "fetch-pipeline.dev/v1alpha1",
        "kind": "FetchPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("valid pipeline")
}

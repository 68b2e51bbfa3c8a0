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

/// The replicas Deployment `name` asks for (`None` while it does not exist).
pub async fn replicas_of(
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
) -> Option<i32> {
    deployments
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .replicas
}

/// Waits until Deployment `name` asks for `n` replicas.
pub async fn await_replicas(
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    n: i32,
) {
    eventually(&format!("{name} at {n} replicas"), || async {
        replicas_of(deployments, name).await.filter(|r| *r == n)
    })
    .await;
}

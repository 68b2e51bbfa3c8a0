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

/// Waits until pipeline `name`'s Deployment asks for `n` replicas and the pipeline's status says
/// so too, and returns the pipeline. The operator applies the Deployment before it writes the
/// status, so a status read the moment the Deployment changes can still be the previous check's.
pub async fn await_scaled(
    pipelines: &kube::Api<fetch_operator::crd::FetchPipeline>,
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    n: i32,
) -> fetch_operator::crd::FetchPipeline {
    await_replicas(deployments, &format!("{name}-consumer"), n).await;
    eventually(&format!("{name}'s status at {n} replicas"), || async {
        let fp = pipelines.get(name).await.ok()?;
        let desired = fp.status.as_ref()?.desired_replicas?;
        (desired == n).then_some(fp)
    })
    .await
}

//! The operator works under exactly the RBAC rules in `k8s/operator-rbac.yaml`: the
//! controller and leader election run as the operator's ServiceAccount (impersonated) on a
//! real API server, and every call it makes is allowed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use fetch_operator::controller;
use fetch_operator::crd::FetchPipeline;
use fetch_operator::leader::{self, LeaseSettings};
use fetch_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Config};
use serde::Deserialize;
use support::*;

const RBAC: &str = include_str!("../../k8s/operator-rbac.yaml");
const NAMESPACE: &str = include_str!("../../k8s/namespace.yaml");

async fn create<K>(client: &Client, doc: serde_json::Value)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(doc).expect("manifest matches its kind");
    let ns = object.meta().namespace.clone().expect("namespaced");
    Api::<K>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
}

async fn create_cluster<K>(client: &Client, doc: serde_json::Value)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(doc).expect("manifest matches its kind");
    Api::<K>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
}

async fn apply_manifests(client: &Client, text: &str) {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let doc = serde_json::Value::deserialize(document).expect("YAML document");
        match doc["kind"].as_str().unwrap_or_default() {
            "Namespace" => create_cluster::<Namespace>(client, doc).await,
            "ClusterRole" => create_cluster::<ClusterRole>(client, doc).await,
            "ClusterRoleBinding" => create_cluster::<ClusterRoleBinding>(client, doc).await,
            "ServiceAccount" => create::<ServiceAccount>(client, doc).await,
            "Role" => create::<Role>(client, doc).await,
            "RoleBinding" => create::<RoleBinding>(client, doc).await,
            other => panic!("unexpected kind {other} in the RBAC manifest"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_nothing_beyond_its_rbac_rules() {
    let (server, admin) = control_plane().await;
    apply_manifests(&admin, NAMESPACE).await;
    apply_manifests(&admin, RBAC).await;

    let kubeconfig = server.kubeconfig().expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.auth_info.impersonate = Some("system:serviceaccount:fetch-system:fetch-operator".into());
    let operator = Client::try_from(config.clone()).expect("impersonating client");

    // The API server enforces RBAC (so this test proves something): what the rules do not
    // grant is refused.
    let denied = Api::<Secret>::namespaced(operator.clone(), "default")
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(e)) if e.code == 403),
        "listing Secrets is not granted: {denied:?}"
    );

    let lease = LeaseSettings {
        name: "fetch-operator".into(),
        namespace: "fetch-system".into(),
        identity: "rbac-test".into(),
        lease_duration: Duration::from_secs(5),
        renew_every: Duration::from_secs(1),
    };
    let settings = controller_settings();
    let controller_client = operator.clone();
    tokio::spawn(async move {
        let result = leader::lead(
            operator,
            lease,
            std::future::pending(),
            |_| {},
            move || async move {
                controller::run(
                    controller_client,
                    settings,
                    Arc::new(Metrics::default()),
                    std::future::pending(),
                )
                .await
            },
        )
        .await;
        // A controller that may not list FetchPipelines ends leadership with its error.
        panic!("leadership ended: {result:?}");
    });

    let topic = unique("rbac");
    create_topic(&topic, 2);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kafka-creds"},
        "stringData": {"username": "u", "password": "p"},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let pipelines: Api<FetchPipeline> = Api::namespaced(admin.clone(), "default");
    for (name, kafka) in [
        (
            "plain",
            serde_json::json!({"bootstrapServers": bootstrap()}),
        ),
        (
            "sasl",
            serde_json::json!({"bootstrapServers": bootstrap(), "securityProtocol": "SASL_PLAINTEXT",
                "sasl": {"mechanism": "PLAIN", "credentialsSecret": {"name": "kafka-creds"}}}),
        ),
    ] {
        let fp: FetchPipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "fetch-pipeline.dev/v1alpha1", "kind": "FetchPipeline",
            "metadata": {"name": name}, "spec": {"kafka": kafka, "input": {"topic": topic}},
        }))
        .expect("pipeline");
        pipelines
            .create(&PostParams::default(), &fp)
            .await
            .expect("create pipeline");
    }

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    eventually(
        "the Deployment, applied under the operator's RBAC",
        || async { deployments.get_opt("plain-consumer").await.ok().flatten() },
    )
    .await;
    eventually("status written under the operator's RBAC", || async {
        pipelines
            .get("plain")
            .await
            .ok()?
            .status?
            .partitions
            .filter(|p| *p == 2)
    })
    .await;
    let sasl = eventually("a Kafka verdict for the SASL pipeline", || async {
        let status = pipelines.get("sasl").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "KafkaReachable")
    })
    .await;
    assert_ne!(
        sasl.reason, "CredentialsUnavailable",
        "the Secret was readable: {}",
        sasl.message
    );
    eventually("events recorded", || async {
        let events = Api::<Event>::namespaced(admin.clone(), "default")
            .list(&ListParams::default())
            .await
            .ok()?;
        (!events.items.is_empty()).then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(admin, "fetch-system")
        .get("fetch-operator")
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("rbac-test")
    );
}

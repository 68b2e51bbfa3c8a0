//! The controller against a real kube-apiserver and a real Kafka broker: scaling by partition
//! count, rescaling when partitions are added, rolling on spec changes, pausing, and keeping
//! the Deployment untouched when Kafka goes away.

mod support;

use std::time::Duration;

use fetch_operator::crd::FetchPipeline;
use fetch_operator::resources::CONFIG_HASH_ANNOTATION;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use support::*;

fn hash_of(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .cloned()
}

fn condition(fp: &FetchPipeline, type_: &str) -> Option<(String, String)> {
    fp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_scale_with_partitions_roll_on_changes_and_survive_kafka_outages() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let ns = "data";
    namespace(&client, ns).await;
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let bootstrap = bootstrap();

    // 6 partitions, max 4: capped at 4, owned by the pipeline.
    let wide = unique("wide");
    create_topic(&wide, 6);
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap},
        "input": {"topic": wide},
        "replicas": {"min": 1, "max": 4},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("logins", spec))
        .await
        .expect("create");
    await_replicas(&deployments, "logins-consumer", 4).await;
    let deployment = deployments
        .get("logins-consumer")
        .await
        .expect("deployment");
    let owner = &deployment
        .metadata
        .owner_references
        .clone()
        .expect("owner references")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("FetchPipeline", "logins", Some(true))
    );
    let fp = eventually("status with partitions", || async {
        pipelines
            .get("logins")
            .await
            .ok()
            .filter(|fp| fp.status.as_ref().and_then(|s| s.partitions) == Some(6))
    })
    .await;
    let status = fp.status.clone().expect("status");
    assert_eq!(status.desired_replicas, Some(4));
    assert_eq!(status.observed_generation, fp.metadata.generation);
    assert_eq!(
        status.scaling_reason.as_deref(),
        Some("6 partitions, capped at replicas.max 4")
    );
    assert_eq!(status.consumer_lag, Some(0), "empty topic, nothing to do");
    assert_eq!(
        condition(&fp, "KafkaReachable"),
        Some(("True".into(), "TopicFound".into()))
    );
    assert_eq!(
        condition(&fp, "Ready").map(|c| c.0),
        Some("False".into()),
        "no kubelet: no pod becomes ready"
    );
    let events = eventually("a Scaled event", || async {
        let list = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Scaled"))
    })
    .await;
    assert!(events.note.unwrap_or_default().contains("to 4 replicas"));

    // A spec change rolls the pods: the pod template's config hash changes.
    let before = hash_of(&deployment).expect("hash");
    pipelines
        .patch(
            "logins",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"output": {"topic": "cleaned"}}})),
        )
        .await
        .expect("patch");
    eventually("a new config hash", || async {
        let d = deployments.get("logins-consumer").await.ok()?;
        hash_of(&d).filter(|h| *h != before)
    })
    .await;

    // Pausing scales to zero.
    pipelines
        .patch(
            "logins",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"paused": true}})),
        )
        .await
        .expect("pause");
    await_replicas(&deployments, "logins-consumer", 0).await;

    // Partitions added to the topic raise the replicas on the next check.
    let growing = unique("growing");
    create_topic(&growing, 2);
    let spec =
        serde_json::json!({"kafka": {"bootstrapServers": bootstrap}, "input": {"topic": growing}});
    pipelines
        .create(&PostParams::default(), &pipeline("growing", spec))
        .await
        .expect("create");
    await_replicas(&deployments, "growing-consumer", 2).await;
    add_partitions(&growing, 5);
    await_replicas(&deployments, "growing-consumer", 5).await;

    // A missing topic: a condition says so, and nothing is scaled on missing information.
    let spec = serde_json::json!({"kafka": {"bootstrapServers": bootstrap}, "input": {"topic": unique("absent")}});
    pipelines
        .create(&PostParams::default(), &pipeline("absent", spec))
        .await
        .expect("create");
    let fp = eventually("KafkaReachable=False for a missing topic", || async {
        let fp = pipelines.get("absent").await.ok()?;
        (condition(&fp, "KafkaReachable")?.0 == "False").then_some(fp)
    })
    .await;
    assert_eq!(
        condition(&fp, "KafkaReachable").map(|c| c.1),
        Some("TopicMissing".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_leaves_the_deployment_untouched() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let broker = Broker::start();
    let topic = unique("outage");
    create_topic_on(&broker.bootstrap, &topic, 3);
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let spec = serde_json::json!({"kafka": {"bootstrapServers": broker.bootstrap}, "input": {"topic": topic}});
    pipelines
        .create(&PostParams::default(), &pipeline("outage", spec))
        .await
        .expect("create");
    await_replicas(&deployments, "outage-consumer", 3).await;
    let before = deployments
        .get("outage-consumer")
        .await
        .expect("deployment");

    drop(broker);
    let fp = eventually("KafkaReachable=False", || async {
        let fp = pipelines.get("outage").await.ok()?;
        (condition(&fp, "KafkaReachable")?.0 == "False").then_some(fp)
    })
    .await;
    assert_eq!(
        condition(&fp, "KafkaReachable").map(|c| c.1).as_deref(),
        Some("Unreachable")
    );
    assert_eq!(
        condition(&fp, "Ready"),
        Some(("False".into(), "KafkaUnavailable".into()))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = deployments
        .get("outage-consumer")
        .await
        .expect("deployment");
    assert_eq!(
        after.spec.as_ref().and_then(|s| s.replicas),
        Some(3),
        "replicas stay as they are"
    );
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "the Deployment is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kube_controller_manager_status_is_real_and_deletion_collects_everything() {
    let (server, client) = control_plane().await;
    let _manager = ControllerManager::start(&server);
    let _stop = start_controller(client.clone());
    let topic = unique("gc");
    create_topic(&topic, 2);
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let spec =
        serde_json::json!({"kafka": {"bootstrapServers": bootstrap()}, "input": {"topic": topic}});
    pipelines
        .create(&PostParams::default(), &pipeline("gc", spec))
        .await
        .expect("create");

    // The Deployment controller works on it: a ReplicaSet, pods (pending: there is no kubelet).
    let observed = eventually("Deployment status from kube-controller-manager", || async {
        let status = deployments.get_opt("gc-consumer").await.ok()??.status?;
        status.replicas.filter(|r| *r == 2).map(|_| status)
    })
    .await;
    assert_eq!(observed.ready_replicas.unwrap_or(0), 0);
    let fp = eventually("readyReplicas reported", || async {
        let fp = pipelines.get("gc").await.ok()?;
        (fp.status.as_ref()?.desired_replicas == Some(2)).then_some(fp)
    })
    .await;
    assert_eq!(
        condition(&fp, "Ready").map(|c| c.1).as_deref(),
        Some("Progressing")
    );

    // Deleting the pipeline deletes what it owns.
    pipelines
        .delete("gc", &Default::default())
        .await
        .expect("delete");
    eventually("the Deployment garbage-collected", || async {
        deployments
            .get_opt("gc-consumer")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

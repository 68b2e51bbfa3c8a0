//! Autoscaling against a real kube-apiserver and a real Kafka broker, with real
//! `fetch-consumer` processes in the pipeline's group draining the backlog: up at once on a
//! backlog, down only after the stabilization window, to zero when idle and back on the first
//! record, and `kubectl scale` through the `/scale` subresource.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetch_operator::crd::FetchPipeline;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::*;

/// `n` records with distinct keys, so they spread over the partitions.
fn backlog(topic: &str, n: usize) {
    backlog_on(&bootstrap(), topic, n);
}

fn backlog_on(bootstrap: &str, topic: &str, n: usize) {
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..n)
        .map(|i| {
            let event = format!(
                r#"{{"user_id":"u{i}","app_version":"2.3.0","ip":"10.0.0.1","locale":"RU","device_id":"d{i}","timestamp":"1694479551","device_type":"android"}}"#
            );
            (format!("k{i}").into_bytes(), Some(event.into_bytes()))
        })
        .collect();
    produce_to(bootstrap, topic, &records);
}

/// A real consumer replica in `group`, as the Deployment's pods would run it (the control
/// plane here has no kubelet).
struct Replica(Child);

impl Replica {
    fn start(group: &str, input: &str, output: &str, dead_letter: &str) -> Self {
        let child = Command::new(consumer_binary())
            .args(["run", "--bootstrap-servers"])
            .arg(bootstrap())
            .args(["--group-id", group, "--input-topic", input])
            .args(["--output-topic", output, "--dead-letter-topic", dead_letter])
            .args(["--http-addr", "127.0.0.1:0", "--insights-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fetch-consumer");
        Replica(child)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reason(fp: &FetchPipeline) -> String {
    fp.status
        .as_ref()
        .and_then(|s| s.scaling_reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_scales_up_at_once_and_the_drained_pipeline_scales_down_after_the_window() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let (input, output, dead_letter) = (unique("as-in"), unique("as-out"), unique("as-dlq"));
    create_topic(&input, 4);
    create_topic(&output, 1);
    create_topic(&dead_letter, 1);
    let group = unique("as-group");
    backlog(&input, 4_000);

    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap()},
        "input": {"topic": input}, "output": {"topic": output}, "deadLetter": {"topic": dead_letter},
        "consumerGroup": group, "insights": {"interval": "1s"},
        "replicas": {"min": 1, "max": 8},
        "autoscaling": {"enabled": true, "lagPerReplica": 500, "scaleDownStabilization": "20s"},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("burst", spec))
        .await
        .expect("create");
    // 4,000 records at 500 per replica ask for 8; the 4 partitions cap it.
    let fp = await_scaled(&pipelines, &deployments, "burst", 4).await;
    assert_eq!(
        reason(&fp),
        "backlog 4,000 records, 500 per replica -> 8, capped at the 4 partitions"
    );
    assert_eq!(fp.status.as_ref().and_then(|s| s.consumer_lag), Some(4_000));

    // Two real replicas drain it (the Deployment's pods cannot run without a kubelet).
    let _replicas = [
        Replica::start(&group, &input, &output, &dead_letter),
        Replica::start(&group, &input, &output, &dead_letter),
    ];
    eventually("the lag to reach 0", || async {
        let fp = pipelines.get("burst").await.ok()?;
        (fp.status?.consumer_lag? == 0).then_some(())
    })
    .await;
    let drained = Instant::now();
    let fp = await_scaled(&pipelines, &deployments, "burst", 1).await;
    let waited = drained.elapsed();
    // The last check that asked for 4 came at most a check (1 s) and a status write before
    // the drained lag showed: the scale-down had to wait the 20 s window from there.
    assert!(
        waited >= Duration::from_secs(17),
        "scaled down {waited:?} after the backlog drained, before the 20s window"
    );
    assert!(
        reason(&fp)
            .starts_with("idle (no backlog, nothing arriving) -> 0, raised to replicas.min 1"),
        "{}",
        reason(&fp)
    );
    let notes: Vec<String> = Api::<Event>::namespaced(client.clone(), "default")
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(" to 4 replicas: backlog 4,000 records")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Scaled consumers from 4 to 1 replicas: idle")),
        "each scale change is an event with its own reason: {notes:?}"
    );
    let status = fp.status.expect("status");
    assert_eq!(status.input_rate_per_second, Some(0.0));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=burst,app.kubernetes.io/name=fetch-consumer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_with_min_zero_goes_to_zero_and_the_first_record_brings_a_replica_back() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let (input, output, dead_letter) = (unique("idle-in"), unique("idle-out"), unique("idle-dlq"));
    create_topic(&input, 2);
    create_topic(&output, 1);
    create_topic(&dead_letter, 1);
    let group = unique("idle-group");
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap()},
        "input": {"topic": input}, "output": {"topic": output}, "deadLetter": {"topic": dead_letter},
        "consumerGroup": group, "insights": {"interval": "1s"},
        "replicas": {"min": 0, "max": 4},
        "autoscaling": {"enabled": true, "lagPerReplica": 1000, "scaleDownStabilization": "5s"},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("quiet", spec))
        .await
        .expect("create");
    await_replicas(&deployments, "quiet-consumer", 0).await;

    backlog(&input, 1);
    await_replicas(&deployments, "quiet-consumer", 1).await;

    let replica = Replica::start(&group, &input, &output, &dead_letter);
    let fp = await_scaled(&pipelines, &deployments, "quiet", 0).await;
    drop(replica);
    let ready = fp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(ready, Some(("True".into(), "ScaledToZero".into())));

    backlog(&input, 1);
    await_replicas(&deployments, "quiet-consumer", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_changes_nothing_under_autoscaling() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let broker = Broker::start();
    let topic = unique("as-outage");
    create_topic_on(&broker.bootstrap, &topic, 3);
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": broker.bootstrap}, "input": {"topic": topic},
        "replicas": {"min": 0, "max": 3},
        "autoscaling": {"enabled": true, "lagPerReplica": 1000, "scaleDownStabilization": "1s"},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("steady", spec))
        .await
        .expect("create");
    backlog_on(&broker.bootstrap, &topic, 2_000);
    await_replicas(&deployments, "steady-consumer", 2).await;
    drop(broker);
    eventually("KafkaReachable=False", || async {
        let fp = pipelines.get("steady").await.ok()?;
        let reachable = fp
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "KafkaReachable")?;
        (reachable.status == "False").then_some(())
    })
    .await;
    let before = deployments
        .get("steady-consumer")
        .await
        .expect("deployment");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = deployments
        .get("steady-consumer")
        .await
        .expect("deployment");
    assert_eq!(after.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(after.metadata.generation, before.metadata.generation);
    let fp = pipelines.get("steady").await.expect("pipeline");
    assert_eq!(reason(&fp), "partition count unknown; keeping 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_sets_a_fixed_count_that_wins_until_removed() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let topic = unique("scale");
    create_topic(&topic, 6);
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap()}, "input": {"topic": topic},
        "replicas": {"min": 1, "max": 4},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("manual", spec))
        .await
        .expect("create");
    await_replicas(&deployments, "manual-consumer", 4).await;

    // What `kubectl scale fp manual --replicas 2` sends.
    let scale = serde_json::json!({"spec": {"replicas": 2}});
    pipelines
        .patch_scale("manual", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("patch /scale");
    await_scaled(&pipelines, &deployments, "manual", 2).await;
    let read = pipelines.get_scale("manual").await.expect("get /scale");
    assert_eq!(read.spec.and_then(|s| s.replicas), Some(2));
    let status = read.status.expect("scale status");
    assert_eq!(status.replicas, 2);
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=manual,app.kubernetes.io/name=fetch-consumer")
    );

    // Removing the fixed count hands the scale back.
    let remove = serde_json::json!({"spec": {"replicas": {"fixed": null}}});
    pipelines
        .patch("manual", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .expect("remove spec.replicas.fixed");
    await_replicas(&deployments, "manual-consumer", 4).await;
}

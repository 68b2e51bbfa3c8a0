//! End-to-end through the Helm door, on the local cluster (`hack/e2e.sh`): the chart's two
//! operators in a restricted namespace, and FetchPipelines whose consumer pods run for real
//! (kubelet, containerd, probes, Pod Security admission), fed by the broker on the node.
//!
//! The tests share one chart installation and run one at a time (`--test-threads=1`); each
//! pipeline has its own namespace and topics.

mod e2e_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e_support::*;
use fetch_testing::bootstrap;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};

use futures::StreamExt;

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(ResourceExt::name_any).collect()
}

/// Pipeline `logins` in its own restricted namespace `ns`, reading fresh topics of
/// `partitions` partitions, once its consumers are ready: one per partition.
async fn running_pipeline(
    client: &kube::Client,
    ns: &str,
    partitions: i32,
) -> (TestNamespace, Topics, Vec<Pod>) {
    running_pipeline_with(client, ns, partitions, "").await
}

/// [`running_pipeline`] with `spec` lines added to the pipeline's spec.
async fn running_pipeline_with(
    client: &kube::Client,
    ns: &str,
    partitions: i32,
    spec: &str,
) -> (TestNamespace, Topics, Vec<Pod>) {
    let namespace = TestNamespace::restricted(client, ns).await;
    let topics = Topics::create(ns, partitions);
    apply(&pipeline("logins", ns, &topics, &bootstrap(), spec));
    let pods = ready_consumers(client, ns, "logins", partitions as usize).await;
    (namespace, topics, pods)
}

/// Streams 6,000 events (`seed`) into the pipeline over 15 s, deletes its first consumer pod
/// 3 s in, waits for the replacement, and waits until the output holds every event's result.
async fn delete_a_pod_mid_stream(
    client: &kube::Client,
    ns: &str,
    topics: &Topics,
    pods: &[Pod],
    seed: u64,
) -> Events {
    let events = events(6_000, seed);
    let producing = produce_over(&topics.input, &events, 20, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = pods[0].name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a consumer pod");
    eventually("the deleted pod replaced", || async {
        let now = ready_pods(client, ns, &consumer_selector("logins"), pods.len()).await;
        (!names(&now).contains(&victim)).then_some(())
    })
    .await;
    producing.join().expect("producer");
    await_pipeline_output(topics, &events);
    events
}

async fn lease_holder(client: &kube::Client) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    eventually("a leader", || async {
        leases
            .get_opt(&format!("{RELEASE}-fetch-pipeline"))
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_runs_two_operators_one_leader_and_helm_test_passes() {
    let client = client().await;
    ensure_chart(&client).await;
    let operators = ready_pods(
        &client,
        RELEASE_NAMESPACE,
        "app.kubernetes.io/component=operator",
        2,
    )
    .await;
    let holder = lease_holder(&client).await;
    assert!(
        names(&operators).contains(&holder),
        "the leader {holder} is one of the operator pods {:?}",
        names(&operators)
    );
    // The test pod reaches the operators' metrics Service by name: cluster DNS and kube-proxy.
    let out = helm(&["test", RELEASE, "--namespace", RELEASE_NAMESPACE]);
    assert!(out.contains("Succeeded"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_ready_consumers_that_route_every_event() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-route";
    let (_ns, topics, _) = running_pipeline(&client, ns, 3).await;

    let events = events(3_000, 1);
    fetch_testing::produce(&topics.input, &events.records);
    await_pipeline_output(&topics, &events);
    let count = |topic: &str| fetch_testing::total(&fetch_testing::end_offsets(topic)) as usize;
    assert_eq!(
        (count(&topics.output), count(&topics.dead_letter)),
        (events.valid.len(), events.rejected_records),
        "a calm run has no duplicates"
    );

    // `kubectl get fp` shows the ready replicas.
    let shown = eventually("kubectl get fp showing 3 ready", || async {
        let table = kubectl(&["get", "fp", "logins", "-n", ns]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next()?.split_whitespace().collect();
        let row: Vec<&str> = lines.next()?.split_whitespace().collect();
        let ready = header.iter().position(|h| *h == "READY")?;
        (row.get(ready) == Some(&"3")).then_some(table)
    })
    .await;
    assert!(shown.contains("True"), "healthy: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_input_partitions_bring_more_ready_consumers_each_with_partitions() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-partitions";
    let (_ns, topics, _) = running_pipeline(&client, ns, 2).await;

    fetch_testing::add_partitions(&topics.input, 4);
    let pods = ready_consumers(&client, ns, "logins", 4).await;
    // Each consumer owns a partition once the group has rebalanced.
    await_assigned(&pods).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_rolls_the_pods_and_loses_no_event() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-roll";
    let (_ns, topics, pods) = running_pipeline(&client, ns, 3).await;
    let before = names(&pods);

    let events = events(6_000, 2);
    let producing = produce_over(&topics.input, &events, 20, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(3)).await;
    apply(&pipeline(
        "logins",
        ns,
        &topics,
        &bootstrap(),
        "  maxEventBytes: 100000",
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("every pod replaced by the new configuration", || async {
        let now = ready_pods(&client, ns, &consumer_selector("logins"), 3).await;
        let all = pods.list(&Default::default()).await.ok()?.items;
        (names(&now).is_disjoint(&before) && all.len() == 3).then_some(())
    })
    .await;
    producing.join().expect("producer");
    await_pipeline_output(&topics, &events);
}

/// One field of pipeline `logins`'s status in `ns`, as kubectl prints it.
fn status_of(ns: &str, field: &str) -> String {
    let path = format!("jsonpath={{.status.{field}}}");
    kubectl(&["get", "fp", "logins", "-n", ns, "-o", &path])
}

/// Autoscaling with real pods: a backlog grows the consumers to the partition count at the
/// first check, they drain it, and they shrink to `min` once the stabilization window has
/// agreed, not before. Prints the timeline (`-- --nocapture` shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_grows_real_pods_on_a_backlog_and_shrinks_them_after_it_drains() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-autoscale";
    let _namespace = TestNamespace::restricted(&client, ns).await;
    let topics = Topics::create(ns, 4);
    let events = events(20_000, 7);
    fetch_testing::produce(&topics.input, &events.records);

    let started = Instant::now();
    let at = |what: &str| eprintln!("{:>6.1}s  {what}", started.elapsed().as_secs_f64());
    apply(&pipeline(
        "logins",
        ns,
        &topics,
        &bootstrap(),
        "  replicas: {min: 1, max: 8}\n  autoscaling: {enabled: true, lagPerReplica: 2000, scaleDownStabilization: 30s}\n  insights: {interval: 1s}",
    ));
    at("pipeline applied over a backlog of 20,000 records in 4 partitions");
    // 20,000 records at 2,000 per replica ask for 10: the 4 partitions cap it.
    ready_consumers(&client, ns, "logins", 4).await;
    at("4 consumer pods ready");
    let reason = status_of(ns, "scalingReason");
    at(&format!("scalingReason: {reason}"));

    await_pipeline_output(&topics, &events);
    at("every event routed");
    eventually("status.consumerLag 0", || async {
        let lag = status_of(ns, "consumerLag");
        (lag.trim() == "0").then_some(())
    })
    .await;
    at("status.consumerLag 0");

    // Down only once the whole window agrees. The operator's checks are not visible to the
    // test, and the consumers may drain the backlog before they turn Ready, so the lag the
    // test sees at 0 says little about when the last check asked for 4. Two things hold
    // regardless: the window opens at the operator's first check, which follows the apply,
    // and the checks between the drain and the scale-down say they are holding.
    let mut holding = Vec::new();
    eventually("Deployment logins-consumer scaled to 1", || {
        let reason = status_of(ns, "scalingReason");
        if reason.contains(" until 30s agree") && !holding.contains(&reason) {
            at(&format!("scalingReason: {reason}"));
            holding.push(reason);
        }
        let client = client.clone();
        async move { (consumer_replicas(&client, ns, "logins").await? == 1).then_some(()) }
    })
    .await;
    let waited = started.elapsed();
    ready_consumers(&client, ns, "logins", 1).await;
    at("scaled down to 1 pod (replicas.min)");
    let reason = status_of(ns, "scalingReason");
    at(&format!("scalingReason: {reason}"));
    assert!(
        waited >= Duration::from_secs(30),
        "scaled down {waited:?} after the pipeline was applied, before a 30 s window could agree"
    );
    assert!(
        !holding.is_empty(),
        "no check between the drain and the scale-down said it was holding for the window"
    );
    let scaled = kubectl(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "reason=Scaled",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    at(&format!("Scaled events:\n{scaled}"));
    assert!(scaled.contains(" to 4 replicas: backlog"), "{scaled}");
    // A check that lands mid-drain asks for fewer than 4 but more than 1, and the window then
    // steps down through it ("4 to 3", then "3 to 1"): each step is an event of its own.
    let downs: Vec<&str> = scaled
        .lines()
        .filter(|l| l.contains("scaled down"))
        .collect();
    assert!(
        !downs.is_empty() && downs.iter().all(|l| l.contains("for 30s, scaled down")),
        "each scale change is an event with its own reason: {scaled}"
    );
    assert!(
        scaled.contains(" to 1 replicas: idle"),
        "the last step down is to replicas.min, for idleness: {scaled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_pod_is_replaced_and_nothing_is_lost() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-delete";
    let (_ns, topics, before) = running_pipeline(&client, ns, 3).await;
    delete_a_pod_mid_stream(&client, ns, &topics, &before, 3).await;
}

/// `spec.guarantee: ExactlyOnce` on real pods: a consumer pod deleted mid-stream (the
/// kubelet stops it with SIGTERM, it commits its transaction) and replaced by a pod with
/// another name, so another transactional id; a read_committed reader then finds each input
/// event's result exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_pipeline_keeps_each_result_once_through_a_pod_replacement() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-exactly-once";
    let (_ns, topics, before) =
        running_pipeline_with(&client, ns, 3, "  guarantee: ExactlyOnce").await;
    let env = kubectl(&[
        "get",
        "deploy",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[0].spec.template.spec.containers[0].env[?(@.name=='FETCH_GUARANTEE')].value}",
    ]);
    assert_eq!(env, "exactly-once", "the pods run exactly once");

    let events = delete_a_pod_mid_stream(&client, ns, &topics, &before, 7).await;

    // Each result once, as a read_committed reader sees the topics.
    let output = fetch_testing::read_to_end(&bootstrap(), &topics.output);
    let keys: BTreeSet<Vec<u8>> = output
        .iter()
        .map(|m| rdkafka::Message::key(m).unwrap_or_default().to_vec())
        .collect();
    let dead = fetch_testing::read_to_end(&bootstrap(), &topics.dead_letter);
    assert_eq!(
        (output.len(), keys.len(), dead.len()),
        (
            events.valid.len(),
            events.valid.len(),
            events.rejected_records
        ),
        "output records, distinct output keys and dead letters: each event's result exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_operator_takes_over_when_the_leader_pod_is_deleted() {
    let client = client().await;
    ensure_chart(&client).await;
    let leader = lease_holder(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let deleted = Instant::now();
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader");
    let next = eventually("another leader", || async {
        let holder = lease_holder(&client).await;
        (holder != leader).then_some(holder)
    })
    .await;
    let took = deleted.elapsed();
    // A leader that stops cleanly releases the lease at once; one that cannot is replaced
    // once the chart's 15 s lease expires (plus a renewal period of 5 s, and slack for a
    // loaded machine).
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    eprintln!("leader {leader} -> {next} in {:.1}s", took.as_secs_f64());

    // The new leader reconciles: a new pipeline gets its consumers.
    let ns = "e2e-takeover";
    let (_ns, _topics, _) = running_pipeline(&client, ns, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_by_the_kubelet_prints_its_report_and_exits_zero() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-sigterm";
    let (_ns, topics, mut pods) = running_pipeline(&client, ns, 1).await;
    let pod = pods.remove(0);
    let name = pod.name_any();
    let events = events(1_000, 4);
    fetch_testing::produce(&topics.input, &events.records);
    await_pipeline_output(&topics, &events);

    // Follow the log before the stop, so nothing it prints on the way out is missed.
    let logs = std::process::Command::new(fetch_deploy_tests::tool("KUBECTL"))
        .args(["logs", "-f", &name, "-n", ns])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .expect("a grace period");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // Watch before the delete: the kubelet reports the container's exit in the pod's status
    // just before the pod object goes away, and that moment must not be missed.
    let watch = watcher(
        pods.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .touched_objects();
    let (started, mut watching) = tokio::sync::oneshot::channel();
    let exit = tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        let mut started = Some(started);
        while let Some(event) = watch.next().await {
            let Ok(p) = event else { continue }; // the watcher retries by itself
            if let Some(tx) = started.take() {
                let _ = tx.send(());
            }
            let terminated = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next())
                .and_then(|c| c.state)
                .and_then(|s| s.terminated);
            if let Some(t) = terminated {
                return Some(t.exit_code);
            }
        }
        None
    });
    tokio::time::timeout(Duration::from_secs(30), &mut watching)
        .await
        .expect("the watch sees the running pod")
        .expect("watch started");
    let stopped = Instant::now();
    pods.delete(&name, &DeleteParams::default())
        .await
        .expect("delete the pod");
    let exit = tokio::time::timeout(Duration::from_secs(grace as u64 + 30), exit)
        .await
        .expect("the container's exit within the grace period")
        .expect("watch task")
        .expect("the watch saw the container's exit");
    let took = stopped.elapsed();
    let out = logs.wait_with_output().expect("logs");
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exit, 0, "exit code; log:\n{log}");
    assert!(
        took < Duration::from_secs(grace as u64),
        "stopped in {took:?}, grace {grace}s"
    );
    assert!(log.contains("read,"), "the report in the log:\n{log}");
    assert!(log.contains("most active users"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_pipeline_flows_and_wrong_credentials_show_without_leaking() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-sasl";
    let _ns = TestNamespace::restricted(&client, ns).await;
    let (username, password) = (
        var("FETCH_E2E_SCRAM_USERNAME"),
        var("FETCH_E2E_SCRAM_PASSWORD"),
    );
    let ca = std::fs::read_to_string(var("FETCH_E2E_KAFKA_CA_FILE")).expect("the broker's CA");
    let wrong = "not-the-password-e2e";
    let secret = |name: &str, data: serde_json::Value| {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data}).to_string()
    };
    apply(&secret(
        "kafka-creds",
        serde_json::json!({"username": username, "password": password}),
    ));
    apply(&secret(
        "wrong-creds",
        serde_json::json!({"username": username, "password": wrong}),
    ));
    apply(&secret("kafka-ca", serde_json::json!({"ca.crt": ca})));
    let secure = |creds: &str| {
        format!(
            "  kafka:\n    bootstrapServers: {}\n    securityProtocol: SASL_SSL\n    sasl: {{mechanism: SCRAM-SHA-512, credentialsSecret: {{name: {creds}}}}}\n    tls: {{caSecret: {{name: kafka-ca, key: ca.crt}}}}",
            var("FETCH_E2E_KAFKA_SASL_SSL")
        )
    };
    // The spec's kafka block replaces the PLAINTEXT one `pipeline` writes.
    let manifest = |name: &str, topics: &Topics, creds: &str| {
        let plain = pipeline(name, ns, topics, "PLACEHOLDER", "");
        let secure_block = secure(creds);
        plain.replace("  kafka:\n    bootstrapServers: PLACEHOLDER", &secure_block)
    };

    let topics = Topics::create("sasl", 2);
    apply(&manifest("secure", &topics, "kafka-creds"));
    ready_consumers(&client, ns, "secure", 2).await;
    let flowing = events(2_000, 5);
    fetch_testing::produce(&topics.input, &flowing.records);
    await_pipeline_output(&topics, &flowing);
    // The operator's own checks go through SASL_SSL too: it read the partition count.
    eventually("the operator reading the topic over SASL_SSL", || async {
        let status = kubectl(&["get", "fp", "secure", "-n", ns, "-o", "jsonpath={.status.partitions} {.status.conditions[?(@.type==\"KafkaReachable\")].status}"]);
        (status.trim() == "2 True").then_some(())
    })
    .await;

    let refused = Topics::create("refused", 1);
    let refused_events = events(200, 6);
    fetch_testing::produce(&refused.input, &refused_events.records);
    apply(&manifest("refused", &refused, "wrong-creds"));
    let condition = eventually("KafkaReachable False for wrong credentials", || async {
        let c = kubectl(&[
            "get",
            "fp",
            "refused",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"KafkaReachable\")]}",
        ]);
        c.contains("\"False\"").then_some(c)
    })
    .await;
    assert!(
        condition.to_lowercase().contains("authentication"),
        "the condition says why: {condition}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let refused_pod = eventually("the refused consumer's pod", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&consumer_selector("refused")))
            .await
            .ok()?;
        list.items.into_iter().next().map(|p| p.name_any())
    })
    .await;
    let consumer_log = eventually("a log line about the failed authentication", || async {
        let log = try_kubectl(&["logs", &refused_pod, "-n", ns]).ok()?;
        log.to_lowercase().contains("authentication").then_some(log)
    })
    .await;
    // Nothing was consumed, so nothing is lost: no output, and no offsets committed.
    assert!(fetch_testing::committed(&group_of(ns, "refused"), &refused.input).is_empty());
    assert_eq!(
        fetch_testing::total(&fetch_testing::end_offsets(&refused.output)),
        0
    );

    // No credential anywhere users look.
    let mut seen = vec![consumer_log];
    for args in [
        vec!["get", "deployments", "-n", ns, "-o", "yaml"],
        vec!["get", "fp", "-n", ns, "-o", "yaml"],
        vec!["get", "events", "-n", ns, "-o", "yaml"],
        vec![
            "logs",
            "-n",
            RELEASE_NAMESPACE,
            "-l",
            "app.kubernetes.io/component=operator",
            "--tail=-1",
        ],
        vec![
            "logs",
            "-n",
            ns,
            "-l",
            &consumer_selector("secure"),
            "--tail=-1",
        ],
    ] {
        seen.push(kubectl(&args));
    }
    for text in &seen {
        assert!(!text.contains(&password), "the password leaked:\n{text}");
        assert!(!text.contains(wrong), "the wrong password leaked:\n{text}");
    }
}

/// `status.insights` of pipeline `name` in `ns`, as JSON (`Null` while there is none).
fn status_insights(ns: &str, name: &str) -> serde_json::Value {
    let out = kubectl(&[
        "get",
        "fp",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.status.insights}",
    ]);
    if out.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status.insights is JSON ({e}): {out}"))
}

/// `fetch-consumer insights --format json` run in `pod`, with the pod's own settings (the
/// broker, the insights topic and the consumer group come from its environment).
fn insights_in_pod(ns: &str, pod: &str) -> Result<serde_json::Value, String> {
    let out = try_kubectl(&[
        "exec",
        "-n",
        ns,
        pod,
        "--",
        "fetch-consumer",
        "insights",
        "--format",
        "json",
    ])?;
    serde_json::from_str(&out).map_err(|e| format!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_in_the_status_and_from_the_insights_command_count_every_event() {
    let client = client().await;
    ensure_chart(&client).await;
    let ns = "e2e-insights";
    let _ns = TestNamespace::restricted(&client, ns).await;
    let replicas = 3;
    let topics = Topics::create(ns, replicas as i32);
    // Snapshots every 2 s instead of 30 s: the figures follow the events within seconds.
    apply(&pipeline(
        "logins",
        ns,
        &topics,
        &bootstrap(),
        "  insights: {interval: 2s}",
    ));
    let pods = ready_consumers(&client, ns, "logins", replicas).await;
    // A stable group: with no partition changing hands, no event is processed (and counted)
    // twice, so the totals can be compared with the input exactly.
    await_assigned(&pods).await;

    let events = events(3_000, 8);
    let cleaned = (events.records.len() - events.rejected_records) as u64;
    let dead_lettered = events.rejected_records as u64;
    let producing = produce_over(&topics.input, &events, 10, Duration::from_secs(10));
    // (a) While events flow, `kubectl get fp` shows the lag and the rate.
    let table = eventually("kubectl get fp showing Lag and Rate", || async {
        let table = kubectl(&["get", "fp", "logins", "-n", ns]);
        let lag = table_cell(&table, "LAG")?;
        let rate = table_cell(&table, "RATE")?;
        assert!(
            lag.parse::<u64>().is_ok() && rate.parse::<f64>().is_ok_and(|r| r >= 0.0),
            "Lag and Rate are numbers:\n{table}"
        );
        Some(table)
    })
    .await;
    eprintln!("{table}");
    producing.join().expect("producer");
    await_pipeline_output(&topics, &events);

    // The status counts every event once: all published, none twice (the group is stable).
    let status = eventually("status.insights counting every event", || async {
        let s = status_insights(ns, "logins");
        (s["cleaned"].as_u64()? >= cleaned && s["deadLettered"].as_u64()? >= dead_lettered)
            .then_some(s)
    })
    .await;
    assert_eq!(
        (status["cleaned"].as_u64(), status["deadLettered"].as_u64()),
        (Some(cleaned), Some(dead_lettered)),
        "status.insights counts each of the {} events once (cleaned, dead-lettered): {status:#}",
        events.records.len()
    );
    assert!(
        status["contributors"].as_u64() >= Some(replicas as u64),
        "each of the {replicas} replicas contributed: {status:#}"
    );
    assert!(
        status["distinctUsers"].as_u64() > Some(0)
            && status["topUsers"][0]["count"].as_u64() >= Some(1),
        "users counted: {status:#}"
    );
    let wide = kubectl(&["get", "fp", "logins", "-n", ns, "-o", "wide"]);
    assert_eq!(
        table_cell(&wide, "CLEANED"),
        Some(cleaned.to_string()),
        "-o wide shows the cleaned count:\n{wide}"
    );
    eprintln!("{wide}");

    // (b) The insights command in a consumer pod merges the same snapshots.
    let pod = pods[0].name_any();
    let report = eventually(
        "`fetch-consumer insights` in a pod agreeing with the status",
        || {
            let report = insights_in_pod(ns, &pod)
                .ok()
                .filter(|r| r["totals"]["cleaned"] == status["cleaned"]);
            async move { report }
        },
    )
    .await;
    assert_eq!(
        report["pipeline"],
        group_of(ns, "logins"),
        "the report is the pipeline's: {report:#}"
    );
    assert_eq!(
        report["totals"]["deadLettered"], status["deadLettered"],
        "the command and the status agree: {report:#}"
    );
    assert!(
        report["contributors"].as_u64() >= Some(replicas as u64),
        "each replica contributed: {report:#}"
    );
}

/// The default consumer group of pipeline `name` in `ns`.
fn group_of(ns: &str, name: &str) -> String {
    format!("fetch-pipeline-{ns}-{name}")
}

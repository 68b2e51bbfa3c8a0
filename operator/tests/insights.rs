//! Insights and consumer lag in the status, against a real kube-apiserver and a real Kafka
//! broker. The test publishes the snapshots replicas would (there is no kubelet to run them),
//! commits offsets for the pipeline's group, and checks that the operator's summary is the
//! consumer library's own merge of the same snapshots, that the lag is what the offsets say,
//! that `kubectl get` shows both, and that a failed read keeps the last summary.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fetch_consumer::clean::Flags;
use fetch_consumer::insights::fleet::{Fleet, Summary};
use fetch_consumer::insights::snapshot::{Snapshot, SnapshotKind, Span};
use fetch_consumer::insights::{DEFAULT_TOP_CAPACITY, Insights, LoginFacts};
use fetch_consumer::kafka::send::send as send_record;
use fetch_consumer::reason::RejectReason;
use fetch_operator::crd::{FetchPipeline, InsightsStatus};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::*;

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

/// Insights of `logins` (user, logins, app version) and `rejected` malformed events.
fn insights(logins: &[(&str, u64, &str)], rejected: u64) -> Insights {
    let mut insights = Insights::new(DEFAULT_TOP_CAPACITY);
    for (user, count, version) in logins {
        for n in 0..*count {
            let device = format!("device-{user}-{}", n % 2);
            insights.record_facts(&LoginFacts {
                user_id: user,
                app_version: version,
                device_type: "android",
                locale: "NY",
                ip: Some("10.1.2.3"),
                device_id: Some(&device),
                timestamp: 1_730_000_000 + i64::try_from(n).expect("small"),
                flags: Flags::default(),
            });
        }
    }
    for _ in 0..rejected {
        insights.record_rejection(RejectReason::MalformedJson);
    }
    insights
}

/// A snapshot as a replica publishes it, two seconds ago, covering `length` before that.
fn snapshot(
    pipeline: &str,
    replica: &str,
    kind: SnapshotKind,
    length: Duration,
    insights: Insights,
) -> Snapshot {
    let end = now_ms() - 2_000;
    let length = i64::try_from(length.as_millis()).expect("fits");
    Snapshot {
        pipeline: pipeline.into(),
        replica: replica.into(),
        kind,
        final_snapshot: false,
        span: Span {
            start_ms: end - length,
            end_ms: end,
        },
        published_at_ms: end,
        top_cut_to: None,
        folded: None,
        insights,
    }
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer")
}

/// Produces records (key, value, partition) and waits for every ack.
fn send(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>, Option<i32>)]) {
    let producer = producer(bootstrap);
    for (key, value, partition) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(value);
        if let Some(p) = partition {
            record = record.partition(*p);
        }
        send_record(&producer, record).expect("queue a record");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Publishes snapshots the way replicas do: encoded, keyed by `Snapshot::key`.
fn publish(bootstrap: &str, topic: &str, snapshots: &[Snapshot]) {
    let records: Vec<_> = snapshots
        .iter()
        .map(|s| {
            let value = s.encode().expect("the snapshot encodes");
            (s.key().into_bytes(), value, None)
        })
        .collect();
    send(bootstrap, topic, &records);
}

/// Commits `offsets` (partition, offset) on `topic` for `group`, as its consumers would.
fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("offset");
    }
    consumer.commit(&list, CommitMode::Sync).expect("commit");
}

fn condition(fp: &FetchPipeline, type_: &str) -> Option<(String, String, String)> {
    fp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn env_of(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|pod| pod.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        // The API server drops an empty value (Go's omitempty); the pod still gets the
        // variable, set to the empty string.
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// The status summary matches the consumer library's merge of the same snapshots.
fn assert_matches(status: &InsightsStatus, expected: &Summary) {
    let totals = &expected.totals;
    assert_eq!(status.cleaned, i64::try_from(totals.cleaned).expect("fits"));
    assert_eq!(
        status.dead_lettered,
        i64::try_from(totals.dead_lettered).expect("fits")
    );
    assert_eq!(
        status.distinct_users,
        i64::try_from(totals.distinct_users).expect("fits")
    );
    assert_eq!(
        status.distinct_devices,
        i64::try_from(totals.distinct_devices).expect("fits")
    );
    assert_eq!(
        status.contributors,
        i64::try_from(expected.contributors).expect("fits")
    );
    assert_eq!(status.rate_per_second, expected.rate);
    let users: Vec<(String, i64)> = status
        .top_users
        .iter()
        .map(|u| (u.key.clone(), u.count))
        .collect();
    let expected_users: Vec<(String, i64)> = totals
        .top_users
        .iter()
        .map(|c| (c.key.clone(), i64::try_from(c.count).expect("fits")))
        .collect();
    assert_eq!(users, expected_users);
    let versions: Vec<(String, i64)> = status
        .top_app_versions
        .iter()
        .map(|v| (v.version.clone(), v.count))
        .collect();
    let expected_versions: Vec<(String, i64)> = totals
        .top_app_versions
        .iter()
        .map(|(v, n)| (v.clone(), i64::try_from(*n).expect("fits")))
        .collect();
    assert_eq!(versions, expected_versions);
}

/// `kubectl get fp` as the API server prints it: column names with their priority, and the
/// cells of the row named `name`.
async fn table(client: &kube::Client, ns: &str, name: &str) -> (Vec<(String, i64)>, Vec<String>) {
    let mut request = http::Request::get(format!(
        "/apis/fetch-pipeline.dev/v1alpha1/namespaces/{ns}/fetchpipelines/{name}"
    ))
    .body(Vec::new())
    .expect("request");
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    let table: serde_json::Value = client.request(request).await.expect("table");
    let columns = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let cells = table["rows"][0]["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| match c {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    (columns, cells)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_and_lag_reach_the_status_and_kubectl_get() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let ns = "default";
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let bootstrap = bootstrap();

    // Lag: 10 records on partition 0 with 3 committed, 4 on partition 1 with none committed.
    let input = unique("logins-in");
    create_topic(&input, 2);
    let records: Vec<_> = (0..14)
        .map(|n| {
            let partition = if n < 10 { 0 } else { 1 };
            (
                format!("k{n}").into_bytes(),
                b"{}".to_vec(),
                Some(partition),
            )
        })
        .collect();
    send(&bootstrap, &input, &records);
    let group = unique("logins-group");
    commit(&bootstrap, &group, &input, &[(0, 3)]);

    // Two replicas of this pipeline, one of another pipeline sharing the topic, and a record
    // that is not a snapshot at all.
    let topic = unique("insights");
    create_topic(&topic, 1);
    let interval = Duration::from_secs(30);
    let window = SnapshotKind::Window { slot: 0 };
    let replica_a = insights(
        &[("u1", 5, "2.3.0"), ("u2", 3, "2.3.0"), ("u3", 1, "1.0.0")],
        2,
    );
    let mut snapshots = vec![
        snapshot(&group, "a", SnapshotKind::Total, interval * 10, replica_a),
        snapshot(
            &group,
            "b",
            SnapshotKind::Total,
            interval * 10,
            insights(
                &[
                    ("u1", 2, "2.4.0"),
                    ("u4", 4, "2.4.0"),
                    ("u5", 6, "2.3.0"),
                    ("u6", 8, "3.0.0"),
                ],
                1,
            ),
        ),
        snapshot(
            &group,
            "a",
            window,
            interval,
            insights(&[("u1", 6, "2.3.0")], 0),
        ),
        snapshot(
            &group,
            "b",
            window,
            interval,
            insights(&[("u4", 2, "2.4.0")], 1),
        ),
        snapshot(
            "another-pipeline",
            "c",
            SnapshotKind::Total,
            interval,
            insights(&[("u9", 50, "9.9.9")], 7),
        ),
    ];
    publish(&bootstrap, &topic, &snapshots);
    send(
        &bootstrap,
        &topic,
        // Under the pipeline's key prefix, so the reader decodes it (and counts it).
        &[(
            format!("{group}/stray").into_bytes(),
            b"not a snapshot".to_vec(),
            None,
        )],
    );

    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap},
        "input": {"topic": input},
        "consumerGroup": group,
        "insights": {"topic": topic, "interval": "5s"},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("logins", spec))
        .await
        .expect("create");
    let fp = eventually("status.insights and status.consumerLag", || async {
        let fp = pipelines.get("logins").await.ok()?;
        let status = fp.status.as_ref()?;
        (status.insights.is_some() && status.consumer_lag.is_some()).then_some(fp)
    })
    .await;
    let status = fp.status.clone().expect("status");
    assert_eq!(
        status.consumer_lag,
        Some(7 + 4),
        "from the committed offset, and from the log start where none is"
    );
    let summary = status.insights.clone().expect("insights");
    let expected =
        Fleet::merge(&snapshots, &group, now_ms(), None, DEFAULT_TOP_CAPACITY).summary(5);
    assert_matches(&summary, &expected);
    assert_eq!(summary.top_users.len(), 5, "6 users, the top 5 shown");
    assert_eq!(summary.top_users[0].key, "u6");
    assert!(
        summary.top_users.iter().all(|u| u.key != "u9"),
        "another pipeline's users stay out"
    );
    assert_eq!(summary.contributors, 2);
    let newest = snapshots
        .iter()
        .filter(|s| s.pipeline == group)
        .map(|s| s.published_at_ms)
        .max()
        .expect("snapshots");
    let age = (now_ms() - newest) / 1000 + 1;
    assert!(
        (1..=age).contains(&summary.snapshot_age_seconds),
        "snapshot age {} s, published {age} s ago",
        summary.snapshot_age_seconds
    );
    let (available, reason, message) = condition(&fp, "InsightsAvailable").expect("condition");
    assert_eq!(
        (available.as_str(), reason.as_str()),
        ("True", "Read"),
        "{message}"
    );
    assert!(
        message.contains("1 record(s)"),
        "the stray record is counted: {message}"
    );

    // The consumers are told where and how often to publish.
    let env = env_of(
        &deployments
            .get("logins-consumer")
            .await
            .expect("deployment"),
    );
    assert_eq!(env.get("FETCH_INSIGHTS_TOPIC"), Some(&topic));
    assert_eq!(
        env.get("FETCH_INSIGHTS_INTERVAL").map(String::as_str),
        Some("5s")
    );

    // `kubectl get fp` shows lag and rate; `-o wide` adds users, cleaned, dead-lettered, age.
    let (columns, cells) = table(&client, ns, "logins").await;
    let at = |name: &str| {
        columns
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("column {name} in {columns:?}"))
    };
    for (name, priority) in [
        ("Lag", 0),
        ("Rate", 0),
        ("Users", 1),
        ("Cleaned", 1),
        ("DeadLettered", 1),
        ("Insights-Age", 1),
    ] {
        assert_eq!(columns[at(name)].1, priority, "{name}");
    }
    assert_eq!(cells[at("Lag")], "11");
    assert_eq!(
        cells[at("Rate")].parse::<f64>().ok(),
        summary.rate_per_second,
        "{cells:?}"
    );
    assert_eq!(cells[at("Cleaned")], summary.cleaned.to_string());

    // A replica publishes again: the next check shows it (the latest snapshot per key wins).
    snapshots[0] = snapshot(
        &group,
        "a",
        SnapshotKind::Total,
        interval * 11,
        insights(
            &[
                ("u1", 5, "2.3.0"),
                ("u2", 3, "2.3.0"),
                ("u3", 1, "1.0.0"),
                ("u7", 20, "4.0.0"),
            ],
            2,
        ),
    );
    publish(&bootstrap, &topic, &snapshots[..1]);
    let expected =
        Fleet::merge(&snapshots, &group, now_ms(), None, DEFAULT_TOP_CAPACITY).summary(5);
    let summary = eventually("the new snapshot summed", || async {
        let fp = pipelines.get("logins").await.ok()?;
        let insights = fp.status?.insights?;
        (insights.cleaned == i64::try_from(expected.totals.cleaned).ok()?).then_some(insights)
    })
    .await;
    assert_matches(&summary, &expected);
    assert_eq!(summary.top_users[0].key, "u7");

    // A pipeline whose replicas have published nothing yet: said so, and nothing else changes.
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap},
        "input": {"topic": input},
        "insights": {"topic": unique("never-created")},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("quiet", spec))
        .await
        .expect("create");
    let fp = eventually(
        "InsightsAvailable=False for a topic not created yet",
        || async {
            let fp = pipelines.get("quiet").await.ok()?;
            (condition(&fp, "InsightsAvailable")?.0 == "False").then_some(fp)
        },
    )
    .await;
    let (_, reason, message) = condition(&fp, "InsightsAvailable").expect("condition");
    assert_eq!(reason, "NotPublished", "{message}");
    assert!(
        fp.status
            .as_ref()
            .and_then(|s| s.insights.as_ref())
            .is_none()
    );
    assert_eq!(
        condition(&fp, "KafkaReachable").map(|c| (c.0, c.1)),
        Some(("True".into(), "TopicFound".into()))
    );

    // Turned off: the consumers get an empty topic, and the status drops the summary.
    pipelines
        .patch(
            "logins",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"insights": {"enabled": false}}})),
        )
        .await
        .expect("disable insights");
    let fp = eventually("insights disabled", || async {
        let fp = pipelines.get("logins").await.ok()?;
        (condition(&fp, "InsightsAvailable")?.1 == "Disabled").then_some(fp)
    })
    .await;
    assert!(
        fp.status
            .as_ref()
            .and_then(|s| s.insights.as_ref())
            .is_none()
    );
    let env = eventually("FETCH_INSIGHTS_TOPIC emptied", || async {
        let env = env_of(&deployments.get("logins-consumer").await.ok()?);
        (env.get("FETCH_INSIGHTS_TOPIC")?.is_empty()).then_some(env)
    })
    .await;
    assert_eq!(
        env.get("FETCH_INSIGHTS_INTERVAL").map(String::as_str),
        Some("5s")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_insights_read_keeps_the_last_summary() {
    let (_server, client) = control_plane().await;
    let _stop = start_controller(client.clone());
    let broker = Broker::start();
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let input = unique("outage-in");
    create_topic_on(&broker.bootstrap, &input, 1);
    let topic = unique("outage-insights");
    create_topic_on(&broker.bootstrap, &topic, 1);
    let group = unique("outage-group");
    let snapshots = [snapshot(
        &group,
        "a",
        SnapshotKind::Total,
        Duration::from_secs(60),
        insights(&[("u1", 3, "2.3.0")], 1),
    )];
    publish(&broker.bootstrap, &topic, &snapshots);
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": broker.bootstrap},
        "input": {"topic": input},
        "consumerGroup": group,
        "insights": {"topic": topic},
    });
    pipelines
        .create(&PostParams::default(), &pipeline("outage", spec))
        .await
        .expect("create");
    let before = eventually("status.insights", || async {
        pipelines.get("outage").await.ok()?.status?.insights
    })
    .await;
    assert_eq!(before.cleaned, 3);

    drop(broker);
    // A check that straddles the stop can read the offsets just before it and fail the
    // insights read just after (the two reads run side by side), so wait for a check that
    // found both unreadable.
    let fp = eventually(
        "InsightsAvailable=False and KafkaReachable=False after the broker stopped",
        || async {
            let fp = pipelines.get("outage").await.ok()?;
            let insights_failed = condition(&fp, "InsightsAvailable")?.1 == "ReadFailed";
            let kafka_down = condition(&fp, "KafkaReachable")?.0 == "False";
            (insights_failed && kafka_down).then_some(fp)
        },
    )
    .await;
    let status = fp.status.clone().expect("status");
    assert_eq!(
        status.insights.as_ref(),
        Some(&before),
        "the last good summary stays"
    );
    let (_, _, message) = condition(&fp, "InsightsAvailable").expect("condition");
    assert!(
        message.contains("still shows the figures read at"),
        "{message}"
    );
    assert_eq!(
        status.consumer_lag, None,
        "offsets unreadable: lag unknown, not zero"
    );
}

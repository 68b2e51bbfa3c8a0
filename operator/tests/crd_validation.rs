//! The API server itself rejects invalid FetchPipelines, with messages that say what to fix.

mod support;

use fetch_operator::crd::{AutoscalingSpec, FetchPipeline, InsightsSpec};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use support::*;

/// An untyped object, so specs that the Rust types could not even hold can be sent.
fn pipeline(name: &str, spec: serde_json::Value) -> DynamicObject {
    let resource = ApiResource::erase::<FetchPipeline>(&());
    DynamicObject::new(name, &resource).data(serde_json::json!({ "spec": spec }))
}

#[tokio::test]
async fn invalid_pipelines_are_rejected_by_the_api_server_and_defaults_apply() {
    let (_server, client) = control_plane().await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<FetchPipeline>(&()),
    );
    let typed: Api<FetchPipeline> = Api::namespaced(client, "default");
    let kafka = serde_json::json!({"bootstrapServers": "kafka:9092"});

    api.create(
        &PostParams::default(),
        &pipeline("ok", serde_json::json!({"kafka": kafka})),
    )
    .await
    .expect("a minimal pipeline is valid");
    let created = typed.get("ok").await.expect("read back");
    assert_eq!(
        created.spec.input.topic, "user-login",
        "defaults applied by the API server"
    );
    assert_eq!(created.spec.dead_letter.topic, "user-login-dlq");
    assert_eq!(
        (created.spec.replicas.min, created.spec.replicas.max),
        (1, 12)
    );
    assert_eq!(
        created.spec.insights,
        InsightsSpec {
            enabled: true,
            topic: "fetch-pipeline-insights".into(),
            interval: "30s".into(),
        },
        "insights on by default"
    );
    assert_eq!(
        created.spec.autoscaling,
        AutoscalingSpec {
            enabled: false,
            lag_per_replica: None,
            catch_up_seconds: None,
            scale_down_stabilization: "5m".into(),
        },
        "autoscaling off by default"
    );
    api.create(
        &PostParams::default(),
        &pipeline(
            "autoscaling-ok",
            serde_json::json!({"kafka": kafka, "replicas": {"min": 0}, "autoscaling": {"enabled": true, "catchUpSeconds": 300, "scaleDownStabilization": "1m30s"}}),
        ),
    )
    .await
    .expect("autoscaling with a catch-up target and min 0 is valid");
    api.create(
        &PostParams::default(),
        &pipeline(
            "insights-ok",
            serde_json::json!({"kafka": kafka, "insights": {"topic": "fleet.insights", "interval": "1m30s"}}),
        ),
    )
    .await
    .expect("a compound interval is valid");
    api.create(
        &PostParams::default(),
        &pipeline(
            "insights-off",
            serde_json::json!({"kafka": kafka, "insights": {"enabled": false, "topic": "user-login"}}),
        ),
    )
    .await
    .expect("the topic of disabled insights is not checked against the others");

    let cases = [
        (
            serde_json::json!({"kafka": kafka, "replicas": {"min": 5, "max": 2}}),
            "spec.replicas.min must not be greater than spec.replicas.max",
        ),
        (
            serde_json::json!({"kafka": kafka, "output": {"topic": "user-login"}}),
            "spec.output.topic must differ from spec.input.topic",
        ),
        (
            serde_json::json!({"kafka": kafka, "deadLetter": {"topic": "user-login"}}),
            "spec.deadLetter.topic must differ from spec.input.topic",
        ),
        (
            serde_json::json!({"kafka": kafka, "pii": {"mode": "Hash"}}),
            "spec.pii.mode Hash needs spec.pii.hashKeySecret",
        ),
        (
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "sasl": {"mechanism": "PLAIN", "credentialsSecret": {"name": "s"}}}}),
            "spec.kafka.sasl needs spec.kafka.securityProtocol SASL_PLAINTEXT or SASL_SSL",
        ),
        (
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "tls": {"caSecret": {"name": "ca", "key": "ca.crt"}}}}),
            "spec.kafka.tls needs spec.kafka.securityProtocol SSL or SASL_SSL",
        ),
        (
            serde_json::json!({"kafka": kafka, "input": {"topic": "no spaces"}}),
            "spec.input.topic",
        ),
        (
            serde_json::json!({"kafka": kafka, "replicas": {"max": 0}}),
            "spec.replicas.max",
        ),
        (
            serde_json::json!({"kafka": {"bootstrapServers": ""}}),
            "spec.kafka.bootstrapServers",
        ),
        (
            serde_json::json!({"kafka": kafka, "pii": {"mode": "Scramble"}}),
            "spec.pii.mode",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"interval": "5 parsecs"}}),
            "spec.insights.interval must be a duration such as 30s, 1m or 1m30s",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"interval": "30"}}),
            "spec.insights.interval must be a duration such as 30s, 1m or 1m30s",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"interval": "500ms"}}),
            "spec.insights.interval must be between 1s and 1h",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"interval": "61m"}}),
            "spec.insights.interval must be between 1s and 1h",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"topic": "no spaces"}}),
            "spec.insights.topic",
        ),
        (
            serde_json::json!({"kafka": kafka, "insights": {"topic": "processed-user-logins"}}),
            "spec.insights.topic must differ from spec.input.topic, spec.output.topic and spec.deadLetter.topic",
        ),
        (
            serde_json::json!({"kafka": kafka, "autoscaling": {"enabled": true}}),
            "spec.autoscaling needs a target when enabled: set lagPerReplica, catchUpSeconds or both",
        ),
        (
            serde_json::json!({"kafka": kafka, "autoscaling": {"enabled": true, "lagPerReplica": 0}}),
            "spec.autoscaling.lagPerReplica",
        ),
        (
            serde_json::json!({"kafka": kafka, "autoscaling": {"enabled": true, "catchUpSeconds": 100000}}),
            "spec.autoscaling.catchUpSeconds",
        ),
        (
            serde_json::json!({"kafka": kafka, "autoscaling": {"enabled": true, "lagPerReplica": 10, "scaleDownStabilization": "soon"}}),
            "spec.autoscaling.scaleDownStabilization must be a duration such as 5m, 90s or 1m30s",
        ),
        (
            serde_json::json!({"kafka": kafka, "autoscaling": {"enabled": true, "lagPerReplica": 10, "scaleDownStabilization": "2h"}}),
            "spec.autoscaling.scaleDownStabilization must be at most 1h",
        ),
        (
            serde_json::json!({"kafka": kafka, "replicas": {"fixed": -1}}),
            "spec.replicas.fixed",
        ),
    ];
    for (i, (spec, message)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &pipeline(&format!("bad-{i}"), spec.clone()),
            )
            .await
            .expect_err(&format!("{spec} must be rejected"));
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(
                    status.message.contains(message),
                    "expected {message:?} in {:?}",
                    status.message
                );
            }
            other => panic!("expected a validation error, got {other}"),
        }
    }
}

//! Static checks with the real tools: hadolint on the Dockerfile, the Compose Specification
//! schema on the compose file, `helm lint --strict` and the chart's values schema.

use fetch_deploy_tests::{run, run_ok, tool};

#[test]
fn dockerfile_passes_hadolint() {
    run_ok(&tool("HADOLINT"), &["Dockerfile"]);
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let schema = tool("COMPOSE_SCHEMA");
    run_ok(
        &tool("CHECK_JSONSCHEMA"),
        &["--schemafile", &schema, "compose/compose.yaml"],
    );
}

#[test]
fn chart_lints_strict_with_default_and_full_values() {
    let helm = tool("HELM");
    run_ok(&helm, &["lint", "--strict", "charts/fetch-pipeline"]);
    run_ok(
        &helm,
        &[
            "lint",
            "--strict",
            "charts/fetch-pipeline",
            "--set",
            "rbac.namespaced=true,metrics.serviceMonitor.enabled=true,crds.keep=false",
            "--set",
            "pipelines[0].name=logins,pipelines[0].spec.kafka.bootstrapServers=kafka:9092",
        ],
    );
}

#[test]
fn chart_values_schema_rejects_unknown_and_mistyped_values() {
    let helm = tool("HELM");
    for (set, expected) in [
        ("operatr.replicas=2", "operatr"),
        ("operator.replicas=many", "replicas"),
        ("operator.checkInterval=soon", "checkInterval"),
        ("operator.logFormat=xml", "logFormat"),
        (
            "pipelines[0].name=Bad_Name,pipelines[0].spec.kafka.bootstrapServers=k:9092",
            "name",
        ),
    ] {
        let out = run(
            &helm,
            &["template", "t", "charts/fetch-pipeline", "--set", set],
        );
        assert!(!out.status.success(), "--set {set} must be rejected");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("values don't meet the specifications of the schema"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
}

/// The chart and the kustomize base grant the operator the same rules (the base's are proven
/// sufficient by the operator's RBAC test), so neither can drift into more or less.
#[test]
fn chart_and_kustomize_base_grant_the_same_rbac_rules() {
    fn rules(yaml: &str, kind: &str) -> Vec<serde_json::Value> {
        serde_yaml_ng::Deserializer::from_str(yaml)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .filter(|v: &serde_json::Value| v["kind"] == kind)
            .map(|v| v["rules"].clone())
            .collect()
    }
    let rendered = run_ok(
        &tool("HELM"),
        &[
            "template",
            "t",
            "charts/fetch-pipeline",
            "--namespace",
            "fetch-system",
        ],
    );
    let base = std::fs::read_to_string(fetch_deploy_tests::repo().join("k8s/operator-rbac.yaml"))
        .expect("read");
    for kind in ["ClusterRole", "Role"] {
        assert_eq!(
            rules(&rendered, kind),
            rules(&base, kind),
            "{kind} rules differ between chart and k8s/"
        );
    }
}

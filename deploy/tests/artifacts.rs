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

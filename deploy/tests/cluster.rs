//! The deployment artifacts against a real kube-apiserver: the rendered chart and the kustomize
//! base pass a server-side dry run, `helm install` with the operator running locally turns a
//! FetchPipeline from values into a Deployment, and every pod the project creates is admitted
//! into a namespace that enforces the "restricted" Pod Security Standard.

use fetch_deploy_tests::{repo, run_ok, tool};
use fetch_testing::cluster::{
    control_plane, eventually, kubeconfig_file, namespace, start_controller,
};
use fetch_testing::{bootstrap, create_topic, unique};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec};
use kube::api::{Api, PostParams};
use serde::Deserialize;

/// kubectl or helm with the test control plane's kubeconfig.
fn with_kubeconfig(kubeconfig: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![format!("--kubeconfig={}", kubeconfig.display())];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let args = with_kubeconfig(kubeconfig, args);
    run_ok(
        &tool("KUBECTL"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn helm(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let args = with_kubeconfig(kubeconfig, args);
    run_ok(
        &tool("HELM"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn render_chart(extra: &[&str]) -> String {
    let mut args = vec![
        "template",
        "fetch",
        "charts/fetch-pipeline",
        "--namespace",
        "fetch-system",
    ];
    args.extend_from_slice(extra);
    run_ok(&tool("HELM"), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_and_kustomize_base_pass_a_server_side_dry_run() {
    let (server, client) = control_plane().await;
    let kubeconfig = kubeconfig_file(&server);
    namespace(&client, "fetch-system").await;

    // The CRD is already installed by the control plane, so the chart's FetchPipelines can be
    // checked against it in the same dry run.
    let rendered = render_chart(&[
        "--set",
        "pipelines[0].name=logins,pipelines[0].spec.kafka.bootstrapServers=kafka:9092",
    ]);
    let file = std::env::temp_dir().join(format!("{}.yaml", unique("chart")));
    std::fs::write(&file, rendered).expect("write");
    let path = file.display().to_string();
    kubectl(
        &kubeconfig,
        &["apply", "--server-side", "--dry-run=server", "-f", &path],
    );
    let namespaced = render_chart(&["--set", "rbac.namespaced=true,crds.enabled=false"]);
    std::fs::write(&file, namespaced).expect("write");
    kubectl(
        &kubeconfig,
        &["apply", "--server-side", "--dry-run=server", "-f", &path],
    );

    let base = repo().join("k8s").display().to_string();
    let out = kubectl(
        &kubeconfig,
        &["apply", "-k", &base, "--server-side", "--dry-run=server"],
    );
    assert!(
        out.contains("deployment.apps/fetch-operator serverside-applied (server dry run)"),
        "{out}"
    );
    let example = repo()
        .join("k8s/examples/fetchpipeline.yaml")
        .display()
        .to_string();
    namespace(&client, "data").await;
    kubectl(
        &kubeconfig,
        &["apply", "--server-side", "--dry-run=server", "-f", &example],
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_turns_a_pipeline_from_values_into_a_deployment() {
    let (server, client) = control_plane().await;
    let kubeconfig = kubeconfig_file(&server);
    let topic = unique("helm");
    create_topic(&topic, 3);

    // The chart's operator Deployment never runs here (no kubelet), so the operator runs in
    // this process, with the same controller code.
    let stop = start_controller(client.clone());

    let values = format!(
        "pipelines[0].name=logins,pipelines[0].spec.kafka.bootstrapServers={},pipelines[0].spec.input.topic={topic}",
        bootstrap()
    );
    // The control plane already has the CRD; a real cluster gets it from the chart.
    let out = helm(
        &kubeconfig,
        &[
            "install",
            "fetch",
            "charts/fetch-pipeline",
            "--namespace",
            "fetch-system",
            "--create-namespace",
            "--set",
            "crds.enabled=false",
            "--set",
            &values,
        ],
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "fetch-system");
    let replicas = eventually("the pipeline's consumer Deployment", || async {
        deployments
            .get_opt("logins-consumer")
            .await
            .ok()??
            .spec?
            .replicas
    })
    .await;
    assert_eq!(replicas, 3, "one consumer per partition");
    let operator = deployments
        .get("fetch-fetch-pipeline")
        .await
        .expect("the chart's operator Deployment");
    assert_eq!(operator.spec.and_then(|s| s.replicas), Some(2));
    let _ = stop.send(());
    helm(
        &kubeconfig,
        &["uninstall", "fetch", "--namespace", "fetch-system"],
    );
}

/// Pod templates of every Deployment in `yaml` (rendered chart or manifests), and bare Pods.
fn pods_in(yaml: &str) -> Vec<(String, PodTemplateSpec)> {
    let mut out = Vec::new();
    for doc in documents(yaml) {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match doc["kind"].as_str() {
            Some("Deployment") => {
                let d: Deployment = serde_json::from_value(doc).expect("deployment");
                out.push((name, d.spec.expect("spec").template));
            }
            Some("Pod") => {
                let p: Pod = serde_json::from_value(doc).expect("pod");
                out.push((
                    name,
                    PodTemplateSpec {
                        metadata: None,
                        spec: p.spec,
                    },
                ));
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_the_project_creates_meets_the_restricted_standard() {
    let (_server, client) = control_plane().await;
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "restricted", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "restricted");

    // Enforcement is on: a pod without the security settings is refused.
    let plain: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "plain"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod");
    let refused = pods.create(&PostParams::default(), &plain).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("restricted")),
        "{refused:?}"
    );

    let mut templates = pods_in(&render_chart(&[]));
    let manifests =
        std::fs::read_to_string(repo().join("k8s/operator-deployment.yaml")).expect("read");
    templates.extend(pods_in(&manifests));
    let fp: fetch_operator::crd::FetchPipeline = serde_json::from_value(serde_json::json!({
        "apiVersion": "fetch-pipeline.dev/v1alpha1", "kind": "FetchPipeline",
        "metadata": {"name": "logins", "namespace": "restricted", "uid": "1"},
        "spec": {"kafka": {"bootstrapServers": "k:9092"}},
    }))
    .expect("pipeline");
    let rollout = fetch_operator::rollout::Rollout::Rolling;
    let (consumer, _) = fetch_operator::resources::deployment(&fp, "img", 1, rollout);
    templates.push(("consumer".into(), consumer.spec.expect("spec").template));
    assert!(
        templates.len() >= 4,
        "operator (chart, k8s), chart test pod, consumer: {}",
        templates.len()
    );

    for (i, (name, template)) in templates.into_iter().enumerate() {
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("pod-{i}")),
                ..Default::default()
            },
            spec: template.spec,
            ..Default::default()
        };
        if let Err(e) = pods.create(&PostParams::default(), &pod).await {
            panic!("the pod of {name} is refused under the restricted standard: {e}");
        }
    }
}

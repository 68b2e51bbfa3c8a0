//! The Kubernetes control plane for tests: kube-apiserver and etcd started by the `envtest`
//! crate from the binaries `hack/k8s-binaries.sh` builds (named by `KUBEBUILDER_ASSETS`), with
//! the FetchPipeline CRD installed, plus kube-controller-manager where a test needs it.

use std::time::Duration;

use fetch_operator::crd::FetchPipeline;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};

use crate::{TIMEOUT, unique};

/// A kube-apiserver and etcd with the FetchPipeline CRD installed. Panics with the fix when the
/// control-plane binaries are not available.
pub async fn control_plane() -> (envtest::Server, Client) {
    let environment = environment()
        .with_crds(FetchPipeline::crd())
        .expect("CRD serializes");
    start(environment).await
}

/// A kube-apiserver and etcd that never had the FetchPipeline CRD, for tests of what the
/// operator does without it. Starting without it, rather than deleting it, keeps the test off
/// the API server's CRD finalizer, whose retries back off for minutes on a loaded machine.
pub async fn control_plane_without_crd() -> (envtest::Server, Client) {
    start(environment()).await
}

fn environment() -> envtest::Environment {
    let assets = std::env::var("KUBEBUILDER_ASSETS").unwrap_or_else(|_| {
        panic!(
            "KUBEBUILDER_ASSETS is not set: these tests need kube-apiserver and etcd. Run them \
             with hack/test.sh, or export KUBEBUILDER_ASSETS=$(hack/k8s-binaries.sh)"
        )
    });
    envtest::Environment {
        binary_assets_settings: envtest::BinaryAssetsSettings {
            download_binary_assets: false,
            binary_assets_directory: Some(assets),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn start(environment: envtest::Environment) -> (envtest::Server, Client) {
    let server = environment
        .create()
        .await
        .expect("start kube-apiserver and etcd");
    let client = server.client().expect("client for the control plane");
    (server, client)
}

/// Writes the control plane's kubeconfig to a file, for processes started by the test.
pub fn kubeconfig_file(server: &envtest::Server) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("envtest")));
    std::fs::write(&path, server.as_ref()).expect("write kubeconfig");
    path
}

pub async fn namespace(client: &Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Polls `check` until it returns `Some`, or panics with `what` after two minutes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// kube-controller-manager (garbage collector, Deployment and ReplicaSet controllers) against
/// the test control plane, so owner-reference deletion and Deployment status are real.
/// Stopped when dropped.
pub struct ControllerManager {
    child: std::process::Child,
    kubeconfig: std::path::PathBuf,
}

impl ControllerManager {
    pub fn start(server: &envtest::Server) -> Self {
        let assets =
            std::env::var("KUBEBUILDER_ASSETS").expect("KUBEBUILDER_ASSETS (see control_plane)");
        let kubeconfig = kubeconfig_file(server);
        let child = std::process::Command::new(format!("{assets}/kube-controller-manager"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--controllers=garbage-collector-controller,deployment-controller,replicaset-controller")
            .args(["--leader-elect=false", "--secure-port=0", "--authentication-skip-lookup"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start kube-controller-manager from KUBEBUILDER_ASSETS");
        ControllerManager { child, kubeconfig }
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Controller settings for tests: a fast check interval and short Kafka timeouts.
pub fn controller_settings() -> fetch_operator::controller::Settings {
    fetch_operator::controller::Settings {
        consumer_image: "fetch-pipeline:test".into(),
        check_interval: Duration::from_secs(1),
        kafka_timeout: Duration::from_secs(2),
        watch_namespace: None,
        concurrency: 16,
    }
}

/// Runs the operator's controller in this process (the control plane has no kubelet to run the
/// operator's own pod). It stops when the returned sender is dropped or sent to.
pub fn start_controller(client: Client) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let metrics = std::sync::Arc::new(fetch_operator::metrics::Metrics::default());
        fetch_operator::controller::run(client, controller_settings(), metrics, shutdown)
            .await
            .expect("the controller runs");
    });
    stop
}

//! End-to-end through the kubectl door, on the local cluster (`hack/e2e.sh`): `kubectl apply -k
//! k8s` and the example FetchPipeline, unchanged, as the README tells users to run them. The
//! example names its broker `kafka.data:9092`, so the test gives the broker that name: a
//! Service in `data` whose endpoint is the broker on the node (cluster DNS and kube-proxy
//! carry the bootstrap connection).
//!
//! Runs after the Helm tests; the chart's operators would also reconcile these pipelines, so
//! the release is uninstalled first.

mod e2e_support;

use e2e_support::*;
use fetch_testing::bootstrap;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_base_and_example_pipeline_run_and_deleting_the_pipeline_removes_its_objects() {
    let client = client().await;
    if try_kubectl(&[
        "get",
        "deployment",
        "-n",
        RELEASE_NAMESPACE,
        "fetch-fetch-pipeline",
    ])
    .is_ok()
    {
        helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NAMESPACE,
            "--wait",
        ]);
    }
    kubectl(&["apply", "-k", "k8s", "--server-side", "--force-conflicts"]);
    ready_pods(
        &client,
        RELEASE_NAMESPACE,
        "app.kubernetes.io/name=fetch-operator",
        2,
    )
    .await;

    // `kafka.data:9092`, as the example expects, is the broker on the node.
    let _ns = TestNamespace::restricted(&client, "data").await;
    let (host, port) = bootstrap()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .expect("host:port");
    apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: kafka, namespace: data}}\nspec:\n  ports: [{{name: kafka, port: 9092, targetPort: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kafka-node\n  namespace: data\n  labels: {{kubernetes.io/service-name: kafka}}\naddressType: IPv4\nports: [{{name: kafka, port: {port}}}]\nendpoints: [{{addresses: [\"{host}\"]}}]\n"
    ));
    let topics = Topics {
        input: "user-login".into(),
        output: "processed-user-logins".into(),
        dead_letter: "user-login-dlq".into(),
    };
    fetch_testing::create_topic(&topics.input, 2);
    fetch_testing::create_topic(&topics.output, 2);
    fetch_testing::create_topic(&topics.dead_letter, 1);

    kubectl(&["apply", "-f", "k8s/examples/fetchpipeline.yaml"]);
    ready_consumers(&client, "data", "logins", 2).await;
    let events = events(2_000, 7);
    fetch_testing::produce(&topics.input, &events.records);
    await_pipeline_output(&topics, &events);

    kubectl(&["delete", "-f", "k8s/examples/fetchpipeline.yaml", "--wait"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "data");
    let services: Api<Service> = Api::namespaced(client.clone(), "data");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "data");
    eventually("the pipeline's objects garbage-collected", || async {
        let gone = deployments.get_opt("logins-consumer").await.ok()?.is_none()
            && services.get_opt("logins-consumer").await.ok()?.is_none()
            && accounts.get_opt("logins-consumer").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    // The broker's Service is not the pipeline's and stays.
    assert!(services.get_opt("kafka").await.expect("get").is_some());
}

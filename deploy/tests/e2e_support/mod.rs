//! Shared by the end-to-end tests on the local cluster, which `hack/e2e.sh` brings up
//! (`hack/cluster.sh`) with the project's image loaded and a Kafka broker on the node's address,
//! and names in the environment:
//!
//! - `KUBECONFIG`: the cluster's admin kubeconfig (kubectl, helm and the kube client use it);
//! - `FETCH_E2E_IMAGE`: the project's image as loaded into the node;
//! - `FETCH_TEST_KAFKA_BOOTSTRAP`: the broker's PLAINTEXT listener, reachable from pods too;
//! - `FETCH_E2E_KAFKA_SASL_SSL`, `FETCH_E2E_KAFKA_CA_FILE`, `FETCH_E2E_SCRAM_USERNAME`,
//!   `FETCH_E2E_SCRAM_PASSWORD`: the same broker's SASL_SSL listener and its credentials;
//! - `HELM`, `KUBECTL`: the tools.
//!
//! A missing one fails the test with the fix. Events are made by the consumer's own generator
//! (malformed ones included) with a fresh `user_id` each, so the output's keys identify the
//! input events one by one.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fetch_consumer::clean::Cleaner;
use fetch_consumer::generator::{Generator, GeneratorConfig};
use fetch_deploy_tests::{repo, tool};
use fetch_testing::{TIMEOUT, bootstrap, produce};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Where the chart is installed, and its release name.
pub const RELEASE: &str = "fetch";
pub const RELEASE_NAMESPACE: &str = "fetch-system";

/// A variable `hack/e2e.sh` sets.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the end-to-end tests run on the local cluster; run hack/e2e.sh")
    })
}

/// The project's image, as loaded into the node: (repository, tag).
pub fn image() -> (String, String) {
    let image = fetch_deploy_tests::e2e_image();
    let (repository, tag) = image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("FETCH_E2E_IMAGE {image:?} has no tag"));
    (repository.to_owned(), tag.to_owned())
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{program} {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// kubectl against the cluster; panics with its output unless it succeeds.
pub fn kubectl(args: &[&str]) -> String {
    run(&tool("KUBECTL"), args, None).unwrap_or_else(|e| panic!("{e}"))
}

/// kubectl, returning its failure instead of panicking.
pub fn try_kubectl(args: &[&str]) -> Result<String, String> {
    run(&tool("KUBECTL"), args, None)
}

/// `kubectl apply -f -` of `yaml`.
pub fn apply(yaml: &str) -> String {
    run(&tool("KUBECTL"), &["apply", "-f", "-"], Some(yaml)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn helm(args: &[&str]) -> String {
    run(&tool("HELM"), args, None).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a kube client from KUBECONFIG (run hack/e2e.sh)")
}

/// A test's namespace, deleted (without waiting) when the test ends, pass or fail: the node
/// has two cores, and pipelines left running would leave later tests' pods unschedulable.
pub struct TestNamespace(String);

impl TestNamespace {
    /// Creates namespace `name` enforcing the "restricted" Pod Security Standard.
    pub async fn restricted(client: &Client, name: &str) -> Self {
        restricted_namespace(client, name).await;
        TestNamespace(name.to_owned())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = try_kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

/// Creates (or keeps) namespace `name`, enforcing the "restricted" Pod Security Standard.
pub async fn restricted_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("fetch-e2e").force(),
            &Patch::Apply(&ns),
        )
        .await
        .expect("apply namespace");
}

/// Installs the chart (two operators) into a restricted namespace unless it is installed,
/// and waits until both operator pods are Ready.
pub async fn ensure_chart(client: &Client) {
    if run(
        &tool("HELM"),
        &["status", RELEASE, "-n", RELEASE_NAMESPACE],
        None,
    )
    .is_err()
    {
        restricted_namespace(client, RELEASE_NAMESPACE).await;
        let (repository, tag) = image();
        helm(&[
            "install",
            RELEASE,
            "charts/fetch-pipeline",
            "--namespace",
            RELEASE_NAMESPACE,
            "--set",
            &format!("image.repository={repository},image.tag={tag}"),
            // Partition counts are re-read every 5 s instead of 30 s, to keep the tests short.
            "--set",
            "operator.checkInterval=5s",
        ]);
    }
    ready_pods(
        client,
        RELEASE_NAMESPACE,
        "app.kubernetes.io/component=operator",
        2,
    )
    .await;
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until exactly `count` pods matching `selector` in `ns` exist and all are Ready.
pub async fn ready_pods(client: &Client, ns: &str, selector: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(selector);
    eventually(
        &format!("{count} ready pods {selector} in {ns}"),
        || async {
            let list = pods.list(&params).await.ok()?.items;
            let live: Vec<Pod> = list
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (live.len() == count && live.iter().all(is_ready)).then_some(live)
        },
    )
    .await
}

/// The pods of pipeline `name`.
pub fn consumer_selector(name: &str) -> String {
    format!("app.kubernetes.io/name=fetch-consumer,app.kubernetes.io/instance={name}")
}

/// The replicas pipeline `name`'s consumer Deployment asks for; `None` before it exists.
pub async fn consumer_replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = deployments
        .get_opt(&format!("{name}-consumer"))
        .await
        .ok()??;
    d.spec?.replicas
}

/// Waits until the pipeline's consumer Deployment has `count` ready replicas and no others.
pub async fn ready_consumers(client: &Client, ns: &str, name: &str, count: usize) -> Vec<Pod> {
    eventually(
        &format!("Deployment {name}-consumer scaled to {count}"),
        || async { (consumer_replicas(client, ns, name).await? == count as i32).then_some(()) },
    )
    .await;
    ready_pods(client, ns, &consumer_selector(name), count).await
}

/// A FetchPipeline manifest with the given topics, plus `extra` lines of spec (indented by
/// two spaces, e.g. `"  paused: false"`).
pub fn pipeline(name: &str, ns: &str, topics: &Topics, bootstrap: &str, extra: &str) -> String {
    format!(
        "apiVersion: fetch-pipeline.dev/v1alpha1\nkind: FetchPipeline\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  kafka:\n    bootstrapServers: {bootstrap}\n  input: {{topic: {}}}\n  output: {{topic: {}}}\n  deadLetter: {{topic: {}}}\n{extra}\n",
        topics.input, topics.output, topics.dead_letter
    )
}

/// A pipeline's three topics on the test broker.
pub struct Topics {
    pub input: String,
    pub output: String,
    pub dead_letter: String,
}

impl Topics {
    /// Fresh topics; the input and output with `partitions` partitions.
    pub fn create(prefix: &str, partitions: i32) -> Self {
        let topics = Topics {
            input: fetch_testing::unique(&format!("{prefix}-in")),
            output: fetch_testing::unique(&format!("{prefix}-out")),
            dead_letter: fetch_testing::unique(&format!("{prefix}-dlq")),
        };
        fetch_testing::create_topic(&topics.input, partitions);
        fetch_testing::create_topic(&topics.output, partitions);
        fetch_testing::create_topic(&topics.dead_letter, 1);
        topics
    }
}

type Record = (Vec<u8>, Option<Vec<u8>>);

/// Input records and what the pipeline must make of them.
pub struct Events {
    pub records: Vec<Record>,
    /// `user_id` of each valid event: the keys the output must hold.
    pub valid: HashSet<Vec<u8>>,
    /// The rejected records' bytes: what the dead-letter topic must hold.
    pub rejected: HashSet<Vec<u8>>,
    /// How many records are rejected (some malformed records are alike).
    pub rejected_records: usize,
}

/// `n` generated events (a fresh `user_id` each, about 5% malformed).
pub fn events(n: usize, seed: u64) -> Events {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        variety: true,
        malformed: 0.05,
        ..Default::default()
    });
    let cleaner = Cleaner::default();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut out = Events {
        records: Vec::with_capacity(n),
        valid: HashSet::new(),
        rejected: HashSet::new(),
        rejected_records: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1_730_326_892);
    for _ in 0..n {
        generator.next_record(now, &mut key, &mut value);
        match cleaner.clean(&value) {
            Ok(event) => {
                out.valid.insert(event.user_id.as_bytes().to_vec());
            }
            Err(_) => {
                out.rejected.insert(value.clone());
                out.rejected_records += 1;
            }
        }
        out.records.push((key.clone(), Some(value.clone())));
    }
    assert!(!out.rejected.is_empty(), "the input has malformed events");
    out
}

/// Produces `events` into `topic` in `batches` batches spread over `over`, on a thread of its
/// own, so a test can act on the pipeline while events flow.
pub fn produce_over(
    topic: &str,
    events: &Events,
    batches: usize,
    over: Duration,
) -> std::thread::JoinHandle<()> {
    let topic = topic.to_owned();
    let records = events.records.clone();
    std::thread::spawn(move || {
        let size = records.len().div_ceil(batches.max(1));
        for chunk in records.chunks(size.max(1)) {
            produce(&topic, chunk);
            std::thread::sleep(over / batches.max(1) as u32);
        }
    })
}

/// Reads `topic` from the beginning until every one of `expected` has been seen, as named by
/// `id` (a record's key, or its bytes). Panics with the count still missing after
/// [`TIMEOUT`]. `check` is called on every record.
pub fn await_all(
    topic: &str,
    expected: &HashSet<Vec<u8>>,
    id: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> Vec<u8>,
    mut check: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", fetch_testing::unique("e2e-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in fetch_testing::end_offsets(topic).keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut missing = expected.clone();
    let mut records = 0;
    let deadline = Instant::now() + TIMEOUT;
    while !missing.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} of {} expected records never reached {topic} ({records} read)",
            missing.len(),
            expected.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            records += 1;
            check(&m);
            missing.remove(&id(&m));
        }
    }
}

/// Waits until the output holds every valid event and the dead-letter topic every rejected
/// one with its reason in a header.
pub fn await_pipeline_output(topics: &Topics, events: &Events) {
    await_all(
        &topics.output,
        &events.valid,
        |m| m.key().unwrap_or_default().to_vec(),
        |_| {},
    );
    await_all(
        &topics.dead_letter,
        &events.rejected,
        |m| m.payload().unwrap_or_default().to_vec(),
        |m| {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key.contains("reason")).map(|_| ()));
            assert!(reason.is_some(), "a dead letter without a reason header");
        },
    );
}

/// GET `path` on port 8080 of a pod, straight to its IP (the host routes to the pod network):
/// the body.
pub fn pod_get(pod: &Pod, path: &str) -> String {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| panic!("pod {} has no IP", pod.name_any()));
    fetch_testing::http_get(&format!("{ip}:8080"), path).1
}

/// The value of an unlabelled metric in a Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until every one of `pods` owns at least one partition of its input: the consumer
/// group is stable, so no partition changes hands (and no event is processed twice) while the
/// test's events flow.
pub async fn await_assigned(pods: &[Pod]) {
    eventually("every consumer assigned a partition", || async {
        pods.iter()
            .all(|p| {
                metric(
                    &pod_get(p, "/metrics"),
                    "fetch_consumer_assigned_partitions",
                )
                .is_some_and(|n| n >= 1.0)
            })
            .then_some(())
    })
    .await;
}

/// The cell of column `header` in the first row of a `kubectl get` table, `None` when the cell
/// is empty or `<none>` (or the table has no such column). Cells are cut at the header's
/// positions, as kubectl aligns them, so an empty cell does not shift the others.
pub fn table_cell(table: &str, header: &str) -> Option<String> {
    let mut lines = table.lines();
    let head = lines.next()?;
    let row = lines.next()?;
    let starts: Vec<usize> = head
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || head.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let column = starts
        .iter()
        .position(|&i| head[i..].split(' ').next() == Some(header))?;
    let from = starts[column].min(row.len());
    let to = starts
        .get(column + 1)
        .map_or(row.len(), |&e| e.min(row.len()));
    let cell = row.get(from..to)?.trim();
    (!cell.is_empty() && cell != "<none>").then(|| cell.to_owned())
}

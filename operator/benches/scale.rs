//! The operator at scale, against a real kube-apiserver and a real Kafka broker: how long 500
//! FetchPipelines take to converge, how long one reconciliation takes, and the process's RSS,
//! each against a baseline in the same run (1 pipeline; the idle controller).
//!
//!   KUBEBUILDER_ASSETS=$(hack/k8s-binaries.sh) cargo bench -p fetch-operator --bench scale
//!
//! It starts its own broker (hack/kafka.sh) and control plane (envtest). Prints a summary line:
//!   pipelines=<n> converge_s=<n> converge_1_s=<n> reconcile_p50_ms=<n> reconcile_p99_ms=<n> rss_idle_mb=<n> rss_500_mb=<n>

use std::sync::Arc;
use std::time::{Duration, Instant};

use fetch_operator::controller::{self, Settings};
use fetch_operator::crd::FetchPipeline;
use fetch_operator::metrics::Metrics;
use fetch_testing::cluster::{control_plane, namespace};
use fetch_testing::{Broker, create_topic_on, unique};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

/// 500 unless BENCH_PIPELINES says otherwise.
fn pipelines() -> usize {
    std::env::var("BENCH_PIPELINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn create(api: &Api<FetchPipeline>, name: &str, bootstrap: &str, topic: &str) {
    let fp: FetchPipeline = serde_json::from_value(serde_json::json!({
        "apiVersion": "fetch-pipeline.dev/v1alpha1", "kind": "FetchPipeline",
        "metadata": {"name": name},
        "spec": {"kafka": {"bootstrapServers": bootstrap}, "input": {"topic": topic}},
    }))
    .expect("pipeline");
    api.create(&PostParams::default(), &fp)
        .await
        .expect("create pipeline");
}

/// Waits until `n` pipelines in the namespace report a status for their current generation.
async fn converged(api: &Api<FetchPipeline>, n: usize) -> Duration {
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|fp| {
                fp.status.as_ref().and_then(|s| s.observed_generation) == fp.metadata.generation
            })
            .count();
        if done >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {n} converged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quantile_ms(metrics: &Metrics, q: f64) -> f64 {
    // Reads the histogram's cumulative buckets from the exposition text.
    let text = metrics.encode();
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("fetch_operator_reconcile_duration_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((le.parse::<f64>().unwrap_or(f64::INFINITY), count))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, c)| *c >= total * q)
        .map_or(f64::NAN, |(le, _)| le * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let broker = Broker::start();
    let topic = unique("scale");
    create_topic_on(&broker.bootstrap, &topic, 3);
    let (_server, client) = control_plane().await;
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        consumer_image: "fetch-pipeline:bench".into(),
        check_interval: Duration::from_secs(30),
        kafka_timeout: Duration::from_secs(5),
        watch_namespace: None,
        concurrency: 16,
    };
    let (controller_client, controller_metrics): (Client, _) = (client.clone(), metrics.clone());
    tokio::spawn(async move {
        controller::run(
            controller_client,
            settings,
            controller_metrics,
            std::future::pending(),
        )
        .await
        .expect("controller");
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_mb();

    namespace(&client, "one").await;
    let one: Api<FetchPipeline> = Api::namespaced(client.clone(), "one");
    create(&one, "single", &broker.bootstrap, &topic).await;
    let converge_1 = converged(&one, 1).await;

    namespace(&client, "many").await;
    let many: Api<FetchPipeline> = Api::namespaced(client.clone(), "many");
    let count = pipelines();
    let started = Instant::now();
    for i in 0..count {
        create(&many, &format!("p{i}"), &broker.bootstrap, &topic).await;
    }
    let created = started.elapsed();
    let converge_500 = created + converged(&many, count).await;
    let rss_500 = rss_mb();

    println!(
        "baseline   1 pipeline converged in {:.2} s; idle controller RSS {rss_idle:.0} MB",
        converge_1.as_secs_f64()
    );
    println!(
        "scale    {count} pipelines converged in {:.1} s (created in {:.1} s); RSS {rss_500:.0} MB ({:.2}x idle)",
        converge_500.as_secs_f64(),
        created.as_secs_f64(),
        rss_500 / rss_idle.max(1.0)
    );
    println!(
        "pipelines={count} converge_s={:.1} converge_1_s={:.2} reconcile_p50_ms={:.0} reconcile_p99_ms={:.0} rss_idle_mb={rss_idle:.0} rss_500_mb={rss_500:.0}",
        converge_500.as_secs_f64(),
        converge_1.as_secs_f64(),
        quantile_ms(&metrics, 0.5),
        quantile_ms(&metrics, 0.99),
    );
    drop(broker);
}

//! The first step of a check: what the pipeline's Deployment and Kafka say now.
//!
//! Reads the Deployment, the input topic's partitions and the group's progress (on a blocking
//! thread, with a deadline), and the pipeline's insights when due; remembers the offsets as a
//! sample for the rates and counts consecutive Kafka failures (see [`crate::memory`]). Both
//! Kafka reads run side by side with their own deadlines, so a check waits for the slower
//! one, not for the sum. Nothing here changes the cluster.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::Api;

use crate::controller::Context;
use crate::crd::{FetchPipeline, InsightsStatus};
use crate::error::Result;
use crate::insights::{self, Outcome, Verdict};
use crate::kafka::{self, KafkaTarget, ProbeError, TopicState};
use crate::memory::InsightsRead;
use crate::metrics::ReasonLabel;
use crate::rates::{self, Rates, Sample};
use crate::resources;

/// What one check observed.
pub struct Observation {
    /// The Deployment's replicas; `None` before there is one.
    pub current: Option<i32>,
    /// Its ready replicas.
    pub ready: i32,
    pub probe: Result<TopicState, ProbeError>,
    /// Rates over the recent samples, this check's included.
    pub rates: Rates,
    pub insights: Option<InsightsStatus>,
    pub verdict: Verdict,
    /// Consecutive failed Kafka checks, this one included.
    pub kafka_failures: u32,
}

/// Observes pipeline `fp` (key `namespace/name`) in namespace `ns`.
pub async fn observe(
    fp: &FetchPipeline,
    ctx: &Context,
    ns: &str,
    key: &str,
) -> Result<Observation> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let deployment = deployments.get_opt(&resources::child_name(fp)).await?;
    let current = deployment
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas);
    let ready = deployment
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);

    let target = kafka_target(fp, &ctx.client, ns).await;
    let (probe, (insights, verdict)) = tokio::join!(
        check_kafka(ctx, &target, fp),
        pipeline_insights(fp, ctx, key, &target)
    );
    if let Err(e) = &probe {
        ctx.metrics
            .kafka_failures
            .get_or_create(&ReasonLabel { reason: e.reason() })
            .inc();
    }
    let progress = probe.as_ref().ok().and_then(|s| s.progress);
    let window = rates::window(ctx.settings.check_interval, commit_interval(fp));
    let (rates, kafka_failures) = ctx.memory.with(key, |m| {
        m.samples.set_window(window);
        m.kafka_failures = if probe.is_ok() {
            0
        } else {
            m.kafka_failures.saturating_add(1)
        };
        let rates = match progress {
            Some(progress) => m.samples.record(Sample {
                at: Instant::now(),
                progress,
                replicas: ready,
            }),
            None => Rates::default(),
        };
        (rates, m.kafka_failures)
    });
    Ok(Observation {
        current,
        ready,
        probe,
        rates,
        insights,
        verdict,
        kafka_failures,
    })
}

/// How often the pipeline's replicas commit: once per insights interval while they publish
/// (commits wait for a snapshot), else every second (the consumer's `--commit-interval`).
fn commit_interval(fp: &FetchPipeline) -> Duration {
    let insights = &fp.spec.insights;
    if insights.enabled {
        humantime::parse_duration(&insights.interval).unwrap_or(Duration::from_secs(30))
    } else {
        Duration::from_secs(1)
    }
}

async fn check_kafka(
    ctx: &Context,
    target: &Result<KafkaTarget, ProbeError>,
    fp: &FetchPipeline,
) -> Result<TopicState, ProbeError> {
    let target = target.clone()?;
    let (topic, group) = (fp.spec.input.topic.clone(), resources::consumer_group(fp));
    let timeout = ctx.settings.kafka_timeout;
    let servers = target.bootstrap_servers.clone();
    let task = tokio::task::spawn_blocking(move || kafka::probe(&target, &topic, &group, timeout));
    // Metadata, committed offsets and watermarks: a few requests, each bounded by `timeout`.
    match tokio::time::timeout(timeout * 4, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ProbeError::Unreachable {
            servers,
            detail: join.to_string(),
        }),
        Err(_) => Err(ProbeError::Timeout {
            servers,
            seconds: (timeout * 4).as_secs(),
        }),
    }
}

/// `status.insights` and the `InsightsAvailable` verdict: read from the insights topic when
/// due, else what the last read gave.
async fn pipeline_insights(
    fp: &FetchPipeline,
    ctx: &Context,
    key: &str,
    target: &Result<KafkaTarget, ProbeError>,
) -> (Option<InsightsStatus>, Verdict) {
    let last = ctx.memory.with(key, |m| m.insights.clone());
    let due = insights::due(
        last.as_ref().map(|l| (l.generation, l.at)),
        fp.metadata.generation,
        Instant::now(),
        ctx.settings.check_interval / 2,
    );
    let previous = match last {
        Some(last) if !due => return (last.status, last.verdict),
        Some(last) => last.status,
        // After a restart or a leader change: the summary the status holds.
        None => fp.status.as_ref().and_then(|s| s.insights.clone()),
    };
    let outcome = read_pipeline_insights(fp, ctx, target).await;
    if let Outcome::Failed(why) = &outcome {
        tracing::warn!(error = %why, "reading insights failed; keeping the last summary");
    }
    let (status, verdict) = insights::next(previous.as_ref(), &outcome, &Time(Timestamp::now()));
    let read = InsightsRead {
        generation: fp.metadata.generation,
        at: Instant::now(),
        status: status.clone(),
        verdict: verdict.clone(),
    };
    ctx.memory.with(key, |m| m.insights = Some(read));
    (status, verdict)
}

/// Reads the pipeline's insights (see [`crate::insights`]) on a blocking thread, at most
/// [`INSIGHTS_READS_AT_ONCE`] at a time, within [`insights::READ_TIMEOUT`] plus the wait for
/// a turn.
async fn read_pipeline_insights(
    fp: &FetchPipeline,
    ctx: &Context,
    target: &Result<KafkaTarget, ProbeError>,
) -> Outcome {
    if !fp.spec.insights.enabled {
        return Outcome::Disabled;
    }
    let target = match target {
        Ok(target) => target,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let config = kafka::client_config(target);
    let (topic, group) = (
        fp.spec.insights.topic.clone(),
        resources::consumer_group(fp),
    );
    let timeout = insights::READ_TIMEOUT;
    let reads = ctx.insights_reads.clone();
    let read = async move {
        let turn = reads
            .acquire_owned()
            .await
            .map_err(|e| format!("waiting for a turn to read insights: {e}"))?;
        tokio::task::spawn_blocking(move || {
            // The turn ends when the read does, even if the reconciliation stopped waiting.
            let _turn = turn;
            insights::read(config, &topic, &group, timeout)
        })
        .await
        .map_err(|e| format!("reading insights: {e}"))
    };
    // The read keeps its own deadline; this one also bounds the wait for a turn.
    match tokio::time::timeout(timeout * 2, read).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(why)) => Outcome::Failed(why),
        Err(_) => Outcome::Failed(format!(
            "reading the insights topic {:?} did not finish within {} s, the wait behind other pipelines' reads included",
            fp.spec.insights.topic,
            (timeout * 2).as_secs()
        )),
    }
}

/// Connection settings for the operator's own Kafka checks, with SASL credentials and the
/// TLS CA from the Secrets the spec names.
async fn kafka_target(
    fp: &FetchPipeline,
    client: &Client,
    ns: &str,
) -> Result<KafkaTarget, ProbeError> {
    let mut properties = resources::kafka_properties(fp);
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    if let Some(sasl) = &fp.spec.kafka.sasl {
        let secret_ref = &sasl.credentials_secret;
        for (property, key) in [
            ("sasl.username", &secret_ref.username_key),
            ("sasl.password", &secret_ref.password_key),
        ] {
            let value = secret_value(&secrets, ns, &secret_ref.name, key).await?;
            properties.insert(property.to_owned(), value);
        }
    }
    if let Some(tls) = &fp.spec.kafka.tls {
        // The consumers' CA file path means nothing here: hand librdkafka the PEM itself.
        properties.remove("ssl.ca.location");
        let ca = &tls.ca_secret;
        let pem = secret_value(&secrets, ns, &ca.name, &ca.key).await?;
        properties.insert("ssl.ca.pem".to_owned(), pem);
    }
    Ok(KafkaTarget {
        bootstrap_servers: fp.spec.kafka.bootstrap_servers.clone(),
        properties,
    })
}

/// One key of a Secret, as text; any way it is unavailable is a `Credentials` error.
async fn secret_value(
    secrets: &Api<Secret>,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, ProbeError> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| ProbeError::Credentials(format!("reading Secret {name}: {e}")))?
        .ok_or_else(|| ProbeError::Credentials(format!("Secret {name} not found in {ns}")))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or_else(|| ProbeError::Credentials(format!("Secret {name} has no key {key:?}")))
}

//! The reconciler: from a `FetchPipeline` to its consumer Deployment, and back to its status.
//!
//! Each reconciliation reads the input topic's partition count from Kafka, decides the replica
//! count ([`crate::scaling`]), server-side-applies the ServiceAccount, metrics Service and
//! Deployment ([`crate::resources`]), and writes the status with its conditions. It runs again
//! on spec changes, on changes to the Deployment, and every `check_interval`, so new
//! partitions scale the pipeline without any user action. When Kafka cannot be read, the
//! Deployment keeps its replicas, `KafkaReachable` says why, and the check is retried with
//! backoff. Alongside, it reads the pipeline's insights into the status ([`crate::insights`]),
//! once per check; a failed read never fails the reconciliation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;

use crate::conditions::{self, INSIGHTS_AVAILABLE, KAFKA_REACHABLE, READY};
use crate::crd::{FetchPipeline, FetchPipelineStatus, InsightsStatus};
use crate::error::{Error, Result};
use crate::insights::{self, Outcome, Verdict};
use crate::kafka::{self, KafkaTarget, ProbeError, TopicState};
use crate::metrics::{Metrics, ReasonLabel};
use crate::resources;
use crate::scaling;

/// Field manager of everything the operator applies.
pub const MANAGER: &str = "fetch-operator";

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Consumer image for pipelines that do not set `spec.image`.
    pub consumer_image: String,
    /// How often each pipeline's partition count is re-read.
    pub check_interval: Duration,
    /// Longest wait for one Kafka request.
    pub kafka_timeout: Duration,
    /// Watch one namespace only (namespaced RBAC); all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// Reconciliations run at once. Each opens a short-lived Kafka client on a blocking
    /// thread, so unbounded concurrency with hundreds of pipelines thrashes a small node.
    pub concurrency: u16,
}

/// Shared by every reconciliation.
pub struct Context {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Consecutive failed Kafka checks per pipeline, for the retry backoff.
    kafka_failures: Mutex<HashMap<String, u32>>,
    /// The last insights read per pipeline, reused by the reconciliations between checks.
    insights: Mutex<HashMap<String, InsightsRead>>,
    /// Insights reads at once: each holds the whole insights topic in memory while it runs.
    insights_reads: Arc<Semaphore>,
}

/// Reads of the insights topic in flight at once, whatever `--concurrency` is.
const INSIGHTS_READS_AT_ONCE: usize = 2;

/// One pipeline's last insights read: for which generation and when, and what it gave.
#[derive(Clone)]
struct InsightsRead {
    generation: Option<i64>,
    at: Instant,
    status: Option<InsightsStatus>,
    verdict: Verdict,
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let (pipelines, deployments): (Api<FetchPipeline>, Api<Deployment>) =
        match &settings.watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    pipelines.list(&ListParams::default().limit(1)).await.map_err(|e| {
        Error::Config(format!(
            "cannot list FetchPipelines ({e}); is the CRD installed? `fetch-operator crd | kubectl apply -f -`"
        ))
    })?;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter::from(MANAGER)),
        client,
        settings,
        metrics,
        kafka_failures: Mutex::new(HashMap::new()),
        insights: Mutex::new(HashMap::new()),
        insights_reads: Arc::new(Semaphore::new(INSIGHTS_READS_AT_ONCE)),
    });
    let (reader, writer) = reflector::store();
    // Only spec changes (new generations) trigger from the pipeline itself: the operator's own
    // status writes must not start another reconciliation.
    let pipelines = watcher(pipelines, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    tracing::info!("controller started");
    Controller::for_stream(pipelines, reader)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
        )
        .owns(
            deployments,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=fetch-operator"),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}

async fn reconcile(fp: Arc<FetchPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let result = reconcile_pipeline(&fp, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    result
}

fn error_policy(_fp: Arc<FetchPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&ReasonLabel {
            reason: error.metric_label(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

#[tracing::instrument(skip_all, fields(namespace, name = %fp.name_any()))]
async fn reconcile_pipeline(fp: &FetchPipeline, ctx: &Context) -> Result<Action> {
    let name = fp.name_any();
    let ns = fp
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    tracing::Span::current().record("namespace", ns.as_str());
    let client = ctx.client.clone();
    let child = resources::child_name(fp);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let current = deployments.get_opt(&child).await?;
    let current_replicas = current
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas);
    let ready = current
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);

    let key = format!("{ns}/{name}");
    let target = kafka_target(fp, &client, &ns).await;
    // Both talk to Kafka with their own deadlines: side by side, the reconciliation waits
    // for the slower one, not for the sum.
    let (probe, (insights_status, verdict)) = tokio::join!(
        check_kafka(ctx, &target, fp),
        pipeline_insights(fp, ctx, &key, &target)
    );
    if let Err(e) = &probe {
        ctx.metrics
            .kafka_failures
            .get_or_create(&ReasonLabel { reason: e.reason() })
            .inc();
    }
    let decision = scaling::decide(
        probe.as_ref().ok().map(|s| s.partitions),
        current_replicas,
        fp.spec.replicas,
        fp.spec.paused,
    );

    let apply = PatchParams::apply(MANAGER).force();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch(
            &child,
            &apply,
            &Patch::Apply(resources::service_account(fp)),
        )
        .await?;
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(
            &child,
            &apply,
            &Patch::Apply(resources::metrics_service(fp)),
        )
        .await?;
    let (deployment, hash) =
        resources::deployment(fp, &ctx.settings.consumer_image, decision.replicas);
    deployments
        .patch(&child, &apply, &Patch::Apply(&deployment))
        .await?;

    if current_replicas != Some(decision.replicas) {
        let from = current_replicas.map_or_else(|| "none".to_owned(), |r| r.to_string());
        let note = format!(
            "Scaled consumers from {from} to {} replicas: {}",
            decision.replicas, decision.reason
        );
        tracing::info!("{note}");
        publish(ctx, fp, EventType::Normal, "Scaled", "Scale", note).await;
    }

    let failures = {
        let mut map = lock(&ctx.kafka_failures);
        match &probe {
            Ok(_) => {
                map.remove(&key);
                0
            }
            Err(_) => {
                let n = map.entry(key).or_insert(0);
                *n += 1;
                *n
            }
        }
    };
    if let (Err(e), 1) = (&probe, failures) {
        publish(
            ctx,
            fp,
            EventType::Warning,
            e.reason(),
            "CheckKafka",
            e.to_string(),
        )
        .await;
    }

    let status = status(
        fp,
        &probe,
        &decision,
        ready,
        hash,
        (insights_status, &verdict),
    );
    if fp.status.as_ref() != Some(&status) {
        let api: Api<FetchPipeline> = Api::namespaced(client, &ns);
        let patch = serde_json::json!({
            "apiVersion": "fetch-pipeline.dev/v1alpha1",
            "kind": "FetchPipeline",
            "status": status,
        });
        api.patch_status(&name, &apply, &Patch::Apply(patch))
            .await?;
    }

    Ok(Action::requeue(if failures == 0 {
        ctx.settings.check_interval
    } else {
        // 1 s, 2 s, 4 s, ... up to the regular interval.
        (Duration::from_secs(1) * 2u32.pow((failures - 1).min(10))).min(ctx.settings.check_interval)
    }))
}

/// The status after this reconciliation; the previous conditions keep their transition times.
fn status(
    fp: &FetchPipeline,
    probe: &Result<TopicState, ProbeError>,
    decision: &scaling::ScaleDecision,
    ready: i32,
    config_hash: String,
    (insights, verdict): (Option<InsightsStatus>, &Verdict),
) -> FetchPipelineStatus {
    let now = Time(Timestamp::now());
    let generation = fp.metadata.generation;
    let previous = fp.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions;
    match probe {
        Ok(state) => conditions::set(
            &mut conditions,
            KAFKA_REACHABLE,
            true,
            "TopicFound",
            format!(
                "input topic {} has {} partitions",
                fp.spec.input.topic, state.partitions
            ),
            generation,
            &now,
        ),
        Err(e) => conditions::set(
            &mut conditions,
            KAFKA_REACHABLE,
            false,
            e.reason(),
            e.to_string(),
            generation,
            &now,
        ),
    }
    let desired = decision.replicas;
    let (ok, reason, message) = if fp.spec.paused {
        (
            true,
            "Paused",
            "scaled to zero while spec.paused is true".to_owned(),
        )
    } else if probe.is_err() {
        (
            false,
            "KafkaUnavailable",
            format!(
                "{ready}/{desired} replicas ready; the input topic cannot be read (see KafkaReachable)"
            ),
        )
    } else if ready >= desired {
        (true, "Running", format!("{ready}/{desired} replicas ready"))
    } else {
        (
            false,
            "Progressing",
            format!("{ready}/{desired} replicas ready"),
        )
    };
    conditions::set(
        &mut conditions,
        READY,
        ok,
        reason,
        message,
        generation,
        &now,
    );
    conditions::set(
        &mut conditions,
        INSIGHTS_AVAILABLE,
        verdict.available,
        verdict.reason,
        verdict.message.clone(),
        generation,
        &now,
    );
    FetchPipelineStatus {
        observed_generation: generation,
        partitions: probe.as_ref().ok().map(|s| s.partitions),
        desired_replicas: Some(desired),
        ready_replicas: Some(ready),
        scaling_reason: Some(decision.reason.clone()),
        consumer_lag: probe.as_ref().ok().and_then(|s| s.lag),
        config_hash: Some(config_hash),
        insights,
        conditions,
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
    let last = lock(&ctx.insights).get(key).cloned();
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
    lock(&ctx.insights).insert(
        key.to_owned(),
        InsightsRead {
            generation: fp.metadata.generation,
            at: Instant::now(),
            status: status.clone(),
            verdict: verdict.clone(),
        },
    );
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

/// Locks a map of the context. A panic while it was held leaves nothing half-written that
/// matters here (counters and caches), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

async fn publish(
    ctx: &Context,
    fp: &FetchPipeline,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &fp.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

//! The reconciler: from a `FetchPipeline` to its consumer Deployment, and back to its status.
//!
//! Each check of a pipeline runs four steps, each in its own place:
//! 1. observe ([`crate::observe`]): the Deployment, the input topic's partitions and the
//!    group's progress from Kafka, the rates, the insights;
//! 2. decide ([`crate::scaling`]): the replica count and why;
//! 3. apply: server-side apply of the ServiceAccount, metrics Service and Deployment
//!    ([`crate::resources`]);
//! 4. report: an event on a scale change or a first Kafka failure, and the status
//!    ([`crate::status`]) when it changed.
//!
//! A check runs on spec changes, on changes to the Deployment, and every `check_interval`,
//! so new partitions and a growing backlog scale the pipeline without any user action. When
//! Kafka cannot be read, the Deployment keeps its replicas, `KafkaReachable` says why, and
//! the check is retried with backoff.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;

use crate::crd::FetchPipeline;
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::metrics::{Metrics, ReasonLabel};
use crate::observe::{self, Observation};
use crate::resources;
use crate::rollout::{self, Rollout};
use crate::scaling::{self, ScaleDecision, Targets};
use crate::status::{self, Report};

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
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<Metrics>,
    recorder: Recorder,
    /// What the operator remembers per pipeline between checks.
    pub(crate) memory: Memory,
    /// The pipelines that exist, to forget the memory of deleted ones.
    pipelines: Store<FetchPipeline>,
    /// Insights reads at once: each holds the whole insights topic in memory while it runs.
    pub(crate) insights_reads: Arc<Semaphore>,
}

/// Reads of the insights topic in flight at once, whatever `--concurrency` is.
pub(crate) const INSIGHTS_READS_AT_ONCE: usize = 2;

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
    let (reader, writer) = reflector::store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter::from(MANAGER)),
        client,
        memory: Memory::default(),
        settings,
        metrics,
        pipelines: reader.clone(),
        insights_reads: Arc::new(Semaphore::new(INSIGHTS_READS_AT_ONCE)),
    });
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
    let key = format!("{ns}/{name}");
    forget_deleted(ctx);

    let seen = observe::observe(fp, ctx, &ns, &key).await?;
    let decision = decide(fp, ctx, &key, &seen);
    let rollout = rollout::choose(
        seen.probe.as_ref().ok().and_then(|s| s.group_protocol),
        resources::consumer_protocol(fp),
    );
    if rollout == Rollout::Recreate {
        tracing::info!(
            "the consumer group runs the other rebalance protocol than the pods: a new template replaces every pod at once"
        );
    }
    let config_hash = apply(fp, ctx, &ns, decision.replicas, rollout).await?;
    report(fp, ctx, &ns, seen, decision, config_hash).await
}

/// Forgets the memory of pipelines that no longer exist (the controller is not called for a
/// deleted one).
fn forget_deleted(ctx: &Context) {
    let live: HashSet<String> = ctx
        .pipelines
        .state()
        .iter()
        .filter_map(|fp| Some(format!("{}/{}", fp.namespace()?, fp.name_any())))
        .collect();
    let forgotten = ctx.memory.retain(&live);
    if forgotten > 0 {
        tracing::debug!(forgotten, "forgot deleted pipelines");
    }
}

/// The replica count for what was observed (see [`crate::scaling`]).
fn decide(fp: &FetchPipeline, ctx: &Context, key: &str, seen: &Observation) -> ScaleDecision {
    let state = seen.probe.as_ref().ok();
    let observed = scaling::Observed {
        partitions: state.map(|s| s.partitions),
        current: seen.current,
        lag: state.and_then(|s| s.progress).map(|p| p.lag),
        rates: seen.rates,
    };
    ctx.memory.with(key, |m| {
        scaling::decide(
            &observed,
            fp.spec.replicas,
            fp.spec.paused,
            Targets::of(&fp.spec.autoscaling),
            &mut m.history,
            Instant::now(),
        )
    })
}

/// Applies the pipeline's objects with `replicas` consumers; returns the configuration hash
/// the pods roll on.
async fn apply(
    fp: &FetchPipeline,
    ctx: &Context,
    ns: &str,
    replicas: i32,
    rollout: Rollout,
) -> Result<String> {
    let child = resources::child_name(fp);
    let apply = PatchParams::apply(MANAGER).force();
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns)
        .patch(
            &child,
            &apply,
            &Patch::Apply(resources::service_account(fp)),
        )
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), ns)
        .patch(
            &child,
            &apply,
            &Patch::Apply(resources::metrics_service(fp)),
        )
        .await?;
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns);
    if rollout == Rollout::Recreate {
        // A Deployment applied before the operator set a strategy carries the API server's
        // default RollingUpdate parameters, which no field manager owns, so an apply cannot
        // remove them, and Recreate with them is invalid: clear them first.
        let clear =
            serde_json::json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}});
        let update = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match deployments
            .patch(&child, &update, &Patch::Merge(&clear))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    let (deployment, hash) =
        resources::deployment(fp, &ctx.settings.consumer_image, replicas, rollout);
    deployments
        .patch(&child, &apply, &Patch::Apply(&deployment))
        .await?;
    Ok(hash)
}

/// Events for what changed, the status, and when to check again.
async fn report(
    fp: &FetchPipeline,
    ctx: &Context,
    ns: &str,
    seen: Observation,
    decision: ScaleDecision,
    config_hash: String,
) -> Result<Action> {
    if seen.current != Some(decision.replicas) {
        let from = seen
            .current
            .map_or_else(|| "none".to_owned(), |r| r.to_string());
        let note = format!(
            "Scaled consumers from {from} to {} replicas: {}",
            decision.replicas, decision.reason
        );
        tracing::info!("{note}");
        publish(
            ctx,
            fp,
            EventType::Normal,
            "Scaled",
            "Scale",
            note,
            Series::Never,
        )
        .await;
    }
    if let (Err(e), 1) = (&seen.probe, seen.kafka_failures) {
        publish(
            ctx,
            fp,
            EventType::Warning,
            e.reason(),
            "CheckKafka",
            e.to_string(),
            Series::Fold,
        )
        .await;
    }

    let status = status::build(
        fp,
        Report {
            probe: &seen.probe,
            rates: seen.rates,
            decision: &decision,
            ready: seen.ready,
            config_hash,
            selector: resources::selector(fp),
            insights: seen.insights,
            verdict: &seen.verdict,
        },
        &Time(Timestamp::now()),
    );
    if fp.status.as_ref() != Some(&status) {
        let api: Api<FetchPipeline> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({
            "apiVersion": "fetch-pipeline.dev/v1alpha1",
            "kind": "FetchPipeline",
            "status": status,
        });
        api.patch_status(
            &fp.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    }
    Ok(Action::requeue(status::requeue_after(
        seen.kafka_failures,
        ctx.settings.check_interval,
    )))
}

/// Whether a repeat of an event joins the first one's series.
enum Series {
    /// Repeats within a few minutes count in the first event (its note stays).
    Fold,
    /// Every event stands alone: its note is the news (e.g. each scale change's reason).
    Never,
}

async fn publish(
    ctx: &Context,
    fp: &FetchPipeline,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    series: Series,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    // kube-runtime's recorder folds events of the same reason and action into a series that
    // keeps the first note, whatever the later notes say: a scale-down a minute after a
    // scale-up showed as the scale-up, twice. A recorder of its own has no earlier event.
    let fresh;
    let recorder = match series {
        Series::Fold => &ctx.recorder,
        Series::Never => {
            fresh = Recorder::new(ctx.client.clone(), Reporter::from(MANAGER));
            &fresh
        }
    };
    if let Err(e) = recorder.publish(&event, &fp.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

//! `fetch-operator run`: the HTTP endpoints, leader election and the controller, wired together.
//!
//! The rule: one [`Shutdown`] for the process. A signal triggers it and every part stops; a
//! part that fails (the controller, the Lease) ends `run` with its error, so the process exits
//! non-zero and its pod restarts, instead of idling as a leader that does nothing.

use std::sync::Arc;

use fetch_telemetry::{Shutdown, signal};
use kube::Client;

use crate::cli::RunArgs;
use crate::controller::{self, Settings};
use crate::error::Result;
use crate::leader::{self, LeaseSettings};
use crate::metrics::Metrics;

/// Runs until SIGINT/SIGTERM (then shuts down cleanly), or until the controller fails or
/// leadership is lost (an error, so the process exits and its pod restarts as a standby).
pub async fn run(args: RunArgs) -> Result<()> {
    let shutdown = Shutdown::new();
    signal::trigger_on_signal(&shutdown, None);
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let server = fetch_telemetry::http::serve(args.http_addr, metrics.clone(), &shutdown).await?;

    let settings = Settings {
        consumer_image: args.consumer_image,
        check_interval: args.check_interval,
        kafka_timeout: args.kafka_timeout,
        watch_namespace: args.watch_namespace,
        concurrency: args.concurrency,
    };
    let result = if args.leader.leader_election {
        let identity = args.leader.identity.unwrap_or_else(default_identity);
        let lease = LeaseSettings {
            name: args.leader.lease_name,
            namespace: args.leader.lease_namespace,
            identity,
            lease_duration: args.leader.lease_duration,
            renew_every: args.leader.renew_every,
        };
        let gauge = metrics.clone();
        let (work_client, work_metrics, work_shutdown) =
            (client.clone(), metrics.clone(), shutdown.clone());
        leader::lead(
            client,
            lease,
            shutdown.wait_owned(),
            move |leading| {
                gauge.leader.set(i64::from(leading));
            },
            move || {
                controller::run(
                    work_client,
                    settings,
                    work_metrics,
                    work_shutdown.wait_owned(),
                )
            },
        )
        .await
    } else {
        metrics.leader.set(1);
        controller::run(client, settings, metrics, shutdown.wait_owned()).await
    };
    // Asked to stop, or failed: either way the endpoints stop too.
    shutdown.trigger();
    server.stopped().await;
    result
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "fetch-operator".into());
    format!("{host}-{}", std::process::id())
}

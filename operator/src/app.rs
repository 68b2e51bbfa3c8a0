//! `fetch-operator run`: the HTTP endpoints, leader election and the controller, wired together.

use std::sync::Arc;

use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::controller::{self, Settings};
use crate::error::{Error, Result};
use crate::leader::{self, LeaseSettings};
use crate::metrics::Metrics;

/// Completes once `rx` turns true. Cheap to create many times from clones of one channel.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs until SIGINT/SIGTERM (then shuts down cleanly) or until leadership is lost (an error,
/// so the process exits and its pod restarts as a standby).
pub async fn run(args: RunArgs) -> Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let listener = TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding {}", args.http_addr),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "local address".into(),
        source,
    })?;
    tracing::info!(%addr, "serving /healthz and /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let server = tokio::spawn(crate::http::serve(
        listener,
        metrics.clone(),
        stopped(stop_rx.clone()),
    ));

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
        let (work_client, work_metrics, work_stop) =
            (client.clone(), metrics.clone(), stop_rx.clone());
        leader::lead(
            client,
            lease,
            stopped(stop_rx.clone()),
            move |leading| {
                gauge.leader.set(i64::from(leading));
            },
            move || async move {
                if let Err(e) =
                    controller::run(work_client, settings, work_metrics, stopped(work_stop)).await
                {
                    tracing::error!(error = %e, "controller failed");
                }
            },
        )
        .await
    } else {
        metrics.leader.set(1);
        controller::run(client, settings, metrics, stopped(stop_rx.clone())).await
    };
    server.abort();
    result
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "fetch-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
}

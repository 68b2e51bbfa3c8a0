//! Two `fetch-operator` processes against one API server: one leads, the other waits, and the
//! waiting one takes over when the leader dies. A leader whose controller fails exits
//! non-zero, so its pod restarts instead of holding the Lease while doing nothing.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::*;

struct Operator {
    child: Child,
    log: CapturedLog,
}

impl Operator {
    fn start(kubeconfig: &std::path::Path, identity: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fetch-operator"))
            .args(["--log-format", "json", "run", "--http-addr", "127.0.0.1:0"])
            .args(["--identity", identity, "--lease-namespace", "default"])
            .args(["--lease-duration", "3s", "--renew-every", "500ms"])
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fetch-operator");
        let log = capture_stderr(&mut child);
        Operator { child, log }
    }

    fn led(&self) -> bool {
        self.log.lines().iter().any(|l| l.contains("became leader"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("fetch-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_one_leader_and_a_takeover() {
    let (server, client) = control_plane().await;
    let kubeconfig = kubeconfig_file(&server);
    let a = Operator::start(&kubeconfig, "operator-a");
    let b = Operator::start(&kubeconfig, "operator-b");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    let first = eventually("a leader", || async {
        holder(&leases).await.filter(|h| !h.is_empty())
    })
    .await;
    // Several renewal periods later: still one leader, the same one, and only it ever led.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()));
    let (leader, standby, standby_name) = if first == "operator-a" {
        (a, b, "operator-b")
    } else {
        (b, a, "operator-a")
    };
    assert!(leader.led(), "the holder logged its leadership");
    assert!(!standby.led(), "the standby never led");

    // SIGKILL: no release; the standby takes over once the Lease expires.
    drop(leader);
    eventually("the standby to take over", || async {
        holder(&leases).await.filter(|h| h == standby_name)
    })
    .await;
    let lease = leases.get("fetch-operator").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(1));
    eventually("the standby's log to say so", || async {
        standby.led().then_some(())
    })
    .await;
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_controller_fails_exits_non_zero_and_releases_the_lease() {
    // Without the CRD the controller cannot list FetchPipelines: it fails as soon as it starts.
    let (server, client) = control_plane_without_crd().await;
    let kubeconfig = kubeconfig_file(&server);
    let mut operator = Operator::start(&kubeconfig, "operator-a");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    let status = eventually("the operator to exit", || {
        let exited = operator.child.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    operator.log.finish();
    let log = operator.log.lines().join("\n");
    assert!(operator.led(), "it led before failing; log:\n{log}");
    assert!(
        status.code().is_some_and(|code| code != 0),
        "a failed controller exits non-zero, not {status}; log:\n{log}"
    );
    assert!(
        log.contains("cannot list FetchPipelines"),
        "the error says why; log:\n{log}"
    );
    assert_eq!(
        holder(&leases).await.filter(|h| !h.is_empty()),
        None,
        "the Lease is released for a standby"
    );
    let _ = std::fs::remove_file(kubeconfig);
}

//! The Deployment's rollout against a real kube-apiserver and a real Kafka broker, with real
//! `fetch-consumer` processes in the pipeline's group: pods that could not join the running
//! group (it uses the other rebalance protocol) replace the old ones all at once; otherwise
//! they roll replica by replica.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fetch_operator::controller::MANAGER;
use fetch_operator::crd::FetchPipeline;
use fetch_operator::kafka::{KafkaTarget, probe};
use fetch_operator::resources;
use fetch_operator::rollout::{Protocol, Rollout};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::*;

/// A consumer replica in `group`, with `assignors` when given (the consumer's default otherwise).
struct Replica(Child);

impl Replica {
    fn start(group: &str, topics: &[String; 3], assignors: Option<&str>) -> Self {
        let mut command = Command::new(consumer_binary());
        command
            .args(["run", "--bootstrap-servers"])
            .arg(bootstrap())
            .args(["--group-id", group, "--input-topic", &topics[0]])
            .args([
                "--output-topic",
                &topics[1],
                "--dead-letter-topic",
                &topics[2],
            ])
            .args(["--http-addr", "127.0.0.1:0", "--insights-topic", ""]);
        if let Some(assignors) = assignors {
            command
                .arg("-X")
                .arg(format!("partition.assignment.strategy={assignors}"));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fetch-consumer");
        Replica(child)
    }

    /// Stops it as Kubernetes does (SIGTERM), so it leaves the group at once.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the group's members run `protocol`, as the operator reads it.
async fn await_group_protocol(group: &str, input: &str, protocol: Protocol) {
    let target = KafkaTarget {
        bootstrap_servers: bootstrap(),
        properties: Default::default(),
    };
    eventually(&format!("group {group} on {protocol:?}"), || {
        let (target, group, input) = (target.clone(), group.to_owned(), input.to_owned());
        async move {
            let state = tokio::task::spawn_blocking(move || {
                probe(&target, &input, &group, Duration::from_secs(5))
            })
            .await
            .ok()?
            .ok()?;
            (state.group_protocol == Some(protocol)).then_some(())
        }
    })
    .await;
}

async fn strategy_of(deployments: &Api<Deployment>, name: &str) -> Option<String> {
    deployments
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .strategy?
        .type_
}

async fn await_strategy(deployments: &Api<Deployment>, name: &str, kind: &str) {
    eventually(&format!("{name} rolling out by {kind}"), || async {
        strategy_of(deployments, name)
            .await
            .filter(|k| k == kind)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_could_not_join_the_running_group_replace_it_at_once_then_roll_again() {
    let (_server, client) = control_plane().await;
    let pipelines: Api<FetchPipeline> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let topics = [unique("ro-in"), unique("ro-out"), unique("ro-dlq")];
    create_topic(&topics[0], 2);
    create_topic(&topics[1], 1);
    create_topic(&topics[2], 1);
    let group = unique("ro-group");
    let spec = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap()},
        "input": {"topic": topics[0]}, "output": {"topic": topics[1]},
        "deadLetter": {"topic": topics[2]}, "consumerGroup": group,
    });
    let fp = pipeline("upgrade", spec);

    // The Deployment as an operator from before this rule left it: no strategy, so the API
    // server's defaults (a RollingUpdate nobody owns) are in place.
    let (mut old, _) = resources::deployment(&fp, "img:old", 1, Rollout::Rolling);
    if let Some(spec) = old.spec.as_mut() {
        spec.strategy = None;
    }
    old.metadata.namespace = Some("default".into());
    deployments
        .patch(
            "upgrade-consumer",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&old),
        )
        .await
        .expect("old deployment");
    assert_eq!(
        strategy_of(&deployments, "upgrade-consumer")
            .await
            .as_deref(),
        Some("RollingUpdate")
    );

    // Its pods run eager assignment, as every consumer did before cooperative-sticky.
    let eager = Replica::start(&group, &topics, Some("range,roundrobin"));
    await_group_protocol(&group, &topics[0], Protocol::Eager).await;

    let _stop = start_controller(client.clone());
    pipelines
        .create(&PostParams::default(), &fp)
        .await
        .expect("create");
    // The new (cooperative) pods could not join: every old pod stops first.
    await_strategy(&deployments, "upgrade-consumer", "Recreate").await;

    // Once the group runs the new protocol, template changes roll again.
    eager.stop();
    let _cooperative = Replica::start(&group, &topics, None);
    await_group_protocol(&group, &topics[0], Protocol::Cooperative).await;
    await_strategy(&deployments, "upgrade-consumer", "RollingUpdate").await;
}

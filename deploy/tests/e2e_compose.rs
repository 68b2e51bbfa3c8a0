//! End-to-end: `docker compose` with `compose/compose.yaml`, as a user runs it on a laptop.
//! Kafka (the apache/kafka image) becomes healthy, the topics are created, the generator and
//! the consumer run; cleaned events and dead letters are read from the host on
//! localhost:29092; `docker compose exec consumer fetch-consumer insights` reports the
//! pipeline's insights as the consumer published them; `docker compose down` makes the consumer
//! print its insights report and exit 0 within its grace period, and leaves nothing of the
//! project behind.
//!
//! The only change to the compose file is an override of the test's own
//! ([`INSIGHTS_OVERRIDE`]): the consumer publishes its insights every 2 s instead of 30 s, so
//! the insights command has figures within seconds.
//!
//! Needs the Docker engine, the compose plugin (`hack/compose.sh`) and the images
//! (`hack/images.sh all`; the project image is named by `FETCH_E2E_IMAGE`). The compose file's
//! host ports (29092, 8080) must be free.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fetch_deploy_tests::{docker, e2e_image, repo, run};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

const COMPOSE_FILE: &str = "compose/compose.yaml";
/// The broker's listener for the host, as the compose file publishes it.
const HOST_BOOTSTRAP: &str = "localhost:29092";
const OUTPUT_TOPIC: &str = "processed-user-logins";
const DEAD_LETTER_TOPIC: &str = "user-login-dlq";
/// The consumer's `stop_grace_period` in the compose file.
const GRACE: Duration = Duration::from_secs(45);
const TIMEOUT: Duration = Duration::from_secs(180);
const REPORT_BANNER: &str = "==================== insights ====================";
/// The consumer group of the compose file's consumer (`FETCH_GROUP_ID` in its env file): the
/// pipeline its insights are published under.
const PIPELINE: &str = "fetch-consumer";
/// Laid over the compose file with a second `-f`: insights every 2 s instead of 30 s.
const INSIGHTS_OVERRIDE: &str =
    "services:\n  consumer:\n    environment:\n      FETCH_INSIGHTS_INTERVAL: 2s\n";

/// A compose project of this test's own; taken down when dropped (also when the test fails).
struct Project {
    name: String,
    /// The test's override file ([`INSIGHTS_OVERRIDE`]).
    override_file: String,
}

impl Project {
    fn new() -> Self {
        let name = format!("fetch-e2e-compose-{}", std::process::id());
        let override_file = std::env::temp_dir().join(format!("{name}.override.yaml"));
        std::fs::write(&override_file, INSIGHTS_OVERRIDE)
            .unwrap_or_else(|e| panic!("writing {}: {e}", override_file.display()));
        let override_file = override_file.to_string_lossy().into_owned();
        let project = Self {
            name,
            override_file,
        };
        // Leftovers of an earlier, interrupted run of the same name.
        project.compose(&["down", "--remove-orphans", "--timeout", "5"]);
        project
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "compose",
            "-p",
            &self.name,
            "-f",
            COMPOSE_FILE,
            "-f",
            &self.override_file,
        ];
        all.extend_from_slice(args);
        all
    }

    fn compose(&self, args: &[&str]) -> std::process::Output {
        run("docker", &self.args(args))
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        docker(&self.args(args))
    }

    /// The id of `service`'s container (also a stopped one).
    fn container(&self, service: &str) -> String {
        let id = self.compose_ok(&["ps", "-a", "-q", service]);
        let id = id.trim();
        assert!(!id.is_empty(), "no container for service {service}");
        id.to_owned()
    }

    fn logs(&self, service: &str) -> String {
        let out = self.compose(&["logs", "--no-color", service]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// What is left of the project: containers and networks carrying its label.
    fn leftovers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        let containers = docker(&["ps", "-a", "-q", "--filter", &filter]);
        let networks = docker(&["network", "ls", "-q", "--filter", &filter]);
        containers
            .lines()
            .map(|c| format!("container {c}"))
            .chain(networks.lines().map(|n| format!("network {n}")))
            .collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.compose(&["down", "--remove-orphans", "--timeout", "5"]);
        let _ = std::fs::remove_file(&self.override_file);
    }
}

fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One record as read from the broker: value and headers.
struct Record {
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads `count` records of `topic` from the beginning, from the host's side of the broker.
fn read_from_host(topic: &str, count: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", HOST_BOOTSTRAP)
        .set(
            "group.id",
            format!("fetch-e2e-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer for localhost:29092");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("metadata of {topic} from {HOST_BOOTSTRAP}: {e}"));
    let mut assignment = TopicPartitionList::new();
    for topic_metadata in metadata.topics() {
        for partition in topic_metadata.partitions() {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .unwrap_or_else(|e| panic!("assigning {topic}/{}: {e}", partition.id()));
        }
    }
    assert!(assignment.count() > 0, "{topic} has partitions");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + TIMEOUT;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records of {topic} from {HOST_BOOTSTRAP}",
            records.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    records
}

/// GET `path` from localhost:8080 (the consumer's published port): (status line, body).
fn http_get(path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", 8080)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// Starts `docker` with `args`, capturing its output, for a command that runs alongside.
fn spawn_docker(args: &[&str]) -> Child {
    Command::new("docker")
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting docker {args:?}: {e}"))
}

fn output_of(child: Child) -> String {
    let out = child.wait_with_output().expect("docker's output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `fetch-consumer insights ARGS` in the running consumer's container, as a compose user runs
/// it (`docker compose exec consumer fetch-consumer insights`): the broker's address and the
/// pipeline come from the service's env file. Its output, or why it failed.
fn insights(project: &Project, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["exec", "-T", "consumer", "fetch-consumer", "insights"];
    all.extend_from_slice(args);
    let out = project.compose(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Runs `fetch-consumer insights --format json` until it reports cleaned events (the first
/// snapshot comes an insights interval after the consumer started): the report, as JSON.
fn await_insights(project: &Project) -> serde_json::Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let last = match insights(project, &["--format", "json"]) {
            Ok(out) => {
                let summary: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
                    panic!("`fetch-consumer insights --format json` prints JSON ({e}):\n{out}")
                });
                if summary["totals"]["cleaned"].as_u64() > Some(0) {
                    return summary;
                }
                out
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `fetch-consumer insights` to report cleaned events; last answer:\n{last}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn compose_up_runs_the_pipeline_and_down_stops_it_with_the_report() {
    let version = run("docker", &["compose", "version"]);
    assert!(
        version.status.success(),
        "`docker compose` is not installed: run hack/compose.sh ({})",
        String::from_utf8_lossy(&version.stderr)
    );
    // The compose file runs fetch-pipeline:local, which hack/images.sh tags with the image
    // under test.
    let image = e2e_image();
    let id_of = |name: &str| docker(&["image", "inspect", "--format", "{{.Id}}", name]);
    assert_eq!(
        id_of("fetch-pipeline:local"),
        id_of(&image),
        "fetch-pipeline:local (compose's image) is {image}: build both with hack/images.sh project"
    );

    let project = Project::new();
    let started = Instant::now();
    project.compose_ok(&["up", "--detach"]);
    println!(
        "compose up --detach returned after {:.1?}",
        started.elapsed()
    );

    let kafka = project.container("kafka");
    eventually("Kafka's healthcheck to pass", || {
        let health = docker(&["inspect", "--format", "{{.State.Health.Status}}", &kafka]);
        (health.trim() == "healthy").then_some(())
    });
    println!("kafka healthy after {:.1?}", started.elapsed());
    let topics = project.container("topics");
    eventually("the topics service to finish", || {
        let state = docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &topics,
        ]);
        match state.trim() {
            "exited 0" => Some(()),
            s if s.starts_with("exited") => panic!(
                "the topics service failed ({s}):\n{}",
                project.logs("topics")
            ),
            _ => None,
        }
    });
    let consumer = project.container("consumer");
    let generator = project.container("generator");
    for (service, id) in [("generator", &generator), ("consumer", &consumer)] {
        let state = docker(&["inspect", "--format", "{{.State.Status}}", id]);
        assert_eq!(
            state.trim(),
            "running",
            "{service} runs:\n{}",
            project.logs(service)
        );
    }

    let cleaned = read_from_host(OUTPUT_TOPIC, 20);
    println!(
        "20 cleaned events read from {HOST_BOOTSTRAP} after {:.1?}",
        started.elapsed()
    );
    for record in &cleaned {
        let event: serde_json::Value = serde_json::from_slice(&record.value).unwrap_or_else(|e| {
            panic!(
                "a cleaned event is JSON ({e}): {:?}",
                String::from_utf8_lossy(&record.value)
            )
        });
        assert!(
            event["user_id"].is_string(),
            "a cleaned event has a user_id: {event}"
        );
    }
    let dead_letters = read_from_host(DEAD_LETTER_TOPIC, 1);
    let reason = dead_letters[0]
        .headers
        .iter()
        .find(|(key, _)| key == "dlq.reason")
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
    assert!(
        reason.as_deref().is_some_and(|r| !r.is_empty()),
        "a dead letter carries its reason in the dlq.reason header: {:?}",
        dead_letters[0]
            .headers
            .iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    );
    println!("a dead letter with reason {reason:?}");

    let (status, metrics) = eventually("the consumer's /metrics on localhost:8080", || {
        http_get("/metrics")
    });
    assert!(status.contains(" 200"), "/metrics answers 200: {status}");
    assert!(!metrics.is_empty(), "/metrics has a body");

    // The insights the consumer published (every 2 s here), merged by the insights command.
    let summary = await_insights(&project);
    assert_eq!(
        summary["pipeline"], PIPELINE,
        "the report is the compose consumer's group: {summary:#}"
    );
    assert!(
        summary["contributors"].as_u64() >= Some(1) && summary["publishing"].as_u64() >= Some(1),
        "the running consumer contributed and is publishing: {summary:#}"
    );
    println!(
        "insights after {:.1?}: {} cleaned, {} dead-lettered, {} contributor(s), rate {}",
        started.elapsed(),
        summary["totals"]["cleaned"],
        summary["totals"]["deadLettered"],
        summary["contributors"],
        summary["rate"]
    );
    let text = insights(&project, &[]).unwrap_or_else(|e| panic!("`fetch-consumer insights`: {e}"));
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("pipeline    {PIPELINE}: "))
            && first.contains("replica process(es) contributed"),
        "the text report starts with the pipeline and its contributors:\n{text}"
    );

    // Follow the consumer to its end: its exit code and its whole log, before `down` removes it.
    let exit_code = spawn_docker(&["wait", &consumer]);
    let log = spawn_docker(&["logs", "--follow", &consumer]);
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    project.compose_ok(&["down"]);
    let down = stopping.elapsed();
    println!("compose down took {down:.1?}");
    let exit_code = output_of(exit_code);
    let log = output_of(log);
    // Warnings are not failures (e.g. insights housekeeping the broker refused), but are shown.
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        println!("consumer log: {line}");
    }
    assert_eq!(
        exit_code.trim(),
        "0",
        "the consumer exits 0 on `down`:\n{log}"
    );
    assert!(
        log.contains(REPORT_BANNER),
        "the consumer prints its report on `down`:\n{log}"
    );
    assert!(
        down < GRACE,
        "`down` finished within the consumer's grace period ({GRACE:?}), not {down:?}"
    );
    let left = project.leftovers();
    assert!(
        left.is_empty(),
        "`down` leaves nothing of the project: {left:?}"
    );
}

//! The Kubernetes objects that run a pipeline: a ServiceAccount, a metrics Service and the
//! consumer Deployment. Pure functions of the `FetchPipeline` and the operator's settings, so
//! they are tested without an API server; the controller server-side-applies their output.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{FetchPipeline, PiiMode};
use crate::rollout::{self, Protocol, Rollout};

/// Pod-template annotation carrying the hash of the consumer configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "fetch-pipeline.dev/config-hash";
/// Port of the consumer's `/healthz`, `/readyz` and `/metrics`.
pub const HTTP_PORT: i32 = 8080;
/// The non-root user the consumer image runs as.
pub const RUN_AS_USER: i64 = 65532;
/// How long a consumer may take to deliver what it holds when stopped (`--shutdown-timeout`).
const SHUTDOWN_TIMEOUT_SECONDS: i64 = 30;
/// The pod's grace period: the shutdown timeout, plus time for the final commit and the
/// report, so the kubelet's SIGKILL never cuts a clean stop short.
const TERMINATION_GRACE_SECONDS: i64 = SHUTDOWN_TIMEOUT_SECONDS + 15;
/// Where the consumers find the CA of `spec.kafka.tls.caSecret`.
pub const KAFKA_CA_DIR: &str = "/etc/fetch-pipeline/kafka-ca";
const KAFKA_CA_FILE: &str = "ca.crt";
const KAFKA_CA_VOLUME: &str = "kafka-ca";

/// The name of every object made for the pipeline.
pub fn child_name(fp: &FetchPipeline) -> String {
    format!("{}-consumer", fp.name_any())
}

/// The consumer group: the spec's, or one derived from namespace and name.
pub fn consumer_group(fp: &FetchPipeline) -> String {
    fp.spec.consumer_group.clone().unwrap_or_else(|| {
        format!(
            "fetch-pipeline-{}-{}",
            fp.namespace().unwrap_or_default(),
            fp.name_any()
        )
    })
}

/// Labels that select the pipeline's pods.
pub fn selector_labels(fp: &FetchPipeline) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "fetch-consumer".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), fp.name_any()),
    ])
}

/// [`selector_labels`] as a label selector string, for `status.selector` (the `/scale`
/// subresource's, which an HPA reads).
pub fn selector(fp: &FetchPipeline) -> String {
    selector_labels(fp)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The recommended `app.kubernetes.io/*` labels of every object made for the pipeline.
pub fn labels(fp: &FetchPipeline) -> BTreeMap<String, String> {
    let mut labels = selector_labels(fp);
    labels.extend([
        (
            "app.kubernetes.io/component".to_owned(),
            "consumer".to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "fetch-pipeline".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "fetch-operator".to_owned(),
        ),
    ]);
    labels
}

fn metadata(fp: &FetchPipeline) -> ObjectMeta {
    ObjectMeta {
        name: Some(child_name(fp)),
        namespace: fp.namespace(),
        labels: Some(labels(fp)),
        owner_references: fp.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The consumers' own identity; it needs no API permissions, so none are bound to it.
pub fn service_account(fp: &FetchPipeline) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(fp),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// A headless Service over the consumers' metrics port, for Prometheus to discover each pod.
/// Headless: scraping needs the pods' endpoints, not a virtual IP, and a cluster's service IP
/// range is finite (hundreds of pipelines would exhaust a small one).
pub fn metrics_service(fp: &FetchPipeline) -> Service {
    Service {
        metadata: metadata(fp),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(fp)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The rebalance protocol the pods' consumers use: the user's `partition.assignment.strategy`,
/// or the consumer's default.
pub fn consumer_protocol(fp: &FetchPipeline) -> Protocol {
    let assignors = fp
        .spec
        .kafka
        .properties
        .get(rollout::ASSIGNMENT_STRATEGY)
        .map_or(rollout::CONSUMER_DEFAULT_ASSIGNOR, String::as_str);
    Protocol::of_assignors(assignors).unwrap_or(Protocol::Cooperative)
}

/// librdkafka properties for the consumer, as `fetch-consumer`'s `FETCH_KAFKA_PROPERTIES`.
pub fn kafka_properties(fp: &FetchPipeline) -> BTreeMap<String, String> {
    let kafka = &fp.spec.kafka;
    let mut props = kafka.properties.clone();
    props.insert(
        "security.protocol".into(),
        kafka.security_protocol.as_str().into(),
    );
    if let Some(sasl) = &kafka.sasl {
        props.insert("sasl.mechanisms".into(), sasl.mechanism.as_str().into());
    }
    if kafka.tls.is_some() {
        props.insert(
            "ssl.ca.location".into(),
            format!("{KAFKA_CA_DIR}/{KAFKA_CA_FILE}"),
        );
    }
    props
}

/// The CA Secret of `spec.kafka.tls`, as a read-only volume and its mount.
fn kafka_ca_volume(fp: &FetchPipeline) -> Option<(Volume, VolumeMount)> {
    let secret = &fp.spec.kafka.tls.as_ref()?.ca_secret;
    let volume = Volume {
        name: KAFKA_CA_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.name.clone()),
            items: Some(vec![KeyToPath {
                key: secret.key.clone(),
                path: KAFKA_CA_FILE.into(),
                ..KeyToPath::default()
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: KAFKA_CA_VOLUME.into(),
        mount_path: KAFKA_CA_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
}

/// The consumer's settings as environment variables (the names `fetch-consumer` reads).
pub fn consumer_env(fp: &FetchPipeline) -> Vec<EnvVar> {
    let spec = &fp.spec;
    let properties: Vec<String> = kafka_properties(fp)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut vars = vec![
        env("KAFKA_BOOTSTRAP_SERVERS", &spec.kafka.bootstrap_servers),
        env("FETCH_KAFKA_PROPERTIES", properties.join(";")),
        env("FETCH_GROUP_ID", consumer_group(fp)),
        env("FETCH_INPUT_TOPIC", &spec.input.topic),
        env("FETCH_OUTPUT_TOPIC", &spec.output.topic),
        env("FETCH_DEAD_LETTER_TOPIC", &spec.dead_letter.topic),
        env("FETCH_HTTP_ADDR", format!("0.0.0.0:{HTTP_PORT}")),
        env("FETCH_LOG_FORMAT", "json"),
        env("FETCH_PII_MODE", spec.pii.mode.flag()),
        env("FETCH_GUARANTEE", spec.guarantee.flag()),
        env(
            "FETCH_SHUTDOWN_TIMEOUT",
            format!("{SHUTDOWN_TIMEOUT_SECONDS}s"),
        ),
        // An empty topic is how the consumer is told not to publish.
        env(
            "FETCH_INSIGHTS_TOPIC",
            if spec.insights.enabled {
                spec.insights.topic.as_str()
            } else {
                ""
            },
        ),
        env("FETCH_INSIGHTS_INTERVAL", &spec.insights.interval),
    ];
    if let Some(bytes) = spec.max_event_bytes {
        vars.push(env("FETCH_MAX_EVENT_BYTES", bytes.to_string()));
    }
    if let (PiiMode::Hash, Some(secret)) = (spec.pii.mode, &spec.pii.hash_key_secret) {
        vars.push(env_from_secret(
            "FETCH_PII_HASH_KEY",
            &secret.name,
            &secret.key,
        ));
    }
    if let Some(sasl) = &spec.kafka.sasl {
        let secret = &sasl.credentials_secret;
        vars.push(env_from_secret(
            "KAFKA_SASL_USERNAME",
            &secret.name,
            &secret.username_key,
        ));
        vars.push(env_from_secret(
            "KAFKA_SASL_PASSWORD",
            &secret.name,
            &secret.password_key,
        ));
    }
    vars
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".into())),
            ("memory".to_owned(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The pod template of the consumers, without the config-hash annotation.
fn pod_template(fp: &FetchPipeline, image: &str) -> PodTemplateSpec {
    let (volumes, mounts) = kafka_ca_volume(fp).unzip();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(fp)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(child_name(fp)),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "consumer".into(),
                image: Some(image.into()),
                // One image carries both binaries; the consumer's is named explicitly.
                command: Some(vec!["fetch-consumer".into()]),
                args: Some(vec!["run".into()]),
                env: Some(consumer_env(fp)),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: HTTP_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                liveness_probe: Some(probe("/healthz", 20)),
                readiness_probe: Some(probe("/readyz", 5)),
                resources: Some(fp.spec.resources.clone().unwrap_or_else(default_resources)),
                volume_mounts: mounts.map(|m| vec![m]),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Capabilities::default()
                    }),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..SeccompProfile::default()
                    }),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            volumes: volumes.map(|v| vec![v]),
            ..PodSpec::default()
        }),
    }
}

/// Hash of everything that configures a consumer pod: equal specs give equal hashes, and any
/// change to it (not to the replica count) changes the hash and so rolls the pods.
pub fn config_hash(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The consumer Deployment with `replicas` rolling out as `rollout`, and the config hash
/// stamped on its pod template.
pub fn deployment(
    fp: &FetchPipeline,
    default_image: &str,
    replicas: i32,
    rollout: Rollout,
) -> (Deployment, String) {
    let image = fp.spec.image.as_deref().unwrap_or(default_image);
    let mut template = pod_template(fp, image);
    let hash = config_hash(&template);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations = Some(BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.to_owned(),
            hash.clone(),
        )]));
    }
    let deployment = Deployment {
        metadata: metadata(fp),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(fp)),
                ..LabelSelector::default()
            },
            template,
            strategy: Some(rollout::strategy(rollout)),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    (deployment, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::FetchPipelineSpec;

    pub fn pipeline(yaml_spec: &str) -> FetchPipeline {
        let spec: FetchPipelineSpec = serde_yaml_ng::from_str(yaml_spec).expect("spec");
        let mut fp = FetchPipeline::new("logins", spec);
        fp.metadata.namespace = Some("data".into());
        fp.metadata.uid = Some("0000-uid".into());
        fp
    }

    fn env_map(d: &Deployment) -> BTreeMap<String, EnvVar> {
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    #[test]
    fn deployment_carries_settings_owner_labels_and_hash() {
        let fp = pipeline(
            "kafka: {bootstrapServers: 'kafka.data:9092', properties: {fetch.max.bytes: '1048576'}}",
        );
        let (d, hash) = deployment(&fp, "img:1", 4, Rollout::Rolling);
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(d.metadata.name.as_deref(), Some("logins-consumer"));
        let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("FetchPipeline", "logins", Some(true))
        );
        assert_eq!(
            d.metadata.labels.as_ref().expect("labels")["app.kubernetes.io/managed-by"],
            "fetch-operator"
        );
        let env = env_map(&d);
        assert_eq!(
            env["KAFKA_BOOTSTRAP_SERVERS"].value.as_deref(),
            Some("kafka.data:9092")
        );
        assert_eq!(
            env["FETCH_GROUP_ID"].value.as_deref(),
            Some("fetch-pipeline-data-logins")
        );
        assert_eq!(
            env["FETCH_INPUT_TOPIC"].value.as_deref(),
            Some("user-login")
        );
        assert_eq!(
            env["FETCH_KAFKA_PROPERTIES"].value.as_deref(),
            Some("fetch.max.bytes=1048576;security.protocol=PLAINTEXT")
        );
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations");
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], hash);
    }

    #[test]
    fn insights_settings_reach_the_consumers() {
        let fp = pipeline("kafka: {bootstrapServers: 'k:9092'}");
        let env = env_map(&deployment(&fp, "img", 1, Rollout::Rolling).0);
        assert_eq!(
            env["FETCH_INSIGHTS_TOPIC"].value.as_deref(),
            Some("fetch-pipeline-insights"),
            "on by default"
        );
        assert_eq!(env["FETCH_INSIGHTS_INTERVAL"].value.as_deref(), Some("30s"));
        let fp = pipeline(
            "kafka: {bootstrapServers: 'k:9092'}\ninsights: {topic: fleet-insights, interval: 1m30s}",
        );
        let env = env_map(&deployment(&fp, "img", 1, Rollout::Rolling).0);
        assert_eq!(
            env["FETCH_INSIGHTS_TOPIC"].value.as_deref(),
            Some("fleet-insights")
        );
        assert_eq!(
            env["FETCH_INSIGHTS_INTERVAL"].value.as_deref(),
            Some("1m30s")
        );
        let off = pipeline("kafka: {bootstrapServers: 'k:9092'}\ninsights: {enabled: false}");
        let env = env_map(&deployment(&off, "img", 1, Rollout::Rolling).0);
        assert_eq!(
            env["FETCH_INSIGHTS_TOPIC"].value.as_deref(),
            Some(""),
            "an empty topic turns publishing off"
        );
    }

    /// Every variable the operator sets is one `fetch-consumer run` reads: a renamed flag on
    /// the consumer's side would otherwise be ignored silently by the pods.
    #[test]
    fn every_env_var_set_is_one_the_consumer_reads() {
        use clap::CommandFactory;
        let cli = fetch_consumer::cli::Cli::command();
        let run = cli
            .find_subcommand("run")
            .expect("fetch-consumer has a run subcommand");
        // Global flags are declared on the top-level command. The HMAC key is no flag (a
        // secret stays off command lines): the consumer reads that variable itself.
        let read: std::collections::BTreeSet<String> = cli
            .get_arguments()
            .chain(run.get_arguments())
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .chain([fetch_consumer::pii::HASH_KEY_ENV.to_owned()])
            .collect();
        let everything = pipeline(
            "kafka:\n  bootstrapServers: 'k:9093'\n  securityProtocol: SASL_SSL\n  sasl: {mechanism: SCRAM-SHA-512, credentialsSecret: {name: kafka-creds}}\n  tls: {caSecret: {name: ca, key: ca.crt}}\npii: {mode: Hash, hashKeySecret: {name: pii, key: hmac}}\nmaxEventBytes: 1024",
        );
        let set = env_map(&deployment(&everything, "img", 1, Rollout::Rolling).0);
        let unread: Vec<&String> = set.keys().filter(|name| !read.contains(*name)).collect();
        assert!(
            unread.is_empty(),
            "the operator sets {unread:?}, which `fetch-consumer run` does not read (it reads {read:?})"
        );
        for name in [
            "FETCH_INSIGHTS_TOPIC",
            "FETCH_INSIGHTS_INTERVAL",
            "FETCH_MAX_EVENT_BYTES",
        ] {
            assert!(set.contains_key(name), "{name} is set");
        }
    }

    #[test]
    fn hash_follows_configuration_not_scale() {
        let fp = pipeline("kafka: {bootstrapServers: 'k:9092'}");
        let (_, h1) = deployment(&fp, "img:1", 1, Rollout::Rolling);
        let (_, h2) = deployment(&fp, "img:1", 7, Rollout::Rolling);
        assert_eq!(h1, h2, "scaling does not roll pods");
        let changed = pipeline("kafka: {bootstrapServers: 'k:9092'}\noutput: {topic: other}");
        assert_ne!(deployment(&changed, "img:1", 1, Rollout::Rolling).1, h1);
        assert_ne!(
            deployment(&fp, "img:2", 1, Rollout::Rolling).1,
            h1,
            "a new image rolls pods"
        );
    }

    #[test]
    fn the_pods_protocol_is_cooperative_unless_the_user_names_eager_assignors() {
        let default = pipeline("kafka: {bootstrapServers: 'k:9092'}");
        assert_eq!(consumer_protocol(&default), Protocol::Cooperative);
        let eager = pipeline(
            "kafka: {bootstrapServers: 'k:9092', properties: {partition.assignment.strategy: 'range,roundrobin'}}",
        );
        assert_eq!(consumer_protocol(&eager), Protocol::Eager);
    }

    #[test]
    fn scaling_and_the_rollout_do_not_roll_pods() {
        let fp = pipeline("kafka: {bootstrapServers: 'k:9092'}");
        let (rolling, h1) = deployment(&fp, "img:1", 1, Rollout::Rolling);
        let (recreate, h2) = deployment(&fp, "img:1", 1, Rollout::Recreate);
        assert_eq!(h1, h2);
        let kind = |d: &Deployment| d.spec.as_ref()?.strategy.as_ref()?.type_.clone();
        assert_eq!(kind(&rolling).as_deref(), Some("RollingUpdate"));
        assert_eq!(kind(&recreate).as_deref(), Some("Recreate"));
    }

    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let (d, _) = deployment(
            &pipeline("kafka: {bootstrapServers: 'k:9092'}"),
            "img",
            1,
            Rollout::Rolling,
        );
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        let psc = pod.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let sc = pod.containers[0]
            .security_context
            .clone()
            .expect("container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
    }

    #[test]
    fn secrets_are_referenced_never_copied() {
        let fp = pipeline(
            "kafka:\n  bootstrapServers: 'k:9093'\n  securityProtocol: SASL_SSL\n  sasl: {mechanism: SCRAM-SHA-512, credentialsSecret: {name: kafka-creds}}\npii: {mode: Hash, hashKeySecret: {name: pii, key: hmac}}",
        );
        let (d, _) = deployment(&fp, "img", 1, Rollout::Rolling);
        let env = env_map(&d);
        let user = env["KAFKA_SASL_USERNAME"]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("ref");
        assert_eq!(
            (user.name.as_str(), user.key.as_str()),
            ("kafka-creds", "username")
        );
        assert!(env["KAFKA_SASL_PASSWORD"].value.is_none());
        assert_eq!(env["FETCH_PII_MODE"].value.as_deref(), Some("hash"));
        assert!(env["FETCH_PII_HASH_KEY"].value_from.is_some());
        assert!(
            env["FETCH_KAFKA_PROPERTIES"]
                .value
                .as_deref()
                .is_some_and(|p| p.contains("sasl.mechanisms=SCRAM-SHA-512"))
        );
    }

    #[test]
    fn the_guarantee_reaches_the_consumers() {
        let env_of = |spec: &str| {
            let (d, _) = deployment(&pipeline(spec), "img", 1, Rollout::Rolling);
            env_map(&d)["FETCH_GUARANTEE"].value.clone()
        };
        let kafka = "kafka: {bootstrapServers: 'k:9092'}";
        assert_eq!(env_of(kafka).as_deref(), Some("at-least-once"));
        assert_eq!(
            env_of(&format!("{kafka}\nguarantee: ExactlyOnce")).as_deref(),
            Some("exactly-once")
        );
    }

    #[test]
    fn the_tls_ca_is_a_read_only_file_from_the_secret() {
        let fp = pipeline(
            "kafka:\n  bootstrapServers: 'k:9093'\n  securityProtocol: SSL\n  tls: {caSecret: {name: kafka-ca, key: root.pem}}",
        );
        let (d, _) = deployment(&fp, "img", 1, Rollout::Rolling);
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        let volume = &pod.volumes.as_ref().expect("volumes")[0];
        let secret = volume.secret.as_ref().expect("secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("kafka-ca"));
        let item = &secret.items.as_ref().expect("items")[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("root.pem", "ca.crt")
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(
            (mount.name.as_str(), mount.read_only),
            (volume.name.as_str(), Some(true))
        );
        let properties = kafka_properties(&fp);
        assert_eq!(
            properties["ssl.ca.location"],
            format!("{}/ca.crt", mount.mount_path)
        );
        let plain = pipeline("kafka: {bootstrapServers: 'k:9092'}");
        assert!(!kafka_properties(&plain).contains_key("ssl.ca.location"));
    }
}

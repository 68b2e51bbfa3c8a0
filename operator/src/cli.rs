//! The command line: every setting is a flag with an environment-variable twin.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use fetch_telemetry::{LogFormat, duration};

/// Runs FetchPipelines on Kubernetes: consumer Deployments scaled by partition count.
#[derive(Debug, Parser)]
#[command(name = "fetch-operator", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "FETCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (uses the in-cluster config, or KUBECONFIG / ~/.kube/config).
    Run(Box<RunArgs>),
    /// Print the FetchPipeline CustomResourceDefinition as YAML.
    Crd {
        /// Print it as the Helm chart's template instead (what hack/generate.sh writes).
        #[arg(long)]
        helm_template: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Consumer image for pipelines that do not set spec.image.
    #[arg(long, env = "FETCH_OPERATOR_CONSUMER_IMAGE", default_value = concat!("ghcr.io/fetch-pipeline/fetch-pipeline:", env!("CARGO_PKG_VERSION")))]
    pub consumer_image: String,
    /// How often each pipeline's input partition count is re-read (e.g. 30s).
    #[arg(long, env = "FETCH_OPERATOR_CHECK_INTERVAL", default_value = "30s", value_parser = duration::parse)]
    pub check_interval: Duration,
    /// Longest wait for one Kafka request.
    #[arg(long, env = "FETCH_OPERATOR_KAFKA_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    pub kafka_timeout: Duration,
    /// Reconciliations run at once (each may wait on Kafka for up to --kafka-timeout).
    #[arg(long, env = "FETCH_OPERATOR_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Watch only this namespace (for namespaced RBAC); default: all namespaces.
    #[arg(long, env = "FETCH_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of /healthz and /metrics.
    #[arg(long, env = "FETCH_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub leader: LeaderArgs,
}

#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Elect a leader through a Lease, so several replicas can run and one reconciles.
    #[arg(long, env = "FETCH_OPERATOR_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "FETCH_OPERATOR_LEASE_NAME",
        default_value = "fetch-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (in a pod: its own namespace via the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (in a pod: its name via the downward API);
    /// default: host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(long, env = "FETCH_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = duration::parse)]
    pub lease_duration: Duration,
    /// How often the leader renews (and standbys retry).
    #[arg(long, env = "FETCH_OPERATOR_RENEW_EVERY", default_value = "5s", value_parser = duration::parse)]
    pub renew_every: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_durations_say_what_to_fix() {
        let err = Cli::try_parse_from(["fetch-operator", "run", "--check-interval", "soon"])
            .expect_err("bad");
        assert!(err.to_string().contains("like 30s"), "{err}");
    }
}

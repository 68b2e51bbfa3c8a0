//! The command line: every setting is a flag with an environment-variable twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::clean::DEFAULT_MAX_EVENT_BYTES;
use crate::insights::DEFAULT_TOP_CAPACITY;
use crate::kafka::KafkaProperty;
use crate::kafka::config::Guarantee;
use crate::kafka::insights_topic::DEFAULT_TOPIC as DEFAULT_INSIGHTS_TOPIC;
use crate::kafka::pipeline::PassthroughKey;
use crate::pii::PiiMode;
use crate::telemetry::LogFormat;
use crate::telemetry::duration::{self, parse_within};

/// Cleans `user-login` events from Kafka and reports insights.
#[derive(Debug, Parser)]
#[command(name = "fetch-consumer", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "FETCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the input topic, produce cleaned events and dead letters, report at the end.
    Run(RunArgs),
    /// Send synthetic login events to a topic or a file (the local data generator).
    Generate(GenerateArgs),
    /// Clean JSON lines from a file or stdin, no broker needed.
    Process(ProcessArgs),
    /// Print the insights of a whole pipeline, merged from what its replicas published.
    Insights(InsightsArgs),
}

/// How to reach Kafka.
#[derive(Debug, Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port list.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap_servers: String,
    /// Any librdkafka property as KEY=VALUE, repeatable (e.g. -X security.protocol=SASL_SSL).
    /// In the environment: several separated by ';'.
    #[arg(
        short = 'X',
        long = "kafka-property",
        value_name = "KEY=VALUE",
        env = "FETCH_KAFKA_PROPERTIES",
        value_delimiter = ';'
    )]
    pub properties: Vec<KafkaProperty>,
    /// SASL username (sets `sasl.username`); in Kubernetes it comes from a Secret.
    #[arg(long, env = "KAFKA_SASL_USERNAME", hide_env_values = true)]
    pub sasl_username: Option<String>,
    /// SASL password (sets `sasl.password`); prefer the environment variable to the flag.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
}

/// How events are cleaned and summarized.
#[derive(Debug, Args, Clone)]
pub struct CleaningArgs {
    /// Largest accepted event, in bytes; larger ones are dead-lettered as `too_large`.
    #[arg(long, env = "FETCH_MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024).map(|v| v as usize))]
    pub max_event_bytes: usize,
    /// Protection of `ip` and `device_id` in the output. `hash` needs FETCH_PII_HASH_KEY.
    #[arg(long, env = "FETCH_PII_MODE", value_enum, default_value_t = PiiMode::Keep)]
    pub pii_mode: PiiMode,
    /// Counters per top-k list: more means tighter counts for the top 10.
    #[arg(long, env = "FETCH_TOP_CAPACITY", default_value_t = DEFAULT_TOP_CAPACITY,
          value_parser = clap::value_parser!(u64).range(10..=1_000_000).map(|v| v as usize))]
    pub top_capacity: usize,
    /// Also write the mergeable insights as JSON to this file at the end.
    #[arg(long, env = "FETCH_INSIGHTS_OUT", value_name = "FILE")]
    pub insights_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub cleaning: CleaningArgs,
    /// Consumer group; replicas sharing it split the input's partitions.
    #[arg(long, env = "FETCH_GROUP_ID", default_value = "fetch-consumer")]
    pub group_id: String,
    /// Topic to consume raw events from.
    #[arg(long, env = "FETCH_INPUT_TOPIC", default_value = "user-login")]
    pub input_topic: String,
    /// Topic for cleaned events (keyed by user_id).
    #[arg(
        long,
        env = "FETCH_OUTPUT_TOPIC",
        default_value = "processed-user-logins"
    )]
    pub output_topic: String,
    /// Topic for rejected events (original bytes, reason in headers).
    #[arg(
        long,
        env = "FETCH_DEAD_LETTER_TOPIC",
        default_value = "user-login-dlq"
    )]
    pub dead_letter_topic: String,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "FETCH_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Records per processing batch.
    #[arg(long, env = "FETCH_BATCH_SIZE", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|v| v as usize))]
    pub batch_size: usize,
    /// While more input waits (a backlog): bytes of records (output and dead letters) held,
    /// then produced a partition at a time, so that each produce request carries a fuller
    /// batch; 0 turns holding off. A full hold hands over the partitions holding the most
    /// until a quarter of it is free, and every partition's records that have waited 250 ms.
    /// Nothing is held once the consumer has caught up, and exactly once, nothing past a
    /// transaction's commit.
    #[arg(long, env = "FETCH_BACKLOG_HOLD_BYTES", default_value_t = 3 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(0..=256 * 1024 * 1024).map(|v| v as usize))]
    pub backlog_hold_bytes: usize,
    /// What the pipeline promises about each input record's result. `exactly-once` writes
    /// results in Kafka transactions with the input offsets; read the output with
    /// `isolation.level=read_committed` to see each record's result once.
    #[arg(long, env = "FETCH_GUARANTEE", value_enum, default_value_t = Guarantee::AtLeastOnce)]
    pub guarantee: Guarantee,
    /// How often progress is committed (e.g. 1s, 500ms): acknowledged offsets with
    /// at-least-once (default 1s), transactions with exactly-once (default 100ms; their output
    /// becomes visible to read_committed readers when they commit).
    #[arg(long, env = "FETCH_COMMIT_INTERVAL", value_parser = duration::parse)]
    pub commit_interval: Option<Duration>,
    /// Exactly-once: a transaction also commits once it holds this many input records.
    #[arg(long, env = "FETCH_TRANSACTION_MAX_RECORDS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000).map(|v| v as usize))]
    pub transaction_max_records: usize,
    /// Longest wait for the producer to deliver what it holds when stopping.
    #[arg(long, env = "FETCH_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    pub shutdown_timeout: Duration,
    /// Stop by itself after this long (e.g. 60s, 5m); default: run until SIGINT/SIGTERM.
    #[arg(long, env = "FETCH_DURATION", value_parser = duration::parse)]
    pub duration: Option<Duration>,
    /// Print a live progress line on stderr.
    #[arg(long, env = "FETCH_PROGRESS")]
    pub progress: bool,
    /// Stop by itself after consuming this many records (and delivering their results);
    /// for benchmarks and one-off backfills.
    #[arg(long, env = "FETCH_MAX_RECORDS")]
    pub max_records: Option<u64>,
    /// Compacted topic this replica publishes its insights to (created if missing), read by
    /// `fetch-consumer insights` and the operator; an empty value turns publishing off.
    #[arg(long, env = "FETCH_INSIGHTS_TOPIC", default_value = DEFAULT_INSIGHTS_TOPIC)]
    pub insights_topic: String,
    /// How often the insights are published. Offsets are committed only once published
    /// insights count their events, so after a crash a replica reprocesses at most this much.
    #[arg(long, env = "FETCH_INSIGHTS_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub insights_interval: Duration,
    /// Benchmark baseline: copy each record to the output topic unchanged, with no cleaning
    /// and no insights, through the same clients and settings.
    #[arg(long, hide = true)]
    pub passthrough: bool,
    /// The key the `--passthrough` copies get: `input`, each record's own (a copy lands in its
    /// input's partition number), or `user-id`, the event's, as the pipeline keys its output.
    #[arg(long, hide = true, value_enum, default_value_t = PassthroughKey::Input, requires = "passthrough")]
    pub passthrough_key: PassthroughKey,
}

/// Output format of `fetch-consumer insights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// The readable report.
    Text,
    /// Figures and top rows as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct InsightsArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The topic the replicas publish to.
    #[arg(long, env = "FETCH_INSIGHTS_TOPIC", default_value = DEFAULT_INSIGHTS_TOPIC)]
    pub insights_topic: String,
    /// The pipeline to report on, by its consumer group; needed when several publish to the
    /// topic.
    #[arg(long, visible_alias = "group-id", env = "FETCH_GROUP_ID")]
    pub pipeline: Option<String>,
    /// Also report the recent past only: the intervals that ended within this long (e.g. 5m,
    /// up to 1h; the resolution is the replicas' --insights-interval).
    #[arg(long, value_parser = parse_window)]
    pub window: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Longest wait for the broker.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to send events to.
    #[arg(long, env = "FETCH_GENERATE_TOPIC", default_value = "user-login")]
    pub topic: String,
    /// Write JSON lines to this file ('-' for stdout) instead of Kafka.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Events per second; 0 sends as fast as the broker takes them.
    #[arg(long, env = "FETCH_GENERATE_RATE", default_value_t = 2.0, value_parser = non_negative)]
    pub rate: f64,
    /// Stop after this many events; 0 runs until stopped.
    #[arg(long, env = "FETCH_GENERATE_COUNT", default_value_t = 0)]
    pub count: u64,
    /// Random seed, for a reproducible stream; default: from the clock.
    #[arg(long, env = "FETCH_GENERATE_SEED")]
    pub seed: Option<u64>,
    /// More variety: several app versions, string timestamps, odd spellings, missing fields.
    #[arg(long, env = "FETCH_GENERATE_VARIETY")]
    pub variety: bool,
    /// Share of malformed records, from 0 to 1.
    #[arg(long, env = "FETCH_GENERATE_MALFORMED", default_value_t = 0.0, value_parser = ratio)]
    pub malformed: f64,
    /// Share of events without device_type, from 0 to 1 (the take-home's generator: about 0.05).
    #[arg(long, env = "FETCH_GENERATE_MISSING_DEVICE_TYPE", default_value_t = 0.05, value_parser = ratio)]
    pub missing_device_type: f64,
    /// Draw user ids from a pool of this many users (repeat logins); default: a new id each event.
    #[arg(long, env = "FETCH_GENERATE_USERS")]
    pub users: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub cleaning: CleaningArgs,
    /// JSON lines to clean ('-' for stdin).
    #[arg(long, default_value = "-", value_name = "FILE")]
    pub input: PathBuf,
    /// Where cleaned events go as JSON lines ('-' for stdout).
    #[arg(long, default_value = "-", value_name = "FILE")]
    pub output: PathBuf,
    /// Where rejected lines go as JSON lines, with reason and line number.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: PathBuf,
}

/// Snapshot windows are kept for an hour (see `insights::worker`).
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_within(
        text,
        Duration::from_secs(1)..=Duration::from_secs(3600),
        "an insights interval between 1s and 1h, e.g. 30s",
    )
}

/// Above zero and up to [`MAX_WINDOW`]. The message's "1s" is the shortest useful window (the
/// shortest `--insights-interval`), not a bound: shorter ones are accepted, as they always were.
fn parse_window(text: &str) -> Result<Duration, String> {
    parse_within(
        text,
        Duration::from_nanos(1)..=MAX_WINDOW,
        "a window between 1s and 1h (replicas keep an hour of intervals), e.g. 5m",
    )
}

fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a share between 0 and 1, e.g. 0.05; got {text:?}"
        )),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "expected a number of events per second (0 = unlimited); got {text:?}"
        )),
    }
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
    fn duration_flags_take_humantime_units() {
        let cli = Cli::try_parse_from([
            "fetch-consumer",
            "run",
            "--commit-interval",
            "500ms",
            "--shutdown-timeout",
            "5m",
            "--duration",
            "30s",
        ])
        .expect("valid durations");
        let Command::Run(run) = cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        assert_eq!(run.commit_interval, Some(Duration::from_millis(500)));
        assert_eq!(run.shutdown_timeout, Duration::from_secs(300));
        assert_eq!(run.duration, Some(Duration::from_secs(30)));
        for bad in ["5 parsecs", ""] {
            let err = Cli::try_parse_from(["fetch-consumer", "run", "--commit-interval", bad])
                .expect_err(bad);
            assert!(err.to_string().contains("like 30s"), "{err}");
        }
    }

    #[test]
    fn the_passthrough_key_is_the_inputs_unless_asked_and_only_with_passthrough() {
        let key = |args: &[&str]| match Cli::try_parse_from(
            ["fetch-consumer", "run"].iter().chain(args).copied(),
        )
        .map(|c| c.command)
        {
            Ok(Command::Run(run)) => Ok(run.passthrough.then_some(run.passthrough_key)),
            Ok(other) => panic!("not run: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(key(&[]), Ok(None));
        assert_eq!(key(&["--passthrough"]), Ok(Some(PassthroughKey::Input)));
        assert_eq!(
            key(&["--passthrough", "--passthrough-key", "user-id"]),
            Ok(Some(PassthroughKey::UserId))
        );
        let err = key(&["--passthrough-key", "user-id"]).expect_err("without --passthrough");
        assert!(err.contains("--passthrough"), "{err}");
    }

    #[test]
    fn the_guarantee_picks_the_commit_interval_unless_one_is_given() {
        let run = |args: &[&str]| match Cli::try_parse_from(
            ["fetch-consumer", "run"].iter().chain(args).copied(),
        )
        .map(|c| c.command)
        {
            Ok(Command::Run(run)) => {
                let interval = run
                    .commit_interval
                    .unwrap_or(run.guarantee.default_commit_interval());
                Ok((run.guarantee, interval))
            }
            Ok(other) => panic!("not run: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            run(&[]),
            Ok((Guarantee::AtLeastOnce, Duration::from_secs(1)))
        );
        assert_eq!(
            run(&["--guarantee", "exactly-once"]),
            Ok((Guarantee::ExactlyOnce, Duration::from_millis(100)))
        );
        assert_eq!(
            run(&["--guarantee", "exactly-once", "--commit-interval", "1s"]),
            Ok((Guarantee::ExactlyOnce, Duration::from_secs(1)))
        );
        let err = run(&["--guarantee", "exactly_once"]).expect_err("unknown value");
        assert!(
            err.contains("possible values: at-least-once, exactly-once"),
            "{err}"
        );
    }

    #[test]
    fn windows_take_any_length_up_to_an_hour() {
        fn window(w: &str) -> Option<Duration> {
            match Cli::try_parse_from(["fetch-consumer", "insights", "--window", w])
                .ok()?
                .command
            {
                Command::Insights(args) => args.window,
                other => panic!("not insights: {other:?}"),
            }
        }
        assert_eq!(window("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(window("1h"), Some(MAX_WINDOW));
        assert_eq!(window("0s"), None);
        assert_eq!(window("61m"), None);
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let err = Cli::try_parse_from(["fetch-consumer", "generate", "--malformed", "2"])
            .expect_err("out of range");
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
        let err = Cli::try_parse_from(["fetch-consumer", "run", "-X", "oops"])
            .expect_err("not key=value");
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        let err = Cli::try_parse_from(["fetch-consumer", "run", "--insights-interval", "10ms"])
            .expect_err("too short");
        assert!(err.to_string().contains("between 1s and 1h"), "{err}");
        let err = Cli::try_parse_from(["fetch-consumer", "insights", "--window", "2h"])
            .expect_err("too long");
        assert!(err.to_string().contains("an hour"), "{err}");
    }
}

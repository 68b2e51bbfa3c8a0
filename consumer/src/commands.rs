//! The subcommands, wired from their arguments to the library's parts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::clean::Cleaner;
use crate::cli::{
    CleaningArgs, GenerateArgs, InsightsArgs, KafkaArgs, MAX_WINDOW, ProcessArgs, ReportFormat,
    RunArgs,
};
use crate::error::{Error, Result};
use crate::file_mode;
use crate::generator::{Generator, GeneratorConfig};
use crate::health::Health;
use crate::http::ConsumerOps;
use crate::insights::fleet::{Fleet, choose_pipeline};
use crate::insights::worker::Publisher;
use crate::insights::{DEFAULT_TOP_CAPACITY, Insights, Report, Throughput};
use crate::kafka::checkpoint::{InsightsPublishing, now_ms};
use crate::kafka::generate::{self, Pace};
use crate::kafka::{Guarantee, KafkaProperty, KafkaSettings, PipelineConfig};
use crate::kafka::{insights_topic, pipeline};
use crate::metrics::Metrics;
use crate::pii::{HASH_KEY_ENV, PiiPolicy};
use crate::processor::Processor;
use crate::progress;
use crate::telemetry::{Shutdown, signal};

fn processor(args: &CleaningArgs) -> Result<Processor> {
    let key = std::env::var_os(HASH_KEY_ENV).map(|k| k.into_encoded_bytes());
    let pii = PiiPolicy::new(args.pii_mode, key.as_deref())?;
    Processor::with_insights_thread(
        Cleaner::new(args.max_event_bytes, pii),
        Insights::new(args.top_capacity),
    )
    .map_err(Error::io("starting the insights thread"))
}

fn kafka_settings(args: &KafkaArgs) -> KafkaSettings {
    let mut properties = args.properties.clone();
    let credentials = [
        ("sasl.username", &args.sasl_username),
        ("sasl.password", &args.sasl_password),
    ];
    for (key, value) in credentials {
        if let Some(value) = value {
            properties.push(KafkaProperty {
                key: key.to_owned(),
                value: value.clone(),
            });
        }
    }
    KafkaSettings {
        bootstrap_servers: args.bootstrap_servers.clone(),
        properties,
    }
}

fn write_insights(path: Option<&Path>, insights: &Insights) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let context = format!("writing insights to {}", path.display());
    let file = File::create(path).map_err(Error::io(&context))?;
    serde_json::to_writer(BufWriter::new(file), insights).map_err(|e| Error::io(&context)(e.into()))
}

/// Most window slots a replica keeps: at short intervals the window reaches back less than
/// [`MAX_WINDOW`], so a fast publisher does not leave thousands of keys behind.
const MAX_WINDOW_SLOTS: u32 = 240;

/// This process's name among the pipeline's replicas: the host name (the pod's name on
/// Kubernetes, the container's in compose) and a random suffix, so a restart starts a
/// contribution of its own instead of replacing the one before.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "fetch-consumer".into())
}

/// Exactly once: the producer's id, unique among the replicas running at once, and the same
/// when a container restarts in its pod (same host name, pid 1), so that its start aborts
/// what the killed one left open instead of the partitions waiting for the broker's timeout.
/// Two processes on one host differ by pid.
fn transactional_id(group: &str) -> String {
    format!("{group}.{}.{}", host_name(), std::process::id())
}

fn replica_id() -> String {
    let host = host_name();
    // RandomState is seeded per process from the OS: enough to tell restarts apart.
    let suffix = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{host}-{:06x}", suffix & 0xff_ffff)
}

/// `fetch-consumer run`.
pub async fn run(args: RunArgs) -> Result<()> {
    // From the start: a signal during the setup below stops the pipeline before its first
    // batch, cleanly, instead of killing the process.
    let shutdown = Shutdown::new();
    signal::trigger_on_signal(&shutdown, args.duration);
    let processor = processor(&args.cleaning)?;
    let kafka = kafka_settings(&args.kafka);
    let insights = if args.insights_topic.is_empty() || args.passthrough {
        None
    } else {
        insights_topic::ensure(
            &kafka.client(),
            &args.insights_topic,
            Duration::from_secs(30),
        )
        .await?;
        let slots = MAX_WINDOW.as_secs_f64() / args.insights_interval.as_secs_f64();
        Some(InsightsPublishing {
            topic: args.insights_topic.clone(),
            interval: args.insights_interval,
            publisher: Publisher {
                pipeline: args.group_id.clone(),
                replica: replica_id(),
                window_slots: (slots.ceil() as u32).clamp(1, MAX_WINDOW_SLOTS),
            },
        })
    };
    if let Some(p) = &insights {
        tracing::info!(topic = %p.topic, replica = %p.publisher.replica, interval = ?p.interval, "publishing insights");
        // Beside the pipeline, not before it: retiring is housekeeping, so it waits one
        // interval, out of the way of a start that catches up on a backlog. On a thread of its
        // own that does not hold up exiting: a retirement cut short is aborted by the next.
        let (client, topic, pipeline) = (kafka.client(), p.topic.clone(), args.group_id.clone());
        let after = p.interval;
        let retiring = std::thread::Builder::new()
            .name("insights-retire".into())
            .spawn(move || {
                std::thread::sleep(after);
                match insights_topic::retire(&client, &topic, &pipeline, now_ms(), Duration::from_secs(30)) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(replicas = n, "folded the insights of replicas that are gone into the retired total"),
                    Err(e) => tracing::warn!(error = %e, "could not retire the insights of replicas that are gone; the next start tries again"),
                }
            });
        if let Err(e) = retiring {
            tracing::warn!(error = %e, "cannot start the insights retirement thread");
        }
    }
    if args.passthrough && args.guarantee == Guarantee::ExactlyOnce {
        return Err(Error::Config(
            "--passthrough is the at-least-once benchmarks' baseline: drop it, or --guarantee exactly-once".into(),
        ));
    }
    let transactional_id = transactional_id(&args.group_id);
    let config = PipelineConfig {
        kafka,
        group_id: args.group_id,
        input_topic: args.input_topic,
        output_topic: args.output_topic,
        dead_letter_topic: args.dead_letter_topic,
        batch_size: args.batch_size,
        backlog_hold_bytes: args.backlog_hold_bytes,
        guarantee: args.guarantee,
        commit_interval: args
            .commit_interval
            .unwrap_or(args.guarantee.default_commit_interval()),
        transaction_max_records: args.transaction_max_records,
        transactional_id,
        flush_timeout: args.shutdown_timeout,
        max_records: args.max_records,
        passthrough: args.passthrough.then_some(args.passthrough_key),
        insights,
    };
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let ops = Arc::new(ConsumerOps {
        health: health.clone(),
        metrics: metrics.clone(),
    });
    let server = crate::telemetry::http::serve(args.http_addr, ops, &shutdown).await?;
    let progress = args
        .progress
        .then(|| tokio::spawn(progress::run(metrics.clone(), shutdown.wait_owned())));

    let (result, processor) =
        pipeline::run_until(config, processor, metrics, health, &shutdown).await;

    // However the pipeline stopped (asked to, done, or a fatal error), the rest stops with it.
    shutdown.trigger();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let throughput = result.as_ref().ok().map(|s| s.throughput);
    let insights = processor.into_insights();
    let report = Report {
        insights: &insights,
        throughput,
    };
    write_stdout(&format!("{report}\n"))?;
    write_insights(args.cleaning.insights_out.as_deref(), &insights)?;
    server.stopped().await;
    let summary = result?;
    tracing::info!(
        consumed = summary.throughput.records,
        unacknowledged = summary.unacknowledged,
        "stopped cleanly"
    );
    Ok(())
}

/// `fetch-consumer insights`.
pub async fn insights(args: InsightsArgs) -> Result<()> {
    let config = kafka_settings(&args.kafka).client();
    let (topic, timeout) = (args.insights_topic.clone(), args.timeout);
    let state = tokio::task::spawn_blocking(move || insights_topic::read(config, &topic, timeout))
        .await
        .map_err(|e| Error::Insights(format!("the reader stopped: {e}")))??;
    let (mut snapshots, skipped) = state.snapshots_of(args.pipeline.as_deref());
    let wanted = args.pipeline.as_deref();
    if wanted.is_some_and(|p| !snapshots.iter().any(|s| s.pipeline == p)) {
        // Decode everything, to name the pipelines that did publish.
        snapshots = state.snapshots().0;
    }
    for (reason, n) in &skipped {
        eprintln!(
            "warning: skipped {n} record(s) of {:?}: {reason}",
            args.insights_topic
        );
    }
    let pipeline =
        choose_pipeline(&snapshots, args.pipeline.as_deref()).map_err(Error::Insights)?;
    let fleet = Fleet::merge(
        &snapshots,
        &pipeline,
        now_ms(),
        args.window,
        DEFAULT_TOP_CAPACITY,
    );
    let text = match args.format {
        ReportFormat::Json => {
            let json = serde_json::to_string_pretty(&fleet.summary(10))
                .map_err(|e| Error::Insights(e.to_string()))?;
            format!("{json}\n")
        }
        ReportFormat::Text => crate::insights::report::FleetReport {
            fleet: &fleet,
            window: args.window,
        }
        .to_string(),
    };
    write_stdout(&text)
}

/// Writes `text` to stdout. A reader that stopped early (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io("writing to stdout")(e)),
        _ => Ok(()),
    }
}

/// `fetch-consumer process`.
pub fn process(args: ProcessArgs) -> Result<()> {
    let mut processor = processor(&args.cleaning)?;
    let mut input: Box<dyn BufRead> = if args.input == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.input)
            .map_err(Error::io(format!("opening {}", args.input.display())))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut output = create_output(&args.output)?;
    let mut dead_letter = create_output(&args.dead_letter)?;
    let (stats, throughput) =
        file_mode::process_lines(&mut processor, &mut input, &mut output, &mut dead_letter)?;
    drop((output, dead_letter));
    let insights = processor.into_insights();
    eprintln!(
        "{}",
        Report {
            insights: &insights,
            throughput: Some(throughput)
        }
    );
    write_insights(args.cleaning.insights_out.as_deref(), &insights)?;
    tracing::debug!(?stats, "processed");
    Ok(())
}

fn create_output(path: &Path) -> Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufWriter::with_capacity(
            1 << 16,
            io::stdout().lock(),
        )));
    }
    let file = File::create(path).map_err(Error::io(format!("creating {}", path.display())))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, file)))
}

/// `fetch-consumer generate`.
pub async fn generate(args: GenerateArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        missing_device_type: args.missing_device_type,
        variety: args.variety,
        malformed: args.malformed,
        users: args.users,
    });
    let pace = Pace {
        rate: (args.rate > 0.0).then_some(args.rate),
        count: (args.count > 0).then_some(args.count),
    };
    let shutdown = Shutdown::new();
    signal::trigger_on_signal(&shutdown, None);
    if let Some(path) = args.output {
        // Blocking writes, off the runtime's threads (which serve the signal).
        let written = tokio::task::spawn_blocking(move || {
            generate_to_file(&mut generator, &path, pace, &shutdown)
        })
        .await;
        return written.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    let settings = kafka_settings(&args.kafka);
    let sent = Arc::new(AtomicU64::new(0));
    tracing::info!(topic = %args.topic, seed, rate = ?pace.rate, count = ?pace.count, "generating events");
    let started = Instant::now();
    let mut task = tokio::task::spawn_blocking({
        let (shutdown, sent, topic) = (shutdown.clone(), sent.clone(), args.topic.clone());
        move || generate::produce(&settings, &topic, &mut generator, pace, &shutdown, &sent)
    });
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = ticker.tick() => tracing::info!(sent = sent.load(Ordering::Relaxed), "generating"),
        }
    };
    let acknowledged = match joined {
        Ok(result) => result?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let t = Throughput {
        records: acknowledged,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        acknowledged,
        events_per_second = t.per_second().round(),
        "generator done"
    );
    Ok(())
}

/// Writes generated events, one per line, until the count is reached or `shutdown` is
/// triggered; either way the file ends with a whole line (a signal no longer cuts one in two).
fn generate_to_file(
    generator: &mut Generator,
    path: &Path,
    pace: Pace,
    shutdown: &Shutdown,
) -> Result<()> {
    let mut out = create_output(path)?;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 0u64;
    while !pace.done(n) && !shutdown.is_triggered() {
        if let Some(nap) = pace.nap(started, n, Instant::now()) {
            out.flush().map_err(Error::io("writing events"))?;
            std::thread::sleep(nap);
            continue;
        }
        generator.next_record(generate::epoch_seconds(), &mut key, &mut value);
        out.write_all(&value).map_err(Error::io("writing events"))?;
        out.write_all(b"\n").map_err(Error::io("writing events"))?;
        n += 1;
    }
    out.flush().map_err(Error::io("writing events"))
}

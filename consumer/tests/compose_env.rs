//! The compose file cannot drift from the consumer: every environment variable it gives the
//! generator and consumer containers is one `fetch-consumer` actually reads (a flag's `env`).

use std::collections::BTreeSet;

use clap::CommandFactory;
use fetch_consumer::cli::Cli;

const COMPOSE: &str = include_str!("../../compose/compose.yaml");
const ENV_FILE: &str = include_str!("../../compose/fetch-pipeline.env");

fn variables_read_by_the_consumer() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&Cli::command(), &mut out);
    // Read directly by the library rather than through a flag.
    out.insert(fetch_consumer::pii::HASH_KEY_ENV.to_owned());
    out.extend(
        [
            "RUST_LOG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ]
        .map(str::to_owned),
    );
    out
}

#[test]
fn every_variable_the_compose_file_sets_is_read_by_the_consumer() {
    let known = variables_read_by_the_consumer();
    let mut set = BTreeSet::new();
    for line in ENV_FILE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not NAME=value: {line:?}"));
        set.insert(name.to_owned());
    }
    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(COMPOSE).expect("compose.yaml is YAML");
    for service in ["generator", "consumer"] {
        let svc = &compose["services"][service];
        assert_eq!(
            svc["env_file"].as_str(),
            Some("fetch-pipeline.env"),
            "{service} uses the env file"
        );
        if let Some(map) = svc["environment"].as_mapping() {
            set.extend(map.keys().filter_map(|k| k.as_str()).map(str::to_owned));
        }
    }
    assert!(set.len() > 10, "the env file sets the knobs: {set:?}");
    let unknown: Vec<_> = set.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "compose sets variables fetch-consumer does not read: {unknown:?}"
    );
}

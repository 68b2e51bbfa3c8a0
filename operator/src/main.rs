//! `fetch-operator`: parses the command line and runs the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use fetch_operator::cli::{Cli, Command};
use fetch_operator::manifests;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { helm_template } => match if helm_template {
            manifests::crd_helm_template()
        } else {
            manifests::crd_yaml()
        } {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let _telemetry = match fetch_telemetry::init("fetch-operator", cli.log_format) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(fetch_operator::app::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `fetch-consumer`: parses the command line and runs the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use fetch_consumer::cli::{Cli, Command};
use fetch_consumer::{Error, commands, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = match telemetry::init("fetch-consumer", cli.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Process(args) => commands::process(args),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(commands::run(args))),
        Command::Generate(args) => runtime().and_then(|rt| rt.block_on(commands::generate(args))),
        Command::Insights(args) => runtime().and_then(|rt| rt.block_on(commands::insights(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> fetch_consumer::Result<tokio::runtime::Runtime> {
    // Two workers: the HTTP endpoints and signals are light; the pipeline has its own thread.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(fetch_consumer::Error::io("starting the async runtime"))
}

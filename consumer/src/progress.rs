//! The live progress line of `run --progress`: counts and rates, once a second.
//!
//! On a terminal the line rewrites itself; otherwise (a log file, CI) a full line is printed
//! every ten seconds so logs stay readable.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::insights::report::group;
use crate::metrics::Metrics;

/// Prints progress until `stop` completes.
pub async fn run(metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (Instant::now(), 0u64);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let consumed = metrics.consumed.get();
        let now = Instant::now();
        let rate = (consumed - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, consumed);
        let line = format!(
            "consumed {} ({} ev/s) | cleaned {} | dead-lettered {} | lag {} | in flight {}",
            group(consumed),
            group(rate.round() as u64),
            group(metrics.produced.get()),
            group(metrics.dead_letter_produced.get()),
            group(metrics.total_lag.get().max(0) as u64),
            group(metrics.in_flight.get().max(0) as u64),
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}

//! Logs, traces and the process runtime shared by both binaries, so `fetch-consumer` and
//! `fetch-operator` start, serve and stop the same way.
//!
//! The rule: whatever a binary does to live as a process (set up logs, stop on a signal, serve
//! its operations endpoints, read a duration flag) is written once, here; the binaries only
//! add what is theirs (their metrics, their probes, their flags' ranges).
//!
//! - [`logs`]: `tracing` to stderr and OpenTelemetry spans ([`init`]).
//! - [`shutdown`]: [`Shutdown`], the one stop signal every part of a binary is handed.
//! - [`signal`]: SIGINT/SIGTERM (and an optional time limit) trigger the shutdown.
//! - [`http`]: the `/healthz` and `/metrics` server, with a binary's own routes beside them.
//! - [`duration`]: duration flags like `30s`, with messages that say what to fix.

pub mod duration;
pub mod http;
pub mod logs;
pub mod shutdown;
pub mod signal;

pub use logs::{LogFormat, TelemetryGuard, init};
pub use shutdown::Shutdown;

/// Why the runtime could not start, or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Logs or traces could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// An I/O operation failed, e.g. binding the HTTP endpoints' address.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

//! fetch-consumer: consumes `user-login` events from Kafka, cleans them, produces them to an
//! output topic (rejects to a dead-letter topic), and reports insights.
//!
//! A map of the crate, from pure logic to I/O:
//!
//! - [`event`]: zero-copy parsing of one raw record into its fields.
//! - [`clean`]: the processing rules; one record in, a [`clean::CleanEvent`] or a rejection out.
//! - [`reason`]: the stable reason codes of rejections.
//! - [`time`]: the accepted timestamp range and RFC 3339 rendering.
//! - [`ip_text`]: reading an IP address, with a short way for dotted quads.
//! - [`pii`]: optional masking or keyed hashing of `ip` and `device_id`.
//! - [`insights`]: bounded-memory, mergeable insights (HyperLogLog, Space-Saving) and the report.
//! - [`output_json`]: the output record's JSON, written by hand for its fixed shape.
//! - [`json_string`]: where a JSON string's plain run ends, shared by parsing and writing.
//! - [`processor`]: cleaning + serialization + insights, shared by every mode.
//! - [`handoff`]: batches passed between threads and handed back for reuse.
//! - [`dead_letter`]: how rejected records are written (Kafka headers, JSON lines).
//! - [`generator`]: synthetic events shaped like the take-home's data generator.
//! - [`file_mode`]: the `process` subcommand over JSON lines, no broker.
//! - [`kafka`]: client settings, at-least-once offset tracking and exactly-once transaction
//!   bookkeeping, the pipeline loop and its processing thread, generation.
//! - [`metrics`], [`health`], [`http`]: Prometheus metrics and what the probe/metrics
//!   endpoints answer (served by the shared runtime, [`telemetry`]).
//! - [`progress`]: the live progress line.
//! - [`cli`], [`commands`]: the command line and the subcommands wired from it.

pub mod clean;
pub mod cli;
pub mod commands;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod file_mode;
pub mod generator;
pub mod handoff;
pub mod health;
pub mod http;
pub mod insights;
pub mod ip_text;
pub mod json_string;
pub mod kafka;
pub mod metrics;
pub mod output_json;
pub mod pii;
pub mod processor;
pub mod progress;
pub mod reason;
pub mod time;

pub use error::{Error, Result};
/// Logs, traces and the process runtime (shutdown, signals, the endpoints' server, duration
/// flags), shared with the operator.
pub use fetch_telemetry as telemetry;

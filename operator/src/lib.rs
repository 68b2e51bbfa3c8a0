//! fetch-operator: reconciles `FetchPipeline` resources into `fetch-consumer` Deployments
//! scaled by the input topic's partition count, or by its backlog and throughput.
//!
//! A map of the crate, from pure logic to I/O:
//!
//! - [`crd`]: the `FetchPipeline` resource (spec, status, schema, CEL validation rules).
//! - [`scaling`]: partitions, bounds, backlog and rates to a replica count, with the reason.
//! - [`rates`]: arrival and processing rates from offsets sampled over time.
//! - [`status`]: the status after a check, and the retry backoff.
//! - [`memory`]: what the operator remembers per pipeline between checks.
//! - [`rollout`]: replica by replica, or all at once when the group's protocol changes.
//! - [`resources`]: the ServiceAccount, metrics Service and Deployment built from a pipeline.
//! - [`conditions`]: status conditions per the API conventions.
//! - [`kafka`]: reading partition counts and consumer lag from Kafka.
//! - [`insights`]: the pipeline's insights, read from the insights topic, in its status.
//! - [`observe`]: a check's first step, reading the Deployment and Kafka.
//! - [`controller`]: the reconciler (observe, decide, apply, report) and the controller loop.
//! - [`leader`]: leader election on a Lease.
//! - [`manifests`]: the generated CRD manifests (plain and as the chart's template).
//! - [`metrics`], [`http`]: Prometheus metrics and the `/healthz`, `/metrics` endpoints.
//! - [`cli`], [`app`]: the command line and the `run` command wired from it.

pub mod app;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod insights;
pub mod kafka;
pub mod leader;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod rates;
pub mod resources;
pub mod rollout;
pub mod scaling;
pub mod status;

pub use error::{Error, Result};

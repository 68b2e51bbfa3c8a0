//! Everything that talks to Kafka: client settings, offset and transaction bookkeeping, the
//! pipeline loop with its processing stage, the insights topic, the generator's producer, and
//! giving a client that has forgotten every broker its bootstrap servers back.

pub mod checkpoint;
mod client_log;
pub mod config;
pub mod generate;
pub mod insights_topic;
pub mod offsets;
pub mod partitioner;
pub mod pipeline;
pub mod rebootstrap;
pub mod requests;
pub mod send;
mod stage;
#[cfg(test)]
mod test_statistics;
pub mod transaction;

pub use config::{Guarantee, KafkaProperty, KafkaSettings};
pub use pipeline::{PipelineConfig, RunSummary};

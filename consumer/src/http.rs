//! What the consumer's operations endpoints answer: `/healthz` from the consume loop's
//! liveness, `/readyz` from its group membership, `/metrics` from its metrics. Serving them is
//! the shared runtime's (`telemetry::http`), the same as the operator's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};

use crate::health::Health;
use crate::metrics::Metrics;
use crate::telemetry::http::Ops;

/// The state the endpoints read.
pub struct ConsumerOps {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

impl Ops for ConsumerOps {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn liveness(&self) -> Result<(), &'static str> {
        if self.health.is_live() {
            Ok(())
        } else {
            Err("consume loop stalled")
        }
    }

    fn routes() -> Vec<(&'static str, MethodRouter<Arc<Self>>)> {
        vec![("/readyz", get(readyz))]
    }
}

async fn readyz(State(ops): State<Arc<ConsumerOps>>) -> impl IntoResponse {
    if ops.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not assigned any partition yet\n",
        )
    }
}

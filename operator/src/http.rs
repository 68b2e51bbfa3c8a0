//! What the operator's operations endpoints answer: `/healthz` (always ok: a process that
//! answers is alive; losing the Lease or the controller ends the process instead) and
//! `/metrics`. Serving them is the shared runtime's (`fetch_telemetry::http`), the same as the
//! consumer's.

use fetch_telemetry::http::Ops;

use crate::metrics::Metrics;

impl Ops for Metrics {
    fn metrics(&self) -> String {
        self.encode()
    }
}

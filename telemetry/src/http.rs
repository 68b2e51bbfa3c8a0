//! The operations endpoints of a binary, on one small HTTP server: `/healthz` and `/metrics`
//! (OpenMetrics text) for both binaries, plus the routes a binary adds (the consumer's
//! `/readyz`).
//!
//! The rule: what the endpoints answer belongs to the binary ([`Ops`]); how they are served
//! is the same for both: bound before the work starts (a bad address fails the start), the
//! bound address logged as `addr` (tests and `--http-addr 127.0.0.1:0` read it there), and
//! stopped by the process's [`Shutdown`] after answering the requests already open. A server
//! that fails is logged, not fatal: losing the endpoints must not stop the work.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Error, Shutdown};

/// The content type of `/metrics`: Prometheus scrapes OpenMetrics when told it is.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a binary's operations endpoints answer.
pub trait Ops: Send + Sync + Sized + 'static {
    /// The metrics in the OpenMetrics text format, for `/metrics`.
    fn metrics(&self) -> String;

    /// For `/healthz`: `Ok` (200 `ok`) while the process does its work, `Err(why)` (503 with
    /// `why`) when it is stuck and should be restarted.
    fn liveness(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// The binary's own routes beside `/healthz` and `/metrics`, by path.
    fn routes() -> Vec<(&'static str, MethodRouter<Arc<Self>>)> {
        Vec::new()
    }
}

/// The running endpoints.
#[derive(Debug)]
pub struct Serving {
    addr: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl Serving {
    /// The bound address (the port the kernel chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server to stop, which it does once the shutdown is triggered and the open
    /// requests are answered. A failure is logged (see the module's rule).
    pub async fn stopped(self) {
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP endpoints failed"),
            Err(e) => tracing::warn!(error = %e, "HTTP task failed"),
        }
    }
}

/// Binds `addr` and serves `ops`' endpoints on a task of their own until `shutdown`.
pub async fn serve<O: Ops>(
    addr: SocketAddr,
    ops: Arc<O>,
    shutdown: &Shutdown,
) -> Result<Serving, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        context: format!("binding the HTTP endpoints to {addr}"),
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the HTTP endpoints' bound address".into(),
        source,
    })?;
    let mut paths = vec!["/healthz"];
    let mut router = Router::new().route("/healthz", get(healthz::<O>));
    for (path, route) in O::routes() {
        paths.push(path);
        router = router.route(path, route);
    }
    paths.push("/metrics");
    let router = router.route("/metrics", get(metrics::<O>)).with_state(ops);
    tracing::info!(addr = %bound, "serving {}", listed(&paths));
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.wait_owned());
    Ok(Serving {
        addr: bound,
        task: tokio::spawn(server.into_future()),
    })
}

async fn healthz<O: Ops>(State(ops): State<Arc<O>>) -> Response {
    match ops.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics<O: Ops>(State(ops): State<Arc<O>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], ops.metrics())
}

/// "a", "a and b", "a, b and c".
fn listed(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use std::io::{Read, Write};

    use super::*;

    #[derive(Default)]
    struct TestOps {
        stuck: AtomicBool,
    }

    impl Ops for TestOps {
        fn metrics(&self) -> String {
            "# EOF\n".into()
        }

        fn liveness(&self) -> Result<(), &'static str> {
            if self.stuck.load(Ordering::Relaxed) {
                Err("loop stalled")
            } else {
                Ok(())
            }
        }

        fn routes() -> Vec<(&'static str, MethodRouter<Arc<Self>>)> {
            vec![("/readyz", get(|| async { "ready\n" }))]
        }
    }

    /// Operator-like: nothing but the defaults.
    struct Plain;

    impl Ops for Plain {
        fn metrics(&self) -> String {
            String::new()
        }
    }

    /// GET `path`: (status, content type, body). A plain blocking client on a thread of its
    /// own keeps the dependencies as they are.
    async fn get_path(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let response = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.write_all(request.as_bytes()).expect("request");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("response");
            response
        })
        .await
        .expect("joined");
        let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_owned();
        (status, content_type, body.to_owned())
    }

    async fn start<O: Ops>(ops: O) -> (Serving, Shutdown, Arc<O>) {
        let shutdown = Shutdown::new();
        let ops = Arc::new(ops);
        let serving = serve(([127, 0, 0, 1], 0).into(), ops.clone(), &shutdown)
            .await
            .expect("serve");
        (serving, shutdown, ops)
    }

    #[tokio::test]
    async fn healthz_is_200_while_live_and_503_with_the_reason_when_stuck() {
        let (serving, _shutdown, ops) = start(TestOps::default()).await;
        assert_eq!(
            get_path(serving.addr(), "/healthz").await,
            (200, "text/plain; charset=utf-8".into(), "ok\n".into())
        );
        ops.stuck.store(true, Ordering::Relaxed);
        let (status, _, body) = get_path(serving.addr(), "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "loop stalled\n"));
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let (serving, _shutdown, _) = start(TestOps::default()).await;
        assert_eq!(
            get_path(serving.addr(), "/metrics").await,
            (200, OPENMETRICS.into(), "# EOF\n".into())
        );
    }

    #[tokio::test]
    async fn a_binarys_own_routes_are_served_and_others_are_404() {
        let (serving, _shutdown, _) = start(TestOps::default()).await;
        assert_eq!(get_path(serving.addr(), "/readyz").await.0, 200);
        let (plain, _shutdown, _) = start(Plain).await;
        assert_eq!(get_path(plain.addr(), "/healthz").await.2, "ok\n");
        assert_eq!(get_path(plain.addr(), "/readyz").await.0, 404);
    }

    #[tokio::test]
    async fn the_server_stops_when_the_shutdown_is_triggered() {
        let (serving, shutdown, _) = start(Plain).await;
        let addr = serving.addr();
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), serving.stopped())
            .await
            .expect("stopped");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_address_fails_the_start_and_names_it() {
        let (serving, _shutdown, _) = start(Plain).await;
        let err = serve(serving.addr(), Arc::new(Plain), &Shutdown::new())
            .await
            .expect_err("address in use");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("binding the HTTP endpoints to {}", serving.addr())),
            "{message}"
        );
    }

    #[test]
    fn paths_are_listed_as_a_sentence() {
        assert_eq!(listed(&["/healthz", "/metrics"]), "/healthz and /metrics");
        assert_eq!(
            listed(&["/healthz", "/readyz", "/metrics"]),
            "/healthz, /readyz and /metrics"
        );
    }
}

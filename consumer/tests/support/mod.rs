//! Helpers for the consumer's integration tests: the consumer binary as a process, plus the
//! workspace's shared Kafka helpers (`fetch-testing`).

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use fetch_testing::*;

mod tally;
// Not every test binary checks topics record by record.
#[allow(unused_imports)]
pub use tally::*;

/// A running `fetch-consumer run` process.
pub struct ConsumerProcess {
    pub child: Child,
    pub stderr: CapturedLog,
    pub http: String,
}

impl ConsumerProcess {
    /// Starts the consumer with JSON logs and the HTTP endpoints on a kernel-chosen port.
    pub fn start(
        group: &str,
        input: &str,
        output: &str,
        dead_letter: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_on(&bootstrap(), group, input, output, dead_letter, extra)
    }

    /// [`ConsumerProcess::start`] on the broker at `bootstrap` (a test's own broker).
    pub fn start_on(
        bootstrap: &str,
        group: &str,
        input: &str,
        output: &str,
        dead_letter: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fetch-consumer"))
            .args(["--log-format", "json", "run", "--bootstrap-servers"])
            .arg(bootstrap)
            .args(["--group-id", group, "--input-topic", input])
            .args(["--output-topic", output, "--dead-letter-topic", dead_letter])
            .args(["--http-addr", "127.0.0.1:0", "--commit-interval", "200ms"])
            // Commits wait for published insights: publish often so tests do not wait.
            .args(["--insights-interval", "1s"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fetch-consumer");
        let stderr = capture_stderr(&mut child);
        let mut http = String::new();
        wait_until("the consumer's HTTP address in its log", || {
            let lines = stderr.lines();
            http = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v["fields"]["addr"].as_str().map(str::to_owned))
                .unwrap_or_default();
            !http.is_empty()
        });
        ConsumerProcess {
            child,
            stderr,
            http,
        }
    }

    /// GET `path` on the consumer's HTTP endpoints: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }

    /// A metric of the consumer's /metrics, every series of it summed (a counter family's
    /// labels, say); panics if it has none.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        let values: Vec<f64> = body
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse().ok()
            })
            .collect();
        assert!(!values.is_empty(), "no {name} in /metrics:\n{body}");
        values.iter().sum()
    }

    pub fn log(&self) -> String {
        self.stderr.lines().join("\n")
    }

    /// Sends SIGTERM and waits for the exit; returns (exit code, stdout).
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        let code = self.child.wait().expect("wait").code();
        (code, stdout)
    }

    /// SIGKILL: no flush, no commit, no report.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `records` with `send` as a steady stream, `chunk` records every `pause`, so a test
/// can act while it flows (a consumer joining, the broker stopping) and the stream goes on
/// for at least `after` sends once `moment` is set. On a loaded machine that moment once came
/// after the whole stream had been sent; so the stream then trickles on (the records again,
/// 500 at a time) as long as needed. Returns how many records were sent.
pub fn steady_stream(
    records: &[Record],
    (chunk, pause): (usize, Duration),
    moment: &AtomicBool,
    after: usize,
    send: impl Fn(&[Record]),
) -> usize {
    let (mut sent, mut sent_after) = (0, 0);
    let give_up = Instant::now() + TIMEOUT;
    let stream = records.chunks(chunk).map(|c| (c, false));
    let trickle = records.chunks(500).cycle().map(|c| (c, true));
    for (c, trickling) in stream.chain(trickle) {
        if trickling && (sent_after >= after || Instant::now() > give_up) {
            break;
        }
        sent_after += usize::from(moment.load(Ordering::Acquire));
        send(c);
        sent += c.len();
        std::thread::sleep(pause);
    }
    sent
}

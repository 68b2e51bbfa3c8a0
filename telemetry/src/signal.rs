//! SIGINT and SIGTERM, and an optional time limit, as the trigger of a [`Shutdown`].
//!
//! The rule: the first signal (or the time limit) asks for a clean shutdown; once a shutdown
//! has begun, for whatever reason, another signal exits at once (code 130) with a message,
//! the way out of a shutdown that takes too long. Signals are listened to from the moment
//! [`trigger_on_signal`] returns, so one arriving right after start is not lost to the default
//! action (which would kill the process without a clean shutdown).

use std::time::Duration;

use crate::Shutdown;

/// The exit code of a process stopped by a signal during its shutdown (as shells report
/// SIGINT).
pub const EXIT_AT_ONCE: i32 = 130;

/// Triggers `shutdown` on the first SIGINT or SIGTERM, or once `limit` has passed; a signal
/// after that exits the process at once. Must be called inside a tokio runtime; listens on a
/// task of its own until the runtime ends.
pub fn trigger_on_signal(shutdown: &Shutdown, limit: Option<Duration>) {
    let signals = OsSignals::listen();
    tokio::spawn(handle(shutdown.clone(), limit, signals, || {
        eprintln!("second signal: exiting without a clean shutdown");
        std::process::exit(EXIT_AT_ONCE)
    }));
}

/// Where signals come from: the operating system, or a test.
trait Signals {
    /// Waits for the next signal; returns its name, for the log.
    async fn next(&mut self) -> &'static str;
}

/// The rule of the module, apart from the operating system and the process exit.
async fn handle(
    shutdown: Shutdown,
    limit: Option<Duration>,
    mut signals: impl Signals,
    exit: impl FnOnce(),
) {
    let limit_reached = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = signals.next() => {
            if shutdown.trigger() {
                tracing::info!(signal, "shutdown requested");
            }
        }
        () = limit_reached => {
            if shutdown.trigger() {
                tracing::info!(?limit, "time limit reached: shutting down");
            }
        }
        // Begun elsewhere (a fatal error, the work done): the next signal is the second one.
        () = shutdown.wait() => {}
    }
    signals.next().await;
    exit();
}

#[cfg(unix)]
struct OsSignals {
    // None when the signal cannot be listened to (logged): the others still work.
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl OsSignals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind, name: &str| {
            signal(kind)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
                .ok()
        };
        OsSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }
}

#[cfg(unix)]
impl Signals for OsSignals {
    async fn next(&mut self) -> &'static str {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            // `recv` gives `None` only once the runtime shuts down: nothing more will come.
            let received = match signal {
                Some(signal) => signal.recv().await,
                None => None,
            };
            if received.is_none() {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(self.interrupt.as_mut()) => "SIGINT",
            () = recv(self.terminate.as_mut()) => "SIGTERM",
        }
    }
}

#[cfg(not(unix))]
struct OsSignals;

#[cfg(not(unix))]
impl OsSignals {
    fn listen() -> Self {
        OsSignals
    }
}

#[cfg(not(unix))]
impl Signals for OsSignals {
    async fn next(&mut self) -> &'static str {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::mpsc;

    use super::*;

    /// Signals sent by the test through a channel.
    struct Fake(mpsc::UnboundedReceiver<&'static str>);

    impl Signals for Fake {
        async fn next(&mut self) -> &'static str {
            match self.0.recv().await {
                Some(name) => name,
                None => std::future::pending().await,
            }
        }
    }

    struct Harness {
        shutdown: Shutdown,
        send: mpsc::UnboundedSender<&'static str>,
        exited: Arc<AtomicBool>,
    }

    fn start(limit: Option<Duration>) -> Harness {
        let shutdown = Shutdown::new();
        let (send, receive) = mpsc::unbounded_channel();
        let exited = Arc::new(AtomicBool::new(false));
        let flag = exited.clone();
        tokio::spawn(handle(shutdown.clone(), limit, Fake(receive), move || {
            flag.store(true, Ordering::SeqCst)
        }));
        Harness {
            shutdown,
            send,
            exited,
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn triggered(shutdown: &Shutdown) {
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .expect("shutdown triggered");
    }

    #[tokio::test]
    async fn the_first_signal_triggers_a_clean_shutdown() {
        let h = start(None);
        settle().await;
        assert!(
            !h.shutdown.is_triggered(),
            "nothing happens before a signal"
        );
        h.send.send("SIGTERM").expect("send");
        triggered(&h.shutdown).await;
        settle().await;
        assert!(
            !h.exited.load(Ordering::SeqCst),
            "the first signal does not exit"
        );
    }

    #[tokio::test]
    async fn a_second_signal_exits_at_once() {
        let h = start(None);
        h.send.send("SIGINT").expect("send");
        triggered(&h.shutdown).await;
        h.send.send("SIGTERM").expect("send");
        settle().await;
        assert!(h.exited.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_time_limit_triggers_a_clean_shutdown() {
        let h = start(Some(Duration::from_millis(30)));
        triggered(&h.shutdown).await;
        settle().await;
        assert!(!h.exited.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_signal_after_the_time_limit_exits_at_once() {
        let h = start(Some(Duration::from_millis(10)));
        triggered(&h.shutdown).await;
        h.send.send("SIGINT").expect("send");
        settle().await;
        assert!(h.exited.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_signal_after_a_shutdown_begun_elsewhere_exits_at_once() {
        let h = start(None);
        h.shutdown.trigger();
        settle().await;
        assert!(
            !h.exited.load(Ordering::SeqCst),
            "triggering alone does not exit"
        );
        h.send.send("SIGTERM").expect("send");
        settle().await;
        assert!(h.exited.load(Ordering::SeqCst));
    }

    /// Set in the child process of `real_signals_follow_the_rule`.
    const CHILD: &str = "FETCH_TELEMETRY_SIGNAL_CHILD";

    /// The child side of `real_signals_follow_the_rule`: does nothing in an ordinary run.
    #[test]
    fn signal_child_process() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let shutdown = Shutdown::new();
            trigger_on_signal(&shutdown, None);
            println!("listening");
            shutdown.wait().await;
            println!("shutting down");
            std::future::pending::<()>().await;
        });
    }

    /// The rule with real signals, in a child process (the second signal ends the process):
    /// SIGTERM starts the shutdown, SIGINT then exits at once with 130 and the message.
    #[cfg(unix)]
    #[test]
    fn real_signals_follow_the_rule() {
        use std::io::{BufRead, BufReader, Read};
        use std::process::{Command, Stdio};

        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "signal::tests::signal_child_process",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let kill = |signal: &str, pid: u32| {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal}");
        };
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut wait_for = |line: &str| {
            // `contains`: libtest may print the test's name on the same line first.
            let found = stdout
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains(line));
            assert!(found, "the child printed {line:?}");
        };
        wait_for("listening");
        kill("-TERM", child.id());
        wait_for("shutting down");
        kill("-INT", child.id());
        let status = child.wait().expect("wait");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        assert_eq!(status.code(), Some(EXIT_AT_ONCE), "{stderr}");
        assert!(
            stderr.contains("second signal: exiting without a clean shutdown"),
            "{stderr}"
        );
    }
}

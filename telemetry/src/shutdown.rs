//! One shutdown per process, handed to every part that has to stop (like mini-redis's
//! `Shutdown`): triggered once, by whoever sees the reason first (a signal, a time limit, a
//! fatal error, the work being done, a test), and awaited by all the others.
//!
//! The rule: a part never decides on its own how it learns about stopping. Async tasks await
//! [`Shutdown::wait`] (or hand [`Shutdown::wait_owned`] to axum or kube-runtime); blocking
//! threads, such as the Kafka poll loop, check [`Shutdown::is_triggered`] between rounds.
//! Triggering is sticky and idempotent, so nobody can miss it by starting to wait too late,
//! and a second trigger changes nothing.

use std::future::Future;

use tokio::sync::watch;

/// A cloneable handle on the process's one shutdown. Clones share it: triggering any of them
/// triggers all.
#[derive(Debug, Clone)]
pub struct Shutdown {
    // The sender's own value is the state, so a handle needs no receiver to read or set it.
    triggered: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown not triggered yet.
    pub fn new() -> Self {
        Shutdown {
            triggered: watch::Sender::new(false),
        }
    }

    /// Starts the shutdown. Returns true for the call that started it, false when it had
    /// already begun (for a log that names the first reason only).
    pub fn trigger(&self) -> bool {
        self.triggered.send_if_modified(|triggered| {
            let first = !*triggered;
            *triggered = true;
            first
        })
    }

    /// Whether the shutdown has begun. Cheap and synchronous, for blocking threads that check
    /// it between units of work.
    pub fn is_triggered(&self) -> bool {
        *self.triggered.borrow()
    }

    /// Completes once the shutdown has begun (at once if it already has).
    pub async fn wait(&self) {
        self.wait_owned().await;
    }

    /// [`Shutdown::wait`] as a future that owns its handle, for APIs that keep the future
    /// (`axum::serve(..).with_graceful_shutdown`, kube-runtime's `graceful_shutdown_on`).
    pub fn wait_owned(&self) -> impl Future<Output = ()> + Send + Sync + 'static + use<> {
        let sender = self.triggered.clone();
        async move {
            // Never an error: the future holds a sender, so the channel stays open, and a
            // waiter whose handles were all dropped pends instead of stopping by mistake.
            let _ = sender.subscribe().wait_for(|triggered| *triggered).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn is_ready(future: impl Future<Output = ()>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::pin!(future).poll(&mut cx).is_ready()
    }

    #[test]
    fn starts_untriggered_and_waiting_pends() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        assert!(!is_ready(shutdown.wait()));
    }

    #[test]
    fn triggering_once_is_seen_by_every_clone() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(clone.trigger(), "the first trigger starts it");
        assert!(shutdown.is_triggered() && clone.is_triggered());
        assert!(!shutdown.trigger(), "a second trigger changes nothing");
        assert!(shutdown.is_triggered());
    }

    #[test]
    fn waiting_after_the_trigger_completes_at_once() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        assert!(is_ready(shutdown.wait()));
        assert!(is_ready(shutdown.wait_owned()));
    }

    #[test]
    fn an_owned_waiter_outlives_every_handle() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.wait_owned();
        drop(shutdown);
        // No handle left to trigger it: it pends rather than completing by mistake.
        assert!(!is_ready(waiter));
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_one_triggers() {
        let shutdown = Shutdown::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(shutdown.clone().wait_owned()))
            .collect();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger();
        });
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("joined");
        }
    }

    #[test]
    fn a_blocking_thread_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let worker = std::thread::spawn({
            let shutdown = shutdown.clone();
            move || {
                let mut rounds = 0u64;
                while !shutdown.is_triggered() {
                    rounds += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                rounds
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        shutdown.trigger();
        assert!(worker.join().expect("joined") > 0);
    }
}

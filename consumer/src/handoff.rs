//! Batches handed from one thread to another, and handed back empty for reuse.
//!
//! The hot loop fills a batch, swaps it for an empty one and sends the full one over a bounded
//! channel: a slow receiver makes the sender wait (backpressure) instead of growing a queue.
//! The receiver clears each batch it is done with and gives it back, so in the steady state
//! no batch is allocated. Used for the insights thread and the Kafka processing stage.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// A channel of batches of type `B`, `depth` of them queued before the sender waits.
pub fn channel<B: Default>(depth: usize) -> (BatchSender<B>, BatchReceiver<B>) {
    let (full, incoming) = sync_channel(depth);
    // Room for every batch in flight, so giving one back never waits.
    let (give_back, spares) = sync_channel(depth + 2);
    (
        BatchSender { full, spares },
        BatchReceiver {
            incoming,
            give_back,
        },
    )
}

/// The filling side.
#[derive(Debug)]
pub struct BatchSender<B> {
    full: SyncSender<B>,
    spares: Receiver<B>,
}

impl<B: Default> BatchSender<B> {
    /// Sends what `batch` holds, leaving an empty batch (a returned one if any) in its place;
    /// waits while the receiver is `depth` batches behind. Returns false, with the batch lost,
    /// when the receiving side is gone.
    pub fn send(&self, batch: &mut B) -> bool {
        let spare = self.spares.try_recv().unwrap_or_default();
        self.full.send(std::mem::replace(batch, spare)).is_ok()
    }
}

/// The working side.
#[derive(Debug)]
pub struct BatchReceiver<B> {
    incoming: Receiver<B>,
    give_back: SyncSender<B>,
}

impl<B> BatchReceiver<B> {
    /// The next batch, or `None` once the sender is gone and every batch was taken.
    pub fn recv(&self) -> Option<B> {
        self.incoming.recv().ok()
    }

    /// The next batch, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<B, RecvTimeoutError> {
        self.incoming.recv_timeout(timeout)
    }

    /// Returns a batch, emptied by the caller, for the sender to reuse.
    pub fn give_back(&self, batch: B) {
        // Fails only when the sender is gone or kept spares of its own; the batch is dropped.
        let _ = self.give_back.try_send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_arrive_in_order_and_come_back_for_reuse() {
        let (sender, receiver) = channel::<Vec<u32>>(2);
        let mut batch = Vec::with_capacity(64);
        batch.extend([1, 2]);
        assert!(sender.send(&mut batch));
        assert!(batch.is_empty());
        batch.push(3);
        assert!(sender.send(&mut batch));

        let mut first = receiver.recv().expect("first batch");
        assert_eq!(first, [1, 2]);
        first.clear();
        receiver.give_back(first);
        assert_eq!(receiver.recv().expect("second batch"), [3]);

        batch.push(4);
        assert!(sender.send(&mut batch));
        assert!(batch.capacity() >= 64, "the returned batch is reused");
        drop(sender);
        assert_eq!(receiver.recv().expect("third batch"), [4]);
        assert_eq!(receiver.recv(), None);
    }

    #[test]
    fn sending_fails_once_the_receiver_is_gone() {
        let (sender, receiver) = channel::<Vec<u32>>(1);
        drop(receiver);
        assert!(!sender.send(&mut vec![1]));
    }
}

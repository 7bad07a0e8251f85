//! One expiry task for everything that waits: held messages and resume reservations.
//!
//! As mini-redis purges keys: the deadlines sit in a `BTreeSet` ordered by time, one task sleeps
//! until the first of them and is woken by a `Notify` when an earlier one arrives, instead of a
//! task (and a timer) per held message.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use tokio::{sync::Notify, time::Instant};

/// Keys due at given instants.
#[derive(Debug)]
pub struct Deadlines<K> {
    /// `(when, tie-breaker, key)`: the tie-breaker keeps equal keys due at once apart.
    due: Mutex<BTreeSet<(Instant, u64, K)>>,
    seq: AtomicU64,
    /// Woken when a deadline earlier than every other one is added.
    earlier: Notify,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            due: Mutex::new(BTreeSet::new()),
            seq: AtomicU64::new(0),
            earlier: Notify::new(),
        }
    }
}

impl<K: Ord + Clone> Deadlines<K> {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<(Instant, u64, K)>> {
        self.due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `key` due at `at`.
    pub fn add(&self, at: Instant, key: K) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut due = self.lock();
            let first = due.first().is_none_or(|(next, _, _)| at < *next);
            due.insert((at, seq, key));
            first
        };
        if first {
            // `notify_one` keeps a permit if the task is not waiting yet: no wake-up is lost.
            self.earlier.notify_one();
        }
    }

    /// Whether no key waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Waits until at least one key is due and takes every key due by then, earliest first.
    /// Cancel-safe: a key is only taken when it is returned.
    pub async fn next_due(&self) -> Vec<K> {
        loop {
            let next = {
                let mut due = self.lock();
                let now = Instant::now();
                let mut ready = Vec::new();
                while let Some(first) = due.first() {
                    if first.0 > now {
                        break;
                    }
                    if let Some((_, _, key)) = due.pop_first() {
                        ready.push(key);
                    }
                }
                if !ready.is_empty() {
                    return ready;
                }
                due.first().map(|(at, _, _)| *at)
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.earlier.notified() => {}
                    }
                }
                None => self.earlier.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keys_come_due_in_order_and_an_earlier_one_wakes_the_task() {
        let deadlines = std::sync::Arc::new(Deadlines::default());
        let start = Instant::now();
        deadlines.add(start + Duration::from_secs(10), "late");
        let waiter = tokio::spawn({
            let deadlines = deadlines.clone();
            async move {
                let first = deadlines.next_due().await;
                (first, Instant::now())
            }
        });
        tokio::task::yield_now().await;
        deadlines.add(start + Duration::from_secs(1), "early");
        let (first, at) = waiter.await.expect("runs");
        assert_eq!(first, vec!["early"]);
        assert_eq!(at, start + Duration::from_secs(1));
        assert_eq!(deadlines.next_due().await, vec!["late"]);
        assert!(deadlines.is_empty());
    }
}

//! One reconcile per Rollout at a time across the controller's two lanes.
//!
//! kube-runtime's Controller never runs two reconciles of the same object at once, but the
//! Rollout controller has two Controllers over the same objects — the main lane and the urgent
//! lane for aborts (see `super::run`) — and they know nothing of each other. Both reconciles
//! would be safe (status writes carry a resourceVersion precondition, weight patches are
//! guarded), yet one would fail with a conflict and record a spurious error. A per-key async
//! lock makes the second wait for the first and then find nothing left to do.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Per-key async locks; an entry lives only while someone holds or awaits it.
#[derive(Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    /// Runs `f` while holding the lock of `key`.
    pub async fn run<F: Future>(&self, key: &str, f: F) -> F::Output {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let out = {
            let _held = lock.lock().await;
            f.await
        };
        drop(lock);
        // Clones are only made under the map's lock, so a count of 1 (the map's own) means
        // nobody holds or awaits this key any more.
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(key);
        }
        out
    }

    /// Keys with a holder or a waiter.
    pub fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_same_key_runs_one_at_a_time_other_keys_in_parallel() {
        let locks = Arc::new(KeyLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let mut tasks = vec![];
        for key in ["a", "a", "a", "b"] {
            let (locks, inside, most, mut gate) =
                (locks.clone(), inside.clone(), most.clone(), gate_rx.clone());
            tasks.push(tokio::spawn(async move {
                locks
                    .run(key, async {
                        if key == "a" {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                        }
                        // Hold the lock until the test opens the gate.
                        let _ = gate.wait_for(|open| *open).await;
                        if key == "a" {
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                    .await
            }));
        }
        // Both keys are held or awaited before the gate opens.
        while locks.len() < 2 {
            tokio::task::yield_now().await;
        }
        gate_tx.send_replace(true);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two reconciles of 'a' overlapped"
        );
        assert!(locks.is_empty(), "entries are dropped when unused");
    }
}

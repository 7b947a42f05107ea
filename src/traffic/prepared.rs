//! Abort writes prepared ahead of time.
//!
//! An abort must take the canary's traffic away as fast as the API server allows. Setting a
//! weight normally costs a read and a guarded write; but whenever a router has just set a
//! non-zero weight it holds the object as the API server returned it, and can compute then the
//! guarded patch that would take the canary back to 0 from there. The abort sends that patch
//! straight away: one request. The patch `test`s everything it relies on — the route's name,
//! which destination sits at which index, the canary weight it expects to find — so if the
//! object changed since, the API server refuses it whole and the router falls back to reading
//! the object first. A stale entry therefore costs one refused request, never a wrong write.
//!
//! Entries exist only for routing objects whose canary weight Aviary last set above 0, so the
//! store holds at most one entry per routing object of each rollout in progress.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::RouteTarget;

/// A guarded patch that sets the canary weight of one routing object to 0.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedAbort {
    /// The canary weight the patch expects to find (and `test`s).
    pub from: i32,
    pub patch: json_patch::Patch,
}

/// Prepared abort patches, keyed by rollout and routing object. Shared by both reconcile lanes;
/// the per-rollout lock keeps them from using one rollout's entries at once.
#[derive(Debug, Default)]
pub struct PreparedAborts {
    entries: Mutex<HashMap<String, PreparedAbort>>,
}

/// Separates the rollout from the object in a key: neither a namespace nor a name contains it.
const SEPARATOR: char = '\u{1f}';

impl PreparedAborts {
    /// The key of `object` (e.g. "VirtualService app/web") routed for `target`'s rollout.
    pub fn key(target: &RouteTarget, object: &str) -> String {
        format!("{}/{}{SEPARATOR}{object}", target.namespace, target.rollout)
    }

    /// Removes and returns the entry: a prepared patch is used at most once.
    pub fn take(&self, key: &str) -> Option<PreparedAbort> {
        self.entries.lock().ok()?.remove(key)
    }

    pub fn put(&self, key: String, prepared: PreparedAbort) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(key, prepared);
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(key);
        }
    }

    /// Drops the entries of rollouts not in `live` ("namespace/name"): deleted ones.
    pub fn retain_rollouts(&self, live: &HashSet<String>) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|k, _| {
                k.split_once(SEPARATOR)
                    .is_some_and(|(rollout, _)| live.contains(rollout))
            });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ns: &str, rollout: &str) -> RouteTarget {
        RouteTarget {
            namespace: ns.into(),
            rollout: rollout.into(),
            ..Default::default()
        }
    }

    fn entry(from: i32) -> PreparedAbort {
        PreparedAbort {
            from,
            patch: json_patch::Patch(vec![]),
        }
    }

    #[test]
    fn an_entry_is_taken_once_and_deleted_rollouts_are_forgotten() {
        let store = PreparedAborts::default();
        let web = PreparedAborts::key(&target("app", "web"), "VirtualService app/web");
        let api = PreparedAborts::key(&target("app", "api"), "VirtualService app/api");
        store.put(web.clone(), entry(30));
        store.put(api.clone(), entry(10));
        assert_eq!(store.take(&web), Some(entry(30)));
        assert_eq!(store.take(&web), None, "used at most once");

        store.put(web.clone(), entry(50));
        let live = HashSet::from(["app/web".to_string()]);
        store.retain_rollouts(&live);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.take(&api),
            None,
            "the deleted rollout's entry is gone"
        );
        store.remove(&web);
        assert!(store.is_empty());
    }
}

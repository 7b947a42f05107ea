//! Whether a reconcile may plan from the watched Rollout or must read it from the API server.
//!
//! The watch can lag the controller's own writes. A plan made from a cache that still shows the
//! step before our last status write would replay that step's actions (set a weight back, scale
//! a ReplicaSet again) until the conflict on its own status write stopped it. Every reconcile
//! used to GET the Rollout for that reason: half the controller's reads in an update wave, of
//! the object the API server finds most expensive to serve (docs/benchmarks.md).
//!
//! Now each rollout remembers the newest resourceVersion this process knows of — the one our
//! status write returned, or the one a fresh read found — until the watch delivers exactly that
//! version. While the cache shows another, the reconcile reads fresh. Equality is all that is
//! compared: resourceVersions are opaque, and a cache that moved past our write shows another
//! version too, which costs one read and then agrees with the cache.
//!
//! Writes by others (a user's abort or promote) are not known here; planning from a cache that
//! does not show them yet is planning a moment earlier, as a fresh read just before their write
//! would have been. Our status write carries the resourceVersion it was planned from, so it
//! fails on their write, and their watch event brings the next reconcile.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;

use crate::api::Rollout;

/// Why a reconcile reads the Rollout from the API server instead of planning from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshRead {
    /// Our own last write (or a fresh read) is newer than what the cache shows.
    CacheBehind,
    /// The route-cleanup finalizer is not on the cached object: adding it is a write guarded by
    /// the object it is added to, so that must be current.
    FinalizerMissing,
    /// Deleting: the cleanup and the finalizer's removal act on the current object.
    Deleting,
}

/// Whether `cached` can be planned from; `cache_behind` from [`NewestVersions::cache_behind`].
pub fn fresh_read_needed(
    cached: &Rollout,
    cache_behind: bool,
    needs_finalizer: bool,
) -> Option<FreshRead> {
    if cached.metadata.deletion_timestamp.is_some() {
        return Some(FreshRead::Deleting);
    }
    if needs_finalizer
        && !cached
            .finalizers()
            .iter()
            .any(|f| f == crate::api::wire::ROUTE_CLEANUP_FINALIZER)
    {
        return Some(FreshRead::FinalizerMissing);
    }
    cache_behind.then_some(FreshRead::CacheBehind)
}

/// The newest resourceVersion known per object (a Rollout, or a routing object:
/// [`super::routing_cache`]), while the cache does not show it yet.
#[derive(Debug, Default)]
pub struct NewestVersions {
    /// `None`: a write of ours whose result we did not see, which no cached version matches.
    newest: Mutex<HashMap<String, Option<String>>>,
}

impl NewestVersions {
    /// Whether the cache, at `cached_rv`, does not show the newest version known for `key`;
    /// once it does, that version is forgotten.
    pub fn cache_behind(&self, key: &str, cached_rv: Option<&str>) -> bool {
        let Ok(mut newest) = self.newest.lock() else {
            return true;
        };
        match newest.get(key) {
            None => false,
            Some(known) if known.is_some() && known.as_deref() == cached_rv => {
                newest.remove(key);
                false
            }
            Some(_) => true,
        }
    }

    /// A write of ours returned `rv`, or a fresh read found it.
    pub fn saw(&self, key: &str, rv: Option<String>) {
        if let Ok(mut newest) = self.newest.lock() {
            newest.insert(key.to_string(), rv);
        }
    }

    /// A fresh read found `fresh_rv` while the cache showed `cached_rv`: when they agree the
    /// cache is current, else the cache must catch up to the fresh read.
    pub fn read_fresh(&self, key: &str, cached_rv: Option<&str>, fresh_rv: Option<String>) {
        if fresh_rv.is_some() && fresh_rv.as_deref() == cached_rv {
            if let Ok(mut newest) = self.newest.lock() {
                newest.remove(key);
            }
        } else {
            self.saw(key, fresh_rv);
        }
    }

    /// A write of ours may or may not have landed (it failed, or its answer was lost): read
    /// fresh until a read and the cache agree.
    pub fn distrust(&self, key: &str) {
        self.saw(key, None);
    }

    /// Forgets objects no longer in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        if let Ok(mut newest) = self.newest.lock() {
            newest.retain(|k, _| live.contains(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(rv: &str, finalizer: bool, deleting: bool) -> Rollout {
        let mut meta = json!({"name": "web", "namespace": "shop", "resourceVersion": rv});
        if finalizer {
            meta["finalizers"] = json!([crate::api::wire::ROUTE_CLEANUP_FINALIZER]);
        }
        if deleting {
            meta["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        }
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}}
            }
        }))
        .expect("rollout")
    }

    fn decide(reads: &NewestVersions, cached: &Rollout) -> Option<FreshRead> {
        let behind = reads.cache_behind("shop/web", cached.resource_version().as_deref());
        fresh_read_needed(cached, behind, false)
    }

    #[test]
    fn the_cache_is_planned_from_once_it_shows_our_last_write() {
        let reads = NewestVersions::default();
        // Nothing written yet: the cache is as good as a read.
        assert_eq!(decide(&reads, &rollout("10", false, false)), None);
        // Our status write returned 12; the cache still shows 10, then 11 (someone else's).
        reads.saw("shop/web", Some("12".into()));
        for behind in ["10", "11"] {
            assert_eq!(
                decide(&reads, &rollout(behind, false, false)),
                Some(FreshRead::CacheBehind),
                "cache at {behind}"
            );
        }
        // The watch delivers 12: planned from the cache, and the mark is gone.
        assert_eq!(decide(&reads, &rollout("12", false, false)), None);
        assert!(!reads.cache_behind("shop/web", Some("13")));
    }

    #[test]
    fn a_cache_past_our_write_costs_one_read_then_agrees() {
        let reads = NewestVersions::default();
        let key = "shop/web";
        reads.saw(key, Some("12".into()));
        // A relist jumped from 11 to 14 without ever showing 12.
        assert!(reads.cache_behind(key, Some("14")));
        reads.read_fresh(key, Some("14"), Some("14".into()));
        assert!(!reads.cache_behind(key, Some("14")));
        // A fresh read newer than the cache: the cache must catch up to it.
        reads.read_fresh(key, Some("14"), Some("15".into()));
        assert!(reads.cache_behind(key, Some("14")));
        assert!(!reads.cache_behind(key, Some("15")));
    }

    #[test]
    fn a_write_with_no_answer_is_read_fresh_until_a_read_agrees() {
        let reads = NewestVersions::default();
        let key = "shop/web";
        reads.distrust(key);
        for rv in [Some("10"), Some("11"), Some(""), None] {
            assert!(reads.cache_behind(key, rv), "cache at {rv:?}");
        }
        reads.read_fresh(key, Some("11"), Some("11".into()));
        assert!(!reads.cache_behind(key, Some("11")));
    }

    #[test]
    fn deletion_and_a_missing_finalizer_are_read_fresh() {
        assert_eq!(
            fresh_read_needed(&rollout("1", false, false), false, true),
            Some(FreshRead::FinalizerMissing)
        );
        assert_eq!(
            fresh_read_needed(&rollout("1", true, false), false, true),
            None
        );
        assert_eq!(
            fresh_read_needed(&rollout("1", true, true), false, true),
            Some(FreshRead::Deleting)
        );
    }

    #[test]
    fn forgotten_rollouts_leave_nothing_behind() {
        let reads = NewestVersions::default();
        reads.saw("shop/web", Some("3".into()));
        reads.saw("shop/gone", Some("4".into()));
        reads.retain(&HashSet::from(["shop/web".to_string()]));
        assert!(!reads.cache_behind("shop/gone", Some("1")));
        assert!(reads.cache_behind("shop/web", Some("1")));
    }
}

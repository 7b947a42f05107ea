//! Read-your-writes: the view's one rule for reading a cached object that our own writes (or a
//! fresh read) may be ahead of ([`ReadYourWrites`]), used for Rollouts, VirtualServices and
//! Services; and whether a reconcile may plan from the watched Rollout ([`fresh_read_needed`]).
//!
//! The watch can lag the controller's own writes. A plan made from a cache that still shows the
//! step before our last status write would replay that step's actions (set a weight back, scale
//! a ReplicaSet again) until the conflict on its own status write stopped it. Every reconcile
//! used to GET the Rollout for that reason: half the controller's reads in an update wave, of
//! the object the API server finds most expensive to serve (docs/benchmarks.md).
//!
//! Now each object remembers the newest resourceVersion this process knows of — the one our
//! write returned, or the one a fresh read found — until the watch delivers exactly that
//! version. While the cache shows another, the reader reads fresh, or, for a reader that keeps
//! what it wrote (Services), takes that instead as long as the cache has not moved. Equality is
//! all that is compared: resourceVersions are opaque, and a cache that moved past our write
//! shows another version too, which costs one read and then agrees with the cache.
//!
//! Writes by others (a user's abort or promote) are not known here; planning from a cache that
//! does not show them yet is planning a moment earlier, as a fresh read just before their write
//! would have been. Our status write carries the resourceVersion it was planned from, so it
//! fails on their write, and their watch event brings the next reconcile. ReplicaSets keep a
//! rule of their own ([`super::replica_set_cache`]): their scale writes stand in field by field
//! over the cached object, which a later write of someone else's may not touch.

use std::collections::HashMap;
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

/// How a reader takes a cached object, by the view's one read-your-writes rule
/// ([`ReadYourWrites::take`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Take<T> {
    /// The cache shows everything we know of: read it.
    Cache,
    /// The cache still shows the version it showed when we learnt of a newer one, and we hold
    /// that newer object (our write's answer, or a fresh read): it stands in.
    StandIn(T),
    /// The cache is behind what we know, with nothing to stand in: read from the API server.
    Fresh,
}

/// What we know of one object that its cache may not show yet.
#[derive(Debug)]
struct Pending<T> {
    /// The version the cache showed when we learnt of `newest`.
    over: Option<String>,
    /// The newest version known: our write's answer or a fresh read. `None`: a write of ours
    /// whose outcome we did not see, which no cached version matches.
    newest: Option<String>,
    /// That version of the object, when the reader keeps it to stand in.
    object: Option<T>,
}

/// The view's one read-your-writes rule, for Rollouts, routing objects and Services (each
/// with its own instance, keyed `ns/name`). Per object it remembers the newest version this
/// process knows of — the one our write returned, or one a fresh read found — and the version
/// the cache showed then, until the cache shows the newest:
/// - the cache shows the newest: it is read, and the record goes;
/// - it still shows the version it showed then: the newest object stands in when the reader
///   keeps it (Services), else the reader reads fresh (Rollouts, VirtualServices);
/// - it shows any other version: the reader reads fresh. Versions are opaque, so a cache that
///   moved is not assumed to include our write; the read settles it (equal to the cache: the
///   record goes; newer: it becomes the newest).
///
/// Separately it keeps the version our own last write of each object returned, so that the
/// watch event of that version is known as our own change, which wakes nobody
/// ([`ReadYourWrites::is_own`]).
#[derive(Debug)]
pub struct ReadYourWrites<T> {
    pending: Mutex<HashMap<String, Pending<T>>>,
    own: Mutex<HashMap<String, String>>,
}

impl<T> Default for ReadYourWrites<T> {
    fn default() -> Self {
        ReadYourWrites {
            pending: Mutex::default(),
            own: Mutex::default(),
        }
    }
}

impl<T: Clone> ReadYourWrites<T> {
    /// How to read `key` while its cache shows `cached_rv`; once the cache shows the newest
    /// version known, that record is forgotten.
    pub fn take(&self, key: &str, cached_rv: Option<&str>) -> Take<T> {
        let Ok(mut pending) = self.pending.lock() else {
            return Take::Fresh;
        };
        let Some(known) = pending.get(key) else {
            return Take::Cache;
        };
        if known.newest.is_some() && known.newest.as_deref() == cached_rv {
            pending.remove(key);
            return Take::Cache;
        }
        match &known.object {
            Some(object) if known.over.as_deref() == cached_rv => Take::StandIn(object.clone()),
            _ => Take::Fresh,
        }
    }

    /// Whether the cache, at `cached_rv`, does not show the newest version known for `key`.
    pub fn cache_behind(&self, key: &str, cached_rv: Option<&str>) -> bool {
        !matches!(self.take(key, cached_rv), Take::Cache)
    }

    /// A write of ours, or a fresh read, found `key` at `rv` (`object`: that version, for a
    /// reader whose objects stand in) while the cache showed `cached_rv`. A read that agrees
    /// with the cache shows it current.
    pub fn learnt(
        &self,
        key: &str,
        cached_rv: Option<&str>,
        rv: Option<String>,
        object: Option<T>,
    ) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if rv.is_some() && rv.as_deref() == cached_rv {
            pending.remove(key);
        } else {
            pending.insert(
                key.to_string(),
                Pending {
                    over: cached_rv.map(str::to_string),
                    newest: rv,
                    object,
                },
            );
        }
    }

    /// A write of ours may or may not have landed (it failed, or its answer was lost): read
    /// fresh until a read and the cache agree.
    pub fn distrust(&self, key: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(
                key.to_string(),
                Pending {
                    over: None,
                    newest: None,
                    object: None,
                },
            );
        }
    }

    /// Our write of `key` returned `rv`: its watch event is our own change.
    pub fn own_write(&self, key: &str, rv: &str) {
        if let Ok(mut own) = self.own.lock() {
            own.insert(key.to_string(), rv.to_string());
        }
    }

    /// Whether `rv`, a version of `key` a watch event brings, is the one our own last write
    /// returned.
    pub fn is_own(&self, key: &str, rv: Option<&str>) -> bool {
        rv.is_some()
            && self
                .own
                .lock()
                .is_ok_and(|own| own.get(key).map(String::as_str) == rv)
    }

    /// Forgets what the cache no longer needs standing in for: records of objects it no longer
    /// holds (`cached(key)` is None: deleted, or a deleted Rollout's), and those it has caught
    /// up with (it shows the newest version, or our own last write).
    pub fn retain(&self, cached: impl Fn(&str) -> Option<Option<String>>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|key, known| match cached(key) {
                None => false,
                Some(rv) => known.newest.is_none() || known.newest != rv,
            });
        }
        if let Ok(mut own) = self.own.lock() {
            own.retain(|key, rv| cached(key).is_some_and(|cached| cached.as_ref() != Some(rv)));
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

    fn decide(reads: &ReadYourWrites<()>, cached: &Rollout) -> Option<FreshRead> {
        let behind = reads.cache_behind("shop/web", cached.resource_version().as_deref());
        fresh_read_needed(cached, behind, false)
    }

    #[test]
    fn the_cache_is_planned_from_once_it_shows_our_last_write() {
        let reads = ReadYourWrites::<()>::default();
        // Nothing written yet: the cache is as good as a read.
        assert_eq!(decide(&reads, &rollout("10", false, false)), None);
        // Our status write returned 12 while the cache showed 10; it still shows 10, then 11
        // (someone else's).
        reads.learnt("shop/web", Some("10"), Some("12".into()), None);
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
        let reads = ReadYourWrites::<()>::default();
        let key = "shop/web";
        reads.learnt(key, Some("11"), Some("12".into()), None);
        // A relist jumped from 11 to 14 without ever showing 12.
        assert!(reads.cache_behind(key, Some("14")));
        reads.learnt(key, Some("14"), Some("14".into()), None);
        assert!(!reads.cache_behind(key, Some("14")));
        // A fresh read newer than the cache: the cache must catch up to it.
        reads.learnt(key, Some("14"), Some("15".into()), None);
        assert!(reads.cache_behind(key, Some("14")));
        assert!(!reads.cache_behind(key, Some("15")));
    }

    #[test]
    fn a_write_with_no_answer_is_read_fresh_until_a_read_agrees() {
        let reads = ReadYourWrites::<()>::default();
        let key = "shop/web";
        reads.distrust(key);
        for rv in [Some("10"), Some("11"), Some(""), None] {
            assert!(reads.cache_behind(key, rv), "cache at {rv:?}");
        }
        reads.learnt(key, Some("11"), Some("11".into()), None);
        assert!(!reads.cache_behind(key, Some("11")));
    }

    /// The same rule with stand-ins (Services): our write's answer stands in while the cache
    /// shows the version it showed at the write; a cache anywhere else is read fresh, never
    /// assumed to include our write.
    #[test]
    fn what_we_wrote_stands_in_while_the_cache_has_not_moved() {
        let writes = ReadYourWrites::<&str>::default();
        let key = "app/web-active";
        assert_eq!(writes.take(key, Some("1")), Take::Cache);
        writes.learnt(key, Some("1"), Some("2".into()), Some("new"));
        writes.own_write(key, "2");
        assert_eq!(writes.take(key, Some("1")), Take::StandIn("new"));
        assert_eq!(writes.take("other/web-active", Some("1")), Take::Cache);
        // The watch event of our write is ours; another version is news.
        assert!(writes.is_own(key, Some("2")));
        assert!(!writes.is_own(key, Some("3")));
        assert!(!writes.is_own(key, None));
        // A version that is neither: read fresh; the read settles it.
        assert_eq!(writes.take(key, Some("3")), Take::Fresh);
        writes.learnt(key, Some("3"), Some("3".into()), Some("theirs"));
        assert_eq!(writes.take(key, Some("3")), Take::Cache);
        // Caught up with our write: the cache is read, and the record goes.
        writes.learnt(key, Some("3"), Some("4".into()), Some("ours"));
        assert_eq!(writes.take(key, Some("4")), Take::Cache);
        assert_eq!(writes.take(key, Some("3")), Take::Cache);
        // A write whose outcome we did not see: read fresh, whatever the cache shows.
        writes.distrust(key);
        assert_eq!(writes.take(key, Some("4")), Take::Fresh);
        assert_eq!(writes.take(key, None), Take::Fresh);
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

    /// Records of objects the cache no longer holds, or has caught up with, are forgotten: a
    /// deleted Rollout's, or a Service never read again, do not stay for ever.
    #[test]
    fn forgotten_and_caught_up_records_leave_nothing_behind() {
        let reads = ReadYourWrites::<()>::default();
        for (key, rv) in [("shop/web", "3"), ("shop/gone", "4"), ("shop/seen", "5")] {
            reads.learnt(key, Some("1"), Some(rv.into()), None);
            reads.own_write(key, rv);
        }
        reads.retain(|key| match key {
            "shop/web" => Some(Some("1".into())),
            "shop/seen" => Some(Some("5".into())),
            _ => None,
        });
        assert!(
            reads.cache_behind("shop/web", Some("1")),
            "still ahead of the cache"
        );
        assert!(reads.is_own("shop/web", Some("3")));
        assert!(
            !reads.cache_behind("shop/gone", Some("1")),
            "no such object any more"
        );
        assert!(!reads.is_own("shop/gone", Some("4")));
        assert!(!reads.is_own("shop/seen", Some("5")), "the cache shows it");
    }
}

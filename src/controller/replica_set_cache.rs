//! The ReplicaSet cache: for each Rollout, its ReplicaSets as the planner sees them.
//!
//! A rollout keeps up to `revisionHistoryLimit` + 1 ReplicaSets (11 by default), so once
//! revision histories fill, cached ReplicaSets outnumber rollouts ten to one and were most of
//! the controller's memory (docs/benchmarks.md, items 17 and 18). A kube-runtime `Store` holds
//! whole objects — `ObjectMeta` with two label and annotation maps (a B-tree node of ~540 bytes
//! each, however few entries), owner references, status — plus an `ObjectRef` key, ~3.5 KiB per
//! ReplicaSet. The planner reads eight numbers and two strings of it. So the watch decodes each
//! event into [`WatchedReplicaSet`] (no pod template: never decoded), turns it at once into an
//! [`ObservedReplicaSet`], and this cache keeps only that, grouped by the controlling owner's
//! UID — the owner index is the cache itself, so no second map of keys is needed either.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use serde::{Deserialize, Serialize};

use super::index::controller_uid;
use super::relisting::{Relisting, WatchedMap};
use crate::api::wire::{
    ARGO_REVISION_ANNOTATION, REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION,
    SCALED_AT_ANNOTATION,
};
use crate::plan::{ObservedReplicaSet, POD_TEMPLATE_HASH_LABEL};

/// A ReplicaSet as the watch decodes it: without its pod template and selector. It lives only
/// until the event has updated the cache and triggered the owner's reconcile.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, kube::Resource)]
#[resource(inherit = ReplicaSet)]
pub struct WatchedReplicaSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WatchedReplicaSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

/// Of a ReplicaSet's spec, the replica count.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct WatchedReplicaSetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// A ReplicaSet as the planner sees it; `None` without a `rollouts-pod-template-hash` label
/// (not one of ours to plan with).
pub fn observe_replica_set(rs: &WatchedReplicaSet) -> Option<ObservedReplicaSet> {
    let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = rs.status.as_ref();
    let annotations = rs.annotations();
    Some(ObservedReplicaSet {
        name: rs.name_any(),
        hash,
        replicas,
        available: status
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            .min(replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        current: status.map(|s| s.replicas).unwrap_or(0),
        revision: annotations
            .get(REVISION_ANNOTATION)
            .or_else(|| annotations.get(ARGO_REVISION_ANNOTATION))
            .and_then(|r| r.parse().ok()),
        scale_down_at: annotations
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
        scaled_at: annotations
            .get(SCALED_AT_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
        pod_metadata: crate::plan::pod_metadata::read(crate::plan::pod_metadata::Annotations::of(
            annotations,
        ))
        .recorded,
    })
}

/// One cached ReplicaSet.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedReplicaSet {
    pub observed: ObservedReplicaSet,
    /// `metadata.creationTimestamp` (the revision's age, for the rollout-duration metric).
    pub created: Option<Timestamp>,
    /// `metadata.resourceVersion`: tells whether the cache shows our own last write yet.
    pub resource_version: Option<Box<str>>,
}

/// `(namespace, name)` of a cached ReplicaSet.
type Key = (Box<str>, Box<str>);

#[derive(Default)]
struct Entries {
    /// Controller owner UID → the ReplicaSets it controls, ordered by name.
    by_owner: HashMap<Arc<str>, Vec<CachedReplicaSet>>,
    /// ReplicaSet → its controller owner UID (to move or drop it when it changes or goes).
    owner_of: HashMap<Key, Arc<str>>,
}

impl WatchedMap<WatchedReplicaSet> for Entries {
    fn upsert(&mut self, rs: &WatchedReplicaSet) {
        let key = key_of(rs);
        self.remove(&key);
        let Some(owner) = controller_uid(rs) else {
            return;
        };
        let Some(observed) = observe_replica_set(rs) else {
            return;
        };
        let entry = CachedReplicaSet {
            observed,
            created: rs.creation_timestamp().map(|t| t.0),
            resource_version: rs.resource_version().map(String::into_boxed_str),
        };
        // One allocation per owner UID, shared by the map key and every `owner_of` value.
        let uid = match self.by_owner.get_key_value(owner) {
            Some((uid, _)) => uid.clone(),
            None => Arc::from(owner),
        };
        let list = self.by_owner.entry(uid.clone()).or_default();
        let at = list.partition_point(|c| c.observed.name < entry.observed.name);
        list.insert(at, entry);
        self.owner_of.insert(key, uid);
    }

    fn forget(&mut self, rs: &WatchedReplicaSet) {
        self.remove(&key_of(rs));
    }
}

impl Entries {
    fn remove(&mut self, key: &Key) {
        let Some(uid) = self.owner_of.remove(key) else {
            return;
        };
        if let Some(list) = self.by_owner.get_mut(&uid) {
            list.retain(|c| *c.observed.name != *key.1);
            if list.is_empty() {
                self.by_owner.remove(&uid);
            }
        }
    }
}

/// A ReplicaSet as our own write left it: the resourceVersion the write produced, and the
/// ReplicaSet as the API server returned it.
type OurWrite = (u64, ObservedReplicaSet);

/// The ReplicaSet cache. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct ReplicaSetCache {
    entries: Relisting<Entries>,
    /// Our own writes the watch may not have delivered yet: ReplicaSet → (the resourceVersion
    /// written over, the ReplicaSet as our write returned it). Read-your-writes: a reconcile
    /// that follows a scale-down must not plan from the pods the ReplicaSet had before it (a
    /// Service moved onto pods that are going, a delay skipped).
    /// Keyed by the controlling owner's UID and the ReplicaSet's name.
    written: Arc<std::sync::Mutex<HashMap<Key, OurWrite>>>,
}

fn key_of(rs: &WatchedReplicaSet) -> Key {
    (
        rs.namespace().unwrap_or_default().into_boxed_str(),
        rs.name_any().into_boxed_str(),
    )
}

impl ReplicaSetCache {
    /// Applies one watch event (call it for every event, before the event triggers a reconcile).
    pub fn apply(&self, event: &Event<WatchedReplicaSet>) {
        self.entries.apply(event);
    }

    /// The ReplicaSets controlled by the owner with this UID, ordered by name; each as our own
    /// last write left it while the cache still shows the version that write replaced.
    pub fn owned(&self, owner_uid: &str) -> Vec<CachedReplicaSet> {
        let mut owned = self
            .entries
            .read(|e| e.by_owner.get(owner_uid).cloned())
            .flatten()
            .unwrap_or_default();
        if let Ok(mut written) = self.written.lock()
            && !written.is_empty()
        {
            for cached in &mut owned {
                let key: Key = (owner_uid.into(), cached.observed.name.as_str().into());
                let Some((ours, after)) = written.get(&key) else {
                    continue;
                };
                // resourceVersions are etcd revisions: an older one than our write's is a cache
                // that has not caught up; the same or newer shows our write or what followed.
                let behind = cached
                    .resource_version
                    .as_deref()
                    .and_then(|rv| rv.parse::<u64>().ok())
                    .is_some_and(|rv| rv < *ours);
                if behind {
                    cached.observed = after.clone();
                } else {
                    written.remove(&key);
                }
            }
        }
        owned
    }

    /// Records what our write to the ReplicaSet `name` controlled by `owner_uid` returned, so
    /// that the cache shows it until its watch delivers that version (or a newer one).
    pub fn record_write(&self, owner_uid: &str, name: &str, after: &WatchedReplicaSet) {
        let Some(observed) = observe_replica_set(after) else {
            return;
        };
        let Some(rv) = after
            .resource_version()
            .and_then(|rv| rv.parse::<u64>().ok())
        else {
            return;
        };
        if let Ok(mut written) = self.written.lock() {
            written.insert((owner_uid.into(), name.into()), (rv, observed));
        }
    }

    /// Puts a ReplicaSet we just created into the cache, as the API server returned it: the
    /// next reconcile must not plan as if it did not exist (the watch may deliver it later).
    pub fn record_create(&self, created: &WatchedReplicaSet) {
        self.entries.apply(&Event::Apply(created.clone()));
    }

    /// Forgets the ReplicaSets of `namespace` not among `listed` (names): the end of that
    /// namespace's relist, when several are watched and merged (`scope::RelistHook`). What a
    /// single watch's relist does by replacing the whole map: a ReplicaSet we created and
    /// recorded, then deleted while the watch was down, is gone.
    pub fn forget_unlisted(&self, namespace: &str, listed: &std::collections::HashSet<String>) {
        self.entries.modify(|e| {
            let unlisted: Vec<Key> = e
                .owner_of
                .keys()
                .filter(|(ns, name)| &**ns == namespace && !listed.contains(&**name))
                .cloned()
                .collect();
            for key in unlisted {
                e.remove(&key);
            }
        });
    }

    /// Keeps what is recorded of our writes only for the owners with these UIDs (the Rollouts
    /// that still exist).
    pub fn retain_writes(&self, live_owners: &std::collections::HashSet<String>) {
        if let Ok(mut written) = self.written.lock() {
            written.retain(|(uid, _), _| live_owners.contains(&**uid));
        }
    }

    /// Whether the cache holds a first full list: until then "no ReplicaSet" means "not listed
    /// yet", not "none exists".
    pub fn is_ready(&self) -> bool {
        self.entries.is_ready()
    }

    /// How many ReplicaSets and owners the cache holds (for tests).
    pub fn counts(&self) -> (usize, usize) {
        self.entries
            .read(|e| (e.owner_of.len(), e.by_owner.len()))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
#[path = "replica_set_cache_tests.rs"]
mod tests;

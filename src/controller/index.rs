//! An owner index beside a reflector's store: which cached objects each Rollout controls.
//!
//! kube-runtime's `Store` has no secondary index, and finding a Rollout's AnalysisRuns by scanning
//! the whole cache costs O(objects) per reconcile — O(N²) per update wave, most of the
//! controller's CPU at 10,000 rollouts. (ReplicaSets, ten times as many once histories fill, are
//! cached grouped by owner in the first place: [`super::replica_set_cache`].) The index maps a
//! controller owner's UID to the names of the objects it controls, and is kept up to date from
//! the same watch events the store sees; lookups then fetch the objects from the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::Resource;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use super::relisting::{Relisting, WatchedMap};

/// `(namespace, name)` of an indexed object.
type Key = (String, String);

#[derive(Default)]
struct Maps {
    /// Controller owner UID → the objects it controls.
    by_owner: HashMap<String, BTreeSet<Key>>,
    /// Object → its controller owner UID (to move or drop it when it changes or goes).
    owner_of: HashMap<Key, String>,
}

impl<K: Resource> WatchedMap<K> for Maps {
    fn upsert(&mut self, obj: &K) {
        let key = key_of(obj);
        self.remove_key(&key);
        if let Some(uid) = controller_uid(obj).map(str::to_string) {
            self.by_owner
                .entry(uid.clone())
                .or_default()
                .insert(key.clone());
            self.owner_of.insert(key, uid);
        }
    }

    fn forget(&mut self, obj: &K) {
        self.remove_key(&key_of(obj));
    }
}

impl Maps {
    fn remove_key(&mut self, key: &Key) {
        if let Some(uid) = self.owner_of.remove(key)
            && let Some(set) = self.by_owner.get_mut(&uid)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(&uid);
            }
        }
    }
}

/// The owner index of one kind of object. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct OwnerIndex {
    maps: Relisting<Maps>,
}

fn key_of<K: Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The UID of the object's controlling owner, if it has one.
pub(super) fn controller_uid<K: Resource>(obj: &K) -> Option<&str> {
    obj.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

impl OwnerIndex {
    /// Applies one watch event (call it for every event the store's writer gets).
    pub fn apply<K: Resource>(&self, event: &Event<K>) {
        self.maps.apply(event);
    }

    /// The objects controlled by the owner with this UID, from `store`, ordered by name.
    pub fn owned<K>(&self, store: &Store<K>, owner_uid: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let keys: Vec<Key> = self
            .maps
            .read(|m| {
                m.by_owner
                    .get(owner_uid)
                    .map(|set| set.iter().cloned().collect())
            })
            .flatten()
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|(ns, name)| store.get(&ObjectRef::new(&name).within(&ns)))
            // The store and the index are updated one after the other: an object the index
            // still names may have just been replaced by one another owner controls.
            .filter(|obj| controller_uid(obj.as_ref()) == Some(owner_uid))
            .collect()
    }

    /// How many owners the index holds (for tests and metrics).
    pub fn owners(&self) -> usize {
        self.maps.read(|m| m.by_owner.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::runtime::reflector;

    fn rs(name: &str, owner: Option<&str>) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some(name.into());
        rs.metadata.namespace = Some("ns".into());
        if let Some(uid) = owner {
            rs.metadata.owner_references = Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "aviary.dev/v1alpha1".into(),
                    kind: "Rollout".into(),
                    name: "web".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                },
            ]);
        }
        rs
    }

    /// Feeds events to a store and the index, as the controller's stream does.
    fn feed(
        writer: &mut reflector::store::Writer<ReplicaSet>,
        index: &OwnerIndex,
        events: Vec<Event<ReplicaSet>>,
    ) {
        for e in events {
            writer.apply_watcher_event(&e);
            index.apply(&e);
        }
    }

    fn names(v: Vec<Arc<ReplicaSet>>) -> Vec<String> {
        v.iter().map(|r| r.name_any()).collect()
    }

    #[test]
    fn finds_only_what_each_owner_controls() {
        let (store, mut writer) = reflector::store();
        let index = OwnerIndex::default();
        feed(
            &mut writer,
            &index,
            vec![
                Event::Init,
                Event::InitApply(rs("web-b", Some("u1"))),
                Event::InitApply(rs("web-a", Some("u1"))),
                Event::InitApply(rs("api-a", Some("u2"))),
                Event::InitApply(rs("orphan", None)),
                Event::InitDone,
            ],
        );
        assert_eq!(names(index.owned(&store, "u1")), ["web-a", "web-b"]);
        assert_eq!(names(index.owned(&store, "u2")), ["api-a"]);
        assert!(index.owned(&store, "u3").is_empty());
        assert_eq!(index.owners(), 2);
    }

    #[test]
    fn follows_changes_of_owner_and_deletes() {
        let (store, mut writer) = reflector::store();
        let index = OwnerIndex::default();
        feed(
            &mut writer,
            &index,
            vec![
                Event::Init,
                Event::InitDone,
                Event::Apply(rs("web-a", Some("u1"))),
                Event::Apply(rs("web-b", Some("u1"))),
            ],
        );
        assert_eq!(names(index.owned(&store, "u1")), ["web-a", "web-b"]);
        // Orphaned (owner reference removed), then adopted by another owner.
        feed(&mut writer, &index, vec![Event::Apply(rs("web-a", None))]);
        assert_eq!(names(index.owned(&store, "u1")), ["web-b"]);
        feed(
            &mut writer,
            &index,
            vec![Event::Apply(rs("web-a", Some("u2")))],
        );
        assert_eq!(names(index.owned(&store, "u2")), ["web-a"]);
        feed(
            &mut writer,
            &index,
            vec![Event::Delete(rs("web-b", Some("u1")))],
        );
        assert!(index.owned(&store, "u1").is_empty());
        assert_eq!(index.owners(), 1);
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_done() {
        let (store, mut writer) = reflector::store();
        let index = OwnerIndex::default();
        feed(
            &mut writer,
            &index,
            vec![
                Event::Init,
                Event::InitApply(rs("web-a", Some("u1"))),
                Event::InitDone,
            ],
        );
        // A relist that no longer has web-a (deleted while the watch was down) but has web-b.
        feed(
            &mut writer,
            &index,
            vec![Event::Init, Event::InitApply(rs("web-b", Some("u1")))],
        );
        assert_eq!(
            names(index.owned(&store, "u1")),
            ["web-a"],
            "still the old view until InitDone"
        );
        feed(&mut writer, &index, vec![Event::InitDone]);
        assert_eq!(names(index.owned(&store, "u1")), ["web-b"]);
    }
}

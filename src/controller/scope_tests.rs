use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use proptest::prelude::*;

use super::*;
use crate::controller::store_ready;

/// An object of namespace `ns`, at `version` (its resourceVersion), owned by `owner-<name>`.
fn obj(ns: &str, name: &str, version: u32) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            resource_version: Some(version.to_string()),
            owner_references: Some(vec![OwnerReference {
                name: format!("owner-{name}"),
                uid: format!("owner-uid-{name}"),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn tombstone(meta: ObjectMeta) -> ConfigMap {
    ConfigMap {
        metadata: meta,
        ..Default::default()
    }
}

/// A store fed the merge of `watches` watches, event by event.
struct Fed {
    merged: Merged<ConfigMap>,
    writer: Writer<ConfigMap>,
    store: Store<ConfigMap>,
    out: Vec<Event<ConfigMap>>,
}

impl Fed {
    fn new(watches: usize) -> Self {
        let writer = Writer::default();
        let store = writer.as_reader();
        let namespaces = ["a", "b", "c"][..watches]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Fed {
            merged: Merged::new(namespaces, tombstone, None),
            writer,
            store,
            out: vec![],
        }
    }

    fn feed(&mut self, i: usize, events: Vec<Event<ConfigMap>>) {
        for event in events {
            for e in self.merged.on(i, event) {
                self.writer.apply_watcher_event(&e);
                self.out.push(e);
            }
        }
    }

    /// `namespace/name` → resourceVersion of what the store holds.
    fn held(&self) -> BTreeMap<String, String> {
        versions(&self.store)
    }
}

fn versions(store: &Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|o| {
            (
                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                o.resource_version().unwrap_or_default(),
            )
        })
        .collect()
}

fn listing(objs: Vec<ConfigMap>) -> Vec<Event<ConfigMap>> {
    let mut events = vec![Event::Init];
    events.extend(objs.into_iter().map(Event::InitApply));
    events.push(Event::InitDone);
    events
}

fn held(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn scope_parses_lists_and_refuses_bad_names() {
    assert_eq!(Scope::from_names::<&str>(&[]), Ok(Scope::Cluster));
    assert_eq!(
        Scope::from_names(&["shop,pay", "shop", " web "]),
        Ok(Scope::Namespaces(vec![
            "shop".into(),
            "pay".into(),
            "web".into()
        ]))
    );
    assert_eq!(
        Scope::from_names(&["a,,b,"]),
        Ok(Scope::Namespaces(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        Scope::from_names(&[""]),
        Ok(Scope::Cluster),
        "AVIARY_NAMESPACE="
    );
    for bad in ["Shop", "-a", "a_b", &"x".repeat(64), "a/b"] {
        let err = Scope::from_names(&[bad]).expect_err(bad);
        assert!(err.to_string().starts_with("--namespace: "), "{err}");
    }
    assert_eq!(Scope::namespace("shop").first(), Some("shop"));
    assert_eq!(Scope::Cluster.to_string(), "all namespaces");
}

#[test]
fn the_store_is_ready_only_when_every_namespace_has_listed() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "web", 1)]));
    assert!(!store_ready(&fed.store), "b has not listed");
    assert!(
        fed.out.is_empty(),
        "nothing passed on before every namespace listed"
    );
    // a changes while b lists: the change is part of the merged list.
    fed.feed(
        0,
        vec![
            Event::Apply(obj("a", "web", 2)),
            Event::Apply(obj("a", "api", 3)),
        ],
    );
    fed.feed(0, vec![Event::Delete(obj("a", "api", 4))]);
    fed.feed(1, vec![Event::Init, Event::InitApply(obj("b", "web", 5))]);
    assert!(!store_ready(&fed.store), "b's list is not done");
    fed.feed(1, vec![Event::InitDone]);
    assert!(store_ready(&fed.store));
    assert_eq!(fed.held(), held(&[("a/web", "2"), ("b/web", "5")]));
}

#[test]
fn a_relist_of_one_namespace_keeps_the_others_and_drops_what_went_while_it_was_down() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "web", 1), obj("a", "api", 2)]));
    fed.feed(1, listing(vec![obj("b", "web", 3)]));
    fed.out.clear();
    // a's watch broke; while it was down `api` went and `web` changed.
    fed.feed(0, vec![Event::Init, Event::InitApply(obj("a", "web", 7))]);
    assert_eq!(
        fed.held(),
        held(&[("a/api", "2"), ("a/web", "1"), ("b/web", "3")]),
        "during the relist the store holds the last full list, as kube's does"
    );
    fed.feed(1, vec![Event::Apply(obj("b", "web", 8))]);
    fed.feed(0, vec![Event::InitDone]);
    assert_eq!(fed.held(), held(&[("a/web", "7"), ("b/web", "8")]));
    let deleted: Vec<_> = fed
        .out
        .iter()
        .filter_map(|e| match e {
            Event::Delete(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(deleted.len(), 1, "{:?}", fed.out);
    // A deletion found by the relist names the owner, so the owner is woken.
    assert_eq!(deleted[0].name_any(), "api");
    assert_eq!(deleted[0].namespace().as_deref(), Some("a"));
    assert_eq!(
        deleted[0].owner_references()[0].uid,
        "owner-uid-api",
        "the owner a deletion wakes"
    );
    assert!(
        !fed.out
            .iter()
            .any(|e| matches!(e, Event::Init | Event::InitDone)),
        "a relist of one namespace is never a relist of the store"
    );
}

#[test]
fn a_relist_under_way_when_the_last_namespace_lists_is_finished_as_changes() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "web", 1), obj("a", "api", 2)]));
    // a's watch breaks before b has listed; its relist is half done when b finishes.
    fed.feed(0, vec![Event::Init, Event::InitApply(obj("a", "web", 4))]);
    fed.feed(1, listing(vec![obj("b", "web", 3)]));
    assert!(store_ready(&fed.store));
    assert_eq!(
        fed.held(),
        held(&[("a/api", "2"), ("a/web", "1"), ("b/web", "3")])
    );
    fed.feed(0, vec![Event::InitDone]);
    assert_eq!(fed.held(), held(&[("a/web", "4"), ("b/web", "3")]));
}

/// One namespace's watch, as kube's watcher yields it: a list, then changes and relists.
#[derive(Clone, Debug)]
enum Step {
    /// Create or change object `n`.
    Put(u8),
    /// Delete object `n` (if it exists).
    Remove(u8),
    /// The watch breaks: the changes listed happen unseen, then a relist; `cut` of its
    /// objects are listed before the other namespaces' events may interleave again.
    Break(Vec<(bool, u8)>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..4).prop_map(Step::Put),
        2 => (0u8..4).prop_map(Step::Remove),
        1 => proptest::collection::vec((any::<bool>(), 0u8..4), 0..4).prop_map(Step::Break),
    ]
}

/// The events a watch of namespace `ns` yields for `steps`; versions come from `clock`.
fn watch_events(ns: &str, steps: &[Step], clock: &mut u32) -> Vec<Event<ConfigMap>> {
    let mut truth: BTreeMap<u8, u32> = BTreeMap::new();
    let list = |truth: &BTreeMap<u8, u32>| {
        listing(
            truth
                .iter()
                .map(|(n, v)| obj(ns, &format!("o{n}"), *v))
                .collect(),
        )
    };
    let mut events = list(&truth);
    for s in steps {
        *clock += 1;
        match s {
            Step::Put(n) => {
                truth.insert(*n, *clock);
                events.push(Event::Apply(obj(ns, &format!("o{n}"), *clock)));
            }
            Step::Remove(n) => {
                if truth.remove(n).is_some() {
                    events.push(Event::Delete(obj(ns, &format!("o{n}"), *clock)));
                }
            }
            Step::Break(unseen) => {
                for (put, n) in unseen {
                    *clock += 1;
                    if *put {
                        truth.insert(*n, *clock);
                    } else {
                        truth.remove(n);
                    }
                }
                events.extend(list(&truth));
            }
        }
    }
    events
}

proptest! {
    /// Any interleaving of any namespaces' watches: the merged store is never ready before
    /// every namespace has listed; once ready it holds after every event, namespace by
    /// namespace, what a store of that namespace's own watch holds (during a relist too: the
    /// last full list).
    #[test]
    fn the_merged_store_is_the_union_of_the_namespaces_stores(
        watches in proptest::collection::vec(proptest::collection::vec(step(), 0..12), 1..4),
        schedule in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let names = ["a", "b", "c"];
        let mut clock = 0;
        let mut queues: Vec<std::collections::VecDeque<Event<ConfigMap>>> = watches
            .iter()
            .enumerate()
            .map(|(i, steps)| watch_events(names[i], steps, &mut clock).into())
            .collect();
        let n = queues.len();
        let mut fed = Fed::new(n);
        let mut own: Vec<Writer<ConfigMap>> = (0..n).map(|_| Writer::default()).collect();
        let own_stores: Vec<Store<ConfigMap>> = own.iter().map(Writer::as_reader).collect();
        let mut listed = vec![false; n];
        let mut picks = schedule.into_iter().chain(std::iter::repeat(0));
        while queues.iter().any(|q| !q.is_empty()) {
            let pick = usize::from(picks.next().unwrap_or(0));
            let Some(i) = (0..n).map(|k| (pick + k) % n).find(|i| !queues[*i].is_empty()) else {
                break;
            };
            let Some(event) = queues[i].pop_front() else { break };
            if matches!(event, Event::InitDone) {
                listed[i] = true;
            }
            own[i].apply_watcher_event(&event);
            fed.feed(i, vec![event]);

            let all_listed = listed.iter().all(|l| *l);
            prop_assert_eq!(store_ready(&fed.store), all_listed);
            if !all_listed {
                continue;
            }
            let merged = fed.held();
            for (k, name) in names.iter().enumerate().take(n) {
                let prefix = format!("{name}/");
                let mine: BTreeMap<_, _> = merged
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, v)| (key.clone(), v.clone()))
                    .collect();
                let reference = versions(&own_stores[k]);
                prop_assert_eq!(&mine, &reference, "namespace {}", name);
            }
            // Every object the store holds belongs to a watched namespace.
            let watched = |k: &String| names[..n].iter().any(|ns| k.starts_with(&format!("{}/", ns)));
            prop_assert!(merged.keys().all(watched));
        }
    }
}

#[test]
fn a_relist_that_changed_nothing_passes_nothing_on() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "web", 1)]));
    fed.feed(1, listing(vec![obj("b", "web", 2)]));
    fed.out.clear();
    fed.feed(0, listing(vec![obj("a", "web", 1)]));
    assert!(
        fed.out.is_empty(),
        "no wake-up for an unchanged object: {:?}",
        fed.out
    );
}

fn watched_rs(
    ns: &str,
    name: &str,
    rv: &str,
) -> crate::controller::replica_set_cache::WatchedReplicaSet {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
            "labels": {"rollouts-pod-template-hash": name},
            "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                "name": "web", "uid": "u1", "controller": true}]},
        "spec": {"replicas": 1}
    }))
    .expect("decodes")
}

/// Found by review: a ReplicaSet we created is in the cache before the watch shows it; deleted
/// while namespace a's watch was down, the relist that follows must drop it, as a single
/// watch's relist (which replaces the whole cache) does. The merge never passed it on, so only
/// the relist hook can.
#[test]
fn a_relist_drops_a_replica_set_we_created_that_went_while_the_watch_was_down() {
    use crate::controller::replica_set_cache::{ReplicaSetCache, WatchedReplicaSet};
    let cache = ReplicaSetCache::default();
    let names = |c: &ReplicaSetCache| -> Vec<String> {
        c.owned("u1").into_iter().map(|r| r.observed.name).collect()
    };
    let hook: RelistHook = Box::new({
        let cache = cache.clone();
        move |ns, listed| cache.forget_unlisted(ns, listed)
    });
    let mut merged: Merged<WatchedReplicaSet> = Merged::new(
        vec!["a".into(), "b".into()],
        crate::controller::watches::tombstone,
        Some(hook),
    );
    let mut feed = |i: usize, events: Vec<Event<WatchedReplicaSet>>| {
        for e in events {
            for out in merged.on(i, e) {
                cache.apply(&out);
            }
        }
    };
    let list = |objs: Vec<WatchedReplicaSet>| {
        let mut events = vec![Event::Init];
        events.extend(objs.into_iter().map(Event::InitApply));
        events.push(Event::InitDone);
        events
    };
    feed(0, list(vec![watched_rs("a", "web-1", "1")]));
    feed(1, list(vec![watched_rs("b", "web-9", "2")]));
    assert!(cache.is_ready());
    cache.record_create(&watched_rs("a", "web-2", "5"));
    assert_eq!(names(&cache), ["web-1", "web-2", "web-9"]);
    feed(0, list(vec![watched_rs("a", "web-1", "1")]));
    assert_eq!(
        names(&cache),
        ["web-1", "web-9"],
        "b's are kept, a's unlisted one is gone"
    );
}

/// Found by review: a deletion a relist finds must not carry the last version passed on (our
/// own write's, maybe), or the wake-up filter takes it for our own change.
#[test]
fn a_deletion_found_by_a_relist_carries_no_version() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "stable", 1)]));
    fed.feed(1, listing(vec![]));
    fed.feed(0, vec![Event::Apply(obj("a", "stable", 5))]);
    fed.out.clear();
    fed.feed(0, listing(vec![]));
    match fed.out.as_slice() {
        [Event::Delete(gone)] => assert_eq!(gone.resource_version(), None),
        other => panic!("{other:?}"),
    }
}

/// Found by review: an `InitDone` with no `Init` before it deletes nothing.
#[test]
fn an_init_done_without_init_deletes_nothing() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "web", 1)]));
    fed.feed(1, listing(vec![]));
    fed.out.clear();
    fed.feed(0, vec![Event::InitDone]);
    assert!(fed.out.is_empty(), "{:?}", fed.out);
    assert_eq!(fed.held(), held(&[("a/web", "1")]));
}

/// A relist's changes go out in the order they were written.
#[test]
fn a_relist_s_changes_go_out_in_resource_version_order() {
    let mut fed = Fed::new(2);
    fed.feed(0, listing(vec![obj("a", "x", 1), obj("a", "y", 2)]));
    fed.feed(1, listing(vec![]));
    fed.out.clear();
    fed.feed(0, listing(vec![obj("a", "x", 6), obj("a", "y", 5)]));
    let order: Vec<String> = fed
        .out
        .iter()
        .map(|e| match e {
            Event::Apply(o) => o.name_any(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, ["y", "x"]);
}

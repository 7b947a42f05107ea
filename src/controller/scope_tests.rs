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
        Fed {
            merged: Merged::new(watches, tombstone),
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
    for bad in ["Shop", "a,,b", "-a", "a_b", &"x".repeat(64), "a/b"] {
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
        held(&[("a/api", "2"), ("a/web", "7"), ("b/web", "3")]),
        "nothing is absent during the relist"
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
        held(&[("a/api", "2"), ("a/web", "4"), ("b/web", "3")])
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
    /// every namespace has listed; once ready it holds, namespace by namespace, what a store of
    /// that namespace's own watch holds — or, while that namespace relists, every object of it
    /// at the same version or newer.
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
        let mut relisting = vec![false; n];
        let mut listed = vec![false; n];
        let mut picks = schedule.into_iter().chain(std::iter::repeat(0));
        while queues.iter().any(|q| !q.is_empty()) {
            let pick = usize::from(picks.next().unwrap_or(0));
            let Some(i) = (0..n).map(|k| (pick + k) % n).find(|i| !queues[*i].is_empty()) else {
                break;
            };
            let Some(event) = queues[i].pop_front() else { break };
            match &event {
                Event::Init => relisting[i] = true,
                Event::InitDone => {
                    relisting[i] = false;
                    listed[i] = true;
                }
                _ => {}
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
                if relisting[k] {
                    for (key, v) in &reference {
                        let held = mine.get(key);
                        prop_assert!(
                            held.is_some_and(|h| h.parse::<u32>().ok() >= v.parse::<u32>().ok()),
                            "{} absent or older ({:?} vs {}) during its namespace's relist", key, held, v
                        );
                    }
                } else {
                    prop_assert_eq!(&mine, &reference, "namespace {}", name);
                }
            }
            // Every object the store holds belongs to a watched namespace.
            let watched = |k: &String| names[..n].iter().any(|ns| k.starts_with(&format!("{}/", ns)));
            prop_assert!(merged.keys().all(watched));
        }
    }
}

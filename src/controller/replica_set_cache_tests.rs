//! The ReplicaSet cache: grouping by owner, our own writes read back, relists.

use super::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::json;

fn rs(name: &str, owner: Option<&str>, hash: Option<&str>) -> WatchedReplicaSet {
    let owner_refs = owner.map(|uid| {
        json!([{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "web",
                "uid": uid, "controller": true}])
    });
    let labels = hash.map(|h| json!({ "rollouts-pod-template-hash": h }));
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "ownerReferences": owner_refs,
                     "labels": labels},
        "spec": {"replicas": 1}
    }))
    .expect("decodes")
}

fn names(v: Vec<CachedReplicaSet>) -> Vec<String> {
    v.into_iter().map(|c| c.observed.name).collect()
}

fn feed(cache: &ReplicaSetCache, events: Vec<Event<WatchedReplicaSet>>) {
    for e in events {
        cache.apply(&e);
    }
}

fn scaled(rv: &str, replicas: i32, available: i32) -> WatchedReplicaSet {
    let mut r = rs("web-a", Some("u1"), Some("a"));
    r.metadata.resource_version = Some(rv.into());
    r.spec = Some(WatchedReplicaSetSpec {
        replicas: Some(replicas),
    });
    r.status = Some(ReplicaSetStatus {
        replicas: available,
        available_replicas: Some(available),
        ..Default::default()
    });
    r
}

#[test]
fn our_scale_write_stands_in_until_the_watch_shows_a_newer_version() {
    let cache = ReplicaSetCache::default();
    feed(
        &cache,
        vec![
            Event::Init,
            Event::InitApply(scaled("1", 5, 5)),
            Event::InitDone,
        ],
    );
    let counts = |c: &ReplicaSetCache| {
        let o = &c.owned("u1")[0].observed;
        (o.replicas, o.available)
    };
    assert_eq!(counts(&cache), (5, 5));
    // Scaled to 0 (our write is version 3; the server had a version 2 the watch has not
    // delivered either): the next plan must see our write.
    cache.record_write("u1", "web-a", &scaled("3", 0, 5));
    assert_eq!(counts(&cache), (0, 0), "our write, not the stale cache");
    // The watch delivering the version in between changes nothing.
    feed(&cache, vec![Event::Apply(scaled("2", 5, 5))]);
    assert_eq!(counts(&cache), (0, 0), "still behind our write");
    // Catching up with our version, or passing it, ends the stand-in.
    feed(&cache, vec![Event::Apply(scaled("3", 0, 3))]);
    assert_eq!(counts(&cache), (0, 0));
    feed(&cache, vec![Event::Apply(scaled("4", 4, 0))]);
    assert_eq!(counts(&cache), (4, 0), "a newer version than ours wins");
    // Forgotten with its Rollout.
    cache.record_write("u1", "web-a", &scaled("9", 1, 0));
    cache.retain_writes(&std::collections::HashSet::new());
    assert_eq!(counts(&cache), (4, 0));
    // A ReplicaSet we created shows at once.
    let mut created = scaled("10", 2, 0);
    created.metadata.name = Some("web-b".into());
    cache.record_create(&created);
    assert_eq!(cache.owned("u1").len(), 2);
}

#[test]
fn decodes_what_the_planner_reads_and_nothing_of_the_template() {
    // Served at the built-in kind's path (the Resource impl is inherited from it).
    assert_eq!(
        <WatchedReplicaSet as kube::Resource>::url_path(&(), Some("app")),
        "/apis/apps/v1/namespaces/app/replicasets"
    );
    let whole = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "7",
                     "creationTimestamp": "2026-11-25T10:00:00Z",
                     "labels": {"rollouts-pod-template-hash": "abc"},
                     "annotations": {"aviary.dev/revision": "3",
                                     "aviary.dev/scaled-at": "2026-11-25T10:00:05Z",
                                     "aviary.dev/ephemeral-metadata": "{\"labels\":{\"role\":\"canary\"}}"},
                     "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1",
                         "kind": "Rollout", "name": "web", "uid": "u1", "controller": true}],
                     "managedFields": [{"manager": "aviary", "operation": "Update"}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
        "status": {"replicas": 2, "readyReplicas": 1, "availableReplicas": 3}
    });
    let watched: WatchedReplicaSet = serde_json::from_value(whole.clone()).expect("decodes");
    let full: ReplicaSet = serde_json::from_value(whole).expect("decodes");
    assert_eq!(watched.metadata, full.metadata);
    assert_eq!(watched.status, full.status);
    assert!(
        std::mem::size_of::<WatchedReplicaSet>() * 3 < std::mem::size_of::<ReplicaSet>(),
        "the decoded form is a fraction of the whole"
    );

    let cache = ReplicaSetCache::default();
    feed(
        &cache,
        vec![Event::Init, Event::InitApply(watched), Event::InitDone],
    );
    let owned = cache.owned("u1");
    let [c] = owned.as_slice() else {
        panic!("one ReplicaSet cached: {owned:?}");
    };
    let ts = |s: &str| s.parse::<Timestamp>().ok();
    assert_eq!(
        c.observed,
        ObservedReplicaSet {
            name: "web-abc".into(),
            hash: "abc".into(),
            replicas: 2,
            // Never above spec.replicas.
            available: 2,
            ready: 1,
            current: 2,
            revision: Some(3),
            scale_down_at: None,
            scaled_at: ts("2026-11-25T10:00:05Z"),
            pod_metadata: crate::plan::pod_metadata::Recorded {
                applied: Some(crate::api::PodMetadata {
                    labels: Some([("role".to_string(), "canary".to_string())].into()),
                    annotations: None,
                }),
                pending: false,
            },
        }
    );
    assert_eq!(c.created, ts("2026-11-25T10:00:00Z"));
}

#[test]
fn groups_by_controller_and_orders_by_name() {
    let cache = ReplicaSetCache::default();
    assert!(!cache.is_ready(), "not ready before a full list");
    feed(
        &cache,
        vec![
            Event::Init,
            Event::InitApply(rs("web-b", Some("u1"), Some("b"))),
            Event::InitApply(rs("web-a", Some("u1"), Some("a"))),
            Event::InitApply(rs("api-a", Some("u2"), Some("a"))),
            Event::InitApply(rs("orphan", None, Some("o"))),
            Event::InitApply(rs("unhashed", Some("u1"), None)),
        ],
    );
    assert!(!cache.is_ready(), "not ready before InitDone");
    feed(&cache, vec![Event::InitDone]);
    assert!(cache.is_ready());
    assert_eq!(names(cache.owned("u1")), ["web-a", "web-b"]);
    assert_eq!(names(cache.owned("u2")), ["api-a"]);
    assert!(cache.owned("u3").is_empty());
    assert_eq!(cache.counts(), (3, 2));
}

#[test]
fn follows_updates_owner_changes_and_deletes() {
    let cache = ReplicaSetCache::default();
    feed(
        &cache,
        vec![
            Event::Init,
            Event::InitDone,
            Event::Apply(rs("web-b", Some("u1"), Some("b"))),
            Event::Apply(rs("web-a", Some("u1"), Some("a"))),
        ],
    );
    // An update replaces the entry, in place.
    let mut scaled = rs("web-a", Some("u1"), Some("a"));
    scaled.spec = Some(WatchedReplicaSetSpec { replicas: Some(0) });
    feed(&cache, vec![Event::Apply(scaled)]);
    let owned = cache.owned("u1");
    assert_eq!(names(owned.clone()), ["web-a", "web-b"]);
    assert_eq!(owned[0].observed.replicas, 0);
    // Orphaned (owner reference removed), then adopted by another owner.
    feed(&cache, vec![Event::Apply(rs("web-a", None, Some("a")))]);
    assert_eq!(names(cache.owned("u1")), ["web-b"]);
    feed(
        &cache,
        vec![Event::Apply(rs("web-a", Some("u2"), Some("a")))],
    );
    assert_eq!(names(cache.owned("u2")), ["web-a"]);
    feed(
        &cache,
        vec![Event::Delete(rs("web-b", Some("u1"), Some("b")))],
    );
    assert!(cache.owned("u1").is_empty());
    assert_eq!(cache.counts(), (1, 1));
}

#[test]
fn a_relist_replaces_the_cache_only_when_done() {
    let cache = ReplicaSetCache::default();
    feed(
        &cache,
        vec![
            Event::Init,
            Event::InitApply(rs("web-a", Some("u1"), Some("a"))),
            Event::InitDone,
        ],
    );
    // A relist that no longer has web-a (deleted while the watch was down) but has web-b.
    feed(
        &cache,
        vec![
            Event::Init,
            Event::InitApply(rs("web-b", Some("u1"), Some("b"))),
        ],
    );
    assert_eq!(
        names(cache.owned("u1")),
        ["web-a"],
        "still the old view until InitDone"
    );
    feed(&cache, vec![Event::InitDone]);
    assert_eq!(names(cache.owned("u1")), ["web-b"]);
    assert!(cache.is_ready());
}

/// A ReplicaSet taken over from Argo Rollouts keeps its revision number; Aviary's own
/// annotation, once written, wins.
#[test]
fn argo_rollouts_revision_is_read_when_aviarys_is_absent() {
    let mut r = rs("web-a", Some("u1"), Some("a"));
    r.metadata.annotations = Some(
        [("rollout.argoproj.io/revision".to_string(), "7".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(observe_replica_set(&r).and_then(|o| o.revision), Some(7));
    if let Some(a) = r.metadata.annotations.as_mut() {
        a.insert("aviary.dev/revision".into(), "9".into());
    }
    assert_eq!(observe_replica_set(&r).and_then(|o| o.revision), Some(9));
}

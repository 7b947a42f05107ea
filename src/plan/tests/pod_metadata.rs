//! Role metadata (`canaryMetadata`/`stableMetadata`, `previewMetadata`/`activeMetadata`):
//! which ReplicaSet carries which, when it changes hands, and that a state that holds plans no
//! write.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::api::PodMetadata;
use crate::plan::pod_metadata::{self, Keys};

/// A basic canary of 4 replicas with an indefinite pause at 50 %.
const CANARY: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryMetadata: {labels: {role: canary}, annotations: {note: new}}
      stableMetadata: {labels: {role: stable}}
      steps:
      - setWeight: 50
      - pause: {}
"#;

fn md(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodMetadata {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    PodMetadata {
        labels: map(labels),
        annotations: map(annotations),
    }
}

fn canary_md() -> PodMetadata {
    md(&[("role", "canary")], &[("note", "new")])
}

fn stable_md() -> PodMetadata {
    md(&[("role", "stable")], &[])
}

fn carried(w: &World, hash: &str) -> Option<PodMetadata> {
    w.rs[hash].pod_metadata.applied.clone()
}

fn syncs(p: &Plan) -> Vec<&Action> {
    p.actions
        .iter()
        .filter(|a| matches!(a, Action::SyncPodMetadata { .. }))
        .collect()
}

/// v1 stable, v2 the canary paused at 50 %: the world and both hashes.
fn paused_canary() -> (World, String, String) {
    let mut w = World::new(CANARY);
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_image("web:2");
    w.run(10);
    let v2 = w.canary_hash();
    (w, v1, v2)
}

fn promote(w: &mut World) {
    let mut st = w.status();
    st.pause_conditions.clear();
    st.controller_pause = None;
    st.current_step_index = Some(st.current_step_index.unwrap_or(0) + 1);
    w.ro.status = Some(st);
}

#[test]
fn the_canary_is_created_with_its_role_and_the_stable_keeps_its_own() {
    let mut w = World::new(CANARY);
    w.deploy_first();
    let v1 = w.canary_hash();
    assert_eq!(
        carried(&w, &v1),
        Some(stable_md()),
        "the first revision is the stable"
    );
    assert!(
        w.synced.is_empty(),
        "created with its role: nothing to sync"
    );

    w.update_image("web:2");
    w.run(10);
    let v2 = w.canary_hash();
    assert_eq!(carried(&w, &v2), Some(canary_md()));
    assert_eq!(carried(&w, &v1), Some(stable_md()));
    assert!(w.synced.is_empty(), "{:?}", w.synced);
    let again = w.reconcile();
    assert!(syncs(&again).is_empty(), "a state that holds plans no sync");
}

#[test]
fn promotion_hands_the_stable_role_to_the_canary_in_place_and_clears_the_old_stable() {
    let (mut w, v1, v2) = paused_canary();
    promote(&mut w);
    w.run_to_end(20);
    w.run(5);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(carried(&w, &v2), Some(stable_md()));
    assert_eq!(carried(&w, &v1), None, "the old stable has no role");
    let mut synced = w.synced.clone();
    synced.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (format!("web-{v1}"), None),
        (format!("web-{v2}"), Some(stable_md())),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        synced, want,
        "each ReplicaSet synced once, after the promotion was persisted"
    );
}

#[test]
fn an_aborted_canary_keeps_the_canary_role_and_an_undo_clears_it() {
    let (mut w, v1, v2) = paused_canary();
    let mut st = w.status();
    st.abort = Some(true);
    w.ro.status = Some(st);
    w.run(10);
    assert_eq!(
        carried(&w, &v2),
        Some(canary_md()),
        "aborted, still the canary"
    );
    assert!(w.synced.is_empty());

    w.update_image("web:1");
    w.run_to_end(20);
    w.run(5);
    assert_eq!(carried(&w, &v1), Some(stable_md()));
    assert_eq!(carried(&w, &v2), None, "undone: no longer the canary");
}

#[test]
fn edited_metadata_reaches_the_replica_set_that_holds_the_role() {
    let (mut w, v1, v2) = paused_canary();
    let canary = w.ro.spec.strategy.canary.as_mut().expect("canary");
    canary.canary_metadata = Some(md(&[("role", "candidate")], &[]));
    canary.stable_metadata = None;
    let p = w.reconcile();
    let got = syncs(&p);
    assert!(got.contains(&&Action::SyncPodMetadata {
        name: format!("web-{v2}"),
        metadata: Some(md(&[("role", "candidate")], &[])),
    }));
    assert!(got.contains(&&Action::SyncPodMetadata {
        name: format!("web-{v1}"),
        metadata: None,
    }));
    assert_eq!(syncs(&p).len(), 2);
    w.run(3);
    assert_eq!(carried(&w, &v2), Some(md(&[("role", "candidate")], &[])));
    assert_eq!(carried(&w, &v1), None);
}

#[test]
fn an_unfinished_sync_is_planned_again_and_a_deleted_replica_set_is_left_alone() {
    let mut w = World::new(CANARY);
    w.deploy_first();
    let v1 = w.canary_hash();
    if let Some(rs) = w.rs.get_mut(&v1) {
        rs.pod_metadata.pending = true;
    }
    let p = w.reconcile();
    assert_eq!(
        syncs(&p),
        vec![&Action::SyncPodMetadata {
            name: format!("web-{v1}"),
            metadata: Some(stable_md()),
        }],
        "pods may lag the record: the sync runs again"
    );

    // An old ReplicaSet the history limit deletes is not synced too.
    let mut w =
        World::new(&CANARY.replace("replicas: 4\n", "replicas: 4\n  revisionHistoryLimit: 0\n"));
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    promote(&mut w);
    w.run_to_end(20);
    w.advance(60);
    let p = w.run(10);
    assert!(syncs(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(w.rs.len(), 1, "the old stable was deleted");
    // (The test world panics on a sync of a ReplicaSet deleted earlier in the same plan.)
}

#[test]
fn blue_green_gives_the_preview_its_role_until_the_switch() {
    let yaml = super::bluegreen::BLUE_GREEN.replace(
        "      scaleDownDelaySeconds: 10\n",
        "      scaleDownDelaySeconds: 10\n      previewMetadata: {labels: {role: preview}}\n      activeMetadata: {labels: {role: active}}\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    let v1 = w.canary_hash();
    assert_eq!(carried(&w, &v1), Some(md(&[("role", "active")], &[])));
    w.update_image("web:2");
    w.run(10);
    let v2 = w.canary_hash();
    assert_eq!(carried(&w, &v2), Some(md(&[("role", "preview")], &[])));
    let mut st = w.status();
    st.pause_conditions.clear();
    w.ro.status = Some(st);
    w.run_to_end(30);
    w.run(5);
    assert_eq!(carried(&w, &v2), Some(md(&[("role", "active")], &[])));
    assert_eq!(carried(&w, &v1), None);
}

#[test]
fn a_patch_sets_what_differs_removes_what_is_there_and_never_touches_protected_keys() {
    let now: BTreeMap<String, String> = [("app", "web"), ("role", "canary"), ("old", "x")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let want = md(
        &[
            ("role", "stable"),
            ("app", "other"),
            ("rollouts-pod-template-hash", "h"),
        ],
        &[("note", "n")],
    );
    let remove = Keys {
        labels: BTreeSet::from(["old".to_string(), "gone".to_string(), "app".to_string()]),
        annotations: BTreeSet::new(),
    };
    let protected = pod_metadata::protected_keys(Some(&BTreeMap::from([(
        "app".to_string(),
        "web".to_string(),
    )])));
    let patch = pod_metadata::metadata_patch(Some(&now), None, Some(&want), &remove, &protected);
    assert_eq!(
        patch,
        Some(json!({"labels": {"role": "stable", "old": null}, "annotations": {"note": "n"}}))
    );
    let done = md(&[("role", "stable"), ("app", "web")], &[("note", "n")]);
    let labels = done.labels.clone();
    let annotations = done.annotations.clone();
    assert_eq!(
        pod_metadata::metadata_patch(
            labels.as_ref(),
            annotations.as_ref(),
            Some(&want),
            &remove,
            &protected
        ),
        None,
        "a pod that holds the role gets no patch"
    );
}

#[test]
fn keys_to_take_off_are_the_earlier_roles_and_the_unfinished_syncs_but_not_the_wanted() {
    let record = pod_metadata::Record {
        recorded: pod_metadata::Recorded {
            applied: Some(md(&[("role", "canary"), ("tier", "a")], &[("note", "x")])),
            pending: true,
        },
        stale: Keys {
            labels: BTreeSet::from(["leftover".to_string()]),
            annotations: BTreeSet::new(),
        },
        kept: Keys::default(),
    };
    let want = md(&[("role", "stable")], &[]);
    let k = record.to_remove(Some(&want));
    assert_eq!(
        k.labels,
        BTreeSet::from(["leftover".to_string(), "tier".to_string()])
    );
    assert_eq!(k.annotations, BTreeSet::from(["note".to_string()]));
}

/// An older revision's template has its own `tier`; a role that names `tier` leaves it alone
/// (not set, never taken off), and undo still finds it.
#[test]
fn a_key_of_the_replica_sets_own_template_is_kept_not_set_nor_removed() {
    let template_labels: BTreeMap<String, String> = [("app", "web"), ("tier", "frontend")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fresh = pod_metadata::Record::default();
    let own = fresh.own_keys(Some(&template_labels), None);
    assert_eq!(
        own.labels,
        BTreeSet::from(["app".to_string(), "tier".to_string()])
    );
    let want = md(&[("tier", "live"), ("role", "stable")], &[]);
    let kept = pod_metadata::kept_keys(&own, Some(&want));
    assert_eq!(kept.labels, BTreeSet::from(["tier".to_string()]));
    let patch = pod_metadata::metadata_patch(
        Some(&template_labels),
        None,
        Some(&want),
        &fresh.to_remove(Some(&want)),
        &own,
    );
    assert_eq!(patch, Some(json!({"labels": {"role": "stable"}})));

    // Later the role passes: `role` comes off, the kept `tier` stays.
    let after = pod_metadata::Record {
        recorded: pod_metadata::Recorded {
            applied: Some(want.clone()),
            pending: false,
        },
        stale: Keys::default(),
        kept,
    };
    let mut labels = template_labels.clone();
    labels.insert("role".into(), "stable".into());
    let own = after.own_keys(Some(&labels), None);
    let remove = after.to_remove(None);
    assert_eq!(remove.labels, BTreeSet::from(["role".to_string()]));
    assert_eq!(
        pod_metadata::metadata_patch(Some(&labels), None, None, &remove, &own),
        Some(json!({"labels": {"role": null}}))
    );
    assert_eq!(
        after.role_keys().labels,
        BTreeSet::from(["role".to_string()])
    );
}

#[test]
fn an_unreadable_record_is_pending_and_a_pending_one_lists_its_keys() {
    let read = |applied, argo, stale| {
        pod_metadata::read(pod_metadata::Annotations {
            applied,
            argo,
            stale,
            kept: None,
        })
    };
    let r = read(Some("{not json"), None, None);
    assert!(r.recorded.pending && r.recorded.applied.is_none());
    let r = read(
        Some(r#"{"labels":{"role":"canary"}}"#),
        None,
        Some(r#"{"labels":["old"]}"#),
    );
    assert!(r.recorded.pending);
    assert_eq!(r.recorded.applied, Some(md(&[("role", "canary")], &[])));
    assert_eq!(r.stale.labels, BTreeSet::from(["old".to_string()]));
    let r = read(Some(r#"{"labels":{"role":"canary"}}"#), None, None);
    assert!(!r.recorded.pending);
    // Only Argo's record: its pods may have been left half done; synced once.
    let r = read(None, Some(r#"{"labels":{"role":"canary"}}"#), None);
    assert!(r.recorded.pending);
    assert_eq!(r.recorded.applied, Some(md(&[("role", "canary")], &[])));
}

/// At promotion the new stable is synced before the old one loses its role.
#[test]
fn the_desired_revision_is_synced_first() {
    let (mut w, v1, v2) = paused_canary();
    promote(&mut w);
    for _ in 0..20 {
        let p = w.reconcile();
        let order: Vec<&str> = syncs(&p)
            .iter()
            .filter_map(|a| match a {
                Action::SyncPodMetadata { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if !order.is_empty() {
            assert_eq!(order, vec![format!("web-{v2}"), format!("web-{v1}")]);
            return;
        }
    }
    panic!("no sync planned after the promotion");
}

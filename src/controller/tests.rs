//! Tests of the shell's pure helpers: trimming, the abort path's decisions, run wake-ups.

use super::abort_path::*;
use super::watches::*;
use super::*;
use crate::api::wire::RETIRED_LABEL;
use crate::api::{AnalysisRun, Rollout};
use crate::plan::{self, Observed};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

fn rollout(status: serde_json::Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}]}}
        },
        "status": status,
    }))
    .expect("rollout")
}

#[test]
fn a_plan_read_before_a_watched_abort_is_not_acted_on() {
    let progressing = rollout(json!({"phase": "Progressing"}));
    let aborting = rollout(json!({"abort": true, "phase": "Progressing"}));
    let aborted =
        rollout(json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"}));
    assert!(abort_overtook_read(&progressing, Some(&aborting)));
    // A plan that already sees the abort is the abort's own plan.
    assert!(!abort_overtook_read(&aborting, Some(&aborting)));
    assert!(!abort_overtook_read(&progressing, Some(&progressing)));
    assert!(!abort_overtook_read(&progressing, None));
    // An abort already acted on (Degraded) is nothing new to wait for.
    assert!(!abort_overtook_read(&progressing, Some(&aborted)));
}

#[test]
fn only_an_abort_not_yet_acted_on_is_urgent() {
    assert!(abort_pending(&rollout(
        json!({"abort": true, "phase": "Progressing"})
    )));
    assert!(abort_pending(&rollout(json!({"abort": true}))));
    assert!(!abort_pending(&rollout(
        json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"})
    )));
    // Degraded for another reason (an invalid spec, a deadline): the abort is still to do.
    assert!(abort_pending(&rollout(
        json!({"abort": true, "phase": "Degraded"})
    )));
    assert!(!abort_pending(&rollout(json!({"phase": "Progressing"}))));
}

#[test]
fn trimming_keeps_what_the_lanes_and_the_planner_read() {
    let mut ro = rollout(
        json!({"abort": true, "phase": "Progressing", "collisionCount": 2,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "x", "message": "y",
                        "lastTransitionTime": "2026-11-24T00:00:00Z", "lastUpdateTime": "2026-11-24T00:00:00Z"}]}),
    );
    let full = ro.clone();
    trim_rollout(&mut ro);
    assert!(abort_pending(&ro));
    assert!(ro.spec.template.spec.is_none());
    assert_eq!(
        ro.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone()),
        Some([("app".to_string(), "web".to_string())].into())
    );
    assert_eq!(ro.status, full.status, "conditions are planned from");
    assert_eq!(
        plan::rollout_template_hash(&ro),
        plan::pod_template_hash(&full.spec.template, Some(2))
    );
    // Trimming what is already trimmed changes nothing.
    let again = {
        let mut t = ro.clone();
        trim_rollout(&mut t);
        t
    };
    assert_eq!(again, ro);
}

#[test]
fn a_hash_annotation_on_a_whole_rollout_is_not_trusted() {
    let mut ro = rollout(json!({}));
    ro.annotations_mut()
        .insert(plan::TRIMMED_TEMPLATE_HASH.into(), "forged".into());
    assert_eq!(
        plan::rollout_template_hash(&ro),
        plan::pod_template_hash(&ro.spec.template, None)
    );
    trim_rollout(&mut ro);
    assert_ne!(plan::rollout_template_hash(&ro), "forged");
}

/// The planner gives the same answer from the trimmed cache as from the whole Rollout, at
/// each point of a rollout it may be asked about.
#[test]
fn the_trimmed_rollout_plans_like_the_whole_one() {
    let now = Timestamp::now();
    // The states are planned a minute earlier, so a condition planned again from a
    // Rollout that lost its conditions would show a later transition time.
    let then = now - k8s_openapi::jiff::SignedDuration::from_secs(60);
    let whole = rollout(json!({}));
    let hash = plan::rollout_template_hash(&whole);
    let rs = |name: &str, hash: &str, replicas: i32| plan::ObservedReplicaSet {
        name: name.into(),
        hash: hash.into(),
        replicas,
        available: replicas,
        ready: replicas,
        current: replicas,
        revision: Some(1),
        ..Default::default()
    };
    let mut cases = vec![(whole.clone(), vec![])];
    // Each later state is what the previous plan wrote, with its ReplicaSets in place.
    let mut ro = whole.clone();
    let mut sets = vec![];
    for _ in 0..4 {
        let observed = Observed {
            rollout: &ro,
            replica_sets: sets.clone(),
            services: vec![],
            current_weight: None,
            subset_hashes: None,
            analysis_runs: vec![],
            analysis_run_history: vec![],
            pods: None,
            workload: None,
            now: then,
        };
        let p = plan::plan(&observed);
        ro.status = Some(p.status);
        sets = vec![rs(&format!("web-{hash}"), &hash, 1)];
        cases.push((ro.clone(), sets.clone()));
    }
    for (whole, sets) in cases {
        let mut trimmed = whole.clone();
        trim_rollout(&mut trimmed);
        let observe = |ro| Observed {
            rollout: ro,
            replica_sets: sets.clone(),
            services: vec![],
            current_weight: None,
            subset_hashes: None,
            analysis_runs: vec![],
            analysis_run_history: vec![],
            pods: None,
            workload: None,
            now,
        };
        assert_eq!(
            plan::plan(&observe(&trimmed)),
            plan::plan(&observe(&whole)),
            "status {:?}",
            whole.status
        );
    }
}

#[test]
fn an_abort_sends_traffic_back_at_once_only_when_the_canary_routes_traffic() {
    let plain = rollout(json!({"abort": true, "phase": "Paused"}));
    assert_eq!(
        plan::immediate_abort_weight(&plain),
        None,
        "no trafficRouting"
    );
    let routed = |status| {
        let mut ro = rollout(status);
        let mut v = serde_json::to_value(&ro).expect("json");
        v["spec"]["strategy"]["canary"]["stableService"] = json!("web-stable");
        v["spec"]["strategy"]["canary"]["canaryService"] = json!("web-canary");
        v["spec"]["strategy"]["canary"]["trafficRouting"] =
            json!({"istio": {"virtualService": {"name": "web"}}});
        ro = serde_json::from_value(v).expect("routed rollout");
        ro
    };
    let pending = routed(json!({"abort": true, "phase": "Paused"}));
    assert_eq!(plan::immediate_abort_weight(&pending), Some(0));
    let mut trimmed = pending.clone();
    trim_rollout(&mut trimmed);
    assert_eq!(
        plan::immediate_abort_weight(&trimmed),
        Some(0),
        "decided from the trimmed cache"
    );
    assert_eq!(
        plan::immediate_abort_weight(&routed(
            json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"})
        )),
        None,
        "already acted on"
    );
    assert_eq!(
        plan::immediate_abort_weight(&routed(json!({"phase": "Paused"}))),
        None
    );
}

fn run(phase: &str, retired: bool) -> AnalysisRun {
    let mut labels = json!({});
    if retired {
        labels[RETIRED_LABEL] = json!("true");
    }
    serde_json::from_value(json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "web-abc-1", "namespace": "shop", "labels": labels,
            "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                "name": "web", "uid": "u1", "controller": true}]},
        "spec": {"metrics": []},
        "status": {"phase": phase},
    }))
    .expect("analysis run")
}

#[test]
fn a_failed_run_wakes_its_rollout_on_the_urgent_lane() {
    let want = ObjectRef::<Rollout>::new("web").within("shop");
    assert_eq!(failed_run_owner(&run("Failed", false)), Some(want.clone()));
    assert_eq!(failed_run_owner(&run("Error", false)), Some(want));
    assert_eq!(failed_run_owner(&run("Running", false)), None);
    assert_eq!(failed_run_owner(&run("Successful", false)), None);
    assert_eq!(failed_run_owner(&run("Failed", true)), None, "retired");
}

//! `replicaProgressThreshold`: a step's weight is routed, a step completes and the update is
//! promoted once that many of the canary's pods are available, not all of them.

use super::*;

/// 10 replicas behind Istio, weight 50 then an indefinite pause, 70 % of the canary's pods.
const THRESHOLD: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      replicaProgressThreshold: {type: Percent, value: 70}
      trafficRouting: {istio: {virtualService: {name: web}}}
      steps:
      - setWeight: 50
      - pause: {}
"#;

/// Holds the canary at `n` available pods.
fn hold_at(w: &mut World, hash: &str, n: i32) {
    if !w.frozen.iter().any(|h| h == hash) {
        w.frozen.push(hash.to_string());
    }
    if let Some(rs) = w.rs.get_mut(hash) {
        rs.available = n.min(rs.replicas);
        rs.ready = rs.available;
        rs.current = rs.replicas;
    }
}

fn run_held(w: &mut World, hash: &str, n: i32, times: usize) {
    for _ in 0..times {
        w.reconcile();
        hold_at(w, hash, n);
    }
}

#[test]
fn a_weight_is_routed_once_the_threshold_of_its_pods_is_available() {
    let mut w = World::new(THRESHOLD);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    run_held(&mut w, &new, 3, 6);
    assert_eq!(
        w.rs[&new].replicas, 5,
        "the canary is sized for its whole share"
    );
    assert_eq!(w.weight, Some(0), "3 of 5 pods is under 70 %");
    assert_eq!(w.status().current_step_index, Some(0));

    run_held(&mut w, &new, 4, 6);
    assert_eq!(
        w.weight,
        Some(50),
        "4 of 5 pods is 80 %: the weight is routed"
    );
    assert_eq!(
        w.status().current_step_index,
        Some(1),
        "and the step completes without the fifth pod"
    );
}

#[test]
fn the_update_is_promoted_once_the_threshold_of_all_replicas_is_available() {
    let yaml = THRESHOLD.replace("      - pause: {}\n", "");
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    run_held(&mut w, &new, 6, 10);
    assert_ne!(
        w.status().stable_rs.as_deref(),
        Some(new.as_str()),
        "6 of 10 is under 70 %"
    );
    run_held(&mut w, &new, 7, 10);
    assert_eq!(
        w.status().stable_rs.as_deref(),
        Some(new.as_str()),
        "7 of 10 meets 70 %: promoted"
    );
}

#[test]
fn a_pods_threshold_counts_pods_and_never_more_than_are_wanted() {
    let pods = |n: i32| {
        THRESHOLD.replace(
            "{type: Percent, value: 70}",
            &format!("{{type: Pods, value: {n}}}"),
        )
    };
    let mut w = World::new(&pods(2));
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    run_held(&mut w, &new, 2, 6);
    assert_eq!(w.weight, Some(50), "2 pods are enough");

    // 9 asked for, 5 wanted: all 5 (never more than the step wants).
    let mut w = World::new(&pods(9));
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    run_held(&mut w, &new, 4, 6);
    assert_eq!(w.weight, Some(0));
    run_held(&mut w, &new, 5, 6);
    assert_eq!(w.weight, Some(50));
}

#[test]
fn pods_for_rounds_a_percentage_up_and_keeps_one_pod() {
    use crate::api::{ProgressType, ReplicaProgressThreshold as T};
    let pct = |v| T {
        type_: ProgressType::Percent,
        value: v,
    };
    assert_eq!(T::pods_for(None, 5), 5);
    assert_eq!(T::pods_for(Some(&pct(70)), 5), 4);
    assert_eq!(T::pods_for(Some(&pct(70)), 10), 7);
    assert_eq!(T::pods_for(Some(&pct(1)), 10), 1);
    assert_eq!(T::pods_for(Some(&pct(100)), 3), 3);
    assert_eq!(T::pods_for(Some(&pct(50)), 0), 0);
    let pods = T {
        type_: ProgressType::Pods,
        value: 3,
    };
    assert_eq!(T::pods_for(Some(&pods), 2), 2);
    assert_eq!(T::pods_for(Some(&pods), 8), 3);
}

/// Steps 50 then 100, v2 applied (by Service, or by subset) and its ReplicaSet frozen: the
/// world and v2's hash.
fn updated_to_100_held(subsets: bool) -> (World, String) {
    let yaml = THRESHOLD.replace("      - pause: {}\n", "      - setWeight: 100\n");
    let mut w = World::new(&yaml);
    if subsets {
        w.subsets = Some(SubsetHashes::default());
    }
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    (w, new)
}

/// The stable destination: the stable subset in subset mode, else the stable Service.
fn stable_dest(w: &World) -> Option<String> {
    match &w.subsets {
        Some(s) => s.stable.clone(),
        None => w.services["web-stable"].clone(),
    }
}

/// Promoted at 7 of 10 pods (70 %), the revision takes the stable Service at once, as in Argo:
/// the weight going to 0 must not send the traffic back to the old revision until every new pod
/// is up (helper-39 found 50 → 100 → 0 on the old pods).
#[test]
fn a_revision_promoted_at_the_threshold_takes_the_stable_service() {
    for subsets in [false, true] {
        let (mut w, new) = updated_to_100_held(subsets);
        for _ in 0..40 {
            w.reconcile();
            hold_at(&mut w, &new, 7);
            let stable_dest = stable_dest(&w);
            if w.status().stable_rs.as_deref() == Some(new.as_str()) && w.weight == Some(0) {
                assert_eq!(
                    stable_dest.as_deref(),
                    Some(new.as_str()),
                    "promoted at 7 of 10, the traffic went back to the old revision (subsets: {subsets})"
                );
            }
        }
        assert_eq!(
            w.status().stable_rs.as_deref(),
            Some(new.as_str()),
            "promoted at 7"
        );
        assert_eq!(w.weight, Some(0), "the canary weight is 0 once promoted");
    }
}

/// No router, a 100 % step moved the stable Service to the new revision; an undo returns it to
/// the old one only with `replicas − maxUnavailable` available, as without a threshold — never
/// at the threshold's share (helper-40: it moved at 1 pod of 10).
#[test]
fn an_undo_takes_the_stable_service_back_only_with_the_pods_it_needs() {
    let base = THRESHOLD
        .replace(
            "      trafficRouting: {istio: {virtualService: {name: web}}}\n",
            "",
        )
        .replace("      - setWeight: 50\n", "      - setWeight: 100\n");
    for threshold in ["{type: Pods, value: 1}", ""] {
        let yaml = if threshold.is_empty() {
            base.replace(
                "      replicaProgressThreshold: {type: Percent, value: 70}\n",
                "",
            )
        } else {
            base.replace("{type: Percent, value: 70}", threshold)
        };
        let mut w = World::new(&yaml);
        w.deploy_first();
        let old = w.canary_hash();
        w.update_image("web:2");
        let new = w.canary_hash();
        for _ in 0..40 {
            w.reconcile();
        }
        assert_eq!(w.services["web-stable"].as_deref(), Some(new.as_str()));
        w.update_image("web:1");
        w.frozen.push(old.clone());
        for _ in 0..3 {
            w.reconcile();
            if let Some(rs) = w.rs.get_mut(&old) {
                rs.available = rs.replicas.min(1);
                rs.ready = rs.available;
            }
        }
        assert_eq!(
            w.services["web-stable"].as_deref(),
            Some(new.as_str()),
            "the stable Service stays on the revision with pods (threshold {threshold:?})"
        );
    }
}

/// Promoted at 7 of 10, the weight then reads unknown (routes that disagree) before the stable
/// Service moved: the promoted revision still takes it (helper-41: the traffic went back to the
/// old revision for good).
#[test]
fn a_promotion_at_the_threshold_holds_when_the_weight_reads_unknown() {
    for subsets in [false, true] {
        let (mut w, new) = updated_to_100_held(subsets);
        let mut made_unknown = false;
        for _ in 0..40 {
            w.reconcile();
            hold_at(&mut w, &new, 7);
            if !made_unknown
                && w.status().stable_rs.as_deref() == Some(new.as_str())
                && stable_dest(&w).as_deref() != Some(new.as_str())
            {
                w.weight = None;
                made_unknown = true;
            }
        }
        assert!(made_unknown, "the case was reached (subsets: {subsets})");
        assert_eq!(
            stable_dest(&w).as_deref(),
            Some(new.as_str()),
            "the promoted revision has the stable destination (subsets: {subsets})"
        );
    }
}

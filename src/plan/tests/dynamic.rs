//! `dynamicStableScale`: the stable shrinks only after traffic has left it, and traffic returns
//! to it (abort, undo) only as far as its available pods carry, one declared weight at a time.

use super::*;

/// 10 replicas behind nginx, weights 20 and 60 with indefinite pauses.
const DYNAMIC: &str = r#"
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
      dynamicStableScale: true
      trafficRouting: {nginx: {stableIngress: web}}
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {}
"#;

fn available(w: &World, hash: &str) -> i32 {
    w.rs.get(hash).map(|r| r.available).unwrap_or(0)
}

/// One reconcile, then the traffic check every write must pass: each side of the split has the
/// available pods its share needs (the stable Service's revision for the stable side).
fn reconcile_checked(w: &mut World, canary: &str) -> Plan {
    let p = w.reconcile();
    let weight = w.weight.unwrap_or(0);
    let stable_side = w.services["web-stable"].clone().unwrap_or_default();
    assert!(
        available(w, &stable_side) >= routed_canary_replicas_for_test(10, 100 - weight),
        "stable {stable_side} has {} available pods under {} % of the traffic",
        available(w, &stable_side),
        100 - weight
    );
    if weight > 0 {
        assert!(
            available(w, canary) >= routed_canary_replicas_for_test(10, weight),
            "canary has {} available pods under {weight} %",
            available(w, canary)
        );
    }
    p
}

fn run_checked(w: &mut World, canary: &str, n: usize) {
    for _ in 0..n {
        let p = reconcile_checked(w, canary);
        if p.actions.is_empty() && p.requeue_after.is_none_or(|d| d.as_millis() > 100) {
            return;
        }
    }
}

fn promote(w: &mut World) {
    let mut st = w.status();
    st.pause_conditions.clear();
    st.controller_pause = None;
    let idx = st.current_step_index.unwrap_or(0);
    st.current_step_index = Some(idx + 1);
    w.ro.status = Some(st);
}

fn abort(w: &mut World) {
    let mut st = w.status();
    st.abort = Some(true);
    w.ro.status = Some(st);
}

/// Up to weight 60 of 10 replicas: 8 then 4 stable pods, each shrink after the weight moved.
fn at_sixty() -> (World, String, String) {
    let mut w = World::new(DYNAMIC);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    let canary = w.canary_hash();
    run_checked(&mut w, &canary, 20);
    assert_eq!(w.weight, Some(20));
    assert_eq!(w.rs[&stable].replicas, 8, "stable shrinks to its 80 %");
    promote(&mut w);
    run_checked(&mut w, &canary, 20);
    assert_eq!(w.weight, Some(60));
    assert_eq!(w.rs[&stable].replicas, 4, "stable shrinks to its 40 %");
    assert_eq!(w.rs[&canary].replicas, 6);
    (w, stable, canary)
}

#[test]
fn the_stable_shrinks_as_traffic_leaves_it_and_the_old_one_goes_after_promotion() {
    let (mut w, stable, canary) = at_sixty();
    promote(&mut w);
    for _ in 0..40 {
        reconcile_checked(&mut w, &canary);
        if w.status().phase == Some(RolloutPhase::Healthy) {
            break;
        }
        w.advance(1);
    }
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.status().stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(w.weight, Some(0));
    assert_eq!(w.rs[&canary].replicas, 10);
    w.advance(31);
    run_checked(&mut w, &canary, 10);
    assert_eq!(w.rs[&stable].replicas, 0, "old stable gone after the delay");
}

#[test]
fn an_abort_brings_traffic_back_only_as_the_stable_grows_one_declared_weight_at_a_time() {
    let (mut w, stable, canary) = at_sixty();
    // The stable's new pods take their time.
    w.frozen.push(stable.clone());
    abort(&mut w);
    assert_eq!(
        crate::plan::immediate_abort_weight(&w.ro),
        None,
        "no weight 0 before reading: the stable has only 4 pods"
    );
    run_checked(&mut w, &canary, 5);
    assert_eq!(
        w.weight,
        Some(60),
        "traffic stays until the stable can take it"
    );
    assert_eq!(
        w.rs[&stable].replicas, 8,
        "the stable grows to the next weight down (20 %): not to 10 at once"
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
    // Its pods come up: traffic to 20 %, the canary shrinks with it, the stable grows to 10.
    w.frozen.clear();
    w.settle();
    let p = reconcile_checked(&mut w, &canary);
    assert_eq!(w.weight, Some(20));
    let set = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::SetWeight { weight: 20, .. }))
        .expect("weight 20 written");
    let shrink = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::ScaleReplicaSet { replicas: 2, .. }))
        .expect("canary shrunk to 2");
    assert!(
        set < shrink,
        "the canary shrinks after its traffic left: {p:?}"
    );
    assert_eq!(w.rs[&stable].replicas, 10);
    run_checked(&mut w, &canary, 10);
    assert_eq!(w.weight, Some(0));
    assert_eq!(w.services["web-canary"].as_deref(), Some(stable.as_str()));
    assert_eq!(
        w.rs[&canary].replicas, 2,
        "kept for abortScaleDownDelaySeconds"
    );
    w.advance(31);
    run_checked(&mut w, &canary, 10);
    assert_eq!(w.rs[&canary].replicas, 0);
    let seq: Vec<i32> = w.weights.iter().map(|(wt, _)| *wt).collect();
    assert_eq!(seq, vec![20, 60, 20, 0]);
}

#[test]
fn an_undo_mid_rollout_grows_the_stable_back_before_the_traffic() {
    let (mut w, stable, canary) = at_sixty();
    w.frozen.push(stable.clone());
    w.update_image("web:1");
    run_checked(&mut w, &canary, 5);
    assert_eq!(w.weight, Some(60), "nothing moves onto the 4 stable pods");
    assert_eq!(
        w.rs[&canary].replicas, 6,
        "the canary keeps what its traffic needs"
    );
    assert_eq!(w.rs[&stable].replicas, 8, "the stable grows for 20 % first");
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 8;
    }
    reconcile_checked(&mut w, &canary);
    assert_eq!(w.weight, Some(20));
    assert_eq!(
        w.rs[&canary].replicas, 2,
        "the canary shrinks with its weight"
    );
    w.frozen.clear();
    w.settle();
    run_checked(&mut w, &canary, 20);
    assert_eq!(w.weight, Some(0));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.rs[&stable].replicas, 10);
}

#[test]
fn a_canary_losing_pods_hands_traffic_back_only_as_the_stable_carries_it() {
    let (mut w, stable, canary) = at_sixty();
    // Three canary pods fail; the stable's new ones are slow.
    w.frozen.push(canary.clone());
    w.frozen.push(stable.clone());
    if let Some(rs) = w.rs.get_mut(&canary) {
        rs.available = 3;
    }
    let p = w.reconcile();
    assert_eq!(
        w.weight,
        Some(60),
        "the stable's 4 pods cannot take 80 %: {p:?}"
    );
    assert_eq!(w.rs[&stable].replicas, 8, "it grows to carry 80 %");
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 8;
    }
    w.reconcile();
    assert_eq!(
        w.weight,
        Some(20),
        "back to the weight the canary's 3 pods carry"
    );
}

/// Routers that disagree show no weight: the planner writes none the stable cannot carry (an
/// unknown weight could be lower on one router), and comes down from there as it grows.
#[test]
fn routers_that_disagree_get_no_weight_the_stable_cannot_carry() {
    let (mut w, stable, _canary) = at_sixty();
    abort(&mut w);
    w.weight = None;
    w.frozen.push(stable.clone());
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 3;
    }
    let p = w.reconcile();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. })),
        "a weight written onto 3 stable pods: {p:?}"
    );
    assert_eq!(w.weight, None);
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 4;
    }
    w.reconcile();
    assert_eq!(
        w.weight,
        Some(60),
        "what 4 stable pods carry, on every router"
    );
}

/// An undo while the routers disagree and the stable cannot carry any declared weight: no
/// weight is written, and the old canary, which a router may still send 60 % to, keeps its pods
/// (an unknown weight may be anything on either side).
#[test]
fn an_undo_under_routers_that_disagree_keeps_the_canarys_pods() {
    let (mut w, stable, canary) = at_sixty();
    w.weight = None;
    w.frozen.push(stable.clone());
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 3;
    }
    w.update_image("web:1");
    let p = w.reconcile();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. })),
        "{p:?}"
    );
    assert_eq!(
        w.rs[&canary].replicas, 6,
        "the canary keeps its pods: {p:?}"
    );
}

/// At 20 % (stable 8 pods, canary 2) a route is added at 0 beside the one at 20: the weight is
/// unknown. With a stable pod lost (7 of 8), no rung may be written that is a step up for the
/// new route onto the canary's 2 pods — in progress or in an abort (helper-40: 60 was written).
#[test]
fn an_unknown_weight_is_never_raised_onto_a_canary_that_cannot_carry_it() {
    for aborted in [false, true] {
        let mut w = World::new(DYNAMIC);
        w.deploy_first();
        let stable = w.canary_hash();
        w.update_image("web:2");
        let canary = w.canary_hash();
        run_checked(&mut w, &canary, 20);
        assert_eq!(w.weight, Some(20));
        if aborted {
            abort(&mut w);
        }
        w.weight = None;
        w.frozen.push(stable.clone());
        if let Some(rs) = w.rs.get_mut(&stable) {
            rs.available = if aborted { 4 } else { 7 };
        }
        w.reconcile();
        assert!(
            w.weight.is_none_or(|x| x <= 20),
            "wrote {:?} onto a canary with {} available pods (aborted: {aborted})",
            w.weight,
            w.rs[&canary].available
        );
    }
}

/// An abort with an unknown weight sends nothing to a stable without an available pod (as
/// with a known weight: the unknown one counts as coming down).
#[test]
fn an_abort_with_an_unknown_weight_waits_for_a_stable_with_pods() {
    let yaml = DYNAMIC.replace("      dynamicStableScale: true\n", "");
    let mut w = World::new(&yaml);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    for _ in 0..20 {
        w.reconcile();
    }
    assert_eq!(w.weight, Some(20));
    abort(&mut w);
    w.weight = None;
    w.frozen.push(stable.clone());
    if let Some(rs) = w.rs.get_mut(&stable) {
        rs.available = 0;
    }
    w.reconcile();
    assert_ne!(
        w.weight,
        Some(0),
        "the abort sent every route's traffic to a stable with no available pod"
    );
}

/// An abort at 20 % with an unknown weight after the canary lost a pod (1 of 2): no rung fitted
/// both the canary and the shrunk stable, and nothing was ever written (helper-41). The stable
/// grows whole while the weight is unknown, and the abort reaches 0.
#[test]
fn an_abort_with_an_unknown_weight_and_a_short_canary_still_reaches_zero() {
    let mut w = World::new(DYNAMIC);
    w.deploy_first();
    w.update_image("web:2");
    let canary = w.canary_hash();
    run_checked(&mut w, &canary, 20);
    assert_eq!(w.weight, Some(20));
    abort(&mut w);
    w.weight = None;
    w.frozen.push(canary.clone());
    if let Some(rs) = w.rs.get_mut(&canary) {
        rs.available = 1;
    }
    for _ in 0..40 {
        w.reconcile();
        if let Some(rs) = w.rs.get_mut(&canary) {
            rs.available = rs.available.min(1);
        }
    }
    assert_eq!(w.weight, Some(0), "the abort never completed");
}

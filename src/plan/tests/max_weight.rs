//! `trafficRouting.maxTrafficWeight`: every weight is a share of that total, not of 100.

use super::*;

const NGINX_1000: &str = r#"
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
      trafficRouting:
        maxTrafficWeight: 1000
        nginx: {stableIngress: web}
      steps:
      - setWeight: 5
      - pause: {}
      - setWeight: 450
      - pause: {}
"#;

#[test]
fn the_steps_weights_and_the_canarys_pods_are_shares_of_the_total() {
    let mut w = World::new(NGINX_1000);
    w.deploy_first();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.run(10);
    // 5 of 1000 is 0.5 %: one pod of 10 carries it, and the stable keeps the other 995.
    assert_eq!(w.weight, Some(5));
    assert_eq!(w.rs[&canary].replicas, 1);
    let weights = w.status().canary.and_then(|c| c.weights).expect("weights");
    assert_eq!((weights.canary.weight, weights.stable.weight), (5, 995));
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));

    promote(&mut w);
    w.run(10);
    // 450 of 1000: ceil(10 × 0.45) = 5 pods.
    assert_eq!(w.weight, Some(450));
    assert_eq!(w.rs[&canary].replicas, 5);

    // Past the last step the canary is promoted: full size, then the weight back to 0 on it.
    promote(&mut w);
    w.run_to_end(40);
    assert_eq!(w.status().stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(w.weight, Some(0));
    assert!(
        w.weights.iter().all(|(weight, _)| *weight <= 1000),
        "{:?}",
        w.weights
    );
}

#[test]
fn weight_at_past_the_last_step_is_the_total() {
    let ro = rollout(NGINX_1000);
    let steps = ro.spec.steps();
    assert_eq!(canary::weight_at(steps, 0, 1000), 5);
    assert_eq!(canary::weight_at(steps, 3, 1000), 450);
    assert_eq!(canary::weight_at(steps, 4, 1000), 1000);
    assert_eq!(ro.spec.total_weight(), 1000);
    assert_eq!(replicas::routed_replicas_of(10, 5, 1000), 1);
    assert_eq!(replicas::routed_replicas_of(10, 1000, 1000), 10);
    assert_eq!(replicas::routed_replicas_of(3, 1, 7), 1);
    assert_eq!(replicas::routed_replicas_of(7, 3, 7), 3);
}

/// `kubectl aviary promote` on a paused step: the pause conditions cleared.
fn promote(w: &mut World) {
    let mut st = w.status();
    st.pause_conditions.clear();
    w.ro.status = Some(st);
}

/// `replicaProgressThreshold` with a canary Service that has no hash selector yet: it is
/// adopted as the threshold is met, before a weight is routed through it (helper-44: the weight
/// went through a Service selecting every pod, never adopted).
#[test]
fn an_unhashed_canary_service_is_adopted_at_the_threshold_before_it_carries_weight() {
    let yaml = NGINX_1000
        .replace("        maxTrafficWeight: 1000\n", "")
        .replace("      steps:\n      - setWeight: 5\n      - pause: {}\n      - setWeight: 450\n      - pause: {}\n",
            "      replicaProgressThreshold: {type: Percent, value: 70}\n      steps:\n      - setWeight: 50\n      - pause: {duration: 10s}\n");
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.services.insert("web-canary".into(), None);
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.frozen.push(canary.clone());
    w.reconcile();
    // 4 of 5 canary pods: the threshold (70 % of 5 = 4) is met, the fifth never comes.
    let rs = w.rs.get_mut(&canary).expect("canary");
    (rs.available, rs.ready, rs.current) = (4, 4, 5);
    for _ in 0..6 {
        w.reconcile();
        assert!(
            w.weight.unwrap_or(0) == 0
                || w.services["web-canary"].as_deref() == Some(canary.as_str()),
            "weight {:?} through a canary Service that selects every pod",
            w.weight
        );
    }
    assert_eq!(w.weight, Some(50), "{:?}", w.status());
}

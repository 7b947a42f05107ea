//! One regression test per finding of the safety review (issue 21): each failed before its fix.
//! The simulation (`crate::simulation`) checks the same invariants under random sequences; these
//! name the sequences that broke them.

use super::*;
use crate::api::conditions::reasons;

/// Istio in subset mode: the VirtualService splits between two DestinationRule subsets.
fn subset_mode(steps: &str) -> World {
    let yaml = ISTIO
        .replace(
            "trafficRouting: {istio: {virtualService: {name: web, routes: [primary]}}}",
            "trafficRouting: {istio: {virtualService: {name: web, routes: [primary]}, destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}}}",
        )
        .replace(
            "      - setWeight: 10\n      - pause: {duration: 2s}\n      - setWeight: 50\n      - pause: {duration: 2s}\n      - setWeight: 100\n",
            steps,
        );
    let mut w = World::new(&yaml);
    w.subsets = Some(SubsetHashes::default());
    w
}

fn available(w: &World, hash: &str) -> i32 {
    w.rs.get(hash).map(|r| r.available).unwrap_or(0)
}

/// F1: with one `setWeight: 50` step the weight fell to 0 before promotion (F10), so the
/// promotion wrote no DestinationRule: the stable subset kept the old hash, whose pods were then
/// scaled away under 100 % of the traffic.
#[test]
fn f1_promotion_moves_the_stable_subset_even_when_the_weight_needs_no_write() {
    let mut w = subset_mode("      - setWeight: 50\n");
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.run_to_end(60);
    w.advance(60);
    w.run(10);
    let subsets = w.subsets.clone().unwrap_or_default();
    assert_eq!(subsets.stable.as_deref(), Some(new.as_str()), "{subsets:?}");
    assert_eq!(subsets.canary.as_deref(), Some(new.as_str()), "{subsets:?}");
    assert_eq!(w.weight, Some(0));
    assert_eq!(
        w.rs[&old].replicas, 0,
        "the old pods go only once nothing routes to them"
    );
}

/// F2: a new template mid-canary moved the canary subset to the new, pod-less ReplicaSet before
/// the weight went to 0.
#[test]
fn f2_the_canary_subset_moves_only_once_its_traffic_is_gone() {
    let mut w = subset_mode("      - setWeight: 50\n      - pause: {}\n");
    w.deploy_first();
    w.update_image("web:2");
    w.run(20);
    assert_eq!(w.weight, Some(50));
    w.update_image("web:3");
    let newest = w.canary_hash();
    w.frozen.push(newest.clone());
    w.routes.clear();
    w.run(5);
    for (weight, canary, avail) in &w.routes {
        if canary.as_deref() == Some(newest.as_str()) {
            assert!(
                *weight == 0 || *avail > 0,
                "weight {weight} routed to subset {newest} with no pod: {:?}",
                w.routes
            );
        }
    }
    assert_eq!(w.weight, Some(0));
}

/// F3: the promotion switched the stable Service before its status write; an abort that won
/// the race left the Service on the aborted revision. Promotion is now two-phase: the plan that
/// decides it moves nothing.
#[test]
fn f3_a_promotion_that_fails_to_persist_has_moved_nothing() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    for _ in 0..60 {
        let p = plan(&w.observed());
        if p.status.stable_rs.as_deref() == Some(new.as_str()) {
            // The deciding plan: no Service or weight moves with it.
            assert!(
                !p.actions
                    .iter()
                    .any(|a| matches!(a, Action::SwitchService { .. } | Action::SetWeight { .. })),
                "{:?}",
                p.actions
            );
            for a in &p.actions {
                w.apply(a);
            }
            // Its status write loses to the user's abort.
            let mut st = w.status();
            st.abort = Some(true);
            w.ro.status = Some(st);
            w.run(10);
            assert_eq!(w.services["web-stable"].as_deref(), Some(old.as_str()));
            assert_eq!(w.weight, Some(0));
            assert_eq!(w.rs[&old].replicas, 5);
            assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
            return;
        }
        w.reconcile();
        if let Some(d) = w.status().pause_conditions.first().map(|_| 3) {
            w.advance(d);
        }
    }
    panic!("never promoted: {:?}", w.status());
}

const BASIC_80: &str = r#"
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
      maxSurge: 25%
      maxUnavailable: 25%
      steps:
      - setWeight: 80
      - pause: {}
"#;

/// F4: a basic canary paused at 80 % scaled the canary to 0 at once on abort, while the stable
/// had 2 pods; and the canary had been created with all 8 at once (maxSurge unread).
#[test]
fn f4_a_basic_canary_moves_within_max_surge_and_max_unavailable_both_ways() {
    let mut w = World::new(BASIC_80);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.reconcile();
    assert!(
        w.rs[&canary].replicas <= 3,
        "created within maxSurge (25 % of 10 = 3): {}",
        w.rs[&canary].replicas
    );
    w.run(40);
    assert_eq!((w.rs[&canary].replicas, w.rs[&stable].replicas), (8, 2));
    // Abort with the stable's new pods slow to become available.
    let mut st = w.status();
    st.abort = Some(true);
    w.ro.status = Some(st);
    w.frozen.push(stable.clone());
    w.reconcile();
    let total_available = available(&w, &canary) + available(&w, &stable);
    assert!(
        total_available >= 8,
        "abort dropped to {total_available} available pods (floor 10 − 2)"
    );
    assert!(w.rs[&canary].replicas + w.rs[&stable].replicas <= 13);
    w.frozen.clear();
    w.run(20);
    assert_eq!((w.rs[&canary].replicas, w.rs[&stable].replicas), (0, 10));
}

/// F5: adopting a Service (migrating from a Deployment) moved its selector to the Rollout's pods
/// at the first available pod.
#[test]
fn f5_the_stable_service_is_adopted_only_at_full_availability() {
    let mut w = World::new(ISTIO);
    let hash = w.canary_hash();
    w.frozen.push(hash.clone());
    w.reconcile();
    if let Some(rs) = w.rs.get_mut(&hash) {
        rs.available = 1;
    }
    w.run(3);
    assert_eq!(
        w.services["web-stable"], None,
        "1 of 5 available: not adopted"
    );
    w.frozen.clear();
    w.settle();
    w.run(3);
    assert_eq!(w.services["web-stable"].as_deref(), Some(hash.as_str()));
}

/// F9: one canary pod lost during a long pause made the rollout Degraded at once (the progress
/// deadline counted from the last scale, pause included).
#[test]
fn f9_no_progress_deadline_during_a_pause() {
    let mut w = World::new(INDEFINITE);
    w.ro.spec.progress_deadline_seconds = Some(10);
    w.ro.spec.progress_deadline_abort = Some(true);
    w.deploy_first();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    w.frozen.push(canary.clone());
    if let Some(rs) = w.rs.get_mut(&canary) {
        rs.available = 0;
    }
    w.advance(600);
    w.run(3);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Paused), "{:?}", st.message);
    assert_eq!(st.abort, None);
}

/// F10: during the final scale-up the weight fell back to the previous `setWeight` (or 0).
#[test]
fn f10_the_final_scale_up_keeps_the_last_weight() {
    let yaml = ISTIO.replace("replicas: 5", "replicas: 10").replace(
        "      - setWeight: 10\n      - pause: {duration: 2s}\n      - setWeight: 50\n      - pause: {duration: 2s}\n      - setWeight: 100\n",
        "      - setWeight: 20\n      - pause: {duration: 1s}\n      - setWeight: 50\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    let canary = w.canary_hash();
    for _ in 0..40 {
        w.reconcile();
        w.advance(1);
        if w.weight == Some(50) {
            break;
        }
    }
    assert_eq!(w.weight, Some(50));
    // Past the last step the canary scales to full size, slowly.
    w.frozen.push(canary);
    w.run(5);
    assert_eq!(w.weight, Some(50), "weights: {:?}", w.weights);
}

/// F17: a retry kept `abortedAt`, so a second abort emitted no Event (nor notification, nor
/// metric).
#[test]
fn f17_a_second_abort_after_a_retry_is_announced_again() {
    let mut w = World::new(INDEFINITE);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    let abort = |w: &mut World, on: bool| {
        let mut st = w.status();
        st.abort = on.then_some(true);
        w.ro.status = Some(st);
        w.run(5);
    };
    abort(&mut w, true);
    abort(&mut w, false);
    assert_eq!(w.status().aborted_at, None, "retry clears abortedAt");
    abort(&mut w, true);
    let aborts = reasons(&w.events)
        .into_iter()
        .filter(|r| *r == "RolloutAborted")
        .count();
    assert_eq!(aborts, 2);
}

/// F19: a huge pause (`999999h`, the largest admitted) ended after about a second (the deadline
/// overflowed).
#[test]
fn f19_a_huge_pause_lasts() {
    let yaml = INDEFINITE.replacen("pause: {}", "pause: {duration: 999999h}", 1);
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    let p = w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    let wait = p.requeue_after.expect("a wake-up");
    assert!(wait.as_secs() <= 24 * 3600, "{wait:?}");
    w.advance(7 * 24 * 3600);
    w.run(3);
    assert_eq!(
        w.status().current_step_index,
        Some(1),
        "still paused a week later"
    );
}

/// A stable ReplicaSet deleted mid-update promoted the canary at once, skipping every step and
/// analysis (found by the simulation): it now says why and waits for a human, its traffic on
/// the only pods there are.
#[test]
fn a_stable_replica_set_deleted_mid_update_holds_instead_of_promoting() {
    let mut w = World::new(INDEFINITE);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.run(10);
    w.rs.remove(&stable);
    w.run(5);
    let st = w.status();
    assert_eq!(
        st.stable_rs.as_deref(),
        Some(stable.as_str()),
        "not promoted"
    );
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let c = st.condition("Progressing").expect("Progressing");
    assert_eq!(c.reason, reasons::STABLE_REPLICA_SET_LOST);
    assert!(c.message.contains("promote --full"), "{}", c.message);
    assert!(reasons(&w.events).contains(&reasons::STABLE_REPLICA_SET_LOST));
    // The stable has no pods: traffic goes to the new revision's, scaled to full size.
    assert_eq!(w.rs[&canary].replicas, 4);
    assert_eq!(w.weight, Some(100), "traffic goes where pods are");
    // A human decides: promote --full.
    let mut st = w.status();
    st.promote_full = Some(true);
    w.ro.status = Some(st);
    w.run(10);
    assert_eq!(w.status().stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

const STEP_ANALYSIS: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      trafficRouting: {istio: {virtualService: {name: web}}}
      analysis: {templates: [{templateName: background}], startingStep: 0}
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: error-rate}]}
      - pause: {}
"#;

/// F20: the background run was created before its ReplicaSet, named as revision 0.
#[test]
fn f20_the_background_run_waits_for_its_replica_set() {
    let mut w = World::new(STEP_ANALYSIS);
    w.run_analysis = true;
    w.deploy_first();
    w.update_image("web:2");
    let first = w.reconcile();
    assert!(
        first
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet { .. })),
        "{:?}",
        first.actions
    );
    assert!(
        !first
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun { .. })),
        "no run before its ReplicaSet: {:?}",
        first.actions
    );
    w.run(5);
    assert!(
        w.runs
            .iter()
            .any(|r| r.kind == AnalysisKind::Background && r.hash == w.canary_hash()),
        "created once the ReplicaSet exists"
    );
}

/// F22: a step analysis skipped by `promote` kept running (and measuring).
#[test]
fn f22_a_step_run_skipped_by_promote_stops() {
    let mut w = World::new(STEP_ANALYSIS);
    w.run_analysis = true;
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    assert_eq!(w.status().current_step_index, Some(1));
    let step_run = |w: &World| {
        w.runs
            .iter()
            .find(|r| r.kind == AnalysisKind::Step(1))
            .map(|r| r.phase)
    };
    assert_eq!(step_run(&w), Some(AnalysisPhase::Running));
    // `kubectl aviary promote` on an analysis step: the next step.
    let mut st = w.status();
    st.current_step_index = Some(2);
    w.ro.status = Some(st);
    w.run(3);
    assert_eq!(
        step_run(&w),
        Some(AnalysisPhase::Successful),
        "terminated (a terminated run reads Successful)"
    );
}

/// Found by the e2e crash tests: the reconcile that carries out a promotion moves the stable
/// Service, then the weight, then writes the old revision's scale-down deadline. A controller
/// killed after the Service moved and before that deadline was written left the old revision
/// without one, and its successor — seeing the Service already on the new revision — scaled
/// the old one to 0 at once: `scaleDownDelaySeconds` skipped just when proxies may still send
/// to the old pods. The last stable destination recorded in the status names it now.
#[test]
fn a_crash_after_the_stable_service_moved_keeps_the_scale_down_delay() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    for _ in 0..60 {
        let p = plan(&w.observed());
        let moves_stable = p.actions.iter().position(|a| {
            matches!(a, Action::SwitchService { service, hash }
                if service == "web-stable" && *hash == new)
        });
        if let Some(i) = moves_stable {
            // The crash: the writes up to the stable Service's move happened, nothing after
            // (neither the deadline nor the status).
            for a in &p.actions[..=i] {
                w.apply(a);
            }
            w.settle();
            w.reconcile();
            assert_eq!(w.rs[&old].replicas, 5, "the old revision kept its pods");
            assert!(
                w.rs[&old].scale_down_at.is_some(),
                "the old revision waits out scaleDownDelaySeconds: {:?}",
                w.rs[&old]
            );
            return;
        }
        w.reconcile();
        if !w.status().pause_conditions.is_empty() {
            w.advance(3);
        }
    }
    panic!("the stable Service never moved: {:?}", w.status());
}

/// F23: the basic canary's promotion scaled the stable to 0 before the stable Service switched,
/// leaving the Service that carries production traffic on a revision with no pods. Given a basic
/// canary with both Services whose new pods become available slowly, when it walks to promotion,
/// then after every reconcile the stable Service selects a revision with available pods, the two
/// revisions together keep `replicas − maxUnavailable`, and the Service switches only to a
/// revision with available pods.
#[test]
fn f23_a_basic_promotion_keeps_the_stable_service_on_pods() {
    let yaml = BASIC_80
        .replace(
            "    canary:\n",
            "    canary:\n      stableService: web-stable\n      canaryService: web-canary\n",
        )
        .replace("      - pause: {}\n", "      - pause: {duration: 5s}\n");
    let mut w = World::new(&yaml);
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    let floor = 10 - 2; // maxUnavailable 25 % of 10, rounded down as Kubernetes does
    let mut promoted = false;
    for i in 0..120 {
        // The new revision's pods come up one at a time, one reconcile apart.
        w.frozen = vec![new.clone()];
        let plan = w.reconcile();
        // Checked before the next pod comes up: as the plan left the cluster.
        let selected = w.services["web-stable"].clone().unwrap_or_default();
        let total = available(&w, &old) + available(&w, &new);
        assert!(
            available(&w, &selected) >= 1 && total >= floor,
            "reconcile {i}: the stable Service selects {selected} with {} available, {total} in all (floor {floor}); actions {:?}",
            available(&w, &selected),
            plan.actions
        );
        if let Some(rs) = w.rs.get_mut(&new) {
            rs.available = (rs.available + 1).min(rs.replicas);
        }
        if plan.actions.is_empty() && plan.requeue_after.is_some() {
            w.advance(5);
        }
        promoted |= w.status().stable_rs.as_deref() == Some(new.as_str());
        if promoted && w.rs[&old].replicas == 0 {
            break;
        }
    }
    assert!(promoted, "promoted: {:?}", w.status());
    assert_eq!(
        w.rs[&old].replicas, 0,
        "the old revision scaled away in the end"
    );
    for (service, hash, available) in &w.switches {
        assert!(
            *available >= 1,
            "{service} switched to {hash} at {available}"
        );
    }
    assert_eq!(w.services["web-stable"].as_deref(), Some(new.as_str()));
}

/// `kubectl aviary promote --full`, as the CLI writes it.
fn promote_full(w: &mut World) {
    let mut st = w.status();
    st.promote_full = Some(true);
    st.pause_conditions.clear();
    w.ro.status = Some(st);
}

/// The revision the canary Service selects, its weight and its available pods, when they can't
/// carry that weight: the shortfall I1 forbids.
fn overloaded(w: &World) -> Option<(String, i32, i32)> {
    let weight = w.weight.unwrap_or(0);
    let hash = w.services.get("web-canary").cloned().flatten()?;
    let available = available(w, &hash);
    (weight > 0 && routed_canary_replicas_for_test(5, weight) > available)
        .then_some((hash, weight, available))
}

/// F21: after `promote --full` the weight was held as it was (`desired_weight` returned the
/// current weight unchecked): a canary losing pods kept a share they could not carry, where a
/// canary on its steps falls back to the last declared weight it carries.
#[test]
fn f21_promote_full_gives_a_canary_losing_pods_only_the_weight_it_carries() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.run(10);
    w.advance(3);
    w.run(10);
    assert_eq!(w.weight, Some(50));
    assert_eq!(w.status().current_step_index, Some(3));
    promote_full(&mut w);
    // Its new pods hang, and two of the three serving die.
    w.frozen.push(new.clone());
    if let Some(rs) = w.rs.get_mut(&new) {
        rs.available = 1;
    }
    w.run(10);
    assert_eq!(w.rs[&new].replicas, 5, "still scaling up for the promotion");
    assert_eq!(overloaded(&w), None, "weight {:?}", w.weight);
    assert_eq!(w.weight, Some(10), "the declared weight its pod carries");
    // The pods come: promoted, then all traffic through the stable destination.
    w.frozen.clear();
    w.settle();
    w.run(10);
    assert_eq!(w.status().stable_rs.as_deref(), Some(new.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.weight, Some(0));
}

/// F21: `promote --full`, then an abort or a new template while the canary carries weight: the
/// canary keeps the pods its weight needs until the weight has left it.
#[test]
fn f21_after_promote_full_a_canary_shrinks_only_once_its_weight_is_gone() {
    for then in ["abort", "new template"] {
        let mut w = World::new(ISTIO);
        w.deploy_first();
        w.update_image("web:2");
        let canary = w.canary_hash();
        w.run(10);
        w.advance(3);
        w.run(10);
        assert_eq!(w.weight, Some(50), "{then}");
        promote_full(&mut w);
        // The canary is scaling up for the promotion (its new pods not yet available).
        w.frozen.push(canary.clone());
        w.reconcile();
        assert_eq!(w.rs[&canary].replicas, 5, "{then}");
        match then {
            "abort" => {
                let mut st = w.status();
                st.abort = Some(true);
                w.ro.status = Some(st);
            }
            _ => w.update_image("web:3"),
        }
        for _ in 0..30 {
            w.reconcile();
            assert_eq!(overloaded(&w), None, "{then}: weight {:?}", w.weight);
            w.advance(5);
        }
        assert_eq!(w.weight, Some(0), "{then}");
        w.frozen.clear();
        w.settle();
        w.run(20);
        assert_eq!(overloaded(&w), None, "{then}");
    }
}

/// Review item 3 (issue 21): a step run created just before the steps were edited, which the
/// cache showed only after the reconcile that saw the edit (so it could not retire it), counted
/// as the new steps' verdict. A run says which steps it was made for; one of other steps is no
/// verdict: it is retired, and the step waits for a run of its own.
#[test]
fn a_run_made_for_steps_since_edited_is_no_verdict() {
    let yaml = ISTIO.replace(
        "      - setWeight: 10\n      - pause: {duration: 2s}\n      - setWeight: 50\n      - pause: {duration: 2s}\n      - setWeight: 100\n",
        "      - setWeight: 50\n      - analysis: {templates: [{templateName: error-rate}]}\n      - setWeight: 100\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    assert_eq!(w.status().current_step_index, Some(1));
    let current = crate::plan::hash::hash_of(&w.ro.spec.steps());
    let run = |steps_hash: &str| ObservedAnalysisRun {
        name: "web-x-2-1".into(),
        kind: AnalysisKind::Step(1),
        hash: w.canary_hash(),
        phase: AnalysisPhase::Successful,
        message: None,
        steps_hash: Some(steps_hash.into()),
    };

    let mut stale = w.clone();
    stale.analysis = Some(run("steps-before-the-edit"));
    let p = stale.reconcile();
    assert_eq!(stale.status().current_step_index, Some(1), "not a verdict");
    assert!(
        p.actions.iter().any(|a| matches!(a,
            Action::TerminateAnalysisRun { name, retire: true } if name == "web-x-2-1")),
        "retired: {:?}",
        p.actions
    );

    // The same run made for these steps is the verdict.
    w.analysis = Some(run(&current));
    w.run(5);
    assert!(w.status().current_step_index >= Some(2), "{:?}", w.status());
}

/// Found by review: over a lost stable the planner returned before tidying the runs, so a
/// retry there (the abort on record, then taken back) left the aborted attempt's failed run
/// counting. The runs go as anywhere else.
#[test]
fn a_retry_over_a_lost_stable_retires_the_aborted_attempts_runs() {
    let mut ro: Rollout = serde_yaml::from_str(
        "apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop, uid: u1}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: 'web:2'}]}
  strategy:
    canary:
      steps:
      - analysis: {templates: [{templateName: rate}]}
",
    )
    .expect("rollout");
    let hash = crate::plan::rollout_template_hash(&ro);
    let steps = crate::plan::hash::hash_of(&ro.spec.steps());
    // Aborted (on record: abortedAt), then retried: `abort` taken back by the plugin.
    ro.status = Some(RolloutStatus {
        stable_rs: Some("gone".into()),
        current_pod_hash: Some(hash.clone()),
        current_step_hash: Some(steps.clone()),
        current_step_index: Some(0),
        aborted_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_800_000_000).expect("time"),
        )),
        phase: Some(RolloutPhase::Degraded),
        ..Default::default()
    });
    let observed = Observed {
        rollout: &ro,
        replica_sets: vec![ObservedReplicaSet {
            name: format!("web-{hash}"),
            hash: hash.clone(),
            replicas: 1,
            available: 1,
            current: 1,
            revision: Some(2),
            ..Default::default()
        }],
        services: vec![],
        current_weight: None,
        subset_hashes: None,
        analysis_runs: vec![ObservedAnalysisRun {
            name: format!("web-{hash}-2-0"),
            kind: AnalysisKind::Step(0),
            hash: hash.clone(),
            phase: crate::api::AnalysisPhase::Failed,
            message: Some("error rate 0.4".into()),
            steps_hash: Some(steps),
        }],
        analysis_run_history: vec![],
        pods: None,
        workload: None,
        now: Timestamp::from_second(1_800_000_100).expect("time"),
    };
    let p = plan(&observed);
    assert!(
        p.actions.contains(&Action::TerminateAnalysisRun {
            name: format!("web-{hash}-2-0"),
            retire: true,
        }),
        "{:?}",
        p.actions
    );
    assert_eq!(p.status.aborted_at, None, "the retry is taken");
}

//! Planner tests. Most drive the planner against a small in-memory world (ReplicaSets whose pods
//! become available when the test says so, Services, a router weight) the way the controller
//! would — plan, apply the actions, persist the status — and assert on what the world showed.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::{PauseReason, Rollout, RolloutPhase};

mod bluegreen;
mod dynamic;
mod max_weight;
mod pod_metadata;
mod progress_threshold;
mod run_history;
mod safety;
mod unknown_status;
mod workload;

fn rollout(yaml: &str) -> Rollout {
    serde_yaml::from_str(yaml).expect("rollout yaml")
}

const ISTIO: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      trafficRouting: {istio: {virtualService: {name: web, routes: [primary]}}}
      steps:
      - setWeight: 10
      - pause: {duration: 2s}
      - setWeight: 50
      - pause: {duration: 2s}
      - setWeight: 100
"#;

/// The cluster as the planner's actions leave it.
#[derive(Clone, Debug)]
struct World {
    ro: Rollout,
    rs: BTreeMap<String, ObservedReplicaSet>,
    services: BTreeMap<String, Option<String>>,
    weight: Option<i32>,
    now: Timestamp,
    /// Pods become available as soon as a ReplicaSet is scaled (unless frozen).
    frozen: Vec<String>,
    /// Every weight the router was set to, in order, with the canary's available pods then.
    weights: Vec<(i32, i32)>,
    events: Vec<Event>,
    analysis: Option<ObservedAnalysisRun>,
    /// When set, `CreateAnalysisRun` creates a Running run here (a fake analysis controller).
    run_analysis: bool,
    runs: Vec<ObservedAnalysisRun>,
    /// Runs retired by the planner: no longer observed.
    retired: Vec<ObservedAnalysisRun>,
    /// Every Service switch, in order: service, hash, and that ReplicaSet's available pods then.
    switches: Vec<(String, String, i32)>,
    /// DestinationRule subsets (Istio subset mode), when the test routes by subset.
    subsets: Option<SubsetHashes>,
    /// Every routing write, in order: weight, canary subset, and that subset's available pods.
    routes: Vec<(i32, Option<String>, i32)>,
    /// Every AnalysisRun deleted, in order.
    deleted_runs: Vec<String>,
    /// Every role metadata sync, in order: ReplicaSet and metadata.
    synced: Vec<(String, Option<crate::api::PodMetadata>)>,
    /// `workloadRef`'s Deployment, when the test gives one.
    workload: Option<crate::plan::workload::ObservedWorkload>,
}

impl World {
    fn new(yaml: &str) -> Self {
        let ro = rollout(yaml);
        let mut services = BTreeMap::new();
        if let Some(c) = ro.spec.canary() {
            for s in [&c.canary_service, &c.stable_service].into_iter().flatten() {
                services.insert(s.clone(), None);
            }
        }
        if let Some(bg) = ro.spec.blue_green() {
            for s in [Some(&bg.active_service), bg.preview_service.as_ref()]
                .into_iter()
                .flatten()
            {
                services.insert(s.clone(), None);
            }
        }
        let routed = ro
            .spec
            .canary()
            .and_then(|c| c.traffic_routing.as_ref())
            .is_some();
        World {
            ro,
            rs: BTreeMap::new(),
            services,
            weight: routed.then_some(0),
            now: Timestamp::from_second(1_700_000_000).expect("time"),
            frozen: vec![],
            weights: vec![],
            events: vec![],
            analysis: None,
            run_analysis: false,
            runs: vec![],
            retired: vec![],
            switches: vec![],
            subsets: None,
            routes: vec![],
            deleted_runs: vec![],
            synced: vec![],
            workload: None,
        }
    }

    fn status(&self) -> crate::api::RolloutStatus {
        self.ro.status.clone().unwrap_or_default()
    }

    fn observed(&self) -> Observed<'_> {
        Observed {
            rollout: &self.ro,
            replica_sets: self.rs.values().cloned().collect(),
            services: self
                .services
                .iter()
                .map(|(name, hash)| ObservedService {
                    name: name.clone(),
                    hash: hash.clone(),
                })
                .collect(),
            current_weight: self.weight,
            subset_hashes: self.subsets.clone(),
            analysis_runs: self
                .analysis
                .iter()
                .chain(self.runs.iter())
                .cloned()
                .collect(),
            analysis_run_history: self.history(),
            pods: None,
            workload: self.workload.clone(),
            now: self.now,
        }
    }

    /// Every run, retired or not, oldest first (named in creation order), as the controller
    /// observes them for the run history limits.
    fn history(&self) -> Vec<AnalysisRunRecord> {
        let mut all: Vec<AnalysisRunRecord> = self
            .analysis
            .iter()
            .chain(self.runs.iter())
            .map(|r| (r, false))
            .chain(self.retired.iter().map(|r| (r, true)))
            .map(|(r, retired)| AnalysisRunRecord {
                name: r.name.clone(),
                hash: Some(r.hash.clone()),
                phase: r.phase,
                retired,
            })
            .collect();
        all.sort_by_key(|r| run_number(&r.name));
        all
    }

    fn canary_hash(&self) -> String {
        pod_template_hash(&self.ro.spec.template, None)
    }

    /// One reconcile: plan, apply every action, persist the status. Returns the plan.
    fn reconcile(&mut self) -> Plan {
        let plan = plan(&self.observed());
        for a in &plan.actions {
            self.apply(a);
        }
        self.events.extend(plan.events.iter().cloned());
        self.ro.status = Some(plan.status.clone());
        self.settle();
        plan
    }

    fn apply(&mut self, a: &Action) {
        match a {
            Action::ScaleDeployment {
                replicas,
                mark_scaled_down,
                record_original,
                ..
            } => {
                let w = self.workload.as_mut().expect("a Deployment to scale");
                w.replicas = *replicas;
                w.scaled_down |= *mark_scaled_down;
                w.original = w.original.or(*record_original);
            }
            Action::CreateReplicaSet {
                hash,
                replicas,
                revision,
            } => {
                let rs = ObservedReplicaSet {
                    name: format!("web-{hash}"),
                    hash: hash.clone(),
                    replicas: *replicas,
                    revision: Some(*revision),
                    scaled_at: Some(self.now),
                    pod_metadata: crate::plan::pod_metadata::Recorded {
                        applied: crate::plan::pod_metadata::at_creation(&self.ro, hash).cloned(),
                        pending: false,
                    },
                    ..Default::default()
                };
                assert!(
                    self.rs.insert(hash.clone(), rs).is_none(),
                    "created {hash} twice"
                );
            }
            Action::ScaleReplicaSet {
                name,
                replicas,
                scale_down_at,
            } => {
                let rs = self
                    .rs
                    .values_mut()
                    .find(|r| &r.name == name)
                    .expect("scaled RS exists");
                rs.replicas = *replicas;
                rs.scaled_at = Some(self.now);
                rs.available = rs.available.min(*replicas);
                rs.current = rs.current.min(*replicas);
                rs.ready = rs.ready.min(*replicas);
                if let Some(at) = scale_down_at {
                    rs.scale_down_at = *at;
                }
            }
            Action::SwitchService { service, hash } => {
                let available = self.rs.get(hash).map(|r| r.available).unwrap_or(0);
                self.switches
                    .push((service.clone(), hash.clone(), available));
                self.services.insert(service.clone(), Some(hash.clone()));
            }
            Action::SetWeight {
                weight,
                canary_hash,
                stable_hash,
            } => {
                if let Some(s) = self.subsets.as_mut() {
                    // act moves the subsets first, then the weight.
                    s.canary = Some(canary_hash.clone());
                    s.stable = Some(stable_hash.clone());
                }
                let available = self.rs.get(canary_hash).map(|r| r.available).unwrap_or(0);
                self.routes.push((
                    *weight,
                    self.subsets.as_ref().and_then(|s| s.canary.clone()),
                    available,
                ));
                if self.weight != Some(*weight) {
                    self.weights.push((*weight, available));
                }
                self.weight = Some(*weight);
            }
            Action::CreateAnalysisRun { kind, hash } => {
                if self.run_analysis {
                    self.runs.push(ObservedAnalysisRun {
                        name: format!(
                            "web-{hash}-{}",
                            self.runs.len() + self.retired.len() + self.deleted_runs.len() + 1
                        ),
                        kind: *kind,
                        hash: hash.clone(),
                        phase: AnalysisPhase::Running,
                        message: None,
                        steps_hash: None,
                    });
                }
            }
            // The fake analysis controller: a terminated run ends Successful; a retired one no
            // longer counts (is no longer observed).
            Action::TerminateAnalysisRun { name, retire } => {
                if *retire {
                    let (gone, kept) = self.runs.drain(..).partition(|r| &r.name == name);
                    self.runs = kept;
                    self.retired.extend::<Vec<_>>(gone);
                } else if let Some(r) = self
                    .runs
                    .iter_mut()
                    .find(|r| &r.name == name && !r.phase.is_completed())
                {
                    r.phase = AnalysisPhase::Successful;
                }
            }
            Action::DeleteAnalysisRun { name } => {
                let run = self
                    .runs
                    .iter()
                    .chain(self.retired.iter())
                    .find(|r| &r.name == name)
                    .expect("deleted run exists");
                assert!(run.phase.is_completed(), "deleted {name} while it runs");
                self.runs.retain(|r| &r.name != name);
                self.retired.retain(|r| &r.name != name);
                self.deleted_runs.push(name.clone());
            }
            Action::EvictPod { name } => panic!("no restart was asked for, yet {name} evicted"),
            Action::SyncPodMetadata { name, metadata } => {
                let rs = self
                    .rs
                    .values_mut()
                    .find(|r| &r.name == name)
                    .expect("synced RS exists");
                rs.pod_metadata = crate::plan::pod_metadata::Recorded {
                    applied: metadata.clone(),
                    pending: false,
                };
                self.synced.push((name.clone(), metadata.clone()));
            }
            Action::DeleteReplicaSet { name } => {
                let rs = self
                    .rs
                    .values()
                    .find(|r| &r.name == name)
                    .expect("deleted RS exists");
                assert_eq!(
                    (rs.replicas, rs.current),
                    (0, 0),
                    "deleted {name} with pods"
                );
                self.rs.retain(|_, r| &r.name != name);
            }
        }
    }

    /// Pods of non-frozen ReplicaSets become available.
    fn settle(&mut self) {
        for rs in self.rs.values_mut() {
            if !self.frozen.contains(&rs.hash) {
                rs.available = rs.replicas;
                rs.ready = rs.replicas;
                rs.current = rs.replicas;
            }
        }
    }

    fn advance(&mut self, secs: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(secs))
            .expect("time");
    }

    /// Reconciles until the plan asks for nothing and no time needs to pass, at most `n` times.
    fn run(&mut self, n: usize) -> Plan {
        let mut last = self.reconcile();
        for _ in 0..n {
            if last.actions.is_empty()
                && last.status == self.status()
                && last.requeue_after.is_none_or(|d| d.as_millis() > 100)
            {
                let again = self.reconcile();
                if again.actions.is_empty() && again.events.is_empty() {
                    return again;
                }
                last = again;
            } else {
                last = self.reconcile();
            }
        }
        last
    }

    /// Runs, advancing the clock by each requeue, until Healthy or `limit` reconciles.
    fn run_to_end(&mut self, limit: usize) {
        for _ in 0..limit {
            let p = self.reconcile();
            if p.status.phase == Some(RolloutPhase::Healthy) && p.actions.is_empty() {
                return;
            }
            if let (true, Some(d)) = (p.actions.is_empty(), p.requeue_after) {
                self.advance((d.as_millis() as i64 / 1000).max(1));
            }
        }
        panic!("not Healthy after {limit} reconciles: {:?}", self.status());
    }

    fn update_image(&mut self, image: &str) {
        let spec = self.ro.spec.template.spec.as_mut().expect("pod spec");
        spec.containers[0].image = Some(image.into());
        self.ro.metadata.generation = self.ro.metadata.generation.map(|g| g + 1);
    }

    /// Updates the image, runs the rollout to Healthy, then lets every scale-down delay pass.
    fn update_and_settle(&mut self, image: &str) {
        self.update_image(image);
        self.run_to_end(60);
        self.advance(60);
        self.run(10);
    }

    fn deploy_first(&mut self) {
        self.run_to_end(20);
        self.weights.clear();
        self.events.clear();
    }
}

/// The creation number a run of the test world carries at the end of its name.
fn run_number(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn reasons(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.reason).collect()
}

#[test]
fn first_deploy_is_full_size_stable_and_healthy_without_steps() {
    let mut w = World::new(ISTIO);
    w.run_to_end(10);
    let st = w.status();
    let hash = w.canary_hash();
    assert_eq!(st.stable_rs.as_deref(), Some(hash.as_str()));
    assert_eq!(st.current_step_index, Some(5));
    assert_eq!(w.rs[&hash].replicas, 5);
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.services["web-stable"].as_deref(), Some(hash.as_str()));
    assert_eq!(w.services["web-canary"].as_deref(), Some(hash.as_str()));
    assert!(
        w.weights.is_empty(),
        "no weight changes on first deploy: {:?}",
        w.weights
    );
}

#[test]
fn istio_canary_walks_the_declared_weights_in_order_then_promotes() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.run_to_end(100);

    let seq: Vec<i32> = w.weights.iter().map(|(wt, _)| *wt).collect();
    assert_eq!(seq, vec![10, 50, 100, 0], "weights set, in order");
    for (weight, available) in &w.weights {
        if *weight > 0 {
            assert!(
                routed_canary_replicas_for_test(5, *weight) <= *available,
                "weight {weight} given to a canary with only {available} available pods"
            );
        }
    }
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(new.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.services["web-stable"].as_deref(), Some(new.as_str()));
    // The old stable waits out scaleDownDelaySeconds (default 30 s) before going to 0.
    assert_eq!(w.rs[&old].replicas, 5);
    assert!(w.rs[&old].scale_down_at.is_some());
    w.advance(31);
    w.run(5);
    assert_eq!(w.rs[&old].replicas, 0);
    let r = reasons(&w.events);
    assert_eq!(
        r.iter().filter(|r| **r == "RolloutStepCompleted").count(),
        5
    );
    assert!(r.contains(&"RolloutCompleted"));
}

fn routed_canary_replicas_for_test(r: i32, w: i32) -> i32 {
    super::replicas::routed_canary_replicas(r, w)
}

#[test]
fn weight_waits_for_available_canary_pods() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    w.run(10);
    assert_eq!(w.rs[&new].replicas, 1, "canary scaled for 10 %");
    assert!(
        w.weights.iter().all(|(wt, _)| *wt == 0),
        "no weight before pods are available: {:?}",
        w.weights
    );
    assert_eq!(w.status().current_step_index, Some(0));
    w.frozen.clear();
    w.settle();
    w.run(5);
    assert_eq!(w.weight, Some(10));
    assert_eq!(
        w.status().current_step_index,
        Some(1),
        "setWeight done, now in the 2 s pause"
    );
}

/// minPodsPerReplicaSet: a routed canary at 10 % of 5 replicas runs 3 pods, not 1, and the
/// weight is still written only once they are available; at 50 % (3 pods) nothing more.
#[test]
fn min_pods_per_replica_set_sizes_the_routed_canary() {
    let yaml = ISTIO.replace(
        "      canaryService: web-canary\n",
        "      canaryService: web-canary\n      minPodsPerReplicaSet: 3\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    w.run(10);
    assert_eq!(w.rs[&new].replicas, 3, "at least minPodsPerReplicaSet");
    assert!(w.weights.iter().all(|(wt, _)| *wt == 0), "{:?}", w.weights);
    w.frozen.clear();
    w.settle();
    w.run(5);
    assert_eq!(w.weight, Some(10));
    assert_eq!(w.rs[&new].replicas, 3);
    w.run_to_end(200);
    assert_eq!(w.rs[&new].replicas, 5, "promoted: the full count");
}

#[test]
fn a_timed_pause_holds_until_its_deadline() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    let st = w.status();
    assert_eq!(st.current_step_index, Some(1));
    assert_eq!(st.phase, Some(RolloutPhase::Paused));
    assert_eq!(st.pause_conditions.len(), 1);
    assert_eq!(st.pause_conditions[0].reason, PauseReason::CanaryPauseStep);
    let p = w.reconcile();
    let wait = p.requeue_after.expect("requeue at the pause deadline");
    assert!(
        wait.as_millis() > 1900 && wait.as_millis() <= 2100,
        "{wait:?}"
    );
    w.advance(2);
    w.run(5);
    assert_eq!(w.weight, Some(50));
    assert!(w.status().current_step_index >= Some(3));
}

const INDEFINITE: &str = r#"
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
      canaryService: web-canary
      stableService: web-stable
      trafficRouting: {nginx: {stableIngress: web}}
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {}
"#;

#[test]
fn an_indefinite_pause_waits_for_promote_and_promote_moves_one_step() {
    let mut w = World::new(INDEFINITE);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    w.advance(3600);
    w.run(5);
    assert_eq!(
        w.status().current_step_index,
        Some(1),
        "still paused after an hour"
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    // kubectl aviary promote: clears the pause conditions, keeps controllerPause.
    let mut st = w.status();
    st.pause_conditions.clear();
    w.ro.status = Some(st);
    w.run(10);
    assert_eq!(w.weight, Some(60));
    assert_eq!(w.status().current_step_index, Some(3));
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
}

#[test]
fn abort_sends_all_traffic_to_stable_at_once_then_scales_canary_down_after_the_delay() {
    let mut w = World::new(INDEFINITE);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.run(10);
    assert_eq!(w.weight, Some(20));
    let mut st = w.status();
    st.abort = Some(true);
    w.ro.status = Some(st);
    let p = w.reconcile();
    assert_eq!(
        p.actions.first(),
        Some(&Action::SetWeight {
            weight: 0,
            canary_hash: canary.clone(),
            stable_hash: stable.clone()
        }),
        "weight 0 is the first thing an abort does: {:?}",
        p.actions
    );
    assert_eq!(w.services["web-canary"].as_deref(), Some(stable.as_str()));
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(st.aborted_at.is_some());
    assert_eq!(st.current_step_index, Some(0));
    let cond = st.condition("Progressing").expect("Progressing condition");
    assert_eq!(cond.reason, "RolloutAborted");
    assert!(reasons(&w.events).contains(&"RolloutAborted"));
    assert_eq!(
        w.rs[&canary].replicas, 1,
        "canary kept during abortScaleDownDelaySeconds"
    );
    w.advance(31);
    w.run(5);
    assert_eq!(w.rs[&canary].replicas, 0);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Degraded),
        "stays Degraded until retry or a new spec"
    );

    // retry: abort cleared, the steps start over and complete
    let mut st = w.status();
    st.abort = None;
    w.ro.status = Some(st);
    w.run(10);
    assert_eq!(w.weight, Some(20));
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
}

#[test]
fn abort_while_paused_still_aborts() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    let mut st = w.status();
    st.abort = Some(true);
    w.ro.status = Some(st);
    w.run(3);
    assert_eq!(w.weight, Some(0));
    assert!(w.status().pause_conditions.is_empty());
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
}

#[test]
fn undo_to_the_stable_template_returns_at_once_without_steps() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let stable = w.canary_hash();
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.run(10);
    assert_eq!(w.weight, Some(10));
    w.update_image("web:1");
    let p = w.reconcile();
    assert_eq!(
        p.actions
            .first()
            .map(|a| matches!(a, Action::SetWeight { weight: 0, .. })),
        Some(true),
        "{:?}",
        p.actions
    );
    w.run(5);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(stable.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.rs[&canary].replicas, 0);
    assert_eq!(w.services["web-canary"].as_deref(), Some(stable.as_str()));
    assert!(reasons(&w.events).contains(&"SkipSteps"));
}

#[test]
fn a_template_change_mid_rollout_restarts_the_steps_on_a_new_replicaset() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    let v2 = w.canary_hash();
    w.run(10);
    w.advance(3);
    w.run(10);
    assert_eq!(w.weight, Some(50));
    w.update_image("web:3");
    let v3 = w.canary_hash();
    w.frozen.push(v3.clone());
    w.run(10);
    // v3 has no available pods: the weight had to drop to 0 before the canary Service moved.
    assert_eq!(w.weight, Some(0));
    assert_eq!(w.status().current_step_index, Some(0));
    assert_eq!(w.services["web-canary"].as_deref(), Some(v3.as_str()));
    assert_eq!(
        w.rs[&v2].replicas, 0,
        "the superseded canary is scaled down"
    );
    w.frozen.clear();
    w.settle();
    w.run_to_end(100);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v3.as_str()));
}

#[test]
fn changing_the_steps_restarts_them() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    w.advance(3);
    w.run(10);
    assert_eq!(w.status().current_step_index, Some(3));
    if let Some(c) = w.ro.spec.strategy.canary.as_mut() {
        c.steps = Some(vec![
            crate::api::CanaryStep::set_weight(30),
            crate::api::CanaryStep::pause(None),
        ]);
    }
    w.run(10);
    assert_eq!(w.status().current_step_index, Some(1));
    assert_eq!(w.weight, Some(30));
}

#[test]
fn promote_full_skips_remaining_steps() {
    let mut w = World::new(INDEFINITE);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.run(10);
    let mut st = w.status();
    st.promote_full = Some(true);
    st.pause_conditions.clear();
    w.ro.status = Some(st);
    w.run(10);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(new.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(st.promote_full, None);
    let seq: Vec<i32> = w.weights.iter().map(|(wt, _)| *wt).collect();
    assert_eq!(
        seq,
        vec![20, 0],
        "promote --full keeps the weight until the canary is full, then promotes"
    );
}

#[test]
fn spec_paused_blocks_progress() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    w.ro.spec.paused = Some(true);
    w.run(10);
    w.advance(10);
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(w.status().current_step_index, Some(0));
    w.ro.spec.paused = None;
    w.run(10);
    assert!(w.status().current_step_index >= Some(1));
}

#[test]
fn nothing_to_do_when_healthy_means_no_actions_and_an_identical_status() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let before = w.status();
    let p = w.reconcile();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(p.status, before);
}

const BASIC: &str = r#"
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
      steps:
      - setWeight: 10
      - pause: {}
      - setWeight: 50
"#;

#[test]
fn basic_canary_splits_replicas() {
    let mut w = World::new(BASIC);
    w.deploy_first();
    let old = w.canary_hash();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.run(10);
    assert_eq!((w.rs[&new].replicas, w.rs[&old].replicas), (1, 9));
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    let mut st = w.status();
    st.pause_conditions.clear();
    w.ro.status = Some(st);
    w.run_to_end(50);
    assert_eq!(w.rs[&new].replicas, 10);
    assert_eq!(w.rs[&old].replicas, 0);
    assert!(w.weights.is_empty(), "no router, no weights");
}

#[test]
fn a_failed_step_analysis_aborts_and_an_inconclusive_one_pauses() {
    const WITH_ANALYSIS: &str = r#"
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
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: error-rate}]}
      - setWeight: 100
"#;
    let mut w = World::new(WITH_ANALYSIS);
    w.deploy_first();
    w.update_image("web:2");
    let p = w.run(10);
    assert_eq!(w.status().current_step_index, Some(1));
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::CreateAnalysisRun {
            kind: AnalysisKind::Step(1),
            ..
        }
    )));
    w.analysis = Some(ObservedAnalysisRun {
        name: "web-x-2-1".into(),
        kind: AnalysisKind::Step(1),
        hash: w.canary_hash(),
        phase: AnalysisPhase::Running,
        message: None,
        steps_hash: None,
    });
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Progressing));

    let mut inconclusive = w.clone();
    inconclusive.analysis = Some(ObservedAnalysisRun {
        name: "web-x-2-1".into(),
        kind: AnalysisKind::Step(1),
        hash: w.canary_hash(),
        phase: AnalysisPhase::Inconclusive,
        message: None,
        steps_hash: None,
    });
    inconclusive.run(5);
    assert_eq!(inconclusive.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(
        inconclusive.status().pause_conditions[0].reason,
        PauseReason::InconclusiveAnalysisRun
    );
    assert_eq!(inconclusive.weight, Some(50));

    w.analysis = Some(ObservedAnalysisRun {
        name: "web-x-2-1".into(),
        kind: AnalysisKind::Step(1),
        hash: w.canary_hash(),
        phase: AnalysisPhase::Failed,
        message: Some(
            "Metric \"error-rate\" assessed Failed due to failed (4) > failureLimit (3)".into(),
        ),
        steps_hash: None,
    });
    let p = w.reconcile();
    assert!(
        matches!(p.actions.first(), Some(Action::SetWeight { weight: 0, .. })),
        "{:?}",
        p.actions
    );
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("error-rate") && m.contains("failureLimit")),
        "{:?}",
        st.message
    );
}

#[test]
fn canary_pods_missing_the_progress_deadline_degrade_and_abort_when_asked() {
    let mut w = World::new(ISTIO);
    w.ro.spec.progress_deadline_seconds = Some(60);
    w.deploy_first();
    w.update_image("web:2");
    let new = w.canary_hash();
    w.frozen.push(new.clone());
    let p = w.run(5);
    let wait = p.requeue_after.expect("requeue at the deadline");
    assert!(wait.as_secs() <= 60, "{wait:?}");
    w.advance(30);
    w.run(3);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Progressing),
        "within the deadline"
    );
    w.advance(31);
    w.run(3);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let c = st.condition("Progressing").expect("Progressing");
    assert_eq!(c.reason, "ProgressDeadlineExceeded");
    assert!(
        c.message.contains("has timed out progressing"),
        "{}",
        c.message
    );
    assert_eq!(st.abort, None, "no abort without progressDeadlineAbort");

    let mut w2 = World::new(ISTIO);
    w2.ro.spec.progress_deadline_seconds = Some(60);
    w2.ro.spec.progress_deadline_abort = Some(true);
    w2.deploy_first();
    w2.update_image("web:2");
    w2.frozen.push(w2.canary_hash());
    w2.run(5);
    w2.advance(61);
    w2.run(5);
    let st = w2.status();
    assert_eq!(st.abort, Some(true));
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert_eq!(w2.weight, Some(0));
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("timed out progressing")),
        "{:?}",
        st.message
    );
}

#[test]
fn old_replica_sets_beyond_the_revision_history_limit_are_deleted_oldest_first() {
    let yaml = ISTIO.replace(
        "  replicas: 5\n",
        "  replicas: 5\n  revisionHistoryLimit: 2\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    for v in 2..=6 {
        // Old ones wait out their scale-down delay before they may go.
        w.update_and_settle(&format!("web:{v}"));
        let old = w.rs.len() - 1;
        assert!(
            old <= 2,
            "after web:{v}: {old} old ReplicaSets kept, limit 2"
        );
    }
    let stable = w.status().stable_rs.expect("stable");
    let mut revisions: Vec<i64> = w.rs.values().filter_map(|r| r.revision).collect();
    revisions.sort();
    assert_eq!(revisions, vec![4, 5, 6], "the newest survive");
    assert!(w.rs.contains_key(&stable));
}

#[test]
fn a_limit_of_zero_keeps_only_stable_and_desired_and_never_a_shrinking_one() {
    let yaml = ISTIO.replace(
        "  replicas: 5\n",
        "  replicas: 5\n  revisionHistoryLimit: 0\n",
    );
    let mut w = World::new(&yaml);
    w.deploy_first();
    w.update_image("web:2");
    w.run_to_end(60);
    // Promoted: the previous stable is still within its scale-down delay, so it stays.
    let p = w.reconcile();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::DeleteReplicaSet { .. })),
        "{:?}",
        p.actions
    );
    assert_eq!(w.rs.len(), 2);
    w.advance(60);
    w.run(10);
    assert_eq!(w.rs.len(), 1, "{:?}", w.rs.keys());
}

#[test]
fn the_history_is_pruned_only_past_the_default_limit_of_ten() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    for v in 2..=12 {
        w.update_and_settle(&format!("web:{v}"));
    }
    assert_eq!(w.rs.len(), 11, "stable + 10 old");
}

/// The Progressing condition names the new ReplicaSet the same way before and after it exists:
/// a message that changed when the ReplicaSet appeared cost one status write per revision.
#[test]
fn progressing_names_the_new_replica_set_before_it_exists() {
    use crate::api::conditions::types;
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    let hash = w.canary_hash();
    w.frozen.push(hash.clone());
    let creating = w.reconcile();
    assert!(
        creating
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet { .. })),
        "{:?}",
        creating.actions
    );
    let progressing = |st: &crate::api::RolloutStatus| {
        st.condition(types::PROGRESSING)
            .map(|c| c.message.clone())
            .expect("Progressing condition")
    };
    assert_eq!(
        progressing(&creating.status),
        format!("ReplicaSet \"web-{hash}\" is progressing.")
    );
    // The ReplicaSet now exists, its pods not yet available: nothing in the status moves.
    let next = w.reconcile();
    assert_eq!(progressing(&next.status), progressing(&creating.status));
    assert!(
        !crate::controller::report::status_changed(&creating.status, &next.status),
        "{:?}\n{:?}",
        creating.status,
        next.status
    );
}

/// Finishing a `setWeight` step that a pause follows starts the pause in the same plan: one
/// status write, not two; and the pause still lasts its full duration.
#[test]
fn a_pause_after_a_weight_starts_with_the_step_that_reached_it() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.update_image("web:2");
    for _ in 0..10 {
        let before = w.status();
        let p = w.reconcile();
        if p.status.current_step_index == Some(1) {
            assert_eq!(before.current_step_index, Some(0));
            assert_eq!(w.weight, Some(10));
            assert_eq!(p.status.pause_conditions.len(), 1, "{:?}", p.status);
            assert_eq!(p.status.phase, Some(RolloutPhase::Paused));
            let wait = p.requeue_after.expect("woken when the pause ends");
            assert!(wait.as_millis() >= 2000, "{wait:?}");
            // Within the pause nothing moves; past it, the next step.
            w.advance(1);
            assert_eq!(w.reconcile().status.current_step_index, Some(1));
            w.advance(2);
            assert_eq!(w.reconcile().status.current_step_index, Some(2));
            return;
        }
    }
    panic!("step 0 never completed: {:?}", w.status());
}

/// A pause started with the step before it keeps any earlier wake-up the same plan asked for:
/// here an old ReplicaSet's scale-down deadline, due long before the pause ends.
#[test]
fn a_pause_started_with_its_step_keeps_an_earlier_wake_up() {
    let mut w = World::new(&ISTIO.replacen("pause: {duration: 2s}", "pause: {duration: 600s}", 1));
    w.deploy_first();
    w.update_image("web:2");
    w.run_to_end(60);
    // web:1 now waits out its scale-down delay; web:3 starts before it is over.
    w.update_image("web:3");
    for _ in 0..10 {
        let p = w.reconcile();
        if p.status.current_step_index == Some(1) {
            assert_eq!(p.status.phase, Some(RolloutPhase::Paused));
            let wait = p.requeue_after.expect("a wake-up");
            assert!(
                wait.as_secs() < 600,
                "the scale-down deadline was dropped: {wait:?}"
            );
            return;
        }
    }
    panic!("step 0 never completed: {:?}", w.status());
}

/// A Rollout deployed by Aviary 0.2, whose ReplicaSet, Services and status carry the hash that
/// version computed, is at rest after the upgrade: no new ReplicaSet, no pod restarted, nothing
/// written. Its next template rolls out from it as from any stable revision.
#[test]
fn a_revision_labelled_by_aviary_0_2_is_kept_across_the_upgrade() {
    let mut w = World::new(ISTIO);
    w.deploy_first();
    let now = w.canary_hash();
    let legacy = crate::plan::legacy_pod_template_hash(&w.ro.spec.template, None);
    assert_ne!(now, legacy);
    // What Aviary 0.2 left.
    let mut rs = w.rs.remove(&now).expect("the first revision");
    rs.name = format!("web-{legacy}");
    rs.hash = legacy.clone();
    w.rs.insert(legacy.clone(), rs);
    for s in w.services.values_mut() {
        *s = Some(legacy.clone());
    }
    let mut st = w.status();
    st.stable_rs = Some(legacy.clone());
    st.current_pod_hash = Some(legacy.clone());
    w.ro.status = Some(st.clone());

    let plan = w.reconcile();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let st = w.status();
    assert_eq!(st.current_pod_hash.as_deref(), Some(legacy.as_str()));
    assert_eq!(st.stable_rs.as_deref(), Some(legacy.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    let again = w.reconcile();
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert_eq!(w.status(), st, "at rest");

    // Its ReplicaSet deleted by someone: recreated under the name everything knows it by.
    w.rs.remove(&legacy);
    w.run_to_end(40);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(st.stable_rs.as_deref(), Some(legacy.as_str()));
    assert_eq!(w.rs[&legacy].replicas, 5);
    assert!(
        !w.rs.contains_key(&now),
        "no second ReplicaSet for one template"
    );

    w.update_image("web:2");
    let next = w.canary_hash();
    w.run_to_end(100);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(next.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.services["web-stable"].as_deref(), Some(next.as_str()));
    w.advance(31);
    w.run(5);
    assert_eq!(w.rs[&legacy].replicas, 0, "the old revision is scaled down");
}

fn with_rollback_window(revisions: i32) -> String {
    ISTIO.replace(
        "  replicas: 5\n",
        &format!("  replicas: 5\n  rollbackWindow: {{revisions: {revisions}}}\n"),
    )
}

/// `rollbackWindow`: back to the revision just before the stable one, the steps are skipped —
/// the earlier revision goes out at once, capacity before traffic, as with `promote --full`.
#[test]
fn a_rollback_within_the_window_skips_the_steps() {
    let mut w = World::new(&with_rollback_window(1));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_and_settle("web:2");
    assert_ne!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    w.weights.clear();
    w.events.clear();

    w.update_image("web:1");
    let plan = w.reconcile();
    assert_eq!(plan.status.promote_full, Some(true));
    let skip = plan
        .events
        .iter()
        .find(|e| e.reason == "SkipSteps")
        .expect("a SkipSteps Event");
    assert!(skip.message.contains("revision 1"), "{}", skip.message);
    w.run_to_end(60);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    let seq: Vec<i32> = w.weights.iter().map(|(wt, _)| *wt).collect();
    assert!(
        !seq.contains(&10) && !seq.contains(&50),
        "no step weights: {seq:?}"
    );
    for (weight, available) in &w.weights {
        assert!(
            routed_canary_replicas_for_test(5, *weight) <= *available,
            "weight {weight} given to a revision with {available} available pods"
        );
    }
}

/// Outside the window (a revision was created between), a rollback is an update like any other.
#[test]
fn a_rollback_outside_the_window_goes_through_the_steps() {
    let mut w = World::new(&with_rollback_window(1));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_and_settle("web:2");
    w.update_and_settle("web:3");
    w.weights.clear();
    w.update_image("web:1");
    let plan = w.reconcile();
    assert_eq!(plan.status.promote_full, None);
    w.run_to_end(100);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    let seq: Vec<i32> = w.weights.iter().map(|(wt, _)| *wt).collect();
    assert_eq!(seq, vec![10, 50, 100, 0], "the steps' weights");
}

/// Forward is never a rollback: a newer revision than the stable one goes through the steps.
#[test]
fn a_window_never_skips_the_steps_of_a_newer_revision() {
    let spec: crate::api::RolloutSpec = rollout(&with_rollback_window(3)).spec;
    assert!(spec.rollback_within_window(1, 3, &[2]));
    assert!(!spec.rollback_within_window(3, 1, &[2]));
    assert!(!spec.rollback_within_window(1, 5, &[2, 3, 4]));
    assert!(spec.rollback_within_window(2, 5, &[1, 3, 4]));
    let none: crate::api::RolloutSpec = rollout(ISTIO).spec;
    assert!(!none.rollback_within_window(1, 2, &[]));
}

/// helper-33 F1: a rollback inside the window with background analysis: no run judges the
/// earlier revision (a failing one would have aborted the rollback back to the bad release).
#[test]
fn a_rollback_within_the_window_runs_no_background_analysis() {
    let yaml = with_rollback_window(1).replace(
        "      steps:\n",
        "      analysis: {templates: [{templateName: error-rate}]}\n      steps:\n",
    );
    let mut w = World::new(&yaml);
    w.run_analysis = true;
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_image("web:2");
    w.run(5);
    let v2 = w.canary_hash();
    assert!(
        w.runs
            .iter()
            .any(|r| r.kind == AnalysisKind::Background && r.hash == v2),
        "the update's background run"
    );
    w.update_and_settle("web:2");
    w.update_image("web:1");
    w.run_to_end(60);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(st.abort, None);
    assert!(
        !w.runs
            .iter()
            .chain(&w.retired)
            .any(|r| r.kind == AnalysisKind::Background && r.hash == v1),
        "no background run of the rollback: {:?}",
        w.runs
    );
}

/// helper-33 F2: the steps edited while a rollback inside the window goes out (a revert in two
/// writes): still inside the window, still skipped.
#[test]
fn steps_edited_during_a_rollback_within_the_window_keep_it_skipped() {
    let mut w = World::new(&with_rollback_window(1));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_and_settle("web:2");
    w.update_image("web:1");
    // Its pods not ready yet: the rollback is still going out when the steps change.
    w.frozen.push(v1.clone());
    assert_eq!(w.reconcile().status.promote_full, Some(true));
    let canary = w.ro.spec.strategy.canary.as_mut().expect("canary");
    canary
        .steps
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(serde_json::json!({"pause": {}})).expect("step"));
    assert_eq!(w.reconcile().status.promote_full, Some(true));
    w.frozen.clear();
    w.weights.clear();
    w.run_to_end(60);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    assert!(!w.weights.iter().any(|(wt, _)| *wt == 10 || *wt == 50));
}

/// scaleDownDelayRevisionLimit: only that many old ReplicaSets keep their pods through
/// `scaleDownDelaySeconds`, the newest first; older ones go at once (0: none waits).
#[test]
fn the_scale_down_delay_revision_limit_keeps_only_the_newest_old_replica_sets() {
    let with_limit = |limit: i32| {
        ISTIO.replace(
            "      stableService: web-stable\n",
            &format!(
                "      stableService: web-stable\n      scaleDownDelayRevisionLimit: {limit}\n"
            ),
        )
    };
    let mut w = World::new(&with_limit(1));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_image("web:2");
    let v2 = w.canary_hash();
    w.run_to_end(100);
    assert_eq!(w.rs[&v1].replicas, 5, "v1 waits out its delay");
    assert!(w.rs[&v1].scale_down_at.is_some());
    w.update_image("web:3");
    w.run_to_end(100);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 5, "v2, the newest old one, waits");
    assert!(w.rs[&v2].scale_down_at.is_some());
    assert_eq!(w.rs[&v1].replicas, 0, "v1 is past the limit: gone at once");

    // Ranked by when traffic left, not by revision: after an undo to v1 (v2 waiting), v3's
    // promotion keeps v1 — the revision proxies may still send to — and v2 goes.
    let mut w = World::new(&with_limit(1));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_image("web:2");
    let v2 = w.canary_hash();
    w.run_to_end(100);
    w.update_image("web:1");
    w.run_to_end(100);
    w.run(5);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    assert!(w.rs[&v2].scale_down_at.is_some(), "v2 waits after the undo");
    w.update_image("web:3");
    w.run_to_end(100);
    w.run(5);
    assert_eq!(w.rs[&v1].replicas, 5, "v1, which traffic just left, waits");
    assert_eq!(w.rs[&v2].replicas, 0, "v2 left earlier: past the limit");

    let mut w = World::new(&with_limit(0));
    w.deploy_first();
    let v1 = w.canary_hash();
    w.update_image("web:2");
    w.run_to_end(100);
    w.run(5);
    assert_eq!(w.rs[&v1].replicas, 0, "limit 0: no old ReplicaSet waits");
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

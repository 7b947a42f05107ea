//! The adversarial simulation of the planner: property-based (`proptest`) scenarios drive the
//! pure planner against a simulated cluster ([`world`]) — pods that become ready after random
//! delays and die at random, ReplicaSets deleted, analysis verdicts of every kind, the plugin's
//! writes as the patches it really makes (two people promoting at once included), failed writes,
//! refused status writes and a lagging ReplicaSet cache — and check the invariants after every
//! single write, then that the rollout settles. Both strategies are covered: the canary (no
//! router, Istio host, Istio subset; invariants of `docs/canary.md` in [`invariants`]) and
//! blue-green (with and without a preview Service, pre- and post-promotion analysis, manual,
//! immediate and timed promotion, scale-down delays; [`bluegreen`], invariants of
//! `docs/bluegreen.md` in [`bluegreen_invariants`]).
//!
//! `cargo test --lib simulation` runs `AVIARY_SIM_CASES` canary scenarios (default 3,000) and
//! half as many blue-green ones, from a fixed seed (`AVIARY_SIM_SEED=random` or a number explores
//! further; `AVIARY_SIM_TRACE=1` prints every event). proptest shrinks a failure to a minimal
//! sequence, and each one found is kept as a named regression case ([`regressions`]).

mod bluegreen;
mod bluegreen_invariants;
mod invariants;
mod regressions;
mod world;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::api::{AnalysisPhase, Rollout, RolloutPhase, WorkloadScaleDown};
use world::{Routing, World};

/// One step of a canary, as the generator picks it.
#[derive(Clone, Debug)]
enum StepChoice {
    Weight(i32),
    Pause(Option<u8>),
    Analysis,
    CanaryScale(i32),
}

#[derive(Clone, Debug)]
struct SpecChoice {
    routing: Routing,
    replicas: i32,
    steps: Vec<StepChoice>,
    /// Steps a user may switch to mid-rollout.
    other_steps: Vec<StepChoice>,
    surge: Value,
    unavailable: Value,
    background: Option<i32>,
    scale_down_delay: i32,
    abort_scale_down_delay: i32,
    deadline_abort: bool,
    /// `minPodsPerReplicaSet` (routed only).
    min_pods: Option<i32>,
    /// `rollbackWindow.revisions`.
    rollback_window: Option<i32>,
    /// `dynamicStableScale` (routed only; it then goes without `scaleDownDelaySeconds`).
    dynamic: bool,
    /// `scaleDownDelayRevisionLimit`.
    delay_limit: Option<i32>,
    /// `replicaProgressThreshold`: Percent (true) or Pods, and its value.
    threshold: Option<(bool, i32)>,
    /// A blue-green Rollout instead (the canary-only fields above are then unused).
    blue_green: Option<bluegreen::BlueGreenChoice>,
    /// `workloadRef`: the Deployment's `scaleDown` and the pods it has when the Rollout starts.
    workload: Option<(WorkloadScaleDown, i32)>,
    /// `trafficRouting.maxTrafficWeight` (routed only): the steps' weights are scaled to it.
    total: Option<i32>,
}

#[derive(Clone, Copy, Debug)]
enum UserAct {
    Abort,
    Retry,
    Promote,
    PromoteFull,
    /// Two people run `promote` on the same read of the Rollout.
    DoublePromote,
    Pause,
    Resume,
    NewTemplate,
    Undo,
    /// Back to the `i`-th newest earlier release (modulo their number): rollbacks of every
    /// distance, for `rollbackWindow`.
    UndoTo(u8),
    EditSteps,
    Scale(i32),
}

#[derive(Clone, Debug)]
enum Ev {
    Reconcile,
    Tick(u8),
    Kill(u8, u8),
    DeleteRs(u8),
    Verdict(u8, AnalysisPhase),
    /// The next reconcile's write at this index fails.
    Fail(u8),
    /// The next reconcile's status write is refused.
    StatusConflict,
    /// The next reconcile reads ReplicaSets as they were before the last one's writes.
    StaleRs,
    User(UserAct),
    /// Someone else edits a weight, a Service selector or a subset (see
    /// [`World::external_edit`]).
    External(u8, u8),
    /// A user acts between the controller's writes and its status write.
    UserMidReconcile(UserAct),
}

/// A step as the spec has it; a weight (a percentage) scaled to `total`.
fn step_json(s: &StepChoice, total: i32) -> Value {
    match s {
        StepChoice::Weight(w) => json!({"setWeight": w * total / 100}),
        StepChoice::Pause(None) => json!({"pause": {}}),
        StepChoice::Pause(Some(d)) => json!({"pause": {"duration": format!("{d}s")}}),
        StepChoice::Analysis => json!({"analysis": {"templates": [{"templateName": "rate"}]}}),
        StepChoice::CanaryScale(r) => json!({"setCanaryScale": {"replicas": r}}),
    }
}

fn rollout(spec: &SpecChoice, image: &str, steps: &[StepChoice]) -> Rollout {
    let total = match (spec.total, spec.routing) {
        (Some(t), Routing::Host | Routing::Subset) => t,
        _ => 100,
    };
    let mut canary = json!({
        "canaryService": world::CANARY_SVC,
        "stableService": world::STABLE_SVC,
        "steps": steps.iter().map(|s| step_json(s, total)).collect::<Vec<_>>(),
        "maxSurge": spec.surge,
        "maxUnavailable": spec.unavailable,
        "scaleDownDelaySeconds": spec.scale_down_delay,
        "abortScaleDownDelaySeconds": spec.abort_scale_down_delay,
        "scaleDownDelayRevisionLimit": spec.delay_limit,
        "canaryMetadata": {"labels": {"role": "canary"}, "annotations": {"canary": "yes"}},
        "stableMetadata": {"labels": {"role": "stable"}},
    });
    match spec.routing {
        Routing::None => {}
        Routing::Host => {
            canary["trafficRouting"] = json!({"istio": {"virtualService": {"name": "web"}}});
        }
        Routing::Subset => {
            canary["trafficRouting"] = json!({"istio": {
                "virtualService": {"name": "web"},
                "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
            }});
        }
    }
    if total != 100 {
        // NGINX's alone at admission; the planner's arithmetic is the same for every router.
        canary["trafficRouting"]["maxTrafficWeight"] = json!(total);
    }
    if let (Some(n), true) = (spec.min_pods, spec.routing != Routing::None) {
        canary["minPodsPerReplicaSet"] = json!(n);
    }
    if spec.dynamic && spec.routing != Routing::None {
        canary["dynamicStableScale"] = json!(true);
        if let Some(c) = canary.as_object_mut() {
            c.remove("scaleDownDelaySeconds");
        }
    }
    if let Some((percent, value)) = spec.threshold {
        let kind = if percent { "Percent" } else { "Pods" };
        canary["replicaProgressThreshold"] = json!({"type": kind, "value": value});
    }
    if let Some(start) = spec.background {
        canary["analysis"] = json!({"templates": [{"templateName": "bg"}], "startingStep": start});
    }
    let strategy = match &spec.blue_green {
        Some(bg) => json!({"blueGreen": bluegreen::strategy_json(spec, bg)}),
        None => json!({"canary": canary}),
    };
    let value = json!({
        "apiVersion": "aviary.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "sim", "generation": 1, "uid": "u1", "resourceVersion": "1"},
        "spec": {
            "replicas": spec.replicas,
            "progressDeadlineSeconds": 60,
            "progressDeadlineAbort": spec.deadline_abort,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "strategy": strategy,
            "rollbackWindow": spec.rollback_window.map(|n| json!({"revisions": n})),
            // The planner reads the template where the shell put the Deployment's
            // (`plan::workload::resolve`): inline here.
            "workloadRef": spec.workload.map(|(mode, _)| json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "name": world::DEPLOYMENT, "scaleDown": mode,
            })),
        },
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("simulated Rollout: {e}"))
}

/// Applies a JSON merge patch to the Rollout, as the API server does.
fn merge(ro: &mut Rollout, patch: &Value) {
    let mut doc = serde_json::to_value(&*ro).unwrap_or(Value::Null);
    let mut patch = patch.clone();
    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    json_patch::merge(&mut doc, &patch);
    *ro = serde_json::from_value(doc).unwrap_or_else(|e| panic!("patched Rollout: {e}"));
}

/// What the scenario driver keeps besides the world.
struct Driver {
    w: World,
    spec: SpecChoice,
    image: u32,
    /// Images released so far, for undo.
    history: Vec<u32>,
    edited: bool,
}

impl Driver {
    fn set_template(&mut self, image: u32) {
        self.image = image;
        let fresh = rollout(&self.spec, &format!("web:{image}"), self.steps());
        self.w.ro.spec.template = fresh.spec.template;
        self.bump();
    }

    fn steps(&self) -> &[StepChoice] {
        if self.edited {
            &self.spec.other_steps
        } else {
            &self.spec.steps
        }
    }

    fn blue_green(&self) -> bool {
        self.spec.blue_green.is_some()
    }

    /// Whether a `promote` patch lets the rollout past a gate: for a canary any patch (an
    /// unpause resumes its steps); for blue-green only one that clears pause conditions or
    /// promotes fully (an unpause alone passes no pause, analysis or promotion).
    fn promotes(&self, p: &crate::cli::actions::PromotePlan) -> bool {
        p.status.is_some() || (p.spec.is_some() && !self.blue_green())
    }

    fn bump(&mut self) {
        self.w.ro.metadata.generation = self.w.ro.metadata.generation.map(|g| g + 1);
    }

    fn user(&mut self, act: UserAct) {
        let ro = &mut self.w.ro;
        match act {
            // As `kubectl aviary abort` patches it.
            UserAct::Abort => merge(ro, &json!({"status": {"abort": true, "promoteFull": null}})),
            UserAct::Retry => {
                if let Some(st) = ro.status.as_ref().filter(|s| s.is_aborted()) {
                    // A new attempt once the controller acted on the abort; a retry before it
                    // saw the abort takes the abort back.
                    let acted = st.aborted_at.is_some();
                    merge(ro, &json!({"status": {"abort": null}}));
                    if acted {
                        self.w.attempt_from = self.w.reconciles + 1;
                        self.w.human_promoted = false;
                        self.w.bg_pause_start = None;
                    }
                }
            }
            UserAct::Promote | UserAct::PromoteFull => {
                let full = matches!(act, UserAct::PromoteFull);
                if let Ok(p) = crate::cli::actions::promote_plan(ro, full) {
                    if self.promotes(&p) {
                        self.w.human_promoted = true;
                    }
                    for patch in [p.spec, p.status].into_iter().flatten() {
                        merge(&mut self.w.ro, &patch);
                    }
                }
            }
            UserAct::DoublePromote => {
                let seen = ro.clone();
                let plans: Vec<_> = (0..2)
                    .filter_map(|_| crate::cli::actions::promote_plan(&seen, false).ok())
                    .collect();
                for (i, p) in plans.into_iter().enumerate() {
                    if self.promotes(&p) {
                        self.w.human_promoted = true;
                    }
                    if let Some(spec) = &p.spec {
                        merge(&mut self.w.ro, spec);
                    }
                    if let Some(status) = &p.status {
                        // The second writer's resourceVersion precondition fails once the
                        // first wrote.
                        let guarded = status.pointer("/metadata/resourceVersion").is_some();
                        if i == 0 || !guarded {
                            merge(&mut self.w.ro, status);
                        }
                    }
                }
            }
            UserAct::Pause => merge(ro, &json!({"spec": {"paused": true}})),
            UserAct::Resume => {
                if ro.spec.is_paused() && self.spec.blue_green.is_none() {
                    self.w.human_promoted = true;
                }
                merge(ro, &json!({"spec": {"paused": false}}))
            }
            UserAct::NewTemplate => {
                let next = self.history.iter().max().copied().unwrap_or(1) + 1;
                self.history.push(next);
                self.set_template(next);
            }
            UserAct::Undo => {
                // Back to the release before the current one.
                let prev = self
                    .history
                    .iter()
                    .rev()
                    .find(|i| **i != self.image)
                    .copied();
                if let Some(prev) = prev {
                    self.history.push(prev);
                    self.set_template(prev);
                }
            }
            UserAct::UndoTo(i) => {
                let mut earlier: Vec<u32> = vec![];
                for image in self.history.iter().rev() {
                    if *image != self.image && !earlier.contains(image) {
                        earlier.push(*image);
                    }
                }
                if let Some(prev) = earlier.get(usize::from(i) % earlier.len().max(1)).copied() {
                    self.history.push(prev);
                    self.set_template(prev);
                }
            }
            UserAct::EditSteps if self.spec.blue_green.is_some() => {}
            UserAct::EditSteps => {
                self.edited = !self.edited;
                let total = self.w.total();
                let steps: Vec<Value> = self.steps().iter().map(|s| step_json(s, total)).collect();
                merge(
                    &mut self.w.ro,
                    &json!({"spec": {"strategy": {"canary": {"steps": steps}}}}),
                );
                self.bump();
            }
            UserAct::Scale(n) => {
                merge(ro, &json!({"spec": {"replicas": n}}));
                self.bump();
            }
        }
    }

    fn reconcile(&mut self) -> Result<crate::plan::Plan, String> {
        // An abort acted on is superseded by a new template; one not acted on yet is not.
        let st = self.w.status();
        // Traffic returns only to capacity that is there: with the stable ReplicaSet deleted,
        // or all its pods gone, there is nothing to return to yet.
        let stable_exists = st
            .stable_rs
            .as_ref()
            .is_some_and(|h| self.w.available(h) > 0);
        // An abort of the stable revision itself (the template went back to it) has nothing to
        // abort: the planner ignores it, and the weight follows the steady state's rules.
        let rolling_out = st.stable_rs.as_deref() != Some(self.w.current_hash().as_str());
        let aborting = stable_exists
            && rolling_out
            && (crate::plan::abort_pending(&self.w.ro)
                || (st.abort == Some(true)
                    && st.current_pod_hash.as_deref() == Some(self.w.current_hash().as_str())));
        let failing = self.w.fail_at.is_some() || self.w.status_conflict;
        let stale = self.w.stale_rs.is_some();
        let start = self.blue_green().then(|| self.w.clone());
        // With dynamicStableScale the stable has shrunk: the weight comes down as far as the
        // stable's available pods carry — to the lowest declared weight (or 0) whose stable
        // share they hold, never to one they don't.
        // So too whenever the stable ReplicaSet is below full size (never there, not lost).
        let dynamic = self
            .w
            .ro
            .spec
            .canary()
            .is_some_and(|c| c.dynamic_stable_scale());
        let r = self.w.replicas();
        // The stable's pods for a canary weight: its share, and minPodsPerReplicaSet.
        let min_pods = self
            .w
            .ro
            .spec
            .canary()
            .and_then(|c| c.min_pods_per_replica_set)
            .unwrap_or(0);
        let total = self.w.total();
        let stable_share =
            |w: i32| match crate::plan::replicas::routed_replicas_of(r, total - w, total) {
                0 => 0,
                n => n.max(min_pods).min(r),
            };
        let reachable = match st.stable_rs.as_deref() {
            Some(stable)
                if dynamic
                    || (self.w.routing != Routing::None
                        && self.w.rs.get(stable).is_some_and(|x| x.replicas < r)) =>
            {
                let avail = self.w.available(stable);
                self.w
                    .ro
                    .spec
                    .steps()
                    .iter()
                    .filter_map(|s| s.set_weight)
                    .chain([0])
                    .filter(|w| *w <= self.w.weight && stable_share(*w) <= avail)
                    .min()
                    .unwrap_or(self.w.weight)
            }
            _ => 0,
        };
        let plan = self.w.reconcile(&mut invariants::check_write)?;
        if let Some(start) = start {
            bluegreen::check_converge(&start, &self.w, failing || stale)?;
        }
        // I5: an abort persisted when the reconcile began reaches weight 0 in that converge
        // (with dynamicStableScale, the weight its stable can carry).
        if aborting
            && !failing
            && !stale
            && self.w.routing != Routing::None
            && self.w.weight > reachable
        {
            return Err(format!(
                "I5: the rollout was aborted, yet the weight is {} after a full converge (the stable carries {reachable})\n  world: {}\n  actions: {:?}",
                self.w.weight,
                self.w.describe(),
                plan.actions
            ));
        }
        Ok(plan)
    }

    fn event(&mut self, ev: &Ev) -> Result<(), String> {
        match ev {
            Ev::Reconcile => {
                self.reconcile()?;
            }
            Ev::Tick(s) => self.w.advance(i64::from(*s)),
            Ev::Kill(i, j) => self.w.kill_pod(*i as usize, *j as usize),
            Ev::DeleteRs(i) => self.w.delete_rs(*i as usize),
            Ev::External(what, i) => self.w.external_edit(*what, *i),
            Ev::Verdict(i, phase) => self.w.verdict(*i as usize, *phase),
            Ev::Fail(k) => self.w.fail_at = Some(*k as usize),
            Ev::StatusConflict => self.w.status_conflict = true,
            Ev::StaleRs => {
                let snapshot = self.w.observed().replica_sets;
                self.reconcile()?;
                self.w.stale_rs = Some(snapshot);
                self.reconcile()?;
            }
            Ev::User(act) => self.user(*act),
            Ev::UserMidReconcile(act) => {
                self.w.status_conflict = true;
                self.reconcile()?;
                self.user(*act);
            }
        }
        Ok(())
    }

    /// Nothing more goes wrong: pods become ready, running analyses pass, time passes as the
    /// planner asks. The rollout must come to rest — Healthy, paused for a human, or Degraded
    /// with its reason — with nothing left to write (I7), and rest in a safe state.
    fn settle(&mut self) -> Result<(), String> {
        let mut quiet = 0;
        for _ in 0..400 {
            self.w.all_ready();
            self.w.verdict(0, AnalysisPhase::Successful);
            let before = self.w.status();
            let plan = self.reconcile()?;
            let still = plan.actions.is_empty() && plan.status == before;
            if still {
                match plan.requeue_after {
                    Some(d) => {
                        self.w.advance((d.as_millis() as i64 / 1000).max(1));
                        quiet = 0;
                    }
                    None => {
                        quiet += 1;
                        if quiet >= 2 {
                            self.check_rest()?;
                            // The safety resync, much later: at rest it changes nothing.
                            self.w.advance(900);
                            let before = self.w.status();
                            let again = self.reconcile()?;
                            if !again.actions.is_empty() || again.status != before {
                                return Err(format!(
                                    "I7: a resync at rest wrote {:?}",
                                    again.actions
                                ));
                            }
                            return Ok(());
                        }
                    }
                }
            } else {
                quiet = 0;
                self.w.advance(1);
            }
        }
        Err(format!(
            "I7: the rollout never came to rest: {:?}",
            self.w.status()
        ))
    }

    fn check_rest(&self) -> Result<(), String> {
        // W3: a Healthy Rollout has ended its Deployment's pods, unless told never to.
        if let (Some(d), Some((mode, _))) = (&self.w.deployment, self.spec.workload)
            && mode != WorkloadScaleDown::Never
            && self.w.status().phase == Some(RolloutPhase::Healthy)
            && (d.replicas != 0 || !d.scaled_down)
        {
            return Err(format!(
                "W3: at rest and Healthy, the Deployment ({mode:?}) still has {} pods (marked: {})",
                d.replicas, d.scaled_down
            ));
        }
        // Every ReplicaSet's pods carry their role's metadata, and only theirs.
        let hashes = crate::plan::rollout_template_hashes(&self.w.ro);
        for rs in self.w.rs.values() {
            let want = crate::plan::pod_metadata::desired(&self.w.ro, &hashes, &rs.hash);
            if rs.pod_metadata.as_ref() != want {
                return Err(format!(
                    "at rest, ReplicaSet {} carries role metadata {:?}, not {want:?}",
                    rs.hash, rs.pod_metadata
                ));
            }
        }
        if self.blue_green() {
            return bluegreen::check_rest(&self.w);
        }
        let st = self.w.status();
        let hash = self.w.current_hash();
        let stable = st.stable_rs.clone().unwrap_or_default();
        let r = self.w.replicas();
        let svc = |n: &str| self.w.services.get(n).cloned().flatten();
        if r > 0 {
            for d in self.w.destinations() {
                if let (true, Some(h)) = (d.weight > 0, d.hash.as_deref())
                    && self.w.available(h) == 0
                {
                    return Err(format!(
                        "I1: at rest ({:?}), the {} destination carries {} % on revision {h} with no pod",
                        st.phase, d.role, d.weight
                    ));
                }
            }
        }
        match st.phase {
            Some(RolloutPhase::Healthy) => {
                if stable != hash {
                    return Err(format!("Healthy, but stable {stable} is not {hash}"));
                }
                if svc(world::STABLE_SVC).as_deref() != Some(&stable)
                    || svc(world::CANARY_SVC).as_deref() != Some(&stable)
                {
                    return Err(format!(
                        "Healthy, but the Services select {:?} / {:?}, not {stable}",
                        svc(world::STABLE_SVC),
                        svc(world::CANARY_SVC)
                    ));
                }
                if self.w.routing == Routing::Subset
                    && (self.w.stable_subset.as_deref() != Some(&stable)
                        || self.w.canary_subset.as_deref() != Some(&stable))
                {
                    return Err(format!(
                        "Healthy, but the DestinationRule subsets select {:?} / {:?}, not {stable}",
                        self.w.stable_subset, self.w.canary_subset
                    ));
                }
                if self.w.weight != 0 {
                    return Err(format!("Healthy at canary weight {}", self.w.weight));
                }
                for rs in self.w.rs.values() {
                    let want = if rs.hash == stable { r } else { 0 };
                    if rs.replicas != want {
                        return Err(format!(
                            "Healthy, but ReplicaSet {} has {} replicas (want {want})",
                            rs.hash, rs.replicas
                        ));
                    }
                }
            }
            Some(RolloutPhase::Degraded) => {
                let why = st.message.clone().unwrap_or_default();
                if why.is_empty() {
                    return Err("Degraded without a message".into());
                }
                let lost = st
                    .condition(crate::api::conditions::types::PROGRESSING)
                    .is_some_and(|c| {
                        c.reason == crate::api::conditions::reasons::STABLE_REPLICA_SET_LOST
                    });
                if lost {
                    if self.w.rs.contains_key(&stable) {
                        return Err(format!("says stable {stable} is lost, yet it exists"));
                    }
                } else if self.w.routing != Routing::None
                    && self.w.weight != 0
                    && st.abort == Some(true)
                {
                    return Err(format!("aborted, at canary weight {}", self.w.weight));
                } else if st.abort == Some(true)
                    && svc(world::STABLE_SVC).as_deref() != Some(&stable)
                {
                    return Err(format!(
                        "aborted, but the stable Service selects {:?}, not stable {stable}",
                        svc(world::STABLE_SVC)
                    ));
                }
            }
            Some(RolloutPhase::Paused) => {
                if st.pause_conditions.is_empty() && !self.w.ro.spec.is_paused() {
                    return Err("Paused without a pause condition".into());
                }
            }
            other => {
                return Err(format!(
                    "I7: at rest in phase {other:?} ({:?}): waiting without saying why",
                    st.message
                ));
            }
        }
        Ok(())
    }
}

fn run(spec: &SpecChoice, delays: Vec<u8>, events: &[Ev]) -> Result<(), String> {
    let ro = rollout(spec, "web:1", &spec.steps);
    let mut world = World::new(ro, spec.routing, delays);
    world.deployment = spec.workload.map(|(_, replicas)| world::SimDeployment {
        replicas,
        scaled_down: false,
        original: None,
        initial: replicas,
    });
    let mut d = Driver {
        w: world,
        spec: spec.clone(),
        image: 1,
        history: vec![1],
        edited: false,
    };
    d.settle().map_err(|e| format!("first deploy: {e}"))?;
    d.user(UserAct::NewTemplate);
    let trace = std::env::var("AVIARY_SIM_TRACE").is_ok();
    for (i, ev) in events.iter().enumerate() {
        d.event(ev)
            .map_err(|e| format!("event {i} ({ev:?}): {e}"))?;
        if trace {
            let st = d.w.status();
            eprintln!(
                "{i} {ev:?}\n   {}\n   stable {:?} step {:?} abort {:?} phase {:?}",
                d.w.describe(),
                st.stable_rs,
                st.current_step_index,
                st.abort,
                st.phase
            );
        }
    }
    d.settle().map_err(|e| format!("settling: {e}"))
}

// ---- generators --------------------------------------------------------------------------

fn step_choice(routed: bool) -> BoxedStrategy<StepChoice> {
    let weight =
        prop::sample::select(vec![0, 10, 20, 25, 33, 50, 80, 100]).prop_map(StepChoice::Weight);
    let pause = prop::option::of(0u8..20).prop_map(StepChoice::Pause);
    let analysis = Just(StepChoice::Analysis);
    if routed {
        prop_oneof![
            4 => weight,
            2 => pause,
            1 => analysis,
            1 => (0i32..4).prop_map(StepChoice::CanaryScale),
        ]
        .boxed()
    } else {
        prop_oneof![4 => weight, 2 => pause, 1 => analysis].boxed()
    }
}

fn spec_choice() -> impl Strategy<Value = SpecChoice> {
    prop_oneof![
        Just(Routing::None),
        Just(Routing::Host),
        Just(Routing::Subset)
    ]
    .prop_flat_map(|routing| {
        let routed = routing != Routing::None;
        (
            1i32..7,
            prop::collection::vec(step_choice(routed), 1..6),
            prop::collection::vec(step_choice(routed), 1..4),
            prop::sample::select(vec![json!(0), json!(1), json!("25%"), json!("50%")]),
            prop::sample::select(vec![json!(0), json!(1), json!("25%")]),
            prop::option::weighted(0.25, 0i32..3),
            prop::sample::select(vec![0, 5, 30]),
            prop::sample::select(vec![0, 5, 30]),
            any::<bool>(),
            prop::option::weighted(0.3, 1i32..5),
            prop::option::weighted(0.3, 1i32..3),
            (
                prop::bool::weighted(0.3),
                prop::option::weighted(0.3, 0i32..3),
                prop::option::weighted(0.25, (any::<bool>(), 1i32..101)),
                workload_choice(),
                prop::option::weighted(0.2, prop::sample::select(vec![1000, 7, 250])),
            ),
        )
            .prop_map(
                move |(
                    replicas,
                    steps,
                    other_steps,
                    surge,
                    unavailable,
                    background,
                    sd,
                    asd,
                    dab,
                    min_pods,
                    rollback_window,
                    (dynamic, delay_limit, threshold, workload, total),
                )| {
                    let both_zero = surge == json!(0) && unavailable == json!(0);
                    SpecChoice {
                        routing,
                        replicas,
                        steps,
                        other_steps,
                        surge: if both_zero { json!(1) } else { surge },
                        unavailable,
                        background,
                        scale_down_delay: sd,
                        abort_scale_down_delay: asd,
                        deadline_abort: dab,
                        min_pods,
                        rollback_window,
                        dynamic: dynamic && routed,
                        delay_limit,
                        threshold: threshold.map(|(pct, v)| (pct, if pct { v } else { v % 4 + 1 })),
                        blue_green: None,
                        workload,
                        total: total.filter(|_| routed),
                    }
                },
            )
    })
}

/// `workloadRef` in a quarter of the cases: its `scaleDown`, and the Deployment's pods then.
fn workload_choice() -> impl Strategy<Value = Option<(WorkloadScaleDown, i32)>> {
    prop::option::weighted(
        0.25,
        (
            prop::sample::select(vec![
                WorkloadScaleDown::Never,
                WorkloadScaleDown::OnSuccess,
                WorkloadScaleDown::Progressively,
            ]),
            0i32..7,
        ),
    )
}

fn user_act() -> impl Strategy<Value = UserAct> {
    prop_oneof![
        3 => Just(UserAct::Abort),
        2 => Just(UserAct::Retry),
        3 => Just(UserAct::Promote),
        1 => Just(UserAct::PromoteFull),
        1 => Just(UserAct::DoublePromote),
        1 => Just(UserAct::Pause),
        1 => Just(UserAct::Resume),
        2 => Just(UserAct::NewTemplate),
        1 => Just(UserAct::Undo),
        1 => any::<u8>().prop_map(UserAct::UndoTo),
        1 => Just(UserAct::EditSteps),
        1 => (0i32..7).prop_map(UserAct::Scale),
    ]
}

fn event() -> impl Strategy<Value = Ev> {
    event_with(user_act().boxed())
}

/// The adversarial events, with the users' acts drawn from `acts`.
fn event_with(acts: BoxedStrategy<UserAct>) -> impl Strategy<Value = Ev> {
    let verdict = prop::sample::select(vec![
        AnalysisPhase::Successful,
        AnalysisPhase::Successful,
        AnalysisPhase::Failed,
        AnalysisPhase::Inconclusive,
        AnalysisPhase::Error,
    ]);
    prop_oneof![
        12 => Just(Ev::Reconcile),
        5 => any::<u8>().prop_map(|s| Ev::Tick(s % 40)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(i, j)| Ev::Kill(i, j)),
        1 => any::<u8>().prop_map(Ev::DeleteRs),
        3 => (any::<u8>(), verdict).prop_map(|(i, p)| Ev::Verdict(i, p)),
        // A crash (or a failed write) after any of a reconcile's writes.
        1 => (0u8..8).prop_map(Ev::Fail),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(what, i)| Ev::External(what, i)),
        1 => Just(Ev::StatusConflict),
        1 => Just(Ev::StaleRs),
        4 => acts.clone().prop_map(Ev::User),
        1 => acts.prop_map(Ev::UserMidReconcile),
    ]
}

fn cases() -> u32 {
    std::env::var("AVIARY_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// A fixed seed by default, so that `make test` is repeatable; `AVIARY_SIM_SEED=random` (or a
/// number) explores further.
fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var("AVIARY_SIM_SEED").ok().as_deref() {
        Some("random") => proptest::test_runner::RngSeed::Random,
        Some(n) => n
            .parse()
            .map(proptest::test_runner::RngSeed::Fixed)
            .unwrap_or(proptest::test_runner::RngSeed::Fixed(21)),
        None => proptest::test_runner::RngSeed::Fixed(21),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        failure_persistence: None,
        rng_seed: seed(),
        .. ProptestConfig::default()
    })]

    #[test]
    fn canary_keeps_its_invariants_under_adversarial_sequences(
        spec in spec_choice(),
        delays in prop::collection::vec(0u8..12, 1..8),
        events in prop::collection::vec(event(), 0..80),
    ) {
        if let Err(e) = run(&spec, delays.clone(), &events) {
            return Err(TestCaseError::fail(e));
        }
    }
}

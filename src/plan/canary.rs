//! The canary strategy: walk `steps`, shifting traffic (or replicas, without a router) to the new
//! revision, then promote it; abort back to stable at any time.
//!
//! Ordering rules that keep traffic safe (each closes a known failure of other controllers):
//! - a weight is only given to a canary whose *available* pods can carry it, and the stable's
//!   share only moves when the stable ReplicaSet can carry what it keeps;
//! - the canary Service moves to a new ReplicaSet only while the weight is 0 or the new
//!   ReplicaSet can carry the current weight;
//! - abort sets the weight to 0 first, then points the canary Service back at stable, and only
//!   later scales the canary down;
//! - promotion points the stable Service at the new ReplicaSet first, then sets the weight to 0.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::moves::Moves;
use super::replicas::{basic_split, routed_canary_replicas};
use super::status::{Summary, summarize};
use super::{
    Action, AnalysisKind, Event, Observed, ObservedReplicaSet, Plan, hash::hash_of,
    rollout_template_hash,
};
use crate::api::{
    AnalysisPhase, CanaryStatus, CanaryStep, PauseReason, RolloutAnalysisRunStatus, RolloutStatus,
    StepAction, TrafficWeights, WeightDestination,
};

/// Condition reason and Event reason used when a rollout is aborted.
pub const REASON_ABORTED: &str = "RolloutAborted";

struct Planner<'o, 'a> {
    obs: &'o Observed<'a>,
    now: Timestamp,
    replicas: i32,
    hash: String,
    routed: bool,
    steps: &'a [CanaryStep],
    canary_service: Option<&'a str>,
    stable_service: Option<&'a str>,
    plan: Plan,
    /// Set when the canary's pods missed `progressDeadlineSeconds`.
    deadline_exceeded: Option<String>,
}

impl Moves for Planner<'_, '_> {
    fn observed(&self) -> &Observed<'_> {
        self.obs
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn plan_mut(&mut self) -> &mut Plan {
        &mut self.plan
    }
}

/// Plans one reconcile of a canary Rollout.
pub fn plan(obs: &Observed<'_>) -> Plan {
    let ro = obs.rollout;
    let old = ro.status.clone().unwrap_or_default();
    let canary = ro.spec.canary();
    let hash = rollout_template_hash(ro);
    let mut p = Planner {
        obs,
        now: obs.now,
        replicas: ro.spec.replicas().max(0),
        routed: canary.and_then(|c| c.traffic_routing.as_ref()).is_some(),
        steps: ro.spec.steps(),
        canary_service: canary.and_then(|c| c.canary_service.as_deref()),
        stable_service: canary.and_then(|c| c.stable_service.as_deref()),
        hash,
        plan: Plan {
            actions: vec![],
            status: old.clone(),
            events: vec![],
            requeue_after: None,
        },
        deadline_exceeded: None,
    };
    p.run(&old);
    let summary = Summary {
        rollout: ro.metadata.name.as_deref().unwrap_or_default(),
        hash: &p.hash,
        replicas: p.replicas,
        replica_sets: &obs.replica_sets,
        paused: ro.spec.is_paused(),
        generation: ro.metadata.generation,
        steps: p.steps.len() as i32,
        progress: None,
        active: None,
        now: Time(p.now),
        deadline_exceeded: p.deadline_exceeded.as_deref(),
    };
    summarize(&mut p.plan.status, &summary);
    p.plan
}

impl Planner<'_, '_> {
    fn st(&mut self) -> &mut RolloutStatus {
        &mut self.plan.status
    }

    fn n_steps(&self) -> i32 {
        self.steps.len() as i32
    }

    fn run(&mut self, old: &RolloutStatus) {
        let steps_hash = hash_of(&self.steps);
        let hash = self.hash.clone();
        let first_look = old.current_pod_hash.is_none();
        let template_changed =
            !first_look && old.current_pod_hash.as_deref() != Some(hash.as_str());
        let steps_changed =
            !first_look && old.current_step_hash.as_deref() != Some(steps_hash.as_str());
        if template_changed || steps_changed {
            // A new revision (or new steps) starts the steps over; a new revision also
            // supersedes an abort — the user moved on from the aborted version.
            let st = self.st();
            st.current_step_index = Some(0);
            st.pause_conditions.clear();
            st.controller_pause = None;
            st.promote_full = None;
            if template_changed {
                st.abort = None;
                st.aborted_at = None;
                if let Some(c) = st.canary.as_mut() {
                    c.current_step_analysis_run_status = None;
                }
            }
        }
        self.st().current_pod_hash = Some(hash.clone());
        self.st().current_step_hash = Some(steps_hash);

        let stable = old
            .stable_rs
            .clone()
            .filter(|s| self.rs(s).is_some() || *s == hash);
        if let Some(s) = stable.as_deref().filter(|s| *s != hash) {
            // A failed analysis aborts before anything else is applied for the step.
            self.check_step_analysis(s);
            self.check_background_analysis();
            self.check_progress_deadline();
        }
        match stable {
            None => self.first_deploy(),
            Some(s) if s == hash => {
                if template_changed && old.stable_rs.as_deref() == Some(hash.as_str()) {
                    self.plan.events.push(Event::normal(
                        "SkipSteps",
                        "Rollback to the stable revision: skipping all steps",
                    ));
                }
                self.steady(&s)
            }
            Some(s) => {
                if self.plan.status.abort == Some(true) {
                    self.abort(&s)
                } else {
                    self.progress(&s)
                }
            }
        }
        let hash = self.hash.clone();
        self.tidy_analysis_runs(
            &hash,
            old.abort == Some(true) && self.plan.status.abort == Some(true),
        );
    }

    /// `progressDeadlineSeconds`: counted from when the canary ReplicaSet was last created or
    /// scaled, while its pods are not all available (pauses and analysis don't count: the pods
    /// are there). Exceeded → Degraded with `ProgressDeadlineExceeded`, and aborted when
    /// `progressDeadlineAbort` is set.
    fn check_progress_deadline(&mut self) {
        let hash = self.hash.clone();
        self.deadline_exceeded = self.progress_deadline(&hash);
    }

    /// `strategy.canary.analysis`: from `startingStep` on, a background run measures the
    /// revision until it is promoted; a failed run aborts, an inconclusive one pauses.
    fn check_background_analysis(&mut self) {
        let Some(bg) = self
            .obs
            .rollout
            .spec
            .canary()
            .and_then(|c| c.analysis.as_ref())
        else {
            return;
        };
        if self.plan.status.abort == Some(true) {
            return;
        }
        let idx = self.plan.status.current_step_index.unwrap_or(0);
        if idx < bg.starting_step.unwrap_or(0) {
            return;
        }
        let Some(run) = self
            .obs
            .analysis_run(AnalysisKind::Background, &self.hash)
            .cloned()
        else {
            self.plan.actions.push(Action::CreateAnalysisRun {
                kind: AnalysisKind::Background,
                hash: self.hash.clone(),
            });
            return;
        };
        let status = RolloutAnalysisRunStatus::from(&run);
        self.st()
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_background_analysis_run_status = Some(status);
        match run.phase {
            AnalysisPhase::Failed | AnalysisPhase::Error => {
                let msg = format!(
                    "Rollout aborted update to revision {}: background AnalysisRun '{}' {}: {}",
                    self.hash,
                    run.name,
                    run.phase.as_str(),
                    run.message.unwrap_or_default()
                );
                let st = self.st();
                st.abort = Some(true);
                st.message = Some(msg);
            }
            // Holds the rollout until promote (which clears the pause) or abort.
            AnalysisPhase::Inconclusive => {
                self.hold_on_inconclusive();
            }
            _ => {}
        }
    }

    // ---- building blocks ------------------------------------------------------------------

    /// The weight the routing objects show, or failing that the one we last recorded.
    fn current_weight(&self) -> i32 {
        self.obs.current_weight.unwrap_or_else(|| {
            self.plan
                .status
                .canary
                .as_ref()
                .and_then(|c| c.weights.as_ref())
                .map(|w| w.canary.weight)
                .unwrap_or(0)
        })
    }

    fn set_weight(&mut self, weight: i32, canary_hash: &str, stable_hash: &str) {
        if !self.routed {
            return;
        }
        if self.obs.current_weight != Some(weight) {
            self.plan.actions.push(Action::SetWeight {
                weight,
                canary_hash: canary_hash.into(),
                stable_hash: stable_hash.into(),
            });
        }
        self.record_weights(weight, canary_hash, stable_hash);
    }

    fn record_weights(&mut self, weight: i32, canary_hash: &str, stable_hash: &str) {
        let canary_svc = self.canary_service.map(str::to_string);
        let stable_svc = self.stable_service.map(str::to_string);
        let c = self.st().canary.get_or_insert_with(CanaryStatus::default);
        c.weights = Some(TrafficWeights {
            canary: WeightDestination {
                weight,
                service_name: canary_svc,
                pod_template_hash: Some(canary_hash.into()),
            },
            stable: WeightDestination {
                weight: 100 - weight,
                service_name: stable_svc,
                pod_template_hash: Some(stable_hash.into()),
            },
            verified: None,
        });
    }

    /// The last `setWeight` at or before step `idx` (100 past the last step; 0 before any).
    fn weight_at(&self, idx: i32) -> i32 {
        if idx >= self.n_steps() {
            return 100;
        }
        self.steps[..=idx.max(0) as usize]
            .iter()
            .rev()
            .find_map(|s| s.set_weight)
            .unwrap_or(0)
    }

    /// Canary pods the step at `idx` asks for.
    fn canary_replicas_at(&self, idx: i32) -> i32 {
        let w = self.weight_at(idx);
        if !self.routed {
            return basic_split(self.replicas, w, self.surge_allowed()).0;
        }
        // The latest setCanaryScale at or before the step overrides the weight's count.
        let scale = if idx < self.n_steps() {
            self.steps[..=idx.max(0) as usize]
                .iter()
                .rev()
                .find_map(|s| s.set_canary_scale.as_ref())
        } else {
            None
        };
        match scale {
            Some(s) if s.match_traffic_weight != Some(true) => {
                if let Some(r) = s.replicas {
                    r.max(0)
                } else if let Some(pw) = s.weight {
                    routed_canary_replicas(self.replicas, pw)
                } else {
                    routed_canary_replicas(self.replicas, w)
                }
            }
            _ => routed_canary_replicas(self.replicas, w),
        }
    }

    fn surge_allowed(&self) -> bool {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        match self.obs.rollout.spec.canary().map(|c| c.max_surge()) {
            Some(IntOrString::Int(i)) => i > 0,
            Some(IntOrString::String(s)) => s
                .trim_end_matches('%')
                .trim()
                .parse::<i32>()
                .map(|p| p > 0)
                .unwrap_or(true),
            None => true,
        }
    }

    fn step_label(&self, idx: i32) -> String {
        self.steps
            .get(idx as usize)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    // ---- states ---------------------------------------------------------------------------

    /// No stable revision yet: the first template goes out at full size, no steps.
    fn first_deploy(&mut self) {
        let hash = self.hash.clone();
        self.ensure_rs(&hash, self.replicas);
        self.scale_down_others(&[&hash]);
        let available = self.rs(&hash).map(|r| r.available).unwrap_or(0);
        if available >= self.replicas {
            // Adopting a Service waits until the ReplicaSet it will select is fully available.
            self.switch_service(self.stable_service, &hash);
            self.switch_service(self.canary_service, &hash);
        }
        let n = self.n_steps();
        let st = self.st();
        st.stable_rs = Some(hash.clone());
        st.current_step_index = Some(n);
        if self.routed {
            self.record_weights(0, &hash, &hash);
        }
    }

    /// The template is the stable one: keep it at full size and everything else away. This is
    /// also how an undo (or a GitOps revert) returns at once, with no steps.
    fn steady(&mut self, stable: &str) {
        let stable = stable.to_string();
        self.ensure_rs(&stable, self.replicas);
        // Canary traffic first, then the canary Service, then the pods.
        if self.routed {
            self.set_weight(0, &stable, &stable);
        }
        let available = self.rs(&stable).map(|r| r.available).unwrap_or(0);
        if available > 0 {
            self.switch_service(self.canary_service, &stable);
            self.switch_service(self.stable_service, &stable);
        }
        self.scale_down_others(&[&stable]);
        let n = self.n_steps();
        let st = self.st();
        st.current_step_index = Some(n);
        st.abort = None;
        st.aborted_at = None;
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        st.stable_rs = Some(stable);
    }

    /// Aborted: all traffic back to stable at once, then the canary Service, then (after
    /// `abortScaleDownDelaySeconds`, counted once stable is fully available) the canary pods.
    fn abort(&mut self, stable: &str) {
        let stable = stable.to_string();
        let hash = self.hash.clone();
        let canary = self.obs.rollout.spec.canary();
        self.ensure_rs(&stable, self.replicas);
        if self.routed {
            self.set_weight(0, &hash, &stable);
        }
        self.switch_service(self.canary_service, &stable);
        let stable_available = self.rs(&stable).map(|r| r.available).unwrap_or(0);
        if let Some(rs) = self.rs(&hash).cloned() {
            if !self.routed {
                // Without a router traffic follows pods: move back at once.
                self.ensure_rs(&hash, 0);
            } else {
                let delay = canary
                    .map(|c| c.abort_scale_down_delay_seconds())
                    .unwrap_or(30);
                // 0 keeps the canary up for inspection, as Argo Rollouts does.
                if delay > 0 && stable_available >= self.replicas {
                    self.scale_down_after(&rs, i64::from(delay));
                }
            }
        }
        self.scale_down_others(&[&stable, &hash]);
        let now = Time(self.now);
        let first = self.plan.status.aborted_at.is_none();
        let st = self.st();
        st.current_step_index = Some(0);
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        if first {
            st.aborted_at = Some(now);
        }
        if first {
            let why = self.abort_reason(&self.hash);
            self.plan.events.push(Event::warning(REASON_ABORTED, why));
        }
    }

    /// An update is under way: apply the persisted step, then maybe advance it.
    fn progress(&mut self, stable: &str) {
        let stable = stable.to_string();
        let hash = self.hash.clone();
        let n = self.n_steps();
        let idx = self.plan.status.current_step_index.unwrap_or(0).clamp(0, n);
        let full = self.plan.status.promote_full == Some(true);
        let target_idx = if full { n } else { idx };

        let canary_rs = self.rs(&hash).cloned();
        let stable_rs = self.rs(&stable).cloned();
        let canary_available = canary_rs.as_ref().map(|r| r.available).unwrap_or(0);
        let stable_available = stable_rs.as_ref().map(|r| r.available).unwrap_or(0);
        let current_weight = self.current_weight();

        // -- replica counts
        let mut canary_target = self.canary_replicas_at(target_idx);
        if self.routed {
            // Never fewer canary pods than the weight it carries right now needs.
            canary_target =
                canary_target.max(routed_canary_replicas(self.replicas, current_weight));
            self.ensure_rs(&hash, canary_target);
            self.ensure_rs(&stable, self.replicas);
        } else {
            let (_, stable_target) = basic_split(
                self.replicas,
                self.weight_at(target_idx),
                self.surge_allowed(),
            );
            self.ensure_rs(&hash, canary_target);
            // Stable shrinks only once the canary pods that replace it are available.
            let stable_now = stable_rs.as_ref().map(|r| r.replicas).unwrap_or(0);
            let stable_desired = if canary_available >= canary_target {
                stable_target
            } else {
                stable_target.max(stable_now)
            };
            self.ensure_rs(&stable, stable_desired);
        }
        // Older canaries go; their traffic is handled by the weight ordering below.
        let canary_svc_hash = self.service_hash(self.canary_service);
        let keep_old_canary = canary_svc_hash
            .as_deref()
            .filter(|h| *h != hash && *h != stable)
            .map(str::to_string);
        match &keep_old_canary {
            Some(old) if self.routed && current_weight > 0 => {
                self.scale_down_others(&[&stable, &hash, old])
            }
            _ => self.scale_down_others(&[&stable, &hash]),
        }

        // -- promotion, when the steps are done (or skipped) and the canary is full size
        let ready_to_promote = (full || idx >= n)
            && canary_available >= self.replicas
            && !self.obs.rollout.spec.is_paused();
        if ready_to_promote {
            self.promote(&stable, stable_rs.as_ref());
            return;
        }

        // -- services and weight
        if self.routed {
            let desired = self.desired_weight(
                target_idx,
                full,
                canary_available,
                stable_available,
                current_weight,
            );
            if canary_svc_hash.as_deref() != Some(hash.as_str()) {
                let can_carry = canary_available > 0
                    && canary_available >= routed_canary_replicas(self.replicas, current_weight);
                if !can_carry && current_weight > 0 {
                    // Reset before the selector moves: the new pods can't take what the old had.
                    self.set_weight(0, &hash, &stable);
                }
                self.switch_service(self.canary_service, &hash);
            }
            self.switch_service(self.stable_service, &stable);
            self.set_weight(desired, &hash, &stable);
        } else {
            if canary_available > 0 {
                self.switch_service(self.canary_service, &hash);
            }
            self.switch_service(self.stable_service, &stable);
        }

        // -- step completion
        if full || idx >= n || self.obs.rollout.spec.is_paused() {
            return;
        }
        let waiting_on_inconclusive = self
            .plan
            .status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun);
        let step_is_analysis = matches!(
            self.steps[idx as usize].action(),
            Some(StepAction::Analysis(_))
        );
        if waiting_on_inconclusive && !step_is_analysis {
            // An inconclusive background run holds the rollout until promote or abort.
            return;
        }
        let recorded_weight = self
            .plan
            .status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| w.canary.weight);
        let step_done = match self.steps[idx as usize].action() {
            Some(StepAction::SetWeight(w)) => {
                let pods_ready = canary_available >= canary_target;
                if self.routed {
                    pods_ready && recorded_weight == Some(w)
                } else {
                    let (_, stable_target) = basic_split(self.replicas, w, self.surge_allowed());
                    let stable_ok = stable_rs
                        .as_ref()
                        .is_some_and(|r| r.replicas == stable_target);
                    let others_gone = self
                        .obs
                        .replica_sets
                        .iter()
                        .all(|r| r.hash == hash || r.hash == stable || r.available == 0);
                    pods_ready && stable_ok && others_gone
                }
            }
            Some(StepAction::SetCanaryScale(_)) => canary_available >= canary_target,
            Some(StepAction::Pause(p)) => self.pause_for(
                PauseReason::CanaryPauseStep,
                p.duration.as_ref().map(|d| d.as_secs() as i64),
            ),
            Some(StepAction::Analysis(_)) => self.analysis_step(idx),
            None => true,
        };
        if step_done {
            let label = self.step_label(idx);
            let st = self.st();
            st.current_step_index = Some(idx + 1);
            st.pause_conditions.clear();
            st.controller_pause = None;
            if let Some(c) = st.canary.as_mut() {
                c.current_step_analysis_run_status = None;
            }
            self.plan.events.push(Event::normal(
                "RolloutStepCompleted",
                format!("Rollout step {}/{} completed ({label})", idx + 1, n),
            ));
            // The next step's actions wait until this index is persisted (see the module doc).
            // A pause asks for no action, so one that comes next starts now, in the same status
            // write: a write to a Rollout is costly for the API server, and this saves one per
            // pause step.
            // `pause_for` keeps the earliest wake-up, so one planned earlier in this reconcile
            // (say, a scale-down deadline) still stands.
            let next = self.steps.get((idx + 1) as usize).and_then(|s| s.action());
            let waits = match next {
                Some(StepAction::Pause(p)) => !self.pause_for(
                    PauseReason::CanaryPauseStep,
                    p.duration.as_ref().map(|d| d.as_secs() as i64),
                ),
                _ => false,
            };
            if !waits {
                self.plan.requeue_after = Some(std::time::Duration::from_millis(50));
            }
        }
    }

    /// The weight to route now: the step's weight once the canary can carry it; otherwise the
    /// last earlier weight it can carry; 0 while it has no available pod.
    fn desired_weight(
        &self,
        idx: i32,
        full: bool,
        canary_available: i32,
        stable_available: i32,
        current: i32,
    ) -> i32 {
        if canary_available == 0 {
            return 0;
        }
        let fits = |w: i32| routed_canary_replicas(self.replicas, w) <= canary_available;
        let want = if full {
            current
        } else {
            let step_weight = self.weight_at(idx);
            if fits(step_weight) {
                step_weight
            } else {
                let upto = idx.min(self.n_steps() - 1).max(0) as usize;
                self.steps[..upto.min(self.steps.len())]
                    .iter()
                    .rev()
                    .filter_map(|s| s.set_weight)
                    .find(|w| fits(*w))
                    .unwrap_or(0)
            }
        };
        // Traffic leaves the stable only when it keeps enough pods for what stays on it.
        let stable_needed = routed_canary_replicas(self.replicas, 100 - want);
        if want > current && stable_available < stable_needed {
            current
        } else {
            want
        }
    }

    /// When the current step is an analysis whose run failed or errored, marks the rollout
    /// aborted, with the run's verdict as the reason.
    fn check_step_analysis(&mut self, _stable: &str) {
        if self.plan.status.abort == Some(true) || self.plan.status.promote_full == Some(true) {
            return;
        }
        let idx = self.plan.status.current_step_index.unwrap_or(0);
        let is_analysis = matches!(
            self.steps.get(idx.max(0) as usize).and_then(|s| s.action()),
            Some(StepAction::Analysis(_))
        );
        let run = self
            .obs
            .analysis_run(AnalysisKind::Step(idx), &self.hash)
            .cloned();
        let Some(run) = run.filter(|_| is_analysis) else {
            return;
        };
        if matches!(run.phase, AnalysisPhase::Failed | AnalysisPhase::Error) {
            let msg = format!(
                "Rollout aborted update to revision {}: AnalysisRun '{}' {}: {}",
                self.hash,
                run.name,
                run.phase.as_str(),
                run.message.clone().unwrap_or_default()
            );
            let status = RolloutAnalysisRunStatus::from(&run);
            let st = self.st();
            st.canary
                .get_or_insert_with(CanaryStatus::default)
                .current_step_analysis_run_status = Some(status);
            st.abort = Some(true);
            st.message = Some(msg);
        }
    }

    /// An analysis step: over when its run succeeded; an inconclusive one pauses for a human
    /// (a failed one was turned into an abort before the step's actions, by
    /// `check_step_analysis`).
    fn analysis_step(&mut self, idx: i32) -> bool {
        let Some(run) = self
            .obs
            .analysis_run(AnalysisKind::Step(idx), &self.hash)
            .cloned()
        else {
            self.plan.actions.push(Action::CreateAnalysisRun {
                kind: AnalysisKind::Step(idx),
                hash: self.hash.clone(),
            });
            return false;
        };
        let status = RolloutAnalysisRunStatus::from(&run);
        self.st()
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_step_analysis_run_status = Some(status);
        match run.phase {
            AnalysisPhase::Successful => true,
            AnalysisPhase::Failed | AnalysisPhase::Error => false,
            // promote clears the pause: move on past the inconclusive analysis.
            AnalysisPhase::Inconclusive => self.hold_on_inconclusive(),
            AnalysisPhase::Pending | AnalysisPhase::Running => false,
        }
    }

    /// Full promotion: stable Service to the new pods, then the weight back to 0 (both Services
    /// now select the new pods), the new ReplicaSet becomes stable and the old one waits out its
    /// scale-down delay.
    fn promote(&mut self, old_stable: &str, old_rs: Option<&ObservedReplicaSet>) {
        let hash = self.hash.clone();
        self.switch_service(self.stable_service, &hash);
        self.switch_service(self.canary_service, &hash);
        if self.routed {
            self.set_weight(0, &hash, &hash);
            if let Some(rs) = old_rs {
                let delay = self
                    .obs
                    .rollout
                    .spec
                    .canary()
                    .map(|c| c.scale_down_delay_seconds())
                    .unwrap_or(30);
                self.scale_down_after(rs, i64::from(delay));
            }
        } else if let Some(rs) = old_rs {
            self.ensure_rs(&rs.hash.clone(), 0);
        }
        let n = self.n_steps();
        let st = self.st();
        st.stable_rs = Some(hash.clone());
        st.current_step_index = Some(n);
        st.promote_full = None;
        st.pause_conditions.clear();
        st.controller_pause = None;
        if let Some(c) = st.canary.as_mut() {
            c.current_step_analysis_run_status = None;
        }
        self.plan.events.push(Event::normal(
            "RolloutCompleted",
            format!(
                "Rollout completed update to revision {hash} (was {old_stable}): fully promoted"
            ),
        ));
    }
}

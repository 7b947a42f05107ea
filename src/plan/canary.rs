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
//! - promotion points the stable Service at the new ReplicaSet first, then sets the weight to 0;
//! - with `dynamicStableScale` the stable shrinks only after traffic left it, and traffic comes
//!   back to it only as far as its available pods carry (abort and undo included).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::moves::{Moves, WAIT_FOR_PODS_SECS};
use super::replicas::{PacedSet, basic_split, pace, routed_replicas_of, surge_and_unavailable};
use super::status::{Summary, summarize};
use super::{
    Action, AnalysisKind, Event, Observed, ObservedReplicaSet, Plan, hash::hash_of, revision_hash,
    secs,
};
use crate::api::wire::reasons;
use crate::api::{
    AnalysisPhase, CanaryStatus, CanaryStep, PauseReason, RolloutAnalysisRunStatus, RolloutStatus,
    StepAction, TrafficWeights, WeightDestination,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The canary weight the steps give at step `idx`: the last `setWeight` at or before it (all of
/// `total` — 100, or `maxTrafficWeight` — past the last step; 0 before any). The planner's and
/// `kubectl aviary`'s.
pub fn weight_at(steps: &[CanaryStep], idx: i32, total: i32) -> i32 {
    if idx >= steps.len() as i32 {
        return total;
    }
    steps[..=idx.max(0) as usize]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

struct Planner<'o, 'a> {
    obs: &'o Observed<'a>,
    now: Timestamp,
    replicas: i32,
    /// The total traffic weight (`maxTrafficWeight`, else 100): every weight is a share of it.
    total: i32,
    hash: String,
    routed: bool,
    /// `minPodsPerReplicaSet` (0: none): a routed canary's weight-derived pods, at least.
    min_pods: i32,
    /// `dynamicStableScale` (routed only): the stable shrinks as traffic leaves it, and traffic
    /// returns to it only as it grows back ([`Planner::dynamic_weight_now`]).
    dynamic: bool,
    /// Traffic returns to the stable only as far as its available pods carry: with
    /// `dynamicStableScale`, or whenever the stable ReplicaSet is below full size (the field
    /// removed mid-rollout, a scale-up): pods that were never there are not a short stable.
    descends: bool,
    steps: &'a [CanaryStep],
    canary_service: Option<&'a str>,
    stable_service: Option<&'a str>,
    plan: Plan,
    /// The routing objects' canary weight and subset hashes as this plan leaves them: observed,
    /// then updated by each routing write the plan makes.
    route_weight: Option<i32>,
    route_subsets: Option<super::SubsetHashes>,
    /// Set when the canary's pods missed `progressDeadlineSeconds`.
    deadline_exceeded: Option<String>,
    /// Set when the rollout cannot go on without a human: condition reason and message.
    stuck: Option<(&'static str, String)>,
    /// Set when this plan promoted the new revision (the switch follows in the next).
    promoted: bool,
    /// Set when the steps changed: this plan retires the revision's runs, so it reads none of
    /// their verdicts and creates none (the next plan creates them afresh).
    runs_retiring: bool,
    /// Set while the abort of a rolling-out revision is planned: traffic leaves the canary
    /// even onto a short stable (never an empty one).
    aborting: bool,
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
    /// The canary Service is adopted to the desired revision at `replicaProgressThreshold`, as
    /// its weight is routed at it: it must not carry that weight while it still selects every
    /// pod (helper-44). Any other Service (the stable's) waits for every pod (helper-45).
    fn adoption_needs(&self, service: &str, rs: &ObservedReplicaSet) -> i32 {
        if rs.hash == self.hash && self.canary_service == Some(service) {
            self.enough(rs.replicas)
        } else {
            rs.replicas
        }
    }

    /// With a router: the share of the destinations that select `hash` (the canary's weight,
    /// the stable's rest), in pods. Without one traffic follows pods ([`Planner::pace_basic`]).
    fn serving_needs(&self, hash: &str) -> i32 {
        if !self.routed {
            return 0;
        }
        // An unknown weight (routers that disagree, none written yet) may be anything on
        // either side: both keep what all the traffic needs until it is known.
        let (canary_share, stable_share) = match self.route_weight {
            Some(w) => (w.clamp(0, self.total), self.total - w.clamp(0, self.total)),
            None => (self.total, self.total),
        };
        let (canary, stable) = self.destinations();
        let mut share = 0;
        if canary.as_deref() == Some(hash) {
            share += canary_share;
        }
        if stable.as_deref() == Some(hash) {
            share += stable_share;
        }
        // What the stable destination or the stable Service (in-cluster traffic, subset mode
        // included) selects keeps replicas − maxUnavailable, and a pod.
        let floor = if stable.as_deref() == Some(hash)
            || self.service_hash(self.stable_service).as_deref() == Some(hash)
        {
            self.stable_floor()
        } else {
            0
        };
        self.pods_for(share.min(self.total)).max(floor)
    }
}

/// Plans one reconcile of a canary Rollout.
pub fn plan(obs: &Observed<'_>) -> Plan {
    let ro = obs.rollout;
    let old = ro.status.clone().unwrap_or_default();
    let canary = ro.spec.canary();
    let hash = revision_hash(ro, &obs.replica_sets);
    let mut p = Planner {
        obs,
        now: obs.now,
        replicas: ro.spec.replicas().max(0),
        total: ro.spec.total_weight(),
        routed: canary.and_then(|c| c.traffic_routing.as_ref()).is_some(),
        min_pods: canary
            .and_then(|c| c.min_pods_per_replica_set)
            .unwrap_or(0)
            .max(0),
        dynamic: canary.is_some_and(|c| c.dynamic_stable_scale()),
        // Set below, from `dynamic`.
        descends: false,
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
        stuck: None,
        runs_retiring: false,
        aborting: false,
        promoted: false,
        route_weight: obs.current_weight,
        route_subsets: obs.subset_hashes.clone(),
    };
    // Traffic comes back one declared weight at a time with dynamicStableScale, and also when
    // the stable is below full size without it (the field removed mid-rollout).
    p.descends = p.dynamic
        || p.routed
            && old
                .stable_rs
                .as_deref()
                .and_then(|s| obs.replica_sets.iter().find(|r| r.hash == s))
                .is_some_and(|r| r.replicas < p.replicas);
    p.run(&old);
    // Traffic still moving to the stable revision (right after a promotion, say) is not done:
    // Progressing until the Services, subsets and weight hold.
    let converging = p.plan.status.stable_rs.as_deref() == Some(p.hash.as_str())
        && (p.promoted
            || p.plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::SwitchService { .. } | Action::SetWeight { .. })));
    let summary = Summary {
        rollout: ro.metadata.name.as_deref().unwrap_or_default(),
        hash: &p.hash,
        replicas: p.replicas,
        replica_sets: &obs.replica_sets,
        paused: ro.spec.is_paused(),
        generation: ro.metadata.generation,
        steps: p.steps.len() as i32,
        progress: converging.then(|| "switching traffic to the new stable revision".to_string()),
        active: None,
        now: Time(p.now),
        deadline_exceeded: p.deadline_exceeded.as_deref(),
        stuck: p.stuck.as_ref().map(|(r, m)| (*r, m.as_str())),
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
        let abort_pending = super::abort_pending(self.obs.rollout);
        if template_changed || steps_changed {
            // A new revision (or new steps) starts the steps over; a new revision also
            // supersedes an abort — the user moved on from the aborted version.
            let st = self.st();
            st.current_step_index = Some(0);
            st.pause_conditions.clear();
            st.controller_pause = None;
            st.promote_full = None;
            // An abort not yet acted on is a user's abort of what runs now (our status write
            // may never have recorded the new template): it stays.
            if template_changed && !abort_pending {
                st.abort = None;
                st.aborted_at = None;
                if let Some(c) = st.canary.as_mut() {
                    c.current_step_analysis_run_status = None;
                }
            }
        }
        // Steps edited while a rollback goes out (a revert in two writes, say) start the steps
        // over: the window is judged again, as Argo judges it on every reconcile.
        if (template_changed || steps_changed)
            && !abort_pending
            && let Some(revision) = self.rollback_in_window(&hash, old.stable_rs.as_deref())
        {
            // Persisted with the new template, so every later reconcile goes on promoting.
            self.st().promote_full = Some(true);
            let event = self.rollback_in_window_event(revision);
            self.plan.events.push(event);
        }
        self.st().current_pod_hash = Some(hash.clone());
        self.st().current_step_hash = Some(steps_hash);
        if steps_changed {
            self.runs_retiring = true;
            self.plan.requeue_after = Some(std::time::Duration::from_millis(50));
        }
        // Retried after an abort acted on: the update starts over and measures afresh, so the
        // runs of the aborted attempt go (one the abort left running would otherwise give the
        // new attempt a verdict on the old one's measurements).
        let retried =
            !template_changed && old.aborted_at.is_some() && self.plan.status.abort != Some(true);
        // Back to a revision that had runs (an `undo` after the new template was on record):
        // they measured an earlier attempt, and this one measures afresh. (Runs of the revision
        // the status still records are that attempt's own: see `tidy_analysis_runs`.)
        let returned = template_changed && self.obs.analysis_runs.iter().any(|r| r.hash == hash);
        if retried || returned {
            self.runs_retiring = true;
            self.plan.requeue_after = Some(std::time::Duration::from_millis(50));
        }
        if self.plan.status.abort != Some(true) {
            // Retried (or never aborted): the next abort is a new one, with its own Event.
            self.st().aborted_at = None;
        }

        let stable = old.stable_rs.clone();
        let lost = stable
            .as_deref()
            .filter(|s| *s != hash && self.rs(s).is_none())
            .map(str::to_string);
        if let Some(s) = lost {
            // The stable ReplicaSet was deleted mid-update. Its pod template is gone, so it
            // cannot be recreated; promoting the new revision unverified is not ours to decide.
            self.stable_lost(&s);
        } else {
            self.update(old, stable, template_changed);
        }
        let hash = self.hash.clone();
        // A lost stable included: a retry there ends the aborted attempt's runs too.
        self.tidy_analysis_runs(
            &hash,
            steps_changed || retried || returned,
            // A step run that `promote` skipped past stops measuring (F22).
            self.plan.status.current_step_index,
        );
    }

    /// Everything but a lost stable: the first deploy, the steady state, or an update.
    fn update(&mut self, old: &RolloutStatus, stable: Option<String>, template_changed: bool) {
        let hash = self.hash.clone();
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
                        reasons::SKIP_STEPS,
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
    }

    /// The stable ReplicaSet is gone mid-update: say so and wait for a human to promote the new
    /// revision (`promote --full`) or apply another template; meanwhile traffic goes to the
    /// pods that exist, the new revision's (an abort has nothing to return to either).
    fn stable_lost(&mut self, stable: &str) {
        if self.plan.status.promote_full == Some(true) && self.plan.status.abort != Some(true) {
            // A human chose the new revision: it goes out at full size, as a first deploy.
            self.first_deploy();
            return;
        }
        let msg = format!(
            "stable ReplicaSet '{}' was deleted while revision {} was rolling out: its pod template is gone, so Aviary cannot restore it, and traffic goes to the new revision's pods; run 'kubectl aviary promote --full {}' to make it stable ('kubectl aviary retry {}' first if the rollout is aborted), or apply an earlier template",
            super::replica_set_name(&self.rollout_name(), stable),
            self.hash,
            self.rollout_name(),
            self.rollout_name()
        );
        if self.plan.status.message.as_deref() != Some(msg.as_str()) {
            self.plan.events.push(Event::warning(
                reasons::STABLE_REPLICA_SET_LOST,
                msg.clone(),
            ));
        }
        if self.plan.status.abort == Some(true) && self.plan.status.aborted_at.is_none() {
            // Acted on, as far as it can be: there is no stable to return to. Like any abort it
            // ends this attempt, a `promote --full` included.
            let now = Time(self.now);
            let st = self.st();
            st.aborted_at = Some(now);
            st.promote_full = None;
        }
        if self.routed {
            // The stable destination has no pods: the traffic goes where pods are, up to all of
            // it — never less than it has (only declared weights, or 100).
            let hash = self.hash.clone();
            self.ensure_rs(&hash, self.replicas);
            let available = self.available(&hash);
            let fits = |w: i32| w > 0 && self.pods_for(w) <= available;
            let want = std::iter::once(self.total)
                .chain(self.steps.iter().filter_map(|s| s.set_weight))
                .filter(|w| fits(*w))
                .max()
                .unwrap_or(0);
            let current = self.route_weight.unwrap_or(0);
            // The canary destination moves to the new revision if it is elsewhere (an older
            // canary, perhaps gone too) once the new one can carry its weight, or has pods
            // where the old has none.
            let dest = self.destinations().0;
            let dest_available = self.serving_available(dest.as_deref());
            let movable = dest.as_deref() == Some(hash.as_str())
                || available >= self.pods_for(current).max(1)
                || (dest_available == 0 && available > 0);
            if movable && (want > current || dest.as_deref() != Some(hash.as_str())) {
                self.switch_service(self.canary_service, &hash);
                // The stable subset stays where it is; one that names no revision (someone
                // removed its label: it selects every pod of the host) goes to the new revision
                // once that has all its pods, never to the lost stable.
                let stable_subset = match self.route_subsets.as_ref() {
                    None => Some(stable.to_string()),
                    Some(s) => s
                        .stable
                        .clone()
                        .or_else(|| (available >= self.replicas).then(|| hash.clone())),
                };
                if let Some(stable_subset) = stable_subset {
                    self.set_weight(want.max(current), &hash, &stable_subset);
                }
            }
        }
        self.stuck = Some((reasons::STABLE_REPLICA_SET_LOST, msg));
    }

    fn rollout_name(&self) -> String {
        self.obs.rollout.metadata.name.clone().unwrap_or_default()
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
        if self.runs_retiring {
            return;
        }
        let Some(bg) = self
            .obs
            .rollout
            .spec
            .canary()
            .and_then(|c| c.analysis.as_ref())
        else {
            return;
        };
        // Promoted in full (by a human, or a rollback inside `rollbackWindow`): no analysis
        // judges it any more, as in Argo; `tidy_analysis_runs` ends a run still measuring.
        if self.plan.status.abort == Some(true) || self.plan.status.promote_full == Some(true) {
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
            if self.rs(&self.hash).is_none() {
                // Not before its ReplicaSet: the run is named and labelled with the revision
                // the ReplicaSet carries (F20: it was created as revision 0).
                return;
            }
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

    /// Routes `weight` % to the canary destination (selecting `canary_hash` in subset mode),
    /// the rest to the stable one. Returns false when it must wait: traffic never moves back
    /// onto a stable destination without an available pod (its ReplicaSet deleted or its pods
    /// dead) — the canary, which has pods, keeps it until then.
    fn set_weight(&mut self, weight: i32, canary_hash: &str, stable_hash: &str) -> bool {
        if !self.routed {
            return true;
        }
        // dynamicStableScale: traffic comes back only as far as the shrunk stable carries it.
        let wanted = weight;
        let Some(weight) = self.dynamic_weight_now(wanted, stable_hash) else {
            let now = self.now;
            self.plan
                .requeue_at(now, super::after(now, WAIT_FOR_PODS_SECS));
            return false;
        };
        // Held above what was asked: the canary subset stays on the pods that carry it.
        let held_canary = self
            .route_subsets
            .as_ref()
            .and_then(|s| s.canary.clone())
            .filter(|_| weight != wanted);
        let canary_hash = held_canary.as_deref().unwrap_or(canary_hash);
        // The stable subset moves to a revision only once it can carry the stable's share (or
        // at least what the subset selects now carries): like the stable Service.
        let kept_stable;
        let stable_hash = match self.route_subsets.as_ref().map(|s| s.stable.clone()) {
            Some(current) if current.as_deref() != Some(stable_hash) && self.replicas > 0 => {
                // It moves first, at the weight routed now: it must carry the larger of the
                // stable's shares, before and after.
                let lowest = weight
                    .min(self.route_weight.unwrap_or(weight))
                    .clamp(0, self.total);
                let need = self.accepted(
                    stable_hash,
                    self.pods_for(self.total - lowest).max(1),
                    current.as_deref(),
                );
                // A subset naming no revision (someone removed its label) selects every pod of
                // the host.
                let serving = self.serving_available(current.as_deref());
                if self.available(stable_hash) < need.min(serving.max(1)) {
                    let now = self.now;
                    self.plan
                        .requeue_at(now, super::after(now, WAIT_FOR_PODS_SECS));
                    // An unknown weight (routes that disagree) counts as coming down.
                    let aborting = self.aborting && self.route_weight.is_none_or(|w| weight < w);
                    match current {
                        Some(current) => {
                            kept_stable = current;
                            kept_stable.as_str()
                        }
                        // Traffic leaving an aborted canary may leave the stable short, never
                        // empty: the subset is named after a stable with pods.
                        None if aborting && self.available(stable_hash) > 0 => stable_hash,
                        // Otherwise an unlabelled subset can't be kept by a write that names
                        // hashes: nothing is written until the revision can take its place.
                        None => return false,
                    }
                } else {
                    stable_hash
                }
            }
            _ => stable_hash,
        };
        // (With no replicas at all there are no pods anywhere: nothing to wait for.)
        // An unknown weight (routes that disagree) counts as coming down for an abort or a
        // write of 0 (some route may be); going up, the write goes (it lifts routes off a
        // dead stable as much as it may lower others: helper-41).
        if self.replicas > 0
            && self
                .route_weight
                .map_or(self.aborting || weight == 0, |w| weight < w)
        {
            let dest = match self.route_subsets {
                Some(_) => Some(stable_hash.to_string()),
                None => self.destinations().1,
            };
            let starved = dest.as_deref().is_some_and(|h| self.available(h) == 0);
            if starved {
                let now = self.now;
                self.plan
                    .requeue_at(now, super::after(now, WAIT_FOR_PODS_SECS));
                return false;
            }
        }
        // Level-triggered: the weight *and* the subsets' hashes are converged whenever either
        // differs from what the routing objects show, not only when the weight changes.
        let subsets_differ = self.route_subsets.as_ref().is_some_and(|s| {
            s.canary.as_deref() != Some(canary_hash) || s.stable.as_deref() != Some(stable_hash)
        });
        if self.route_weight != Some(weight) || subsets_differ {
            match self.route_subsets.clone() {
                // Subset mode: act writes a write's subsets before its weight, so the moves are
                // taken one at a time in the safe order — the stable subset first (it carries
                // what the canary doesn't), the weight down before the canary subset moves, up
                // only after.
                Some(now) => {
                    let mut w = self.route_weight.unwrap_or(weight);
                    // A canary subset naming no revision (someone removed its label) serves
                    // every pod of the host at the weight it has: it is named first, at that
                    // weight, after a revision whose pods carry it — or nothing is written yet.
                    let unlabelled = now.canary.is_none() && w > 0 && self.replicas > 0;
                    let mut c = match now.canary {
                        Some(c) => c,
                        None if unlabelled => {
                            // What carries its weight — or at least as much as it serves now
                            // (every pod of the host): naming it then takes nothing away.
                            let need = self
                                .pods_for(w)
                                .max(1)
                                .min(self.serving_available(None).max(1));
                            let Some(h) = [canary_hash, stable_hash]
                                .into_iter()
                                .find(|h| self.available(h) >= need)
                            else {
                                let now = self.now;
                                self.plan
                                    .requeue_at(now, super::after(now, WAIT_FOR_PODS_SECS));
                                return false;
                            };
                            h.to_string()
                        }
                        None => canary_hash.to_string(),
                    };
                    let mut st = now.stable.unwrap_or_else(|| stable_hash.to_string());
                    let mut steps = vec![];
                    if st != stable_hash || unlabelled {
                        st = stable_hash.to_string();
                        steps.push((w, c.clone(), st.clone()));
                    }
                    if weight < w {
                        w = weight;
                        steps.push((w, c.clone(), st.clone()));
                    }
                    if c != canary_hash {
                        c = canary_hash.to_string();
                        steps.push((w, c.clone(), st.clone()));
                    }
                    if weight != w {
                        w = weight;
                        steps.push((w, c.clone(), st.clone()));
                    }
                    if steps.is_empty() {
                        // The subsets carried no hash label yet: one write sets everything.
                        steps.push((weight, c, st));
                    }
                    for (weight, canary_hash, stable_hash) in steps {
                        self.plan.actions.push(Action::SetWeight {
                            weight,
                            canary_hash,
                            stable_hash,
                        });
                    }
                }
                None => self.plan.actions.push(Action::SetWeight {
                    weight,
                    canary_hash: canary_hash.into(),
                    stable_hash: stable_hash.into(),
                }),
            }
            self.route_weight = Some(weight);
            if let Some(s) = self.route_subsets.as_mut() {
                s.canary = Some(canary_hash.into());
                s.stable = Some(stable_hash.into());
            }
        }
        self.record_weights(weight, canary_hash, stable_hash);
        if weight != wanted {
            // Part of the way, or none of it: the rest as the stable's pods become available.
            let now = self.now;
            self.plan
                .requeue_at(now, super::after(now, WAIT_FOR_PODS_SECS));
            return false;
        }
        true
    }

    /// The weights a descent from the current weight to `target` passes through: the declared
    /// ones in between, and `target` (highest first).
    fn rungs_down_to(&self, target: i32) -> Vec<i32> {
        let current = self.route_weight.unwrap_or(self.total);
        let mut rungs: Vec<i32> = self
            .steps
            .iter()
            .filter_map(|s| s.set_weight)
            .filter(|w| *w > target && *w < current)
            .chain([target])
            .collect();
        rungs.sort_unstable_by(|a, b| b.cmp(a));
        rungs.dedup();
        rungs
    }

    /// The stable's pods for a canary weight of `weight`: what the rest of the traffic needs.
    fn stable_share_pods(&self, weight: i32) -> i32 {
        // `minPodsPerReplicaSet` holds for the stable too, as in Argo.
        match self.pods_for(self.total - weight.clamp(0, self.total)) {
            0 => 0,
            n => n.max(self.min_pods).min(self.replicas),
        }
    }

    /// With `dynamicStableScale`, how far the canary weight may come down toward `target` now:
    /// to the lowest of [`Planner::rungs_down_to`] whose stable share the stable destination's
    /// available pods carry (the stable shrank as traffic left it, so traffic returns only as
    /// it grows back — Argo's reverse-step descent). The current weight when none fits; `target`
    /// when going up, or without dynamic scaling.
    fn dynamic_weight_now(&self, target: i32, stable_hash: &str) -> Option<i32> {
        let dest = match self.route_subsets {
            Some(_) => Some(stable_hash.to_string()),
            None => self.destinations().1,
        };
        // Its pods as this plan leaves them: a scale-down planned above counts.
        let available = match dest.as_deref() {
            Some(h) => self
                .rs_as_planned(h)
                .map(|r| r.available.min(r.replicas))
                .unwrap_or(0),
            None => self.serving_available(None),
        };
        self.descend(target, available)
    }

    /// The lowest of [`Planner::rungs_down_to`] `target` whose stable share `available` pods
    /// carry; the current weight when none; `target` when going up or without dynamic scaling.
    /// None — write nothing — when none fits and the routers show no weight (they disagree: a
    /// write that reached one of two): the current weight is then unknown, and a write of any
    /// weight the stable cannot carry could be a step up for one of them.
    fn descend(&self, target: i32, available: i32) -> Option<i32> {
        if !self.descends || self.replicas == 0 {
            return Some(target);
        }
        // Unknown, it is taken as the highest: the weight comes down only as far as the stable
        // carries.
        let current = self.route_weight.unwrap_or(self.total);
        if target >= current {
            return Some(target);
        }
        // Unknown, a rung may also be a step *up* for a route below it (one added at 0, say):
        // it must then fit the canary's pods too (helper-40).
        let canary_available = match self.route_weight {
            Some(_) => i32::MAX,
            None => self.serving_available(self.destinations().0.as_deref()),
        };
        self.rungs_down_to(target)
            .into_iter()
            .filter(|w| self.stable_share_pods(*w) <= available)
            .filter(|w| *w == 0 || self.pods_for(*w) <= canary_available)
            .min()
            .or(self.route_weight)
    }

    /// With `dynamicStableScale`, the stable's pods on the way to a canary weight of `target`:
    /// while the weight goes up, what the stable carries now (it shrinks only once traffic has
    /// left it); on the way down, what the next weight down needs (capacity before traffic, one
    /// declared weight at a time: an abort needs room for a step, not a second revision, unless
    /// the steps declare no weight in between). One pod
    /// at least: the stable Service keeps selecting it.
    fn dynamic_stable_pods(&self, target: i32, stable_hash: &str) -> i32 {
        // Unknown (routers or routes that disagree): the stable grows whole, so that some
        // weight — 0 at worst — fits it and is written (helper-41: an abort whose canary lost
        // a pod fitted no rung and stalled).
        if self.route_weight.is_none() {
            return self.replicas.max(self.stable_floor());
        }
        let current = self.route_weight.unwrap_or(self.total);
        let pods = if target < current {
            // Judged by the stable revision's own pods: its Service and subset return to it
            // before traffic does.
            let now = self
                .descend(target, self.available(stable_hash))
                .unwrap_or(current);
            let next = self
                .rungs_down_to(target)
                .into_iter()
                .find(|w| *w < now)
                .unwrap_or(now);
            self.stable_share_pods(next)
        } else {
            self.stable_share_pods(current)
        };
        // As many as `serving_needs` keeps (a pod, `minPodsPerReplicaSet`): a smaller target
        // would be raised again and again, never at rest.
        pods.max(self.stable_floor())
    }

    fn record_weights(&mut self, weight: i32, canary_hash: &str, stable_hash: &str) {
        let canary_svc = self.canary_service.map(str::to_string);
        let stable_svc = self.stable_service.map(str::to_string);
        let stable_weight = self.total - weight;
        let c = self.st().canary.get_or_insert_with(CanaryStatus::default);
        c.weights = Some(TrafficWeights {
            canary: WeightDestination {
                weight,
                service_name: canary_svc,
                pod_template_hash: Some(canary_hash.into()),
            },
            stable: WeightDestination {
                weight: stable_weight,
                service_name: stable_svc,
                pod_template_hash: Some(stable_hash.into()),
            },
            verified: None,
        });
    }

    /// Canary pods for a weight out of the total ([`routed_replicas_of`]).
    fn pods_for(&self, weight: i32) -> i32 {
        routed_replicas_of(self.replicas, weight, self.total)
    }

    /// [`weight_at`] of the rollout's steps.
    fn weight_at(&self, idx: i32) -> i32 {
        weight_at(self.steps, idx, self.total)
    }

    /// Canary pods the step at `idx` asks for.
    /// The routed canary's pods for `weight` %: what carries it, and `minPodsPerReplicaSet` at
    /// least while there are any (Argo's CheckMinPodsPerReplicaSet).
    fn routed_pods(&self, weight: i32) -> i32 {
        match self.pods_for(weight) {
            0 => 0,
            n => n.max(self.min_pods),
        }
    }

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
        let for_weight = self.routed_pods(w);
        // setCanaryScale may add pods beyond what the weight needs, never fewer: a weight is
        // only given to pods that can carry it, so fewer would hold the rollout forever.
        match scale {
            Some(s) if s.match_traffic_weight != Some(true) => {
                if let Some(r) = s.replicas {
                    r.max(0).max(for_weight)
                } else if let Some(pw) = s.weight {
                    self.routed_pods(pw).max(for_weight)
                } else {
                    for_weight
                }
            }
            _ => for_weight,
        }
    }

    /// Whether `maxSurge` allows any pod above `replicas`.
    fn surge_allowed(&self) -> bool {
        self.surge_and_unavailable().0 > 0
    }

    /// The revision the stable Service (or stable subset) selects, and the canary's while it
    /// carries weight.
    fn serving(&self) -> Vec<String> {
        let mut serving: Vec<String> = self.service_hash(self.stable_service).into_iter().collect();
        let subsets = self.route_subsets.as_ref();
        serving.extend(subsets.and_then(|s| s.stable.clone()));
        if self.routed && self.route_weight.is_none_or(|w| w > 0) {
            serving.extend(self.service_hash(self.canary_service));
            serving.extend(subsets.and_then(|s| s.canary.clone()));
        }
        serving
    }

    /// What the canary and the stable destination select once the actions planned so far are
    /// applied: the DestinationRule subsets in subset mode, else the two Services.
    fn destinations(&self) -> (Option<String>, Option<String>) {
        match &self.route_subsets {
            Some(s) => (s.canary.clone(), s.stable.clone()),
            None => (
                self.service_hash(self.canary_service),
                self.service_hash(self.stable_service),
            ),
        }
    }

    /// The available pods a destination serves with: its revision's, or every pod of the host
    /// when it names none (a subset or Service someone stripped of its hash).
    fn serving_available(&self, dest: Option<&str>) -> i32 {
        match dest {
            Some(h) => self.available(h),
            None => self.obs.replica_sets.iter().map(|r| r.available).sum(),
        }
    }

    /// The available pods the stable Service must keep: `replicas − maxUnavailable`, and one.
    /// With `dynamicStableScale` only one: the stable shrinks to its share of the routed traffic
    /// by design (in-cluster clients of the stable Service share what is left).
    fn stable_floor(&self) -> i32 {
        if self.dynamic {
            return self.replicas.min(self.min_pods.max(1));
        }
        let (_, unavailable) = self.surge_and_unavailable();
        (self.replicas - unavailable).max(1).min(self.replicas)
    }

    /// `maxSurge` and `maxUnavailable` in pods.
    fn surge_and_unavailable(&self) -> (i32, i32) {
        let canary = self.obs.rollout.spec.canary();
        let default = || IntOrString::String("25%".into());
        surge_and_unavailable(
            self.replicas,
            &canary.map(|c| c.max_surge()).unwrap_or_else(default),
            &canary.map(|c| c.max_unavailable()).unwrap_or_else(default),
        )
    }

    /// Pods a revision that a Service selects keeps until the Service moves: one — unless
    /// `maxSurge` is 0 (the kept pod would take the only room the move has and deadlock it) or
    /// `maxUnavailable` allows every pod to be unavailable. Without a router and without surge,
    /// a Service that selects one revision may then briefly have no pod: docs/canary.md.
    fn serving_keep(&self) -> i32 {
        let (surge, unavailable) = self.surge_and_unavailable();
        if surge == 0 {
            return 0;
        }
        (self.replicas - unavailable).clamp(0, 1)
    }

    /// Points the stable Service back at the stable revision — once that revision has the
    /// pods to serve (for the stable's share with a router; `replicas − maxUnavailable`
    /// available without), or at least as many as what the Service selects now (and one). Until then the Service stays where it is, and its pods
    /// with it (the revision a Service selects keeps a pod).
    fn return_stable_service(&mut self, stable: &str) {
        let Some(current) = self.service_hash(self.stable_service) else {
            // Adopting a Service (from a Deployment, say): only once the revision is fully
            // available — its pods take all of what the Service's old pods served.
            if self.available(stable) >= self.replicas {
                self.switch_service(self.stable_service, stable);
            }
            return;
        };
        if current == stable {
            return;
        }
        // Enough: replicas − maxUnavailable, and with a router the pods the stable's share
        // needs.
        let floor = self.stable_floor();
        let enough = if self.routed {
            let share = self.total - self.route_weight.unwrap_or(0).clamp(0, self.total);
            self.pods_for(share).max(floor)
        } else {
            floor
        };
        let enough = self.accepted(stable, enough, Some(current.as_str()));
        if self.available(stable) >= enough.min(self.available(&current).max(1)) {
            self.switch_service(self.stable_service, stable);
        }
    }

    /// Without a router traffic follows pods: every ReplicaSet moves toward its target in
    /// `targets` (the others toward 0), no faster than `maxSurge` and `maxUnavailable` allow —
    /// in both directions, so an abort, an undo or a lower step never drops the pods serving
    /// traffic before their replacements are available. Scale-ups go in the order of
    /// `targets`; scale-downs take older revisions first, then `targets` from the last.
    fn pace_basic(&mut self, targets: &[(&str, i32)]) {
        let (surge, unavailable) = self.surge_and_unavailable();
        let mut sets: Vec<(String, PacedSet)> = targets
            .iter()
            .map(|(hash, target)| {
                let rs = self.rs(hash);
                (
                    hash.to_string(),
                    PacedSet {
                        replicas: rs.map(|r| r.replicas).unwrap_or(0),
                        available: rs.map(|r| r.available).unwrap_or(0),
                        target: *target,
                    },
                )
            })
            .collect();
        sets.extend(
            self.obs
                .replica_sets
                .iter()
                .filter(|r| !targets.iter().any(|(h, _)| *h == r.hash) && r.replicas > 0)
                .map(|r| {
                    (
                        r.hash.clone(),
                        PacedSet {
                            replicas: r.replicas,
                            available: r.available,
                            target: 0,
                        },
                    )
                }),
        );
        // A revision a Service still selects keeps a pod until the Service has moved.
        let serving = self.serving();
        let keep = self.serving_keep();
        for (hash, set) in &mut sets {
            if serving.contains(hash) {
                set.target = set.target.max(keep.min(set.replicas));
            }
        }
        let counts: Vec<PacedSet> = sets.iter().map(|(_, s)| *s).collect();
        let paced = pace(self.replicas, surge, unavailable, &counts);
        for ((hash, set), next) in sets.iter().zip(paced) {
            if self.rs(hash).is_none() || next != set.replicas || next > 0 {
                // `ensure_rs` writes only a change (or clears a scale-down deadline).
                self.ensure_rs(hash, next);
            }
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
        if self.routed {
            self.ensure_rs(&hash, self.replicas);
            self.scale_down_others(&[&hash]);
        } else {
            // Nothing else exists on a real first deploy; after a lost stable, what still
            // serves goes only as the new pods become available.
            self.pace_basic(&[(&hash, self.replicas)]);
        }
        let available = self.available(&hash);
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
        let available = self.available(&stable);
        // The stable Service moves to the revision first: whatever it selected before may have
        // no pods left (a deleted ReplicaSet), and the weight below sends it everything. It
        // moves once the revision can serve (see `return_stable_service`; adopting a Service
        // from a Deployment waits for full availability).
        self.return_stable_service(&stable);
        // Then canary traffic, then the canary Service, then the pods.
        if self.routed {
            let pods = if self.dynamic {
                self.dynamic_stable_pods(0, &stable)
            } else {
                self.replicas
            };
            self.ensure_rs(&stable, pods);
        }
        // The subsets move to the stable revision as it can carry their shares, and the weight
        // goes to 0 once the stable destination has pods (`set_weight` waits for both): a
        // Service or subset still on a deleted revision moves first.
        let zeroed = !self.routed || self.set_weight(0, &stable, &stable);
        // With dynamicStableScale (or a stable below full size) the weight may still be on its
        // way down, the stable growing back: the canary Service keeps the canary's pods until
        // it is 0.
        if (zeroed || !self.descends) && (available > 0 || self.replicas == 0) {
            self.switch_service(self.canary_service, &stable);
        }
        // On the way down the canary shrinks with the weight it still carries, as after an
        // abort: the room the stable grows into.
        if let Some(canary) = self.destinations().0.filter(|h| *h != stable) {
            self.shrink_with_weight(&canary);
        }
        if self.routed {
            // Revisions that carried traffic (the old stable after a promotion) wait out
            // `scaleDownDelaySeconds` before they go: proxies may still send to them.
            let delay = self
                .obs
                .rollout
                .spec
                .canary()
                .map(|c| c.scale_down_delay_seconds())
                .unwrap_or(30);
            // The old stable: what the stable Service or subset selected when this plan began,
            // and the stable destination the status last recorded — which still names the old
            // revision when the reconcile that moved the Service died before its deadline and
            // status writes (its successor sees the Service moved already).
            let recorded_stable = self
                .obs
                .rollout
                .status
                .as_ref()
                .and_then(|s| s.canary.as_ref())
                .and_then(|c| c.weights.as_ref())
                .and_then(|w| w.stable.pod_template_hash.clone());
            let was_stable: Vec<String> = self
                .obs
                .service(self.stable_service.unwrap_or_default())
                .and_then(|s| s.hash.clone())
                .into_iter()
                .chain(
                    self.obs
                        .subset_hashes
                        .as_ref()
                        .and_then(|s| s.stable.clone()),
                )
                .chain(recorded_stable)
                .collect();
            let old: Vec<ObservedReplicaSet> = self
                .obs
                .replica_sets
                .iter()
                .filter(|r| {
                    r.hash != stable
                        && r.replicas > 0
                        && r.scale_down_at.is_none()
                        && was_stable.contains(&r.hash)
                })
                .cloned()
                .collect();
            let serving = self.serving();
            for rs in &old {
                if delay > 0 && !serving.contains(&rs.hash) {
                    self.scale_down_after(rs, i64::from(delay));
                }
            }
            if delay > 0 {
                let delayed: Vec<&str> = old.iter().map(|r| r.hash.as_str()).collect();
                let mut keep = vec![stable.as_str()];
                keep.extend(delayed);
                self.scale_down_others(&keep);
            } else {
                self.scale_down_others(&[&stable]);
            }
        } else {
            self.pace_basic(&[(&stable, self.replicas)]);
        }
        if super::abort_pending(self.obs.rollout)
            && self
                .obs
                .rollout
                .status
                .as_ref()
                .and_then(|s| s.current_pod_hash.as_deref())
                == Some(stable.as_str())
        {
            // An abort that came after the promotion was decided: nothing is rolling out.
            self.plan.events.push(Event::warning(
                reasons::ROLLOUT_ABORT_IGNORED,
                format!(
                    "Abort ignored: revision {stable} is already stable; run 'kubectl aviary undo {}' to go back",
                    self.rollout_name()
                ),
            ));
        }
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
        self.aborting = true;
        let stable = stable.to_string();
        let hash = self.hash.clone();
        let canary = self.obs.rollout.spec.canary();
        if self.routed {
            let pods = if self.dynamic {
                // It grows back one declared weight ahead of the traffic.
                self.dynamic_stable_pods(0, &stable)
            } else {
                self.replicas
            };
            self.ensure_rs(&stable, pods);
        } else {
            // Without a router traffic follows pods: back to stable as fast as its pods become
            // available, never faster.
            self.pace_basic(&[(&stable, self.replicas), (&hash, 0)]);
        }
        // Should the stable Service have moved off the stable revision (a promotion that lost
        // its race with this abort, in older versions), it returns first — once that revision
        // has pods to serve with; its ReplicaSet is kept (ensured above) until then.
        self.return_stable_service(&stable);
        // Then all traffic back to stable, then the canary Service — only once the weight is
        // 0, which waits while the stable has no pod at all.
        // The canary subset stays where it is for this write: act moves subsets before the
        // weight, and a subset moved onto pods that can't carry the weight it still has would
        // get it for that moment.
        let keep = self
            .route_subsets
            .as_ref()
            .and_then(|s| s.canary.clone())
            .unwrap_or_else(|| hash.clone());
        let zeroed = !self.routed || self.set_weight(0, &keep, &stable);
        if zeroed {
            self.switch_service(self.canary_service, &stable);
        }
        let stable_available = self.available(&stable);
        let delay = canary
            .map(|c| c.abort_scale_down_delay_seconds())
            .unwrap_or(30);
        // The canary shrinks with the weight it still carries (after the weight write): the
        // room the stable grows into. (0 keeps it whole, for inspection.)
        if delay > 0 {
            self.shrink_with_weight(&hash);
        }
        if let Some(rs) = self.rs(&hash).cloned()
            && self.routed
        {
            // 0 keeps the canary up for inspection, as Argo Rollouts does.
            if delay > 0 && stable_available >= self.replicas {
                self.scale_down_after(&rs, i64::from(delay));
            }
        }
        if self.routed {
            self.scale_down_others(&[&stable, &hash]);
        }
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
            self.plan
                .events
                .push(Event::warning(reasons::ROLLOUT_ABORTED, why));
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
        let current_weight = self.current_weight();

        // -- replica counts
        let mut canary_target = self.canary_replicas_at(target_idx);
        if self.routed {
            // Never fewer canary pods than the weight it carries right now needs.
            canary_target = canary_target.max(self.routed_pods(current_weight));
            self.ensure_rs(&hash, canary_target);
            let stable_pods = if self.dynamic {
                // The weight this plan heads for (see below): 0 first when the canary
                // destination moves to pods that can't carry the current weight.
                let moving = self.service_hash(self.canary_service).as_deref()
                    != Some(hash.as_str())
                    || self
                        .route_subsets
                        .as_ref()
                        .is_some_and(|s| s.canary.as_deref() != Some(hash.as_str()));
                let can_carry =
                    canary_available > 0 && canary_available >= self.pods_for(current_weight);
                let aim = if moving && !can_carry && current_weight > 0 {
                    0
                } else {
                    self.desired_weight(target_idx, full, canary_available, current_weight)
                };
                self.dynamic_stable_pods(aim, &stable)
            } else {
                self.replicas
            };
            self.ensure_rs(&stable, stable_pods);
        } else {
            let weight = self.weight_at(target_idx);
            let (_, mut stable_target) = basic_split(self.replicas, weight, self.surge_allowed());
            // At 100 % the stable Service moves to the canary once it carries replicas −
            // maxUnavailable, before the stable's last pod goes: a Service never selects a
            // revision without pods, and the move needs no surge beyond one pod.
            if weight >= self.total && canary_available >= self.stable_floor() {
                self.switch_service(self.stable_service, &hash);
            }
            if self.stable_service.is_some()
                && self.service_hash(self.stable_service).as_deref() == Some(stable.as_str())
            {
                stable_target = stable_target.max(self.serving_keep());
            }
            // A stable Service left on an older canary (it took the Service at 100 %) keeps a
            // pod of it, which can leave the stable no room to grow back: while the stable has
            // no pod, the Service goes to the current canary if that serves at least as well.
            if let Some(current) = self.service_hash(self.stable_service)
                && current != stable
                && current != hash
                && self.available(&stable) == 0
                && self.available(&hash) >= self.available(&current).max(1)
            {
                self.switch_service(self.stable_service, &hash);
            }
            // Older canaries and the stable shrink only as the pods replacing them are available.
            self.pace_basic(&[(&hash, canary_target), (&stable, stable_target)]);
        }
        // Older canaries go; their traffic is handled by the weight ordering below.
        let canary_svc_hash = self.service_hash(self.canary_service);
        let keep_old_canary = canary_svc_hash
            .as_deref()
            .filter(|h| *h != hash && *h != stable)
            .map(str::to_string);
        match &keep_old_canary {
            _ if !self.routed => {}
            Some(old) if current_weight > 0 => self.scale_down_others(&[&stable, &hash, old]),
            _ => self.scale_down_others(&[&stable, &hash]),
        }

        // An inconclusive analysis holds the rollout until a human promotes (which clears the
        // condition) or aborts: neither a step nor the final promotion passes it.
        let waiting_on_inconclusive = self
            .plan
            .status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun);
        // -- promotion, when the steps are done (or skipped) and the canary is full size
        let ready_to_promote = (full || idx >= n)
            && canary_available >= self.enough(self.replicas)
            && !waiting_on_inconclusive
            && !self.obs.rollout.spec.is_paused();
        if ready_to_promote {
            self.promote(&stable);
            return;
        }

        // -- services and weight
        if self.routed {
            let desired = self.desired_weight(target_idx, full, canary_available, current_weight);
            // The canary destination: its subset in subset mode, else the canary Service.
            let canary_subset = self.route_subsets.as_ref().map(|s| s.canary.clone());
            let moving = canary_svc_hash.as_deref() != Some(hash.as_str())
                || canary_subset
                    .as_ref()
                    .is_some_and(|c| c.as_deref() != Some(hash.as_str()));
            if moving {
                let can_carry =
                    canary_available > 0 && canary_available >= self.pods_for(current_weight);
                let zeroed = if !can_carry && current_weight > 0 {
                    // Traffic away before the selector moves: the new pods can't take what the
                    // old had. The canary subset stays where it is for this write.
                    let keep = canary_subset.flatten().unwrap_or_else(|| hash.clone());
                    self.set_weight(0, &keep, &stable)
                } else {
                    true
                };
                if !zeroed {
                    // The stable can't take the traffic back yet: nothing moves.
                    return;
                }
                self.switch_service(self.canary_service, &hash);
            }
            self.return_stable_service(&stable);
            self.set_weight(desired, &hash, &stable);
        } else {
            if canary_available > 0 {
                self.switch_service(self.canary_service, &hash);
            }
            // At 100 % the stable Service has moved (or moves) to the canary, above.
            if self.weight_at(target_idx) < self.total {
                self.return_stable_service(&stable);
            }
        }

        // -- step completion
        if full || idx >= n || self.obs.rollout.spec.is_paused() {
            return;
        }
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
                let pods_ready = canary_available >= self.enough(canary_target);
                if self.routed {
                    // With no replicas at all there are no pods to route to: the step is done
                    // at weight 0 (F12: it waited forever).
                    pods_ready && (recorded_weight == Some(w) || self.replicas == 0)
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
            Some(StepAction::SetCanaryScale(_)) => canary_available >= self.enough(canary_target),
            Some(StepAction::Pause(p)) => self.pause_for(
                PauseReason::CanaryPauseStep,
                p.duration.as_ref().map(|d| secs(d.as_secs())),
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
                reasons::ROLLOUT_STEP_COMPLETED,
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
                    p.duration.as_ref().map(|d| secs(d.as_secs())),
                ),
                _ => false,
            };
            if !waits {
                self.plan.requeue_after = Some(std::time::Duration::from_millis(50));
            }
        }
    }

    /// With `dynamicStableScale`, the canary `hash` no larger than the pods of the weight it
    /// still carries, on the way down (abort, undo): the room the stable grows into.
    fn shrink_with_weight(&mut self, hash: &str) {
        let weight = self.route_weight.unwrap_or(0);
        if !self.dynamic || weight <= 0 {
            return;
        }
        let pods = self.routed_pods(weight);
        if self.rs(hash).is_some_and(|rs| pods < rs.replicas) {
            self.ensure_rs(hash, pods);
        }
    }

    /// The available pods of `hash` that count as enough to take the stable's place when
    /// `wanted` are wanted: `replicaProgressThreshold`'s share for the desired revision (it was
    /// promoted on that many: the stable Service and subset follow it, as in Argo, instead of
    /// the traffic going back to the old revision until every pod is up), all for any other.
    fn accepted(&self, hash: &str, wanted: i32, from: Option<&str>) -> i32 {
        // Only a newer revision taking the place of an older one (`from`): a promotion, not an
        // undo back to the old stable (helper-40) — whatever the weight reads (helper-41).
        let rev = |h: &str| self.rs(h).and_then(|r| r.revision);
        let newer = matches!(
            (rev(hash), from.and_then(rev)),
            (Some(a), Some(b)) if a > b
        );
        if hash == self.hash && newer {
            self.enough(wanted)
        } else {
            wanted
        }
    }

    /// The available canary pods that count as enough when `wanted` are wanted: all of them, or
    /// what `replicaProgressThreshold` asks for.
    fn enough(&self, wanted: i32) -> i32 {
        let threshold = self
            .obs
            .rollout
            .spec
            .canary()
            .and_then(|c| c.replica_progress_threshold.as_ref());
        crate::api::ReplicaProgressThreshold::pods_for(threshold, wanted)
    }

    /// The weight to route now: the step's weight once the canary can carry it; otherwise the
    /// last earlier weight it can carry; 0 while it has no available pod. Under `promote
    /// --full`, the weight it has, or the largest lower declared one its pods carry.
    fn desired_weight(&self, idx: i32, full: bool, canary_available: i32, current: i32) -> i32 {
        if canary_available == 0 {
            return 0;
        }
        let fits = |w: i32| self.enough(self.pods_for(w)) <= canary_available;
        let want = if full {
            // `promote --full` holds the weight until the canary is full size and promoted —
            // only what its available pods carry (F21: it held the weight of pods since lost):
            // else the largest declared weight below that they carry.
            if fits(current) {
                current
            } else {
                self.steps
                    .iter()
                    .filter_map(|s| s.set_weight)
                    .filter(|w| *w < current && fits(*w))
                    .max()
                    .unwrap_or(0)
            }
        } else {
            let step_weight = self.weight_at(idx);
            if fits(step_weight) {
                step_weight
            } else {
                // The weights declared before the current step, or past the last step (the
                // final scale-up) every declared weight: the last of them the canary carries.
                let upto = idx.clamp(0, self.n_steps()) as usize;
                self.steps[..upto.min(self.steps.len())]
                    .iter()
                    .rev()
                    .filter_map(|s| s.set_weight)
                    .find(|w| fits(*w))
                    .unwrap_or(0)
            }
        };
        // Moving traffic onto a canary that can carry it takes load off the stable: it waits
        // for nothing else (a stable short of a pod used to hold the rollout silently, F13).
        want
    }

    /// When the current step is an analysis whose run failed or errored, marks the rollout
    /// aborted, with the run's verdict as the reason.
    fn check_step_analysis(&mut self, _stable: &str) {
        if self.runs_retiring
            || self.plan.status.abort == Some(true)
            || self.plan.status.promote_full == Some(true)
        {
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
        if self.runs_retiring {
            return false;
        }
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

    /// Full promotion, in two phases: this plan only records the decision (the new revision is
    /// stable); the next reconcile, planning from the persisted decision, moves the Services,
    /// subsets and weight ([`Planner::steady`]). A decision that fails to persist (an abort
    /// raced it) has therefore moved nothing.
    fn promote(&mut self, old_stable: &str) {
        let hash = self.hash.clone();
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
            reasons::ROLLOUT_COMPLETED,
            format!(
                "Rollout completed update to revision {hash} (was {old_stable}): fully promoted"
            ),
        ));
        // The switch follows as soon as the decision is persisted.
        self.promoted = true;
        self.plan.requeue_after = Some(std::time::Duration::from_millis(50));
    }
}

//! The moves both strategies make on the world, whatever they decided: size a revision's
//! ReplicaSet, run and honour scale-down delays, point a Service at a revision, pause for a human
//! and word an abort. A strategy's planner implements [`Moves`] by giving access to what was
//! observed and to the plan it is building; the moves themselves are provided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{
    Action, AnalysisKind, Event, Observed, ObservedReplicaSet, ObservedService, Plan, after,
    ceil_second,
};
use crate::api::wire::reasons;
use crate::api::{PauseCondition, PauseReason};

/// How long a plan that waits for pods (a selector, weight or scale-down held until a revision
/// has them, or until traffic has left it) sleeps before looking again: ReplicaSet changes wake
/// it sooner.
pub(super) const WAIT_FOR_PODS_SECS: i64 = 5;

pub(super) trait Moves {
    /// What the controller observed.
    fn observed(&self) -> &Observed<'_>;
    /// The plan under construction.
    fn plan(&self) -> &Plan;
    fn plan_mut(&mut self) -> &mut Plan;

    fn now(&self) -> Timestamp {
        self.observed().now
    }

    /// Available pods of a revision's ReplicaSet (0 when there is none).
    fn available(&self, hash: &str) -> i32 {
        self.rs(hash).map(|r| r.available).unwrap_or(0)
    }

    /// The observed ReplicaSet of a revision.
    fn rs(&self, hash: &str) -> Option<&ObservedReplicaSet> {
        self.observed()
            .replica_sets
            .iter()
            .find(|rs| rs.hash == hash)
    }

    /// `rollbackWindow`: the revision number of `hash` when going back to it from the stable
    /// revision skips the steps and analysis (see
    /// [`crate::api::RolloutSpec::rollback_within_window`]). Both ReplicaSets must exist.
    fn rollback_in_window(&self, hash: &str, stable: Option<&str>) -> Option<i64> {
        let stable = stable.filter(|s| *s != hash)?;
        let to = self.rs(hash)?.revision?;
        let from = self.rs(stable)?.revision?;
        let others: Vec<i64> = self
            .observed()
            .replica_sets
            .iter()
            .filter(|r| r.hash != hash && r.hash != stable)
            .filter_map(|r| r.revision)
            .collect();
        self.observed()
            .rollout
            .spec
            .rollback_within_window(to, from, &others)
            .then_some(to)
    }

    /// The Event of a rollback inside `rollbackWindow`.
    fn rollback_in_window_event(&self, revision: i64) -> Event {
        let window = self
            .observed()
            .rollout
            .spec
            .rollback_window
            .as_ref()
            .and_then(|w| w.revisions)
            .unwrap_or(0);
        Event::normal(
            reasons::SKIP_STEPS,
            format!(
                "Rollback to revision {revision}, within rollbackWindow.revisions ({window}): skipping all steps and analysis"
            ),
        )
    }

    fn next_revision(&self) -> i64 {
        self.observed()
            .replica_sets
            .iter()
            .filter_map(|r| r.revision)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Makes sure the ReplicaSet of `hash` exists with `replicas` pods (clearing a scale-down
    /// deadline it may carry: it is wanted again, unless [`Moves::keeps_deadline`] says the
    /// deadline still means something).
    fn ensure_rs(&mut self, hash: &str, replicas: i32) {
        match self.rs(hash).cloned() {
            None => {
                let revision = self.next_revision();
                self.plan_mut().actions.push(Action::CreateReplicaSet {
                    hash: hash.into(),
                    replicas,
                    revision,
                });
            }
            Some(rs) => {
                let now = self.now();
                // A deadline still to come that this ReplicaSet keeps holds its pods until then.
                let keep = self.keeps_deadline(&rs) && rs.scale_down_at.is_some_and(|at| at > now);
                let floor = if keep {
                    if let Some(at) = rs.scale_down_at {
                        self.plan_mut().requeue_at(now, at);
                    }
                    rs.replicas
                } else {
                    self.serving_needs(&rs.hash).min(rs.replicas)
                };
                let replicas = if replicas < floor {
                    // Traffic reaches it, or left it within its delay: it keeps the pods that
                    // traffic needs until the selector or weight moves away, or the delay ends.
                    if !keep {
                        self.plan_mut()
                            .requeue_at(now, after(now, WAIT_FOR_PODS_SECS));
                    }
                    floor
                } else {
                    replicas
                };
                let clear = (rs.scale_down_at.is_some() && !keep).then_some(None);
                if rs.replicas != replicas || (replicas > 0 && clear.is_some()) {
                    self.plan_mut().actions.push(Action::ScaleReplicaSet {
                        name: rs.name,
                        replicas,
                        scale_down_at: clear,
                    });
                }
            }
        }
    }

    /// Whether a wanted ReplicaSet keeps a scale-down deadline still to come: the deadline then
    /// says when traffic left the revision, and holds its pods until then, however much (or
    /// little) it is wanted meanwhile.
    fn keeps_deadline(&self, _rs: &ObservedReplicaSet) -> bool {
        false
    }

    /// The pods revision `hash` needs for the traffic it carries once the actions planned so
    /// far are applied: [`Moves::ensure_rs`] never scales it below that.
    fn serving_needs(&self, _hash: &str) -> i32 {
        0
    }

    /// Scales every ReplicaSet not in `keep` to zero, honouring running scale-down delays.
    fn scale_down_others(&mut self, keep: &[&str]) {
        let now = self.now();
        let others: Vec<ObservedReplicaSet> = self
            .observed()
            .replica_sets
            .iter()
            .filter(|rs| !keep.contains(&rs.hash.as_str()) && rs.replicas > 0)
            .cloned()
            .collect();
        for rs in others {
            if self.serving_needs(&rs.hash) > 0 {
                // Traffic still reaches it: look again once the selector has moved.
                self.plan_mut()
                    .requeue_at(now, after(now, WAIT_FOR_PODS_SECS));
                continue;
            }
            match rs.scale_down_at {
                Some(at) if at > now && !self.over_delay_limit(&rs, Some(at)) => {
                    self.plan_mut().requeue_at(now, at)
                }
                at => self.plan_mut().actions.push(Action::ScaleReplicaSet {
                    name: rs.name,
                    replicas: 0,
                    scale_down_at: at.map(|_| None),
                }),
            }
        }
    }

    /// Starts a scale-down delay on `rs` (if none runs), or scales it to 0 once it has passed.
    fn scale_down_after(&mut self, rs: &ObservedReplicaSet, delay_secs: i64) {
        if rs.replicas == 0 {
            return;
        }
        let now = self.now();
        let serving = self.serving_needs(&rs.hash) > 0;
        match rs.scale_down_at {
            // Past `scaleDownDelayRevisionLimit`: no delay, once no traffic reaches it. (Ranked
            // by the deadline it would get, as it will be from the next reconcile on.)
            _ if !serving
                && self.over_delay_limit(rs, rs.scale_down_at.or(Some(after(now, delay_secs)))) =>
            {
                self.plan_mut().actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: 0,
                    scale_down_at: rs.scale_down_at.map(|_| None),
                })
            }
            None => {
                let at = after(now, delay_secs);
                let plan = self.plan_mut();
                plan.actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: rs.replicas,
                    scale_down_at: Some(Some(at)),
                });
                plan.requeue_at(now, at);
            }
            Some(at) if at > now => self.plan_mut().requeue_at(now, at),
            Some(_) if serving => self
                .plan_mut()
                .requeue_at(now, after(now, WAIT_FOR_PODS_SECS)),
            Some(_) => self.plan_mut().actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas: 0,
                scale_down_at: Some(None),
            }),
        }
    }

    /// `scaleDownDelayRevisionLimit`: whether `rs` is past the old ReplicaSets that may keep
    /// their pods through a scale-down delay — those traffic left most recently take the places
    /// first (a later deadline; `deadline` is the one `rs` has or is about to get). Not by revision:
    /// a revision returned to by an undo keeps its old number (Argo renumbers it), and the one
    /// traffic just left is the one proxies may still send to. The revision rolling out and the
    /// stable one never count, nor go by it.
    fn over_delay_limit(&self, rs: &ObservedReplicaSet, deadline: Option<Timestamp>) -> bool {
        let Some(limit) = self
            .observed()
            .rollout
            .spec
            .scale_down_delay_revision_limit()
        else {
            return false;
        };
        let st = &self.plan().status;
        let exempt = |hash: &str| {
            st.current_pod_hash.as_deref() == Some(hash) || st.stable_rs.as_deref() == Some(hash)
        };
        if exempt(&rs.hash) {
            return false;
        }
        let now = self.now();
        let order = |r: &ObservedReplicaSet, at: Option<Timestamp>| {
            (
                at.unwrap_or(Timestamp::MAX),
                r.revision.unwrap_or(0),
                r.name.clone(),
            )
        };
        let own = order(rs, deadline);
        let waiting = self
            .observed()
            .replica_sets
            .iter()
            .filter(|r| r.name != rs.name && !exempt(&r.hash))
            .filter(|r| {
                let at = self.deadline_as_planned(r);
                order(r, at) > own
                    && at.is_some_and(|at| at > now)
                    && self.rs_as_planned(&r.hash).is_some_and(|p| p.replicas > 0)
            })
            .count();
        waiting >= usize::try_from(limit).unwrap_or(0)
    }

    /// The scale-down deadline `rs` carries once the actions planned so far are applied.
    fn deadline_as_planned(&self, rs: &ObservedReplicaSet) -> Option<Timestamp> {
        self.plan()
            .actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::ScaleReplicaSet {
                    name,
                    scale_down_at: Some(at),
                    ..
                } if *name == rs.name => Some(*at),
                _ => None,
            })
            .unwrap_or(rs.scale_down_at)
    }

    fn observed_service(&self, name: &str) -> Option<&ObservedService> {
        self.observed().service(name)
    }

    /// The available pods a revision's ReplicaSet needs before a Service with no hash selector
    /// yet is pointed at it ([`Moves::switch_service`]): all of them, as a rule.
    fn adoption_needs(&self, _service: &str, rs: &ObservedReplicaSet) -> i32 {
        rs.replicas
    }

    /// The hash a Service's selector points at once the actions planned so far are applied.
    fn service_hash(&self, service: Option<&str>) -> Option<String> {
        let name = service?;
        let planned = self.plan().actions.iter().rev().find_map(|a| match a {
            Action::SwitchService { service, hash } if service == name => Some(hash.clone()),
            _ => None,
        });
        planned.or_else(|| self.observed_service(name).and_then(|s| s.hash.clone()))
    }

    /// The ReplicaSet of `hash` once the actions planned so far are applied: the observed one at
    /// the size this plan last gives it, or the one this plan creates.
    fn rs_as_planned(&self, hash: &str) -> Option<ObservedReplicaSet> {
        let actions = &self.plan().actions;
        match self.rs(hash).cloned() {
            Some(mut rs) => {
                if let Some(replicas) = actions.iter().rev().find_map(|a| match a {
                    Action::ScaleReplicaSet { name, replicas, .. } if *name == rs.name => {
                        Some(*replicas)
                    }
                    _ => None,
                }) {
                    rs.replicas = replicas;
                }
                Some(rs)
            }
            None => actions.iter().find_map(|a| match a {
                Action::CreateReplicaSet {
                    hash: h, replicas, ..
                } if h == hash => {
                    let rollout = self.observed().rollout.metadata.name.as_deref();
                    Some(ObservedReplicaSet {
                        name: super::replica_set_name(rollout.unwrap_or_default(), hash),
                        hash: hash.to_string(),
                        replicas: *replicas,
                        ..Default::default()
                    })
                }
                _ => None,
            }),
        }
    }

    /// Points `service` at `hash` unless it already selects it.
    fn switch_service(&mut self, service: Option<&str>, hash: &str) {
        let Some(name) = service else { return };
        let current = self.service_hash(Some(name));
        // Adopting a Service (no hash selector yet: it selects every pod with its labels — a
        // Deployment's, before a workloadRef migration): only once the revision's ReplicaSet is
        // fully available at its own size (as Argo's IsReplicaSetAvailable), so that its pods
        // can take what the Service's old pods served.
        let full = self
            .rs(hash)
            .is_some_and(|rs| rs.replicas > 0 && rs.available >= self.adoption_needs(name, rs));
        if current.is_none() && !full && self.observed().rollout.spec.replicas() > 0 {
            return;
        }
        if current.as_deref() != Some(hash) {
            let plan = self.plan_mut();
            plan.actions.push(Action::SwitchService {
                service: name.into(),
                hash: hash.into(),
            });
            plan.events.push(Event::normal(
                reasons::SWITCH_SERVICE,
                format!("Switched selector for service '{name}' to pod template hash '{hash}'"),
            ));
        }
    }

    /// A controller pause for `reason`, lasting `duration` seconds (`None`: until promoted).
    /// Returns whether it is over: its time has passed, or `promote` cleared the pause
    /// conditions while `controllerPause` stayed set.
    fn pause_for(&mut self, reason: PauseReason, duration: Option<i64>) -> bool {
        let now = self.now();
        let status = &self.plan().status;
        let existing = status
            .pause_conditions
            .iter()
            .find(|c| c.reason == reason)
            .map(|c| c.start_time.0);
        let controller_paused = status.controller_pause == Some(true);
        match (existing, duration) {
            // We paused and the condition is gone: `promote` cleared it.
            (None, _) if controller_paused => true,
            (None, Some(0)) => true,
            (None, d) => {
                // Status times are stored in whole seconds: start the pause at the next whole
                // second so that a restart, reading it back, never shortens the pause.
                let start = ceil_second(now);
                let plan = self.plan_mut();
                plan.status.pause_conditions.push(PauseCondition {
                    reason,
                    start_time: Time(start),
                });
                plan.status.controller_pause = Some(true);
                if let Some(secs) = d {
                    plan.requeue_at(now, after(start, secs));
                }
                false
            }
            (Some(_), None) => false,
            (Some(start), Some(secs)) => {
                let end = after(start, secs);
                if now >= end {
                    true
                } else {
                    self.plan_mut().requeue_at(now, end);
                    false
                }
            }
        }
    }

    /// Runs of superseded revisions, and a background run once revision `hash` is stable, are
    /// terminated. Verdicts are bound to one attempt at a revision: the runs of a superseded
    /// revision are retired (set aside, no longer observed), so that returning to it later
    /// measures afresh instead of reading a verdict from before — a terminated run reads
    /// "Successful". So are the runs of `hash` while an abort stands that is on record
    /// (`abortedAt` observed: one acted on before its status write landed, then lost to the
    /// user's retry, would leave the attempt going on without the verdicts it earned), so a
    /// retry measures afresh rather than re-reading the verdict that aborted it, and when its
    /// steps changed (`restarted`). A step run of `hash` before `current_step` (one `promote`
    /// skipped past) stops measuring.
    fn tidy_analysis_runs(&mut self, hash: &str, restarted: bool, current_step: Option<i32>) {
        let steady = self.plan().status.stable_rs.as_deref() == Some(hash);
        let aborted = self
            .observed()
            .rollout
            .status
            .as_ref()
            .is_some_and(|s| s.aborted_at.is_some())
            && self.plan().status.abort == Some(true);
        // The attempt the status records (its revision and its steps) keeps its runs until the
        // plan's own is on record: should this plan's status write be lost (a conflict with an
        // `undo` or with steps edited back), that attempt goes on, with the verdicts it already
        // earned. (Runs of other steps do not count meanwhile: `Observed::counts`.)
        let recorded = self.observed().rollout.status.as_ref();
        let recorded_hash = recorded.and_then(|s| s.current_pod_hash.as_deref());
        let recorded_steps = recorded.and_then(|s| s.current_step_hash.as_deref());
        let moving_on = recorded_hash != Some(hash)
            || recorded_steps != self.plan().status.current_step_hash.as_deref();
        let mut actions = vec![];
        for run in &self.observed().analysis_runs {
            let of_recorded = recorded_hash == Some(run.hash.as_str())
                && run
                    .steps_hash
                    .as_deref()
                    .is_none_or(|h| Some(h) == recorded_steps);
            if moving_on && of_recorded {
                continue;
            }
            let running = !run.phase.is_completed();
            let superseded = run.hash != hash;
            // A run of steps since edited (created just before the edit, seen only now).
            let stale = !self.observed().counts(run);
            let retire = superseded || stale || ((aborted || restarted) && run.hash == hash);
            // Promoted in full: its background run no longer judges it.
            let full = self.plan().status.promote_full == Some(true);
            let done_background = (steady || full) && run.kind == AnalysisKind::Background;
            let skipped =
                matches!((run.kind, current_step), (AnalysisKind::Step(i), Some(c)) if i < c);
            if retire || (running && (superseded || done_background || skipped)) {
                actions.push(Action::TerminateAnalysisRun {
                    name: run.name.clone(),
                    retire,
                });
            }
        }
        self.plan_mut().actions.extend(actions);
    }

    /// `progressDeadlineSeconds`: the ReplicaSet of `hash` was created or scaled that long ago
    /// and its pods are still not all available. Returns the condition message then (marking the
    /// rollout aborted when `progressDeadlineAbort` says so); otherwise wakes up at the deadline.
    /// Pauses, analysis and scale-down delays never count: only pods that should be there.
    fn progress_deadline(&mut self, hash: &str) -> Option<String> {
        let status = &self.plan().status;
        // A paused rollout is waiting on purpose, not failing to progress (as Argo Rollouts:
        // the deadline never runs out during a pause).
        if status.abort == Some(true)
            || !status.pause_conditions.is_empty()
            || self.observed().rollout.spec.is_paused()
        {
            return None;
        }
        let rs = self.rs(hash).cloned()?;
        if rs.replicas == 0 || rs.available >= rs.replicas {
            return None;
        }
        let spec = &self.observed().rollout.spec;
        let (limit, abort) = (
            spec.progress_deadline_seconds(),
            spec.progress_deadline_abort(),
        );
        let deadline = after(rs.scaled_at?, i64::from(limit));
        let now = self.now();
        if now < deadline {
            self.plan_mut().requeue_at(now, deadline);
            return None;
        }
        let msg = format!("ReplicaSet \"{}\" has timed out progressing.", rs.name);
        if abort {
            let st = &mut self.plan_mut().status;
            st.abort = Some(true);
            st.message = Some(format!(
                "Rollout aborted update to revision {}: {msg}",
                rs.hash
            ));
        }
        Some(msg)
    }

    /// An analysis ended Inconclusive: pause for a human. Returns true once `promote` cleared the
    /// pause (move on as if it had passed).
    fn hold_on_inconclusive(&mut self) -> bool {
        let now = Time(self.now());
        let st = &mut self.plan_mut().status;
        let paused = st.controller_pause == Some(true);
        let has = st
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun);
        if paused && !has {
            return true;
        }
        if !has {
            st.pause_conditions.push(PauseCondition {
                reason: PauseReason::InconclusiveAnalysisRun,
                start_time: now,
            });
            st.controller_pause = Some(true);
        }
        false
    }

    /// Why the rollout of revision `hash` is aborted: the message the aborting party left, or a
    /// manual abort.
    fn abort_reason(&self, hash: &str) -> String {
        let status = &self.plan().status;
        let detail = status
            .condition(crate::api::conditions::types::PROGRESSING)
            .filter(|c| c.reason == reasons::ROLLOUT_ABORTED)
            .map(|c| c.message.clone())
            .or_else(|| {
                status
                    .message
                    .clone()
                    .filter(|m| m.starts_with("Rollout aborted"))
            });
        detail.unwrap_or_else(|| {
            format!("Rollout aborted update to revision {hash}: aborted by user")
        })
    }
}

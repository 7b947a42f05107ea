//! The blue-green strategy: the new revision comes up beside the active one, behind
//! `previewService`; once it is fully available (and its pre-promotion analysis passed, and a
//! human promoted it when asked to) it is scaled to full size and `activeService` switches to it
//! in one selector change; a post-promotion analysis may still send traffic back.
//!
//! What the status records, and the order of moves that keeps production traffic safe:
//! - `blueGreen.scaleUpPreviewCheckPoint` is the decision to promote: only once it is persisted is
//!   the preview scaled to full size;
//! - `blueGreen.activeSelector` is the revision the active Service must select: it is set to the
//!   new revision only when that ReplicaSet is saturated, and the Service follows only once that
//!   is persisted (so a concurrent abort, which fails the status write, can never be raced by a
//!   switch); the active Service never moves to a ReplicaSet whose available pods can't carry
//!   all of the traffic;
//! - the previous active ReplicaSet stays at full size while the post-promotion analysis runs,
//!   and for `scaleDownDelaySeconds` after the switch (the deadline is visible on it before the
//!   new revision becomes stable), so a failed analysis or an undo switches back at once;
//! - an abort moves the active Service back first, then keeps the preview for
//!   `abortScaleDownDelaySeconds` (0: until the next update), counted once stable is saturated;
//! - every switch writes the deadline of the revision it leaves before it moves the Service, and
//!   the template keeps a deadline still to come (an undo within the delay does not forget it).
//!
//! A new template supersedes whatever the previous one was doing, an abort already acted on
//! included (one not yet acted on is the user's abort of what runs now, and stays); an unfinished
//! promotion of the previous revision goes back to the stable one. A template that is the
//! stable one returns at once. A template whose ReplicaSet is still up in its scale-down delay
//! is not fast-tracked (Argo skips its pause and analysis): an aborted preview, a revision that
//! served while the stable was lost, or one that never finished its post-promotion analysis
//! waits out such a delay too, and the planner cannot tell them from an earlier stable one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::moves::Moves;
use super::status::{Summary, summarize};
use super::{
    Action, AnalysisKind, Event, Observed, ObservedAnalysisRun, ObservedReplicaSet, Plan, after,
    revision_hash,
};
use crate::api::wire::reasons;
use crate::api::{
    AnalysisPhase, BlueGreenStatus, BlueGreenStrategy, PauseReason, RolloutAnalysisRunStatus,
    RolloutStatus,
};

/// The message left on an AnalysisRun's record in status when a new attempt at the revision (a
/// retry, or a return to it) no longer counts that run: a fresh run measures the new attempt.
pub const SUPERSEDED: &str = "superseded by a new attempt: a new AnalysisRun measures it";

/// How soon to look again after a decision that the next reconcile carries out.
const NEXT_STEP: std::time::Duration = std::time::Duration::from_millis(50);

struct Planner<'p> {
    obs: &'p Observed<'p>,
    bg: &'p BlueGreenStrategy,
    replicas: i32,
    hash: String,
    plan: Plan,
    /// Set when the new revision's pods missed `progressDeadlineSeconds`.
    deadline_exceeded: Option<String>,
    /// Why the rollout cannot go on by itself (a lost stable ReplicaSet), with the condition
    /// reason.
    stuck: Option<(&'static str, String)>,
}

impl Moves for Planner<'_> {
    fn observed(&self) -> &Observed<'_> {
        self.obs
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn plan_mut(&mut self) -> &mut Plan {
        &mut self.plan
    }
    /// The template keeps a deadline written when production traffic left it (a new template
    /// mid-promotion then an undo back to it, an abort, someone else's edit of the active
    /// Service): should another template supersede it within its delay, its pods are still
    /// kept. The stable clears it (the next switch away writes its own).
    fn keeps_deadline(&self, rs: &ObservedReplicaSet) -> bool {
        rs.hash == self.hash && self.plan.status.stable_rs.as_deref() != Some(rs.hash.as_str())
    }
    /// The revision the active Service selects (once the actions planned so far are applied)
    /// carries all production traffic: it keeps `replicas` pods whatever the status says (an
    /// abort that could not move the Service, a retry, an undo over a lost stable, someone
    /// else's edit), until the Service has moved.
    fn serving_needs(&self, hash: &str) -> i32 {
        if self.service_hash(self.active_service()).as_deref() == Some(hash) {
            self.replicas
        } else {
            0
        }
    }
}

/// Plans one reconcile of a blue-green Rollout.
pub fn plan(obs: &Observed<'_>, bg: &BlueGreenStrategy) -> Plan {
    let ro = obs.rollout;
    let old = ro.status.clone().unwrap_or_default();
    let hash = revision_hash(ro, &obs.replica_sets);
    let mut p = Planner {
        obs,
        bg,
        replicas: ro.spec.replicas().max(0),
        hash,
        plan: Plan {
            actions: vec![],
            status: old.clone(),
            events: vec![],
            requeue_after: None,
        },
        deadline_exceeded: None,
        stuck: None,
    };
    p.run(&old);
    let progress = p.progress_message();
    let active = p.active_after_plan();
    let summary = Summary {
        rollout: ro.metadata.name.as_deref().unwrap_or_default(),
        hash: &p.hash,
        replicas: p.replicas,
        replica_sets: &obs.replica_sets,
        paused: ro.spec.is_paused(),
        generation: ro.metadata.generation,
        steps: 0,
        progress,
        active: active.as_deref(),
        now: Time(obs.now),
        deadline_exceeded: p.deadline_exceeded.as_deref(),
        stuck: p.stuck.as_ref().map(|(r, m)| (*r, m.as_str())),
    };
    summarize(&mut p.plan.status, &summary);
    p.plan
}

fn kind_label(kind: AnalysisKind) -> &'static str {
    match kind {
        AnalysisKind::PrePromotion => "pre-promotion",
        AnalysisKind::PostPromotion => "post-promotion",
        AnalysisKind::Step(_) => "step",
        AnalysisKind::Background => "background",
    }
}

impl<'p> Planner<'p> {
    fn st(&mut self) -> &mut RolloutStatus {
        &mut self.plan.status
    }

    fn bgs(&mut self) -> &mut BlueGreenStatus {
        self.plan
            .status
            .blue_green
            .get_or_insert_with(BlueGreenStatus::default)
    }

    fn bg_status(&self) -> BlueGreenStatus {
        self.plan.status.blue_green.clone().unwrap_or_default()
    }

    fn active_service(&self) -> Option<&'p str> {
        Some(self.bg.active_service.as_str())
    }

    fn preview_service(&self) -> Option<&'p str> {
        self.bg.preview_service.as_deref()
    }

    /// The new revision's size before promotion.
    fn preview_replicas(&self) -> i32 {
        self.bg
            .preview_replica_count
            .map(|c| c.clamp(0, self.replicas))
            .unwrap_or(self.replicas)
    }

    fn promote_full(&self) -> bool {
        self.plan.status.promote_full == Some(true)
    }

    fn run(&mut self, old: &RolloutStatus) {
        let hash = self.hash.clone();
        let template_changed = old.current_pod_hash.as_deref().is_some_and(|h| h != hash);
        let stable = old
            .stable_rs
            .clone()
            .filter(|s| self.rs(s).is_some() || *s == hash);
        if template_changed {
            self.new_template(stable.as_deref());
            if !super::abort_pending(self.obs.rollout)
                && let Some(revision) = self.rollback_in_window(&hash, stable.as_deref())
            {
                // Persisted with the new template: it is promoted as by `promote --full`.
                self.st().promote_full = Some(true);
                let event = self.rollback_in_window_event(revision);
                self.plan.events.push(event);
            }
        }
        self.st().current_pod_hash = Some(hash.clone());
        let lost = old.stable_rs.clone().filter(|_| stable.is_none());
        match stable {
            // The stable ReplicaSet was deleted mid-update: not a first deploy.
            None if lost.is_some() => {
                if let Some(s) = lost {
                    self.stable_lost(&s, old);
                }
            }
            // First deploy: full size at once, stable at once, no preview, pause or analysis.
            None => self.steady(&hash),
            Some(s) if s == hash => {
                if template_changed {
                    self.plan.events.push(Event::normal(
                        reasons::ROLLOUT_ROLLBACK,
                        format!(
                            "The template is the stable revision {s} again: back to it at once, without preview, pause or analysis"
                        ),
                    ));
                }
                self.steady(&s)
            }
            Some(s) => {
                if !template_changed && old.abort != Some(true) && old.aborted_at.is_some() {
                    self.retry(&s);
                }
                self.check_analysis();
                self.deadline_exceeded = self.progress_deadline(&hash);
                if self.plan.status.abort == Some(true) {
                    self.abort(&s)
                } else {
                    self.progress(&s)
                }
            }
        }
        self.tidy_analysis_runs(&hash, false, None);
    }

    /// The stable ReplicaSet is gone mid-update (its pod template with it, so it cannot be
    /// recreated): say so and wait for a human to promote the new revision (`promote --full`)
    /// or apply another template. Meanwhile production traffic goes to the pods that exist: the
    /// new revision is scaled to full size and the active Service moves to it once all its pods
    /// are available. It never becomes stable by itself (an abort has nothing to return to).
    fn stable_lost(&mut self, stable: &str, old: &RolloutStatus) {
        if self.promote_full() && self.plan.status.abort != Some(true) {
            // A human chose the new revision: it goes out at full size, as a first deploy.
            let hash = self.hash.clone();
            self.steady(&hash);
            return;
        }
        let hash = self.hash.clone();
        let name = self.obs.rollout.metadata.name.clone().unwrap_or_default();
        let msg = format!(
            "stable ReplicaSet '{}' was deleted while revision {hash} was rolling out: its pod template is gone, so Aviary cannot restore it, and the active Service goes to the new revision's pods; run 'kubectl aviary promote --full {name}' to make it stable ('kubectl aviary retry {name}' first if the rollout is aborted), or apply an earlier template",
            super::replica_set_name(&name, stable),
        );
        if old.message.as_deref() != Some(msg.as_str()) {
            self.plan.events.push(Event::warning(
                reasons::STABLE_REPLICA_SET_LOST,
                msg.clone(),
            ));
        }
        let now = Time(self.obs.now);
        let st = self.st();
        st.pause_conditions.clear();
        st.controller_pause = None;
        if st.abort == Some(true) {
            // Acted on, as far as it can be: there is no stable to return to.
            st.aborted_at.get_or_insert(now);
            st.promote_full = None;
        } else {
            st.aborted_at = None;
        }
        st.message = Some(msg.clone());
        self.ensure_rs(&hash, self.replicas);
        self.switch_service(self.preview_service(), &hash);
        let (on_new, lingering) = self.move_active(&hash);
        let mut keep = vec![hash.as_str()];
        keep.extend(lingering.as_deref());
        self.scale_down_others(&keep);
        let bgs = self.bgs();
        bgs.scale_up_preview_check_point = None;
        bgs.preview_selector = Some(hash.clone());
        if on_new {
            bgs.active_selector = Some(hash.clone());
        }
        self.stuck = Some((reasons::STABLE_REPLICA_SET_LOST, msg));
    }

    // ---- attempts -------------------------------------------------------------------------

    /// A new template: whatever the previous revision was doing is over.
    fn new_template(&mut self, stable: Option<&str>) {
        let st = self.st();
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        // An abort not yet acted on is a user's abort of what runs now (our status write may
        // never have recorded the new template): it stays, as on a canary.
        if !super::abort_pending(self.obs.rollout) {
            let st = self.st();
            st.abort = None;
            st.aborted_at = None;
        }
        let bgs = self.bgs();
        bgs.scale_up_preview_check_point = None;
        if let Some(s) = stable {
            bgs.active_selector = Some(s.to_string());
        }
        self.supersede_runs();
    }

    /// `abort` was cleared after an abort (`kubectl aviary retry`): the update starts over, with
    /// fresh analysis runs.
    fn retry(&mut self, stable: &str) {
        let hash = self.hash.clone();
        let st = self.st();
        st.aborted_at = None;
        st.pause_conditions.clear();
        st.controller_pause = None;
        let bgs = self.bgs();
        bgs.scale_up_preview_check_point = None;
        bgs.active_selector = Some(stable.to_string());
        self.supersede_runs();
        self.plan.events.push(Event::normal(
            reasons::ROLLOUT_RETRY,
            format!("Retrying the update to revision {hash}"),
        ));
    }

    // ---- analysis -------------------------------------------------------------------------

    fn record(&self, kind: AnalysisKind) -> Option<RolloutAnalysisRunStatus> {
        let bgs = self.plan.status.blue_green.as_ref()?;
        match kind {
            AnalysisKind::PrePromotion => bgs.pre_promotion_analysis_run_status.clone(),
            AnalysisKind::PostPromotion => bgs.post_promotion_analysis_run_status.clone(),
            _ => None,
        }
    }

    fn set_record(&mut self, kind: AnalysisKind, record: Option<RolloutAnalysisRunStatus>) {
        let bgs = self.bgs();
        match kind {
            AnalysisKind::PrePromotion => bgs.pre_promotion_analysis_run_status = record,
            AnalysisKind::PostPromotion => bgs.post_promotion_analysis_run_status = record,
            _ => {}
        }
    }

    /// Runs that measured an earlier attempt at this revision no longer count: they are retired
    /// (so a fresh run is created beside them), and marked superseded in status until the
    /// retirement is observed.
    fn supersede_runs(&mut self) {
        for kind in [AnalysisKind::PrePromotion, AnalysisKind::PostPromotion] {
            let old: Vec<ObservedAnalysisRun> = self
                .obs
                .analysis_runs
                .iter()
                .filter(|r| r.kind == kind && r.hash == self.hash)
                .cloned()
                .collect();
            for run in &old {
                self.plan.actions.push(Action::TerminateAnalysisRun {
                    name: run.name.clone(),
                    retire: true,
                });
            }
            let record = old.last().map(|r| RolloutAnalysisRunStatus {
                name: r.name.clone(),
                status: r.phase,
                message: Some(SUPERSEDED.into()),
            });
            self.set_record(kind, record);
        }
    }

    /// The run of `kind` measuring this attempt at the revision, if one exists.
    fn current_run(&self, kind: AnalysisKind) -> Option<ObservedAnalysisRun> {
        let run = self.obs.analysis_run(kind, &self.hash)?;
        let superseded = self
            .record(kind)
            .is_some_and(|r| r.name == run.name && r.message.as_deref() == Some(SUPERSEDED));
        (!superseded).then(|| run.clone())
    }

    fn configured(&self, kind: AnalysisKind) -> bool {
        match kind {
            AnalysisKind::PrePromotion => self.bg.pre_promotion_analysis.is_some(),
            AnalysisKind::PostPromotion => self.bg.post_promotion_analysis.is_some(),
            _ => false,
        }
    }

    /// A pre- or post-promotion run that failed or errored aborts the update, before anything
    /// else is applied.
    fn check_analysis(&mut self) {
        if self.plan.status.abort == Some(true) || self.promote_full() {
            return;
        }
        for kind in [AnalysisKind::PrePromotion, AnalysisKind::PostPromotion] {
            if !self.configured(kind) {
                continue;
            }
            let Some(run) = self.current_run(kind) else {
                continue;
            };
            if matches!(run.phase, AnalysisPhase::Failed | AnalysisPhase::Error) {
                let msg = format!(
                    "Rollout aborted update to revision {}: {} AnalysisRun '{}' {}: {}",
                    self.hash,
                    kind_label(kind),
                    run.name,
                    run.phase.as_str(),
                    run.message.clone().unwrap_or_default()
                );
                self.set_record(kind, Some(RolloutAnalysisRunStatus::from(&run)));
                let st = self.st();
                st.abort = Some(true);
                st.message = Some(msg);
                return;
            }
        }
    }

    /// Whether the analysis of `kind` (if configured) let the revision through: its run
    /// succeeded, or ended inconclusive and a human promoted. Creates the run when there is none.
    fn analysis_passed(&mut self, kind: AnalysisKind) -> bool {
        if !self.configured(kind) || self.promote_full() {
            return true;
        }
        let Some(run) = self.current_run(kind) else {
            self.plan.actions.push(Action::CreateAnalysisRun {
                kind,
                hash: self.hash.clone(),
            });
            return false;
        };
        self.set_record(kind, Some(RolloutAnalysisRunStatus::from(&run)));
        match run.phase {
            AnalysisPhase::Successful => true,
            AnalysisPhase::Inconclusive => {
                let had = self.plan.status.controller_pause == Some(true);
                let passed = self.hold_on_inconclusive();
                if !passed && !had {
                    self.plan.events.push(Event::normal(
                        reasons::ROLLOUT_PAUSED,
                        format!(
                            "Rollout paused (InconclusiveAnalysisRun): {} AnalysisRun '{}' was inconclusive; promote to go on, or abort",
                            kind_label(kind),
                            run.name
                        ),
                    ));
                }
                passed
            }
            // Failed and Error were turned into an abort by `check_analysis`.
            _ => false,
        }
    }

    // ---- states ---------------------------------------------------------------------------

    /// Points the active Service at `to`, but only once `to` can carry all of the traffic.
    /// The ReplicaSet it leaves keeps its pods for `scaleDownDelaySeconds` from now (the aborted
    /// template: `abortScaleDownDelaySeconds`, 0 keeping it until the next update). Returns
    /// whether the active Service selects `to` once this plan is applied, and the hash of a
    /// ReplicaSet it left that nothing may scale down meanwhile.
    fn move_active(&mut self, to: &str) -> (bool, Option<String>) {
        let from = self.service_hash(self.active_service());
        if from.as_deref() == Some(to) {
            return (true, None);
        }
        if self.available(to) < self.replicas {
            return (false, from);
        }
        // Whatever it leaves had production traffic until now, whether by a promotion (the
        // stable), an abort (the template) or someone else's edit undone here: its delay starts
        // now. The deadline is written before the switch, and afresh with every attempt at it: a
        // switch whose deadline write failed (or a deadline left from before) would let the next
        // reconcile scale the pods away at the moment traffic leaves them. It is taken as
        // planned: one this plan creates (under the Service until it moves) counts, at the size
        // this plan gives it (the template's promotion), not a stale read.
        let left = from.and_then(|h| self.rs_as_planned(&h));
        let by_abort = self.plan.status.abort == Some(true)
            && left.as_ref().is_some_and(|r| r.hash == self.hash);
        let delay = if by_abort {
            self.bg.abort_scale_down_delay_seconds()
        } else {
            self.bg.scale_down_delay_seconds()
        };
        if let Some(rs) = left
            .as_ref()
            .filter(|r| r.replicas > 0 && !(by_abort && delay == 0))
        {
            // Never shorter than a deadline still to come (an abort's, a kept one).
            let at = after(self.obs.now, i64::from(delay))
                .max(rs.scale_down_at.unwrap_or(Timestamp::MIN));
            self.plan.actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas: rs.replicas,
                scale_down_at: Some(Some(at)),
            });
            self.plan.requeue_at(self.obs.now, at);
        }
        self.switch_service(self.active_service(), to);
        (true, left.map(|r| r.hash))
    }

    /// Whether this plan already writes a scale-down deadline on ReplicaSet `name`.
    fn deadline_planned(&self, name: &str) -> bool {
        self.plan.actions.iter().any(|a| {
            matches!(a, Action::ScaleReplicaSet { name: n, scale_down_at: Some(Some(_)), .. } if n == name)
        })
    }

    /// The template is the stable revision: it is active and previewed at full size, and
    /// everything else goes. This is also how an undo (or a GitOps revert) returns at once.
    fn steady(&mut self, stable: &str) {
        self.ensure_rs(stable, self.replicas);
        let (_, lingering) = self.move_active(stable);
        if self.available(stable) > 0 {
            // With no update under way the preview Service shows what is active, as Argo does.
            self.switch_service(self.preview_service(), stable);
        }
        let mut keep = vec![stable];
        keep.extend(lingering.as_deref());
        self.scale_down_others(&keep);
        let st = self.st();
        st.stable_rs = Some(stable.to_string());
        st.abort = None;
        st.aborted_at = None;
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        let bgs = self.bgs();
        bgs.scale_up_preview_check_point = None;
        bgs.active_selector = Some(stable.to_string());
        bgs.preview_selector = Some(stable.to_string());
    }

    /// Aborted: the active Service back on the stable pods first; the preview kept for
    /// `abortScaleDownDelaySeconds` (0: kept) once stable is saturated.
    fn abort(&mut self, stable: &str) {
        let hash = self.hash.clone();
        let (active_back, lingering) = self.move_active(stable);
        self.ensure_rs(stable, self.replicas);
        let delay = self.bg.abort_scale_down_delay_seconds();
        if let Some(mut rs) = self.rs(&hash).cloned()
            && delay > 0
            && active_back
            && !self.deadline_planned(&rs.name)
            && self.available(stable) >= self.replicas
        {
            // A deadline due before the abort's delay from the abort is older than the abort
            // (written when production traffic left this revision): the abort counts afresh.
            let aborted_at = self
                .plan
                .status
                .aborted_at
                .as_ref()
                .map_or(self.obs.now, |t| t.0);
            if rs
                .scale_down_at
                .is_some_and(|at| at < after(aborted_at, i64::from(delay)))
            {
                rs.scale_down_at = None;
            }
            self.scale_down_after(&rs, i64::from(delay));
        }
        let mut keep = vec![stable, hash.as_str()];
        keep.extend(lingering.as_deref());
        self.scale_down_others(&keep);
        let first = self.plan.status.aborted_at.is_none();
        let now = Time(self.obs.now);
        let st = self.st();
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        if first {
            st.aborted_at = Some(now);
        }
        let bgs = self.bgs();
        bgs.scale_up_preview_check_point = None;
        bgs.active_selector = Some(stable.to_string());
        if first {
            let why = self.abort_reason(&hash);
            self.plan
                .events
                .push(Event::warning(reasons::ROLLOUT_ABORTED, why));
        }
    }

    /// An update is under way: make the world match the persisted status, then maybe decide
    /// the next move.
    fn progress(&mut self, stable: &str) {
        let hash = self.hash.clone();
        let bgs = self.bg_status();
        let promoting = bgs.scale_up_preview_check_point == Some(true);
        // A switch is one a promotion decided (its check point stays until completion): an
        // active selector recorded otherwise (the stable-lost path sends production to the pods
        // that exist, unpromoted) is no promotion of this revision.
        let switched = promoting && bgs.active_selector.as_deref() == Some(hash.as_str());

        // -- the world as the persisted status says
        let new_size = if promoting || switched {
            self.replicas
        } else {
            self.preview_replicas()
        };
        self.ensure_rs(&hash, new_size);
        self.switch_service(self.preview_service(), &hash);
        let lingering = if switched {
            let (on_new, lingering) = self.move_active(&hash);
            self.keep_old_active(stable, on_new);
            lingering
        } else {
            self.ensure_rs(stable, self.replicas);
            self.move_active(stable).1
        };
        let mut keep = vec![stable, hash.as_str()];
        keep.extend(lingering.as_deref());
        self.scale_down_others(&keep);
        let bgs = self.bgs();
        bgs.preview_selector = Some(hash.clone());
        bgs.active_selector
            .get_or_insert_with(|| stable.to_string());

        if self.obs.rollout.spec.is_paused() {
            return;
        }

        // -- the next move
        if switched {
            if self.analysis_passed(AnalysisKind::PostPromotion) {
                self.complete(stable);
            }
            return;
        }
        if !promoting {
            let preview = self.preview_replicas();
            let ready = self
                .rs(&hash)
                .is_some_and(|r| r.replicas >= preview && r.available >= preview);
            if !ready || !self.ready_to_promote() {
                return;
            }
            self.begin_promotion();
        }
        let saturated = self
            .rs(&hash)
            .is_some_and(|r| r.replicas == self.replicas && r.available >= self.replicas);
        if saturated {
            // Carried out by the next reconcile, once persisted.
            self.bgs().active_selector = Some(hash);
            self.plan.requeue_after = Some(NEXT_STEP);
        }
    }

    /// While the active Service selects the new revision and it is not yet stable, the previous
    /// active ReplicaSet stays at full size; its scale-down delay starts with the switch.
    fn keep_old_active(&mut self, stable: &str, switched_now: bool) {
        let Some(rs) = self.rs(stable).cloned() else {
            return;
        };
        // `move_active` writes the deadline with the switch; this puts back one gone since.
        let at = (switched_now && rs.scale_down_at.is_none() && !self.deadline_planned(&rs.name))
            .then(|| after(self.obs.now, i64::from(self.bg.scale_down_delay_seconds())));
        if rs.replicas != self.replicas || at.is_some() {
            self.plan.actions.push(Action::ScaleReplicaSet {
                name: rs.name,
                replicas: self.replicas,
                scale_down_at: at.map(Some),
            });
        }
    }

    /// The preview is fully available: has it passed its pre-promotion analysis, and its pause?
    fn ready_to_promote(&mut self) -> bool {
        if self.promote_full() {
            return true;
        }
        if !self.analysis_passed(AnalysisKind::PrePromotion) {
            return false;
        }
        let secs = i64::from(self.bg.auto_promotion_seconds().max(0));
        if self.bg.auto_promotion_enabled() && secs == 0 {
            return true;
        }
        let had = self
            .plan
            .status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::BlueGreenPause);
        let over = self.pause_for(PauseReason::BlueGreenPause, (secs > 0).then_some(secs));
        if !over && !had {
            let when = if secs > 0 {
                format!("promoting automatically at {}", after(self.obs.now, secs))
            } else {
                "promote it with `kubectl aviary promote`".to_string()
            };
            let preview = self
                .preview_service()
                .map(|p| format!(" behind preview Service '{p}'"))
                .unwrap_or_default();
            self.plan.events.push(Event::normal(
                reasons::ROLLOUT_PAUSED,
                format!(
                    "Rollout paused (BlueGreenPause): revision {}{preview} is ready; {when}",
                    self.hash
                ),
            ));
        }
        over
    }

    /// Decides the promotion: the preview goes to full size, then the active Service follows.
    fn begin_promotion(&mut self) {
        let hash = self.hash.clone();
        let (replicas, active) = (self.replicas, self.bg.active_service.clone());
        let st = self.st();
        st.pause_conditions.clear();
        st.controller_pause = None;
        self.bgs().scale_up_preview_check_point = Some(true);
        self.plan.events.push(Event::normal(
            reasons::ROLLOUT_PROMOTED,
            format!(
                "Promoting revision {hash}: scaling it to {replicas} pods, then switching active Service '{active}' to it"
            ),
        ));
        self.plan.requeue_after = Some(NEXT_STEP);
    }

    /// The post-promotion analysis passed (or there is none): the new revision becomes stable
    /// once the active Service selects it (a switch held back for lost pods is not one) and the
    /// old one's scale-down deadline is visible on it.
    fn complete(&mut self, old_stable: &str) {
        let hash = self.hash.clone();
        let waiting_for_deadline = self
            .rs(old_stable)
            .is_some_and(|r| r.replicas > 0 && r.scale_down_at.is_none());
        if waiting_for_deadline || self.active_after_plan().as_deref() != Some(hash.as_str()) {
            return;
        }
        let active = self.bg.active_service.clone();
        let st = self.st();
        st.stable_rs = Some(hash.clone());
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.promote_full = None;
        self.bgs().scale_up_preview_check_point = None;
        self.plan.events.push(Event::normal(
            reasons::ROLLOUT_COMPLETED,
            format!(
                "Rollout completed update to revision {hash} (was {old_stable}): active Service '{active}' selects it"
            ),
        ));
    }

    /// The revision the active Service selects once this plan is applied.
    fn active_after_plan(&self) -> Option<String> {
        let planned = self.plan.actions.iter().rev().find_map(|a| match a {
            Action::SwitchService { service, hash } if *service == self.bg.active_service => {
                Some(hash.clone())
            }
            _ => None,
        });
        planned.or_else(|| self.service_hash(self.active_service()))
    }

    /// The phase message while an update is under way, as Argo words it.
    fn progress_message(&self) -> Option<String> {
        let st = &self.plan.status;
        if st.stable_rs.as_deref() == Some(self.hash.as_str()) {
            return None;
        }
        let bgs = self.bg_status();
        let switched = self.active_after_plan().as_deref() == Some(self.hash.as_str());
        let target = if switched || bgs.scale_up_preview_check_point == Some(true) {
            self.replicas
        } else {
            self.preview_replicas()
        };
        Some(
            if self.available(&self.hash) < target {
                "updated replicas are still becoming available"
            } else if !switched {
                "active service cutover pending"
            } else {
                "waiting for analysis to complete"
            }
            .to_string(),
        )
    }
}

//! Counterexamples the simulation found, shrunk, each kept as a case that replays it with every
//! invariant checked. Each broke an invariant before the fix named with it.

use serde_json::json;

use super::bluegreen::BlueGreenChoice;
use super::{Ev, SpecChoice, StepChoice, UserAct, run};
use crate::api::AnalysisPhase;
use crate::simulation::world::Routing;

use Ev::{DeleteRs, Fail, Kill, Reconcile, StaleRs, Tick, User, UserMidReconcile, Verdict};
use StepChoice::{Analysis, CanaryScale, Pause, Weight};

fn spec(routing: Routing, replicas: i32, steps: Vec<StepChoice>) -> SpecChoice {
    SpecChoice {
        routing,
        replicas,
        steps,
        other_steps: vec![Weight(0)],
        surge: json!(1),
        unavailable: json!(0),
        background: None,
        scale_down_delay: 0,
        abort_scale_down_delay: 0,
        deadline_abort: false,
        min_pods: None,
        rollback_window: None,
        dynamic: false,
        delay_limit: None,
        threshold: None,
        blue_green: None,
        workload: None,
        total: None,
    }
}

fn replay(spec: SpecChoice, delays: Vec<u8>, events: Vec<Ev>) {
    if let Err(e) = run(&spec, delays, &events) {
        panic!("{e}");
    }
}

/// I3: the stable ReplicaSet deleted mid-update made the canary stable at once, its analysis
/// skipped. Fix: hold with `StableReplicaSetLost` until a human decides.
#[test]
fn deleted_stable_replica_set_does_not_promote_the_canary() {
    replay(
        spec(Routing::None, 1, vec![Pause(None), Analysis]),
        vec![0],
        vec![DeleteRs(0), Reconcile],
    );
}

/// I2: without a router, the stable Service kept selecting the old revision while it shrank to
/// 0 at 100 %. Fix: the Service moves to the canary once it carries replicas − maxUnavailable.
#[test]
fn basic_canary_at_full_weight_never_leaves_the_stable_service_without_pods() {
    replay(spec(Routing::None, 1, vec![Weight(0)]), vec![0], vec![]);
    let mut s = spec(Routing::None, 4, vec![Weight(0)]);
    s.surge = json!(0);
    s.unavailable = json!(1);
    replay(s, vec![0], vec![]);
}

/// I7 (F11): `setCanaryScale` below what a later `setWeight` needs waited forever. Fix: a
/// weight always brings the pods it needs.
#[test]
fn canary_scale_below_a_later_weight_does_not_hold_forever() {
    replay(
        spec(Routing::Host, 1, vec![CanaryScale(0), Weight(10)]),
        vec![0],
        vec![
            User(UserAct::NewTemplate),
            Verdict(0, AnalysisPhase::Successful),
        ],
    );
}

/// I5: a user's abort, written before the controller recorded the new template it was for, was
/// dropped as "superseded by a new template". Fix: an abort not yet acted on stays.
#[test]
fn an_abort_not_yet_acted_on_survives_an_unrecorded_template_change() {
    let mut s = spec(Routing::Host, 3, vec![Weight(0)]);
    s.other_steps = vec![Weight(10)];
    replay(
        s,
        vec![0],
        vec![
            User(UserAct::EditSteps),
            UserMidReconcile(UserAct::Abort),
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
        ],
    );
}

/// I2: a reconcile planned from a ReplicaSet cache that had not seen our own scale-down moved
/// the stable Service onto the pods it had just removed. Fix: our writes stand in.
#[test]
fn a_lagging_replica_set_cache_does_not_hide_our_own_scale_down() {
    replay(
        spec(Routing::None, 1, vec![Weight(10), Analysis, Weight(0)]),
        vec![1],
        vec![
            Reconcile,
            User(UserAct::Promote),
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Tick(1),
            Reconcile,
            StaleRs,
        ],
    );
}

/// I1 (F3 in subset mode): a promotion whose status write failed had moved the subsets; the
/// next template then sent the stable share to a revision with no pods. Fix: two-phase
/// promotion, and subsets move only to revisions that carry their share.
#[test]
fn a_promotion_that_failed_to_persist_leaves_routing_alone() {
    replay(
        spec(Routing::Subset, 4, vec![CanaryScale(1)]),
        vec![1],
        vec![
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            UserMidReconcile(UserAct::Promote),
            Reconcile,
            Ev::StatusConflict,
            Tick(1),
            Reconcile,
            UserMidReconcile(UserAct::NewTemplate),
        ],
    );
}

/// I2: undo right after a promotion was decided (the Services not moved yet) scaled the old
/// revision, which the stable Service still selected, below what it carried. Fix: a revision
/// keeps the pods its traffic needs until the selector moves.
#[test]
fn undo_right_after_a_promotion_keeps_the_serving_pods() {
    replay(
        spec(Routing::Host, 4, vec![Weight(25)]),
        vec![0],
        vec![
            Reconcile,
            Reconcile,
            Reconcile,
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
        ],
    );
}

/// I3 (F7): editing the steps reused the verdict of a run from before the edit. Fix: the
/// plan that sees new steps retires the revision's runs and reads none of them.
#[test]
fn edited_steps_measure_afresh() {
    let mut s = spec(Routing::None, 1, vec![Analysis]);
    s.other_steps = vec![Analysis, Weight(0)];
    replay(s, vec![0], vec![Reconcile, User(UserAct::EditSteps)]);
}

/// I3 (F7): undo during a step analysis, then back to the revision: the old run, terminated,
/// read "Successful" and the step passed with no new measurement. Fix: runs of a superseded
/// revision are retired.
#[test]
fn returning_to_a_revision_measures_afresh() {
    replay(
        spec(Routing::Host, 2, vec![Analysis]),
        vec![0],
        vec![
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
        ],
    );
}

/// I3 (F8): an inconclusive background run paused the rollout, which then promoted itself when
/// the canary finished scaling. Fix: an inconclusive analysis holds the final promotion too.
#[test]
fn an_inconclusive_background_analysis_holds_the_promotion() {
    let mut s = spec(Routing::Host, 2, vec![Weight(50)]);
    s.background = Some(0);
    replay(
        s,
        vec![0],
        vec![
            Reconcile,
            Reconcile,
            Verdict(0, AnalysisPhase::Inconclusive),
            Reconcile,
            Reconcile,
            Reconcile,
            Reconcile,
            Reconcile,
        ],
    );
}

/// I1: a weight went back to a stable whose only pod had just died (and, in an abort, the
/// canary Service then moved under its remaining share). Fix: traffic returns only to a stable
/// destination with pods, and the canary selector moves only once its weight is 0.
#[test]
fn traffic_returns_only_to_a_stable_with_pods() {
    replay(
        spec(Routing::Host, 1, vec![Weight(100), Weight(0)]),
        vec![1],
        vec![Reconcile, Tick(1), Kill(32, 0), Reconcile, StaleRs],
    );
    replay(
        spec(Routing::Host, 1, vec![Weight(10)]),
        vec![1],
        vec![
            StaleRs,
            Tick(1),
            Reconcile,
            User(UserAct::Abort),
            Kill(126, 0),
            Reconcile,
        ],
    );
}

/// I1: after `promote --full` over a deleted stable, the weight went to a stable Service still
/// selecting the deleted revision. Fix: the stable Service moves first, then the weight.
#[test]
fn a_service_on_a_deleted_revision_moves_before_traffic_returns() {
    replay(
        spec(Routing::Host, 1, vec![Weight(100)]),
        vec![1],
        vec![
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
            Tick(1),
            Reconcile,
            DeleteRs(234),
            StaleRs,
            User(UserAct::NewTemplate),
            Reconcile,
            User(UserAct::PromoteFull),
            Reconcile,
        ],
    );
}

/// I6 (F4): after a lost stable, `promote --full` created the new revision at full size beside
/// the pods still serving. Fix: without a router even that is paced.
#[test]
fn promote_full_over_a_lost_stable_is_paced() {
    let mut s = spec(Routing::None, 2, vec![Weight(80)]);
    s.surge = json!(1);
    replay(
        s,
        vec![0],
        vec![
            User(UserAct::NewTemplate),
            Reconcile,
            User(UserAct::NewTemplate),
            Reconcile,
            Reconcile,
            Reconcile,
            Reconcile,
            DeleteRs(88),
            User(UserAct::NewTemplate),
            Reconcile,
            User(UserAct::PromoteFull),
            Reconcile,
            Fail(0),
            Reconcile,
        ],
    );
}

/// I1: in subset mode the stable subset moves before the weight changes, at the weight routed
/// then; it was checked against the share it would have after, and took 100 % onto a revision
/// one pod short. Fix: the move needs the larger of the two shares.
#[test]
fn the_stable_subset_moves_only_onto_pods_for_its_share_before_and_after() {
    replay(
        spec(Routing::Subset, 6, vec![Weight(20)]),
        vec![0, 0, 10, 0, 1],
        vec![
            Reconcile,
            Tick(10),
            StaleRs,
            Ev::StatusConflict,
            Tick(1),
            Reconcile,
            Reconcile,
            Kill(11, 0),
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
        ],
    );
}

/// I2: scaling a rollout to zero mid-canary, then the stable Service left on a revision going
/// to zero; and (I7) a plan waiting every second for pods that will never come. Fix: zero
/// replicas carry no traffic to wait for; a revision the stable Service selects keeps a pod.
#[test]
fn scaling_to_zero_mid_canary_comes_to_rest() {
    replay(
        spec(Routing::Host, 2, vec![Weight(50), Pause(None)]),
        vec![0],
        vec![Reconcile, Reconcile, Reconcile, User(UserAct::Scale(0))],
    );
    replay(
        spec(Routing::Subset, 1, vec![Weight(0)]),
        vec![0],
        vec![
            User(UserAct::Scale(0)),
            Verdict(0, AnalysisPhase::Successful),
        ],
    );
}

/// I7: without a router, a stable Service left on an older canary kept a pod of it, which took
/// the only surge room the stable (at no pods) needed to grow back: a deadlock. Fix: the
/// Service goes to the current canary meanwhile.
#[test]
fn a_stable_service_on_an_old_canary_does_not_deadlock_the_basic_canary() {
    let mut s = spec(Routing::None, 6, vec![Weight(80), Weight(100)]);
    s.unavailable = json!(1);
    replay(
        s,
        vec![0, 0, 0, 0, 3],
        vec![
            Ev::StatusConflict,
            Ev::StatusConflict,
            User(UserAct::Scale(3)),
            Reconcile,
            Reconcile,
            Reconcile,
            Reconcile,
            UserMidReconcile(UserAct::Promote),
            Reconcile,
            User(UserAct::NewTemplate),
        ],
    );
}

// ---- blue-green ------------------------------------------------------------------------------

fn bg_spec(replicas: i32, tweak: impl FnOnce(&mut BlueGreenChoice)) -> SpecChoice {
    let mut choice = BlueGreenChoice {
        preview: true,
        auto_promotion: true,
        auto_seconds: 0,
        preview_replicas: None,
        pre: false,
        post: false,
    };
    tweak(&mut choice);
    SpecChoice {
        blue_green: Some(choice),
        workload: None,
        total: None,
        ..spec(Routing::None, replicas, vec![])
    }
}

/// I3: the stable ReplicaSet deleted mid-update made the new revision stable at once, though
/// nobody promoted it. Fix: hold with `StableReplicaSetLost` (the active Service goes to the
/// pods that exist) until a human runs `promote --full` or applies another template.
#[test]
fn blue_green_deleted_stable_replica_set_does_not_promote_the_preview() {
    replay(
        bg_spec(1, |c| c.auto_promotion = false),
        vec![0],
        vec![DeleteRs(0), Reconcile],
    );
}

/// I6: the active Service left a revision (a new template mid-promotion) and the write of that
/// revision's scale-down deadline, after the switch, failed: the next reconcile scaled it to 0
/// at once. Fix: the deadline is written before the switch.
#[test]
fn blue_green_old_active_keeps_its_pods_when_the_deadline_write_fails() {
    for k in 0..8 {
        let mut s = bg_spec(1, |c| c.post = true);
        s.scale_down_delay = 30;
        replay(
            s,
            vec![0],
            vec![
                Reconcile,
                Reconcile,
                Reconcile,
                Reconcile,
                Reconcile,
                User(UserAct::NewTemplate),
                Fail(k),
                Reconcile,
                Reconcile,
            ],
        );
    }
}

/// I6: the active Service leaves revision B for the stable (a new template C mid-promotion), B
/// keeping its pods for `scaleDownDelaySeconds`; an undo back to B within that delay made B the
/// template again, which cleared its deadline ("wanted again"); a new template D before B was
/// active again then scaled B to 0 at once — within the delay since traffic left it. Fix: a
/// template that is not stable keeps a deadline still to come (`Moves::keeps_deadline`). Found
/// with `AVIARY_SIM_SEED=random`.
#[test]

fn blue_green_undo_then_new_template_within_the_delay_keeps_the_pods() {
    let mut s = bg_spec(1, |c| {
        c.preview = false;
        c.post = true;
    });
    s.scale_down_delay = 5;
    replay(
        s,
        vec![0],
        vec![
            Verdict(0, AnalysisPhase::Successful),
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            StaleRs,
            User(UserAct::NewTemplate),
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
            User(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I6 / I5: an undo to the previous revision A (still up in its scale-down delay), then an
/// abort written before the controller recorded the undo. The reconcile that recorded it
/// dropped the abort (`new_template` cleared `abort`, unlike the canary, which keeps an abort not
/// yet acted on), and with `previewReplicaCount: 0` scaled A — the revision the user just asked
/// for, and aborted — to 0. Fix: an abort not yet acted on stays; A keeps its deadline and pods.
/// Found with `AVIARY_SIM_SEED=random`.
#[test]

fn blue_green_an_abort_of_an_unrecorded_undo_is_kept() {
    let mut s = bg_spec(1, |c| {
        c.preview = false;
        c.preview_replicas = Some(0);
    });
    s.scale_down_delay = 5;
    replay(
        s,
        vec![1],
        vec![
            Reconcile,
            StaleRs,
            Tick(1),
            Reconcile,
            Reconcile,
            Reconcile,
            User(UserAct::Undo),
            User(UserAct::Abort),
            Reconcile,
        ],
    );
}

/// I1, found with external edits: the stable ReplicaSet deleted mid-update, then someone points
/// the stable subset elsewhere; converging the subsets moved the stable subset back onto the
/// lost stable's recreated, pod-less revision under all the traffic.
#[test]
fn an_edited_stable_subset_over_a_lost_stable_moves_only_onto_pods() {
    replay(
        spec(Routing::Subset, 1, vec![Weight(0)]),
        vec![0],
        vec![DeleteRs(0), Ev::External(162, 0)],
    );
}

/// I6, found with external edits: someone points the active Service at the preview (the
/// template, unpromoted); the controller moved it back to stable but wrote no scale-down
/// deadline for the template it left (it is the revision rolling out); a new template then
/// scaled it to 0 at once, though production traffic had just left it. Fix: every revision the
/// active Service leaves gets its deadline before the switch.
#[test]

fn blue_green_an_active_service_edited_onto_the_preview_keeps_its_delay() {
    replay(
        bg_manual(1, 5, 0),
        vec![0],
        vec![
            Reconcile,
            Ev::External(61, 47),
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I3, found with the reviewers' fixes in place: the stable ReplicaSet deleted, the active
/// Service sent to the new revision's pods (unpromoted), then undo and undo again with their
/// status writes refused: the persisted active selector from the stable-lost path read as a
/// decided promotion, and the revision became stable without its pre-promotion analysis. Fix:
/// only a promotion's check point makes an active selector a switch.
#[test]
fn blue_green_a_selector_from_a_lost_stable_is_no_promotion() {
    let s = bg_spec(1, |c| {
        c.preview = false;
        c.auto_promotion = false;
        c.pre = true;
    });
    replay(
        s,
        vec![0],
        vec![
            UserMidReconcile(UserAct::Undo),
            UserMidReconcile(UserAct::NewTemplate),
            DeleteRs(32),
            Reconcile,
            Reconcile,
            UserMidReconcile(UserAct::Undo),
            UserMidReconcile(UserAct::Undo),
        ],
    );
}

/// I1, found with seed 1: the stable ReplicaSet deleted, the stable subset stripped of its
/// label by someone (it then selects every pod of the host: enough), and a new template: the
/// stable subset was moved onto the new revision while it had 1 of the 2 pods its share needs.
/// Fix: an unlabelled stable subset moves only to a revision with all its pods.
#[test]
fn an_unlabelled_stable_subset_moves_only_onto_a_full_revision() {
    replay(
        spec(Routing::Subset, 2, vec![Weight(0)]),
        vec![7, 0],
        vec![
            DeleteRs(0),
            Ev::External(58, 0),
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
            Reconcile,
        ],
    );
}

/// I3, found with seed 3 once the old active's deadline was written before the switch: a full
/// promotion whose switch write failed after that deadline write, then a pod of the new revision
/// lost: the deadline on the old active read as "switched", and the new revision became stable
/// while the active Service still selected the old one. Fix: completion needs the active
/// Service on the new revision.
#[test]
fn blue_green_completes_only_with_the_active_service_on_the_new_revision() {
    replay(
        bg_manual(3, 0, 0),
        vec![0, 0, 0, 0, 3],
        vec![
            Reconcile,
            User(UserAct::PromoteFull),
            Tick(3),
            Reconcile,
            DeleteRs(65),
            Reconcile,
            Fail(1),
            Reconcile,
            Kill(5, 0),
            Reconcile,
        ],
    );
}

/// I6, found with seed 2 once Service edits were generated: an abort, then the stable
/// ReplicaSet deleted: the stable-lost path made the aborted template "wanted again" and cleared
/// the abortScaleDownDelaySeconds deadline the abort's switch had written on it; a new template
/// then scaled it to 0 at once. Fix: a template (not stable) keeps a deadline still to come.
#[test]
fn blue_green_an_aborted_preview_over_a_lost_stable_keeps_its_abort_delay() {
    let mut s = bg_manual(1, 0, 30);
    if let Some(c) = s.blue_green.as_mut() {
        c.auto_promotion = true;
        c.post = true;
    }
    replay(
        s,
        vec![1],
        vec![
            Reconcile,
            Tick(1),
            Reconcile,
            Reconcile,
            UserMidReconcile(UserAct::Abort),
            Reconcile,
            DeleteRs(20),
            Kill(0, 0),
            Reconcile,
            User(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I6, found with seed 6: during a promotion (the preview growing to full size), someone points
/// the active Service at it; moving it back wrote the left revision's deadline with the size a
/// lagging cache reported, undoing the promotion's scale-up while traffic still reached it. Fix:
/// the deadline write keeps the size this plan gives the ReplicaSet.
#[test]
fn blue_green_a_deadline_write_keeps_the_planned_size() {
    let mut s = bg_manual(2, 0, 0);
    if let Some(c) = s.blue_green.as_mut() {
        c.auto_seconds = 5;
        c.preview_replicas = Some(1);
    }
    replay(
        s,
        vec![1],
        vec![
            Reconcile,
            UserMidReconcile(UserAct::NewTemplate),
            User(UserAct::Undo),
            Tick(1),
            Reconcile,
            Tick(5),
            Reconcile,
            Ev::External(157, 89),
            Reconcile,
        ],
    );
}

/// Blue-green without preview Service or automatic promotion, with the given scale-down delays.
fn bg_manual(replicas: i32, delay: i32, abort_delay: i32) -> SpecChoice {
    let mut s = bg_spec(replicas, |c| {
        c.preview = false;
        c.auto_promotion = false;
    });
    s.scale_down_delay = delay;
    s.abort_scale_down_delay = abort_delay;
    s
}

/// I6, found by review: an abort keeps the aborted revision B for abortScaleDownDelaySeconds
/// (30); after a retry someone points the active Service at B, and moving it back wrote B's
/// deadline as now + scaleDownDelaySeconds (0), shortening the abort's; a new template then
/// scaled B to 0 at once. Fix: a deadline written is never shorter than one still to come.
#[test]
fn blue_green_a_switch_never_shortens_a_running_deadline() {
    replay(
        bg_manual(1, 0, 30),
        vec![0],
        vec![
            User(UserAct::NewTemplate),
            Ev::External(0, 0),
            Reconcile,
            User(UserAct::Abort),
            Reconcile,
            User(UserAct::Retry),
            Ev::External(173, 187),
            Reconcile,
            User(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I6, found by review (seed 9): stable A deleted, `promote --full` of B, then undo to A: the
/// plan recreated A (the active Service still selecting its hash) and moved the Service to B,
/// but wrote no deadline for A, which its observed ReplicaSets did not hold yet; a new template
/// then scaled A's pods, which had carried traffic, to 0 at once. Fix: a ReplicaSet created by
/// the same plan is "left" like any other.
#[test]
fn blue_green_a_revision_recreated_under_the_active_service_keeps_its_delay() {
    replay(
        bg_manual(3, 5, 0),
        vec![0, 0, 0, 0, 1],
        vec![
            DeleteRs(0),
            Reconcile,
            User(UserAct::PromoteFull),
            Reconcile,
            User(UserAct::Undo),
            Tick(1),
            Reconcile,
            User(UserAct::NewTemplate),
        ],
    );
}

/// I3, found by review (seed 16): `promote --full`, then abort and retry before the controller
/// saw the abort: the full promotion survived, and the revision went live without its pause.
/// Fix: `kubectl aviary abort` clears `promoteFull` with the abort.
#[test]
fn blue_green_an_abort_cancels_a_full_promotion_not_yet_acted_on() {
    replay(
        bg_manual(1, 0, 0),
        vec![0],
        vec![
            User(UserAct::Abort),
            Reconcile,
            UserMidReconcile(UserAct::Retry),
            User(UserAct::PromoteFull),
            User(UserAct::Abort),
            User(UserAct::Retry),
        ],
    );
}

/// I3, found with seed 7: a progress-deadline abort left the analysis step's run running (runs
/// are retired once the abort is persisted, and the user retried before the next reconcile);
/// the retried attempt then took that run's verdict for its own analysis step. Fix: a retry
/// retires the aborted attempt's runs.
#[test]
fn a_retry_measures_afresh() {
    let mut s = spec(Routing::None, 4, vec![Weight(33), Analysis]);
    s.other_steps = vec![Weight(0)];
    s.surge = serde_json::json!(0);
    s.unavailable = serde_json::json!(1);
    s.deadline_abort = true;
    replay(
        s,
        vec![1],
        vec![
            Reconcile,
            Reconcile,
            Tick(9),
            Reconcile,
            Tick(23),
            Tick(28),
            Reconcile,
            Kill(31, 0),
            Reconcile,
            User(UserAct::Retry),
        ],
    );
}

/// I3: an abort acted on while its status write lost to the user's retry retired the runs
/// that had passed, and the attempt went on to promote without them. Fix: an attempt's runs go
/// only once its abort is on record.
#[test]
fn an_abort_lost_to_a_retry_keeps_the_verdicts_of_the_attempt() {
    replay(
        spec(Routing::None, 1, vec![Pause(Some(1)), Analysis]),
        vec![1],
        vec![
            Reconcile,
            Tick(1),
            Reconcile,
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            UserMidReconcile(UserAct::Abort),
            Fail(0),
            Reconcile,
            UserMidReconcile(UserAct::Retry),
        ],
    );
}

/// I1, found with seed 18: the stable ReplicaSet deleted, its subset stripped of its label (it
/// then serves every pod of the host: a new revision's), then `undo` to the lost revision: the
/// stable subset was moved onto the recreated, pod-less ReplicaSet. Fix: an unlabelled stable
/// subset moves, wherever to, only onto the pods its share needs.
#[test]
fn an_unlabelled_stable_subset_waits_for_a_recreated_stable() {
    replay(
        spec(Routing::Subset, 1, vec![Pause(None), Weight(0)]),
        vec![1],
        vec![
            User(UserAct::Undo),
            User(UserAct::NewTemplate),
            DeleteRs(0),
            super::Ev::External(234, 0),
            Reconcile,
            User(UserAct::Undo),
            Tick(1),
            Reconcile,
        ],
    );
}

/// I3, found with seed 16: a reconcile for a new template retired the runs of the revision
/// then rolling out, its status write lost to an `undo` back to that revision, whose attempt
/// went on past its analysis without the run. Fix: the revision the status records keeps its
/// runs until another is on record.
#[test]
fn an_undo_that_beats_the_new_templates_status_keeps_the_attempts_runs() {
    replay(
        spec(Routing::None, 1, vec![Analysis, Weight(10), Weight(0)]),
        vec![1],
        vec![
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            User(UserAct::NewTemplate),
            UserMidReconcile(UserAct::Undo),
        ],
    );
}

/// I3, found with seed 25 once the runs above were kept: the new template on record, an
/// `undo` back to the revision whose runs were kept measured with them. Fix: a return to a
/// revision that has runs retires them and measures afresh.
#[test]
fn an_undo_after_the_new_template_is_on_record_measures_afresh() {
    replay(
        spec(Routing::None, 1, vec![Analysis]),
        vec![1],
        vec![
            Reconcile,
            User(UserAct::NewTemplate),
            Fail(0),
            StaleRs,
            User(UserAct::Undo),
        ],
    );
}

/// I1, found with seeds 30 and 31: the stable ReplicaSet lost, the canary subset stripped of
/// its label (serving every pod of the host at 100 %), then a new revision with 1 of 2 pods:
/// the subset was moved onto it as if it served nothing. Fix: a destination naming no revision
/// counts every pod of the host.
#[test]
fn an_unlabelled_canary_subset_over_a_lost_stable_counts_every_pod() {
    replay(
        spec(Routing::Subset, 2, vec![Weight(0)]),
        vec![0, 0, 3],
        vec![
            DeleteRs(0),
            Reconcile,
            Tick(3),
            UserMidReconcile(UserAct::EditSteps),
            DeleteRs(0),
            super::Ev::External(11, 0),
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
            Kill(216, 0),
            Reconcile,
        ],
    );
}

/// I6, found with seed 27: a ReplicaSet recreated by one reconcile was missing from the next
/// one's lagging cache, which planned the stable back to full size beside it. The controller's
/// cache shows what we create at once (`ReplicaSetCache::record_create`); the simulation's
/// lagging cache did not, and now does.
#[test]
fn a_lagging_cache_shows_the_replica_set_we_created() {
    replay(
        spec(Routing::None, 2, vec![Weight(80), Pause(None), Weight(0)]),
        vec![0, 0, 0, 0],
        vec![
            Reconcile,
            Reconcile,
            StaleRs,
            User(UserAct::Promote),
            DeleteRs(73),
            StaleRs,
        ],
    );
}

/// I6 (the oracle's own), found with seed 27: after a retry, the active Service moved back off
/// a revision someone had pointed it at was counted as the abort's move, held to
/// abortScaleDownDelaySeconds. Fix: a move is the abort's only when the reconcile making it
/// planned an abort (a retry then an abort before any reconcile is still the first abort).
#[test]
fn blue_green_a_move_after_a_retry_is_no_abort() {
    let mut s = bg_manual(1, 0, 30);
    if let Some(c) = s.blue_green.as_mut() {
        c.pre = true;
    }
    replay(
        s,
        vec![1],
        vec![
            User(UserAct::NewTemplate),
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            User(UserAct::Abort),
            Reconcile,
            super::Ev::External(181, 65),
            User(UserAct::Retry),
            Tick(1),
            Reconcile,
            Reconcile,
            User(UserAct::NewTemplate),
        ],
    );
}

/// I1, found with seed 71: the canary subset stripped of its label at weight 100 (serving every
/// pod of the host), then a new template: the weight's way down first named the canary subset
/// after the new, pod-less revision, at 100. Fix: an unlabelled canary subset is named first,
/// at the weight it has, after a revision whose pods carry it.
#[test]
fn an_unlabelled_canary_subset_is_named_after_pods_that_carry_its_weight() {
    replay(
        spec(Routing::Subset, 1, vec![Weight(0)]),
        vec![1],
        vec![
            Reconcile,
            DeleteRs(72),
            Reconcile,
            Tick(1),
            Reconcile,
            User(UserAct::Undo),
            DeleteRs(0),
            super::Ev::External(51, 0),
            Reconcile,
            Tick(1),
            User(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I6 (the oracle's own), found with seed 28 after the case above was first fixed by ending the
/// abort at a retry: retry then abort again before any reconcile is, for the controller, the
/// same abort, whose delay runs from when it was first acted on.
#[test]
fn blue_green_a_retry_the_controller_never_saw_is_the_same_abort() {
    replay(
        bg_manual(1, 0, 5),
        vec![0],
        vec![
            Reconcile,
            User(UserAct::Abort),
            Reconcile,
            User(UserAct::Retry),
            User(UserAct::Abort),
            Tick(1),
            Reconcile,
        ],
    );
}

/// I3, found by review: like the undo above, but the lost status write was for edited steps,
/// edited back meanwhile: the attempt on record went on without the runs the edit had retired.
/// Fix: the attempt on record (revision *and* steps) keeps its runs until the plan's own is on
/// record; the simulation labels runs with their steps, as the controller does.
#[test]
fn steps_edited_back_before_the_edit_is_on_record_keep_the_attempts_runs() {
    replay(
        spec(Routing::None, 1, vec![Analysis, Weight(10), Weight(0)]),
        vec![1],
        vec![
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            User(UserAct::EditSteps),
            UserMidReconcile(UserAct::EditSteps),
        ],
    );
}

/// I1, found by review: an unlabelled canary subset carrying an edited weight (1 %) was moved
/// onto a new revision without pods. Fixed with seed 71's case: it is named first after pods
/// that carry its weight.
#[test]
fn an_unlabelled_canary_subset_at_an_edited_weight_stays_on_pods() {
    replay(
        spec(Routing::Subset, 1, vec![Weight(0)]),
        vec![0],
        vec![
            Reconcile,
            Reconcile,
            Reconcile,
            DeleteRs(0),
            DeleteRs(0),
            Ev::External(3, 0),
            Ev::External(108, 1),
            Reconcile,
            User(UserAct::Abort),
            User(UserAct::NewTemplate),
        ],
    );
}

/// I5, found by review: with the stable subset unlabelled and the recreated stable at 1 of 2
/// pods, an abort wrote nothing (an unlabelled subset waited for a full stable) and 50 % stayed
/// on the canary. Fix: traffic leaving an aborted canary names the stable subset after a stable
/// with pods, short or not (I1 allows an abort to leave the stable short, never empty). The same
/// with a failed analysis, which the abort fast path does not cover.
#[test]
fn an_abort_over_an_unlabelled_stable_subset_reaches_weight_zero() {
    let lead = vec![
        DeleteRs(0),
        Ev::External(2, 0),
        User(UserAct::Undo),
        Reconcile,
        Tick(1),
        User(UserAct::NewTemplate),
        Fail(1),
        Reconcile,
        Tick(2),
        Reconcile,
        Ev::External(3, 1),
    ];
    let mut user = lead.clone();
    user.extend([Ev::External(0, 50), User(UserAct::Abort), Reconcile]);
    replay(
        spec(Routing::Subset, 2, vec![Weight(50), Pause(None)]),
        vec![0, 0, 0, 60, 2],
        user,
    );
    let mut failed = lead;
    failed.extend([
        Reconcile,
        Ev::External(0, 50),
        Verdict(0, AnalysisPhase::Failed),
        Reconcile,
        Reconcile,
    ]);
    replay(
        spec(
            Routing::Subset,
            2,
            vec![CanaryScale(1), Analysis, Pause(None)],
        ),
        vec![0, 0, 0, 60, 2],
        failed,
    );
}

/// I6 (the oracle's), found by review: after an abort, undo and new templates, a move of an
/// edited active Service off a revision was counted as the abort's. Fixed with seed 28's case.
#[test]
fn blue_green_an_edited_active_service_after_an_abort_is_no_abort_move() {
    replay(
        bg_manual(4, 0, 30),
        vec![0],
        vec![
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
            User(UserAct::Abort),
            Reconcile,
            UserMidReconcile(UserAct::Undo),
            User(UserAct::NewTemplate),
            Ev::External(189, 140),
            User(UserAct::Undo),
            Reconcile,
            User(UserAct::NewTemplate),
            Reconcile,
        ],
    );
}

/// I1, found with seed 99 after the abort case above was first fixed for any lowering of the
/// weight: outside an abort (an edited weight of 1 going back to 0 as the stable is recreated)
/// an unlabelled stable subset serving 3 pods was named after the stable with 1; then the same
/// with an abort of a rollout already back on its stable (nothing rolling out to abort). Fix:
/// only the abort of a rolling-out revision names it after a short stable.
#[test]
fn an_unlabelled_stable_subset_is_named_short_only_for_an_abort() {
    let events = |abort: bool| {
        let mut e = vec![
            DeleteRs(0),
            Ev::External(22, 0),
            Reconcile,
            Kill(0, 0),
            Reconcile,
            Fail(1),
            User(UserAct::Undo),
            Ev::External(124, 102),
        ];
        if abort {
            e.push(User(UserAct::Abort));
        }
        e.extend([Reconcile, Reconcile]);
        e
    };
    for abort in [false, true] {
        replay(
            spec(Routing::Subset, 3, vec![Weight(0)]),
            vec![0, 1],
            events(abort),
        );
    }
}

/// I2, found by a random-seed run (15,000 cases) at the ninth stop: with Istio subsets, someone
/// deleted the canary ReplicaSet and pointed the stable Service at it. The reconcile recreated it
/// and moved the Service back to the stable revision, which had 1 of its 2 pods — from a revision
/// it saw with none, the right move. The simulation, though, counted the recreated pods as
/// available at the very next write of that reconcile (readiness delay 0), and blamed the move.
/// Fix, in the simulation: a pod created by a reconcile is available no earlier than that
/// reconcile's end; in a cluster its next write follows the create by milliseconds.
#[test]
fn a_stale_replica_set_view_never_moves_the_stable_service_to_a_short_revision() {
    let mut s = spec(Routing::Subset, 2, vec![Weight(10), Weight(0)]);
    s.other_steps = vec![Weight(0)];
    replay(
        s,
        vec![0, 0, 1, 0, 1, 0],
        vec![
            Reconcile,
            Verdict(0, AnalysisPhase::Successful),
            Reconcile,
            Kill(0, 0),
            User(UserAct::NewTemplate),
            Reconcile,
            Kill(0, 0),
            Reconcile,
            Kill(0, 0),
            DeleteRs(31),
            User(UserAct::NewTemplate),
            StaleRs,
            Reconcile,
            Kill(0, 0),
            Reconcile,
            Ev::External(105, 135),
            DeleteRs(45),
            Kill(92, 0),
            StaleRs,
        ],
    );
}

/// `rollbackWindow`: the stable ReplicaSet deleted mid-update and recreated by an undo, then an
/// undo to the revision that was rolling out — created before the recreated stable, so a
/// rollback inside the window by Argo's rule: promoted in the same reconcile, skipping its
/// analysis. The simulation took that for an I3 breach, having looked only for a persisted
/// `promoteFull`; the planner's own promotion is now checked against the window either way.
#[test]
fn a_rollback_inside_the_window_promoted_at_once_is_checked_against_the_window() {
    let mut s = spec(Routing::Host, 1, vec![Analysis]);
    s.scale_down_delay = 5;
    s.rollback_window = Some(1);
    replay(
        s,
        vec![0],
        vec![
            DeleteRs(0),
            Reconcile,
            Ev::External(21, 19),
            User(UserAct::Undo),
            Reconcile,
            User(UserAct::Undo),
        ],
    );
}

// ---- dynamicStableScale ------------------------------------------------------------------------

/// A dynamicStableScale canary (routed, the stable shrunk to its share).
fn dynamic(routing: Routing, replicas: i32, steps: Vec<StepChoice>) -> SpecChoice {
    SpecChoice {
        dynamic: true,
        ..spec(routing, replicas, steps)
    }
}

/// I1: someone set the weight to 21 % on a canary without pods; the stable (shrunk to the 4
/// pods of its 79 %) could not take all of it back, yet the weight went to 0.
#[test]
fn dynamic_an_external_weight_comes_back_only_as_far_as_the_stable_carries() {
    let mut s = dynamic(Routing::Host, 5, vec![Weight(0)]);
    s.other_steps = vec![Weight(20)];
    replay(
        s,
        vec![1],
        vec![
            UserMidReconcile(UserAct::EditSteps),
            Ev::External(12, 21),
            Ev::External(1, 29),
            Reconcile,
        ],
    );
}

/// I5 (a random seed, 2026-12-03): an abort in subset mode whose canary subset names no
/// revision (someone removed its label) at 51 % of 2 replicas, with one pod in the whole host,
/// never reached weight 0: the subset was to be named first after a revision that carries 51 %
/// (2 pods), and none did. Fix: or one that carries as much as it serves now (every pod).
#[test]
fn an_abort_names_an_unlabelled_canary_subset_after_what_it_serves_now() {
    replay(
        spec(Routing::Subset, 2, vec![Weight(0)]),
        vec![3],
        vec![
            DeleteRs(0),
            Ev::External(56, 51),
            Ev::External(103, 0),
            User(UserAct::Undo),
            Reconcile,
            Tick(3),
            User(UserAct::Abort),
            User(UserAct::NewTemplate),
            Kill(0, 0),
            Reconcile,
        ],
    );
}

/// I7: with minPodsPerReplicaSet 2, the stable of a paused dynamic canary at 100 % was asked
/// for 1 pod and kept at 2 by the floor, requeued forever. Fix: it is asked for the floor.
#[test]
fn dynamic_the_stable_is_asked_for_what_its_floor_keeps() {
    let mut s = dynamic(Routing::Host, 1, vec![Weight(0)]);
    s.other_steps = vec![Weight(10)];
    s.min_pods = Some(2);
    replay(
        s,
        vec![1],
        vec![Reconcile, User(UserAct::Scale(2)), User(UserAct::Pause)],
    );
}

/// I6 (the invariant's own): with scaleDownDelayRevisionLimit 1, an aborted preview waiting out
/// its abort delay takes the place (as Argo counts it), so an older revision goes at once.
#[test]
fn blue_green_an_aborted_preview_waiting_takes_the_delay_limit_place() {
    let mut s = bg_manual(1, 5, 5);
    s.delay_limit = Some(1);
    replay(
        s,
        vec![0],
        vec![
            User(UserAct::NewTemplate),
            UserMidReconcile(UserAct::Abort),
            StaleRs,
            Reconcile,
            UserMidReconcile(UserAct::NewTemplate),
            Reconcile,
            Reconcile,
            User(UserAct::Promote),
        ],
    );
}

/// I1: an undo while 100 % went to the canary, then `replicas` raised: the stable below full
/// size held the weight (traffic returns only as it grows), yet the canary Service moved to
/// the short stable under that weight. Fix: it waits for weight 0 whenever the weight does.
#[test]
fn an_undo_under_a_scale_up_moves_the_canary_service_only_at_weight_zero() {
    let mut s = spec(Routing::Host, 2, vec![Pause(None)]);
    s.min_pods = Some(3);
    replay(
        s,
        vec![0],
        vec![
            Reconcile,
            User(UserAct::Promote),
            Reconcile,
            UserMidReconcile(UserAct::Pause),
            Reconcile,
            User(UserAct::Undo),
            User(UserAct::Scale(3)),
            Reconcile,
        ],
    );
}

/// I5 (the invariant's own): with minPodsPerReplicaSet 2 the stable needs 2 available pods for
/// any share, as the planner sizes it (Argo's rule); the abort at 80 % waits for them.
#[test]
fn dynamic_an_abort_waits_for_the_stables_min_pods() {
    let mut s = dynamic(Routing::Host, 2, vec![Weight(80), Weight(50)]);
    s.min_pods = Some(2);
    replay(
        s,
        vec![1],
        vec![
            Reconcile,
            Tick(1),
            Kill(20, 0),
            Reconcile,
            User(UserAct::Abort),
            Reconcile,
        ],
    );
}

// ---- replicaProgressThreshold ------------------------------------------------------------------

fn with_threshold(mut s: SpecChoice, percent: bool, value: i32) -> SpecChoice {
    s.threshold = Some((percent, value));
    s
}

/// I1 (the check's own fault): a stable promoted at 2 of 5 pods under `Pods: 2`, moved back
/// onto the old revision with 4 of 5, was blamed: the threshold made "before" look whole and
/// "after" short. Shortfalls are now counted in full on both sides.
#[test]
fn threshold_a_move_onto_more_pods_is_not_blamed() {
    let s = with_threshold(spec(Routing::Subset, 5, vec![Weight(80)]), false, 2);
    replay(
        s,
        vec![0, 1, 5, 0, 0, 1, 1],
        vec![
            Reconcile,
            Kill(74, 0),
            Tick(1),
            Ev::External(102, 7),
            Reconcile,
        ],
    );
}

/// I1: under `Percent: 1` `promote --full` made a revision stable at 1 pod of 4; after an undo
/// the stable Service returns to it with 2 — the stable may be as short as the threshold.
#[test]
fn threshold_the_stable_promoted_under_it_may_serve_as_short() {
    let s = with_threshold(spec(Routing::Host, 4, vec![Weight(0)]), true, 1);
    replay(
        s,
        vec![1, 8],
        vec![
            Reconcile,
            User(UserAct::PromoteFull),
            Reconcile,
            Tick(1),
            DeleteRs(2),
            Reconcile,
            User(UserAct::Undo),
            Reconcile,
        ],
    );
}

/// I1: an abort under `Percent: 1` returns the stable Service to a stable with 1 of 2 pods.
#[test]
fn threshold_an_abort_returns_to_a_stable_as_short_as_the_threshold() {
    let s = with_threshold(spec(Routing::Host, 2, vec![Pause(None)]), true, 1);
    replay(
        s,
        vec![0, 0, 0, 1],
        vec![
            Reconcile,
            User(UserAct::Abort),
            Kill(0, 0),
            Kill(84, 0),
            Reconcile,
            Ev::External(233, 7),
            Ev::External(52, 1),
            User(UserAct::Retry),
            StaleRs,
        ],
    );
}

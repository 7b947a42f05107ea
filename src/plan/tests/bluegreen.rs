//! Blue-green transitions against the simulated world: every transition of the strategy, the
//! order of its moves, and what the status says at each stage.

use super::*;
use crate::api::BlueGreenStrategy;

/// Manual promotion, a preview of one pod out of three, a 10 s scale-down delay.
pub(super) const BLUE_GREEN: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      autoPromotionEnabled: false
      previewReplicaCount: 1
      scaleDownDelaySeconds: 10
"#;

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";

fn bg(w: &mut World) -> &mut BlueGreenStrategy {
    w.ro.spec
        .strategy
        .blue_green
        .as_mut()
        .expect("blue-green strategy")
}

fn active(w: &World) -> Option<String> {
    w.services[ACTIVE].clone()
}

fn preview(w: &World) -> Option<String> {
    w.services[PREVIEW].clone()
}

/// `kubectl aviary promote`: clears the pause conditions.
fn promote(w: &mut World) {
    let mut st = w.status();
    st.pause_conditions.clear();
    w.ro.status = Some(st);
}

fn set_abort(w: &mut World, abort: bool) {
    let mut st = w.status();
    st.abort = Some(abort);
    w.ro.status = Some(st);
}

/// The fake analysis controller finishes the newest run of `kind`.
fn finish_run(w: &mut World, kind: AnalysisKind, phase: AnalysisPhase, message: &str) {
    let run = w
        .runs
        .iter_mut()
        .rev()
        .find(|r| r.kind == kind)
        .expect("a run of that kind");
    run.phase = phase;
    run.message = Some(message.into());
}

/// Runs of `kind` created so far, retired or not.
fn created_runs(w: &World, kind: AnalysisKind) -> usize {
    w.runs
        .iter()
        .chain(w.retired.iter())
        .filter(|r| r.kind == kind)
        .count()
}

fn pause_reasons(w: &World) -> Vec<PauseReason> {
    w.status()
        .pause_conditions
        .iter()
        .map(|c| c.reason)
        .collect()
}

/// Given a Healthy v1, the image changes to v2 and the world settles.
fn updated(yaml: &str, tweak: impl FnOnce(&mut World)) -> (World, String, String) {
    let mut w = World::new(yaml);
    tweak(&mut w);
    w.run_analysis = true;
    w.deploy_first();
    let v1 = w.canary_hash();
    w.switches.clear();
    w.update_image("web:2");
    let v2 = w.canary_hash();
    (w, v1, v2)
}

/// No Service was ever pointed at a ReplicaSet that could not carry it all (the preview may
/// select a ReplicaSet at once: it carries no production traffic).
fn assert_active_only_moved_to_saturated(w: &World, replicas: i32) {
    for (svc, hash, available) in &w.switches {
        if svc == ACTIVE {
            assert!(
                *available >= replicas,
                "active Service moved to {hash} with {available} available pods"
            );
        }
    }
}

#[test]
fn first_deploy_is_full_size_active_and_previewed_without_pause() {
    let mut w = World::new(BLUE_GREEN);
    w.run_to_end(10);
    let h = w.canary_hash();
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(h.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.rs[&h].replicas, 3);
    assert_eq!(active(&w).as_deref(), Some(h.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(h.as_str()));
    let bgs = st.blue_green.expect("blueGreen status");
    assert_eq!(bgs.active_selector.as_deref(), Some(h.as_str()));
    assert_eq!(bgs.preview_selector.as_deref(), Some(h.as_str()));
    assert!(st.pause_conditions.is_empty());
    assert!(w.runs.is_empty(), "no analysis on the first deploy");
}

#[test]
fn first_deploy_adopts_the_active_service_only_once_all_pods_are_available() {
    let mut w = World::new(BLUE_GREEN);
    let h = w.canary_hash();
    w.frozen.push(h.clone());
    w.run(5);
    assert_eq!(active(&w), None, "no selector change before pods exist");
    w.frozen.clear();
    w.settle();
    w.run(5);
    assert_eq!(active(&w).as_deref(), Some(h.as_str()));
}

#[test]
fn a_new_template_comes_up_behind_the_preview_at_its_preview_size_while_active_stays() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.frozen.push(v2.clone());
    let p = w.reconcile();
    assert!(
        p.actions.contains(&Action::CreateReplicaSet {
            hash: v2.clone(),
            replicas: 1,
            revision: 2
        }),
        "{:?}",
        p.actions
    );
    assert_eq!(
        preview(&w).as_deref(),
        Some(v2.as_str()),
        "preview selects the new revision at once"
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Progressing));
    assert_eq!(
        w.status().message.as_deref(),
        Some("updated replicas are still becoming available")
    );
    let bgs = w.status().blue_green.expect("blueGreen status");
    assert_eq!(bgs.preview_selector.as_deref(), Some(v2.as_str()));
    assert_eq!(bgs.active_selector.as_deref(), Some(v1.as_str()));
    assert_eq!(w.rs[&v1].replicas, 3, "the active revision keeps its size");
}

#[test]
fn fully_available_preview_pauses_with_blue_green_pause_until_promoted() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(w.status().message.as_deref(), Some("BlueGreenPause"));
    assert_eq!(pause_reasons(&w), vec![PauseReason::BlueGreenPause]);
    assert_eq!(w.status().controller_pause, Some(true));
    assert!(
        w.events
            .iter()
            .any(|e| e.reason == "RolloutPaused" && e.message.contains(PREVIEW)),
        "{:?}",
        w.events
    );
    w.advance(3600);
    w.run(5);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Paused),
        "an hour later"
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(w.rs[&v2].replicas, 1);
    let paused = w
        .status()
        .condition("Paused")
        .map(|c| c.status == crate::api::ConditionStatus::True);
    assert_eq!(paused, Some(true));
}

#[test]
fn promotion_scales_the_preview_to_full_then_switches_active_then_the_old_goes_after_the_delay() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    promote(&mut w);
    // The new pods are slow: the active Service must wait for all three.
    w.frozen.push(v2.clone());
    let p = w.reconcile();
    assert!(reasons(&p.events).contains(&"RolloutPromoted"));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SwitchService { service, .. } if service == ACTIVE)),
        "promotion is only decided here: {:?}",
        p.actions
    );
    assert_eq!(
        w.status()
            .blue_green
            .and_then(|b| b.scale_up_preview_check_point),
        Some(true)
    );
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 3, "preview scaled to full size first");
    assert_eq!(
        active(&w).as_deref(),
        Some(v1.as_str()),
        "active waits for saturation"
    );
    assert_eq!(
        w.status().message.as_deref(),
        Some("updated replicas are still becoming available")
    );
    w.frozen.clear();
    w.settle();
    // Saturated: the switch is decided (persisted), then carried out by the next reconcile.
    let decided = w.reconcile();
    assert_eq!(
        w.status().blue_green.and_then(|b| b.active_selector),
        Some(v2.clone())
    );
    assert_eq!(
        w.status().message.as_deref(),
        Some("active service cutover pending")
    );
    assert!(
        !decided
            .actions
            .iter()
            .any(|a| matches!(a, Action::SwitchService { .. }))
    );
    let switch = w.reconcile();
    // The old active's delay is on it before traffic leaves it, then the switch.
    assert!(
        matches!(
            switch.actions.as_slice(),
            [Action::ScaleReplicaSet { name, replicas: 3, scale_down_at: Some(Some(_)) }, Action::SwitchService { service, hash }]
                if *name == format!("web-{v1}") && service == ACTIVE && *hash == v2
        ),
        "{:?}",
        switch.actions
    );
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(w.rs[&v1].replicas, 3, "old active kept after the switch");
    assert!(
        w.rs[&v1].scale_down_at.is_some(),
        "its delay started with the switch"
    );
    w.run(5);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert!(reasons(&w.events).contains(&"RolloutCompleted"));
    assert_eq!(w.rs[&v1].replicas, 3, "still inside scaleDownDelaySeconds");
    w.advance(11);
    w.run(5);
    assert_eq!(
        w.rs[&v1].replicas, 0,
        "old ReplicaSet scaled to 0 after the delay"
    );
    assert_eq!(preview(&w).as_deref(), Some(v2.as_str()));
    assert_active_only_moved_to_saturated(&w, 3);
}

#[test]
fn auto_promotion_by_default_needs_no_human() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        let bg = bg(w);
        bg.auto_promotion_enabled = None;
        bg.preview_replica_count = None;
    });
    w.run_to_end(50);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert!(!reasons(&w.events).contains(&"RolloutPaused"));
    assert_eq!(w.rs[&v1].replicas, 3);
    w.advance(11);
    w.run(5);
    assert_eq!(w.rs[&v1].replicas, 0);
    assert_active_only_moved_to_saturated(&w, 3);
}

#[test]
fn auto_promotion_seconds_pauses_then_promotes_at_the_deadline() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        let bg = bg(w);
        bg.auto_promotion_enabled = None;
        bg.auto_promotion_seconds = Some(10);
    });
    w.run(10);
    assert_eq!(pause_reasons(&w), vec![PauseReason::BlueGreenPause]);
    let p = w.reconcile();
    let wait = p.requeue_after.expect("requeue at the promotion deadline");
    assert!(
        (9_900..=10_100).contains(&wait.as_millis()),
        "requeue after {wait:?}"
    );
    w.advance(5);
    w.run(5);
    assert_eq!(
        active(&w).as_deref(),
        Some(v1.as_str()),
        "5 s in: still paused"
    );
    w.advance(5);
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn auto_promotion_seconds_also_ends_a_manual_pause() {
    let (mut w, _, v2) = updated(BLUE_GREEN, |w| bg(w).auto_promotion_seconds = Some(5));
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    w.advance(5);
    w.run(10);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
}

const WITH_ANALYSIS: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      scaleDownDelaySeconds: 10
      abortScaleDownDelaySeconds: 20
      prePromotionAnalysis: {templates: [{templateName: smoke}]}
      postPromotionAnalysis: {templates: [{templateName: error-rate}]}
"#;

#[test]
fn pre_promotion_analysis_starts_once_the_preview_is_available_and_gates_promotion() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.frozen.push(v2.clone());
    w.run(5);
    assert_eq!(
        created_runs(&w, AnalysisKind::PrePromotion),
        0,
        "not before the pods"
    );
    w.frozen.clear();
    w.settle();
    w.run(5);
    assert_eq!(created_runs(&w, AnalysisKind::PrePromotion), 1);
    assert_eq!(w.runs[0].hash, v2);
    assert_eq!(w.status().phase, Some(RolloutPhase::Progressing));
    assert_eq!(
        w.status().message.as_deref(),
        Some("active service cutover pending")
    );
    let record = w
        .status()
        .blue_green
        .and_then(|b| b.pre_promotion_analysis_run_status)
        .expect("pre-promotion run in status");
    assert_eq!(record.status, AnalysisPhase::Running);
    w.advance(600);
    w.run(5);
    assert_eq!(
        active(&w).as_deref(),
        Some(v1.as_str()),
        "waits for the analysis"
    );
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(
        created_runs(&w, AnalysisKind::PrePromotion),
        1,
        "one run, not one per reconcile"
    );
}

#[test]
fn failed_pre_promotion_analysis_aborts_active_stays_and_the_preview_goes_after_the_abort_delay() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Failed,
        "Metric \"smoke\" assessed Failed",
    );
    w.run(5);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let msg = st.message.clone().unwrap_or_default();
    assert!(
        msg.contains("pre-promotion")
            && msg.contains("smoke")
            && msg.starts_with("Rollout aborted"),
        "{msg}"
    );
    assert_eq!(
        st.condition("Progressing")
            .map(|c| c.reason.clone())
            .as_deref(),
        Some("RolloutAborted")
    );
    assert!(reasons(&w.events).contains(&"RolloutAborted"));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(
        w.rs[&v2].replicas, 3,
        "preview kept for abortScaleDownDelaySeconds"
    );
    w.advance(21);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 0);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Degraded),
        "until retry or a new spec"
    );
    assert!(
        w.switches.iter().all(|(s, _, _)| s != ACTIVE),
        "active never moved"
    );
}

#[test]
fn failed_post_promotion_analysis_switches_active_back_to_the_old_pods_at_once() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(created_runs(&w, AnalysisKind::PostPromotion), 1);
    let st = w.status();
    assert_eq!(
        st.stable_rs.as_deref(),
        Some(v1.as_str()),
        "stable only after the analysis"
    );
    assert_eq!(
        st.message.as_deref(),
        Some("waiting for analysis to complete")
    );
    // The old pods stay while the analysis runs, even past scaleDownDelaySeconds.
    w.advance(60);
    w.run(5);
    assert_eq!(w.rs[&v1].replicas, 3);
    assert_eq!(w.rs[&v1].available, 3);

    finish_run(
        &mut w,
        AnalysisKind::PostPromotion,
        AnalysisPhase::Failed,
        "Metric \"error-rate\" assessed Failed due to failed (2) > failureLimit (1)",
    );
    let p = w.reconcile();
    // Switching back is the first thing the abort does, once the aborted revision carries its
    // abortScaleDownDelaySeconds deadline (written first: should the switch succeed and that
    // write fail, a new template could scale it away the moment traffic left it).
    assert!(
        matches!(
            p.actions.as_slice(),
            [Action::ScaleReplicaSet { name, replicas: 3, scale_down_at: Some(Some(_)) }, Action::SwitchService { service, hash }, ..]
                if *name == format!("web-{v2}") && service == ACTIVE && *hash == v1
        ),
        "{:?}",
        p.actions
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("post-promotion") && m.contains("failureLimit")),
        "{:?}",
        st.message
    );
    assert_eq!(
        st.blue_green.and_then(|b| b.active_selector).as_deref(),
        Some(v1.as_str())
    );
    w.run(5);
    assert!(
        w.rs[&v1].scale_down_at.is_none(),
        "the old revision is active again: no deadline"
    );
    assert_eq!(w.rs[&v2].replicas, 3);
    w.advance(21);
    w.run(5);
    assert_eq!(
        w.rs[&v2].replicas, 0,
        "new revision removed after abortScaleDownDelaySeconds"
    );
    assert_eq!(w.rs[&v1].replicas, 3);
}

#[test]
fn successful_post_promotion_analysis_makes_the_new_revision_stable() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PostPromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(5);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    // The delay started with the switch; the old pods go once it is over.
    w.advance(11);
    w.run(5);
    assert_eq!(w.rs[&v1].replicas, 0);
}

#[test]
fn inconclusive_analysis_pauses_and_promote_goes_on() {
    let (mut w, _, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Inconclusive,
        "",
    );
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(
        pause_reasons(&w),
        vec![PauseReason::InconclusiveAnalysisRun]
    );
    promote(&mut w);
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    finish_run(
        &mut w,
        AnalysisKind::PostPromotion,
        AnalysisPhase::Inconclusive,
        "",
    );
    w.run(5);
    assert_eq!(
        pause_reasons(&w),
        vec![PauseReason::InconclusiveAnalysisRun]
    );
    assert_ne!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    promote(&mut w);
    w.run(5);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
}

#[test]
fn retry_after_a_failed_analysis_measures_the_revision_again() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Error,
        "no data",
    );
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
    assert_eq!(
        w.retired.len(),
        1,
        "the verdict that aborted is retired while aborted"
    );
    set_abort(&mut w, false);
    w.run(10);
    assert!(reasons(&w.events).contains(&"RolloutRetry"));
    assert_eq!(
        created_runs(&w, AnalysisKind::PrePromotion),
        2,
        "a fresh run for the retry"
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Progressing));
    assert_eq!(w.status().aborted_at, None);
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PostPromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(5);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
}

#[test]
fn abort_while_paused_keeps_active_clears_the_pause_and_retry_pauses_again() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        bg(w).abort_scale_down_delay_seconds = Some(5)
    });
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    set_abort(&mut w, true);
    w.run(5);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(st.pause_conditions.is_empty());
    assert_eq!(st.controller_pause, None);
    assert!(st.aborted_at.is_some());
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(w.rs[&v2].replicas, 1);
    w.advance(6);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 0);
    assert_eq!(
        reasons(&w.events)
            .iter()
            .filter(|r| **r == "RolloutAborted")
            .count(),
        1,
        "one abort Event"
    );

    set_abort(&mut w, false);
    w.run(10);
    assert_eq!(w.rs[&v2].replicas, 1, "preview back for the retry");
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    promote(&mut w);
    w.run_to_end(20);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
}

#[test]
fn abort_scale_down_delay_zero_keeps_the_preview() {
    let (mut w, _, v2) = updated(BLUE_GREEN, |w| {
        bg(w).abort_scale_down_delay_seconds = Some(0)
    });
    w.run(10);
    set_abort(&mut w, true);
    w.run(5);
    w.advance(3600);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 1);
}

#[test]
fn undo_to_the_active_template_returns_at_once() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    w.update_image("web:1");
    w.run(5);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Healthy));
    assert!(st.pause_conditions.is_empty());
    assert_eq!(preview(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(
        w.rs[&v2].replicas, 0,
        "the preview never served production: gone at once"
    );
    assert!(reasons(&w.events).contains(&"RolloutRollback"));
}

#[test]
fn undo_during_post_promotion_analysis_switches_active_back_at_once() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    w.update_image("web:1");
    let p = w.reconcile();
    assert_eq!(
        p.actions
            .iter()
            .find(|a| matches!(a, Action::SwitchService { service, .. } if service == ACTIVE)),
        Some(&Action::SwitchService {
            service: ACTIVE.into(),
            hash: v1.clone()
        })
    );
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        w.rs[&v2].replicas, 3,
        "it served production: kept for the delay"
    );
    w.advance(11);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 0);
}

#[test]
fn a_new_template_mid_promotion_sends_active_back_to_stable_and_starts_over() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    w.update_image("web:3");
    let v3 = w.canary_hash();
    w.run(10);
    assert!(
        w.runs
            .iter()
            .filter(|r| r.hash == v2)
            .all(|r| r.phase.is_completed()),
        "v2's running post-promotion analysis is terminated"
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(v3.as_str()));
    assert_eq!(
        w.rs[&v2].replicas, 3,
        "v2 served production: kept for the delay"
    );
    assert_eq!(
        created_runs(&w, AnalysisKind::PrePromotion),
        2,
        "v3 gets its own"
    );
    w.advance(11);
    w.run(5);
    assert_eq!(w.rs[&v2].replicas, 0);
    assert_eq!(w.rs[&v1].replicas, 3);
}

/// An undo within the old revision's scale-down delay goes through preview and promotion again
/// (no fast track: see the module doc), with its pods still up.
#[test]
fn a_template_still_up_in_its_scale_down_delay_is_previewed_again() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    promote(&mut w);
    w.run_to_end(20);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert!(w.rs[&v1].scale_down_at.is_some());
    w.update_image("web:1");
    w.run(10);
    assert!(pause_reasons(&w).contains(&PauseReason::BlueGreenPause));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    promote(&mut w);
    w.run_to_end(20);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_active_only_moved_to_saturated(&w, 3);
}

#[test]
fn spec_paused_holds_promotion() {
    let (mut w, v1, _) = updated(BLUE_GREEN, |w| bg(w).auto_promotion_enabled = None);
    w.ro.spec.paused = Some(true);
    w.run(10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(w.status().message.as_deref(), Some("manually paused"));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    w.ro.spec.paused = None;
    w.run_to_end(20);
    assert_ne!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
}

#[test]
fn an_abort_racing_the_switch_decision_wins() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    promote(&mut w);
    // Reconcile up to the plan that decides the switch; its status write loses to a
    // concurrent abort.
    let mut decided = None;
    for _ in 0..10 {
        let p = plan(&w.observed());
        if p.status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
            == Some(v2.as_str())
        {
            decided = Some(p);
            break;
        }
        w.reconcile();
    }
    let decided = decided.expect("a plan decides the switch");
    assert!(
        !decided
            .actions
            .iter()
            .any(|a| matches!(a, Action::SwitchService { service, .. } if service == ACTIVE)),
        "the decision alone moves no traffic"
    );
    let mut lost = w.clone();
    set_abort(&mut lost, true);
    lost.run(5);
    assert_eq!(active(&lost).as_deref(), Some(v1.as_str()));
    assert!(lost.switches.iter().all(|(s, _, _)| s != ACTIVE));
    assert_eq!(lost.status().phase, Some(RolloutPhase::Degraded));
}

#[test]
fn a_healthy_blue_green_rollout_plans_nothing() {
    let (mut w, _, _) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    promote(&mut w);
    w.run_to_end(20);
    w.advance(11);
    w.run(5);
    let before = w.status();
    let p = w.reconcile();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(p.status, before);
    assert_eq!(p.requeue_after, None);
}

#[test]
fn available_condition_follows_the_active_replica_set() {
    let (mut w, _, v2) = updated(BLUE_GREEN, |_| {});
    w.frozen.push(v2);
    w.run(5);
    let available = w.status().condition("Available").map(|c| c.status);
    assert_eq!(
        available,
        Some(crate::api::ConditionStatus::True),
        "the active ReplicaSet is saturated even though the preview is not"
    );
}

#[test]
fn returning_to_a_revision_measured_before_measures_it_again() {
    let (mut w, _, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Failed,
        "Metric \"smoke\" assessed Failed",
    );
    // Not aborted yet: the template moves on first, and later comes back.
    w.update_image("web:3");
    w.run(10);
    w.update_image("web:2");
    assert_eq!(w.canary_hash(), v2);
    w.run(10);
    assert_ne!(
        w.status().phase,
        Some(RolloutPhase::Degraded),
        "the old verdict does not count for the new attempt"
    );
    let v2_runs = |runs: &[ObservedAnalysisRun]| {
        runs.iter()
            .filter(|r| r.hash == v2 && r.kind == AnalysisKind::PrePromotion)
            .count()
    };
    assert_eq!(v2_runs(&w.retired), 1, "the old verdict is retired");
    assert_eq!(v2_runs(&w.runs), 1, "a fresh pre-promotion run for v2");
}

#[test]
fn preview_pods_missing_the_progress_deadline_degrade_and_abort_when_asked() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        w.ro.spec.progress_deadline_seconds = Some(60);
    });
    w.frozen.push(v2.clone());
    w.run(5);
    w.advance(30);
    w.run(5);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Progressing),
        "within the deadline"
    );
    w.advance(31);
    w.run(5);
    let st = w.status();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert_eq!(
        st.condition("Progressing")
            .map(|c| c.reason.clone())
            .as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    assert_eq!(st.abort, None, "no abort unless progressDeadlineAbort");
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    // The pods come after all: the update goes on.
    w.frozen.clear();
    w.settle();
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));

    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        w.ro.spec.progress_deadline_seconds = Some(60);
        w.ro.spec.progress_deadline_abort = Some(true);
    });
    w.frozen.push(v2.clone());
    w.run(5);
    w.advance(61);
    w.run(5);
    let st = w.status();
    assert_eq!(st.abort, Some(true));
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("timed out progressing")),
        "{:?}",
        st.message
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
}

/// As for the canary (safety.rs): a controller killed between moving the active Service and
/// writing the old active's scale-down deadline must not make its successor scale the old
/// active to 0 at once.
#[test]
fn a_crash_after_the_active_service_moved_keeps_the_scale_down_delay() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    promote(&mut w);
    for _ in 0..20 {
        let p = plan(&w.observed());
        let moves = p.actions.iter().position(|a| {
            matches!(a, Action::SwitchService { service, hash } if service == ACTIVE && *hash == v2)
        });
        if let Some(i) = moves {
            for a in &p.actions[..=i] {
                w.apply(a);
            }
            w.settle();
            w.run(5);
            assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
            assert_eq!(w.rs[&v1].replicas, 3, "old active kept: {:?}", w.rs[&v1]);
            assert!(w.rs[&v1].scale_down_at.is_some(), "{:?}", w.rs[&v1]);
            return;
        }
        w.reconcile();
    }
    panic!("the active Service never moved: {:?}", w.status());
}

#[test]
fn the_old_active_replica_set_gets_its_scale_down_deadline_before_the_service_leaves_it() {
    // Found by the simulation: the deadline was written after the switch, so a failed write of
    // it let the next reconcile scale the pods away the moment traffic left them.
    let (mut w, _v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    w.update_image("web:3");
    let p = w.reconcile();
    let stamp = p.actions.iter().position(|a| {
        matches!(a, Action::ScaleReplicaSet { name, replicas: 3, scale_down_at: Some(Some(_)) }
            if name.ends_with(v2.as_str()))
    });
    let switch = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::SwitchService { service, .. } if service == ACTIVE));
    assert!(
        matches!((stamp, switch), (Some(s), Some(t)) if s < t),
        "the deadline on {v2} comes before the switch: {:?}",
        p.actions
    );
}

#[test]
fn a_deleted_stable_replica_set_holds_the_update_instead_of_promoting_it() {
    // Found by the simulation: with the stable ReplicaSet deleted mid-update, the new revision
    // was made stable at once, unpromoted and unanalysed.
    let (mut w, v1, v2) = updated(BLUE_GREEN, |_| {});
    w.run(10);
    assert!(pause_reasons(&w).contains(&PauseReason::BlueGreenPause));
    w.rs.remove(&v1);
    w.run(10);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(v1.as_str()), "not promoted");
    assert_eq!(st.phase, Some(crate::api::RolloutPhase::Degraded));
    assert!(reasons(&w.events).contains(&"StableReplicaSetLost"));
    assert_eq!(w.rs[&v2].replicas, 3, "the new revision at full size");
    assert_eq!(
        active(&w).as_deref(),
        Some(v2.as_str()),
        "traffic goes to the pods that exist"
    );
    assert_active_only_moved_to_saturated(&w, 3);
    // A human decides: promote --full makes it stable.
    let mut st = w.status();
    st.promote_full = Some(true);
    w.ro.status = Some(st);
    w.run(10);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.status().phase, Some(crate::api::RolloutPhase::Healthy));
}

/// Review (issue 21): a retry after an abort that could not move the active Service back (the
/// stable had lost its pods) sized the revision the Service still selected down to
/// `previewReplicaCount`: all production traffic on one pod. What the active Service selects
/// keeps `replicas` until the Service has moved.
#[test]
fn the_revision_the_active_service_selects_keeps_its_pods_whatever_the_status_says() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |w| bg(w).preview_replica_count = Some(1));
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Successful,
        "",
    );
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    w.frozen.push(v1.clone());
    if let Some(rs) = w.rs.get_mut(&v1) {
        rs.available = 0;
    }
    finish_run(
        &mut w,
        AnalysisKind::PostPromotion,
        AnalysisPhase::Failed,
        "error rate",
    );
    w.run(5);
    assert_eq!(
        active(&w).as_deref(),
        Some(v2.as_str()),
        "nowhere to go back to"
    );
    set_abort(&mut w, false);
    for _ in 0..5 {
        w.reconcile();
        if active(&w).as_deref() == Some(v2.as_str()) {
            assert_eq!(w.rs[&v2].replicas, 3, "the active revision keeps its pods");
        }
    }
}

/// Review (issue 21): an aborted preview waits out `abortScaleDownDelaySeconds` with its pods
/// up; a new template and an undo back to it within that delay fast-tracked it to production
/// with no analysis, its last verdict Failed. Only an earlier stable revision is fast-tracked.
#[test]
fn an_aborted_preview_still_in_its_delay_is_not_fast_tracked() {
    let (mut w, v1, v2) = updated(WITH_ANALYSIS, |_| {});
    w.run(10);
    finish_run(
        &mut w,
        AnalysisKind::PrePromotion,
        AnalysisPhase::Failed,
        "smoke",
    );
    w.run(5);
    w.update_image("web:3");
    w.run(3);
    w.update_image("web:2");
    w.run(10);
    assert!(
        !reasons(&w.events).contains(&"RolloutFastTracked"),
        "{:?}",
        reasons(&w.events)
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()), "not {v2}");
}

/// `rollbackWindow` on blue-green: back to the previous revision, it is promoted at once — no
/// pause for a human, once its pods can carry the active Service.
#[test]
fn a_rollback_within_the_window_is_promoted_without_the_pause() {
    let yaml = BLUE_GREEN.replace(
        "  replicas: 3\n",
        "  replicas: 3\n  rollbackWindow: {revisions: 1}\n",
    );
    let (mut w, v1, v2) = updated(&yaml, |_| {});
    w.run(10);
    promote(&mut w);
    w.run_to_end(40);
    w.advance(30);
    w.run(10);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));

    w.switches.clear();
    w.update_image("web:1");
    let plan = w.reconcile();
    assert_eq!(plan.status.promote_full, Some(true));
    w.run_to_end(40);
    let st = w.status();
    assert_eq!(st.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert!(st.pause_conditions.is_empty());
    assert_active_only_moved_to_saturated(&w, 3);
}

/// scaleDownDelayRevisionLimit 1: after two promotions within the delay, only the newest old
/// revision keeps its pods; the older goes as soon as the newer one takes the place.
#[test]
fn the_scale_down_delay_revision_limit_keeps_only_the_newest_old_active() {
    let (mut w, v1, v2) = updated(BLUE_GREEN, |w| {
        bg(w).scale_down_delay_revision_limit = Some(1);
        bg(w).auto_promotion_enabled = Some(true);
    });
    w.run(10);
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(w.rs[&v1].replicas, 3, "v1 waits out scaleDownDelaySeconds");
    w.update_image("web:3");
    let v3 = w.canary_hash();
    w.run(10);
    w.run(5);
    assert_eq!(active(&w).as_deref(), Some(v3.as_str()));
    assert_eq!(w.rs[&v2].replicas, 3, "v2, the newest old one, waits");
    assert_eq!(w.rs[&v1].replicas, 0, "v1 is past the limit");
}

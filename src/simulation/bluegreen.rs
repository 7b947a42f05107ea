//! The blue-green half of the simulation: the spec generator, the strategy's Rollout, what a
//! rollout at rest must show, the check after each converge (I5), and the property itself. The
//! per-write invariants are in [`super::bluegreen_invariants`].
//!
//! Blue-green scenarios run with and without a preview Service, with pre- and post-promotion
//! analysis, manual, immediate or timed auto-promotion, a preview smaller than `replicas`, and
//! scale-down delays, under the same adversarial events as the canary (pods dying, ReplicaSets
//! deleted, verdicts of every kind, failed and refused writes, a lagging ReplicaSet cache, the
//! plugin's own patches).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::world::{ACTIVE_SVC, PREVIEW_SVC, Routing, World};
use super::{Ev, SpecChoice, UserAct, event_with, run};
use crate::api::RolloutPhase;

/// A blue-green strategy, as the generator picks it.
#[derive(Clone, Debug)]
pub struct BlueGreenChoice {
    pub preview: bool,
    pub auto_promotion: bool,
    /// `autoPromotionSeconds` (0: unset).
    pub auto_seconds: i32,
    pub preview_replicas: Option<i32>,
    pub pre: bool,
    pub post: bool,
}

/// `spec.strategy.blueGreen` for the choice (delays from the shared [`SpecChoice`] fields).
pub fn strategy_json(spec: &SpecChoice, bg: &BlueGreenChoice) -> Value {
    let mut s = json!({
        "activeService": ACTIVE_SVC,
        "autoPromotionEnabled": bg.auto_promotion,
        "scaleDownDelaySeconds": spec.scale_down_delay,
        "abortScaleDownDelaySeconds": spec.abort_scale_down_delay,
        "scaleDownDelayRevisionLimit": spec.delay_limit,
        "previewMetadata": {"labels": {"role": "preview"}},
        "activeMetadata": {"labels": {"role": "active"}, "annotations": {"active": "yes"}},
    });
    if bg.preview {
        s["previewService"] = json!(PREVIEW_SVC);
    }
    if bg.auto_seconds > 0 {
        s["autoPromotionSeconds"] = json!(bg.auto_seconds);
    }
    if let Some(n) = bg.preview_replicas {
        s["previewReplicaCount"] = json!(n);
    }
    if bg.pre {
        s["prePromotionAnalysis"] = json!({"templates": [{"templateName": "pre"}]});
    }
    if bg.post {
        s["postPromotionAnalysis"] = json!({"templates": [{"templateName": "post"}]});
    }
    s
}

/// The active Service's selection.
pub fn active(w: &World) -> Option<String> {
    w.services.get(ACTIVE_SVC).cloned().flatten()
}

/// I5 after a full converge: an abort persisted when the reconcile began, with the stable able
/// to carry all the traffic then, has the active Service back on the stable revision.
pub fn check_converge(before: &World, after: &World, failing: bool) -> Result<(), String> {
    let st = before.status();
    let Some(stable) = st.stable_rs.as_deref() else {
        return Ok(());
    };
    let aborting = st.abort == Some(true)
        && st.current_pod_hash.as_deref() == Some(before.current_hash().as_str())
        && stable != before.current_hash();
    let r = before.replicas();
    if !aborting || failing || r == 0 || before.available(stable) < r {
        return Ok(());
    }
    match active(after) {
        Some(h) if h != stable => Err(format!(
            "I5: the rollout was aborted, yet the active Service selects {h}, not stable {stable}, after a full converge\n  world: {}",
            after.describe()
        )),
        _ => Ok(()),
    }
}

/// What a blue-green rollout at rest must show (I7, and I1/I5 at rest).
pub fn check_rest(w: &World) -> Result<(), String> {
    let st = w.status();
    let hash = w.current_hash();
    let stable = st.stable_rs.clone().unwrap_or_default();
    let r = w.replicas();
    let on = active(w);
    if r > 0
        && let Some(h) = on.as_deref()
        && w.available(h) == 0
    {
        return Err(format!(
            "I1: at rest ({:?}), the active Service selects revision {h} with no pod",
            st.phase
        ));
    }
    match st.phase {
        Some(RolloutPhase::Healthy) => {
            if stable != hash {
                return Err(format!("Healthy, but stable {stable} is not {hash}"));
            }
            if on.as_deref() != Some(&stable) {
                return Err(format!(
                    "Healthy, but the active Service selects {on:?}, not {stable}"
                ));
            }
            // (At zero replicas the preview Service waits for pods to select.)
            if let Some(p) = w.services.get(PREVIEW_SVC)
                && r > 0
                && p.as_deref() != Some(&stable)
            {
                return Err(format!(
                    "Healthy, but the preview Service selects {p:?}, not {stable}"
                ));
            }
            for rs in w.rs.values() {
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
            if st.message.clone().unwrap_or_default().is_empty() {
                return Err("Degraded without a message".into());
            }
            let stable_up = r > 0 && w.available(&stable) >= r;
            if st.abort == Some(true) && stable_up && on.as_deref() != Some(&stable) {
                return Err(format!(
                    "I5: aborted, but the active Service selects {on:?}, not stable {stable}"
                ));
            }
        }
        Some(RolloutPhase::Paused) => {
            if st.pause_conditions.is_empty() && !w.ro.spec.is_paused() {
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

// ---- generators --------------------------------------------------------------------------

fn choice() -> impl Strategy<Value = BlueGreenChoice> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![0, 0, 5, 30]),
        prop::option::weighted(0.25, 0i32..4),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.4),
    )
        .prop_map(
            |(preview, auto_promotion, auto_seconds, preview_replicas, pre, post)| {
                BlueGreenChoice {
                    preview,
                    auto_promotion,
                    auto_seconds,
                    preview_replicas,
                    pre,
                    post,
                }
            },
        )
}

pub fn spec_choice() -> impl Strategy<Value = SpecChoice> {
    (
        choice(),
        1i32..7,
        prop::sample::select(vec![0, 5, 30]),
        prop::sample::select(vec![0, 5, 30]),
        any::<bool>(),
        prop::option::weighted(0.3, 1i32..3),
        prop::option::weighted(0.3, 0i32..3),
        super::workload_choice(),
    )
        .prop_map(
            |(bg, replicas, sd, asd, dab, rollback_window, delay_limit, workload)| SpecChoice {
                routing: Routing::None,
                replicas,
                steps: vec![],
                other_steps: vec![],
                surge: json!(1),
                unavailable: json!(0),
                background: None,
                scale_down_delay: sd,
                abort_scale_down_delay: asd,
                deadline_abort: dab,
                min_pods: None,
                rollback_window,
                dynamic: false,
                delay_limit,
                threshold: None,
                blue_green: Some(bg),
                workload,
                total: None,
            },
        )
}

fn user_act() -> BoxedStrategy<UserAct> {
    prop_oneof![
        3 => Just(UserAct::Abort),
        2 => Just(UserAct::Retry),
        4 => Just(UserAct::Promote),
        1 => Just(UserAct::PromoteFull),
        1 => Just(UserAct::DoublePromote),
        1 => Just(UserAct::Pause),
        1 => Just(UserAct::Resume),
        2 => Just(UserAct::NewTemplate),
        2 => Just(UserAct::Undo),
        1 => any::<u8>().prop_map(UserAct::UndoTo),
        1 => (0i32..7).prop_map(UserAct::Scale),
    ]
    .boxed()
}

fn event() -> impl Strategy<Value = Ev> {
    event_with(user_act())
}

/// Blue-green scenarios: half of `AVIARY_SIM_CASES` (default 3,000, so 1,500).
fn cases() -> u32 {
    (super::cases() / 2).max(1)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        failure_persistence: None,
        rng_seed: super::seed(),
        .. ProptestConfig::default()
    })]

    #[test]
    fn blue_green_keeps_its_invariants_under_adversarial_sequences(
        spec in spec_choice(),
        delays in prop::collection::vec(0u8..12, 1..8),
        events in prop::collection::vec(event(), 0..80),
    ) {
        if let Err(e) = run(&spec, delays.clone(), &events) {
            return Err(TestCaseError::fail(e));
        }
    }
}

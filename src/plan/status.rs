//! The summary part of a Rollout's status: replica counts, phase, message and conditions,
//! derived from what the plan decided. Condition times move only on a real transition
//! (`set_condition`), so an unchanged rollout produces an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ObservedReplicaSet;
use crate::api::conditions::{reasons, remove_condition, set_condition, types};
use crate::api::{Condition, ConditionStatus, PauseReason, RolloutPhase, RolloutStatus};

/// What the summary needs besides the status itself.
pub struct Summary<'a> {
    /// The Rollout's name: its ReplicaSets are named after it.
    pub rollout: &'a str,
    pub hash: &'a str,
    pub replicas: i32,
    pub replica_sets: &'a [ObservedReplicaSet],
    pub paused: bool,
    pub generation: Option<i64>,
    pub steps: i32,
    /// Why an update under way is not done yet, when the strategy words it (blue-green); `None`
    /// words it by the canary's steps.
    pub progress: Option<String>,
    /// The revision serving production when it is not simply all pods (blue-green's active
    /// ReplicaSet): `Available` then means that ReplicaSet is saturated.
    pub active: Option<&'a str>,
    pub now: Time,
    /// The progress-deadline message, when the canary missed it.
    pub deadline_exceeded: Option<&'a str>,
    /// Why the rollout cannot go on without a human, other than a deadline: the condition's
    /// reason and message (Degraded).
    pub stuck: Option<(&'static str, &'a str)>,
}

fn pause_reason_str(r: PauseReason) -> &'static str {
    match r {
        PauseReason::CanaryPauseStep => "CanaryPauseStep",
        PauseReason::BlueGreenPause => "BlueGreenPause",
        PauseReason::InconclusiveAnalysisRun => "InconclusiveAnalysisRun",
    }
}

/// Fills in counts, phase, message and conditions.
pub fn summarize(st: &mut RolloutStatus, s: &Summary<'_>) {
    let rs_of = |hash: &str| s.replica_sets.iter().find(|r| r.hash == hash);
    st.observed_generation = s.generation;
    st.replicas = s.replica_sets.iter().map(|r| r.current).sum();
    st.ready_replicas = s.replica_sets.iter().map(|r| r.ready).sum();
    st.available_replicas = s.replica_sets.iter().map(|r| r.available).sum();
    st.updated_replicas = rs_of(s.hash).map(|r| r.current).unwrap_or(0);

    let stable = st.stable_rs.clone();
    let updating = stable.as_deref() != Some(s.hash);
    let current = rs_of(s.hash);
    // Named as it will be before it exists, so the condition does not change (one more status
    // write per revision) when the ReplicaSet appears.
    let current_name = current
        .map(|r| r.name.clone())
        .unwrap_or_else(|| super::replica_set_name(s.rollout, s.hash));
    let current_available = current.map(|r| r.available).unwrap_or(0);

    let (phase, message) = if let Some((_, m)) = s.stuck {
        // Said first, even over an abort: it is what a human must act on.
        (RolloutPhase::Degraded, m.to_string())
    } else if st.abort == Some(true) {
        let msg = st
            .message
            .clone()
            .filter(|m| m.starts_with("Rollout aborted"))
            .or_else(|| {
                st.conditions
                    .iter()
                    .find(|c| c.type_ == types::PROGRESSING && c.reason == reasons::ROLLOUT_ABORTED)
                    .map(|c| c.message.clone())
            })
            .unwrap_or_else(|| {
                format!(
                    "Rollout aborted update to revision {}: aborted by user",
                    s.hash
                )
            });
        (RolloutPhase::Degraded, msg)
    } else if let Some(m) = s.deadline_exceeded {
        (RolloutPhase::Degraded, m.to_string())
    } else if s.paused {
        (RolloutPhase::Paused, "manually paused".to_string())
    } else if let Some(pc) = st.pause_conditions.first() {
        (
            RolloutPhase::Paused,
            pause_reason_str(pc.reason).to_string(),
        )
    } else if let Some(progress) = &s.progress {
        // Blue-green words its update; a canary words a switch still under way.
        (RolloutPhase::Progressing, progress.clone())
    } else if updating {
        let step = st.current_step_index.unwrap_or(0);
        if step < s.steps {
            (
                RolloutPhase::Progressing,
                format!(
                    "waiting for all steps to complete (step {}/{})",
                    step, s.steps
                ),
            )
        } else {
            (
                RolloutPhase::Progressing,
                "updated replicas are still becoming available".to_string(),
            )
        }
    } else if current_available < s.replicas
        || current.map(|r| r.replicas).unwrap_or(0) != s.replicas
    {
        (
            RolloutPhase::Progressing,
            "updated replicas are still becoming available".to_string(),
        )
    } else {
        (RolloutPhase::Healthy, String::new())
    };
    st.phase = Some(phase);
    // A plan was made, so whatever made the spec unusable has been fixed.
    remove_condition(&mut st.conditions, types::INVALID_SPEC);
    st.message = (!message.is_empty()).then_some(message.clone());

    let degraded_reason = if let Some((reason, _)) = s.stuck {
        reason
    } else if st.abort != Some(true) && s.deadline_exceeded.is_some() {
        reasons::PROGRESS_DEADLINE_EXCEEDED
    } else {
        reasons::ROLLOUT_ABORTED
    };
    let active_available = s.active.and_then(rs_of).map(|r| r.available).unwrap_or(0);
    let now = s.now.clone();
    let generation = s.generation;
    let mut set = |type_: &str, status: ConditionStatus, reason: &str, message: String| {
        set_condition(
            &mut st.conditions,
            Condition::new(type_, status, reason, message, now.clone()).with_generation(generation),
        );
    };
    match phase {
        RolloutPhase::Degraded => set(
            types::PROGRESSING,
            ConditionStatus::False,
            degraded_reason,
            message.clone(),
        ),
        RolloutPhase::Paused => set(
            types::PROGRESSING,
            ConditionStatus::Unknown,
            reasons::ROLLOUT_PAUSED,
            message.clone(),
        ),
        RolloutPhase::Progressing => set(
            types::PROGRESSING,
            ConditionStatus::True,
            reasons::REPLICA_SET_UPDATED,
            format!("ReplicaSet \"{current_name}\" is progressing."),
        ),
        RolloutPhase::Healthy => set(
            types::PROGRESSING,
            ConditionStatus::True,
            reasons::NEW_REPLICA_SET_AVAILABLE,
            format!("ReplicaSet \"{current_name}\" has successfully progressed."),
        ),
    }
    let available = match s.active {
        Some(_) => active_available >= s.replicas,
        None => st.available_replicas >= s.replicas,
    };
    set(
        types::AVAILABLE,
        available.into(),
        reasons::AVAILABLE_REASON,
        if available {
            "Rollout has minimum availability".into()
        } else {
            "Rollout does not have minimum availability".into()
        },
    );
    let paused = phase == RolloutPhase::Paused;
    set(
        types::PAUSED,
        paused.into(),
        reasons::ROLLOUT_PAUSED,
        if paused {
            message.clone()
        } else {
            String::new()
        },
    );
    let healthy = phase == RolloutPhase::Healthy;
    set(
        types::COMPLETED,
        (!updating && healthy).into(),
        reasons::ROLLOUT_COMPLETED,
        if !updating && healthy {
            "Rollout completed update to the stable revision".into()
        } else {
            String::new()
        },
    );
    set(
        types::HEALTHY,
        healthy.into(),
        reasons::ROLLOUT_HEALTHY,
        if healthy {
            "Rollout is healthy".into()
        } else {
            message.clone()
        },
    );
    // kstatus' conditions; the True one names the step, the pause or why it stalled.
    let summary_reason = match phase {
        RolloutPhase::Healthy => reasons::ROLLOUT_HEALTHY,
        RolloutPhase::Progressing => reasons::REPLICA_SET_UPDATED,
        RolloutPhase::Paused if s.paused => reasons::ROLLOUT_PAUSED,
        RolloutPhase::Paused => st
            .pause_conditions
            .first()
            .map(|pc| pause_reason_str(pc.reason))
            .unwrap_or(reasons::ROLLOUT_PAUSED),
        RolloutPhase::Degraded => degraded_reason,
    };
    for c in phase.summary_conditions(summary_reason, &message, generation, &now) {
        set_condition(&mut st.conditions, c);
    }
}

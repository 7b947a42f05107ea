//! Status conditions in the Kubernetes convention (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`), and helpers that keep `lastTransitionTime`
//! still unless the status really changes — so an unchanged status compares equal and is not
//! rewritten.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition types Aviary sets on a Rollout.
pub mod types {
    /// Summary for generic tools (Flux/kstatus, Argo CD, `kubectl wait --for=condition=Ready`):
    /// `True` when the Rollout is Healthy, `False` otherwise with the phase as reason.
    pub const READY: &str = "Ready";
    /// kstatus: `True` while the controller is still working towards the desired state, paused
    /// included (a pause awaits a human or a timer; the update is not done).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: `True` when progress stopped and needs a human (aborted, deadline exceeded,
    /// invalid spec).
    pub const STALLED: &str = "Stalled";
    /// Argo's: whether an update is making progress (`False` on abort or deadline).
    pub const PROGRESSING: &str = "Progressing";
    /// Argo's: available replicas reached the desired count.
    pub const AVAILABLE: &str = "Available";
    /// Argo's: the Rollout is paused (by a step, `spec.paused` or inconclusive analysis).
    pub const PAUSED: &str = "Paused";
    /// Argo's: the update finished and the new revision is stable.
    pub const COMPLETED: &str = "Completed";
    /// Argo's: everything is healthy.
    pub const HEALTHY: &str = "Healthy";
    /// Argo's: a ReplicaSet could not create pods.
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// Argo's: the spec is invalid (e.g. a referenced Service or template does not exist).
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// Condition reasons Argo users see in tooling and alerts; several are Event reasons too. With
/// the Event-only reasons they make up [`super::wire::reasons`].
pub mod reasons {
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const REPLICA_SET_NOT_AVAILABLE: &str = "ReplicaSetNotAvailable";
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    pub const ROLLOUT_RETRY: &str = "RolloutRetry";
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// The stable ReplicaSet was deleted while an update ran: its pod template is gone.
    pub const STABLE_REPLICA_SET_LOST: &str = "StableReplicaSetLost";
    pub const REPLICA_SET_CREATE_ERROR: &str = "ReplicaSetCreateError";
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
    pub const ROLLOUT_HEALTHY: &str = "RolloutHealthy";
    pub const AVAILABLE_REASON: &str = "AvailableReason";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The object does not decode (a value its CRD admitted that Aviary's types reject).
    pub const UNDECODABLE: &str = "Undecodable";
}

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    /// Also what any other value reads as: a status is decoded, never refused.
    #[default]
    #[serde(other)]
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// One aspect of the object's current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase, e.g. `Ready`, `Progressing`, `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition, e.g. `RolloutAborted`.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition stamped with `now` as its transition time.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
        now: Time,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: None,
        }
    }

    /// Sets `observedGeneration`.
    pub fn with_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// Whether status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// Equality ignoring `lastTransitionTime`: what decides whether a status write is needed.
    pub fn same_ignoring_time(&self, other: &Self) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// The condition of that type, if any.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of that type exists and is `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(Condition::is_true)
}

/// Inserts or replaces the condition of `new.type_`. When the status is unchanged the existing
/// `lastTransitionTime` is kept (reason, message and generation are updated). Returns whether
/// anything other than the time changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            let changed = !existing.same_ignoring_time(&new);
            *existing = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Removes the condition of that type; returns whether one was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// Whether two condition lists are equal ignoring transition times and order.
pub fn conditions_equal_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|ca| find_condition(b, &ca.type_).is_some_and(|cb| ca.same_ignoring_time(cb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = vec![];
        assert!(set_condition(
            &mut cs,
            Condition::new(types::READY, false, "Progressing", "a", t(10))
        ));
        // Same status, new message: message changes, time stays.
        assert!(set_condition(
            &mut cs,
            Condition::new(types::READY, false, "Progressing", "b", t(20))
        ));
        assert_eq!(cs[0].last_transition_time, t(10));
        assert_eq!(cs[0].message, "b");
        // Nothing but the time differs: no change reported, time stays.
        assert!(!set_condition(
            &mut cs,
            Condition::new(types::READY, false, "Progressing", "b", t(30))
        ));
        assert_eq!(cs[0].last_transition_time, t(10));
        // Status flips: time moves.
        assert!(set_condition(
            &mut cs,
            Condition::new(types::READY, true, "Healthy", "ok", t(40))
        ));
        assert_eq!(cs[0].last_transition_time, t(40));
        assert!(is_condition_true(&cs, types::READY));
        assert_eq!(cs.len(), 1);
        assert!(remove_condition(&mut cs, types::READY));
        assert!(cs.is_empty());
    }

    #[test]
    fn serialises_in_kubernetes_convention() {
        let c = Condition::new(types::PROGRESSING, true, "ReplicaSetUpdated", "m", t(0))
            .with_generation(Some(3));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({
                "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                "message": "m", "lastTransitionTime": "1970-01-01T00:00:00Z",
                "observedGeneration": 3
            })
        );
    }
}

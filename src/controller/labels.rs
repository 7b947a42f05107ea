//! Labels and annotations Aviary puts on the objects it owns or touches.

/// On every ReplicaSet Aviary creates: the owning Rollout's name. The ReplicaSet watch is
/// filtered on it, so the controller never caches anybody else's ReplicaSets.
pub const ROLLOUT_LABEL: &str = "aviary.dev/rollout";
/// Revision number of a ReplicaSet (1, 2, …), for history and undo.
pub const REVISION_ANNOTATION: &str = "aviary.dev/revision";
/// RFC 3339 time after which a ReplicaSet kept for a scale-down delay goes to zero.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "aviary.dev/scale-down-deadline";
/// RFC 3339 time Aviary last created or scaled a ReplicaSet: `progressDeadlineSeconds` counts
/// from it while the ReplicaSet's pods are not all available.
pub const SCALED_AT_ANNOTATION: &str = "aviary.dev/scaled-at";
/// On a Service whose selector Aviary manages: the Rollout that manages it.
pub const MANAGED_BY_ANNOTATION: &str = "aviary.dev/managed-by-rollouts";
/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "aviary";

/// Parameters for the controller's patches: each names Aviary as the field manager, so
/// `managedFields` says which fields it wrote (without one the API server files them under
/// the client's user agent).
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

//! The wire contract: the names Aviary puts on the cluster — labels, annotations, the finalizer,
//! field managers and Event reasons. The controller writes them, the planner and the delivery
//! figures match on them, `kubectl aviary` reads them, and users' selectors, alerts and
//! dashboards depend on them: each is defined here once, and a change here is a change of what
//! is on the cluster.

/// Label on ReplicaSets, their pods and selectors, and on Service selectors: the pod-template
/// hash of the revision. Kept from Argo so Services and DestinationRules port unchanged.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// On every ReplicaSet and AnalysisRun Aviary creates: the owning Rollout's name. The
/// ReplicaSet watch is filtered on it, so the controller never caches anybody else's
/// ReplicaSets.
pub const ROLLOUT_LABEL: &str = "aviary.dev/rollout";
/// On AnalysisRuns: what they measure (`Step`, `Background`, `PrePromotion`, `PostPromotion`).
pub const ANALYSIS_TYPE_LABEL: &str = "aviary.dev/analysis-type";
/// On step AnalysisRuns: the step's index.
pub const STEP_INDEX_LABEL: &str = "aviary.dev/step-index";
/// On step and background AnalysisRuns: the hash of the canary steps the run was created for.
/// A run of other steps is no verdict of these, even when the cache shows it before our retire
/// patch (a run created just before the steps were edited, which the reconcile that saw the
/// edit could not retire).
pub const STEPS_HASH_LABEL: &str = "aviary.dev/steps-hash";
/// On AnalysisRuns put aside by an abort (`"true"`): they no longer count for the rollout.
pub const RETIRED_LABEL: &str = "aviary.dev/retired";

/// On a Secret, `"true"`: its owner lets analysis in its namespace use it for
/// `args[].valueFrom.secretKeyRef`. Aviary reads Secrets with its own rights, which a user who
/// creates an AnalysisRun may not have; without the owner's consent it would lend them.
pub const ANALYSIS_SECRET_LABEL: &str = "aviary.dev/analysis-secret";

/// On a ReplicaSet: the role metadata (`canaryMetadata`, `stableMetadata`, …) its template
/// carries, as JSON; its pods carry it too unless [`POD_METADATA_STALE_ANNOTATION`] is present.
pub const POD_METADATA_ANNOTATION: &str = "aviary.dev/ephemeral-metadata";
/// Argo Rollouts' counterpart of [`POD_METADATA_ANNOTATION`], read where ours is absent.
pub const ARGO_POD_METADATA_ANNOTATION: &str = "rollout.argoproj.io/ephemeral-metadata";
/// On a ReplicaSet while its pods are being brought to its role metadata: the label and
/// annotation keys still to take off them (JSON).
pub const POD_METADATA_STALE_ANNOTATION: &str = "aviary.dev/ephemeral-metadata-pending";
/// On a ReplicaSet: keys of its own template that a role's metadata names (JSON): left as the
/// template has them, never set or taken off by a role.
pub const POD_METADATA_KEPT_ANNOTATION: &str = "aviary.dev/ephemeral-metadata-kept";

/// Revision number of a ReplicaSet (1, 2, …), for history and undo.
pub const REVISION_ANNOTATION: &str = "aviary.dev/revision";
/// Argo Rollouts' revision annotation: read, when Aviary's is absent, on a ReplicaSet taken over
/// from Argo Rollouts, so its history keeps its numbers.
pub const ARGO_REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// RFC 3339 time after which a ReplicaSet kept for a scale-down delay goes to zero.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "aviary.dev/scale-down-deadline";
/// RFC 3339 time Aviary last created or scaled a ReplicaSet: `progressDeadlineSeconds` counts
/// from it while the ReplicaSet's pods are not all available.
pub const SCALED_AT_ANNOTATION: &str = "aviary.dev/scaled-at";
/// On a Service whose selector Aviary manages: the Rollout that manages it.
pub const MANAGED_BY_ANNOTATION: &str = "aviary.dev/managed-by-rollouts";
/// On a Rollout that `kubectl aviary migrate` is taking over from Argo Rollouts: the Argo
/// Rollout's UID. The controller leaves the Rollout alone while it is there (its ReplicaSets are
/// not adopted yet, its status is Argo's), and takes over when the plugin removes it.
pub const MIGRATING_ANNOTATION: &str = "aviary.dev/migrating-from";
/// Argo Rollouts' counterpart of [`MANAGED_BY_ANNOTATION`]: taken off by `migrate` (Argo's
/// Service controller would strip the hash selector of a Service whose Rollout is gone).
pub const ARGO_MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// Argo Rollouts' scale-down deadline annotation on ReplicaSets, carried over by `migrate`.
pub const ARGO_SCALE_DOWN_DEADLINE_ANNOTATION: &str = "scale-down-deadline";
/// The label that hands an Argo Rollout to an Argo controller of that instance id: `migrate`
/// sets it so that the usual controller (no instance id) lets go of the Rollout first.
pub const ARGO_INSTANCE_ID_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";

/// Whether `kubectl aviary migrate` still holds the Rollout ([`MIGRATING_ANNOTATION`]).
pub fn migrating(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIGRATING_ANNOTATION))
}

/// The finalizer on Rollouts with `trafficRouting`: their routing objects are set back to
/// all-stable before the Rollout goes.
pub const ROUTE_CLEANUP_FINALIZER: &str = "aviary.dev/route-cleanup";

/// The field manager of every write the controller makes (its routers' JSON patches and
/// server-side applies included), so `managedFields` says which fields are Aviary's.
pub const FIELD_MANAGER: &str = "aviary";
/// The field manager of the writes of the kubectl plugin (`kubectl aviary`).
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-aviary";
/// `reportingController` and `reportingInstance` of the controller's Events.
pub const EVENT_REPORTER: &str = "aviary";

/// Parameters for the controller's patches: each names [`FIELD_MANAGER`], so `managedFields`
/// says which fields it wrote (without one the API server files them under the client's user
/// agent).
pub fn patch_params() -> kube::core::params::PatchParams {
    kube::core::params::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Every reason Aviary writes: on conditions ([`crate::api::conditions::reasons`], re-exported
/// here) and on Events. The delivery (DORA) figures are derived from Event reasons, so the
/// planner and the figures name them from here.
pub mod reasons {
    pub use super::super::conditions::reasons::*;

    /// A canary step finished (its pause, weight or analysis done).
    pub const ROLLOUT_STEP_COMPLETED: &str = "RolloutStepCompleted";
    /// Canary: the template is the stable revision again, the steps are skipped.
    pub const SKIP_STEPS: &str = "SkipSteps";
    /// Blue-green: the template is the stable revision again, back to it at once.
    pub const ROLLOUT_ROLLBACK: &str = "RolloutRollback";
    /// A blue-green preview was promoted to active.
    pub const ROLLOUT_PROMOTED: &str = "RolloutPromoted";
    /// An abort that came after the promotion was decided: the revision is already stable.
    pub const ROLLOUT_ABORT_IGNORED: &str = "RolloutAbortIgnored";
    /// A Service's selector was pointed at another revision.
    pub const SWITCH_SERVICE: &str = "SwitchService";
    /// A ReplicaSet was scaled.
    pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
    /// `workloadRef.scaleDown`: the referenced Deployment scaled.
    pub const SCALING_DEPLOYMENT: &str = "ScalingDeployment";
    /// Someone else changed a routing object's weights or a Service's selector; the write
    /// that put it back names their field manager.
    pub const DRIFT_CORRECTED: &str = "DriftCorrected";
    /// A routing object's canary weight was written.
    pub const TRAFFIC_WEIGHT_UPDATED: &str = "TrafficWeightUpdated";
    /// An AnalysisRun was created.
    pub const ANALYSIS_RUN_CREATED: &str = "AnalysisRunCreated";
    /// Every pod created before `spec.restartAt` was restarted.
    pub const ROLLOUT_RESTARTED: &str = "RolloutRestarted";
    /// A ReplicaSet's template and pods took on (or gave up) role metadata.
    pub const POD_METADATA_SYNCED: &str = "PodMetadataSynced";
    /// A role metadata sync the API server refused; retried.
    pub const POD_METADATA_SYNC_FAILED: &str = "PodMetadataSyncFailed";
    /// A new revision made a pending restart moot.
    pub const ROLLOUT_RESTART_CANCELLED: &str = "RolloutRestartCancelled";
    /// A routing object was set back to all-stable for the Rollout's deletion (its own reason,
    /// so it can be told apart from the weight changes of the rollout itself).
    pub const ROUTE_CLEANUP: &str = "RouteCleanup";
    /// A routing object could not be restored before the Rollout went.
    pub const ROUTE_CLEANUP_FAILED: &str = "RouteCleanupFailed";
    /// An AnalysisRun or ReplicaSet beyond the history limits could not be deleted (it is
    /// tried again on the next reconcile; the rollout goes on meanwhile).
    pub const HISTORY_CLEANUP_FAILED: &str = "HistoryCleanupFailed";
}

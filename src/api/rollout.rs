//! Rollout: a workload (like a Deployment) updated by a canary or blue-green strategy.
//!
//! Shapes and defaults follow Argo Rollouts' `argoproj.io/v1alpha1` Rollout. Argo fields Aviary
//! does not implement are declared as [`Unsupported`] and rejected at admission by name.

// kube's `printcolumn(...)` attributes repeat `type_ = "integer"`, which this lint flags.
#![allow(clippy::duplicated_attributes)]

use std::{collections::BTreeMap, fmt};

use k8s_openapi::{
    api::core::v1::PodTemplateSpec,
    apimachinery::pkg::{
        apis::meta::v1::LabelSelector, apis::meta::v1::Time, util::intstr::IntOrString,
    },
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AnalysisPhase, Condition, DryRun, Duration, FieldRef, MeasurementRetention, Unsupported,
    unsupported,
};

/// Most canary steps a Rollout may declare (bounds CEL cost).
pub const MAX_STEPS: usize = 100;
/// `spec.replicas` when unset.
pub const DEFAULT_REPLICAS: i32 = 1;
/// `spec.revisionHistoryLimit` when unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// `spec.progressDeadlineSeconds` when unset.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds` when unset.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// `maxSurge` and `maxUnavailable` when unset.
pub const DEFAULT_MAX_SURGE_UNAVAILABLE: &str = "25%";
/// NGINX `annotationPrefix` when unset.
pub const DEFAULT_NGINX_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// Successful and unsuccessful AnalysisRuns kept per Rollout when unset.
pub const DEFAULT_ANALYSIS_RUN_HISTORY_LIMIT: i32 = 5;

/// The desired state of a Rollout.
///
/// Admission: exactly one strategy; `selector` is immutable; unknown fields are rejected when
/// the client uses strict field validation (kubectl's default); Argo fields Aviary does not
/// implement are always rejected by name.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "aviary.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    shortname = "ro",
    category = "aviary",
    status = "RolloutStatus",
    doc = "A workload like a Deployment whose updates go out by a canary or blue-green strategy, with traffic shifting, analysis and automatic rollback.",
    derive = "PartialEq",
    derive = "Default",
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: Aviary labels the Rollout's ReplicaSets, pods and AnalysisRuns with its name, and a label value holds 63"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired replicas"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Pods of all revisions"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Pods of the current revision"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Available pods"
    ),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex",
        description = "Index of the current canary step"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canary.weights.canary.weight",
        description = "Traffic weight of the canary"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Healthy, Progressing, Paused or Degraded"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) == has(oldSelf.selector) && (!has(self.selector) || self.selector == oldSelf.selector)").message("selector is immutable: create a new Rollout to change it").field_path(".selector"))]
#[x_kube(validation = Rule::new("has(self.workloadRef) || has(self.template)").message("template is required: the pod template to roll out (or spec.workloadRef naming a Deployment whose template is used)").field_path(".template"))]
#[x_kube(validation = Rule::new("!has(self.workloadRef) || !has(self.template)").message("template and workloadRef exclude each other: with workloadRef the pod template is the Deployment's; remove spec.template, or remove spec.workloadRef").field_path(".template"))]
#[x_kube(validation = Rule::new("has(self.workloadRef) || has(self.selector)").message("selector is required (it may be left out only with spec.workloadRef, whose Deployment's selector is then used)").field_path(".selector"))]
#[x_kube(validation = Rule::new("!has(self.selector) || !has(self.selector.matchLabels) || !has(self.template) || (has(self.template.metadata) && has(self.template.metadata.labels) && self.selector.matchLabels.all(k, k in self.template.metadata.labels && self.template.metadata.labels[k] == self.selector.matchLabels[k]))").message("selector.matchLabels must match template.metadata.labels").field_path(".selector"))]
#[x_kube(validation = Rule::new("(has(self.progressDeadlineSeconds) ? self.progressDeadlineSeconds : 600) > (has(self.minReadySeconds) ? self.minReadySeconds : 0)").message("progressDeadlineSeconds (default 600) must be greater than minReadySeconds").field_path(".progressDeadlineSeconds"))]
#[x_kube(validation = role_key_clash("canary", "canaryMetadata", "labels"))]
#[x_kube(validation = role_key_clash("canary", "canaryMetadata", "annotations"))]
#[x_kube(validation = role_key_clash("canary", "stableMetadata", "labels"))]
#[x_kube(validation = role_key_clash("canary", "stableMetadata", "annotations"))]
#[x_kube(validation = role_key_clash("blueGreen", "previewMetadata", "labels"))]
#[x_kube(validation = role_key_clash("blueGreen", "previewMetadata", "annotations"))]
#[x_kube(validation = role_key_clash("blueGreen", "activeMetadata", "labels"))]
#[x_kube(validation = role_key_clash("blueGreen", "activeMetadata", "annotations"))]
#[x_kube(validation = Rule::new("!has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.scaleDownDelayRevisionLimit) || (has(self.revisionHistoryLimit) ? self.revisionHistoryLimit : 10) >= self.strategy.blueGreen.scaleDownDelayRevisionLimit").message("strategy.blueGreen.scaleDownDelayRevisionLimit cannot exceed revisionHistoryLimit (default 10), as in Argo Rollouts: lower it or raise revisionHistoryLimit").field_path(".strategy.blueGreen.scaleDownDelayRevisionLimit"))]
pub struct RolloutSpec {
    /// Desired number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Label selector for the pods. Must match `template.metadata.labels`; immutable. May be
    /// left out with `workloadRef`: the Deployment's is used.
    #[serde(default, skip_serializing_if = "selector_is_empty")]
    pub selector: LabelSelector,
    /// The pod template. Changing it starts an update. Required unless `workloadRef` is set.
    #[serde(default, skip_serializing_if = "template_is_empty")]
    pub template: PodTemplateSpec,
    /// Seconds a new pod must be ready, without crashing, to count as available (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept for rollback (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,
    /// Manually pause the Rollout: no step advances until it is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds without progress before the update is reported Degraded
    /// (`ProgressDeadlineExceeded`, default 600). Pauses and analysis do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
    /// Also abort the update when the progress deadline is exceeded (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Restart pods created before this time (set by `kubectl aviary restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// How the update goes out: exactly one of `canary` or `blueGreen`.
    pub strategy: RolloutStrategy,
    /// How many finished AnalysisRuns to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunHistory>,
    /// A Deployment whose pod template (and selector, when `selector` is left out) the Rollout
    /// rolls out, instead of `template`. Editing the Deployment's template starts an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Rolling back to one of the last `revisions` revisions skips the steps and analysis: the
    /// earlier revision goes out at once, as with `promote --full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
}

fn selector_is_empty(s: &LabelSelector) -> bool {
    s.match_labels.is_none() && s.match_expressions.is_none()
}

fn template_is_empty(t: &PodTemplateSpec) -> bool {
    t.metadata.is_none() && t.spec.is_none()
}

/// `workloadRef`: the Deployment whose pod template the Rollout rolls out (Argo Rollouts'
/// migration path: the Deployment stays, scaled down, and is where the template is edited).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.apiVersion == 'apps/v1' && self.kind == 'Deployment'").message("workloadRef may name an apps/v1 Deployment only (a ReplicaSet or PodTemplate, which Argo Rollouts also takes, is not supported): set apiVersion: apps/v1 and kind: Deployment, or copy the pod template into spec.template").field_path(".kind"))]
pub struct WorkloadRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// The Deployment, in the Rollout's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// What becomes of the Deployment's own pods: `never` (left alone, the default),
    /// `onsuccess` (scaled to 0 once the Rollout is Healthy) or `progressively` (it keeps the
    /// pods the Rollout still lacks — `replicas` minus the Rollout's available pods — until the
    /// Rollout is Healthy, then 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

/// `workloadRef.scaleDown`, spelt as in Argo Rollouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadScaleDown {
    #[default]
    #[serde(rename = "never")]
    Never,
    #[serde(rename = "onsuccess")]
    OnSuccess,
    #[serde(rename = "progressively")]
    Progressively,
}

/// `replicaProgressThreshold`: a percentage of the pods wanted, or a number of pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'Percent' || self.value <= 100").message("replicaProgressThreshold.value is a percentage with type Percent: at most 100").field_path(".value"))]
pub struct ReplicaProgressThreshold {
    /// `Percent` (of the pods the step wants) or `Pods`.
    #[serde(rename = "type")]
    pub type_: ProgressType,
    /// Greater than 0.
    #[schemars(range(min = 1))]
    pub value: i32,
}

/// What a `replicaProgressThreshold` value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProgressType {
    Percent,
    Pods,
}

impl ReplicaProgressThreshold {
    /// The available pods that satisfy it when `wanted` are wanted: every one without a
    /// threshold, never more than `wanted`, and at least one while any is wanted.
    pub fn pods_for(threshold: Option<&Self>, wanted: i32) -> i32 {
        let Some(t) = threshold else {
            return wanted;
        };
        if wanted <= 0 {
            return wanted;
        }
        let n = match t.type_ {
            // Argo: available / wanted * 100 >= value, so the count rounds up.
            ProgressType::Percent => {
                let need = (i64::from(wanted) * i64::from(t.value.clamp(0, 100)) + 99) / 100;
                i32::try_from(need).unwrap_or(wanted)
            }
            ProgressType::Pods => t.value,
        };
        n.clamp(1, wanted)
    }
}

/// `antiAffinity` of either strategy: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)").message("antiAffinity must set exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution"))]
pub struct AntiAffinity {
    /// Prefer other nodes, with this weight among the pod's scheduling preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// Require other nodes: a pod that finds none stays Pending (the step waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// `antiAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    /// 1 to 100, as for any preferred pod affinity term.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
}

/// `antiAffinity.requiredDuringSchedulingIgnoredDuringExecution`: no fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequiredAntiAffinity {}

/// `spec.rollbackWindow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// A rollback skips the steps when fewer than this many revisions were created between the
    /// revision rolled back to and the stable one (1: only to the revision just before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revisions: Option<i32>,
}

impl RolloutSpec {
    /// Whether a rollback from the stable revision `stable` to the earlier revision `to` skips
    /// the steps (`rollbackWindow`), as Argo Rollouts decides it: `to` was created before
    /// `stable`, and fewer than `rollbackWindow.revisions` revisions were created between them.
    /// Revisions are ReplicaSet revision numbers, which, like Argo's creation times, a rollback
    /// does not change; `between` holds every other revision's.
    pub fn rollback_within_window(&self, to: i64, stable: i64, between: &[i64]) -> bool {
        let Some(window) = self.rollback_window.as_ref().and_then(|w| w.revisions) else {
            return false;
        };
        let newer = between.iter().filter(|r| **r > to && **r < stable).count();
        window > 0 && to < stable && newer < usize::try_from(window).unwrap_or(0)
    }

    /// `replicas`, default 1.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// `minReadySeconds`, default 0.
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds.unwrap_or(0)
    }

    /// `revisionHistoryLimit`, default 10.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// `progressDeadlineSeconds`, default 600.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// `progressDeadlineAbort`, default false.
    pub fn progress_deadline_abort(&self) -> bool {
        self.progress_deadline_abort.unwrap_or(false)
    }

    /// `paused`, default false.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// The canary strategy, if that is the strategy.
    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.strategy.canary.as_ref()
    }

    /// The Services the strategy points at its pods: stable and canary, or active and preview.
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        let canary = self.strategy.canary.as_ref();
        let blue_green = self.strategy.blue_green.as_ref();
        canary
            .and_then(|c| c.stable_service.as_deref())
            .into_iter()
            .chain(canary.and_then(|c| c.canary_service.as_deref()))
            .chain(blue_green.map(|b| b.active_service.as_str()))
            .chain(blue_green.and_then(|b| b.preview_service.as_deref()))
    }

    /// The total traffic weight the canary's weights are shares of (`maxTrafficWeight`, else
    /// 100).
    pub fn total_weight(&self) -> i32 {
        self.canary()
            .and_then(|c| c.traffic_routing.as_ref())
            .map_or(100, RolloutTrafficRouting::total_weight)
    }

    /// The blue-green strategy, if that is the strategy.
    pub fn blue_green(&self) -> Option<&BlueGreenStrategy> {
        self.strategy.blue_green.as_ref()
    }

    /// `antiAffinity` of whichever strategy.
    pub fn anti_affinity(&self) -> Option<&AntiAffinity> {
        match (self.canary(), self.blue_green()) {
            (Some(c), _) => c.anti_affinity.as_ref(),
            (_, Some(bg)) => bg.anti_affinity.as_ref(),
            _ => None,
        }
    }

    /// `scaleDownDelayRevisionLimit` of whichever strategy (None: no limit).
    pub fn scale_down_delay_revision_limit(&self) -> Option<i32> {
        match (self.canary(), self.blue_green()) {
            (Some(c), _) => c.scale_down_delay_revision_limit,
            (_, Some(bg)) => bg.scale_down_delay_revision_limit,
            _ => None,
        }
        .map(|n| n.max(0))
    }

    /// The canary steps (empty for blue-green or a canary without steps).
    pub fn steps(&self) -> &[CanaryStep] {
        self.canary().map(CanaryStrategy::steps).unwrap_or_default()
    }
}

impl Rollout {
    /// The canary steps (empty for blue-green or a canary without steps).
    pub fn steps(&self) -> &[CanaryStep] {
        self.spec.steps()
    }
}

/// How many finished AnalysisRuns of a Rollout to keep; older ones are deleted (never one still
/// running, one the status names, or one of the revision rolling out).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunHistory {
    /// Successful runs kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, errored and inconclusive runs kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// Exactly one of `canary` or `blueGreen`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)").message("strategy must set exactly one of canary or blueGreen"))]
pub struct RolloutStrategy {
    /// Shift traffic (or replicas) to the new version step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Bring up the new version beside the old and switch the active Service at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

// ---------------------------------------------------------------------------------------------
// Canary

/// The canary strategy. Without `trafficRouting` it is a basic canary: the weight is the share of
/// replicas. With it, traffic is split by the router and the stable ReplicaSet stays full size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.canaryService) || !has(self.stableService) || self.canaryService != self.stableService").message("canaryService and stableService must name different Services").field_path(".canaryService"))]
#[x_kube(validation = Rule::new("!has(self.trafficRouting) || (has(self.canaryService) && has(self.stableService))").message("trafficRouting requires both canaryService and stableService").field_path(".trafficRouting"))]
#[x_kube(validation = Rule::new("!has(self.steps) || !self.steps.exists(s, has(s.setCanaryScale)) || has(self.trafficRouting)").message("setCanaryScale steps require trafficRouting").field_path(".steps"))]
#[x_kube(validation = Rule::new("!has(self.analysis) || !has(self.analysis.startingStep) || (has(self.steps) && self.analysis.startingStep < size(self.steps))").message("analysis.startingStep must be the index of one of the steps").field_path(".analysis.startingStep"))]
#[x_kube(validation = Rule::new("!(has(self.maxSurge) && has(self.maxUnavailable) && (type(self.maxSurge) == int ? self.maxSurge == 0 : self.maxSurge == '0%') && (type(self.maxUnavailable) == int ? self.maxUnavailable == 0 : self.maxUnavailable == '0%'))").message("maxSurge and maxUnavailable cannot both be 0").field_path(".maxUnavailable"))]
#[x_kube(validation = Rule::new("!has(self.dynamicStableScale) || !self.dynamicStableScale || has(self.trafficRouting)").message("canary.dynamicStableScale applies only with trafficRouting (without a router the stable already shrinks as the canary grows): remove it or set trafficRouting").field_path(".dynamicStableScale"))]
#[x_kube(validation = Rule::new("!has(self.dynamicStableScale) || !self.dynamicStableScale || !has(self.scaleDownDelaySeconds)").message("canary.dynamicStableScale cannot be used with scaleDownDelaySeconds, as in Argo Rollouts (the old stable has shrunk as traffic left it): remove scaleDownDelaySeconds").field_path(".scaleDownDelaySeconds"))]
#[x_kube(validation = Rule::new("!has(self.steps) || self.steps.all(s, (!has(s.setWeight) || s.setWeight <= (has(self.trafficRouting) && has(self.trafficRouting.maxTrafficWeight) ? self.trafficRouting.maxTrafficWeight : 100)) && (!has(s.setCanaryScale) || !has(s.setCanaryScale.weight) || s.setCanaryScale.weight <= (has(self.trafficRouting) && has(self.trafficRouting.maxTrafficWeight) ? self.trafficRouting.maxTrafficWeight : 100)))").message("steps[].setWeight and setCanaryScale.weight are at most 100, or trafficRouting.maxTrafficWeight when set: lower the weight").field_path(".steps"))]
#[x_kube(validation = unsupported("pingPong", "canary.pingPong", "use canaryService and stableService"))]
#[x_kube(validation = Rule::new("!has(self.minPodsPerReplicaSet) || has(self.trafficRouting)").message("canary.minPodsPerReplicaSet applies only with trafficRouting (without a router, pods are the weight): remove it or set trafficRouting").field_path(".minPodsPerReplicaSet"))]
pub struct CanaryStrategy {
    /// Service whose selector Aviary points at the canary (new) pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub canary_service: Option<String>,
    /// Service whose selector Aviary points at the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub stable_service: Option<String>,
    /// The steps, run in order. Each sets exactly one of `setWeight`, `pause`, `analysis` or
    /// `setCanaryScale`. Without steps the update is a plain rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub steps: Option<Vec<CanaryStep>>,
    /// Split traffic with a router instead of by replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<RolloutTrafficRouting>,
    /// Pods above `replicas` allowed during the update: a number or a percentage (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub max_surge: Option<IntOrString>,
    /// Pods below `replicas` allowed unavailable during the update (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub max_unavailable: Option<IntOrString>,
    /// With traffic routing: seconds the old stable pods are kept after the switch (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// With traffic routing: seconds the canary pods are kept after an abort (default 30; 0 keeps
    /// them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Background analysis, running from `startingStep` until the update completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysisBackground>,
    /// Keep the new revision's pods off the nodes that run the stable revision's (Argo's
    /// injected pod anti-affinity on `rollouts-pod-template-hash`, topology
    /// `kubernetes.io/hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Labels and annotations on the canary's pods while it is the canary (removed in place at
    /// promotion, when `stableMetadata` takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodMetadata>,
    /// Labels and annotations on the stable's pods while it is the stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodMetadata>,
    /// How many old ReplicaSets may keep their pods while they wait out
    /// `scaleDownDelaySeconds` (newest first); older ones go at once. 0: none wait. Unset: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// With trafficRouting: the stable ReplicaSet shrinks as traffic leaves it (to the pods its
    /// share needs, and one) instead of staying at full size. On the way back — abort, undo, a
    /// lower weight — the stable grows first and traffic returns to it one declared weight at a
    /// time, as its pods become available (the canary shrinks with its weight after an abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<Unsupported>,
    /// With trafficRouting, the fewest pods the canary runs while it has any (a weight of
    /// 1 % of 10 replicas is still this many pods). Unlike Argo, it also raises a
    /// `setCanaryScale` replicas count, and a weight is routed once the pods its share needs
    /// are available (Argo waits for all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_pods_per_replica_set: Option<i32>,
    /// How many of the canary's pods must be available before a step's weight is routed, a
    /// step completes and the update is promoted (default: every pod), as in Argo Rollouts.
    /// The canary then serves its share on fewer pods than the share needs: a trade of
    /// capacity for speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_progress_threshold: Option<ReplicaProgressThreshold>,
}

impl CanaryStrategy {
    /// The steps (empty when none).
    pub fn steps(&self) -> &[CanaryStep] {
        self.steps.as_deref().unwrap_or_default()
    }

    /// `maxSurge`, default 25%.
    pub fn max_surge(&self) -> IntOrString {
        self.max_surge
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE_UNAVAILABLE.into()))
    }

    /// `maxUnavailable`, default 25%.
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE_UNAVAILABLE.into()))
    }

    /// `scaleDownDelaySeconds`, default 30.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `dynamicStableScale` with a router (it means nothing without one).
    pub fn dynamic_stable_scale(&self) -> bool {
        self.dynamic_stable_scale == Some(true) && self.traffic_routing.is_some()
    }

    /// `abortScaleDownDelaySeconds`, default 30.
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }
}

/// Schema of `maxSurge`/`maxUnavailable`: an integer >= 0 or a percentage such as `25%`.
fn int_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": 8,
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? self >= 0 && self <= 2147483647 : self.matches('^[0-9]+%$')",
            "message": "must be an integer from 0 to 2147483647 or a percentage such as 25%",
        }],
    })
}

/// One canary step: exactly one of `setWeight`, `pause`, `analysis` or `setCanaryScale`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.experiment) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) + (has(self.setMirrorRoute) ? 1 : 0) + (has(self.plugin) ? 1 : 0) == 1").message("each step must set exactly one of setWeight, pause, analysis or setCanaryScale"))]
#[x_kube(validation = unsupported("experiment", "steps[].experiment", "use an analysis step"))]
#[x_kube(validation = unsupported("setHeaderRoute", "steps[].setHeaderRoute", "header-based routing is not implemented"))]
#[x_kube(validation = unsupported("setMirrorRoute", "steps[].setMirrorRoute", "traffic mirroring is not implemented"))]
#[x_kube(validation = unsupported("plugin", "steps[].plugin (step plugins)", "use setWeight, setCanaryScale, pause and analysis steps"))]
pub struct CanaryStep {
    /// Send this share of traffic to the canary: a percentage (0-100), or of
    /// `trafficRouting.maxTrafficWeight` when set; with a basic canary, scale the canary to
    /// this share of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub set_weight: Option<i32>,
    /// Pause for `duration`, or until promoted when `duration` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Run an AnalysisRun; the step completes when it is Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Scale the canary independently of its traffic weight (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Unsupported>,
}

/// What a canary step does (see [`CanaryStep::action`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepAction<'a> {
    /// `setWeight: N`.
    SetWeight(i32),
    /// `pause: {duration?}`.
    Pause(&'a RolloutPause),
    /// `analysis: {...}`.
    Analysis(&'a RolloutAnalysis),
    /// `setCanaryScale: {...}`.
    SetCanaryScale(&'a SetCanaryScale),
}

impl CanaryStep {
    /// A `setWeight` step.
    pub fn set_weight(weight: i32) -> Self {
        Self {
            set_weight: Some(weight),
            ..Self::default()
        }
    }

    /// A `pause` step; `None` pauses until promoted.
    pub fn pause(duration: Option<Duration>) -> Self {
        Self {
            pause: Some(RolloutPause { duration }),
            ..Self::default()
        }
    }

    /// The step's action. `None` only for a step admission would have rejected (no supported
    /// action set); the first set action wins if several are.
    pub fn action(&self) -> Option<StepAction<'_>> {
        if let Some(w) = self.set_weight {
            Some(StepAction::SetWeight(w))
        } else if let Some(p) = &self.pause {
            Some(StepAction::Pause(p))
        } else if let Some(a) = &self.analysis {
            Some(StepAction::Analysis(a))
        } else {
            self.set_canary_scale
                .as_ref()
                .map(StepAction::SetCanaryScale)
        }
    }
}

impl fmt::Display for CanaryStep {
    /// As Argo names steps in events: `setWeight: 20`, `pause: 5m`, `pause`, `analysis`,
    /// `setCanaryScale`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action() {
            Some(StepAction::SetWeight(w)) => write!(f, "setWeight: {w}"),
            Some(StepAction::Pause(RolloutPause { duration: Some(d) })) => write!(f, "pause: {d}"),
            Some(StepAction::Pause(_)) => f.write_str("pause"),
            Some(StepAction::Analysis(_)) => f.write_str("analysis"),
            Some(StepAction::SetCanaryScale(_)) => f.write_str("setCanaryScale"),
            None => f.write_str("unknown step"),
        }
    }
}

/// A pause step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// How long to pause: integer seconds or a duration string (`30s`, `5m`, `1h`). Absent:
    /// until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

impl RolloutPause {
    /// Whether the pause lasts until promoted.
    pub fn is_indefinite(&self) -> bool {
        self.duration.is_none()
    }
}

/// Scales the canary independently of its traffic weight. Exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.weight) ? 1 : 0) + (has(self.replicas) ? 1 : 0) + (has(self.matchTrafficWeight) ? 1 : 0) == 1").message("setCanaryScale must set exactly one of weight, replicas or matchTrafficWeight"))]
pub struct SetCanaryScale {
    /// Canary size as a share of `spec.replicas`: a percentage, or of
    /// `trafficRouting.maxTrafficWeight` when set (as in Argo Rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: Option<i32>,
    /// Canary size as a number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Go back to sizing the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Analysis references

/// Declares the analysis reference struct shared by steps, blue-green promotion analysis and
/// (with `startingStep`) background analysis.
macro_rules! rollout_analysis {
    ($(#[$attr:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$attr])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// The templates whose metrics the AnalysisRun measures (merged; metric names must not
            /// clash).
            #[schemars(length(min = 1, max = 20))]
            pub templates: Vec<AnalysisTemplateRef>,
            /// Argument values, overriding the templates' defaults.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
            pub args: Option<Vec<RolloutArgument>>,
            /// Metrics (by name; `*` for all) that never affect the run.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
            pub dry_run: Option<Vec<DryRun>>,
            /// Measurements kept per metric.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
            pub measurement_retention: Option<Vec<MeasurementRetention>>,
            /// Labels and annotations for the AnalysisRuns created (Aviary's own labels win).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub analysis_run_metadata: Option<super::ExtraMetadata>,
            $($extra)*
        }

        impl $name {
            /// The argument values (empty when none).
            pub fn args(&self) -> &[RolloutArgument] {
                self.args.as_deref().unwrap_or_default()
            }
        }
    };
}

rollout_analysis! {
    /// An AnalysisRun started by a step or around a blue-green promotion.
    RolloutAnalysis {}
}

rollout_analysis! {
    /// An AnalysisRun running in the background from `startingStep` until the update completes;
    /// Failed or Error aborts the update.
    RolloutAnalysisBackground {
        /// Index of the step from which the analysis runs (default 0: from the start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0))]
        pub starting_step: Option<i32>,
    }
}

impl RolloutAnalysisBackground {
    /// The analysis without `startingStep`.
    pub fn analysis(&self) -> RolloutAnalysis {
        RolloutAnalysis {
            templates: self.templates.clone(),
            args: self.args.clone(),
            dry_run: self.dry_run.clone(),
            measurement_retention: self.measurement_retention.clone(),
            analysis_run_metadata: self.analysis_run_metadata.clone(),
        }
    }
}

/// A reference to an AnalysisTemplate (or, with `clusterScope`, a ClusterAnalysisTemplate).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// The template's name.
    #[schemars(length(min = 1, max = 253))]
    pub template_name: String,
    /// Refer to a ClusterAnalysisTemplate instead of an AnalysisTemplate in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

impl AnalysisTemplateRef {
    /// Whether it names a ClusterAnalysisTemplate.
    pub fn is_cluster_scope(&self) -> bool {
        self.cluster_scope.unwrap_or(false)
    }
}

/// An argument passed from a Rollout to its AnalysisRuns: exactly one of `value` or `valueFrom`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("each argument must set exactly one of value or valueFrom"))]
pub struct RolloutArgument {
    /// The template argument it fills.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// The source of a Rollout argument. Exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.podTemplateHashValue) != has(self.fieldRef)").message("valueFrom must set exactly one of podTemplateHashValue or fieldRef"))]
#[x_kube(validation = super::field_path::rule())]
pub struct ArgumentValueFrom {
    /// The pod-template hash of the `Stable` or `Latest` (canary) revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout: `metadata.name`, `.namespace`, `.uid`, `.labels['KEY']`,
    /// `.annotations['KEY']`, or a `spec.*`/`status.*` path (e.g. `spec.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// Which revision's pod-template hash an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PodTemplateHashValue {
    /// The stable revision.
    Stable,
    /// The newest revision (the canary or preview).
    Latest,
}

// ---------------------------------------------------------------------------------------------
// Traffic routing

/// The router that splits traffic: exactly one of `istio`, `nginx` or `gatewayAPI`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.istio) ? 1 : 0) + (has(self.nginx) ? 1 : 0) + (has(self.gatewayAPI) ? 1 : 0) + (has(self.alb) ? 1 : 0) + (has(self.smi) ? 1 : 0) + (has(self.ambassador) ? 1 : 0) + (has(self.appMesh) ? 1 : 0) + (has(self.traefik) ? 1 : 0) + (has(self.apisix) ? 1 : 0) + (has(self.plugins) ? 1 : 0) == 1").message("trafficRouting must set exactly one of istio, nginx or gatewayAPI"))]
#[x_kube(validation = unsupported("alb", "trafficRouting.alb", "use istio, nginx or gatewayAPI"))]
#[x_kube(validation = unsupported("smi", "trafficRouting.smi", "use gatewayAPI"))]
#[x_kube(validation = unsupported("ambassador", "trafficRouting.ambassador", "use gatewayAPI (Emissary supports it)"))]
#[x_kube(validation = unsupported("appMesh", "trafficRouting.appMesh", "use istio, nginx or gatewayAPI"))]
#[x_kube(validation = unsupported("traefik", "trafficRouting.traefik", "use gatewayAPI (Traefik supports it)"))]
#[x_kube(validation = unsupported("apisix", "trafficRouting.apisix", "use gatewayAPI"))]
#[x_kube(validation = unsupported("plugins", "trafficRouting.plugins", "for the Gateway API plugin use trafficRouting.gatewayAPI with httpRoute or httpRoutes"))]
#[x_kube(validation = unsupported("managedRoutes", "trafficRouting.managedRoutes", "header and mirror routes are not implemented"))]
#[x_kube(validation = Rule::new("!has(self.maxTrafficWeight) || has(self.nginx)").message("trafficRouting.maxTrafficWeight is supported with nginx only (as in Argo Rollouts): remove it, and give setWeight as a percentage").field_path(".maxTrafficWeight"))]
pub struct RolloutTrafficRouting {
    /// Istio VirtualService (and optionally DestinationRule) weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    /// ingress-nginx canary Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
    /// Gateway API HTTPRoute backend weights (Aviary's own; Argo has it only as a plugin).
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTrafficRouting>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_mesh: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::unsupported_array")]
    pub managed_routes: Option<Unsupported>,
    /// The total traffic weight (default 100) that `setWeight` and `setCanaryScale.weight` are
    /// shares of: `setWeight: 5` with `maxTrafficWeight: 1000` routes 0.5 %. NGINX only
    /// (`canary-weight-total`), as in Argo Rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_traffic_weight: Option<i32>,
}

impl RolloutTrafficRouting {
    /// The total weight `setWeight` is a share of: `maxTrafficWeight`, else 100.
    pub fn total_weight(&self) -> i32 {
        self.max_traffic_weight.unwrap_or(100).max(1)
    }
}

/// Istio routing: the weights of the canary and stable destinations in VirtualService HTTP
/// routes, by host (the Services) or by subset (with `destinationRule`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.virtualService) != has(self.virtualServices)").message("istio must set exactly one of virtualService or virtualServices"))]
pub struct IstioTrafficRouting {
    /// The VirtualService to update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualService>,
    /// Several VirtualServices to update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    pub virtual_services: Option<Vec<IstioVirtualService>>,
    /// Split by subset: the DestinationRule whose subsets get the pod-template hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

impl IstioTrafficRouting {
    /// The VirtualServices to update, however they were written.
    pub fn virtual_services(&self) -> Vec<&IstioVirtualService> {
        self.virtual_service
            .iter()
            .chain(self.virtual_services.iter().flatten())
            .collect()
    }
}

/// A VirtualService and the HTTP routes in it to update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = unsupported("tlsRoutes", "virtualService.tlsRoutes", "only HTTP routes are supported"))]
#[x_kube(validation = unsupported("tcpRoutes", "virtualService.tcpRoutes", "only HTTP routes are supported"))]
pub struct IstioVirtualService {
    /// The VirtualService's name (`name` or `namespace/name`).
    #[schemars(length(min = 1, max = 317))]
    pub name: String,
    /// Names of the HTTP routes to update. Empty: the VirtualService must have exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub routes: Option<Vec<String>>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::unsupported_array")]
    pub tls_routes: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::unsupported_array")]
    pub tcp_routes: Option<Unsupported>,
}

/// A DestinationRule whose two subsets Aviary points at the canary and stable pod hashes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.canarySubsetName != self.stableSubsetName").message("destinationRule.canarySubsetName and stableSubsetName must differ").field_path(".canarySubsetName"))]
#[x_kube(validation = unsupported("additionalSubsetNames", "destinationRule.additionalSubsetNames", "remove it; only canarySubsetName and stableSubsetName are managed"))]
pub struct IstioDestinationRule {
    /// The DestinationRule's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The subset for the canary.
    #[schemars(length(min = 1))]
    pub canary_subset_name: String,
    /// The subset for the stable version.
    #[schemars(length(min = 1))]
    pub stable_subset_name: String,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::unsupported_string_array")]
    pub additional_subset_names: Option<Unsupported>,
}

/// ingress-nginx routing: a canary Ingress `<rollout>-<stableIngress>-canary`, copied from the
/// stable Ingress with the canary annotations. The stable Ingress is never modified.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.stableIngress) != has(self.stableIngresses)").message("nginx must set exactly one of stableIngress or stableIngresses"))]
pub struct NginxTrafficRouting {
    /// Annotation prefix of the ingress controller (default `nginx.ingress.kubernetes.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// The Ingress routing to `stableService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub stable_ingress: Option<String>,
    /// Several Ingresses routing to `stableService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    pub stable_ingresses: Option<Vec<String>>,
    /// Extra annotations on the canary Ingress; the prefix is added when missing
    /// (`canary-by-header: X-Canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_ingress_annotations: Option<BTreeMap<String, String>>,
    /// Annotations on the canary Ingress, keys taken verbatim; override
    /// `additionalIngressAnnotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ingress_annotations: Option<BTreeMap<String, String>>,
}

impl NginxTrafficRouting {
    /// The stable Ingresses, however they were written.
    pub fn stable_ingresses(&self) -> Vec<&str> {
        self.stable_ingress
            .iter()
            .chain(self.stable_ingresses.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    /// `annotationPrefix`, default `nginx.ingress.kubernetes.io`.
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or(DEFAULT_NGINX_ANNOTATION_PREFIX)
    }
}

/// Gateway API routing: the weights of the `canaryService` and `stableService` backendRefs in
/// the rules of HTTPRoutes in the Rollout's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.httpRoute) != has(self.httpRoutes)").message("gatewayAPI must set exactly one of httpRoute or httpRoutes"))]
pub struct GatewayApiTrafficRouting {
    /// The HTTPRoute's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub http_route: Option<String>,
    /// Several HTTPRoutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    pub http_routes: Option<Vec<GatewayApiRoute>>,
}

impl GatewayApiTrafficRouting {
    /// The HTTPRoute names, however they were written.
    pub fn http_routes(&self) -> Vec<&str> {
        self.http_route
            .iter()
            .map(String::as_str)
            .chain(self.http_routes.iter().flatten().map(|r| r.name.as_str()))
            .collect()
    }
}

/// An HTTPRoute to update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRoute {
    /// The HTTPRoute's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Labels and annotations a ReplicaSet's pods carry while it holds a role (canary or stable;
/// preview or active): set on its pod template and on its running pods in place, and taken off
/// both when the role passes (Argo Rollouts' ephemeral metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.labels) || !('rollouts-pod-template-hash' in self.labels)").message("the rollouts-pod-template-hash label is Aviary's (it ties pods to their ReplicaSet): remove it from these labels").field_path(".labels"))]
#[x_kube(validation = Rule::new("!has(self.labels) || self.labels.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$') && (!k.contains('/') || size(k.split('/')[0]) <= 253) && size(k.split('/')[size(k.split('/')) - 1]) <= 63)").message("label keys must be Kubernetes qualified names: an optional DNS prefix of up to 253 characters and '/', then up to 63 characters of [A-Za-z0-9_.-] starting and ending alphanumeric").field_path(".labels"))]
#[x_kube(validation = Rule::new("!has(self.annotations) || self.annotations.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$') && (!k.contains('/') || size(k.split('/')[0]) <= 253) && size(k.split('/')[size(k.split('/')) - 1]) <= 63)").message("annotation keys must be Kubernetes qualified names: an optional DNS prefix of up to 253 characters and '/', then up to 63 characters of [A-Za-z0-9_.-] starting and ending alphanumeric").field_path(".annotations"))]
pub struct PodMetadata {
    /// Label values as Kubernetes takes them (up to 63 characters of `[A-Za-z0-9_.-]`, starting
    /// and ending alphanumeric), so a bad one is refused here, not by a pod patch later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"}))]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl PodMetadata {
    /// Neither labels nor annotations (as good as unset).
    pub fn is_empty(&self) -> bool {
        self.labels.as_ref().is_none_or(BTreeMap::is_empty)
            && self.annotations.as_ref().is_none_or(BTreeMap::is_empty)
    }
}

/// A role's `labels` or `annotations` may not reuse a key of the pod template's: the role's
/// value would hide the template's, and taking the role off would take the template's key away
/// too (a label a Service selects, say).
fn role_key_clash(strategy: &str, field: &str, map: &str) -> kube::core::Rule {
    let ours = format!("self.strategy.{strategy}.{field}.{map}");
    kube::core::Rule::new(format!(
        "!has(self.strategy.{strategy}) || !has(self.strategy.{strategy}.{field}) || !has({ours}) || !has(self.template) || !has(self.template.metadata) || !has(self.template.metadata.{map}) || {ours}.all(k, !(k in self.template.metadata.{map}))"
    ))
    .message(kube::core::Message::Message(format!(
        "strategy.{strategy}.{field}.{map} may not reuse a key of template.metadata.{map}: the role's value would replace the template's, and taking the role off would remove the template's key: use another key"
    )))
    .field_path(format!(".strategy.{strategy}.{field}.{map}"))
}

// ---------------------------------------------------------------------------------------------
// Blue-green

/// The blue-green strategy: the new version comes up behind `previewService`, then
/// `activeService` switches to it at promotion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.previewService) || self.previewService != self.activeService").message("activeService and previewService must name different Services").field_path(".previewService"))]
pub struct BlueGreenStrategy {
    /// Service that serves production traffic; switched to the new version at promotion.
    #[schemars(length(min = 1, max = 63))]
    pub active_service: String,
    /// Service switched to the new version as soon as it exists, for testing before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub preview_service: Option<String>,
    /// Promote without waiting for a human (default true). False: pause until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// Promote automatically this many seconds after the preview is ready (default 0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub auto_promotion_seconds: Option<i32>,
    /// Size of the new version before promotion (default: `spec.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub preview_replica_count: Option<i32>,
    /// Seconds the old version is kept after the switch (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds the preview is kept after an abort (default 30; 0 keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Analysis before the switch; Failed or Error aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis after the switch; Failed or Error switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Keep the new revision's pods off the nodes that run the stable revision's (Argo's
    /// injected pod anti-affinity on `rollouts-pod-template-hash`, topology
    /// `kubernetes.io/hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Labels and annotations on the new revision's pods while they await promotion (removed
    /// in place at promotion, when `activeMetadata` takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodMetadata>,
    /// Labels and annotations on the active revision's pods while it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodMetadata>,
    /// How many old ReplicaSets may keep their pods while they wait out
    /// `scaleDownDelaySeconds` (newest first); older ones go at once. 0: none wait. Unset: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Pods a restart (`spec.restartAt`) may take away at once: a number or a percentage of
    /// `replicas`, rounded down (default 25%; at least one goes at a time). As in Argo, it
    /// paces nothing else: the active ReplicaSet keeps its full size until the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub max_unavailable: Option<IntOrString>,
}

impl BlueGreenStrategy {
    /// `autoPromotionEnabled`, default true.
    pub fn auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled.unwrap_or(true)
    }

    /// `autoPromotionSeconds`, default 0.
    pub fn auto_promotion_seconds(&self) -> i32 {
        self.auto_promotion_seconds.unwrap_or(0)
    }

    /// `scaleDownDelaySeconds`, default 30.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `abortScaleDownDelaySeconds`, default 30.
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// Observed state of a Rollout, written by the controller through the status subresource
/// (except `abort`, which `kubectl aviary abort`/`retry` set). Replica counters are always
/// written, so a merge patch that lowers one to 0 takes effect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Healthy, Progressing, Paused or Degraded; current only when `observedGeneration` equals
    /// `metadata.generation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why the Rollout is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` the status reflects (an integer, as kstatus expects; Argo
    /// writes a string here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// With `workloadRef`: the Deployment's `metadata.generation` whose template the status
    /// reflects (a string, as in Argo Rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_observed_generation: Option<String>,
    /// Pod-template hash of the newest revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Pod-template hash of the stable revision.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// Index of the current canary step (= number of steps once all are done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Hash of `strategy.canary.steps`; a change restarts the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Pods of all revisions.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of the newest revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Available pods (ready for `minReadySeconds`).
    #[serde(default)]
    pub available_replicas: i32,
    /// Label selector of the pods as a string, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Abort the update (set through the status subresource by `kubectl aviary abort`; unset by
    /// `retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// When the update was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Why the controller paused the Rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// Whether the pause conditions were set by the controller (vs `spec.paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// Skip the remaining steps, pauses and analysis (`kubectl aviary promote --full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// The `spec.restartAt` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// Bumped when a pod-template hash collides with an existing ReplicaSet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// Canary state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Blue-green state.
    #[serde(default, rename = "blueGreen", skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Conditions: `Ready` (summary for kstatus/Flux/Argo CD), `Progressing`, `Available`,
    /// `Paused`, `Completed`, `Healthy`, `InvalidSpec`, `ReplicaFailure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl RolloutStatus {
    /// `abort`, default false.
    pub fn is_aborted(&self) -> bool {
        self.abort.unwrap_or(false)
    }

    /// `currentStepIndex`, default 0.
    pub fn current_step_index(&self) -> i32 {
        self.current_step_index.unwrap_or(0)
    }

    /// The condition of that type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        super::conditions::find_condition(&self.conditions, type_)
    }
}

/// Summary phase of a Rollout (first match wins: Degraded, Paused, Progressing, Healthy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Fully rolled out and available.
    Healthy,
    /// Paused by a step, `spec.paused` or inconclusive analysis.
    Paused,
    /// Aborted, past its progress deadline, or with an invalid spec.
    Degraded,
    /// An update or scaling is under way. Also what a phase this version does not know (a newer
    /// controller's) reads as: the phase is recomputed at every status write.
    #[serde(other)]
    Progressing,
}

impl RolloutPhase {
    /// The phase as spelled in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Paused => "Paused",
            Self::Degraded => "Degraded",
        }
    }
}

impl RolloutPhase {
    /// The summary conditions generic tools read, for this phase, as kstatus (Flux, `kubectl
    /// wait`, cli-utils) reads them: `Reconciling=True` while Progressing or Paused (InProgress: a
    /// `dependsOn` chain waits through a pause), `Stalled=True` when Degraded (Failed), neither
    /// when Healthy (Current); `Ready` is True only when Healthy. The condition that is True
    /// carries `reason` and `message` (the step, the pause, the abort, the invalid field); the
    /// others carry the phase. The one function the status path and the invalid-spec path use.
    /// Set them with [`set_condition`](super::conditions::set_condition) so transition times
    /// move only on change.
    pub fn summary_conditions(
        self,
        reason: &str,
        message: &str,
        observed_generation: Option<i64>,
        now: &Time,
    ) -> [Condition; 3] {
        use super::conditions::{reasons, types};
        let ready = self == Self::Healthy;
        let reconciling = matches!(self, Self::Progressing | Self::Paused);
        let stalled = self == Self::Degraded;
        let ready_reason = if ready {
            reasons::ROLLOUT_HEALTHY
        } else {
            self.as_str()
        };
        [
            (types::READY, ready, ready_reason, message),
            (
                types::RECONCILING,
                reconciling,
                if reconciling { reason } else { self.as_str() },
                if reconciling { message } else { "" },
            ),
            (
                types::STALLED,
                stalled,
                if stalled { reason } else { self.as_str() },
                if stalled { message } else { "" },
            ),
        ]
        .map(|(type_, status, reason, message)| {
            Condition::new(type_, status, reason, message, now.clone())
                .with_generation(observed_generation)
        })
    }
}

impl fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and since when the controller paused the Rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// The reason.
    pub reason: PauseReason,
    /// When the pause began; a timed pause ends at `startTime + duration`.
    pub start_time: Time,
}

/// Reasons the controller pauses a Rollout (Argo's spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// Blue-green waiting for promotion.
    BlueGreenPause,
    /// An analysis run ended Inconclusive.
    InconclusiveAnalysisRun,
    // No fallback for a reason this version does not know (a newer controller's): guessed as
    // one of these, blue-green took it for a pause `promote` had cleared and switched the
    // active Service. Such a Rollout does not decode, and is skipped and reported
    // (`api::lenient`) until a controller that knows the reason reads it.
}

/// Canary state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The AnalysisRun of the current analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// Traffic weights last set on the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
}

/// Traffic weights last set on the router.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// The canary destination.
    pub canary: WeightDestination,
    /// The stable destination.
    pub stable: WeightDestination,
    /// Whether the router was checked to carry these weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// One destination's weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Percentage of traffic.
    #[serde(default)]
    pub weight: i32,
    /// The Service receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The pod-template hash behind that Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// Blue-green state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Pod-template hash the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// Pod-template hash the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// Whether the preview was scaled to full size ahead of the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    /// The pre-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The post-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

/// An AnalysisRun the Rollout is waiting on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    /// The AnalysisRun's name.
    pub name: String,
    /// Its phase.
    #[serde(default)]
    pub status: AnalysisPhase,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

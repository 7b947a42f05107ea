//! The planner: given a Rollout, what was observed of the objects it owns and routes, and the
//! time, decide what to do next. Pure and synchronous — no I/O, no clock — so every transition is
//! a plain table test.
//!
//! The controller's reconcile is *observe → plan → act → report*: it reads state into
//! [`Observed`], calls [`plan`], applies [`Plan::actions`] in order (stopping at the first failure)
//! and then writes [`Plan::status`]. Crash safety rests on one rule the planner keeps: a reconcile
//! only ever makes the world match the step recorded in `status`, and may *then* advance the step
//! in the status it returns — never act on a step it has not yet persisted. A controller killed at
//! any point therefore resumes by re-applying the persisted step, which is idempotent.

pub mod anti_affinity;
pub mod bluegreen;
pub mod canary;
pub mod go_json;
pub mod hash;
pub mod history;
mod moves;
pub mod pod_metadata;
pub mod replicas;
pub mod restart;
pub mod run_history;
pub mod status;
pub mod workload;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisPhase, Rollout, RolloutStatus};

pub use hash::{
    POD_TEMPLATE_HASH_LABEL, TRIMMED_TEMPLATE_HASH, TemplateHashes, legacy_pod_template_hash,
    pod_template_hash, replica_set_name, revision_hash, rollout_template_hash,
    rollout_template_hashes,
};
pub use restart::ObservedPod;

/// What the controller observed of one ReplicaSet the Rollout owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedReplicaSet {
    pub name: String,
    /// Its `rollouts-pod-template-hash` label.
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`, never counted above `spec.replicas` (a status that lags a
    /// scale-down must not make a shrinking ReplicaSet look able to carry traffic).
    pub available: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.replicas`: pods that exist, ready or not.
    pub current: i32,
    /// Revision number from the ReplicaSet's annotation.
    pub revision: Option<i64>,
    /// When this ReplicaSet may be scaled to zero (annotation), if a delay is running.
    pub scale_down_at: Option<Timestamp>,
    /// When Aviary last created or scaled it (annotation): the start of the progress deadline.
    pub scaled_at: Option<Timestamp>,
    /// The role metadata its annotations record ([`pod_metadata`]).
    pub pod_metadata: pod_metadata::Recorded,
}

/// Where a Service's `rollouts-pod-template-hash` selector points now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedService {
    pub name: String,
    /// `None` when the Service exists but has no hash selector yet.
    pub hash: Option<String>,
}

/// The hash labels of the two DestinationRule subsets a VirtualService splits between (Istio
/// subset mode); `None` where a subset has no hash label yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubsetHashes {
    pub canary: Option<String>,
    pub stable: Option<String>,
}

/// Which part of a rollout an AnalysisRun measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnalysisKind {
    /// The `analysis` step at this index.
    Step(i32),
    /// `strategy.canary.analysis`, running in the background from `startingStep`.
    Background,
    /// Blue-green `prePromotionAnalysis`.
    PrePromotion,
    /// Blue-green `postPromotionAnalysis`.
    PostPromotion,
}

/// An AnalysisRun of the rollout, as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedAnalysisRun {
    pub name: String,
    pub kind: AnalysisKind,
    /// The pod-template hash of the revision it measures.
    pub hash: String,
    pub phase: AnalysisPhase,
    pub message: Option<String>,
    /// The hash of the canary steps a step or background run was created for (`None`: not
    /// recorded). A run of other steps is no verdict of the current ones ([`Observed::counts`]):
    /// the cache may show it after the reconcile that saw the steps edited, which retired only
    /// the runs it could see.
    pub steps_hash: Option<String>,
}

/// One AnalysisRun of the rollout as its history limits count it ([`run_history`]): retired
/// runs included, which are no verdict of anything.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRunRecord {
    pub name: String,
    /// The pod-template hash of the revision it measured (`None`: its label is missing).
    pub hash: Option<String>,
    pub phase: AnalysisPhase,
    /// Set aside by an abort, a retry or a new revision: it no longer counts for the rollout.
    pub retired: bool,
}

/// Everything the planner may look at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub rollout: &'a Rollout,
    pub replica_sets: Vec<ObservedReplicaSet>,
    /// The Services the strategy names (canary and stable; active and preview) that exist.
    pub services: Vec<ObservedService>,
    /// The canary weight the routing objects show now (`None`: no routing, or unknown).
    pub current_weight: Option<i32>,
    /// The pod-template hashes the DestinationRule's canary and stable subsets select now, in
    /// Istio subset mode (`None`: no subsets are routed).
    pub subset_hashes: Option<SubsetHashes>,
    /// The rollout's AnalysisRuns that still count (all kinds, all revisions; retired ones are
    /// left out), oldest first: what verdicts are read from.
    pub analysis_runs: Vec<ObservedAnalysisRun>,
    /// Every AnalysisRun of the rollout, retired ones included, oldest first: what
    /// `spec.analysis`'s history limits count ([`run_history`]). Never read for a verdict.
    pub analysis_run_history: Vec<AnalysisRunRecord>,
    /// The pods of the rollout's ReplicaSets: listed only while a restart is due
    /// ([`restart::due`]), `None` otherwise (no pod cache: its memory would grow with every pod
    /// of every rollout, for a rare operation).
    pub pods: Option<Vec<ObservedPod>>,
    /// The Deployment `spec.workloadRef` names, when it does ([`workload`]).
    pub workload: Option<workload::ObservedWorkload>,
    pub now: Timestamp,
}

impl From<&ObservedAnalysisRun> for crate::api::RolloutAnalysisRunStatus {
    /// The run as the Rollout's status records it.
    fn from(run: &ObservedAnalysisRun) -> Self {
        crate::api::RolloutAnalysisRunStatus {
            name: run.name.clone(),
            status: run.phase,
            message: run.message.clone(),
        }
    }
}

impl Observed<'_> {
    /// The observed Service of that name.
    pub fn service(&self, name: &str) -> Option<&ObservedService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The newest run of `kind` for the revision `hash` that counts ([`Observed::counts`]).
    pub fn analysis_run(&self, kind: AnalysisKind, hash: &str) -> Option<&ObservedAnalysisRun> {
        let steps = hash::hash_of(&self.rollout.spec.steps());
        self.analysis_runs
            .iter()
            .rev()
            .find(|r| r.kind == kind && r.hash == hash && counts(r, &steps))
    }

    /// Whether `run` was made for the current canary steps (or does not say).
    pub fn counts(&self, run: &ObservedAnalysisRun) -> bool {
        counts(run, &hash::hash_of(&self.rollout.spec.steps()))
    }
}

fn counts(run: &ObservedAnalysisRun, steps_hash: &str) -> bool {
    run.steps_hash.as_deref().is_none_or(|h| h == steps_hash)
}

/// One change to make in the cluster. The controller applies them in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet `<rollout>-<hash>` from the Rollout's template.
    CreateReplicaSet {
        hash: String,
        replicas: i32,
        revision: i64,
    },
    /// Scale a ReplicaSet, and set (`Some(Some(t))`) or clear (`Some(None)`) its scale-down deadline.
    ScaleReplicaSet {
        name: String,
        replicas: i32,
        scale_down_at: Option<Option<Timestamp>>,
    },
    /// Point a Service's `rollouts-pod-template-hash` selector at `hash`.
    SwitchService { service: String, hash: String },
    /// Route `weight` percent of traffic to the canary (the stable gets the rest).
    SetWeight {
        weight: i32,
        canary_hash: String,
        stable_hash: String,
    },
    /// Create the AnalysisRun of `kind` for the revision `hash`.
    CreateAnalysisRun { kind: AnalysisKind, hash: String },
    /// Stop an AnalysisRun that is no longer needed; `retire` also sets it aside so that a
    /// retried rollout measures afresh instead of re-reading the verdict that aborted it.
    TerminateAnalysisRun { name: String, retire: bool },
    /// Evict a pod of the rollout for a restart (`spec.restartAt`); its ReplicaSet replaces it.
    EvictPod { name: String },
    /// Delete an old ReplicaSet, scaled to zero, beyond `spec.revisionHistoryLimit`.
    DeleteReplicaSet { name: String },
    /// Delete a finished AnalysisRun beyond `spec.analysis`'s run history limits.
    DeleteAnalysisRun { name: String },
    /// Bring a ReplicaSet's template and running pods to its role's metadata (`None`: no role),
    /// taking off what an earlier role put there ([`pod_metadata`]).
    SyncPodMetadata {
        name: String,
        metadata: Option<crate::api::PodMetadata>,
    },
    /// Scale the Deployment `spec.workloadRef` names (`workloadRef.scaleDown`), marking it
    /// scaled down for good in the same write when `mark_scaled_down` ([`workload`]).
    ScaleDeployment {
        name: String,
        replicas: i32,
        mark_scaled_down: bool,
        /// Recorded with the first progressive scale-down: its size before
        /// ([`workload::REPLICAS_BEFORE`]).
        record_original: Option<i32>,
    },
}

/// Normal or Warning, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// A Kubernetes Event to record once the plan's status is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Event {
            kind: EventKind::Normal,
            reason,
            message: message.into(),
        }
    }
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Event {
            kind: EventKind::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: RolloutStatus,
    pub events: Vec<Event>,
    /// Look again after this long even if nothing changes (a pause or delay deadline).
    pub requeue_after: Option<std::time::Duration>,
}

/// How soon a plan with a role metadata sync looks again.
const POD_METADATA_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest a plan asks the controller to wait before looking again: a day.
const MAX_REQUEUE_MS: u64 = 24 * 3600 * 1000;

impl Plan {
    fn requeue_at(&mut self, now: Timestamp, at: Timestamp) {
        let wait = at.duration_since(now);
        let wait = if wait <= SignedDuration::ZERO {
            std::time::Duration::from_millis(100)
        } else {
            // Round up: waking a hair early would only requeue again. A deadline further than
            // a day away (a pause of years) is looked at again daily: timers that far out
            // overflow the runtime's queue, and nothing is lost by looking early.
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            std::time::Duration::from_millis(ms.saturating_add(10).min(MAX_REQUEUE_MS))
        };
        self.requeue_after = Some(match self.requeue_after {
            Some(existing) => existing.min(wait),
            None => wait,
        });
    }
}

/// Whether the Rollout carries an abort not yet acted on: acting on it records `abortedAt`.
/// (Not the phase: a rollout Degraded for another reason — an invalid spec, a progress
/// deadline — still has the abort to act on, urgently.)
pub fn abort_pending(ro: &Rollout) -> bool {
    ro.status
        .as_ref()
        .is_some_and(|s| s.abort == Some(true) && s.aborted_at.is_none())
}

/// The canary weight to set at once for a pending abort, before the rollout's other objects
/// are even read: 0 — all traffic back to stable — when the canary routes traffic. Safe without
/// looking further because the stable ReplicaSet is never scaled down while a canary runs, so it
/// can always take all the traffic back; the full plan that follows does the rest (Services,
/// scale-down, status) and finds the weight set. With `dynamicStableScale` the stable has shrunk:
/// none — the full plan brings traffic back as the stable grows.
pub fn immediate_abort_weight(ro: &Rollout) -> Option<i32> {
    let routed = ro
        .spec
        .canary()
        .is_some_and(|c| c.traffic_routing.is_some() && !c.dynamic_stable_scale());
    // Nothing to abort once the revision is stable (a promotion already decided): the weight
    // must not bounce to the old pods and back.
    let promoted = ro
        .status
        .as_ref()
        .is_some_and(|s| s.stable_rs.is_some() && s.stable_rs == s.current_pod_hash);
    (routed && !promoted && abort_pending(ro)).then_some(0)
}

/// Decides what to do for a Rollout, by its strategy, then for a restart it asked for, then
/// which old ReplicaSets go ([`history`]) and which finished AnalysisRuns ([`run_history`]).
pub fn plan(observed: &Observed<'_>) -> Plan {
    // Pods listed for a restart are fresher than the ReplicaSets' status, which still counts a
    // pod just evicted as available: the strategy must not scale on that.
    let listed;
    let observed = match &observed.pods {
        Some(pods) => {
            listed = Observed {
                replica_sets: restart::with_pod_availability(
                    &observed.replica_sets,
                    pods,
                    observed.rollout.spec.min_ready_seconds(),
                    observed.now,
                ),
                ..observed.clone()
            };
            &listed
        }
        None => observed,
    };
    let mut plan = match observed.rollout.spec.blue_green() {
        Some(bg) => bluegreen::plan(observed, bg),
        None => canary::plan(observed),
    };
    restart::plan(observed, &mut plan);
    plan.status.workload_observed_generation = observed
        .workload
        .as_ref()
        .and_then(|w| w.generation)
        .map(|g| g.to_string());
    if let Some(w) = &observed.workload {
        // After every move of traffic and capacity: the Deployment's pods go only once the
        // Rollout's own can take their place.
        let healthy = plan.status.phase == Some(crate::api::RolloutPhase::Healthy);
        let available = plan.status.available_replicas;
        let scale = workload::scale(observed.rollout, w, healthy, available);
        let replicas = observed.rollout.spec.replicas();
        if let Some(Action::ScaleDeployment { replicas: 0, .. }) = scale
            && w.replicas > replicas
        {
            plan.events.push(Event::warning(
                crate::api::wire::reasons::SCALING_DEPLOYMENT,
                format!(
                    "Deployment {} had {} pods and the Rollout runs {replicas} (spec.replicas): capacity drops to {replicas}; raise spec.replicas if the Deployment's size was needed",
                    w.name, w.replicas
                ),
            ));
        }
        plan.actions.extend(scale);
    }
    let pruned = history::prune(observed, &plan);
    plan.actions.extend(pruned);
    let runs = run_history::prune(observed, &plan);
    plan.actions.extend(runs);
    // Last: labels never hold back a move of traffic or capacity, and a sync that fails (say,
    // a pod the API server refuses to patch) blocks nothing before it.
    let hashes = rollout_template_hashes(observed.rollout);
    let syncs = pod_metadata::sync(observed, &hashes, &plan.actions);
    if !syncs.is_empty() {
        // A sync waiting for the ReplicaSet controller (its status change wakes the Rollout
        // first, as a rule), or refused, is tried again even if nothing else changes.
        plan.requeue_after = Some(
            plan.requeue_after
                .map_or(POD_METADATA_RETRY, |d| d.min(POD_METADATA_RETRY)),
        );
    }
    plan.actions.extend(syncs);
    plan
}

/// The timestamp rounded up to a whole second (what a status `Time` can hold).
pub(crate) fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        return t;
    }
    Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
}

/// Adds seconds to a timestamp, saturating at the end of time (a user-set delay can't overflow
/// the clock, and a huge one must last, not end at once).
pub(crate) fn after(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(if secs < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
}

/// Seconds of a user-set duration as a signed count, saturating (`as i64` would wrap a huge one
/// to a negative and end the pause at once).
pub(crate) fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

//! `workloadRef`: a Rollout that rolls out the pod template of a Deployment it names.
//!
//! Two pure halves. [`resolve`] makes the Rollout the rest of the planner knows — the
//! Deployment's template (and selector, when the Rollout has none) in place of its own, checked
//! as admission checks an inline one. [`scale`] decides what becomes of the Deployment's own pods:
//! a level, not an edge — the same observation always asks for the same Deployment size.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::Action;
use crate::api::{PodMetadata, Rollout, WorkloadScaleDown};

/// The annotation Aviary puts on a Deployment, with its scale to 0, once the Rollout that names
/// it has been Healthy: the migration is over, and Aviary never sizes the Deployment again (its
/// owner may scale it back up to leave the Rollout, as Argo Rollouts documents). Its value is
/// the Rollout's name.
pub const SCALED_DOWN_FOR: &str = "aviary.dev/scaled-down-for";

/// The annotation the first progressive scale-down of a Deployment carries: its size then. The
/// Deployment is given pods back (the Rollout's were lost before it was Healthy) up to that size
/// and never beyond (an owner's 0, say, stays 0).
pub const REPLICAS_BEFORE: &str = "aviary.dev/replicas-before-migration";

/// The referenced Deployment as the planner needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedWorkload {
    pub name: String,
    /// `spec.replicas` (1 when unset, as the API server defaults it).
    pub replicas: i32,
    /// `metadata.generation`: whose template the status reflects.
    pub generation: Option<i64>,
    /// Whether it carries [`SCALED_DOWN_FOR`] naming this Rollout.
    pub scaled_down: bool,
    /// Its size before the first progressive scale-down ([`REPLICAS_BEFORE`]).
    pub original: Option<i32>,
}

/// Why a Deployment's template cannot be rolled out; each names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "spec.workloadRef: Deployment '{0}' has no pod template yet; fix the Deployment or spec.workloadRef.name"
    )]
    NoTemplate(String),
    #[error(
        "spec.selector.matchLabels must match the labels of Deployment '{deployment}''s pod template: {key}={value} is not among them; fix spec.selector (or leave it out: the Deployment's selector is used)"
    )]
    SelectorMismatch {
        deployment: String,
        key: String,
        value: String,
    },
    #[error(
        "spec.strategy's {field}.{map} may not reuse key '{key}' of Deployment '{deployment}''s pod template (metadata.{map}): the role's value would replace the template's, and taking the role off would remove it; use another key"
    )]
    RoleKeyClash {
        deployment: String,
        field: &'static str,
        map: &'static str,
        key: String,
    },
}

/// The Rollout with the Deployment's pod template in place of its own (and the Deployment's
/// selector, when the Rollout gives none), and the Deployment as observed.
pub fn resolve(
    ro: &Rollout,
    deployment: &Deployment,
) -> Result<(Rollout, ObservedWorkload), WorkloadError> {
    let rollout = ro.metadata.name.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let spec = deployment.spec.as_ref();
    let template = spec
        .map(|s| s.template.clone())
        .filter(|t| t.spec.is_some())
        .ok_or_else(|| WorkloadError::NoTemplate(name.clone()))?;
    let mut resolved = ro.clone();
    resolved.spec.template = template;
    let own = &ro.spec.selector;
    if own.match_labels.is_none() && own.match_expressions.is_none() {
        resolved.spec.selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
    }
    let empty = BTreeMap::new();
    let meta = resolved.spec.template.metadata.as_ref();
    let labels = meta.and_then(|m| m.labels.as_ref()).unwrap_or(&empty);
    let annotations = meta.and_then(|m| m.annotations.as_ref()).unwrap_or(&empty);
    for (key, value) in resolved.spec.selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(value) {
            return Err(WorkloadError::SelectorMismatch {
                deployment: name,
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    for (field, role) in roles(&resolved) {
        let maps = [
            ("labels", &role.labels, labels),
            ("annotations", &role.annotations, annotations),
        ];
        for (map, ours, template) in maps {
            if let Some(key) = ours
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .find(|k| template.contains_key(*k))
            {
                return Err(WorkloadError::RoleKeyClash {
                    deployment: name,
                    field,
                    map,
                    key: key.clone(),
                });
            }
        }
    }
    let scaled_down = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCALED_DOWN_FOR))
        .is_some_and(|v| *v == rollout);
    let marked_by_anyone = deployment
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(SCALED_DOWN_FOR));
    let original = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REPLICAS_BEFORE))
        .and_then(|v| v.trim().parse::<i32>().ok())
        // A size is never negative (a hand edit); and after another Rollout's migration ended
        // (its mark) the record is that migration's, not this one's.
        .filter(|n| *n >= 0)
        .filter(|_| !marked_by_anyone);
    let observed = ObservedWorkload {
        name,
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        generation: deployment.metadata.generation,
        scaled_down,
        original,
    };
    Ok((resolved, observed))
}

/// The strategy's role metadata, each with the field that declares it.
fn roles(ro: &Rollout) -> Vec<(&'static str, &PodMetadata)> {
    let s = &ro.spec.strategy;
    let canary = s.canary.as_ref();
    let bg = s.blue_green.as_ref();
    [
        (
            "canary.canaryMetadata",
            canary.and_then(|c| c.canary_metadata.as_ref()),
        ),
        (
            "canary.stableMetadata",
            canary.and_then(|c| c.stable_metadata.as_ref()),
        ),
        (
            "blueGreen.previewMetadata",
            bg.and_then(|b| b.preview_metadata.as_ref()),
        ),
        (
            "blueGreen.activeMetadata",
            bg.and_then(|b| b.active_metadata.as_ref()),
        ),
    ]
    .into_iter()
    .filter_map(|(f, m)| m.map(|m| (f, m)))
    .collect()
}

/// What the Deployment should hold now, as an action, or `None` when it holds it (or is not
/// ours to size).
///
/// - `never` (the default): never touched.
/// - `onsuccess`: scaled to 0, and marked ([`SCALED_DOWN_FOR`]), once the Rollout is Healthy —
///   its own revision fully available behind its Services —, whichever revision that is (Argo
///   does it for revision 1 only, so a first revision that failed and was fixed by a second
///   never ends the Deployment).
/// - `progressively`: the same once Healthy; until then the Deployment keeps the pods the
///   Rollout still lacks — `replicas − available` —, never more than it had when the migration
///   began ([`REPLICAS_BEFORE`], recorded with the first scale-down: pods are given back if the
///   Rollout's are lost, as in Argo, but an owner's 0 stays 0), and nothing happens before the
///   Rollout has a pod available. Only with `spec.replicas` set, as in Argo (without it the
///   Rollout's size says nothing of the Deployment's): otherwise as `onsuccess`.
///
/// Once marked, the migration is over and the Deployment is its owner's again: never scaled
/// by Aviary after that (Argo's way back to a Deployment — scale it up, then the Rollout down —
/// works, and a later update's pods never run from the Deployment).
pub fn scale(
    ro: &Rollout,
    workload: &ObservedWorkload,
    healthy: bool,
    available: i32,
) -> Option<Action> {
    let mode = ro
        .spec
        .workload_ref
        .as_ref()
        .and_then(|w| w.scale_down)
        .unwrap_or_default();
    if mode == WorkloadScaleDown::Never || workload.scaled_down {
        return None;
    }
    let (want, mark) = match (mode, ro.spec.replicas) {
        _ if healthy => (0, true),
        (WorkloadScaleDown::Progressively, Some(replicas))
            if available > 0 || workload.original.is_some() =>
        {
            let cap = workload.original.unwrap_or(workload.replicas);
            ((replicas - available.max(0)).clamp(0, cap), false)
        }
        _ => return None,
    };
    if workload.replicas == want && !mark {
        return None;
    }
    Some(Action::ScaleDeployment {
        name: workload.name.clone(),
        replicas: want,
        mark_scaled_down: mark,
        record_original: (!mark && workload.original.is_none()).then_some(workload.replicas),
    })
}

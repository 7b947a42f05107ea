//! `antiAffinity`: the pod anti-affinity term Argo Rollouts injects into a new revision's
//! ReplicaSet so its pods keep off the nodes of the stable revision's, and its inverse (the
//! plugin's `undo` rebuilds a revision's template from its ReplicaSet, without the term, so that
//! it hashes to that revision again).

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::api::{POD_TEMPLATE_HASH_LABEL, Rollout};

const TOPOLOGY: &str = "kubernetes.io/hostname";

/// The term: not on a node that runs a pod of revision `stable` (Argo's
/// `CreateInjectedAntiAffinityRule`).
fn term(namespace: Option<String>, stable: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.into(),
                operator: "In".into(),
                values: Some(vec![stable.into()]),
            }]),
            ..Default::default()
        }),
        namespaces: namespace.map(|n| vec![n]),
        topology_key: TOPOLOGY.into(),
        ..Default::default()
    }
}

/// Whether `t` is a term of ours (Argo's shape).
fn injected(t: &PodAffinityTerm) -> bool {
    t.topology_key == TOPOLOGY
        && t.label_selector
            .as_ref()
            .and_then(|s| s.match_expressions.as_ref())
            .is_some_and(|m| {
                m.len() == 1
                    && m[0].key == POD_TEMPLATE_HASH_LABEL
                    && m[0].operator == "In"
                    && m[0].values.as_ref().is_some_and(|v| v.len() == 1)
            })
}

/// Adds the term for a revision `hash` created while another is stable, beside the template's
/// own affinity. Decided when the ReplicaSet is created, from the persisted status, as Argo
/// does; nothing for the first revision or the stable itself.
pub fn inject(ro: &Rollout, hash: &str, template: &mut PodTemplateSpec) {
    let Some(anti) = ro.spec.anti_affinity() else {
        return;
    };
    let Some(stable) = ro.status.as_ref().and_then(|s| s.stable_rs.as_deref()) else {
        return;
    };
    if stable == hash {
        return;
    }
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let term = term(ro.metadata.namespace.clone(), stable);
    let pod_anti = spec
        .affinity
        .get_or_insert_with(Default::default)
        .pod_anti_affinity
        .get_or_insert_with(Default::default);
    match &anti.preferred_during_scheduling_ignored_during_execution {
        Some(preferred) => pod_anti
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            }),
        None => pod_anti
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term),
    }
}

/// `template` without the injected term (the last one of Argo's shape, as [`inject`] appends
/// it), emptied containers removed; None when it has none.
pub fn without_injected(template: &PodTemplateSpec) -> Option<PodTemplateSpec> {
    let mut t = template.clone();
    let spec = t.spec.as_mut()?;
    let anti: &mut PodAntiAffinity = spec.affinity.as_mut()?.pod_anti_affinity.as_mut()?;
    let mut found = false;
    if let Some(req) = anti
        .required_during_scheduling_ignored_during_execution
        .as_mut()
        && let Some(i) = req.iter().rposition(injected)
    {
        req.remove(i);
        found = true;
    } else if let Some(pref) = anti
        .preferred_during_scheduling_ignored_during_execution
        .as_mut()
        && let Some(i) = pref.iter().rposition(|w| injected(&w.pod_affinity_term))
    {
        pref.remove(i);
        found = true;
    }
    if !found {
        return None;
    }
    if anti
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        anti.required_during_scheduling_ignored_during_execution = None;
    }
    if anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        anti.preferred_during_scheduling_ignored_during_execution = None;
    }
    let empty_anti = anti
        .required_during_scheduling_ignored_during_execution
        .is_none()
        && anti
            .preferred_during_scheduling_ignored_during_execution
            .is_none();
    if let Some(affinity) = spec.affinity.as_mut() {
        if empty_anti {
            affinity.pod_anti_affinity = None;
        }
        if *affinity == Affinity::default() {
            spec.affinity = None;
        }
    }
    Some(t)
}

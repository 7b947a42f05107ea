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

/// `template` without the injected term, as candidates for the template the Rollout had: the
/// last term of Argo's shape removed from the required list, or from the preferred one, each
/// with the containers it leaves empty removed and, should the user have written them empty,
/// kept. Empty when it has no such term.
pub fn without_injected(template: &PodTemplateSpec) -> Vec<PodTemplateSpec> {
    let mut out = vec![];
    for required in [true, false] {
        let mut t = template.clone();
        let Some(anti) = t
            .spec
            .as_mut()
            .and_then(|s| s.affinity.as_mut())
            .and_then(|a| a.pod_anti_affinity.as_mut())
        else {
            return out;
        };
        let removed = if required {
            anti.required_during_scheduling_ignored_during_execution
                .as_mut()
                .and_then(|v| v.iter().rposition(injected).map(|i| v.remove(i)))
                .is_some()
        } else {
            anti.preferred_during_scheduling_ignored_during_execution
                .as_mut()
                .and_then(|v| {
                    v.iter()
                        .rposition(|w| injected(&w.pod_affinity_term))
                        .map(|i| v.remove(i))
                })
                .is_some()
        };
        if !removed {
            continue;
        }
        // The user may have written any of these empty: from all removed to none.
        for level in (0..=3).rev() {
            out.push(tidy(t.clone(), level));
        }
    }
    out.dedup();
    out
}

/// Removes what the removal left empty, up to `level`: 1 the lists, 2 the pod anti-affinity
/// too, 3 the affinity too.
fn tidy(mut t: PodTemplateSpec, level: u8) -> PodTemplateSpec {
    let Some(spec) = t.spec.as_mut() else {
        return t;
    };
    if level == 0 {
        return t;
    }
    if let Some(affinity) = spec.affinity.as_mut() {
        if let Some(anti) = affinity.pod_anti_affinity.as_mut() {
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
            if level >= 2 && *anti == PodAntiAffinity::default() {
                affinity.pod_anti_affinity = None;
            }
        }
        if level >= 3 && *affinity == Affinity::default() {
            spec.affinity = None;
        }
    }
    t
}

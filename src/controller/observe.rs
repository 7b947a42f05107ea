//! Observe: read what the planner needs — the Rollout fresh from the API server, its
//! ReplicaSets from the label-filtered cache, its Services from the Service cache (read from the
//! API server on a miss), and the current routing weight from the routing objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::{Resource, ResourceExt};

use tracing::debug;

use super::Context;
use super::error::Error;
use super::freshness::Take;
use super::service_cache::{CachedService, WatchedService};
use crate::api::{AnalysisRun, Rollout};
use crate::plan::{
    self, ObservedPod, ObservedReplicaSet, ObservedService, POD_TEMPLATE_HASH_LABEL,
};
use crate::traffic::{Routing, RoutingSnapshot};

/// The ReplicaSets the Rollout controls, from the cache.
pub fn owned_replica_sets(ctx: &Context, ro: &Rollout) -> Vec<ObservedReplicaSet> {
    let uid = ro.meta().uid.clone().unwrap_or_default();
    // Ordered by name by the cache.
    ctx.view
        .replica_sets
        .owned(&uid)
        .into_iter()
        .map(|c| c.observed)
        .collect()
}

/// With `spec.workloadRef`: the Rollout with the Deployment's pod template in place of its own
/// ([`plan::workload::resolve`]), and the Deployment as observed; `None` without one. Read from
/// the API server on every reconcile of such a Rollout (one small GET): no cache of every
/// Deployment in the cluster for a migration path. A Deployment that is missing or unusable is
/// the user's to fix (InvalidSpec): nothing is planned without the template.
pub async fn workload(
    ctx: &Context,
    ro: &Rollout,
) -> Result<Option<(Rollout, plan::workload::ObservedWorkload)>, Error> {
    let Some(reference) = &ro.spec.workload_ref else {
        return Ok(None);
    };
    let ns = ro.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client().clone(), &ns);
    let Some(deployment) = api.get_opt(&reference.name).await? else {
        return Err(Error::InvalidSpec(format!(
            "spec.workloadRef.name: Deployment '{}' not found in namespace '{ns}'; create it or fix spec.workloadRef.name",
            reference.name
        )));
    };
    plan::workload::resolve(ro, &deployment)
        .map(Some)
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// Pods listed per request while looking for a restart's pods: bounds what one response holds.
pub(super) const POD_PAGE: u32 = 250;

/// The pods of the Rollout's ReplicaSets, listed by the Rollout's selector, page by page, each
/// trimmed at once to what a restart needs. Only called while a restart is due: the controller
/// keeps no pod cache.
pub async fn rollout_pods(
    ctx: &Context,
    ro: &Rollout,
    replica_sets: &[ObservedReplicaSet],
) -> Result<Vec<ObservedPod>, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let selector = Selector::try_from(ro.spec.selector.clone())
        .map_err(|e| Error::InvalidSpec(format!("spec.selector can't select pods: {e}")))?;
    let api: Api<Pod> = Api::namespaced(ctx.client().clone(), &ns);
    let mut params = ListParams::default().labels_from(&selector).limit(POD_PAGE);
    let mut out = vec![];
    loop {
        let page = api.list(&params).await?;
        out.extend(
            page.items
                .iter()
                .filter_map(|p| observe_pod(p, replica_sets)),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A pod as a restart sees it, when one of `replica_sets` controls it.
pub fn observe_pod(pod: &Pod, replica_sets: &[ObservedReplicaSet]) -> Option<ObservedPod> {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "ReplicaSet" && o.controller == Some(true))?;
    replica_sets.iter().find(|rs| rs.name == owner.name)?;
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        // Ready without a transition time: ready for as long as we can tell.
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        });
    Some(ObservedPod {
        name: pod.name_any(),
        replica_set: owner.name.clone(),
        // The API server always sets it; without it the pod counts as old, so it is restarted.
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        ready_since,
    })
}

/// The Services the Rollout's strategy names, each with the spec field that names it.
pub fn service_refs(ro: &Rollout) -> Vec<(&str, &'static str)> {
    let mut refs = vec![];
    if let Some(c) = ro.spec.canary() {
        refs.extend(
            c.canary_service
                .as_deref()
                .map(|n| (n, "strategy.canary.canaryService")),
        );
        refs.extend(
            c.stable_service
                .as_deref()
                .map(|n| (n, "strategy.canary.stableService")),
        );
    }
    if let Some(bg) = ro.spec.blue_green() {
        refs.push((
            bg.active_service.as_str(),
            "strategy.blueGreen.activeService",
        ));
        refs.extend(
            bg.preview_service
                .as_deref()
                .map(|n| (n, "strategy.blueGreen.previewService")),
        );
    }
    refs
}

/// The Services the strategy names, with the hash each selects; an error naming any that is
/// missing or can't be pointed at the Rollout's pods.
pub async fn observe_services(ctx: &Context, ro: &Rollout) -> Result<Vec<ObservedService>, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let api: Api<WatchedService> = Api::namespaced(ctx.client().clone(), &ns);
    let labels = ro
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let refs = service_refs(ro);
    let found =
        futures::future::try_join_all(refs.iter().map(|(name, _)| service(ctx, &api, &ns, name)))
            .await?;
    let mut out = vec![];
    for ((name, field), svc) in refs.into_iter().zip(found) {
        let svc = svc.ok_or_else(|| {
            Error::InvalidSpec(format!(
                "Service '{name}' ({field}) not found in namespace '{ns}': create it, or fix {field}"
            ))
        })?;
        if let Some(problem) = service_problem(name, &svc, &ro.name_any(), &labels, field) {
            return Err(Error::InvalidSpec(problem));
        }
        out.push(ObservedService {
            name: name.to_string(),
            hash: svc.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string),
        });
    }
    Ok(out)
}

/// A Service from the cache ([`super::service_cache`]), or read from the API server when the
/// cache has none: one created a moment ago may not have reached the cache yet, and only the
/// API server can say it does not exist. Our own selector writes are read back by the view's
/// one rule ([`super::freshness::ReadYourWrites`]): while the cache shows the version it showed
/// at our last write, what that write returned stands in for it, so the planner never plans
/// the same switch twice; a cache at any other version that is not our write's is read fresh.
pub async fn service(
    ctx: &Context,
    api: &Api<WatchedService>,
    ns: &str,
    name: &str,
) -> Result<Option<CachedService>, kube::Error> {
    let Some(cached) = ctx.view.services.get(ns, name) else {
        return Ok(api.get_opt(name).await?.as_ref().map(CachedService::from));
    };
    let key = format!("{ns}/{name}");
    let cached_rv = cached.resource_version.as_deref().map(str::to_string);
    match ctx.view.service_writes.take(&key, cached_rv.as_deref()) {
        Take::Cache => Ok(Some(cached)),
        Take::StandIn(written) => Ok(Some(written)),
        Take::Fresh => {
            debug!(target: "aviary::reads", service = %key, "reading the Service fresh: the cache is behind");
            let fresh = api.get_opt(name).await?.as_ref().map(CachedService::from);
            let fresh_rv = fresh
                .as_ref()
                .and_then(|f| f.resource_version.as_deref().map(str::to_string));
            ctx.view
                .service_writes
                .learnt(&key, cached_rv.as_deref(), fresh_rv, fresh.clone());
            Ok(fresh)
        }
    }
}

/// Why a Service can't be pointed at the Rollout's pods by adding `rollouts-pod-template-hash`
/// to its selector, if it can't: it has no selector (its endpoints are managed by hand), its
/// other selector labels are not all on the pod template (it would select foreign pods, or
/// none), or another Rollout manages it.
pub fn service_problem(
    name: &str,
    svc: &CachedService,
    rollout: &str,
    template_labels: &BTreeMap<String, String>,
    field: &str,
) -> Option<String> {
    if let Some(owner) = svc.managed_by_other(rollout) {
        return Some(format!(
            "Service '{name}' ({field}) is managed by Rollout '{owner}': each Rollout needs its own Services"
        ));
    }
    let own: Vec<(&str, &str)> = svc
        .selector
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .filter(|(k, _)| *k != POD_TEMPLATE_HASH_LABEL)
        .collect();
    if own.is_empty() {
        return Some(format!(
            "Service '{name}' ({field}) has no selector of its own: give it one matching spec.template's labels, and Aviary adds {POD_TEMPLATE_HASH_LABEL} to it"
        ));
    }
    let foreign: Vec<String> = own
        .iter()
        .filter(|(k, v)| template_labels.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!foreign.is_empty()).then(|| {
        format!(
            "Service '{name}' ({field}) selects pods this Rollout does not create: {} not among spec.template's labels; fix its selector (Aviary only adds {POD_TEMPLATE_HASH_LABEL})",
            foreign.join(", ")
        )
    })
}

/// The routing as observed: the weight all routers agree on, the DestinationRule subsets'
/// hashes (subset split), and each router's snapshot, which act writes from.
pub struct ObservedRouting {
    /// The canary weight the routing objects show: `None` when there are none, when one can't
    /// tell, or when they disagree (one was edited by hand) — the planner then writes them all.
    pub weight: Option<i32>,
    pub subsets: Option<crate::plan::SubsetHashes>,
    /// One per router of [`Routing::routers`], in order.
    pub snapshots: Vec<RoutingSnapshot>,
}

/// Reads every routing object: the view's copy when it has one that shows what we last saw
/// ([`super::routing_cache::RoutingCache::copy`]), a GET otherwise.
///
/// Every router is read, even once the answer is known to be `None`: a guarded write in this
/// reconcile `test`s the snapshot observe took, so a router left unread would read at write
/// time — possibly after an abort landed — and a weight planned before the abort would pass.
///
/// The DestinationRule subsets' hashes are read too (subset mode): the planner converges them on
/// every reconcile, not only with a weight change.
pub async fn observe_routing(ctx: &Context, routing: &Routing) -> Result<ObservedRouting, Error> {
    let mut snapshots = Vec::with_capacity(routing.routers.len());
    let mut weights = Vec::with_capacity(routing.routers.len());
    for router in &routing.routers {
        let object = router.object(&routing.target);
        let snapshot = match ctx.view.routing.copy(&object) {
            Some(copy) => copy,
            None => {
                let read = router.read(ctx.client(), &routing.target).await?;
                ctx.view.routing.saw(&read);
                read
            }
        };
        // Judged at once: an object that cannot carry the split stops observe here.
        weights.push(router.weight_in(&snapshot, &routing.target)?);
        snapshots.push(snapshot);
    }
    let subsets = match &routing.subsets {
        Some(subsets) => {
            let s = subsets.read(ctx.client(), &routing.target).await?;
            Some(crate::plan::SubsetHashes {
                canary: s.canary,
                stable: s.stable,
            })
        }
        None => None,
    };
    Ok(ObservedRouting {
        weight: agreed_weight(&weights),
        subsets,
        snapshots,
    })
}

/// The one weight all routers show; `None` if any can't tell or two disagree (or none exist).
fn agreed_weight(weights: &[Option<i32>]) -> Option<i32> {
    let first = *weights.first()?;
    weights
        .iter()
        .all(|w| *w == first)
        .then_some(first)
        .flatten()
}

/// The Rollout's AnalysisRuns, oldest first: those that still count (retired ones are left out),
/// and every one as the run history limits count it.
pub fn owned_analysis_runs(
    ctx: &Context,
    ro: &Rollout,
) -> (
    Vec<crate::plan::ObservedAnalysisRun>,
    Vec<crate::plan::AnalysisRunRecord>,
) {
    let uid = ro.meta().uid.clone().unwrap_or_default();
    let mut runs = ctx
        .view
        .analysis_run_owners
        .owned(&ctx.view.analysis_runs, &uid);
    runs.sort_by(|a, b| {
        let key = |r: &AnalysisRun| {
            (
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.name_any(),
            )
        };
        key(a).cmp(&key(b))
    });
    let counted = runs
        .iter()
        .filter(|r| !ctx.view.retired_runs.retired(r))
        .filter_map(|r| super::analysis_runs::observe_run(r))
        .collect();
    // One already being deleted is on its way out: neither counted nor deleted again.
    let history = runs
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .map(|r| super::analysis_runs::record_of(r))
        .collect();
    (counted, history)
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;

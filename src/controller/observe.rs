//! Observe: read what the planner needs — the Rollout fresh from the API server, its
//! ReplicaSets from the label-filtered cache, its Services and the current routing weight.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::Error;
use super::labels::{REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION, SCALED_AT_ANNOTATION};
use crate::api::Rollout;
use crate::plan::{ObservedReplicaSet, ObservedService, POD_TEMPLATE_HASH_LABEL};
use crate::traffic::{RouteTarget, TrafficRouter};

/// A ReplicaSet as the planner sees it.
pub fn observe_replica_set(rs: &ReplicaSet) -> Option<ObservedReplicaSet> {
    let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = rs.status.as_ref();
    let annotations = rs.annotations();
    Some(ObservedReplicaSet {
        name: rs.name_any(),
        hash,
        replicas,
        available: status
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            .min(replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        current: status.map(|s| s.replicas).unwrap_or(0),
        revision: annotations
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok()),
        scale_down_at: annotations
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
        scaled_at: annotations
            .get(SCALED_AT_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
    })
}

/// The ReplicaSets the Rollout controls, from the cache.
pub fn owned_replica_sets(ctx: &Context, ro: &Rollout) -> Vec<ObservedReplicaSet> {
    let uid = ro.meta().uid.clone().unwrap_or_default();
    let ns = ro.namespace().unwrap_or_default();
    let mut out: Vec<ObservedReplicaSet> = ctx
        .replica_sets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .filter_map(|rs| observe_replica_set(rs))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The hash a Service's selector points at, or an error naming the missing Service.
pub async fn observe_service(
    ctx: &Context,
    ns: &str,
    name: Option<&str>,
    role: &str,
) -> Result<Option<ObservedService>, Error> {
    let Some(name) = name else { return Ok(None) };
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let svc = api.get_opt(name).await?.ok_or_else(|| {
        Error::InvalidSpec(format!(
            "{role} Service '{name}' not found in namespace '{ns}': create it, or fix strategy.canary.{}",
            if role == "canary" { "canaryService" } else { "stableService" }
        ))
    })?;
    let hash = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned());
    Ok(Some(ObservedService {
        name: name.to_string(),
        hash,
    }))
}

/// The canary weight the routing objects show: `None` when there are none, when one can't tell,
/// or when they disagree (one was edited by hand) — the planner then writes them all.
pub async fn observe_weight(
    ctx: &Context,
    routers: &[Box<dyn TrafficRouter>],
    target: &RouteTarget,
) -> Result<Option<i32>, Error> {
    let mut seen: Option<i32> = None;
    for (i, router) in routers.iter().enumerate() {
        let w = router.current_weight(&ctx.client, target).await?;
        match (i, w) {
            (_, None) => return Ok(None),
            (0, w) => seen = w,
            (_, w) if w != seen => return Ok(None),
            _ => {}
        }
    }
    Ok(seen)
}

/// The Rollout's AnalysisRuns that still count (retired ones are left out), oldest first.
pub fn owned_analysis_runs(ctx: &Context, ro: &Rollout) -> Vec<crate::plan::ObservedAnalysisRun> {
    let uid = ro.meta().uid.clone().unwrap_or_default();
    let mut runs: Vec<_> = ctx
        .analysis_runs
        .state()
        .iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .map(|r| {
            (
                r.metadata.creation_timestamp.clone(),
                r.name_any(),
                super::analysis_runs::observe_run(r),
            )
        })
        .collect();
    runs.sort_by(|a, b| (a.0.as_ref().map(|t| t.0), &a.1).cmp(&(b.0.as_ref().map(|t| t.0), &b.1)));
    runs.into_iter().filter_map(|(_, _, r)| r).collect()
}

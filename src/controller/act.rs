//! Act: apply the planner's actions, in order, each idempotent. Objects Aviary owns
//! (ReplicaSets) are created whole and patched by field; objects users own (Services, routing
//! objects) get minimal patches of the fields Aviary manages and nothing else.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::error::Error;
use super::replica_set_cache::WatchedReplicaSet;
use super::run_specs::PreparedRuns;
use super::service_cache::{CachedService, WatchedService};
use crate::api::Rollout;
use crate::api::wire::{
    self, FIELD_MANAGER, MANAGED_BY_ANNOTATION, REVISION_ANNOTATION, ROLLOUT_LABEL,
    SCALE_DOWN_DEADLINE_ANNOTATION, SCALED_AT_ANNOTATION, reasons,
};
use crate::plan::{
    Action, Event, ObservedReplicaSet, POD_TEMPLATE_HASH_LABEL, replica_set_name,
    rollout_template_hashes,
};
use crate::traffic::{
    RouteTarget, Routing, RoutingSnapshot, TrafficError, TrafficRouter, WeightChange, prepared,
};

fn owner_reference(ro: &Rollout) -> Option<OwnerReference> {
    ro.controller_owner_ref(&())
}

/// The ReplicaSet of a revision, built from the Rollout's template.
pub fn build_replica_set(ro: &Rollout, hash: &str, replicas: i32, revision: i64) -> ReplicaSet {
    let name = ro.name_any();
    let mut template = ro.spec.template.clone();
    crate::plan::anti_affinity::inject(ro, hash, &mut template);
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut selector = ro.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(ROLLOUT_LABEL.into(), name.clone());
    // Its pods start with their role's metadata (after the ReplicaSet's own labels are taken:
    // the role's are the pods' only).
    let role = crate::plan::pod_metadata::at_creation(ro, hash);
    if let (Some(md), Some(meta)) = (role, template.metadata.as_mut()) {
        let protected = crate::plan::pod_metadata::protected_keys(selector.match_labels.as_ref());
        crate::plan::pod_metadata::apply(meta, md, &protected);
    }
    let mut rs = ReplicaSet::default();
    rs.metadata.name = Some(replica_set_name(&name, hash));
    rs.metadata.namespace = ro.namespace();
    rs.metadata.labels = Some(labels);
    let mut annotations = BTreeMap::from([
        (REVISION_ANNOTATION.to_string(), revision.to_string()),
        (
            SCALED_AT_ANNOTATION.to_string(),
            k8s_openapi::jiff::Timestamp::now().to_string(),
        ),
    ]);
    if let Some(recorded) = role.and_then(|md| serde_json::to_string(md).ok()) {
        annotations.insert(wire::POD_METADATA_ANNOTATION.to_string(), recorded);
    }
    rs.metadata.annotations = Some(annotations);
    rs.metadata.owner_references = owner_reference(ro).map(|o| vec![o]);
    rs.spec = Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
        replicas: Some(replicas),
        min_ready_seconds: ro.spec.min_ready_seconds,
        selector,
        template: Some(template),
    });
    rs
}

/// The Rollout to build a revision's ReplicaSet from: `ro` itself, or, when it was planned from
/// the cache (which keeps no pod spec: [`super::watches::trim_rollout`]), the Rollout read fresh — as
/// long as its template is still the one planned for.
async fn with_template<'r>(
    ctx: &Context,
    ro: &'r Rollout,
    hash: &str,
) -> Result<std::borrow::Cow<'r, Rollout>, Error> {
    if ro.spec.template.spec.is_some() {
        return Ok(std::borrow::Cow::Borrowed(ro));
    }
    let api: Api<Rollout> =
        Api::namespaced(ctx.client().clone(), &ro.namespace().unwrap_or_default());
    let fresh = api.get(&ro.name_any()).await?;
    let now = rollout_template_hashes(&fresh);
    if !now.names(hash) {
        return Err(Error::Replan(format!(
            "the pod template changed while ReplicaSet {} was planned (its hash is now {})",
            replica_set_name(&ro.name_any(), hash),
            now.current
        )));
    }
    Ok(std::borrow::Cow::Owned(fresh))
}

/// Applies the actions in order and returns the Events they produced. Stops at the first error:
/// the next reconcile re-plans from what is then observed. `replica_sets` are the ReplicaSets
/// the plan was made from (their revisions name the AnalysisRuns).
pub async fn apply(
    ctx: &Context,
    ro: &Rollout,
    actions: &[Action],
    replica_sets: &[ObservedReplicaSet],
    runs: &PreparedRuns,
    routing: &Routing,
    snapshots: Vec<RoutingSnapshot>,
) -> Result<Vec<Event>, Error> {
    // Each router writes from the snapshot observe took, then from what its last write left.
    // A router without one (none given) reads at its first write.
    let mut snapshots: Vec<Option<RoutingSnapshot>> = snapshots.into_iter().map(Some).collect();
    snapshots.resize_with(routing.routers.len(), || None);
    let ns = ro.namespace().unwrap_or_default();
    let name = ro.name_any();
    let rollout_key = format!("{ns}/{name}");
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client().clone(), &ns);
    let scale_api: Api<WatchedReplicaSet> = Api::namespaced(ctx.client().clone(), &ns);
    let mut events = Vec::new();
    // The revision of each hash, for the names of the AnalysisRuns created: as observed, then
    // of the ReplicaSets these actions create (a run may be asked for beside its ReplicaSet).
    let mut revisions: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for rs in replica_sets {
        revisions.entry(rs.hash.as_str()).or_insert(rs.revision);
    }
    for action in actions {
        match action {
            Action::CreateReplicaSet {
                hash,
                replicas,
                revision,
            } => {
                let full = with_template(ctx, ro, hash).await?;
                let rs = build_replica_set(&full, hash, *replicas, *revision);
                match rs_api
                    .create(
                        &PostParams {
                            field_manager: Some(FIELD_MANAGER.into()),
                            ..Default::default()
                        },
                        &rs,
                    )
                    .await
                {
                    Ok(created) => {
                        // Seen by the next reconcile even before the watch delivers it.
                        if let Ok(watched) = serde_json::to_value(&created)
                            .and_then(serde_json::from_value::<WatchedReplicaSet>)
                        {
                            ctx.view.replica_sets.record_create(&watched);
                        }
                        revisions.insert(hash.as_str(), Some(*revision));
                        info!(rollout = %name, replica_set = %rs.name_any(), replicas, "created ReplicaSet");
                        events.push(Event::normal(
                            reasons::NEW_REPLICA_SET_CREATED,
                            format!("Created ReplicaSet {} (revision {revision}) with {replicas} replicas", rs.name_any()),
                        ));
                    }
                    // The API server refuses what the template makes (a quantity, a name, an
                    // admission webhook): the user must fix the template, so it is reported
                    // (InvalidSpec, quoting the server) and not retried in a loop.
                    Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => {
                        let source = match &ro.spec.workload_ref {
                            Some(w) => format!("Deployment '{}''s pod template", w.name),
                            None => "spec.template".to_string(),
                        };
                        return Err(Error::InvalidSpec(format!(
                            "the API server refused ReplicaSet '{}' made from {source}: {}; fix {source}",
                            rs.name_any(),
                            e.message
                        )));
                    }
                    // The cache had not seen our own earlier create: it exists, which is what we want,
                    // as long as it is ours.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let existing = rs_api.get(&rs.name_any()).await?;
                        let ours = existing.owner_references().iter().any(|o| {
                            Some(&o.uid) == ro.meta().uid.as_ref() && o.controller == Some(true)
                        });
                        if !ours {
                            return Err(Error::InvalidSpec(format!(
                                "ReplicaSet '{}' exists and is not controlled by this Rollout: delete or rename it",
                                rs.name_any()
                            )));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::ScaleReplicaSet {
                name: rs_name,
                replicas,
                scale_down_at,
            } => {
                let mut patch = json!({
                    "spec": {"replicas": replicas},
                    "metadata": {"annotations": {SCALED_AT_ANNOTATION: k8s_openapi::jiff::Timestamp::now().to_string()}},
                });
                if let Some(at) = scale_down_at {
                    let value = at
                        .map(|t| json!(t.to_string()))
                        .unwrap_or(serde_json::Value::Null);
                    patch["metadata"]["annotations"][SCALE_DOWN_DEADLINE_ANNOTATION] = value;
                }
                // Decoded as the watch decodes it (no pod template), and recorded so that the
                // next reconcile plans from this write even before the watch delivers it.
                let written = scale_api
                    .patch(rs_name, &wire::patch_params(), &Patch::Merge(&patch))
                    .await?;
                if let Some(uid) = ro.meta().uid.as_deref() {
                    ctx.view.replica_sets.record_write(uid, rs_name, &written);
                }
                info!(rollout = %name, replica_set = %rs_name, replicas, "scaled ReplicaSet");
                if scale_down_at.is_none() || matches!(scale_down_at, Some(None)) {
                    events.push(Event::normal(
                        reasons::SCALING_REPLICA_SET,
                        format!("Scaled ReplicaSet {rs_name} to {replicas}"),
                    ));
                }
            }
            Action::SwitchService { service, hash } => {
                events.extend(switch_service(ctx, &ns, &name, service, hash).await?);
            }
            Action::SetWeight {
                weight,
                canary_hash,
                stable_hash,
            } => {
                let target = RouteTarget {
                    canary_hash: Some(canary_hash.clone()),
                    stable_hash: Some(stable_hash.clone()),
                    ..routing.target.clone()
                };
                // The subsets first: a weight never reaches a subset that still selects the
                // previous pods.
                if let Some(subsets) = &routing.subsets {
                    subsets.converge(ctx.client(), &target).await?;
                }
                for (router, snapshot) in routing.routers.iter().zip(snapshots.iter_mut()) {
                    let written = set_weight(
                        ctx,
                        ctx.client(),
                        &rollout_key,
                        router.as_ref(),
                        &target,
                        snapshot,
                        *weight,
                    )
                    .await?;
                    if let (WeightChange::Updated { from, to }, Some(after)) =
                        (written, snapshot.as_ref())
                    {
                        ctx.view.routing.own_write(after);
                        info!(rollout = %name, router = router.kind(), from = ?from, to, "traffic weight updated");
                        let object = router.object(&target);
                        events.push(weight_event(from, to, &object.to_string()));
                        if let Some(e) = drift_corrected(
                            ctx,
                            &rollout_key,
                            super::drift::object_key(&object),
                            from.map(|w| w.to_string()).as_deref(),
                            &to.to_string(),
                            &object.to_string(),
                            &format!("its canary weight is set back to {to}"),
                        ) {
                            events.push(e);
                        }
                    }
                }
            }
            Action::CreateAnalysisRun { kind, hash } => {
                // Built before the plan's first write (`converge::prepare_runs`); a run the
                // Rollout configures no analysis for is not created.
                if let Some(spec) = runs.get(*kind, hash) {
                    let revision = revisions.get(hash.as_str()).copied().flatten();
                    events.extend(
                        super::analysis_runs::create(
                            ctx,
                            ro,
                            *kind,
                            hash,
                            revision.unwrap_or(0),
                            spec,
                        )
                        .await?,
                    );
                }
            }
            Action::TerminateAnalysisRun { name: run, retire } => {
                super::analysis_runs::terminate(ctx, &ns, run, *retire).await?;
            }
            Action::DeleteAnalysisRun { name: run } => {
                if let Err(e) = super::analysis_runs::delete(ctx, &ns, run).await {
                    events.push(cleanup_failed(&name, "AnalysisRun", run, &e));
                }
            }
            Action::EvictPod { name: pod } => evict_pod(ctx, &ns, &name, pod).await?,
            Action::ScaleDeployment {
                name: deployment,
                replicas,
                mark_scaled_down,
                record_original,
            } => {
                let mut patch = json!({"spec": {"replicas": replicas}});
                if *mark_scaled_down {
                    patch["metadata"]["annotations"][crate::plan::workload::SCALED_DOWN_FOR] =
                        json!(name);
                    // The migration is over: its record goes with it.
                    patch["metadata"]["annotations"][crate::plan::workload::REPLICAS_BEFORE] =
                        serde_json::Value::Null;
                }
                if let Some(original) = record_original {
                    patch["metadata"]["annotations"][crate::plan::workload::REPLICAS_BEFORE] =
                        json!(original.to_string());
                }
                let api: Api<Deployment> = Api::namespaced(ctx.client().clone(), &ns);
                api.patch(deployment, &wire::patch_params(), &Patch::Merge(&patch))
                    .await?;
                info!(rollout = %name, deployment, replicas, "scaled the referenced Deployment");
                let why = if *mark_scaled_down {
                    "the Rollout is Healthy"
                } else {
                    "it keeps the pods the Rollout still lacks"
                };
                events.push(Event::normal(
                    reasons::SCALING_DEPLOYMENT,
                    format!("Scaled Deployment {deployment} to {replicas} (workloadRef.scaleDown): {why}"),
                ));
            }
            Action::SyncPodMetadata {
                name: rs_name,
                metadata,
            } => {
                // Labels never hold back the rest: a sync the API server refuses (RBAC, an
                // admission policy on pods) is a Warning, the status is still written, and the
                // next reconcile tries again (the record stays pending).
                match super::pod_metadata::sync(ctx, ro, rs_name, metadata.as_ref()).await {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(rollout = %name, replica_set = %rs_name, error = %e, "role metadata sync failed");
                        events.push(Event::warning(
                            reasons::POD_METADATA_SYNC_FAILED,
                            format!(
                                "Could not bring ReplicaSet {rs_name} and its pods to their role metadata (retried): {e}"
                            ),
                        ));
                    }
                }
            }
            Action::DeleteReplicaSet { name: rs_name } => {
                // Background: its pods are gone already (the planner only deletes a ReplicaSet
                // at zero); a 404 means an earlier reconcile got there first.
                match rs_api.delete(rs_name, &DeleteParams::background()).await {
                    Ok(_) => {
                        info!(rollout = %name, replica_set = %rs_name, "deleted old ReplicaSet beyond revisionHistoryLimit")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => events.push(cleanup_failed(&name, "ReplicaSet", rs_name, &e.into())),
                }
            }
        }
    }
    Ok(events)
}

/// Sets one router's weight from `snapshot` (then holding what the write left), with its prepared
/// abort write, and records the outcome in the view: the version it left, or that it is unknown.
/// For drift ([`super::drift`]), a weight found already right is `rollout`'s (`ns/name`) value
/// now, and a failed write leaves it unknown; a write that changed it is the caller's to judge.
pub(super) async fn set_weight(
    ctx: &Context,
    client: &kube::Client,
    rollout: &str,
    router: &dyn TrafficRouter,
    target: &RouteTarget,
    snapshot: &mut Option<RoutingSnapshot>,
    weight: i32,
) -> Result<WeightChange, TrafficError> {
    let from = snapshot.take();
    let written =
        prepared::set_weight(router, client, target, from, weight, &ctx.prepared_aborts).await;
    let object = router.object(target);
    let drift_key = super::drift::object_key(&object);
    match written {
        Ok(written) => {
            ctx.view.routing.saw(&written.after);
            *snapshot = Some(written.after);
            if written.change == WeightChange::Unchanged {
                ctx.view
                    .drift
                    .set(rollout, drift_key, Some(&weight.to_string()));
            }
            Ok(written.change)
        }
        Err(e) => {
            // A write that may have been sent: its outcome, and so the version, is unknown.
            // (Invalid and NotFound are raised before any write goes out.)
            if matches!(e, TrafficError::Conflict { .. } | TrafficError::Kube(_)) {
                ctx.view.routing.lost(&object);
            }
            // A Conflict surely did not land (the note of who changed it stays for the retry);
            // another failure may have: the value is unknown.
            if matches!(e, TrafficError::Kube(_)) {
                ctx.view.drift.set(rollout, drift_key, None);
            }
            Err(e)
        }
    }
}

/// Deleting what the history limits no longer keep is housekeeping: a refusal (a webhook, a
/// finalizer, RBAC) must not hold the rollout, whose status write comes after it. It is said in
/// a Warning Event, and the planner asks again on the next reconcile.
fn cleanup_failed(rollout: &str, kind: &str, object: &str, e: &Error) -> Event {
    warn!(rollout, kind, object, error = %e, "could not delete beyond the history limits");
    Event::warning(
        reasons::HISTORY_CLEANUP_FAILED,
        format!(
            "Could not delete {kind} '{object}', beyond the history limits: {e}; it is tried again on the next reconcile"
        ),
    )
}

/// Evicts a pod for a restart. The Eviction API (not a delete) honours the user's
/// PodDisruptionBudgets: one that refuses (429) is not an error — the restart tries again at
/// its next check. A pod already gone is what we wanted.
async fn evict_pod(ctx: &Context, ns: &str, rollout: &str, pod: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client().clone(), ns);
    match api.evict(pod, &EvictParams::default()).await {
        Ok(_) => {
            info!(rollout, pod, "evicted pod to restart it");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 429 => {
            warn!(rollout, pod, reason = %e.message, "eviction refused (PodDisruptionBudget); the restart retries");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The Event of a weight change on a routing object.
pub fn weight_event(from: Option<i32>, to: i32, object: &str) -> Event {
    Event::normal(
        reasons::TRAFFIC_WEIGHT_UPDATED,
        format!(
            "Traffic weight updated from {} to {to} on {object}",
            from.map(|f| f.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
    )
}

/// Points only `spec.selector[rollouts-pod-template-hash]` of a Service at `hash`, marking the
/// Service as managed by this Rollout; a Service another Rollout manages is refused.
async fn switch_service(
    ctx: &Context,
    ns: &str,
    rollout: &str,
    service: &str,
    hash: &str,
) -> Result<Option<Event>, Error> {
    let api: Api<WatchedService> = Api::namespaced(ctx.client().clone(), ns);
    let svc = super::observe::service(ctx, &api, ns, service)
        .await?
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "Service '{service}' not found in namespace '{ns}': create it or fix the Rollout"
            ))
        })?;
    if let Some(owner) = svc.managed_by_other(rollout) {
        return Err(Error::InvalidSpec(format!(
            "Service '{service}' is managed by Rollout '{owner}': each Rollout needs its own Services"
        )));
    }
    // The version the cache shows before the write: until it moves, what the write returns
    // stands in. Noted before, not after: the watch may deliver our write and a later one of
    // someone else's before this task runs again, and a later version must never be stood in for.
    let key = format!("{ns}/{service}");
    let cached_rv = ctx
        .view
        .services
        .get(ns, service)
        .and_then(|c| c.resource_version.as_deref().map(str::to_string));
    let patch = json!({
        "metadata": {"annotations": {MANAGED_BY_ANNOTATION: rollout}},
        "spec": {"selector": {POD_TEMPLATE_HASH_LABEL: hash}},
    });
    let rollout_key = format!("{ns}/{rollout}");
    let written = match api
        .patch(service, &wire::patch_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => written,
        Err(e) => {
            // It may have landed: the selector is unknown, and the next write is not judged.
            ctx.view
                .drift
                .set(&rollout_key, ("Service", ns, service), None);
            return Err(e.into());
        }
    };
    // Read back by the view's one rule; its watch event is our own change.
    let after = CachedService::from(&written);
    let written_rv = after.resource_version.as_deref().map(str::to_string);
    if let Some(rv) = &written_rv {
        ctx.view.service_writes.own_write(&key, rv);
    }
    ctx.view
        .service_writes
        .learnt(&key, cached_rv.as_deref(), written_rv, Some(after));
    info!(rollout, service, hash, "switched Service selector");
    Ok(drift_corrected(
        ctx,
        &rollout_key,
        ("Service", ns, service),
        svc.selects(POD_TEMPLATE_HASH_LABEL),
        hash,
        &format!("Service '{ns}/{service}'"),
        &format!("its selector is set back to revision {hash}"),
    ))
}

/// `rollout`'s write of `(kind, ns, name)` set its steered value from `overwritten` to
/// `written`; when that put back someone else's change ([`super::drift`]): the count, and the
/// Event naming them (unless one was told just now).
fn drift_corrected(
    ctx: &Context,
    rollout: &str,
    (kind, ns, name): (&str, &str, &str),
    overwritten: Option<&str>,
    written: &str,
    object: &str,
    what: &str,
) -> Option<Event> {
    let c = ctx
        .view
        .drift
        .wrote(rollout, (kind, ns, name), overwritten, written)?;
    ctx.telemetry
        .sinks
        .metrics
        .drift_corrected(super::drift::kind_label(kind));
    warn!(object, manager = %c.manager, "put back a change someone else made");
    c.tell
        .then(|| super::drift::corrected(object, &c.manager, what))
}

#[cfg(test)]
#[path = "act_routing_tests.rs"]
mod routing_tests;
#[cfg(test)]
#[path = "act_service_tests.rs"]
mod service_tests;
#[cfg(test)]
#[path = "act_tests.rs"]
mod tests;

//! The watches that fill the view ([`super::view::View`]): built here, all of them, each as
//! small as its readers need. [`watch`] returns the view and the streams that keep it filled;
//! the wiring ([`super::wiring`]) polls them and turns their events into wake-ups. Watches are
//! never paced: they deliver the aborts.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::routing_cache::{self, RoutingCache, RoutingChange};
use super::scope::{self, Scope};
use super::service_cache::{ServiceCache, WatchedService};
use super::undecodable::{Lenient, Undecodables};
use super::view::View;
use super::{analysis_runs, freshness, index, replica_set_cache};
use crate::api::wire::ROLLOUT_LABEL;
use crate::api::{AnalysisRun, Rollout};
use crate::metrics::Metrics;
use crate::plan;

/// A watch stream of `K`, as the view's streams yield them.
pub type Events<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// A Service watch event, and what the relist it ends found changed or gone.
pub(super) type ServiceEvent = (watcher::Event<WatchedService>, Vec<(String, String)>);

/// The streams that keep the view filled; each must be polled for as long as the view is read.
/// Every item has reached the view's caches before it is yielded.
pub struct Watches {
    /// Rollout watch events (trimmed: [`trim_rollout`]).
    pub rollouts: Events<watcher::Event<Rollout>>,
    /// ReplicaSets of ours applied or deleted: each wakes its Rollout.
    pub replica_sets: Events<replica_set_cache::WatchedReplicaSet>,
    /// AnalysisRuns of ours applied or deleted (trimmed, indexed by owner).
    pub analysis_runs: Events<AnalysisRun>,
    /// Service events, with what a relist found changed or gone.
    pub services: Events<ServiceEvent>,
    /// Routing object changes delivered as watch events: VirtualServices (the cache's watch),
    /// HTTPRoutes and Ingresses (watched for their changes only), each when its API is served;
    /// and Deployments' changes, for the Rollouts whose `workloadRef` names them.
    pub routing_changes: BoxStream<'static, RoutingChange>,
}

/// Builds every watch of the view, in the namespaces of `scope`. Rollouts that do not decode
/// are skipped and reported ([`Undecodables`]); AnalysisRuns too, silently: the run controller's
/// watch of every run reports them.
pub async fn watch(client: &Client, scope: &Scope, metrics: Arc<Metrics>) -> (View, Watches) {
    let rs_cache = replica_set_cache::ReplicaSetCache::default();
    // The cache holds our creates before the watch shows them: a namespace's relist must
    // drop those it did not list, as a single watch's relist does.
    let relisted: scope::RelistHook = Box::new({
        let cache = rs_cache.clone();
        move |ns, names| cache.forget_unlisted(ns, names)
    });
    let replica_sets = scope::watch(
        scope.apis::<replica_set_cache::WatchedReplicaSet>(client),
        watcher::Config::default().labels(ROLLOUT_LABEL),
        tombstone,
        Some(relisted),
    )
    .inspect_err({
        let metrics = metrics.clone();
        move |e| {
            metrics.watch_error("ReplicaSet");
            tracing::warn!(kind = "ReplicaSet", error = %e, "watch failed; retrying");
        }
    })
    .inspect_ok({
        let cache = rs_cache.clone();
        move |e| cache.apply(e)
    })
    // Deletions too: a deleted ReplicaSet wakes its Rollout, which recreates it.
    .touched_objects()
    .boxed();

    // Services: every reconcile reads the stable/canary (or active/preview) Services; from a
    // cache that is two requests fewer each time.
    let svc_cache = ServiceCache::default();
    let services = scope::watch(
        scope.apis::<WatchedService>(client),
        watcher::Config::default(),
        tombstone,
        None,
    )
    .map_ok({
        let cache = svc_cache.clone();
        move |e| {
            let relisted = cache.apply(&e);
            (e, relisted)
        }
    })
    .boxed();

    let (runs_store, runs_writer) = reflector::store();
    let runs_owners = index::OwnerIndex::default();
    let analysis_runs = Undecodables::new::<AnalysisRun>(None, None)
        .skip(scope::watch(
            scope.apis::<Lenient<AnalysisRun>>(client),
            watcher::Config::default().labels(ROLLOUT_LABEL),
            Lenient::tombstone,
            None,
        ))
        .modify(trim_run)
        .reflect(runs_writer)
        .inspect_ok({
            let idx = runs_owners.clone();
            move |e| idx.apply(e)
        })
        // Deletions too: a deleted AnalysisRun wakes its Rollout.
        .touched_objects()
        .boxed();

    let (routing, virtual_services) = RoutingCache::watch(client, scope, metrics.clone()).await;
    let http_routes = routing_cache::watch_changes(
        client,
        scope,
        &crate::traffic::gateway::http_route_resource(),
        "HTTPRoute",
        metrics.clone(),
    )
    .await;
    let ingresses = routing_cache::watch_changes(
        client,
        scope,
        &kube::api::ApiResource::erase::<k8s_openapi::api::networking::v1::Ingress>(&()),
        "Ingress",
        metrics.clone(),
    )
    .await;
    // Deployments a workloadRef names: a new pod template there is a new revision. Watched for
    // their changes only, like the routing objects: a reconcile reads its Deployment fresh.
    let deployments = routing_cache::watch_changes(
        client,
        scope,
        &kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
        "Deployment",
        metrics.clone(),
    )
    .await;
    let routing_changes =
        futures::stream::select_all([virtual_services, http_routes, ingresses, deployments])
            .boxed();

    let (rollout_store, rollout_writer) = reflector::store();
    let rollouts = Undecodables::new::<Rollout>(Some(client.clone()), Some(metrics))
        .skip(scope::watch(
            scope.apis::<Lenient<Rollout>>(client),
            watcher::Config::default(),
            Lenient::tombstone,
            None,
        ))
        .modify(trim_rollout)
        .reflect(rollout_writer)
        .boxed();

    let view = View {
        rollouts: rollout_store,
        rollout_reads: freshness::ReadYourWrites::default(),
        replica_sets: rs_cache,
        services: svc_cache,
        service_writes: freshness::ReadYourWrites::default(),
        analysis_runs: runs_store,
        analysis_run_owners: runs_owners,
        retired_runs: analysis_runs::RetiredRuns::default(),
        routing,
        drift: super::drift::DriftNotes::default(),
    };
    let watches = Watches {
        rollouts,
        replica_sets,
        analysis_runs,
        services,
        routing_changes,
    };
    (view, watches)
}

/// A deleted object as a store needs it: its identity ([`scope::merge`]).
pub(super) fn tombstone<K: kube::Resource + Default>(metadata: kube::api::ObjectMeta) -> K {
    let mut k = K::default();
    *k.meta_mut() = metadata;
    k
}

/// Drops what the controller never reads from a cached Rollout: managed fields, the
/// last-applied annotation, and the pod template but for its labels (the Services' selectors are
/// checked against them). The template's hashes are kept instead ([`plan::TRIMMED_TEMPLATE_HASH`]),
/// so a reconcile can plan from the cache ([`freshness`]); creating a ReplicaSet, the one
/// action that needs the whole template, reads the Rollout fresh ([`super::act`]).
pub(super) fn trim_rollout(ro: &mut Rollout) {
    ro.managed_fields_mut().clear();
    ro.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    if ro.spec.template.spec.is_none() {
        return;
    }
    let hashes = plan::rollout_template_hashes(ro);
    ro.annotations_mut().insert(
        plan::TRIMMED_TEMPLATE_HASH.to_string(),
        format!("{} {}", hashes.current, hashes.legacy),
    );
    let labels = ro.spec.template.metadata.take().and_then(|m| m.labels);
    ro.spec.template = k8s_openapi::api::core::v1::PodTemplateSpec {
        metadata: Some(kube::api::ObjectMeta {
            labels,
            ..Default::default()
        }),
        spec: None,
    };
}

/// Drops what no reader of a cached AnalysisRun needs: managed fields and the last-applied
/// annotation (a copy of the whole spec on a run applied by hand).
pub(super) fn trim_run(run: &mut AnalysisRun) {
    run.managed_fields_mut().clear();
    run.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

//! The wiring: every watch, the two Rollout lanes and the AnalysisRun controller, built as one
//! chain in [`run`]. Watches are never paced (they deliver the aborts); the caches they fill are
//! the ones observe reads. What wakes a Rollout: its own watch, its ReplicaSets and
//! AnalysisRuns (owner), someone else's change to a Service or VirtualService it names
//! ([`super::wakers`]), and, on the urgent lane, an abort or a just-failed AnalysisRun.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    analysis, analysis_runs, freshness, index, observe, pacing, replica_set_cache, report,
    routing_cache, serial, service_cache, telemetry, wakers,
};
use crate::api::wire::{EVENT_REPORTER, ROLLOUT_LABEL};
use crate::api::{AnalysisRun, Rollout};
use crate::plan::{self};
use crate::traffic::PreparedAborts;

use super::abort_path::{failed_run_owner, send_prepared_aborts};
use super::reconcile::{error_policy, reconcile, reconcile_urgent};
use super::{Context, Settings, abort_pending, key};

/// The API of a namespaced kind in the watched namespace, or in all of them.
pub(super) fn scoped_api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Drops what the controller never reads from a cached Rollout: managed fields, the
/// last-applied annotation, and the pod template but for its labels (the Services' selectors are
/// checked against them). The template's hash is kept instead ([`plan::TRIMMED_TEMPLATE_HASH`]),
/// so a reconcile can plan from the cache ([`freshness`]); creating a ReplicaSet, the one
/// action that needs the whole template, reads the Rollout fresh ([`act`]).
pub(super) fn trim_rollout(ro: &mut Rollout) {
    ro.managed_fields_mut().clear();
    ro.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    if ro.spec.template.spec.is_none() {
        return;
    }
    let hash = plan::rollout_template_hash(ro);
    ro.annotations_mut()
        .insert(plan::TRIMMED_TEMPLATE_HASH.to_string(), hash);
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

/// Slots of the urgent lane: aborts are rare, and each takes a few requests.
pub(super) const URGENT_CONCURRENCY: u16 = 4;

/// Waits until the Rollout API is served (the CRDs are installed): starting the watch before
/// that only produces errors. False when `shutdown` came first.
pub async fn wait_for_crds(
    client: &Client,
    namespace: Option<&str>,
    shutdown: &CancellationToken,
) -> bool {
    let rollouts: Api<Rollout> = scoped_api(client, namespace);
    let mut delay = Duration::from_millis(200);
    while let Err(e) = rollouts
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        warn!(error = %e, "Rollout API not available yet (are the CRDs installed?); retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    true
}

/// Runs the controller until `shutdown` is cancelled, then lets in-flight reconciles finish.
pub async fn run(
    clients: pacing::Clients,
    settings: Settings,
    sinks: telemetry::TelemetrySinks,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Watches are never paced: they deliver the aborts.
    let client = clients.unpaced().clone();
    if !wait_for_crds(&client, settings.namespace.as_deref(), &shutdown).await {
        return Ok(());
    }
    let rs_api: Api<replica_set_cache::WatchedReplicaSet> =
        scoped_api(&client, settings.namespace.as_deref());
    let rs_cache = replica_set_cache::ReplicaSetCache::default();
    let rs_stream = watcher(rs_api, watcher::Config::default().labels(ROLLOUT_LABEL))
        .default_backoff()
        .inspect_ok({
            let cache = rs_cache.clone();
            move |e| cache.apply(e)
        })
        // Deletions too: a deleted ReplicaSet wakes its Rollout, which recreates it.
        .touched_objects();

    // Services: every reconcile reads the stable/canary (or active/preview) Services; from a
    // cache that is two requests fewer each time. A change by someone else wakes the Rollouts
    // that name the Service ([`wakers`]).
    let svc_api: Api<service_cache::WatchedService> =
        scoped_api(&client, settings.namespace.as_deref());
    let svc_cache = service_cache::ServiceCache::default();
    let svc_events = watcher(svc_api, watcher::Config::default())
        .default_backoff()
        .map_ok({
            let cache = svc_cache.clone();
            move |e| {
                let relisted = cache.apply(&e);
                (e, relisted)
            }
        });

    let runs_api: Api<AnalysisRun> = scoped_api(&client, settings.namespace.as_deref());
    let (runs_store, runs_writer) = reflector::store();
    let runs_owners = index::OwnerIndex::default();
    // Triggers of the urgent lane. Bounded and never awaited: when it is full the main lane
    // still reconciles the rollout, only not ahead of the others.
    let (urgent_tx, mut urgent_rx) = tokio::sync::mpsc::channel::<ObjectRef<Rollout>>(1024);
    let runs_stream = watcher(
        runs_api.clone(),
        watcher::Config::default().labels(ROLLOUT_LABEL),
    )
    .default_backoff()
    .modify(trim_run)
    .reflect(runs_writer)
    .inspect_ok({
        let idx = runs_owners.clone();
        move |e| idx.apply(e)
    })
    // Deletions too: a deleted AnalysisRun wakes its Rollout.
    .touched_objects()
    .inspect_ok({
        let urgent = urgent_tx.clone();
        move |run| {
            if let Some(owner) = failed_run_owner(run) {
                let _ = urgent.try_send(owner);
            }
        }
    });

    let (routing, vs_changes) =
        routing_cache::RoutingCache::watch(&client, settings.namespace.as_deref()).await;

    let (rollout_store, rollout_writer) = reflector::store();
    // Rollout deletions, for the sweep that forgets them and releases their Services.
    let deleted = Arc::new(tokio::sync::Notify::new());
    let ctx = Arc::new(Context {
        recorder: report::EventRecorder::new(clients.clone(), EVENT_REPORTER),
        clients,
        view: super::view::View {
            rollouts: rollout_store.clone(),
            rollout_reads: freshness::NewestVersions::default(),
            replica_sets: rs_cache,
            services: svc_cache,
            service_writes: observe::ServiceWrites::default(),
            analysis_runs: runs_store,
            analysis_run_owners: runs_owners,
            retired_runs: analysis_runs::RetiredRuns::default(),
            routing,
        },
        serial: serial::KeyLocks::default(),
        failures: Mutex::new(HashMap::new()),
        telemetry: telemetry::Telemetry::new(sinks.clone()),
        prepared_aborts: PreparedAborts::default(),
        status_writes: report::StatusWrites::default(),
    });
    let run_ctx = Arc::new(analysis::RunContext {
        client: client.clone(),
        providers: crate::provider::providers(settings.prometheus_address.clone()),
        metrics: sinks.metrics,
    });
    let rollout_stream = watcher(
        scoped_api::<Rollout>(&client, settings.namespace.as_deref()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(trim_rollout)
    .reflect(rollout_writer)
    .inspect_ok({
        let deleted = deleted.clone();
        move |e| {
            if matches!(e, watcher::Event::Delete(_)) {
                deleted.notify_one();
            }
        }
    })
    .applied_objects()
    .inspect_ok({
        let ctx = ctx.clone();
        let mut abort_tasks = tokio::task::JoinSet::new();
        move |ro| {
            if abort_pending(ro) {
                tracing::debug!(target: "aviary::watch", rollout = %key(ro), rv = ?ro.resource_version(), "abort seen on the Rollout watch");
                // The store already holds this Rollout (`reflect` comes first), which is what
                // keeps a reconcile in flight from undoing this write (`abort_overtook_read`).
                // Spawned so the watch is not held up, but owned by this term's future: a
                // leader that loses its Lease drops that future, and with it these writes.
                while abort_tasks.try_join_next().is_some() {}
                abort_tasks.spawn(pacing::unpaced(send_prepared_aborts(ctx.clone(), ro.clone())));
                let _ = urgent_tx.try_send(ObjectRef::from_obj(ro));
            }
        }
    });
    let woken = futures::stream::select(
        svc_events.flat_map({
            let (ctx, rollouts) = (ctx.clone(), rollout_store.clone());
            move |event| futures::stream::iter(service_wakes(&ctx, &rollouts, event))
        }),
        // Our own weight writes wake nobody (the version a write returned, not one a read
        // found: another Rollout's news may hide behind a read). A woken reconcile that runs
        // before the Rollout watch shows our status write would read the Rollout fresh.
        vs_changes.flat_map({
            let (ctx, rollouts) = (ctx.clone(), rollout_store.clone());
            move |change| {
                let woken = if ctx.view.routing.is_own_write(&change) {
                    vec![]
                } else {
                    wakers::rollouts_naming_virtual_service(
                        &rollouts,
                        &change.namespace,
                        &change.name,
                    )
                };
                futures::stream::iter(woken)
            }
        }),
    );
    info!(namespace = ?settings.namespace, concurrency = settings.concurrency, "starting the Rollout and AnalysisRun controllers");
    let controller = Controller::for_stream(rollout_stream, rollout_store.clone());
    let forget_deleted = telemetry::forget_deleted(ctx.clone(), controller.store(), deleted);
    let rollouts_done = controller
        .owns_stream(rs_stream)
        .owns_stream(runs_stream)
        .reconcile_on(woken)
        .with_config(
            ControllerConfig::default()
                .concurrency(settings.concurrency)
                .debounce(settings.debounce),
        )
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    // The urgent lane: the same reconcile over the same cache, fed only by the triggers above.
    let urgent_triggers = futures::stream::poll_fn(move |cx| urgent_rx.poll_recv(cx));
    let urgent_done = Controller::for_stream(
        futures::stream::pending::<Result<Rollout, watcher::Error>>(),
        rollout_store,
    )
    .reconcile_on(urgent_triggers)
    .with_config(ControllerConfig::default().concurrency(URGENT_CONCURRENCY))
    .graceful_shutdown_on(shutdown.clone().cancelled_owned())
    .run(reconcile_urgent, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "urgent reconcile failed");
        }
    });
    // The run controller runs every AnalysisRun, a Rollout's or one created by hand (as Argo
    // Rollouts): all of the kind are ours. Its own store holds them all, trimmed as the
    // Rollout side's is; a reconcile reads the run it measures fresh.
    let (all_runs_store, all_runs_writer) = reflector::store();
    let all_runs = watcher(runs_api, watcher::Config::default())
        .default_backoff()
        .modify(trim_run)
        .reflect(all_runs_writer)
        .applied_objects();
    let runs_done = Controller::for_stream(all_runs, all_runs_store)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(analysis::reconcile, analysis::error_policy, run_ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "analysis run reconcile failed");
            }
        });
    tokio::select! {
        _ = async { futures::join!(rollouts_done, urgent_done, runs_done) } => {}
        _ = forget_deleted => {}
    }
    info!("controller stopped");
    Ok(())
}

/// A Service watch event, and what the relist it ends found changed or gone.
pub(super) type ServiceEvent = (
    watcher::Event<service_cache::WatchedService>,
    Vec<(String, String)>,
);

/// The Rollouts a Service watch event wakes: those naming the Service, when the change is not
/// one of our own selector writes; at the end of a relist after a broken watch, those naming a
/// Service the relist found changed or gone (`relisted`).
pub(super) fn service_wakes(
    ctx: &Context,
    rollouts: &Store<Rollout>,
    event: Result<ServiceEvent, watcher::Error>,
) -> Vec<ObjectRef<Rollout>> {
    let svc = match event {
        Ok((watcher::Event::Apply(svc) | watcher::Event::Delete(svc), _)) => svc,
        Ok((_, relisted)) => {
            return relisted
                .iter()
                .flat_map(|(ns, name)| wakers::rollouts_naming_service(rollouts, ns, name))
                .collect();
        }
        Err(e) => {
            tracing::debug!(error = %e, "Service watch error");
            return vec![];
        }
    };
    let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    if ctx
        .view
        .service_writes
        .is_own(&ns, &name, svc.metadata.resource_version.as_deref())
    {
        return vec![];
    }
    wakers::rollouts_naming_service(rollouts, &ns, &name)
}

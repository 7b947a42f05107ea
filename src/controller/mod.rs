//! The Rollout controller: *observe → plan → act → report*.
//!
//! - **observe** ([`observe`]): the Rollout from the watch cache once it shows this process's
//!   last write, fresh from the API server until then ([`freshness`]: a stale step index must
//!   not drive weights), its ReplicaSets from a label-filtered cache that keeps only what the
//!   planner reads of each, grouped by owner ([`replica_set_cache`]), its Services from a cache
//!   of their selectors and our annotation ([`service_cache`]), and the current routing weight from the routing objects (a
//!   VirtualService from its watch cache, [`routing_cache`]);
//! - **plan** ([`crate::plan`]): pure, decides actions and the new status;
//! - **act** ([`act`]): applies the actions in order, idempotently;
//! - **report** ([`report`]): writes the status only when it changed, records Events.
//!
//! Timers are requeue-after from the plan; there is no per-object task. A Rollout at rest is
//! converged again every 15 minutes ([`SAFETY_RESYNC`]), writing nothing when nothing changed.
//!
//! Memory: the Rollout cache is **trimmed** (no pod spec — its hash is kept instead — no managed
//! fields or last-applied annotation). Creating a ReplicaSet, the one action that needs the
//! whole template, reads the Rollout fresh. Caching whole Rollouts is what makes rival
//! controllers grow with the number of rollouts (docs/benchmarks.md).
//!
//! Reaction: an abort must not wait behind the reconciles of a thousand progressing rollouts.
//! Rollouts with an abort not yet acted on, and rollouts whose AnalysisRun just failed, are
//! also queued on a second, **urgent** lane with slots of its own; [`serial::KeyLocks`] keeps
//! the two lanes from reconciling the same rollout at once.

pub mod act;
pub mod analysis;
pub mod analysis_runs;
pub mod cleanup;
pub mod error;
pub mod freshness;
pub mod index;
pub mod observe;
pub mod pacing;
pub mod relisting;
pub mod replica_set_cache;
pub mod report;
pub mod routing_cache;
pub mod serial;
pub mod service_cache;
pub mod service_release;
pub mod telemetry;
pub mod wakers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::conditions::{set_condition, types};
use crate::api::wire::{
    EVENT_REPORTER, RETIRED_LABEL, ROLLOUT_LABEL, ROUTE_CLEANUP_FINALIZER, reasons,
};
use crate::api::{AnalysisRun, Condition, ConditionStatus, Rollout, RolloutPhase};
use crate::plan::{self, Event, Observed, ObservedAnalysisRun};
use crate::traffic::{PreparedAborts, RouteTarget, TrafficRouter, routers_for};
pub use error::Error;

/// What every reconcile shares.
pub struct Context {
    /// Paced for the main lane, unpaced for aborts ([`pacing`]): take [`Context::client`].
    pub clients: pacing::Clients,
    pub recorder: report::EventRecorder,
    /// Owned ReplicaSets (label-filtered), by controlling Rollout, as the planner sees them.
    pub replica_sets: replica_set_cache::ReplicaSetCache,
    /// Every Service in the watched namespaces, as observe and act read it ([`service_cache`]).
    pub services: service_cache::ServiceCache,
    /// Our selector writes the Service cache may not show yet.
    pub service_writes: observe::ServiceWrites,
    /// Owned AnalysisRuns (label-filtered).
    pub analysis_runs: Store<AnalysisRun>,
    /// Which cached AnalysisRuns each Rollout controls.
    pub analysis_run_owners: index::OwnerIndex,
    /// Runs we retired that the cache may not show retired yet.
    pub retired_runs: analysis_runs::RetiredRuns,
    /// One reconcile per rollout at a time across the main and the urgent lane.
    serial: serial::KeyLocks,
    /// Consecutive failures per rollout, for backoff; reset on success.
    failures: Mutex<HashMap<String, u32>>,
    /// Metrics, delivery figures and notifications ([`telemetry`]).
    pub telemetry: telemetry::Telemetry,
    /// Weight-0 writes prepared when a canary weight was set, so that an abort's first write
    /// needs no read ([`crate::traffic::prepared`]).
    pub prepared_aborts: PreparedAborts,
    /// The watched Rollouts (trimmed): what the watch has delivered, ahead of a reconcile's read.
    pub rollouts: Store<Rollout>,
    /// When each rollout's status was last written ([`report::COUNTERS_EVERY`]).
    pub status_writes: report::StatusWrites,
    /// Our writes the Rollout cache may not show yet ([`freshness`]).
    pub rollout_reads: freshness::NewestVersions,
    /// VirtualServices, and our reads and writes the cache may not show yet ([`routing_cache`]).
    pub routing: routing_cache::RoutingCache,
}

impl Context {
    /// The client for this reconcile's requests: paced on the main lane, unpaced on the urgent
    /// one ([`pacing`]).
    pub fn client(&self) -> &Client {
        self.clients.current()
    }
}

/// Controller settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace only (None: all).
    pub namespace: Option<String>,
    /// Rollouts reconciled at once.
    pub concurrency: u16,
    /// The main lane's trailing-edge debounce (zero: none); the urgent lane has none.
    pub debounce: Duration,
    /// Prometheus for metrics that name no address.
    pub prometheus_address: Option<String>,
}

/// The API of a namespaced kind in the watched namespace, or in all of them.
fn scoped_api<K>(client: &Client, ns: Option<&str>) -> Api<K>
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
fn trim_rollout(ro: &mut Rollout) {
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
fn trim_run(run: &mut AnalysisRun) {
    run.managed_fields_mut().clear();
    run.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Slots of the urgent lane: aborts are rare, and each takes a few requests.
const URGENT_CONCURRENCY: u16 = 4;

pub use crate::plan::abort_pending;

/// The Rollout to wake on the urgent lane for this AnalysisRun: its controller owner, when the
/// run has just failed (Failed or Error) and is not retired — the rollout must abort now.
fn failed_run_owner(run: &AnalysisRun) -> Option<ObjectRef<Rollout>> {
    let failed = matches!(
        run.status.as_ref().map(|s| s.phase),
        Some(crate::api::AnalysisPhase::Failed | crate::api::AnalysisPhase::Error)
    );
    let retired = run.labels().get(RETIRED_LABEL).is_some_and(|v| v == "true");
    if !failed || retired {
        return None;
    }
    let owner = run
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Rollout")?;
    Some(ObjectRef::new(&owner.name).within(&run.namespace().unwrap_or_default()))
}

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
        replica_sets: rs_cache,
        services: svc_cache,
        service_writes: observe::ServiceWrites::default(),
        analysis_runs: runs_store,
        analysis_run_owners: runs_owners,
        retired_runs: analysis_runs::RetiredRuns::default(),
        serial: serial::KeyLocks::default(),
        failures: Mutex::new(HashMap::new()),
        telemetry: telemetry::Telemetry::new(sinks.clone()),
        prepared_aborts: PreparedAborts::default(),
        rollouts: rollout_store.clone(),
        status_writes: report::StatusWrites::default(),
        rollout_reads: freshness::NewestVersions::default(),
        routing,
    });
    let run_ctx = Arc::new(analysis::RunContext {
        client: client.clone(),
        default_prometheus: settings.prometheus_address.clone(),
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
                let woken = if ctx.routing.is_own_write(&change) {
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
type ServiceEvent = (
    watcher::Event<service_cache::WatchedService>,
    Vec<(String, String)>,
);

/// The Rollouts a Service watch event wakes: those naming the Service, when the change is not
/// one of our own selector writes; at the end of a relist after a broken watch, those naming a
/// Service the relist found changed or gone (`relisted`).
fn service_wakes(
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
        .service_writes
        .is_own(&ns, &name, svc.metadata.resource_version.as_deref())
    {
        return vec![];
    }
    wakers::rollouts_naming_service(rollouts, &ns, &name)
}

fn key<K: ResourceExt>(ro: &K) -> String {
    format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any())
}

async fn reconcile(cached: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // An abort is never paced, whichever lane takes it first.
    if aborting(&ctx, &cached) {
        pacing::unpaced(reconcile_on_lane(cached, ctx, false)).await
    } else {
        reconcile_on_lane(cached, ctx, false).await
    }
}

/// Whether the rollout has an abort to act on: one asked for, or an AnalysisRun of its that has
/// just failed ([`failed_run_owner`]).
fn aborting(ctx: &Context, ro: &Rollout) -> bool {
    if abort_pending(ro) {
        return true;
    }
    let uid = ro.uid().unwrap_or_default();
    ctx.analysis_run_owners
        .owned(&ctx.analysis_runs, &uid)
        .iter()
        .any(|run| failed_run_owner(run).is_some())
}

/// The urgent lane's reconcile: the same as the main lane's, on slots of its own and unpaced
/// ([`pacing`]). On either lane a pending abort first sends all traffic back to stable from the
/// Rollout the watch just delivered ([`plan::immediate_abort_weight`]) — one request per
/// VirtualService with a prepared write, a read and a write otherwise — then the full reconcile
/// runs.
async fn reconcile_urgent(cached: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    pacing::unpaced(reconcile_on_lane(cached, ctx, true)).await
}

async fn reconcile_on_lane(
    cached: Arc<Rollout>,
    ctx: Arc<Context>,
    urgent: bool,
) -> Result<Requeue, Error> {
    let span = info_span!("reconcile", rollout = %key(cached.as_ref()), urgent);
    async move {
        let rollout_key = key(cached.as_ref());
        let outbox = report::Outbox::default();
        // The urgent lane does not wait for the rollout's lock to write a guarded weight: a
        // main-lane reconcile holding it may be several requests (or, paced, seconds) long,
        // and it cannot undo this write (the same two rules as [`send_prepared_aborts`]).
        if urgent {
            route_to_stable_now(&ctx, &cached, &outbox, Guarded::Only).await;
        }
        let res = ctx
            .serial
            .run(&rollout_key, async {
                let mut timer = ctx.telemetry.sinks.metrics.reconcile_timer();
                // On both lanes: whichever takes the abort first (the main lane does when it is
                // idle) sends the traffic back before reading anything else.
                let routers = if urgent { Guarded::Not } else { Guarded::Any };
                route_to_stable_now(&ctx, &cached, &outbox, routers).await;
                let res = reconcile_inner(&cached, &ctx, &outbox).await;
                if let Err(e) = &res {
                    timer.failed(e.kind());
                }
                res
            })
            .await;
        outbox.flush(&ctx.recorder).await;
        if let (true, Ok(mut f)) = (res.is_ok(), ctx.failures.lock()) {
            f.remove(&rollout_key);
        }
        res
    }
    .instrument(span)
    .await
}

/// Which routers [`route_to_stable_now`] writes, by [`TrafficRouter::weight_writes_are_guarded`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Guarded {
    Only,
    Not,
    Any,
}

impl Guarded {
    fn selects(self, router: &dyn TrafficRouter) -> bool {
        match self {
            Guarded::Only => router.weight_writes_are_guarded(),
            Guarded::Not => !router.weight_writes_are_guarded(),
            Guarded::Any => true,
        }
    }
}

/// Sets the canary weight of a pending abort on the `which` routing objects at once, unpaced. A
/// failure is only logged: the full reconcile that follows plans the same weight and reports
/// what goes wrong.
async fn route_to_stable_now(
    ctx: &Context,
    cached: &Rollout,
    outbox: &report::Outbox,
    which: Guarded,
) {
    let Some(weight) = plan::immediate_abort_weight(cached) else {
        return;
    };
    if !stable_has_pods(ctx, cached) {
        // Nothing to send the traffic back to: the full plan says so and keeps it on the canary.
        return;
    }
    let (routers, target) = routing(cached);
    let routers: Vec<_> = routers
        .into_iter()
        .filter(|r| which.selects(r.as_ref()))
        .collect();
    if routers.is_empty() {
        return;
    }
    tracing::debug!(target: "aviary::watch", rollout = %key(cached), weight, ?which, "abort: sending traffic back to stable");
    for router in &routers {
        match router
            .set_weight_prepared(ctx.clients.unpaced(), &target, weight, &ctx.prepared_aborts)
            .await
        {
            Ok(crate::traffic::WeightChange::Updated { from, to }) => {
                info!(
                    router = router.kind(),
                    ?from,
                    to,
                    "abort: traffic back to stable"
                );
                outbox.add(
                    cached,
                    &[act::weight_event(from, to, &router.describe(&target))],
                );
            }
            Ok(crate::traffic::WeightChange::Unchanged) => {}
            // Another of the abort's writers (the watch, the other lane) came first.
            Err(e @ crate::traffic::TrafficError::Conflict { .. }) => {
                debug!(router = router.kind(), error = %e, "abort: the weight changed under this write; the reconcile re-reads")
            }
            Err(e) => {
                warn!(router = router.kind(), error = %e, "abort: could not set the weight yet")
            }
        }
    }
    ctx.routing.note_seen(&routers, &target);
}

/// Sends a just-watched abort's prepared weight-0 writes ([`crate::traffic::prepared`]) straight
/// from the watch: not behind the reconcile queue, and not behind a reconcile of this rollout
/// in flight, which may take several requests under load. What that reconcile does next is
/// safe: a weight it writes tests the canary weight it read, so it fails if this write came
/// first, and a reconcile that read the routing object after this write sees the abort in the
/// store before it acts ([`abort_overtook_read`]). Without a prepared write (none held, or the
/// object changed since) this does nothing, and the urgent lane's reconcile reads and writes.
async fn send_prepared_aborts(ctx: Arc<Context>, ro: Rollout) {
    let Some(0) = plan::immediate_abort_weight(&ro) else {
        return;
    };
    if !stable_has_pods(&ctx, &ro) {
        return;
    }
    let (routers, target) = routing(&ro);
    for router in &routers {
        match router
            .send_prepared_abort(ctx.clients.unpaced(), &target, &ctx.prepared_aborts)
            .await
        {
            Ok(Some(crate::traffic::WeightChange::Updated { from, to })) => {
                info!(target: "aviary::watch", rollout = %key(&ro), router = router.kind(), ?from, to, "abort: traffic back to stable (from the watch)");
                let event = act::weight_event(from, to, &router.describe(&target));
                report::publish(&ctx.recorder, &ro, &[event]).await;
            }
            Ok(_) => {}
            Err(e) => {
                debug!(rollout = %key(&ro), router = router.kind(), error = %e, "abort: the prepared write failed; the reconcile retries")
            }
        }
    }
    ctx.routing.note_seen(&routers, &target);
}

/// Whether the stable revision has an available pod in the ReplicaSet cache: the abort's fast
/// writes send all traffic there before anything else is read, so they go only if it can take
/// it (a deleted stable ReplicaSet, or one whose pods all died, cannot).
fn stable_has_pods(ctx: &Context, ro: &Rollout) -> bool {
    let Some(stable) = ro.status.as_ref().and_then(|s| s.stable_rs.as_deref()) else {
        return false;
    };
    let uid = ro.uid().unwrap_or_default();
    ctx.replica_sets
        .owned(&uid)
        .iter()
        .any(|c| c.observed.hash == stable && c.observed.available > 0)
}

/// Whether the watch has delivered an abort that `read` — the Rollout this reconcile read and
/// planned from — does not show. Such a plan is stale, and acting on it could route traffic
/// back to the canary after [`send_prepared_aborts`] took it away: the reconcile stops before
/// acting and the next one plans the abort.
fn abort_overtook_read(read: &Rollout, watched: Option<&Rollout>) -> bool {
    !abort_pending(read) && watched.is_some_and(abort_pending)
}

/// Whether the caches hold their first full list (never waits; see `reconcile_inner`).
fn caches_ready(ctx: &Context) -> bool {
    ctx.replica_sets.is_ready() && store_ready(&ctx.analysis_runs) && ctx.services.is_ready()
}

pub(crate) fn store_ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    use futures::FutureExt;
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

async fn reconcile_inner(
    cached: &Rollout,
    ctx: &Context,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
    // Until the caches hold their first full list, "no ReplicaSet seen" means "not listed yet",
    // not "none exists" — planning on that would redeploy a rollout from scratch. Checked without
    // waiting: kube-runtime 5.0's `wait_until_ready` wakes only the last of several concurrent
    // waiters (one oneshot receiver, one waker), so reconciles that awaited it at start-up hung
    // for ever, each holding a concurrency slot (the benchmark found 15 of 100 rollouts never
    // reconciled after a start with 16 slots).
    if !caches_ready(ctx) {
        return Ok(Requeue::requeue(Duration::from_millis(500)));
    }
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<Rollout> = Api::namespaced(ctx.client().clone(), &ns);
    // The store's latest: a reconcile that waited for the rollout's lock may hold an older copy.
    let latest = ctx.rollouts.get(&ObjectRef::from_obj(cached));
    let cached = latest.as_deref().unwrap_or(cached);
    let routed = cached
        .spec
        .canary()
        .is_some_and(|c| c.traffic_routing.is_some());
    let rollout_key = key(cached);
    let cached_rv = cached.resource_version();
    let behind = ctx
        .rollout_reads
        .cache_behind(&rollout_key, cached_rv.as_deref());
    let ro = match freshness::fresh_read_needed(cached, behind, routed) {
        None => cached.clone(),
        Some(why) => {
            debug!(target: "aviary::reads", rollout = %rollout_key, ?why, "reading the Rollout fresh");
            let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
                return Ok(Requeue::await_change());
            };
            ctx.rollout_reads.read_fresh(
                &rollout_key,
                cached_rv.as_deref(),
                fresh.resource_version(),
            );
            fresh
        }
    };
    let has_finalizer = ro.finalizers().iter().any(|f| f == ROUTE_CLEANUP_FINALIZER);
    if !routed && !has_finalizer {
        // Nothing of the user's to restore on deletion: no finalizer; a Rollout being deleted is
        // left to the garbage collector.
        if ro.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::await_change());
        }
        return reconcile_rollout(ctx, &api, &ro, outbox).await;
    }
    // kube-runtime's helper: adds the finalizer first (one write, once), then reconciles;
    // on deletion restores the routing objects and only then removes it.
    finalizer(&api, ROUTE_CLEANUP_FINALIZER, Arc::new(ro), |event| async {
        match event {
            FinalizerEvent::Apply(ro) => reconcile_rollout(ctx, &api, &ro, outbox).await,
            FinalizerEvent::Cleanup(ro) => clean_up(ctx, &ro).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// observe → plan → act → report, with a problem the user must fix reported as such.
async fn reconcile_rollout(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
    match plan_and_act(ctx, api, ro, outbox).await {
        Ok(requeue) => Ok(requeue),
        Err(e) if !e.is_transient() => report_invalid(ctx, api, ro, &e.to_string(), outbox).await,
        Err(e) => Err(e),
    }
}

/// The routers of the Rollout's `trafficRouting` (none without it), and what they route for.
fn routing(ro: &Rollout) -> (Vec<Box<dyn TrafficRouter>>, RouteTarget) {
    let canary = ro.spec.canary();
    let routers = canary
        .and_then(|c| c.traffic_routing.as_ref())
        .map(routers_for)
        .unwrap_or_default();
    let target = RouteTarget {
        namespace: ro.namespace().unwrap_or_default(),
        rollout: ro.name_any(),
        rollout_uid: ro.metadata.uid.clone().unwrap_or_default(),
        stable_service: canary
            .and_then(|c| c.stable_service.clone())
            .unwrap_or_default(),
        canary_service: canary
            .and_then(|c| c.canary_service.clone())
            .unwrap_or_default(),
        stable_hash: None,
        canary_hash: None,
    };
    (routers, target)
}

/// The Rollout is being deleted: every routing object back to all-stable before the finalizer
/// goes ([`cleanup`]). An error keeps the finalizer, and the reconcile is retried with backoff.
async fn clean_up(ctx: &Context, ro: &Rollout) -> Result<Requeue, Error> {
    let (routers, target) = routing(ro);
    let deleting_for = ro
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    let (events, retry) =
        cleanup::restore_stable(ctx.client(), &routers, &target, deleting_for).await;
    // Published before the finalizer goes (not through the outbox): whoever sees the Rollout
    // gone can read why its routing was, or was not, restored.
    report::publish(&ctx.recorder, ro, &events).await;
    match retry {
        Some(e) => Err(e.into()),
        None => {
            info!("routing restored to stable; releasing the Rollout for deletion");
            Ok(Requeue::await_change())
        }
    }
}

async fn plan_and_act(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
    let (routers, target) = routing(ro);

    let now = Timestamp::now();
    let replica_sets = observe::owned_replica_sets(ctx, ro);
    // Pods are listed only while a restart is due: no cache of every pod for a rare operation.
    let pods = match plan::restart::due(ro, now) {
        plan::restart::Due::Now(_) => Some(observe::rollout_pods(ctx, ro, &replica_sets).await?),
        _ => None,
    };
    // The Services and the routing objects are independent reads: in parallel, so an abort's
    // reconcile waits for one round trip here, not three.
    let (services, (current_weight, subset_hashes)) = tokio::try_join!(
        observe::observe_services(ctx, ro),
        observe::observe_weight(ctx, &routers, &target)
    )?;
    let (analysis_runs, analysis_run_history) = observe::owned_analysis_runs(ctx, ro);
    let mut observed = Observed {
        rollout: ro,
        replica_sets,
        services,
        current_weight,
        subset_hashes,
        analysis_runs,
        analysis_run_history,
        pods,
        now,
    };
    let mut plan = plan::plan(&observed);
    let watched = ctx.rollouts.get(&ObjectRef::from_obj(ro));
    if abort_overtook_read(ro, watched.as_deref()) {
        info!("an abort arrived after this reconcile read the Rollout; planning again");
        return Ok(Requeue::requeue(Duration::from_millis(100)));
    }
    if !plan.actions.is_empty() {
        info!(actions = ?plan.actions, "applying plan");
    }
    let mut events = match act::apply(
        ctx,
        ro,
        &plan.actions,
        &observed.replica_sets,
        &routers,
        &target,
    )
    .await
    {
        // An analysis that can't even start (a missing template) is an analysis in Error: plan
        // again with that verdict, which aborts the rollout with the reason.
        Err(Error::AnalysisSetup {
            kind,
            hash,
            message,
        }) => {
            warn!(%message, "analysis could not start");
            observed.analysis_runs.push(ObservedAnalysisRun {
                name: format!("{}-{hash}", ro.name_any()),
                kind,
                hash,
                phase: crate::api::AnalysisPhase::Error,
                message: Some(message),
                steps_hash: None,
            });
            plan = plan::plan(&observed);
            let actions: Vec<_> = plan
                .actions
                .iter()
                .filter(|a| !matches!(a, plan::Action::CreateAnalysisRun { .. }))
                .cloned()
                .collect();
            act::apply(ctx, ro, &actions, &observed.replica_sets, &routers, &target).await?
        }
        other => other?,
    };
    let now = tokio::time::Instant::now();
    let held = report::only_counters_changed(&ro.status.clone().unwrap_or_default(), &plan.status)
        .then(|| ctx.status_writes.hold_counters(&key(ro), now))
        .flatten();
    if let Some(d) = held {
        debug!(target: "aviary::status", rollout = %key(ro), wait = ?d, "replica counters held back");
    } else if write_status(ctx, api, ro, &plan.status).await? {
        ctx.status_writes.record(&key(ro), now);
        info!(phase = ?plan.status.phase, step = ?plan.status.current_step_index, "status updated");
    }
    events.extend(plan.events.iter().cloned());
    outbox.add(ro, &events);
    telemetry::reported(ctx, ro, &plan.status, &events);
    Ok(match plan.requeue_after.into_iter().chain(held).min() {
        Some(d) => Requeue::requeue(d),
        // Progressing rollouts are woken by their ReplicaSets' changes; this is only a safety net.
        None if plan.status.phase == Some(RolloutPhase::Progressing) => {
            Requeue::requeue(Duration::from_secs(30))
        }
        // A slow safety resync (as Argo Rollouts' 15 minutes): whatever changed without an
        // event we see (a routing object or Service edited by someone else) is converged back.
        // At rest it plans from the caches and writes nothing.
        None => Requeue::requeue(SAFETY_RESYNC),
    })
}

/// How often a Rollout at rest is converged again without any event.
const SAFETY_RESYNC: Duration = Duration::from_secs(15 * 60);

/// [`report::write_status`], noting what the write returned for [`freshness`]: until the cache
/// shows it, reconciles read the Rollout fresh. A failed write may still have landed (a lost
/// answer), so it is read fresh too until a read and the cache agree.
async fn write_status(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    status: &crate::api::RolloutStatus,
) -> Result<bool, Error> {
    match report::write_status(api, ro, status).await {
        Ok(Some(written)) => {
            ctx.rollout_reads.saw(&key(ro), written.resource_version());
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            ctx.rollout_reads.distrust(&key(ro));
            Err(e)
        }
    }
}

/// Records a problem the user must fix: condition `InvalidSpec`, phase Degraded, a Warning Event
/// (once per distinct message); then waits for a change (or retries slowly, in case the missing
/// object appears).
async fn report_invalid(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    message: &str,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
    let mut status = ro.status.clone().unwrap_or_default();
    let known = status
        .condition(types::INVALID_SPEC)
        .is_some_and(|c| c.message == message && c.status == ConditionStatus::True);
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::INVALID_SPEC,
            true,
            reasons::INVALID_SPEC,
            message,
            Time(Timestamp::now()),
        )
        .with_generation(ro.metadata.generation),
    );
    set_condition(
        &mut status.conditions,
        Condition::new(
            types::READY,
            false,
            "Degraded",
            message,
            Time(Timestamp::now()),
        )
        .with_generation(ro.metadata.generation),
    );
    status.phase = Some(RolloutPhase::Degraded);
    status.message = Some(message.to_string());
    status.observed_generation = ro.metadata.generation;
    write_status(ctx, api, ro, &status).await?;
    telemetry::reported(ctx, ro, &status, &[]);
    if !known {
        warn!(message, "invalid spec");
        outbox.add(ro, &[Event::warning(reasons::INVALID_SPEC, message)]);
    }
    Ok(Requeue::requeue(Duration::from_secs(30)))
}

fn error_policy(ro: Arc<Rollout>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(ro.as_ref())).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    // 100 ms, 200 ms, … capped at 30 s: a conflict retries at once, an outage doesn't spin.
    let backoff =
        Duration::from_millis(100u64.saturating_mul(1u64 << n.min(9))).min(Duration::from_secs(30));
    warn!(rollout = %key(ro.as_ref()), error = %err, kind = err.kind(), retry_in = ?backoff, "reconcile failed");
    Requeue::requeue(backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(status: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}}
            },
            "status": status,
        }))
        .expect("rollout")
    }

    #[test]
    fn a_plan_read_before_a_watched_abort_is_not_acted_on() {
        let progressing = rollout(json!({"phase": "Progressing"}));
        let aborting = rollout(json!({"abort": true, "phase": "Progressing"}));
        let aborted = rollout(
            json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"}),
        );
        assert!(abort_overtook_read(&progressing, Some(&aborting)));
        // A plan that already sees the abort is the abort's own plan.
        assert!(!abort_overtook_read(&aborting, Some(&aborting)));
        assert!(!abort_overtook_read(&progressing, Some(&progressing)));
        assert!(!abort_overtook_read(&progressing, None));
        // An abort already acted on (Degraded) is nothing new to wait for.
        assert!(!abort_overtook_read(&progressing, Some(&aborted)));
    }

    #[test]
    fn only_an_abort_not_yet_acted_on_is_urgent() {
        assert!(abort_pending(&rollout(
            json!({"abort": true, "phase": "Progressing"})
        )));
        assert!(abort_pending(&rollout(json!({"abort": true}))));
        assert!(!abort_pending(&rollout(
            json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"})
        )));
        // Degraded for another reason (an invalid spec, a deadline): the abort is still to do.
        assert!(abort_pending(&rollout(
            json!({"abort": true, "phase": "Degraded"})
        )));
        assert!(!abort_pending(&rollout(json!({"phase": "Progressing"}))));
    }

    #[test]
    fn trimming_keeps_what_the_lanes_and_the_planner_read() {
        let mut ro = rollout(
            json!({"abort": true, "phase": "Progressing", "collisionCount": 2,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "x", "message": "y",
                            "lastTransitionTime": "2026-11-24T00:00:00Z", "lastUpdateTime": "2026-11-24T00:00:00Z"}]}),
        );
        let full = ro.clone();
        trim_rollout(&mut ro);
        assert!(abort_pending(&ro));
        assert!(ro.spec.template.spec.is_none());
        assert_eq!(
            ro.spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone()),
            Some([("app".to_string(), "web".to_string())].into())
        );
        assert_eq!(ro.status, full.status, "conditions are planned from");
        assert_eq!(
            plan::rollout_template_hash(&ro),
            plan::pod_template_hash(&full.spec.template, Some(2))
        );
        // Trimming what is already trimmed changes nothing.
        let again = {
            let mut t = ro.clone();
            trim_rollout(&mut t);
            t
        };
        assert_eq!(again, ro);
    }

    #[test]
    fn a_hash_annotation_on_a_whole_rollout_is_not_trusted() {
        let mut ro = rollout(json!({}));
        ro.annotations_mut()
            .insert(plan::TRIMMED_TEMPLATE_HASH.into(), "forged".into());
        assert_eq!(
            plan::rollout_template_hash(&ro),
            plan::pod_template_hash(&ro.spec.template, None)
        );
        trim_rollout(&mut ro);
        assert_ne!(plan::rollout_template_hash(&ro), "forged");
    }

    /// The planner gives the same answer from the trimmed cache as from the whole Rollout, at
    /// each point of a rollout it may be asked about.
    #[test]
    fn the_trimmed_rollout_plans_like_the_whole_one() {
        let now = Timestamp::now();
        // The states are planned a minute earlier, so a condition planned again from a
        // Rollout that lost its conditions would show a later transition time.
        let then = now - k8s_openapi::jiff::SignedDuration::from_secs(60);
        let whole = rollout(json!({}));
        let hash = plan::rollout_template_hash(&whole);
        let rs = |name: &str, hash: &str, replicas: i32| plan::ObservedReplicaSet {
            name: name.into(),
            hash: hash.into(),
            replicas,
            available: replicas,
            ready: replicas,
            current: replicas,
            revision: Some(1),
            ..Default::default()
        };
        let mut cases = vec![(whole.clone(), vec![])];
        // Each later state is what the previous plan wrote, with its ReplicaSets in place.
        let mut ro = whole.clone();
        let mut sets = vec![];
        for _ in 0..4 {
            let observed = Observed {
                rollout: &ro,
                replica_sets: sets.clone(),
                services: vec![],
                current_weight: None,
                subset_hashes: None,
                analysis_runs: vec![],
                analysis_run_history: vec![],
                pods: None,
                now: then,
            };
            let p = plan::plan(&observed);
            ro.status = Some(p.status);
            sets = vec![rs(&format!("web-{hash}"), &hash, 1)];
            cases.push((ro.clone(), sets.clone()));
        }
        for (whole, sets) in cases {
            let mut trimmed = whole.clone();
            trim_rollout(&mut trimmed);
            let observe = |ro| Observed {
                rollout: ro,
                replica_sets: sets.clone(),
                services: vec![],
                current_weight: None,
                subset_hashes: None,
                analysis_runs: vec![],
                analysis_run_history: vec![],
                pods: None,
                now,
            };
            assert_eq!(
                plan::plan(&observe(&trimmed)),
                plan::plan(&observe(&whole)),
                "status {:?}",
                whole.status
            );
        }
    }

    #[test]
    fn an_abort_sends_traffic_back_at_once_only_when_the_canary_routes_traffic() {
        let plain = rollout(json!({"abort": true, "phase": "Paused"}));
        assert_eq!(
            plan::immediate_abort_weight(&plain),
            None,
            "no trafficRouting"
        );
        let routed = |status| {
            let mut ro = rollout(status);
            let mut v = serde_json::to_value(&ro).expect("json");
            v["spec"]["strategy"]["canary"]["stableService"] = json!("web-stable");
            v["spec"]["strategy"]["canary"]["canaryService"] = json!("web-canary");
            v["spec"]["strategy"]["canary"]["trafficRouting"] =
                json!({"istio": {"virtualService": {"name": "web"}}});
            ro = serde_json::from_value(v).expect("routed rollout");
            ro
        };
        let pending = routed(json!({"abort": true, "phase": "Paused"}));
        assert_eq!(plan::immediate_abort_weight(&pending), Some(0));
        let mut trimmed = pending.clone();
        trim_rollout(&mut trimmed);
        assert_eq!(
            plan::immediate_abort_weight(&trimmed),
            Some(0),
            "decided from the trimmed cache"
        );
        assert_eq!(
            plan::immediate_abort_weight(&routed(
                json!({"abort": true, "phase": "Degraded", "abortedAt": "2026-12-01T00:00:00Z"})
            )),
            None,
            "already acted on"
        );
        assert_eq!(
            plan::immediate_abort_weight(&routed(json!({"phase": "Paused"}))),
            None
        );
    }

    fn run(phase: &str, retired: bool) -> AnalysisRun {
        let mut labels = json!({});
        if retired {
            labels[RETIRED_LABEL] = json!("true");
        }
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-abc-1", "namespace": "shop", "labels": labels,
                "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                    "name": "web", "uid": "u1", "controller": true}]},
            "spec": {"metrics": []},
            "status": {"phase": phase},
        }))
        .expect("analysis run")
    }

    #[test]
    fn a_failed_run_wakes_its_rollout_on_the_urgent_lane() {
        let want = ObjectRef::<Rollout>::new("web").within("shop");
        assert_eq!(failed_run_owner(&run("Failed", false)), Some(want.clone()));
        assert_eq!(failed_run_owner(&run("Error", false)), Some(want));
        assert_eq!(failed_run_owner(&run("Running", false)), None);
        assert_eq!(failed_run_owner(&run("Successful", false)), None);
        assert_eq!(failed_run_owner(&run("Failed", true)), None, "retired");
    }
}

//! The wiring: the view's watches ([`super::watches`]), the two Rollout lanes and the
//! AnalysisRun controller, built as one chain in [`run`]. What wakes a Rollout: its own watch, its ReplicaSets and
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

use super::routing_cache::RoutingChange;
use super::scope::{self, Scope};
use super::undecodable::{Lenient, Undecodables};
use super::watches::{self, ServiceEvent, trim_run};
use super::{analysis, drift, pacing, report, serial, telemetry, wakers};
use crate::api::wire::EVENT_REPORTER;
use crate::api::{AnalysisRun, Rollout};
use crate::traffic::PreparedAborts;

use super::abort_path::{failed_run_owner, send_prepared_aborts};
use super::reconcile::{error_policy, reconcile, reconcile_urgent};
use super::{Context, Settings, abort_pending, key};

/// Slots of the urgent lane: aborts are rare, and each takes a few requests.
pub(super) const URGENT_CONCURRENCY: u16 = 4;

/// Waits until the Rollout API is served (the CRDs are installed) and readable in every
/// namespace of `scope`: starting the watch before that only produces errors. False when
/// `shutdown` came first.
pub async fn wait_for_crds(client: &Client, scope: &Scope, shutdown: &CancellationToken) -> bool {
    // Lenient: one Rollout that does not decode must not look like a missing API.
    let apis: Vec<Api<Lenient<Rollout>>> = scope.apis(client);
    let mut delay = Duration::from_millis(200);
    for rollouts in apis {
        while let Err(e) = rollouts
            .list(&kube::api::ListParams::default().limit(1))
            .await
        {
            let namespace = rollouts.namespace().unwrap_or("all namespaces");
            warn!(error = %e, namespace, "Rollouts cannot be listed yet (are the CRDs installed, and is the controller granted its Role here?); retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
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
    if !wait_for_crds(&client, &settings.scope, &shutdown).await {
        return Ok(());
    }
    let (view, watches) = watches::watch(&client, &settings.scope, sinks.metrics.clone()).await;
    let rollout_store = view.rollouts.clone();
    // Triggers of the urgent lane. Bounded and never awaited: when it is full the main lane
    // still reconciles the rollout, only not ahead of the others.
    let (urgent_tx, mut urgent_rx) = tokio::sync::mpsc::channel::<ObjectRef<Rollout>>(1024);
    // A run that has just failed puts its Rollout on the urgent lane.
    let runs_stream = watches.analysis_runs.inspect_ok({
        let urgent = urgent_tx.clone();
        move |run| {
            if let Some(owner) = failed_run_owner(run) {
                let _ = urgent.try_send(owner);
            }
        }
    });
    // Rollout deletions, for the sweep that forgets them and releases their Services.
    let deleted = Arc::new(tokio::sync::Notify::new());
    let ctx = Arc::new(Context {
        recorder: report::EventRecorder::new(clients.clone(), EVENT_REPORTER),
        clients,
        view,
        serial: serial::KeyLocks::default(),
        failures: Mutex::new(HashMap::new()),
        telemetry: telemetry::Telemetry::new(sinks.clone()),
        prepared_aborts: PreparedAborts::default(),
        status_writes: report::StatusWrites::default(),
    });
    let run_ctx = Arc::new(analysis::RunContext {
        client: client.clone(),
        providers: crate::provider::providers(settings.http.clone()),
        metrics: sinks.metrics,
        run_unowned: settings.run_unowned_analysis,
        allow_job_metrics: settings.allow_job_metrics,
        shutdown: shutdown.clone(),
        slots: super::analysis_slots::NamespaceSlots::new(settings.concurrency),
    });
    let rollout_stream = watches
        .rollouts
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
        watches.services.flat_map({
            let (ctx, rollouts) = (ctx.clone(), rollout_store.clone());
            move |event| futures::stream::iter(service_wakes(&ctx, &rollouts, event))
        }),
        // Our own weight writes wake nobody (the version a write returned, not one a read
        // found: another Rollout's news may hide behind a read). A woken reconcile that runs
        // before the Rollout watch shows our status write would read the Rollout fresh.
        watches.routing_changes.flat_map({
            let (ctx, rollouts) = (ctx.clone(), rollout_store.clone());
            move |change| futures::stream::iter(routing_wakes(&ctx, &rollouts, &change))
        }),
    );
    info!(scope = %settings.scope, concurrency = settings.concurrency, "starting the Rollout and AnalysisRun controllers");
    let controller = Controller::for_stream(rollout_stream, rollout_store.clone());
    let forget_deleted = telemetry::forget_deleted(ctx.clone(), controller.store(), deleted);
    let rollouts_done = controller
        .owns_stream(watches.replica_sets)
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
    let all_runs =
        Undecodables::new::<AnalysisRun>(Some(client.clone()), Some(run_ctx.metrics.clone()))
            .skip(scope::watch(
                settings.scope.apis::<Lenient<AnalysisRun>>(&client),
                watcher::Config::default(),
                Lenient::tombstone,
                None,
            ))
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

/// The Rollouts a routing object's change wakes: those naming it, when the change is not our
/// own write (for VirtualServices, the version our write returned; for the kinds watched for
/// changes only, a change whose newest field manager is ours). Whoever made it is noted, for
/// the write that puts it back ([`super::drift`]).
fn routing_wakes(
    ctx: &Context,
    rollouts: &Store<Rollout>,
    change: &RoutingChange,
) -> Vec<ObjectRef<Rollout>> {
    let own = match change.kind {
        "VirtualService" => ctx.view.routing.is_own_write(change),
        _ => change.manager.as_deref().is_some_and(drift::is_ours),
    };
    if own {
        return vec![];
    }
    if let Some(manager) = &change.manager {
        ctx.view
            .drift
            .note(change.kind, &change.namespace, &change.name, manager);
    }
    wakers::rollouts_naming_routing_object(rollouts, change.kind, &change.namespace, &change.name)
}

/// The Rollouts a Service watch event wakes: those naming the Service, when the change is not
/// one of our own selector writes; at the end of a relist after a broken watch, those naming a
/// Service the relist found changed or gone (`relisted`).
pub(super) fn service_wakes(
    ctx: &Context,
    rollouts: &Store<Rollout>,
    event: Result<ServiceEvent, watcher::Error>,
) -> Vec<ObjectRef<Rollout>> {
    let (svc, deleted) = match event {
        Ok((watcher::Event::Apply(svc), _)) => (svc, false),
        Ok((watcher::Event::Delete(svc), _)) => (svc, true),
        Ok((_, relisted)) => {
            return relisted
                .iter()
                .flat_map(|(ns, name)| wakers::rollouts_naming_service(rollouts, ns, name))
                .collect();
        }
        Err(e) => {
            ctx.telemetry.sinks.metrics.watch_error("Service");
            warn!(kind = "Service", error = %e, "watch failed; retrying");
            return vec![];
        }
    };
    let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    if ctx.view.service_writes.is_own(
        &format!("{ns}/{name}"),
        svc.metadata.resource_version.as_deref(),
    ) {
        return vec![];
    }
    // A deletion carries the last state's managers, not who deleted it.
    if let Some(manager) = drift::last_writer(&svc.metadata).filter(|_| !deleted) {
        ctx.view.drift.note("Service", &ns, &name, manager);
    }
    wakers::rollouts_naming_service(rollouts, &ns, &name)
}

//! One reconcile, in named stages: **lanes** (main and urgent, one at a time per rollout)
//! → **read** the Rollout (from the cache once it shows our last write, fresh until then) →
//! the finalizer (routing restored on deletion) → **converge** ([`super::converge`]: observe →
//! plan → act → report). Failures back off per rollout in [`error_policy`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use tracing::{Instrument, debug, info, info_span, warn};

use super::error::Error;
use super::{cleanup, freshness, pacing, report};
use crate::api::Rollout;
use crate::api::wire::ROUTE_CLEANUP_FINALIZER;

use super::abort_path::{Guarded, aborting, route_to_stable_now};
use super::converge::{plan_and_act, report_invalid};
use super::{Context, key};
use crate::traffic::Routing;

pub(super) async fn reconcile(cached: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // An abort is never paced, whichever lane takes it first.
    if aborting(&ctx, &cached) {
        pacing::unpaced(reconcile_on_lane(cached, ctx, false)).await
    } else {
        reconcile_on_lane(cached, ctx, false).await
    }
}

/// The urgent lane's reconcile: the same as the main lane's, on slots of its own and unpaced
/// ([`pacing`]). On either lane a pending abort first sends all traffic back to stable from the
/// Rollout the watch just delivered ([`crate::plan::immediate_abort_weight`]) — one request per
/// VirtualService with a prepared write, a read and a write otherwise — then the full reconcile
/// runs.
pub(super) async fn reconcile_urgent(
    cached: Arc<Rollout>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    pacing::unpaced(reconcile_on_lane(cached, ctx, true)).await
}

pub(super) async fn reconcile_on_lane(
    cached: Arc<Rollout>,
    ctx: Arc<Context>,
    urgent: bool,
) -> Result<Requeue, Error> {
    let span = info_span!("reconcile", rollout = %key(cached.as_ref()), urgent);
    // `kubectl aviary migrate` has not handed it over yet: nothing of it is ours to touch.
    if crate::api::wire::migrating(&cached.metadata) {
        debug!(rollout = %key(cached.as_ref()), "held by kubectl aviary migrate");
        return Ok(Requeue::await_change());
    }
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

/// Whether the caches hold their first full list (never waits; see `reconcile_inner`).
pub(super) fn caches_ready(ctx: &Context) -> bool {
    ctx.view.is_ready()
}

pub(super) async fn reconcile_inner(
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
    let latest = ctx.view.rollouts.get(&ObjectRef::from_obj(cached));
    let cached = latest.as_deref().unwrap_or(cached);
    let routed = cached
        .spec
        .canary()
        .is_some_and(|c| c.traffic_routing.is_some());
    let rollout_key = key(cached);
    let cached_rv = cached.resource_version();
    let behind = ctx
        .view
        .rollout_reads
        .cache_behind(&rollout_key, cached_rv.as_deref());
    let ro = match freshness::fresh_read_needed(cached, behind, routed) {
        None => cached.clone(),
        Some(why) => {
            debug!(target: "aviary::reads", rollout = %rollout_key, ?why, "reading the Rollout fresh");
            let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
                return Ok(Requeue::await_change());
            };
            ctx.view.rollout_reads.learnt(
                &rollout_key,
                cached_rv.as_deref(),
                fresh.resource_version(),
                None,
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
pub(super) async fn reconcile_rollout(
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

/// The Rollout is being deleted: every routing object back to all-stable before the finalizer
/// goes ([`cleanup`]). An error keeps the finalizer, and the reconcile is retried with backoff.
pub(super) async fn clean_up(ctx: &Context, ro: &Rollout) -> Result<Requeue, Error> {
    let routing = Routing::for_rollout(ro);
    let deleting_for = ro
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    let (events, retry) = cleanup::restore_stable(
        ctx.client(),
        &routing.routers,
        &routing.target,
        deleting_for,
    )
    .await;
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

pub(super) fn error_policy(ro: Arc<Rollout>, err: &Error, ctx: Arc<Context>) -> Requeue {
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

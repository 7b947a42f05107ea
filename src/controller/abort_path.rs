//! The abort fast path, and why it is safe.
//!
//! An abort must not wait behind the reconciles of a thousand progressing rollouts, nor behind
//! a reconcile of its own rollout that is several requests long. So the first write of an abort
//! — all traffic back to stable, [`crate::plan::immediate_abort_weight`] — is sent before the
//! full reconcile reads anything: from the watch itself ([`send_prepared_aborts`], one request
//! per routing object with a prepared write), and by whichever lane takes the abort first
//! ([`route_to_stable_now`]). The safety argument, stated once:
//! - it goes only when the stable revision has an available pod ([`stable_has_pods`]): the
//!   stable ReplicaSet is never scaled down while a canary runs, so it can take the traffic;
//! - on Istio a weight write tests the canary weight it read, so a reconcile in flight that
//!   read before the abort fails its own write instead of undoing this one; routers whose
//!   writes are not guarded so (NGINX, Gateway API) are written by the urgent lane only under
//!   the rollout's lock ([`Guarded`]), where no reconcile of it is in flight;
//! - a reconcile that read the Rollout before the abort arrived does not act on its plan
//!   ([`abort_overtook_read`]): the store shows the abort before any abort write is sent;
//! - these writes are owned by the leader's term: a leader that loses its Lease drops them.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, warn};

use super::{act, report};
use crate::api::wire::RETIRED_LABEL;
use crate::api::{AnalysisRun, Rollout};
use crate::plan::{self};
use crate::traffic::{Routing, TrafficError, TrafficRouter, WeightChange, prepared};

use super::{Context, abort_pending, key};

/// Whether the rollout has an abort to act on: one asked for, or an AnalysisRun of its that has
/// just failed ([`failed_run_owner`]).
pub(super) fn aborting(ctx: &Context, ro: &Rollout) -> bool {
    if abort_pending(ro) {
        return true;
    }
    let uid = ro.uid().unwrap_or_default();
    ctx.view
        .analysis_run_owners
        .owned(&ctx.view.analysis_runs, &uid)
        .iter()
        .any(|run| failed_run_owner(run).is_some())
}

/// Which routers [`route_to_stable_now`] writes, by [`TrafficRouter::weight_writes_are_guarded`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Guarded {
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
pub(super) async fn route_to_stable_now(
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
    let routing = Routing::for_rollout(cached);
    let target = &routing.target;
    let routers: Vec<_> = routing
        .routers
        .iter()
        .filter(|r| which.selects(r.as_ref()))
        .collect();
    if routers.is_empty() {
        return;
    }
    let rollout = key(cached);
    tracing::debug!(target: "aviary::watch", %rollout, weight, ?which, "abort: sending traffic back to stable");
    for router in routers {
        // No snapshot: the write reads the object first (or sends the prepared patch).
        match act::set_weight(
            ctx,
            ctx.clients.unpaced(),
            &rollout,
            router.as_ref(),
            target,
            &mut None,
            weight,
        )
        .await
        {
            Ok(WeightChange::Updated { from, to }) => {
                // Our value now (an abort judges nobody's change).
                let object = router.object(target);
                ctx.view.drift.set(
                    &rollout,
                    super::drift::object_key(&object),
                    Some(&to.to_string()),
                );
                info!(
                    router = router.kind(),
                    ?from,
                    to,
                    "abort: traffic back to stable"
                );
                outbox.add(cached, &[act::weight_event(from, to, &object.to_string())]);
            }
            Ok(WeightChange::Unchanged) => {}
            // Another of the abort's writers (the watch, the other lane) came first.
            Err(e @ TrafficError::Conflict { .. }) => {
                debug!(router = router.kind(), error = %e, "abort: the weight changed under this write; the reconcile re-reads")
            }
            Err(e) => {
                warn!(router = router.kind(), error = %e, "abort: could not set the weight yet")
            }
        }
    }
}

/// Sends a just-watched abort's prepared weight-0 writes ([`crate::traffic::prepared`]) straight
/// from the watch: not behind the reconcile queue, and not behind a reconcile of this rollout
/// in flight, which may take several requests under load. What that reconcile does next is
/// safe: a weight it writes tests the canary weight it read, so it fails if this write came
/// first, and a reconcile that read the routing object after this write sees the abort in the
/// store before it acts ([`abort_overtook_read`]). Without a prepared write (none held, or the
/// object changed since) this does nothing, and the urgent lane's reconcile reads and writes.
pub(super) async fn send_prepared_aborts(ctx: Arc<Context>, ro: Rollout) {
    let Some(0) = plan::immediate_abort_weight(&ro) else {
        return;
    };
    if crate::api::wire::migrating(&ro.metadata) {
        return;
    }
    if !stable_has_pods(&ctx, &ro) {
        return;
    }
    let routing = Routing::for_rollout(&ro);
    let target = &routing.target;
    for router in &routing.routers {
        let object = router.object(target);
        match prepared::send(ctx.clients.unpaced(), target, &object, &ctx.prepared_aborts).await {
            Ok(Some(written)) => {
                ctx.view.routing.saw(&written.after);
                if let WeightChange::Updated { from, to } = written.change {
                    // Our value now (an abort judges nobody's change).
                    ctx.view.drift.set(
                        &key(&ro),
                        super::drift::object_key(&object),
                        Some(&to.to_string()),
                    );
                    info!(target: "aviary::watch", rollout = %key(&ro), router = router.kind(), ?from, to, "abort: traffic back to stable (from the watch)");
                    let event = act::weight_event(from, to, &object.to_string());
                    report::publish(&ctx.recorder, &ro, &[event]).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                ctx.view.routing.lost(&object);
                // It may have landed: the weight is unknown, and the next write is not judged.
                ctx.view
                    .drift
                    .set(&key(&ro), super::drift::object_key(&object), None);
                debug!(rollout = %key(&ro), router = router.kind(), error = %e, "abort: the prepared write failed; the reconcile retries")
            }
        }
    }
}

/// Whether the stable revision is fully available in the ReplicaSet cache: the abort's fast
/// writes send all traffic there before anything else is read, so they go only if it can take
/// it all (a deleted stable ReplicaSet, one whose pods died, one shrunk by `dynamicStableScale`
/// — even if the field was removed since — cannot). Otherwise the reconcile's plan brings the
/// traffic back, as far as the stable carries.
pub(super) fn stable_has_pods(ctx: &Context, ro: &Rollout) -> bool {
    let Some(stable) = ro.status.as_ref().and_then(|s| s.stable_rs.as_deref()) else {
        return false;
    };
    let uid = ro.uid().unwrap_or_default();
    ctx.view.replica_sets.owned(&uid).iter().any(|c| {
        c.observed.hash == stable
            && c.observed.available > 0
            && c.observed.available >= ro.spec.replicas()
    })
}

/// Whether the watch has delivered an abort that `read` — the Rollout this reconcile read and
/// planned from — does not show. Such a plan is stale, and acting on it could route traffic
/// back to the canary after [`send_prepared_aborts`] took it away: the reconcile stops before
/// acting and the next one plans the abort.
pub(super) fn abort_overtook_read(read: &Rollout, watched: Option<&Rollout>) -> bool {
    !abort_pending(read) && watched.is_some_and(abort_pending)
}

/// The Rollout to wake on the urgent lane for this AnalysisRun: its controller owner, when the
/// run has just failed (Failed or Error) and is not retired — the rollout must abort now.
pub(super) fn failed_run_owner(run: &AnalysisRun) -> Option<ObjectRef<Rollout>> {
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

#[cfg(test)]
#[path = "abort_path_tests.rs"]
mod tests;

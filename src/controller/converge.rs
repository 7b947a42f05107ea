//! observe → plan → act → report for one Rollout read: the planner's desired state converged
//! in its order, the status written, Events queued. A problem the user must fix is reported as
//! `InvalidSpec` and looked at again every 30 s, not retried with backoff.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, warn};

use super::error::Error;
use super::run_specs::{self, PreparedRuns, SpecError};
use super::{act, observe, report, telemetry};
use crate::api::conditions::{set_condition, types};
use crate::api::wire::reasons;
use crate::api::{Condition, ConditionStatus, Rollout, RolloutPhase};
use crate::plan::{self, Event, Observed, ObservedAnalysisRun};

use super::abort_path::abort_overtook_read;
use super::{Context, key};
use crate::traffic::{Routing, RoutingSnapshot};

/// observe → plan → act → report, for the Rollout `ro` as read.
pub(super) async fn plan_and_act(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
    // With workloadRef, everything below sees the Deployment's template as the Rollout's own.
    let resolved;
    // Boxed: its request future stays out of this (deeply nested) one's frame.
    let (ro, workload) = match Box::pin(observe::workload(ctx, ro)).await? {
        Some((with_template, workload)) => {
            resolved = with_template;
            (&resolved, Some(workload))
        }
        None => (ro, None),
    };
    let routing = Routing::for_rollout(ro);
    let (mut observed, snapshots) = observe_all(ctx, ro, &routing, workload).await?;
    let plan = plan::plan(&observed);
    let (plan, runs) = prepare_runs(ctx, ro, plan, &mut observed).await;
    // An abort the watch delivered after `ro` was read: this plan is stale (`abort_path`).
    // Checked last before the first write, after every read of the plan's own.
    let watched = ctx.view.rollouts.get(&ObjectRef::from_obj(ro));
    if abort_overtook_read(ro, watched.as_deref()) {
        info!("an abort arrived after this reconcile read the Rollout; planning again");
        return Ok(Requeue::requeue(Duration::from_millis(100)));
    }
    let events = act_on(ctx, ro, &plan, &runs, &observed, &routing, snapshots).await?;
    report_plan(ctx, api, ro, &plan, events, outbox).await
}

/// Observe: what the planner reads, from the caches (ReplicaSets, Services, AnalysisRuns, the
/// routing objects) and, only while a restart is due, the pods; and the routing objects'
/// snapshots, which act writes from.
async fn observe_all<'r>(
    ctx: &Context,
    ro: &'r Rollout,
    routing: &Routing,
    workload: Option<plan::workload::ObservedWorkload>,
) -> Result<(Observed<'r>, Vec<RoutingSnapshot>), Error> {
    let now = Timestamp::now();
    let replica_sets = observe::owned_replica_sets(ctx, ro);
    // Pods are listed only while a restart is due: no cache of every pod for a rare operation.
    let pods = match plan::restart::due(ro, now) {
        plan::restart::Due::Now(_) => Some(observe::rollout_pods(ctx, ro, &replica_sets).await?),
        _ => None,
    };
    // The Services and the routing objects are independent reads: in parallel, so an abort's
    // reconcile waits for one round trip here, not three.
    let (services, routed) = tokio::try_join!(
        observe::observe_services(ctx, ro),
        observe::observe_routing(ctx, routing)
    )?;
    let (analysis_runs, analysis_run_history) = observe::owned_analysis_runs(ctx, ro);
    let observed = Observed {
        rollout: ro,
        replica_sets,
        services,
        current_weight: routed.weight,
        subset_hashes: routed.subsets,
        analysis_runs,
        analysis_run_history,
        pods,
        workload,
        now,
    };
    Ok((observed, routed.snapshots))
}

/// Prepare: the AnalysisRuns the plan asks for, built (templates read, args resolved) before
/// anything of the plan is written. An analysis that cannot even start (a missing template) is
/// an analysis in Error: the planner is asked again with that verdict, which aborts the rollout
/// with the reason — so act never fails half-way over it, and the planner never re-plans from
/// an act failure.
async fn prepare_runs(
    ctx: &Context,
    ro: &Rollout,
    mut plan: plan::Plan,
    observed: &mut Observed<'_>,
) -> (plan::Plan, PreparedRuns) {
    let mut prepared = PreparedRuns::default();
    // A plan asks for a handful of runs at most; a planner that asks again for a run it was
    // given an Error verdict on (a retry superseding it) is not asked a fifth time.
    for _ in 0..4 {
        let mut failed = false;
        for action in &plan.actions {
            let plan::Action::CreateAnalysisRun { kind, hash } = action else {
                continue;
            };
            if prepared.get(*kind, hash).is_some() {
                continue;
            }
            match run_specs::prepare(ctx, ro, *kind, hash).await {
                Ok(Some(spec)) => prepared.insert(*kind, hash, spec),
                Ok(None) => {}
                // Not created this time (act skips a run without a spec); the rest of the plan
                // goes on, and the run is asked for again shortly.
                Err(SpecError::Unavailable(message)) => {
                    warn!(%message, "analysis template unreadable for now; creating the run later");
                    let soon = Duration::from_secs(5);
                    plan.requeue_after = Some(plan.requeue_after.map_or(soon, |d| d.min(soon)));
                }
                Err(SpecError::Unusable(message)) => {
                    warn!(%message, "analysis could not start");
                    // Named for no real run (nor the ReplicaSet) and anew each reconcile: a
                    // retry's plan supersedes the runs it sees, this one included, and the
                    // next reconcile's verdict must not be taken for that superseded one.
                    let kind_name = match kind {
                        plan::AnalysisKind::Step(i) => format!("step-{i}"),
                        plan::AnalysisKind::Background => "background".into(),
                        plan::AnalysisKind::PrePromotion => "pre".into(),
                        plan::AnalysisKind::PostPromotion => "post".into(),
                    };
                    observed.analysis_runs.push(ObservedAnalysisRun {
                        name: format!(
                            "{}-{hash}-{kind_name}-cannot-start-{}",
                            ro.name_any(),
                            observed.now.as_second()
                        ),
                        kind: *kind,
                        hash: hash.clone(),
                        phase: crate::api::AnalysisPhase::Error,
                        message: Some(message),
                        steps_hash: None,
                    });
                    failed = true;
                }
            }
        }
        if !failed {
            return (plan, prepared);
        }
        plan = plan::plan(observed);
    }
    // Still asking for runs that cannot be built: those wait for the next reconcile.
    plan.actions.retain(|a| match a {
        plan::Action::CreateAnalysisRun { kind, hash } => prepared.get(*kind, hash).is_some(),
        _ => true,
    });
    (plan, prepared)
}

/// Act: the plan's actions in order ([`act::apply`]), its runs prepared. Returns the Events of
/// the writes.
async fn act_on(
    ctx: &Context,
    ro: &Rollout,
    plan: &plan::Plan,
    runs: &PreparedRuns,
    observed: &Observed<'_>,
    routing: &Routing,
    snapshots: Vec<RoutingSnapshot>,
) -> Result<Vec<Event>, Error> {
    if !plan.actions.is_empty() {
        info!(actions = ?plan.actions, "applying plan");
    }
    act::apply(
        ctx,
        ro,
        &plan.actions,
        &observed.replica_sets,
        runs,
        routing,
        snapshots,
    )
    .await
}

/// Report: the status written when it changed (replica counters alone are held back a while,
/// [`report::COUNTERS_EVERY`]), the Events queued, the figures recorded; then when to look
/// again.
async fn report_plan(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    plan: &plan::Plan,
    mut events: Vec<Event>,
    outbox: &report::Outbox,
) -> Result<Requeue, Error> {
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
pub(super) const SAFETY_RESYNC: Duration = Duration::from_secs(15 * 60);

/// [`report::write_status`], noting what the write returned for [`super::freshness`]: until the cache
/// shows it, reconciles read the Rollout fresh. A failed write may still have landed (a lost
/// answer), so it is read fresh too until a read and the cache agree.
pub(super) async fn write_status(
    ctx: &Context,
    api: &Api<Rollout>,
    ro: &Rollout,
    status: &crate::api::RolloutStatus,
) -> Result<bool, Error> {
    match report::write_status(api, ro, status).await {
        Ok(Some(written)) => {
            let cached = ctx.view.rollouts.get(&ObjectRef::from_obj(ro));
            ctx.view.rollout_reads.learnt(
                &key(ro),
                cached.and_then(|c| c.resource_version()).as_deref(),
                written.resource_version(),
                None,
            );
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            ctx.view.rollout_reads.distrust(&key(ro));
            Err(e)
        }
    }
}

/// Records a problem the user must fix: condition `InvalidSpec`, phase Degraded, a Warning Event
/// (once per distinct message); then waits for a change (or retries slowly, in case the missing
/// object appears).
pub(super) async fn report_invalid(
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
    // Stalled=True: kstatus (Flux, `kubectl wait`) reports Failed until the spec is fixed.
    let now = Time(Timestamp::now());
    for c in RolloutPhase::Degraded.summary_conditions(
        reasons::INVALID_SPEC,
        message,
        ro.metadata.generation,
        &now,
    ) {
        set_condition(&mut status.conditions, c);
    }
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

#[cfg(test)]
#[path = "converge_tests.rs"]
mod tests;

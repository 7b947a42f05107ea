//! The reconcile's telemetry hooks: after each report, record the rollout's phase and weight,
//! derive delivery transitions ([`crate::delivery`]) and hand them to the metrics and the
//! notifier. The controller calls [`reported`] and [`forget_deleted`]; everything they need is
//! here, so the reconcile itself stays about rollouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::Context;
use crate::api::wire::reasons;
use crate::api::{Rollout, RolloutStatus};
use crate::delivery::{self, Change};
use crate::metrics::Metrics;
use crate::notify::{Notification, Notifier};
use crate::plan::Event;

/// What the process shares across leadership terms: the metrics registry and the notifier.
#[derive(Clone)]
pub struct TelemetrySinks {
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
}

impl TelemetrySinks {
    /// Fresh metrics and no notifications (tests, tools).
    pub fn quiet() -> Self {
        let metrics = Arc::new(Metrics::new());
        TelemetrySinks {
            notifier: Notifier::disabled(metrics.clone()),
            metrics,
        }
    }
}

/// Telemetry state of one leadership term.
pub struct Telemetry {
    pub sinks: TelemetrySinks,
    /// Per rollout, the first abort not yet followed by a Healthy rollout (the start of the
    /// time-to-restore clock). Held in memory for the term only; after a restart it is recovered
    /// from `status.abortedAt` where the status still carries it.
    pending_aborts: Mutex<HashMap<String, Timestamp>>,
}

impl Telemetry {
    pub fn new(sinks: TelemetrySinks) -> Self {
        Telemetry {
            sinks,
            pending_aborts: Mutex::new(HashMap::new()),
        }
    }
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The canary weight the status records; 0 once the rollout runs one revision only.
fn canary_weight(st: &RolloutStatus) -> Option<i32> {
    st.canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight)
        .or_else(|| (st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash).then_some(0))
}

/// When the ReplicaSet of revision `hash` of this Rollout was created (from the cache).
fn revision_created(ctx: &Context, ro: &Rollout, hash: &str) -> Option<Timestamp> {
    let uid = ro.meta().uid.clone()?;
    ctx.view
        .replica_sets
        .owned(&uid)
        .into_iter()
        .find(|rs| rs.observed.hash == hash)
        .and_then(|rs| rs.created)
}

/// After a reconcile reported `status` (written, or unchanged) with `events`.
pub fn reported(ctx: &Context, ro: &Rollout, status: &RolloutStatus, events: &[Event]) {
    let t = &ctx.telemetry;
    let ns = ro.namespace().unwrap_or_default();
    let name = ro.name_any();
    t.sinks.metrics.observe_rollout(
        &ns,
        &name,
        status.phase,
        canary_weight(status).map(|w| (w, ro.spec.total_weight())),
    );

    let old = ro.status.clone().unwrap_or_default();
    let completed = events
        .iter()
        .any(|e| e.reason == reasons::ROLLOUT_COMPLETED);
    let now = Timestamp::now();
    let change = Change {
        old: &old,
        new: status,
        events,
        steps: ro.steps(),
        spec_paused: ro.spec.paused == Some(true),
        revision_created: status
            .stable_rs
            .as_deref()
            .filter(|_| completed)
            .and_then(|h| revision_created(ctx, ro, h)),
        now,
    };
    let k = key(&ns, &name);
    let Ok(mut pending) = t.pending_aborts.lock() else {
        return;
    };
    let (transitions, still_pending) = delivery::transitions(&change, pending.remove(&k));
    if let Some(at) = still_pending {
        pending.insert(k, at);
    }
    drop(pending);
    for tr in transitions {
        info!(rollout = %key(&ns, &name), transition = ?tr, "delivery transition");
        t.sinks.metrics.record_transition(&ns, &name, &tr);
        t.sinks
            .notifier
            .notify(Notification::of(&ns, &name, &tr, now));
    }
}

/// Drops the series and clocks of Rollouts that no longer exist (deletions don't reconcile) and
/// releases their Services ([`super::service_release`]): every minute once the Rollout cache
/// is ready, and soon after the Rollout watch delivers a deletion (`deleted`). Runs as long as
/// the controller.
pub async fn forget_deleted(
    ctx: Arc<Context>,
    rollouts: Store<Rollout>,
    deleted: Arc<tokio::sync::Notify>,
) {
    if rollouts.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = deleted.notified() => {}
        }
        let live: std::collections::HashSet<String> = rollouts
            .state()
            .iter()
            .map(|r| key(&r.namespace().unwrap_or_default(), &r.name_any()))
            .collect();
        for (ns, name) in ctx.telemetry.sinks.metrics.tracked_rollouts() {
            if !live.contains(&key(&ns, &name)) {
                ctx.telemetry.sinks.metrics.forget_rollout(&ns, &name);
            }
        }
        if let Ok(mut p) = ctx.telemetry.pending_aborts.lock() {
            p.retain(|k, _| live.contains(k));
        }
        ctx.prepared_aborts.retain_rollouts(&live);
        ctx.status_writes.retain_rollouts(&live);
        if let Ok(mut f) = ctx.failures.lock() {
            f.retain(|k, _| live.contains(k));
        }
        let live_uids: std::collections::HashSet<String> = rollouts
            .state()
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .collect();
        // Before anything is awaited: a Rollout recreated meanwhile under a deleted one's name
        // writes records that `live`, computed above, would drop.
        ctx.view.forget_deleted(&live, &live_uids);
        super::service_release::release_orphans(&ctx, &live).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanaryStatus, TrafficWeights, WeightDestination};

    #[test]
    fn weight_comes_from_the_status_or_is_zero_on_one_revision() {
        let mut st = RolloutStatus {
            stable_rs: Some("a".into()),
            current_pod_hash: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(canary_weight(&st), None);
        st.current_pod_hash = Some("a".into());
        assert_eq!(canary_weight(&st), Some(0));
        st.canary = Some(CanaryStatus {
            weights: Some(TrafficWeights {
                canary: WeightDestination {
                    weight: 30,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(canary_weight(&st), Some(30));
    }
}

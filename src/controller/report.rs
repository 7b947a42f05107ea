//! Report: write the planned status (only when it changed) and record Events.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tracing::warn;

use super::error::Error;
use crate::api::conditions::conditions_equal_ignoring_time;
use crate::api::wire;
use crate::api::{Rollout, RolloutStatus};
use crate::plan::{Event, EventKind};

/// An RFC 7386 merge patch turning `old` into `new`: changed and added keys, `null` for removed
/// ones, arrays replaced whole. `None` when they are equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

/// Whether two statuses differ in anything but condition transition times.
pub fn status_changed(old: &RolloutStatus, new: &RolloutStatus) -> bool {
    let strip = |s: &RolloutStatus| RolloutStatus {
        conditions: vec![],
        ..s.clone()
    };
    strip(old) != strip(new) || !conditions_equal_ignoring_time(&old.conditions, &new.conditions)
}

/// How often a rollout's replica counters alone are written. Each write to a Rollout costs the
/// API server about ten times a built-in object's (a profile of a 1,000-rollout update: schema,
/// CEL rules and managed fields on every status patch), and the counters tick once per pod
/// event: held back this long, they mostly ride along with the next real status change.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(2);

/// Whether `new` differs from `old` in the replica counters and nothing else.
pub fn only_counters_changed(old: &RolloutStatus, new: &RolloutStatus) -> bool {
    let strip = |s: &RolloutStatus| RolloutStatus {
        replicas: 0,
        updated_replicas: 0,
        ready_replicas: 0,
        available_replicas: 0,
        ..s.clone()
    };
    status_changed(old, new) && !status_changed(&strip(old), &strip(new))
}

/// When each rollout's status was last written by this process, so counter-only changes can
/// wait for [`COUNTERS_EVERY`] to pass.
#[derive(Default)]
pub struct StatusWrites {
    at: Mutex<HashMap<String, Instant>>,
}

impl StatusWrites {
    pub fn record(&self, key: &str, now: Instant) {
        if let Ok(mut at) = self.at.lock() {
            at.insert(key.to_string(), now);
        }
    }

    /// How long a counters-only write of `key` should wait; `None`: write it now.
    pub fn hold_counters(&self, key: &str, now: Instant) -> Option<Duration> {
        let last = *self.at.lock().ok()?.get(key)?;
        COUNTERS_EVERY
            .checked_sub(now.saturating_duration_since(last))
            .filter(|d| !d.is_zero())
    }

    /// Forgets rollouts no longer in `live`.
    pub fn retain_rollouts(&self, live: &HashSet<String>) {
        if let Ok(mut at) = self.at.lock() {
            at.retain(|k, _| live.contains(k));
        }
    }
}

/// Writes `new` as the Rollout's status when it differs from what the Rollout had, and gives
/// back the Rollout the API server returned (`None`: nothing to write). The patch carries the
/// resourceVersion it was planned from, so a concurrent write (a user's abort or promote) makes
/// it fail with a conflict and the next reconcile re-plans with it.
pub async fn write_status(
    api: &Api<Rollout>,
    ro: &Rollout,
    new: &RolloutStatus,
) -> Result<Option<Rollout>, Error> {
    let old = ro.status.clone().unwrap_or_default();
    if !status_changed(&old, new) {
        return Ok(None);
    }
    let diff = merge_diff(&serde_json::to_value(&old)?, &serde_json::to_value(new)?);
    let Some(diff) = diff else { return Ok(None) };
    tracing::debug!(target: "aviary::status", rollout = %ro.name_any(), patch = %diff, "status patch");
    let patch = json!({
        "metadata": {"resourceVersion": ro.resource_version()},
        "status": diff,
    });
    let written = api
        .patch_status(&ro.name_any(), &wire::patch_params(), &Patch::Merge(&patch))
        .await?;
    Ok(Some(written))
}

/// Events a reconcile produced, published after it lets go of the rollout: posting Events is
/// a request each, and an abort waiting on the urgent lane should not wait for them
/// (`super::serial`). They are still published before the reconcile ends, after the status
/// write, in order.
#[derive(Default)]
pub struct Outbox {
    items: std::sync::Mutex<Vec<(ObjectReference, String, Vec<Event>)>>,
}

impl Outbox {
    /// Queues `events` about `ro`.
    pub fn add(&self, ro: &Rollout, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.push((ro.object_ref(&()), ro.name_any(), events.to_vec()));
    }

    /// How many Events are queued.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.iter().map(|(_, _, events)| events.len()).sum()
    }

    /// Publishes everything queued, in order.
    pub async fn flush(self, recorder: &EventRecorder) {
        let items = self.items.into_inner().unwrap_or_else(|p| p.into_inner());
        for (reference, name, events) in items {
            publish_to(recorder, &reference, &name, &events).await;
        }
    }
}

/// Records Events (`events.k8s.io/v1`) about Rollouts: one create per Event, nothing cached.
///
/// Not kube's `Recorder`: it keeps every Event it wrote for six minutes to fold repeats into a
/// series, and on *every* publish scans that whole cache under a write lock. At 10,000
/// rollouts an update wave writes some 90,000 Events: the cache alone would hold ~100 MB and
/// each publish would walk it. It also folded Events with the same reason into the first one's
/// message ("from 0 to 10" counted again for "from 10 to 50"). Aviary emits an Event per
/// user-visible transition, not per reconcile, so there are no repeats worth folding.
#[derive(Clone)]
pub struct EventRecorder {
    clients: super::pacing::Clients,
    controller: String,
}

impl EventRecorder {
    pub fn new(clients: super::pacing::Clients, controller: &str) -> Self {
        EventRecorder {
            clients,
            controller: controller.to_string(),
        }
    }
}

/// The Event object for `e` about `reference`, written at `now`.
pub fn build_event(
    controller: &str,
    reference: &ObjectReference,
    e: &Event,
    now: k8s_openapi::jiff::Timestamp,
) -> K8sEvent {
    let regarding = reference.name.as_deref().unwrap_or(controller);
    K8sEvent {
        action: Some(e.reason.to_string()),
        reason: Some(e.reason.to_string()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        // The Events API limits the note to 1 kB.
        note: Some(e.message.chars().take(1000).collect()),
        metadata: ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(format!("{regarding}.{:x}", now.as_nanosecond())),
            ..Default::default()
        },
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(controller.to_string()),
        type_: Some(
            match e.kind {
                EventKind::Normal => "Normal",
                EventKind::Warning => "Warning",
            }
            .to_string(),
        ),
        ..Default::default()
    }
}

/// Publishes Events about the Rollout. A failure to record an Event is logged, never fatal.
pub async fn publish(recorder: &EventRecorder, ro: &Rollout, events: &[Event]) {
    publish_to(recorder, &ro.object_ref(&()), &ro.name_any(), events).await
}

/// Publishes one Event about `reference` with a plain client (the watches', before any
/// recorder exists). A failure is logged, never fatal.
pub async fn publish_about(client: kube::Client, reference: ObjectReference, e: Event) {
    let recorder = EventRecorder::new(
        super::pacing::Clients::unpaced_only(client),
        crate::api::wire::EVENT_REPORTER,
    );
    let name = reference.name.clone().unwrap_or_default();
    publish_to(&recorder, &reference, &name, std::slice::from_ref(&e)).await
}

async fn publish_to(
    recorder: &EventRecorder,
    reference: &ObjectReference,
    name: &str,
    events: &[Event],
) {
    let api: Api<K8sEvent> = Api::namespaced(
        recorder.clients.current().clone(),
        reference.namespace.as_deref().unwrap_or("default"),
    );
    for e in events {
        let event = build_event(
            &recorder.controller,
            reference,
            e,
            k8s_openapi::jiff::Timestamp::now(),
        );
        if let Err(err) = api.create(&PostParams::default(), &event).await {
            warn!(rollout = %name, reason = e.reason, error = %err, "could not record event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutPhase;

    #[test]
    fn counters_alone_are_told_apart_from_real_changes() {
        let old = RolloutStatus {
            phase: Some(RolloutPhase::Progressing),
            replicas: 1,
            ..Default::default()
        };
        let counters = RolloutStatus {
            replicas: 2,
            updated_replicas: 1,
            ..old.clone()
        };
        assert!(only_counters_changed(&old, &counters));
        let step = RolloutStatus {
            current_step_index: Some(1),
            ..counters.clone()
        };
        assert!(!only_counters_changed(&old, &step));
        // No change at all is not a counters-only change: there is nothing to hold back.
        assert!(!only_counters_changed(&old, &old));
    }

    #[test]
    fn counters_wait_only_inside_the_window_after_a_write() {
        let writes = StatusWrites::default();
        let t0 = Instant::now();
        // Never written by this process: write now.
        assert_eq!(writes.hold_counters("ns/web", t0), None);
        writes.record("ns/web", t0);
        let half = t0 + COUNTERS_EVERY / 2;
        assert_eq!(
            writes.hold_counters("ns/web", half),
            Some(COUNTERS_EVERY / 2)
        );
        assert_eq!(writes.hold_counters("ns/other", half), None);
        assert_eq!(writes.hold_counters("ns/web", t0 + COUNTERS_EVERY), None);
        writes.retain_rollouts(&HashSet::new());
        assert_eq!(writes.hold_counters("ns/web", half), None);
    }

    #[test]
    fn each_event_is_its_own_object_with_its_own_message() {
        let reference = ObjectReference {
            api_version: Some("aviary.dev/v1alpha1".into()),
            kind: Some("Rollout".into()),
            name: Some("web".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        };
        let t = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let a = build_event(
            "aviary",
            &reference,
            &Event::normal(wire::reasons::TRAFFIC_WEIGHT_UPDATED, "from 0 to 10"),
            t,
        );
        let b = build_event(
            "aviary",
            &reference,
            &Event::warning(wire::reasons::ROLLOUT_ABORTED, "x".repeat(2000)),
            t + std::time::Duration::from_millis(1),
        );
        assert_ne!(a.metadata.name, b.metadata.name);
        assert!(
            a.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("web."))
        );
        assert_eq!(a.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(a.note.as_deref(), Some("from 0 to 10"));
        assert_eq!(a.type_.as_deref(), Some("Normal"));
        assert_eq!(b.type_.as_deref(), Some("Warning"));
        assert_eq!(b.note.as_ref().map(|n| n.len()), Some(1000));
        assert_eq!(a.regarding.as_ref(), Some(&reference));
    }

    #[test]
    fn merge_diff_sets_changes_and_nulls_removals() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": true});
        let new = json!({"a": 1, "b": {"c": 5, "d": 3}, "e": [1], "f": "x"});
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({"b": {"c": 5}, "e": [1], "f": "x", "gone": null}))
        );
        assert_eq!(merge_diff(&new, &new), None);
    }
}

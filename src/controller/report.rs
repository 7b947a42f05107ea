//! Report: write the planned status (only when it changed) and record Events.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};
use tracing::warn;

use super::error::Error;
use crate::api::conditions::conditions_equal_ignoring_time;
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

/// Writes `new` as the Rollout's status when it differs from what the Rollout had. The patch
/// carries the resourceVersion it was planned from, so a concurrent write (a user's abort or
/// promote) makes it fail with a conflict and the next reconcile re-plans with it.
pub async fn write_status(
    api: &Api<Rollout>,
    ro: &Rollout,
    new: &RolloutStatus,
) -> Result<bool, Error> {
    let old = ro.status.clone().unwrap_or_default();
    if !status_changed(&old, new) {
        return Ok(false);
    }
    let diff = merge_diff(&serde_json::to_value(&old)?, &serde_json::to_value(new)?);
    let Some(diff) = diff else { return Ok(false) };
    let patch = json!({
        "metadata": {"resourceVersion": ro.resource_version()},
        "status": diff,
    });
    api.patch_status(
        &ro.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
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

    /// Publishes everything queued, in order.
    pub async fn flush(self, recorder: &Recorder) {
        let items = self.items.into_inner().unwrap_or_else(|p| p.into_inner());
        for (reference, name, events) in items {
            publish_to(recorder, &reference, &name, &events).await;
        }
    }
}

/// The Event's `action`. kube's `Recorder` folds an Event into an earlier one with the same
/// type, reason and *action* into a series (a count), keeping the first note: with the reason
/// as the action, "Traffic weight updated from 10 to 50" became a second count of "… from 0
/// to 10". Deriving the action from the message too keeps distinct messages distinct, while a
/// repeat of the very same message still becomes a series.
fn action_of(e: &Event) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.message.hash(&mut h);
    format!("{}-{:08x}", e.reason, h.finish() as u32)
}

/// Publishes Events about the Rollout. A failure to record an Event is logged, never fatal.
pub async fn publish(recorder: &Recorder, ro: &Rollout, events: &[Event]) {
    publish_to(recorder, &ro.object_ref(&()), &ro.name_any(), events).await
}

async fn publish_to(
    recorder: &Recorder,
    reference: &ObjectReference,
    name: &str,
    events: &[Event],
) {
    for e in events {
        let ev = KubeEvent {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason.to_string(),
            note: Some(e.message.chars().take(1000).collect()),
            action: action_of(e),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&ev, reference).await {
            warn!(rollout = %name, reason = e.reason, error = %err, "could not record event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_messages_get_distinct_actions_repeats_the_same() {
        let a = Event::normal("TrafficWeightUpdated", "from 0 to 10");
        let b = Event::normal("TrafficWeightUpdated", "from 10 to 50");
        assert_ne!(action_of(&a), action_of(&b));
        assert_eq!(action_of(&a), action_of(&a.clone()));
        assert!(action_of(&a).starts_with("TrafficWeightUpdated-"));
        assert!(action_of(&a).len() <= 128, "the Events API limit");
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

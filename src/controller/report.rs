//! Report: write the planned status (only when it changed) and record Events.

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

/// Publishes Events about the Rollout. A failure to record an Event is logged, never fatal.
pub async fn publish(recorder: &Recorder, ro: &Rollout, events: &[Event]) {
    let reference = ro.object_ref(&());
    for e in events {
        let ev = KubeEvent {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason.to_string(),
            note: Some(e.message.chars().take(1000).collect()),
            action: e.reason.to_string(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&ev, &reference).await {
            warn!(rollout = %ro.name_any(), reason = e.reason, error = %err, "could not record event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

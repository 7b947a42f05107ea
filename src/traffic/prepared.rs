//! Abort writes prepared ahead of time.
//!
//! An abort must take the canary's traffic away as fast as the API server allows. Setting a
//! weight normally costs a read and a guarded write; but whenever a router has just set a
//! non-zero weight it holds the object as the API server returned it, and can compute then the
//! guarded patch that would take the canary back to 0 from there. The abort sends that patch
//! straight away: one request. The patch `test`s everything it relies on — the route's name,
//! which destination sits at which index, the canary weight it expects to find — so if the
//! object changed since, the API server refuses it whole and the router falls back to reading
//! the object first. A stale entry therefore costs one refused request, never a wrong write.
//!
//! Entries exist only for routing objects whose canary weight Aviary last set above 0, so the
//! store holds at most one entry per routing object of each rollout in progress.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tracing::{debug, info};

use super::{
    RouteTarget, RoutingObject, TrafficError, TrafficRouter, WeightChange, WeightWrite,
    apply_guarded_patch, check_weight,
};

/// A guarded patch that sets the canary weight of one routing object to 0.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedAbort {
    /// The canary weight the patch expects to find (and `test`s).
    pub from: i32,
    pub patch: json_patch::Patch,
}

/// Prepared abort patches, keyed by rollout and routing object. Shared by both reconcile lanes;
/// the per-rollout lock keeps them from using one rollout's entries at once.
#[derive(Debug, Default)]
pub struct PreparedAborts {
    entries: Mutex<HashMap<String, PreparedAbort>>,
}

/// Separates the rollout from the object in a key: neither a namespace nor a name contains it.
const SEPARATOR: char = '\u{1f}';

impl PreparedAborts {
    /// The key of `object` routed for `target`'s rollout.
    pub fn key(target: &RouteTarget, object: &RoutingObject) -> String {
        format!("{}/{}{SEPARATOR}{object}", target.namespace, target.rollout)
    }

    /// Removes and returns the entry: a prepared patch is used at most once.
    pub fn take(&self, key: &str) -> Option<PreparedAbort> {
        self.entries.lock().ok()?.remove(key)
    }

    pub fn put(&self, key: String, prepared: PreparedAbort) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(key, prepared);
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.remove(key);
        }
    }

    /// Drops the entries of rollouts not in `live` ("namespace/name"): deleted ones.
    pub fn retain_rollouts(&self, live: &HashSet<String>) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|k, _| {
                k.split_once(SEPARATOR)
                    .is_some_and(|(rollout, _)| live.contains(rollout))
            });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sets `router`'s weight, with its prepared write: weight 0 goes out as the prepared patch when
/// one is held (falling back to the router's own write when the API server refuses it because
/// the object changed); after any other weight, the patch back to 0 is prepared from the object
/// the write left.
pub async fn set_weight(
    router: &dyn TrafficRouter,
    client: &kube::Client,
    target: &RouteTarget,
    mut from: Option<super::RoutingSnapshot>,
    canary_weight: i32,
    prepared: &PreparedAborts,
) -> Result<WeightWrite, TrafficError> {
    check_weight(canary_weight, router.total_weight())?;
    let object = router.object(target);
    if canary_weight == 0 {
        match send(client, target, &object, prepared).await {
            Ok(Some(written)) => return Ok(written),
            Ok(None) => {}
            // The object changed since the patch was prepared, and so since `from` too.
            Err(TrafficError::Conflict { .. }) => from = None,
            Err(e) => return Err(e),
        }
    }
    let key = PreparedAborts::key(target, &object);
    prepared.remove(&key);
    let written = router
        .set_weight(client, target, from, canary_weight)
        .await?;
    if canary_weight > 0
        && let Some(abort) = router.abort_patch(&written.after, target)
    {
        // Best effort: without a prepared patch the abort reads first.
        prepared.put(key, abort);
    }
    Ok(written)
}

/// Sends the weight-0 write held for `object`, and nothing else: no read, no fallback.
/// `Ok(None)` when none is held; [`TrafficError::Conflict`] when the API server refused it
/// because the object changed since it was prepared (a full abort then reads and writes).
pub async fn send(
    client: &kube::Client,
    target: &RouteTarget,
    object: &RoutingObject,
    prepared: &PreparedAborts,
) -> Result<Option<WeightWrite>, TrafficError> {
    let Some(abort) = prepared.take(&PreparedAborts::key(target, object)) else {
        return Ok(None);
    };
    let what = object.to_string();
    match apply_guarded_patch(&object.api(client), &object.name, abort.patch, &what).await {
        Ok(written) => {
            info!(object = %what, from = abort.from, to = 0, "set canary weight (prepared write)");
            Ok(Some(WeightWrite {
                change: WeightChange::Updated {
                    from: Some(abort.from),
                    to: 0,
                },
                after: object.snapshot(&written),
            }))
        }
        Err(e) => {
            debug!(object = %what, error = %e, "the prepared abort write was not applied");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ns: &str, rollout: &str) -> RouteTarget {
        RouteTarget {
            namespace: ns.into(),
            rollout: rollout.into(),
            ..Default::default()
        }
    }

    fn entry(from: i32) -> PreparedAbort {
        PreparedAbort {
            from,
            patch: json_patch::Patch(vec![]),
        }
    }

    #[test]
    fn an_entry_is_taken_once_and_deleted_rollouts_are_forgotten() {
        let store = PreparedAborts::default();
        let vs = |name: &str| {
            RoutingObject::new(
                crate::traffic::istio::virtual_service_resource(),
                "app",
                name,
            )
        };
        let web = PreparedAborts::key(&target("app", "web"), &vs("web"));
        let api = PreparedAborts::key(&target("app", "api"), &vs("api"));
        store.put(web.clone(), entry(30));
        store.put(api.clone(), entry(10));
        assert_eq!(store.take(&web), Some(entry(30)));
        assert_eq!(store.take(&web), None, "used at most once");

        store.put(web.clone(), entry(50));
        let live = HashSet::from(["app/web".to_string()]);
        store.retain_rollouts(&live);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.take(&api),
            None,
            "the deleted rollout's entry is gone"
        );
        store.remove(&web);
        assert!(store.is_empty());
    }
}

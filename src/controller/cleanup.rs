//! Deletion cleanup. The routing objects a Rollout weights (VirtualServices, HTTPRoutes) belong
//! to the user and outlive it, while its ReplicaSets and pods are garbage-collected after it: a
//! Rollout deleted mid-canary would leave the canary's share of traffic pointed at a Service
//! whose pods are going away. So Rollouts with `trafficRouting` carry the finalizer
//! [`ROUTE_CLEANUP_FINALIZER`](crate::api::wire::ROUTE_CLEANUP_FINALIZER); on deletion every
//! routing object is set back to canary weight 0 (all traffic to stable) before the finalizer
//! is removed.
//!
//! The finalizer never holds a deletion for ever: a routing object that is gone needs nothing;
//! one that can't carry the change (an invalid route, someone else's canary Ingress) gets a
//! Warning Event and is left as it is; other failures are retried with backoff, for at most
//! [`GIVE_UP_AFTER`] from the deletion, then treated the same way.

use std::time::Duration;

use crate::api::wire::reasons;
use crate::plan::Event;
use crate::traffic::{RouteTarget, TrafficError, TrafficRouter, WeightChange};

/// How long after the deletion began failures that may pass (conflicts, an unreachable API
/// server, a forbidden write) are retried before the Rollout is let go anyway.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// What to do about a routing object that could not be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It no longer exists: nothing routes through it.
    Gone,
    /// Leave it as it is, say so in a Warning Event, and let the Rollout go.
    GiveUp,
    /// Keep the finalizer and try again.
    Retry,
}

/// Classifies a failure to restore a routing object, `deleting_for` after the deletion began.
pub fn verdict(err: &TrafficError, deleting_for: Duration) -> Verdict {
    match err {
        TrafficError::NotFound { .. } => Verdict::Gone,
        TrafficError::Kube(kube::Error::Api(e)) if e.code == 404 => Verdict::Gone,
        TrafficError::Invalid(_) => Verdict::GiveUp,
        _ if deleting_for >= GIVE_UP_AFTER => Verdict::GiveUp,
        _ => Verdict::Retry,
    }
}

/// Sets every routing object back to canary weight 0. Returns the Events to record and, when a
/// routing object must be tried again, the error that says why (the others were still done).
pub async fn restore_stable(
    client: &kube::Client,
    routers: &[Box<dyn TrafficRouter>],
    target: &RouteTarget,
    deleting_for: Duration,
) -> (Vec<Event>, Option<TrafficError>) {
    let mut events = vec![];
    let mut retry = None;
    for router in routers {
        let what = router.object(target).to_string();
        // Read first: NGINX's canary Ingress would be created by a write of weight 0 when it
        // does not exist, and a deletion must not create anything.
        let result = match router.read(client, target).await {
            Ok(read) => match router.weight_in(&read, target) {
                Ok(Some(0)) => Ok(WeightChange::Unchanged),
                Ok(_) => router
                    .set_weight(client, target, Some(read), 0)
                    .await
                    .map(|w| w.change),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(WeightChange::Unchanged) => {}
            Ok(WeightChange::Updated { from, to }) => {
                tracing::info!(router = router.kind(), object = %what, ?from, to, "canary weight restored to 0 for the Rollout's deletion");
                events.push(Event::normal(
                    reasons::ROUTE_CLEANUP,
                    format!(
                        "Traffic weight updated from {} to {to} on {what}: the Rollout is being deleted",
                        from.map(|f| f.to_string()).unwrap_or_else(|| "unknown".into())
                    ),
                ));
            }
            Err(e) => match verdict(&e, deleting_for) {
                Verdict::Gone => {
                    tracing::info!(object = %what, error = %e, "routing object gone: nothing to restore");
                }
                Verdict::GiveUp => {
                    tracing::warn!(object = %what, error = %e, "could not restore the routing object; letting the Rollout go");
                    events.push(Event::warning(
                        reasons::ROUTE_CLEANUP_FAILED,
                        format!(
                            "Could not set the canary weight of {what} back to 0 before the Rollout's deletion; it is left as it is: {e}"
                        ),
                    ));
                }
                Verdict::Retry => {
                    tracing::warn!(object = %what, error = %e, "could not restore the routing object yet; retrying");
                    retry.get_or_insert(e);
                }
            },
        }
    }
    (events, retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::EventKind;
    use crate::traffic::fake::{FakeFailure, FakeRouter, offline_client};

    fn api_error(code: u16) -> TrafficError {
        TrafficError::Kube(kube::Error::Api(
            kube::core::Status::failure("test", "Test")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn gone_objects_need_nothing_invalid_ones_are_given_up_others_retried_for_a_while() {
        let soon = Duration::from_secs(5);
        let late = GIVE_UP_AFTER;
        let not_found = TrafficError::NotFound {
            kind: "VirtualService".into(),
            name: "t/web".into(),
            fix: String::new(),
        };
        assert_eq!(verdict(&not_found, soon), Verdict::Gone);
        assert_eq!(verdict(&api_error(404), soon), Verdict::Gone);
        let invalid = TrafficError::Invalid("no route 'primary'".into());
        assert_eq!(verdict(&invalid, soon), Verdict::GiveUp);
        let conflict = TrafficError::Conflict { what: "x".into() };
        for e in [conflict, api_error(403), api_error(500)] {
            assert_eq!(verdict(&e, soon), Verdict::Retry, "{e}");
            assert_eq!(verdict(&e, late), Verdict::GiveUp, "{e}");
        }
    }

    #[tokio::test]
    async fn every_router_goes_back_to_zero_and_failures_are_sorted() {
        let client = offline_client();
        let target = RouteTarget::default();
        let canary = FakeRouter::new("Istio").with_weight(30);
        let idle = FakeRouter::new("GatewayAPI").with_weight(0);
        let broken = FakeRouter::new("Istio").with_weight(30);
        broken.fail_next(FakeFailure::Invalid("route 'primary' not found".into()));
        let gone = FakeRouter::new("GatewayAPI");
        gone.fail_next(FakeFailure::NotFound);
        let routers: Vec<Box<dyn TrafficRouter>> = vec![
            Box::new(canary.clone()),
            Box::new(idle.clone()),
            Box::new(broken.clone()),
            Box::new(gone.clone()),
        ];
        let (events, retry) =
            restore_stable(&client, &routers, &target, Duration::from_secs(1)).await;
        assert!(retry.is_none(), "{retry:?}");
        assert_eq!(canary.weight(), Some(0));
        assert!(idle.weights_set().is_empty(), "no write where it is 0");
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.reason)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Normal, reasons::ROUTE_CLEANUP),
                (EventKind::Warning, reasons::ROUTE_CLEANUP_FAILED)
            ]
        );
        assert!(events[1].message.contains("route 'primary' not found"));
    }

    #[tokio::test]
    async fn a_conflict_is_retried_after_the_others_are_done() {
        let client = offline_client();
        let target = RouteTarget::default();
        let busy = FakeRouter::new("Istio").with_weight(30);
        busy.fail_next(FakeFailure::Conflict);
        let other = FakeRouter::new("Istio").with_weight(30);
        let routers: Vec<Box<dyn TrafficRouter>> =
            vec![Box::new(busy.clone()), Box::new(other.clone())];
        let (_, retry) = restore_stable(&client, &routers, &target, Duration::from_secs(1)).await;
        assert!(matches!(retry, Some(TrafficError::Conflict { .. })));
        assert_eq!(
            other.weight(),
            Some(0),
            "the other router was still restored"
        );
        let (events, retry) =
            restore_stable(&client, &routers, &target, Duration::from_secs(2)).await;
        assert!(retry.is_none());
        assert_eq!(busy.weight(), Some(0));
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn nothing_is_created_where_there_is_no_canary_object() {
        // NGINX reports 0 when its canary Ingress does not exist: no write follows.
        let client = offline_client();
        let nginx = FakeRouter::new("NGINX").with_weight(0);
        let routers: Vec<Box<dyn TrafficRouter>> = vec![Box::new(nginx.clone())];
        let (events, retry) = restore_stable(
            &client,
            &routers,
            &RouteTarget::default(),
            Duration::from_secs(1),
        )
        .await;
        assert!(events.is_empty() && retry.is_none());
        assert!(nginx.weights_set().is_empty());
    }
}

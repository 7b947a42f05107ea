//! An in-memory [`TrafficRouter`] for unit tests of the controller's I/O shell: it records the
//! weights and hashes it was asked to set and can be told to fail, and never touches the
//! client it is given.
//!
//! ```
//! # async fn demo() {
//! use aviary::traffic::{RouteTarget, TrafficRouter, WeightChange, fake::{FakeRouter, offline_client}};
//! let router = FakeRouter::new("Istio");
//! let handle = router.clone(); // shares the recorded state
//! let client = offline_client();
//! let written = router.set_weight(&client, &RouteTarget::default(), None, 10).await.unwrap();
//! assert_eq!(written.change, WeightChange::Updated { from: None, to: 10 });
//! assert_eq!(handle.weights_set(), [10]);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;

use serde_json::json;

use super::{
    RouteTarget, RoutingObject, RoutingSnapshot, TrafficError, TrafficRouter, WeightChange,
    WeightWrite, check_weight,
};

/// A failure the fake returns from its next call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeFailure {
    NotFound,
    Invalid(String),
    Conflict,
}

impl FakeFailure {
    fn into_error(self, kind: &str) -> TrafficError {
        match self {
            FakeFailure::NotFound => TrafficError::NotFound {
                kind: kind.to_string(),
                name: "fake".into(),
                fix: "create it".into(),
            },
            FakeFailure::Invalid(message) => TrafficError::Invalid(message),
            FakeFailure::Conflict => TrafficError::Conflict {
                what: format!("{kind} 'fake'"),
            },
        }
    }
}

/// What a [`FakeRouter`] has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeState {
    /// The canary weight the fake routing object shows.
    pub weight: Option<i32>,
    /// Every weight passed to `set_weight`, in order, including no-op calls.
    pub weights_set: Vec<i32>,
    /// Failures to return, one per call (any method), before behaving normally again.
    pub failures: VecDeque<FakeFailure>,
}

/// An in-memory router. Clones share their state, so a test can keep one and hand a boxed
/// clone to the code under test.
#[derive(Clone, Debug)]
pub struct FakeRouter {
    kind: &'static str,
    state: Arc<Mutex<FakeState>>,
}

impl FakeRouter {
    /// A fake of `kind` ("Istio", "NGINX", "GatewayAPI") showing no weight yet.
    pub fn new(kind: &'static str) -> Self {
        FakeRouter {
            kind,
            state: Arc::default(),
        }
    }

    /// Starts from a routing object that shows `weight`.
    pub fn with_weight(self, weight: i32) -> Self {
        self.state().weight = Some(weight);
        self
    }

    /// Makes the next call fail (queued: several calls fail in order).
    pub fn fail_next(&self, failure: FakeFailure) {
        self.state().failures.push_back(failure);
    }

    /// Every weight `set_weight` was called with.
    pub fn weights_set(&self) -> Vec<i32> {
        self.state().weights_set.clone()
    }

    /// The weight the fake routing object shows now.
    pub fn weight(&self) -> Option<i32> {
        self.state().weight
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> FakeState {
        self.state().clone()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has already failed; keep reporting.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_failure(&self) -> Option<TrafficError> {
        self.state()
            .failures
            .pop_front()
            .map(|f| f.into_error(self.kind))
    }
}

impl FakeRouter {
    /// The fake routing object: `{"weight": …}`.
    fn snapshot_of(&self, target: &RouteTarget, weight: Option<i32>) -> RoutingSnapshot {
        RoutingSnapshot {
            object: self.object(target),
            body: json!({ "weight": weight }),
        }
    }
}

impl TrafficRouter for FakeRouter {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn object(&self, target: &RouteTarget) -> RoutingObject {
        let gvk = kube::core::GroupVersionKind::gvk("fake.aviary.dev", "v1", self.kind);
        RoutingObject::new(
            kube::api::ApiResource::from_gvk(&gvk),
            &target.namespace,
            "fake",
        )
    }

    fn read<'a>(
        &'a self,
        _client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<RoutingSnapshot, TrafficError>> {
        Box::pin(async move {
            match self.take_failure() {
                Some(e) => Err(e),
                None => Ok(self.snapshot_of(target, self.state().weight)),
            }
        })
    }

    fn weight_in(
        &self,
        snapshot: &RoutingSnapshot,
        _target: &RouteTarget,
    ) -> Result<Option<i32>, TrafficError> {
        Ok(snapshot.body["weight"]
            .as_i64()
            .and_then(|w| i32::try_from(w).ok()))
    }

    fn set_weight<'a>(
        &'a self,
        _client: &'a kube::Client,
        target: &'a RouteTarget,
        _from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightWrite, TrafficError>> {
        Box::pin(async move {
            self.state().weights_set.push(canary_weight);
            if let Some(e) = self.take_failure() {
                return Err(e);
            }
            check_weight(canary_weight, super::MAX_WEIGHT)?;
            let mut state = self.state();
            let change = if state.weight == Some(canary_weight) {
                WeightChange::Unchanged
            } else {
                let from = state.weight.replace(canary_weight);
                WeightChange::Updated {
                    from,
                    to: canary_weight,
                }
            };
            let weight = state.weight;
            drop(state);
            Ok(WeightWrite {
                change,
                after: self.snapshot_of(target, weight),
            })
        })
    }
}

/// A client for tests that need a `kube::Client` to pass to a fake but no API server: it points
/// at a closed local port, so a call that does reach it fails instead of touching a cluster.
/// Must be called inside a Tokio runtime (the client spawns its request buffer there).
pub fn offline_client() -> kube::Client {
    let url = "http://127.0.0.1:9".parse().expect("a constant, valid URL");
    kube::Client::try_from(kube::Config::new(url)).expect("a client for a plain HTTP URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_weights_and_reports_changes() {
        let router = FakeRouter::new("NGINX").with_weight(0);
        let handle = router.clone();
        let boxed: Box<dyn TrafficRouter> = Box::new(router);
        let client = offline_client();
        let target = RouteTarget::default();
        let set = |w| boxed.set_weight(&client, &target, None, w);
        assert_eq!(
            set(10).await.expect("ok").change,
            WeightChange::Updated {
                from: Some(0),
                to: 10
            }
        );
        let again = set(10).await.expect("ok");
        assert_eq!(again.change, WeightChange::Unchanged);
        assert_eq!(boxed.weight_in(&again.after, &target).ok(), Some(Some(10)));
        assert_eq!(
            crate::traffic::current_weight(boxed.as_ref(), &client, &target)
                .await
                .expect("ok"),
            Some(10)
        );
        assert_eq!(handle.weights_set(), [10, 10]);
        assert_eq!(boxed.kind(), "NGINX");
    }

    #[tokio::test]
    async fn fails_as_told_then_recovers() {
        let router = FakeRouter::new("Istio");
        router.fail_next(FakeFailure::Conflict);
        router.fail_next(FakeFailure::Invalid("no canary".into()));
        let client = offline_client();
        let target = RouteTarget::default();
        let err = router
            .set_weight(&client, &target, None, 20)
            .await
            .expect_err("1st");
        assert!(matches!(err, TrafficError::Conflict { .. }));
        let err = router.read(&client, &target).await.expect_err("2nd");
        assert_eq!(err.to_string(), "no canary");
        assert!(router.set_weight(&client, &target, None, 20).await.is_ok());
        assert_eq!(router.weight(), Some(20));
        assert!(
            router
                .set_weight(&client, &target, None, 101)
                .await
                .is_err()
        );
    }
}

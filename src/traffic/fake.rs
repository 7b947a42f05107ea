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
//! let change = router.set_weight(&client, &RouteTarget::default(), 10).await.unwrap();
//! assert_eq!(change, WeightChange::Updated { from: None, to: 10 });
//! assert_eq!(handle.weights_set(), [10]);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;

use super::{RouteTarget, TrafficError, TrafficRouter, WeightChange, check_weight};

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
    /// `(stable_hash, canary_hash)` of every `set_subset_hashes` call.
    pub hashes_set: Vec<(Option<String>, Option<String>)>,
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

impl TrafficRouter for FakeRouter {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn describe(&self, target: &RouteTarget) -> String {
        format!("fake {} router for '{}'", self.kind, target.rollout)
    }

    fn set_weight<'a>(
        &'a self,
        _client: &'a kube::Client,
        _target: &'a RouteTarget,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightChange, TrafficError>> {
        Box::pin(async move {
            self.state().weights_set.push(canary_weight);
            if let Some(e) = self.take_failure() {
                return Err(e);
            }
            check_weight(canary_weight)?;
            let mut state = self.state();
            if state.weight == Some(canary_weight) {
                return Ok(WeightChange::Unchanged);
            }
            let from = state.weight.replace(canary_weight);
            Ok(WeightChange::Updated {
                from,
                to: canary_weight,
            })
        })
    }

    fn current_weight<'a>(
        &'a self,
        _client: &'a kube::Client,
        _target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<Option<i32>, TrafficError>> {
        Box::pin(async move {
            match self.take_failure() {
                Some(e) => Err(e),
                None => Ok(self.state().weight),
            }
        })
    }

    fn set_subset_hashes<'a>(
        &'a self,
        _client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<bool, TrafficError>> {
        Box::pin(async move {
            let hashes = (target.stable_hash.clone(), target.canary_hash.clone());
            let mut state = self.state();
            let changed = state.hashes_set.last() != Some(&hashes);
            state.hashes_set.push(hashes);
            drop(state);
            match self.take_failure() {
                Some(e) => Err(e),
                None => Ok(changed),
            }
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
        assert_eq!(
            boxed.set_weight(&client, &target, 10).await.expect("ok"),
            WeightChange::Updated {
                from: Some(0),
                to: 10
            }
        );
        assert_eq!(
            boxed.set_weight(&client, &target, 10).await.expect("ok"),
            WeightChange::Unchanged
        );
        assert_eq!(
            boxed.current_weight(&client, &target).await.expect("ok"),
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
            .set_weight(&client, &target, 20)
            .await
            .expect_err("1st");
        assert!(matches!(err, TrafficError::Conflict { .. }));
        let err = router
            .current_weight(&client, &target)
            .await
            .expect_err("2nd");
        assert_eq!(err.to_string(), "no canary");
        assert!(router.set_weight(&client, &target, 20).await.is_ok());
        assert_eq!(router.weight(), Some(20));
        assert!(router.set_weight(&client, &target, 101).await.is_err());
    }

    #[tokio::test]
    async fn records_subset_hashes() {
        let router = FakeRouter::new("Istio");
        let client = offline_client();
        let target = RouteTarget {
            stable_hash: Some("s".into()),
            canary_hash: Some("c".into()),
            ..Default::default()
        };
        assert!(
            router
                .set_subset_hashes(&client, &target)
                .await
                .expect("ok")
        );
        assert!(
            !router
                .set_subset_hashes(&client, &target)
                .await
                .expect("ok")
        );
        assert_eq!(
            router.snapshot().hashes_set,
            [
                (Some("s".into()), Some("c".into())),
                (Some("s".into()), Some("c".into()))
            ]
        );
    }
}

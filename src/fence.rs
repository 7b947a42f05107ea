//! Fencing: a leader that may have lost its Lease writes nothing.
//!
//! Losing the Lease drops the controller's future ([`crate::leader::run_elected`]), which stops
//! every reconcile — as long as the process runs. A process that was frozen (a paused VM, a
//! stopped container, a long GC of the node) resumes with its reconciles mid-flight, and they may
//! send a write before the renewal loop has noticed anything. Another replica may have led for
//! a while by then. So every write the controller sends passes a fence: it goes only while our
//! last successful renewal (timed from when its request was sent) is younger than the renew
//! deadline, which is shorter than the lease duration, so the fence closes before any standby
//! can take the Lease over. Reads always pass; so do the Lease's own requests, on a client of
//! their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Until when writes may go. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Fence(Option<Arc<Mutex<Option<Instant>>>>);

/// A write refused by the fence.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this process may no longer hold the leader Lease")]
pub struct Fenced;

impl Fence {
    /// Always open: leader election is off, this process is the only writer.
    pub fn open() -> Self {
        Fence(None)
    }

    /// Closed until [`Fence::hold_until`] opens it.
    pub fn closed() -> Self {
        Fence(Some(Arc::new(Mutex::new(None))))
    }

    /// Writes may go until `deadline`.
    pub fn hold_until(&self, deadline: Instant) {
        if let Some(Ok(mut until)) = self.0.as_ref().map(|m| m.lock()) {
            *until = Some(deadline);
        }
    }

    /// No write goes until the next [`Fence::hold_until`].
    pub fn close(&self) {
        if let Some(Ok(mut until)) = self.0.as_ref().map(|m| m.lock()) {
            *until = None;
        }
    }

    /// Whether a write may go now.
    pub fn is_open(&self) -> bool {
        match &self.0 {
            None => true,
            Some(m) => m
                .lock()
                .map(|until| until.is_some_and(|t| Instant::now() < t))
                .unwrap_or(false),
        }
    }

    /// The tower layer that applies this fence to a kube client's requests.
    pub fn layer(&self) -> FenceLayer {
        FenceLayer {
            fence: self.clone(),
        }
    }
}

/// See [`Fence::layer`].
#[derive(Clone)]
pub struct FenceLayer {
    fence: Fence,
}

impl<S> tower::Layer<S> for FenceLayer {
    type Service = FencedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FencedService {
            inner,
            fence: self.fence.clone(),
        }
    }
}

/// See [`Fence::layer`].
#[derive(Clone)]
pub struct FencedService<S> {
    inner: S,
    fence: Fence,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for FencedService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let writes = !matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if writes && !self.fence.is_open() {
            tracing::warn!(method = %req.method(), uri = %req.uri(), "write not sent: the leader Lease may be lost");
            return Box::pin(async { Err(Box::new(Fenced) as BoxError) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::{Layer, Service, ServiceExt};

    async fn send(fence: &Fence, method: http::Method) -> Result<u16, String> {
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(200u16)
        });
        let mut svc = fence.layer().layer(inner);
        let req = http::Request::builder()
            .method(method)
            .uri("/apis/apps/v1/namespaces/a/replicasets/web")
            .body(())
            .map_err(|e| e.to_string())?;
        svc.ready()
            .await
            .map_err(|e| e.to_string())?
            .call(req)
            .await
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn writes_go_only_while_the_lease_is_held_reads_always() {
        use http::Method;
        let open = Fence::open();
        assert_eq!(send(&open, Method::PATCH).await, Ok(200), "no election");

        let fence = Fence::closed();
        assert_eq!(send(&fence, Method::GET).await, Ok(200));
        for m in [Method::PATCH, Method::PUT, Method::POST, Method::DELETE] {
            let refused = send(&fence, m.clone()).await;
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("Lease")),
                "{m}: {refused:?}"
            );
        }
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        assert_eq!(send(&fence, Method::PATCH).await, Ok(200));
        // A renewal that is too old (a frozen process resuming) closes it by itself.
        fence.hold_until(Instant::now() - Duration::from_millis(1));
        assert!(send(&fence, Method::PATCH).await.is_err());
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(send(&fence, Method::DELETE).await.is_err());
        assert_eq!(send(&fence, Method::GET).await, Ok(200));
    }
}
